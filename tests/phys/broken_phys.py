"""Deliberately broken allocators, one per law, for tests/phys.

Two kinds:

* ``NaiveHeap`` -- a real (if tiny) malloc written here, over a bytearray, with a
  switch per bug; it is a target like libc, and the model judges it call by call;
* broken *models*: the reference model with one rule wrong, run as a target
  (it answers with its own choices) and also checked by its own invariants.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace

from memspec.model import dma, heap, slab, vmalloc
from memspec.model.allocator import OK0
from memspec.model.rules import Rule
from memspec.model.buddy import Buddy
from memspec.model.heap import Block, Heap
from memspec.model.expect import Expect, exactly
from memspec.model.frames import PAGE_SHIFT
from memspec.model.phys import PhysModel
from memspec.model.numa import BIND, NumaState
from memspec.program import Call
from memspec.records import Observation, Outcome
from memspec.targets.base import Session, Target
from memspec.targets.model import PhysModelTarget

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
#
# A broken rule replaces an entry of the model's rules table (``PhysModel.RULES``); a broken
# structure replaces the class of one piece of state.


def with_rules(**rules: Rule) -> dict[str, Rule]:
    """The reference model's table with ``rules`` in place of its own."""
    assert set(rules) <= set(PhysModel.RULES), set(rules) - set(PhysModel.RULES)
    return {**PhysModel.RULES, **rules}


def expecting(call: str, expect) -> Rule:
    return replace(PhysModel.RULES[call], expect=expect)


def applying(call: str, apply) -> Rule:
    return replace(PhysModel.RULES[call], apply=apply)


def _hands_out(pick):
    """The slab allocation rules with the model's own choice replaced by ``pick(m, cache)`` when it
    names an address (kmem_cache_alloc and kmalloc's slab path)."""
    def choose(e: Expect, m, c) -> Expect:
        addr = pick(m, c)
        if addr is None:
            return e
        return replace(e, default=Outcome(value=addr))

    def cache_alloc(m, cache: int, gfp: int = 0) -> Expect:
        e = slab.expect_kmem_cache_alloc(m, cache, gfp)
        return choose(e, m, m.caches[cache]) if cache in m.caches else e

    def kmalloc(m, size: int, gfp: int = 0) -> Expect:
        e = slab.expect_kmalloc(m, size, gfp)
        return choose(e, m, slab.kcache(m, size, gfp)) if 0 < size <= slab.KMALLOC_MAX_CACHE else e

    return dict(kmem_cache_alloc=expecting("kmem_cache_alloc", cache_alloc), kmalloc=expecting("kmalloc", kmalloc))


class DoubleFreeBuddy(PhysModel):
    """buddy_free accepts a block that is not allocated (and does nothing)."""

    RULES = with_rules(buddy_free=expecting("buddy_free", lambda m, pfn: exactly("linux.buddy.free", OK0)))


class NoCoalesceBuddy(PhysModel):
    """Frees put the block on its free list without merging it with a free buddy."""

    class _NoMerge(Buddy):
        __slots__ = ()

        def coalesce(self, pfn: int, order: int) -> None:
            self._push(pfn, order)

    def __init__(self, machine=None):
        super().__init__(machine)
        self.buddy.__class__ = self._NoMerge


def _leak(m, o: Outcome, pfn: int) -> None:
    m.pages.discard(pfn)


class LeakyBuddy(PhysModel):
    """buddy_free says 0 but never gives the frames back (they stay allocated)."""

    RULES = with_rules(buddy_free=applying("buddy_free", _leak))


class SlabTwice(PhysModel):
    """A slab cache whose allocator hands out its first object again while it is live."""

    RULES = with_rules(**_hands_out(lambda m, c: min(c.live) if c.live else None))


class SlabStealsFrames(PhysModel):
    """A new slab is placed on the lowest frame that buddy_alloc handed out, not on a free block."""

    RULES = with_rules(**_hands_out(
        lambda m, c: min(m.pages) << PAGE_SHIFT if not c.has_free() and m.pages else None))


def _collects(reachable):
    """gc_collect's rule with the set of live objects computed by ``reachable(m)``."""
    def expect(m) -> Expect:
        dead = set(m.gc.objects) - reachable(m)
        return Expect("jones.gc.complete", Outcome(value=len(dead), detail=(("freed", tuple(sorted(dead))),)), "")
    return expecting("gc_collect", expect)


def _all_roots_but_the_newest(m) -> set[int]:
    gc = m.gc
    roots = gc.roots
    if roots:
        gc.roots = set(roots) - {max(roots)}
    try:
        return gc.reachable()
    finally:
        gc.roots = roots


def _referenced(m) -> set[int]:
    objs = m.gc.objects
    alive = set(objs)
    changed = True
    while changed:
        changed = False
        for h in list(alive):
            referenced = h in m.gc.roots or any(h in objs[o].refs for o in alive)
            if not referenced:
                alive.discard(h)
                changed = True
    return alive


class GcMissesRoot(PhysModel):
    """Marking starts from every root but the newest one."""

    RULES = with_rules(gc_collect=_collects(_all_roots_but_the_newest))


class RefcountGc(PhysModel):
    """A reference-counting collector: frees objects no root or object refers to, so cycles leak."""

    RULES = with_rules(gc_collect=_collects(_referenced))


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

    RULES = with_rules(dma_alloc_coherent=expecting(
        "dma_alloc_coherent", lambda m, size, dma_mask=0xFFFFFFFF: dma.expect_dma_alloc_coherent(m, size, (1 << 64) - 1)))


def _packed_vmalloc(m, size: int) -> Expect:
    e = vmalloc.expect_vmalloc(m, size)
    if m.vm and e.default.value:
        last_start, last_end, area = list(m.vm.items())[-1]
        return Expect(e.clause, Outcome(value=last_end - 4096, detail=e.default.detail), e.describe,
                      predicate=e.predicate, blame_by=e.blame_by)
    return e


class VmallocNoGuard(PhysModel):
    """vmalloc areas packed back to back, with no guard page between them."""

    RULES = with_rules(vmalloc=expecting("vmalloc", _packed_vmalloc))


class ArenaReuses(PhysModel):
    """A region whose bump pointer restarts at its base on every allocation."""

    RULES = with_rules(arena_alloc=applying("arena_alloc", lambda m, o, arena, size, align=16: None))


def _free_but_keep_counted(m, o: Outcome, pfn: int) -> None:
    if o.ok and pfn in m.pages:
        m.pages.discard(pfn)
        order, owner = m.buddy.allocated[pfn]
        m.frames.release(pfn, 1 << order, owner)
        m.buddy.coalesce(pfn, order)


class FreedButCounted(PhysModel):
    """buddy_free puts the block on the free lists but forgets to drop it from the allocated blocks."""

    RULES = with_rules(buddy_free=applying("buddy_free", _free_but_keep_counted))


def _forget_in_table(m, o: Outcome, cache: int, obj: int) -> None:
    c = m.caches.get(cache)
    if o.ok and c is not None:
        c.live.pop(obj, None)


class SlabMiscount(PhysModel):
    """kmem_cache_free forgets the object in the cache's table but not in its slab."""

    RULES = with_rules(kmem_cache_free=applying("kmem_cache_free", _forget_in_table))


def _into_newest_block(m, size: int) -> Expect:
    e = heap.expect_malloc(m, size)
    starts = m.heap.blocks._starts
    if starts:
        return Expect(e.clause, Outcome(value=starts[-1] + 16), e.describe, predicate=e.predicate,
                      blame_by=e.blame_by)
    return e


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

    RULES = with_rules(malloc=expecting("malloc", _into_newest_block))

    def __init__(self, machine=None):
        super().__init__(machine)
        self.heap.__class__ = self._RawHeap


def broken_target(cls: type[PhysModel], calls: frozenset[str] | None = None) -> PhysModelTarget:
    """A broken model run as a target: it answers with its own (wrong) choices."""
    return PhysModelTarget(f"broken[{cls.__name__}]", cls, calls)
