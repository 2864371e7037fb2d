"""Deliberately broken allocators, one per law, for tests/phys.

Two kinds:

* ``NaiveHeap`` -- a real (if tiny) malloc written here, over a bytearray, with a
  switch per bug; it is a target like libc, and the model judges it call by call;
* broken *models*: the reference model with one rule wrong, run as a target
  (it answers with its own choices) and also checked by its own invariants.
"""

from __future__ import annotations

from bisect import bisect_left

from memspec.model.buddy import Buddy
from memspec.model.heap import Block, Heap
from memspec.model.expect import Expect, exactly
from memspec.model.frames import Owner
from memspec.model.phys import OK0, PAGE_SHIFT, PhysModel
from memspec.model.numa import BIND, NumaState
from memspec.program import Call
from memspec.records import Observation, Outcome, RunStatus
from memspec.targets.base import Session, SessionFailed, Target
from memspec.targets.model import ModelSession

HEAP_BASE = 0x5000_0000


class NaiveHeap:
    """Bump allocation, an exact-size LIFO free list per size, memory in a bytearray.
    ``bug`` switches one defect on."""

    def __init__(self, bug: str = ""):
        self.bug = bug
        self.mem = bytearray(b"\xaa" * (4 << 20))    # fresh memory is not zero: calloc must clear it
        self.top = HEAP_BASE
        self.free_lists: dict[int, list[int]] = {}
        self.size: dict[int, int] = {}
        self.last_size: dict[int, int] = {}

    def _carve(self, size: int, align: int = 16) -> int:
        rounded = max(16, (size + 15) // 16 * 16)
        fl = self.free_lists.get(rounded)
        if fl and align <= 16:
            p = fl.pop()
        else:
            p = (self.top + align - 1) // align * align
            if self.bug == "misaligned":
                p += 8
            self.top = p + rounded
        self.size[p] = size
        return p

    def _room(self, size: int) -> bool:
        return 0 <= size <= 1 << 20 and self.top + size + 65536 < HEAP_BASE + len(self.mem)

    def malloc(self, size: int) -> Outcome:
        if not self._room(size):
            return Outcome(value=0, errno="ENOMEM")
        return Outcome(value=self._carve(size))

    def calloc(self, n: int, size: int) -> Outcome:
        o = self.malloc(n * size if n * size < 1 << 64 else -1)
        if o.value and self.bug != "calloc-dirty":
            off = o.value - HEAP_BASE
            self.mem[off:off + n * size] = bytes(n * size)
        return o

    def free(self, ptr: int) -> Outcome:
        if ptr:
            if ptr not in self.size and self.bug != "double-free":
                raise AssertionError("the harness never frees a pointer the model thinks dead")
            size = self.size.pop(ptr, None)
            if size is None:
                size = self.last_size.get(ptr, 16)
            self.last_size[ptr] = size
            # the bug: a pointer already on the free list is pushed again
            self.free_lists.setdefault(max(16, (size + 15) // 16 * 16), []).append(ptr)
        return Outcome()

    def realloc(self, ptr: int, size: int) -> Outcome:
        if not ptr:
            return self.malloc(size)
        old = self.size[ptr]
        o = self.malloc(size)
        if not o.value:
            if size == 0:   # like glibc: realloc(p, 0) frees p
                self.free(ptr)
            return o
        if self.bug != "realloc-no-copy":
            a, b = ptr - HEAP_BASE, o.value - HEAP_BASE
            self.mem[b:b + min(old, size)] = self.mem[a:a + min(old, size)]
        self.free(ptr)
        return o

    def malloc_usable_size(self, ptr: int) -> Outcome:
        return Outcome(value=max(16, (self.size[ptr] + 15) // 16 * 16) if ptr else 0)

    def posix_memalign(self, align: int, size: int) -> Outcome:
        if self.bug != "memalign-einval" and (align % 8 or align & (align - 1) or align == 0):
            return Outcome(value=0, errno="EINVAL")
        if not self._room(size) or align > 65536:
            return Outcome(value=0, errno="ENOMEM")
        return Outcome(value=self._carve(size, max(align, 16)))

    def heap_store(self, addr: int, value: int) -> Outcome:
        self.mem[addr - HEAP_BASE] = value & 0xFF
        return Outcome()

    def heap_load(self, addr: int) -> Outcome:
        return Outcome(value=self.mem[addr - HEAP_BASE])

    def heap_fill(self, addr: int, n: int, value: int) -> Outcome:
        self.mem[addr - HEAP_BASE:addr - HEAP_BASE + n] = bytes([value & 0xFF]) * n
        return Outcome()

    def heap_count(self, addr: int, n: int, value: int) -> Outcome:
        return Outcome(value=self.mem[addr - HEAP_BASE:addr - HEAP_BASE + n].count(value & 0xFF))


class NaiveHeapSession(Session):
    def __init__(self, bug: str):
        self.heap = NaiveHeap(bug)

    def call(self, call: Call, args: tuple) -> Outcome:
        return getattr(self.heap, call.name)(*args)

    def observe(self) -> Observation:
        return Observation()


class NaiveHeapTarget(Target):
    layers = ("phys",)
    calls = frozenset({"malloc", "calloc", "realloc", "free", "posix_memalign", "malloc_usable_size", "heap_store",
                       "heap_load", "heap_fill", "heap_count"})

    def __init__(self, bug: str = ""):
        self.bug = bug
        self.name = f"naive-heap[{bug or 'ok'}]"

    def session(self, layer: str = "phys") -> NaiveHeapSession:
        return NaiveHeapSession(self.bug)


# --- broken models ------------------------------------------------------------------

class DoubleFreeBuddy(PhysModel):
    """buddy_free accepts a block that is not allocated (and does nothing)."""

    def _x_buddy_free(self, pfn: int) -> Expect:
        return exactly("linux.buddy.free", OK0)


class NoCoalesceBuddy(PhysModel):
    """Frees put the block on its free list without merging it with a free buddy."""

    class _NoMerge(Buddy):
        __slots__ = ()

        def coalesce(self, pfn: int, order: int) -> None:
            self._push(pfn, order)

    def __init__(self, machine=None):
        super().__init__(machine)
        self.buddy.__class__ = self._NoMerge


class LeakyBuddy(PhysModel):
    """buddy_free says 0 but never gives the frames back (they stay allocated)."""

    def _a_buddy_free(self, o: Outcome, pfn: int) -> None:
        self.pages.discard(pfn)


class SlabTwice(PhysModel):
    """A slab cache whose allocator hands out its first object again while it is live."""

    def _slab_expect(self, c, gfp):
        e = super()._slab_expect(c, gfp)
        if c.live:
            first = min(c.live)
            return Expect(e.clause, Outcome(value=first), e.describe, predicate=e.predicate, blame_by=e.blame_by)
        return e


class SlabStealsFrames(PhysModel):
    """A new slab is placed on the lowest frame that buddy_alloc handed out, not on a free block."""

    def _slab_expect(self, c, gfp):
        e = super()._slab_expect(c, gfp)
        if not c.has_free() and self.pages:
            pfn = min(self.pages)
            return Expect(e.clause, Outcome(value=pfn << PAGE_SHIFT), e.describe, predicate=e.predicate,
                          blame_by=e.blame_by)
        return e


class GcMissesRoot(PhysModel):
    """Marking starts from every root but the newest one."""

    def __init__(self, machine=None):
        super().__init__(machine)
        gc = self.gc
        real = gc.reachable

        def reachable():
            roots = gc.roots
            if roots:
                gc.roots = set(roots) - {max(roots)}
            try:
                return real()
            finally:
                gc.roots = roots
        self._broken_reachable = reachable

    def _x_gc_collect(self):
        live = self._broken_reachable()
        dead = set(self.gc.objects) - live
        return Expect("jones.gc.complete", Outcome(value=len(dead), detail=(("freed", tuple(sorted(dead))),)), "")


class RefcountGc(PhysModel):
    """A reference-counting collector: frees objects no root or object refers to, so cycles leak."""

    def _x_gc_collect(self):
        objs = self.gc.objects
        alive = set(objs)
        changed = True
        while changed:
            changed = False
            for h in list(alive):
                referenced = h in self.gc.roots or any(h in objs[o].refs for o in alive)
                if not referenced:
                    alive.discard(h)
                    changed = True
        dead = set(objs) - alive
        return Expect("jones.gc.complete", Outcome(value=len(dead), detail=(("freed", tuple(sorted(dead))),)), "")


class BindSpills(PhysModel):
    """MPOL_BIND that ignores its node mask (allocates on the CPU's node)."""

    def __init__(self, machine=None):
        super().__init__(machine)

        class Spilling(NumaState):
            def plan(self, fallback):
                if self.mode == BIND:
                    return self.cpu_node, fallback(self.cpu_node), True, "numa.bind.no-spill"
                return super().plan(fallback)
        self.numa = Spilling()


class DmaIgnoresMask(PhysModel):
    """dma_alloc_coherent that takes any free block, reachable by the device or not."""

    def _x_dma_alloc_coherent(self, size: int, dma_mask: int = 0xFFFFFFFF) -> Expect:
        return super()._x_dma_alloc_coherent(size, (1 << 64) - 1)


class VmallocNoGuard(PhysModel):
    """vmalloc areas packed back to back, with no guard page between them."""

    def _x_vmalloc(self, size: int) -> Expect:
        e = super()._x_vmalloc(size)
        if self.vm and e.default.value:
            last_start, last_end, area = list(self.vm.items())[-1]
            return Expect(e.clause, Outcome(value=last_end - 4096, detail=e.default.detail), e.describe,
                          predicate=e.predicate, blame_by=e.blame_by)
        return e


class ArenaReuses(PhysModel):
    """A region whose bump pointer restarts at its base on every allocation."""

    def _a_arena_alloc(self, o: Outcome, arena: int, size: int, align: int = 16) -> None:
        pass


class FreedButCounted(PhysModel):
    """buddy_free puts the block on the free lists but forgets to drop it from the allocated blocks."""

    def _a_buddy_free(self, o: Outcome, pfn: int) -> None:
        if o.ok and pfn in self.pages:
            self.pages.discard(pfn)
            order, owner = self.buddy.allocated[pfn]
            self.frames.release(pfn, 1 << order, owner)
            self.buddy.coalesce(pfn, order)


class SlabMiscount(PhysModel):
    """kmem_cache_free forgets the object in the cache's table but not in its slab."""

    def _a_kmem_cache_free(self, o: Outcome, cache: int, obj: int) -> None:
        c = self.caches.get(cache)
        if o.ok and c is not None:
            c.live.pop(obj, None)


class HeapOverlaps(PhysModel):
    """malloc places a new block 16 bytes into the newest live block (its heap table lets it)."""

    class _RawHeap(Heap):
        """Inserts without removing what the new block overlaps."""

        __slots__ = ()

        def add(self, addr, size, contents):
            m = self.blocks
            i = bisect_left(m._starts, addr)
            m._starts.insert(i, addr)
            m._ends.insert(i, addr + max(size, 1))
            m._values.insert(i, Block(size, contents))

    def __init__(self, machine=None):
        super().__init__(machine)
        self.heap.__class__ = self._RawHeap

    def _x_malloc(self, size: int) -> Expect:
        e = super()._x_malloc(size)
        starts = self.heap.blocks._starts
        if starts:
            return Expect(e.clause, Outcome(value=starts[-1] + 16), e.describe, predicate=e.predicate,
                          blame_by=e.blame_by)
        return e


class BrokenModelTarget(Target):
    """A broken model run as a target: it answers with its own (wrong) choices."""

    layers = ("phys",)

    def __init__(self, cls: type[PhysModel], calls: frozenset[str] | None = None):
        self.cls = cls
        self.name = f"broken[{cls.__name__}]"
        self.calls = calls

    def session(self, layer: str = "phys") -> ModelSession:
        s = ModelSession("phys")
        s.system = self.cls()
        return s
