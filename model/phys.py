"""The phys layer's model: frames and NUMA, buddy, slab/kmalloc, vmalloc, DMA,
region/arena, a variable-size heap and a garbage-collected heap.

It follows ``model.expect.LayerModel``: ``expect`` computes what the clauses
allow for one call now (allocators choose addresses, so most answers are
*sets*: "any free, order-aligned block of the first zone that has one"),
``apply`` adopts the target's allowed choice, ``invariants`` reports every
broken law.  Each rule names its clause (specs/clauses_phys.py).

Worked example::

    b = buddy_alloc(1, 0)        # any free order-1 block of node 0's Normal zone
    buddy_free(b)                # 0; b's frames coalesce with their buddy again
    buddy_free(b)                # -1 EINVAL (linux.buddy.free-unallocated)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from memspec.consts import GFP
from memspec.records import Outcome

from .buddy import Buddy, order_for
from .expect import Expect, exactly
from .frames import MAX_ORDER, PAGE_SHIFT, FrameTable, Machine, Owner
from .gc import GC_ALIGN, GC_BASE, GC_SIZE, MAX_REFS, MAX_SIZE, GcHeap, GcObject, gc_round
from .heap import (ARENA_BASE, ARENA_MAX, HEAP_END, MAX_ALIGN, PROVENANCE_CLAUSE, PTRDIFF_MAX, SIZE_MAX, Arena, Contents,
                   Heap, fundamental_align)
from .intervals import IntervalMap
from .numa import BIND, DEFAULT, INTERLEAVE, LOCAL, MAX_PAGE, PREFERRED, NumaState, mask_nodes
from .slab import (KMALLOC_CLASSES, KMALLOC_MAX_CACHE, SLUB_MAX_ORDER, SLUB_MIN_OBJECTS, ZERO_SIZE_PTR, KmemCache,
                   kmalloc_class, slab_order)

PAGE = 1 << PAGE_SHIFT
VMALLOC_START = 0xFFFF_C900_0000_0000
VMALLOC_END = 0xFFFF_E900_0000_0000

OK0 = Outcome(value=0)
K_ENOMEM = Outcome(value=-1, errno="ENOMEM")
K_EINVAL = Outcome(value=-1, errno="EINVAL")
K_EFAULT = Outcome(value=-1, errno="EFAULT")
NULL_ENOMEM = Outcome(value=0, errno="ENOMEM")
NULL_EINVAL = Outcome(value=0, errno="EINVAL")

Check = tuple[str, Callable[[Outcome], str | None]]


def checked(clause: str, default: Outcome, describe: str, *checks: Check, impl_defined: bool = False) -> Expect:
    """An Expect whose outcome must pass every check; a refusal blames the first failing check's clause."""
    def first(o: Outcome) -> tuple[str, str] | None:
        for cid, f in checks:
            why = f(o)
            if why is not None:
                return cid, why
        return None

    def predicate(o: Outcome) -> str | None:
        bad = first(o)
        return None if bad is None else f"expected {describe}; {bad[1]}"

    def blame(o: Outcome) -> str:
        bad = first(o)
        return bad[0] if bad else clause

    return Expect(clause, default, describe, predicate=predicate, impl_defined=impl_defined, blame_by=blame,
                  covers=tuple(dict.fromkeys(cid for cid, _ in checks if cid)))


def not_failed(clause: str, what: str) -> Check:
    return (clause, lambda o: None if o.ok and o.value is not None and o.value != -1 else
            f"{what} was available, so the call may not fail; observed {o.describe()}")


def unknown(clause: str, why: str) -> Expect:
    return Expect(clause, Outcome(), why, unknown=True)


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@dataclass(slots=True)
class VmArea:
    size: int
    pfns: tuple[int, ...]


class PhysModel:
    """The whole phys layer: one machine, its allocators, one thread's NUMA policy."""

    # The judge lists per-process memory maps when a check fails; this layer has no processes.
    procs: tuple[str, ...] = ()

    def __init__(self, machine: Machine | None = None, glibc_malloc: bool = True,
                 slab_geometry: tuple[int, int] = (SLUB_MIN_OBJECTS, SLUB_MAX_ORDER)):
        self.machine = machine or Machine()
        # SLUB's slab_min_objects and slab_max_order: the target's own (fact ``phys_machine``), not a rule
        self.slab_geometry = slab_geometry
        # the heap follows glibc's own documented rules on top of C and POSIX (fact ``malloc_rules``)
        self.glibc_malloc = glibc_malloc
        self.frames = FrameTable(self.machine)
        self.buddy = Buddy(self.machine, self.frames)
        self.pages: set[int] = set()                         # blocks from buddy_alloc (freeable by buddy_free)
        self.caches: dict[int, KmemCache] = {}
        self.kmalloc_caches: dict[tuple[int, bool], KmemCache] = {}   # (size class, GFP_DMA) -> cache
        self.kmalloc_large: dict[int, int] = {}              # address -> pfn
        self.vm: IntervalMap[VmArea] = IntervalMap()         # [start, end + guard page)
        self.dma: dict[int, int] = {}                        # handle -> pfn
        self.numa = NumaState()
        self.heap = Heap()
        self.arenas: dict[int, Arena] = {}
        self.gc = GcHeap()
        self.gc_bound: dict[int, int] = {}                   # handle -> address bound set by the last compaction

    # -- LayerModel -----------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        return getattr(self, "_x_" + name)(*args)

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        f = getattr(self, "_a_" + name, None)
        if f is not None:
            f(outcome, *args)

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        pass

    def invariants(self) -> list[tuple[str, str]]:
        for check in self.INVARIANTS:
            bad = getattr(self, check)()
            if bad:
                return bad
        return []

    # Each invariant on its own, named after what it protects (the state machines call them one by one).
    INVARIANTS = ("no_frame_owned_twice", "buddy_blocks_aligned_and_coalesced", "free_plus_used_is_total",
                  "slab_counts_consistent", "live_heap_blocks_disjoint", "gc_sound_and_complete",
                  "bind_never_off_node")

    def no_frame_owned_twice(self) -> list[tuple[str, str]]:
        out = self.frames.violations[:]
        self.frames.violations.clear()
        return out

    def buddy_blocks_aligned_and_coalesced(self) -> list[tuple[str, str]]:
        return self.buddy.audit()

    def free_plus_used_is_total(self) -> list[tuple[str, str]]:
        return self.accounting()

    def slab_counts_consistent(self) -> list[tuple[str, str]]:
        for c in list(self.caches.values()) + list(self.kmalloc_caches.values()):
            bad = c.audit()
            if bad:
                return bad
            for pfn in c.slabs:
                if (self.frames.owner[pfn:pfn + (1 << c.order)] != Owner.SLAB).any():
                    return [("bonwick.slab.from-buddy", f"{c.name}: slab {pfn}'s frames are not owned by the slab")]
        return []

    def live_heap_blocks_disjoint(self) -> list[tuple[str, str]]:
        return self.heap.audit()

    def gc_sound_and_complete(self) -> list[tuple[str, str]]:
        return self.gc.audit()

    def bind_never_off_node(self) -> list[tuple[str, str]]:
        for pfn, mask in self.numa.bound:
            node = self.machine.node_of(pfn)
            if not mask >> node & 1:
                return [("numa.bind.no-spill", f"frame {pfn} on node {node} was allocated under MPOL_BIND to {mask:#x}")]
        return []

    def accounting(self) -> list[tuple[str, str]]:
        """free + allocated = total, per node."""
        # the buddy allocator counts its allocated frames per node as blocks come and go
        used = np.array(self.buddy.used, dtype=np.int64)
        for r in self.machine.reserved:
            used[self.machine.node_of(r)] += 1
        for n in range(self.machine.nodes):
            free = self.buddy.free_pages(n)
            if free + used[n] != self.machine.node_frames[n]:
                return [("memspec.phys.free-plus-used",
                         f"node {n}: {free} free + {used[n]} allocated != {self.machine.node_frames[n]} frames")]
        return []

    def observe(self) -> dict[str, Any]:
        """What a kernel would show: /proc/buddyinfo, free pages per node, /proc/slabinfo counts."""
        return {
            "buddyinfo": self.buddy.buddyinfo(),
            "nr_free": [self.buddy.free_pages(n) for n in range(self.machine.nodes)],
            "slabinfo": {c.name: list(c.info()) for c in list(self.caches.values()) + list(self.kmalloc_caches.values())},
        }

    # -- helpers ----------------------------------------------------------------

    def _nodes(self, node: int, gfp: int) -> list[int]:
        start = self.numa.cpu_node if node < 0 else node
        if gfp & GFP["GFP_THISNODE"]:
            return [start]
        return self.machine.fallback(start)

    def _block_checks(self, order: int, zone, clause_zone: str, shift: int = 0) -> list[Check]:
        """A value names a free, aligned block of ``order`` in ``zone`` (value >> shift is its pfn)."""
        n = 1 << order

        def aligned(o: Outcome) -> str | None:
            pfn = o.value >> shift if o.value is not None else -1
            if o.value is None or o.value & ((1 << shift) - 1) or pfn % n:
                return f"{o.describe()} does not start an order-{order} aligned block"
            return None

        def free(o: Outcome) -> str | None:
            pfn = o.value >> shift
            if not self.buddy.can_take(pfn, order):
                return f"frames {pfn}..{pfn + n - 1} are not all free"
            return None

        def in_zone(o: Outcome) -> str | None:
            pfn = o.value >> shift
            if pfn not in zone:
                z = self.machine.zone_of(pfn)
                return f"pfn {pfn} is in {z.label if z else 'no zone'}, but {zone.label} had a free block"
            return None

        return [not_failed("linux.buddy.no-spurious-failure", f"an order-{order} block in {zone.label}"),
                ("linux.buddy.block-aligned", aligned), ("linux.buddy.alloc-from-free", free),
                (clause_zone, in_zone)]

    # -- buddy ----------------------------------------------------------------

    def _x_buddy_alloc(self, order: int, node: int = -1, gfp: int = 0, owner: int = Owner.KERNEL) -> Expect:
        if order < 0 or order > MAX_ORDER:
            return replace(exactly("linux.buddy.order-too-large", K_ENOMEM),
                           covers=("linux.buddy.order-too-large", "seed.buddy.sizes-4k-4m"))
        if node < -1 or node >= self.machine.nodes or owner not in set(Owner) - {Owner.FREE}:
            return exactly("linux.buddy.einval", K_EINVAL)
        dma = bool(gfp & GFP["GFP_DMA"])
        zones = self.buddy.zonelist(self._nodes(node, gfp), dma_only=dma)
        zone = self.buddy.first_zone_with(zones, order)
        if zone is None:
            return exactly("linux.buddy.enomem-when-exhausted", K_ENOMEM)
        clause_zone = ("linux.gfp.dma-zone" if dma else "linux.gfp.thisnode" if gfp & GFP["GFP_THISNODE"]
                       else "linux.buddy.zonelist-order")
        pick = self.buddy.pick(zone, order)
        return checked("linux.buddy.alloc-from-free", Outcome(value=pick),
                       f"a free order-{order} block in {zone.label}", *self._block_checks(order, zone, clause_zone))

    def _a_buddy_alloc(self, o: Outcome, order: int, node: int = -1, gfp: int = 0, owner: int = Owner.KERNEL) -> None:
        if o.ok and o.value is not None and o.value >= 0:
            self.buddy.take(o.value, order, Owner(owner))
            self.pages.add(o.value)

    def _x_buddy_free(self, pfn: int) -> Expect:
        if pfn in self.pages:
            return exactly("linux.buddy.free", OK0)
        return exactly("linux.buddy.free-unallocated", K_EINVAL)

    def _a_buddy_free(self, o: Outcome, pfn: int) -> None:
        if o.ok and pfn in self.pages:
            self.pages.discard(pfn)
            self.buddy.give(pfn)

    def _x_nr_free_pages(self, node: int = -1) -> Expect:
        if node < -1 or node >= self.machine.nodes:
            return exactly("linux.buddy.einval", K_EINVAL)
        return exactly("memspec.phys.free-plus-used", Outcome(value=self.buddy.free_pages(node)))

    def _x_buddy_largest(self, node: int = -1) -> Expect:
        if node < -1 or node >= self.machine.nodes:
            return exactly("linux.buddy.einval", K_EINVAL)
        return exactly("linux.buddy.coalesce", Outcome(value=self.buddy.largest(node)))

    # -- slab -------------------------------------------------------------------

    def _x_kmem_cache_create(self, size: int, align: int = 8) -> Expect:
        if size < 1 or not is_pow2(align):
            return exactly("memspec.slab.create-einval-args", K_EINVAL)
        if slab_order(KmemCache.object_size(size, align), *self.slab_geometry) is None:
            # linux.slab.create-einval: past KMALLOC_MAX_SIZE no slab order up to MAX_PAGE_ORDER holds an object
            return exactly("linux.slab.create-einval", K_EINVAL)
        taken = set(self.caches)
        return checked("linux.slab.create", Outcome(value=max(taken, default=0) + 1), "a new cache handle",
                       ("linux.slab.create", lambda o: None if o.ok and o.value is not None and o.value > 0
                        and o.value not in taken else f"{o.describe()} is not a fresh positive handle"))

    def _a_kmem_cache_create(self, o: Outcome, size: int, align: int = 8) -> None:
        if o.ok and o.value is not None and o.value > 0:
            if size >= 1 and is_pow2(align) and slab_order(KmemCache.object_size(size, align),
                                                           *self.slab_geometry) is not None:
                self.caches[o.value] = KmemCache.make(o.value, f"cache-{o.value}", size, align, *self.slab_geometry)

    def _slab_expect(self, c: KmemCache, gfp: int) -> Expect:
        if c.has_free():
            def reuse(o: Outcome) -> str | None:
                hit = c.slab_of(o.value)
                if hit is None:
                    return (f"{o.value:#x} is not an object of {c.name}'s slabs, which still have free objects "
                            "(a new slab is taken only when none has room)")
                return None

            def once(o: Outcome) -> str | None:
                return f"object {o.value:#x} of {c.name} is already live" if o.value in c.live else None

            return checked("bonwick.slab.reuse", Outcome(value=c.pick()), f"a free object of {c.name}",
                           not_failed("bonwick.slab.no-spurious-failure", f"a free object of {c.name}"),
                           ("bonwick.slab.reuse", reuse), ("bonwick.slab.object-once", once))
        dma = bool(gfp & GFP["GFP_DMA"])
        zones = self.buddy.zonelist(self._nodes(-1, gfp), dma_only=dma)
        zone = self.buddy.first_zone_with(zones, c.order)
        if zone is None:
            return exactly("bonwick.slab.grow-from-buddy", K_ENOMEM)
        pick = self.buddy.pick(zone, c.order)
        block = self._block_checks(c.order, zone, "linux.buddy.zonelist-order", shift=PAGE_SHIFT)

        def as_slab(o: Outcome) -> Outcome:
            return Outcome(value=((o.value >> PAGE_SHIFT) & ~((1 << c.order) - 1)) << PAGE_SHIFT)

        def boundary(o: Outcome) -> str | None:
            off = o.value - as_slab(o).value
            if off % c.objsize or off // c.objsize >= c.per_slab:
                return f"{o.value:#x} is not an object boundary of a {c.objsize}-byte object slab"
            return None

        return checked("bonwick.slab.grow-from-buddy", Outcome(value=pick << PAGE_SHIFT),
                       f"an object in a new slab of order {c.order} from {zone.label}",
                       not_failed("bonwick.slab.no-spurious-failure", f"an order-{c.order} block for a new slab"),
                       ("bonwick.slab.grow-from-buddy", boundary),
                       *[(cid, (lambda f: lambda o: f(as_slab(o)))(f)) for cid, f in block[1:]])

    def _slab_apply(self, c: KmemCache, o: Outcome) -> None:
        if not o.ok or o.value is None or o.value <= 0:
            return
        spfn = (o.value >> PAGE_SHIFT) & ~((1 << c.order) - 1)
        if spfn not in c.slabs:
            from .slab import Slab
            self.buddy.take(spfn, c.order, Owner.SLAB)
            c.slabs[spfn] = Slab(spfn)
        s, idx = c.slab_of(o.value) or (None, None)
        if s is None:
            return
        if idx in s.live:
            self.frames.violations.append(("bonwick.slab.object-once", f"{c.name}: object {o.value:#x} handed out twice"))
        s.live.add(idx)
        c.live[o.value] = spfn

    def _slab_free(self, c: KmemCache, obj: int) -> None:
        spfn = c.live.pop(obj)
        s, idx = c.slab_of(obj)  # type: ignore[misc]
        s.live.discard(idx)

    def _x_kmem_cache_alloc(self, cache: int, gfp: int = 0) -> Expect:
        c = self.caches.get(cache)
        if c is None:
            return exactly("linux.slab.bad-cache", K_EINVAL)
        return self._slab_expect(c, gfp)

    def _a_kmem_cache_alloc(self, o: Outcome, cache: int, gfp: int = 0) -> None:
        if cache in self.caches:
            self._slab_apply(self.caches[cache], o)

    def _x_kmem_cache_free(self, cache: int, obj: int) -> Expect:
        c = self.caches.get(cache)
        if c is None:
            return exactly("linux.slab.bad-cache", K_EINVAL)
        if obj in c.live:
            return exactly("bonwick.slab.free", OK0)
        return exactly("linux.slub.free-not-live", K_EINVAL)

    def _a_kmem_cache_free(self, o: Outcome, cache: int, obj: int) -> None:
        c = self.caches.get(cache)
        if o.ok and c is not None and obj in c.live:
            self._slab_free(c, obj)

    def _x_kmem_cache_shrink(self, cache: int) -> Expect:
        c = self.caches.get(cache)
        if c is None:
            return exactly("linux.slab.bad-cache", K_EINVAL)
        n = sum(1 << c.order for s in c.slabs.values() if not s.live)
        return exactly("bonwick.slab.shrink", Outcome(value=n))

    def _a_kmem_cache_shrink(self, o: Outcome, cache: int) -> None:
        c = self.caches.get(cache)
        if c is None or not o.ok:
            return
        for pfn in [p for p, s in c.slabs.items() if not s.live]:
            del c.slabs[pfn]
            self.buddy.give(pfn)

    # -- kmalloc --------------------------------------------------------------

    def _kcache(self, size: int, gfp: int = 0) -> KmemCache:
        """The kmalloc cache serving ``size``: a GFP_DMA request has caches of its own (dma-kmalloc-N,
        mm/slab_common.c kmalloc_type), so its objects never come from a Normal-zone slab and a
        kmalloc-N slab with room never obliges it (linux.gfp.dma-zone)."""
        cls = kmalloc_class(size)
        dma = bool(gfp & GFP["GFP_DMA"])
        c = self.kmalloc_caches.get((cls, dma))
        if c is None:
            c = self.kmalloc_caches[(cls, dma)] = KmemCache.make(
                -(cls | dma << 20), f"{'dma-' if dma else ''}kmalloc-{cls}", cls, cls if is_pow2(cls) else 8,
                *self.slab_geometry)
        return c

    def _x_kmalloc(self, size: int, gfp: int = 0) -> Expect:
        if size == 0:
            return exactly("linux.kmalloc.zero-size-ptr", Outcome(value=ZERO_SIZE_PTR))
        if size < 0:
            return exactly("linux.kmalloc.too-large", K_ENOMEM)
        if size <= KMALLOC_MAX_CACHE:
            c = self._kcache(size, gfp)
            e = self._slab_expect(c, gfp)
            if not is_pow2(c.objsize) or e.predicate is None:
                return e
            inner, blame = e.predicate, e.blame

            def natural(o: Outcome) -> str | None:
                if o.ok and o.value and o.value > 0 and o.value % c.objsize:
                    return f"{o.value:#x} is not aligned to its size class {c.objsize}"
                return None
            return replace(e, predicate=lambda o: inner(o) or natural(o),
                           blame_by=lambda o: blame(o) if inner(o) else "linux.kmalloc.pow2-aligned",
                           covers=e.covers + ("linux.kmalloc.pow2-aligned",))
        order = order_for(size)
        if order > MAX_ORDER:
            return exactly("linux.kmalloc.too-large", K_ENOMEM)
        zones = self.buddy.zonelist(self._nodes(-1, gfp), dma_only=bool(gfp & GFP["GFP_DMA"]))
        zone = self.buddy.first_zone_with(zones, order)
        if zone is None:
            return exactly("linux.kmalloc.large-from-buddy", K_ENOMEM)
        return checked("linux.kmalloc.large-from-buddy", Outcome(value=self.buddy.pick(zone, order) << PAGE_SHIFT),
                       f"a free order-{order} block in {zone.label}",
                       *self._block_checks(order, zone, "linux.buddy.zonelist-order", shift=PAGE_SHIFT))

    def _a_kmalloc(self, o: Outcome, size: int, gfp: int = 0) -> None:
        if not o.ok or o.value is None or o.value <= 0 or size <= 0:
            return
        if size <= KMALLOC_MAX_CACHE:
            self._slab_apply(self._kcache(size, gfp), o)
        else:
            pfn = o.value >> PAGE_SHIFT
            self.buddy.take(pfn, order_for(size), Owner.KERNEL)
            self.kmalloc_large[o.value] = pfn

    def _kmalloc_owner(self, obj: int) -> KmemCache | None:
        for c in self.kmalloc_caches.values():
            if obj in c.live:
                return c
        return None

    def _x_kfree(self, obj: int) -> Expect:
        if obj in (0, ZERO_SIZE_PTR) or self._kmalloc_owner(obj) or obj in self.kmalloc_large:
            return exactly("linux.kmalloc.kfree", OK0)
        return exactly("linux.slub.free-not-live", K_EINVAL)

    def _a_kfree(self, o: Outcome, obj: int) -> None:
        if not o.ok:
            return
        c = self._kmalloc_owner(obj)
        if c is not None:
            self._slab_free(c, obj)
        elif obj in self.kmalloc_large:
            self.buddy.give(self.kmalloc_large.pop(obj))

    def _x_ksize(self, obj: int) -> Expect:
        if obj == ZERO_SIZE_PTR:
            return exactly("linux.kmalloc.ksize", OK0)
        c = self._kmalloc_owner(obj)
        if c is not None:
            return exactly("linux.kmalloc.ksize", Outcome(value=c.objsize))
        if obj in self.kmalloc_large:
            # the request got the smallest block of 2^order pages that holds it (5 KB -> 8 KB)
            order, _ = self.buddy.allocated[self.kmalloc_large[obj]]
            return replace(exactly("seed.buddy.internal-frag-5k-8k", Outcome(value=PAGE << order)),
                           covers=("seed.buddy.internal-frag-5k-8k", "linux.kmalloc.ksize"))
        return exactly("linux.slub.free-not-live", K_EINVAL)

    # -- vmalloc ------------------------------------------------------------------

    def _x_vmalloc(self, size: int) -> Expect:
        if size <= 0:
            return exactly("linux.vmalloc.size0", K_ENOMEM)
        n = (size + PAGE - 1) // PAGE
        span = n * PAGE + PAGE          # the area and its guard page
        if self.frames.free_count() < n or span > VMALLOC_END - VMALLOC_START:
            return exactly("seed.vmalloc.physically-scattered", K_ENOMEM)
        zones = self.buddy.zonelist(self.machine.fallback(self.numa.cpu_node))
        # the model's own choice: the lowest free frames, zone by zone in zonelist order
        pref: list[int] = []
        for z in zones:
            rows = np.flatnonzero(self.frames.owner[z.start:z.end] == Owner.FREE)[:n - len(pref)]
            pref += (rows + z.start).tolist()
            if len(pref) >= n:
                break
        start = VMALLOC_START
        for s, e, _ in self.vm.items():
            if start + span <= s:
                break
            start = max(start, e)
        default = Outcome(value=start, detail=(("pfns", tuple(pref)),))

        def range_ok(o: Outcome) -> str | None:
            v = o.value
            if v % PAGE or not VMALLOC_START <= v <= VMALLOC_END - span:
                return f"{o.describe()} is not a page-aligned address of the vmalloc range"
            return None

        def guard(o: Outcome) -> str | None:
            if self.vm.any_overlap(o.value, o.value + span):
                return f"[{o.value:#x}, +{span:#x}) overlaps another area or its guard page"
            return None

        def frames_ok(o: Outcome) -> str | None:
            pfns = dict(o.detail).get("pfns")
            if pfns is None:
                return None   # the target does not report its frames: nothing to check
            pfns = [int(p) for p in pfns]
            if len(pfns) != n or len(set(pfns)) != n or not all(self.frames.is_free(p, 1) for p in pfns):
                return f"the area's {n} pages must be backed by {n} distinct free frames, got {pfns[:8]}"
            return None

        return checked("seed.vmalloc.virtually-contiguous", default, f"a {n}-page vmalloc area",
                       not_failed("seed.vmalloc.physically-scattered", f"{n} free frames (contiguous or not)"),
                       ("seed.vmalloc.virtually-contiguous", range_ok), ("linux.vmalloc.guard-page", guard),
                       ("seed.vmalloc.physically-scattered", frames_ok))

    def _a_vmalloc(self, o: Outcome, size: int) -> None:
        if not o.ok or o.value is None or o.value <= 0 or size <= 0:
            return
        n = (size + PAGE - 1) // PAGE
        pfns = dict(o.detail).get("pfns")
        if pfns is None:
            # the target did not say which frames back the area, and the model's own choice
            # may not exist (the target succeeded where the model would have failed)
            pfns = dict(self._x_vmalloc(size).default.detail).get("pfns", ())
        pfns = tuple(int(p) for p in pfns)
        for p in pfns:
            self.buddy.take(p, 0, Owner.KERNEL)
        self.vm.set(o.value, o.value + n * PAGE + PAGE, VmArea(size, pfns))

    def _x_vfree(self, addr: int) -> Expect:
        hit = self.vm.find(addr)
        if hit and hit[0] == addr:
            return exactly("linux.vmalloc.vfree", OK0)
        return exactly("linux.vmalloc.vfree-not-area", K_EINVAL)

    def _a_vfree(self, o: Outcome, addr: int) -> None:
        hit = self.vm.find(addr)
        if o.ok and hit and hit[0] == addr:
            for p in hit[2].pfns:
                self.buddy.give(p)
            self.vm.remove(hit[0], hit[1])

    def _x_vmalloc_to_pfn(self, addr: int) -> Expect:
        hit = self.vm.find(addr)
        if hit is not None:
            i = (addr - hit[0]) // PAGE
            if i < len(hit[2].pfns):
                return exactly("seed.vmalloc.virtually-contiguous", Outcome(value=hit[2].pfns[i]))
        return exactly("linux.vmalloc.to-pfn-unmapped", K_EFAULT)

    # -- DMA --------------------------------------------------------------------

    def _x_dma_alloc_coherent(self, size: int, dma_mask: int = 0xFFFFFFFF) -> Expect:
        if size <= 0:
            # dma_alloc_coherent only returns NULL: which errno the protocol's -1 carries is the target's
            return checked("linux.dma.size0", K_EINVAL, "-1 (EINVAL or ENOMEM)",
                           ("linux.dma.size0", lambda o: None if o.value == -1 and o.errno in ("EINVAL", "ENOMEM")
                            and o.signal is None else f"no buffer of size 0 exists; observed {o.describe()}"))
        order = order_for(size)
        if order > MAX_ORDER:
            return exactly("linux.dma.fails-cleanly", K_ENOMEM)
        limit = (dma_mask + 1) >> PAGE_SHIFT       # first pfn the device cannot reach
        zones = self.buddy.zonelist(self.machine.fallback(self.numa.cpu_node), below=limit)
        zone = self.buddy.first_zone_with(zones, order, limit)
        if zone is None:
            return exactly("linux.dma.fails-cleanly", K_ENOMEM)
        pick = self.buddy.pick(zone, order, limit)
        n = 1 << order

        def below(o: Outcome) -> str | None:
            end = o.value + (PAGE << order) - 1
            if end > dma_mask:
                return f"buffer ends at {end:#x}, beyond the device's mask {dma_mask:#x}"
            return None

        def contiguous(o: Outcome) -> str | None:
            pfn = o.value >> PAGE_SHIFT
            if o.value % (PAGE << order) or not self.buddy.can_take(pfn, order):
                return f"frames {pfn}..{pfn + n - 1} are not one free aligned order-{order} block"
            return None

        return checked("linux.dma.contiguous", Outcome(value=pick << PAGE_SHIFT),
                       f"{n} contiguous free frames below {dma_mask:#x}",
                       not_failed("linux.dma.fails-cleanly", f"a contiguous run of {n} frames below the mask"),
                       ("linux.dma.below-mask", below), ("linux.dma.contiguous", contiguous))

    def _a_dma_alloc_coherent(self, o: Outcome, size: int, dma_mask: int = 0xFFFFFFFF) -> None:
        if o.ok and o.value is not None and o.value > 0 and size > 0:
            pfn = o.value >> PAGE_SHIFT
            self.buddy.take(pfn, order_for(size), Owner.KERNEL)
            self.dma[o.value] = pfn

    def _x_dma_free_coherent(self, handle: int) -> Expect:
        if handle in self.dma:
            return exactly("linux.dma.free", OK0)
        return exactly("linux.dma.free-unallocated", K_EINVAL)

    def _a_dma_free_coherent(self, o: Outcome, handle: int) -> None:
        if o.ok and handle in self.dma:
            self.buddy.give(self.dma.pop(handle))

    # -- NUMA -----------------------------------------------------------------

    def _x_set_mempolicy(self, mode: int, nodemask: int = 0) -> Expect:
        online = (1 << self.machine.nodes) - 1
        eff = nodemask & online
        if mode not in (DEFAULT, PREFERRED, BIND, INTERLEAVE, LOCAL) or nodemask < 0:
            return exactly("numa.set_mempolicy.einval-mode", K_EINVAL)
        if mode in (DEFAULT, LOCAL) and nodemask:
            return exactly("numa.set_mempolicy.einval-default-mask", K_EINVAL)
        if mode in (BIND, INTERLEAVE) and not eff or mode == PREFERRED and nodemask and not eff:
            return exactly("numa.set_mempolicy.einval-empty", K_EINVAL)
        return exactly("numa.set_mempolicy.ok", OK0)

    def _a_set_mempolicy(self, o: Outcome, mode: int, nodemask: int = 0) -> None:
        if o.ok:
            self.numa.mode = mode
            self.numa.mask = nodemask & ((1 << self.machine.nodes) - 1)
            self.numa.il_prev = -1

    def _x_migrate_thread(self, node: int) -> Expect:
        if 0 <= node < self.machine.nodes:
            return exactly("numa.migrate.ok", OK0)
        return exactly("numa.migrate.einval", K_EINVAL)

    def _a_migrate_thread(self, o: Outcome, node: int) -> None:
        if o.ok and 0 <= node < self.machine.nodes:
            self.numa.cpu_node = node

    def _x_numa_touch(self, page: int) -> Expect:
        if page < 0 or page >= MAX_PAGE:
            return exactly("numa.touch.einval", K_EINVAL)
        if page in self.numa.pages:
            return exactly("numa.first-touch.stays", Outcome(value=self.numa.pages[page]))
        intended, nodes, strict, clause = self.numa.plan(self.machine.fallback)
        zones = self.buddy.zonelist(nodes)
        zone = self.buddy.first_zone_with(zones, 0)
        if zone is None:
            return exactly("numa.bind.enomem" if strict else "linux.buddy.enomem-when-exhausted", K_ENOMEM)
        return checked(clause, Outcome(value=self.buddy.pick(zone, 0)), f"a free frame in {zone.label}",
                       *self._block_checks(0, zone, clause))

    def _a_numa_touch(self, o: Outcome, page: int) -> None:
        st = self.numa
        if page < 0 or page >= MAX_PAGE:
            return
        if page not in st.pages:
            if not o.ok or o.value is None or o.value < 0:
                return
            intended, _, _, _ = st.plan(self.machine.fallback)
            pfn = o.value
            self.buddy.take(pfn, 0, Owner.ANON)
            st.pages[page] = pfn
            node = self.machine.node_of(pfn)
            st.counters[2 if node == intended else 3] += 1
            if st.mode == INTERLEAVE:
                st.il_prev = intended
                if node == intended:
                    st.counters[4] += 1
            if st.mode == BIND:
                st.bound.append((pfn, st.mask))
        node = self.machine.node_of(st.pages[page])
        st.counters[0 if node == st.cpu_node else 1] += 1

    def _x_numa_stat(self, counter: int) -> Expect:
        if not 0 <= counter < len(self.numa.counters):
            return exactly("numa.stat.einval", K_EINVAL)
        return exactly("seed.numa.remote-after-migration" if counter in (0, 1) else "numa.stat.counts",
                       Outcome(value=self.numa.counters[counter]))

    # -- region/arena -----------------------------------------------------------

    def _x_arena_create(self, capacity: int) -> Expect:
        if capacity <= 0 or capacity > ARENA_MAX:
            return exactly("hanson.arena.create-einval", NULL_EINVAL)
        cap = (capacity + PAGE - 1) // PAGE * PAGE
        top = max((a.base + (a.capacity + PAGE - 1) // PAGE * PAGE for a in self.arenas.values()), default=ARENA_BASE)

        def disjoint(o: Outcome) -> str | None:
            v = o.value
            if not v or v % PAGE:
                return f"{o.describe()} is not a page-aligned region base"
            for a in self.arenas.values():
                if v < a.end and a.base < v + capacity:
                    return f"[{v:#x}, +{capacity:#x}) overlaps the region at {a.base:#x}"
            return None
        return checked("hanson.arena.disjoint", Outcome(value=top), "a new region",
                       not_failed("hanson.arena.disjoint", "address space"), ("hanson.arena.disjoint", disjoint))

    def _a_arena_create(self, o: Outcome, capacity: int) -> None:
        if o.ok and o.value and 0 < capacity <= ARENA_MAX:
            self.arenas[o.value] = Arena(o.value, capacity, o.value)

    def _x_arena_alloc(self, arena: int, size: int, align: int = 16) -> Expect:
        a = self.arenas.get(arena)
        if a is None or size < 0 or not is_pow2(align):
            return exactly("hanson.arena.einval", NULL_EINVAL)
        first = (a.cursor + align - 1) // align * align
        if first + size > a.end:
            return exactly("hanson.arena.enomem-when-full", NULL_ENOMEM)

        def bump(o: Outcome) -> str | None:
            v = o.value
            if not v or v % align:
                return f"{o.describe()} is not {align}-byte aligned"
            if v < a.cursor or v + size > a.end:
                return (f"[{v:#x}, +{size}) is not in the region's unused part "
                        f"[{a.cursor:#x}, {a.end:#x}) (earlier objects live until a reset)")
            return None
        return checked("hanson.arena.bump", Outcome(value=first), f"{size} bytes from the region",
                       not_failed("hanson.arena.enomem-when-full", f"{size} bytes of room"),
                       ("hanson.arena.bump", bump))

    def _a_arena_alloc(self, o: Outcome, arena: int, size: int, align: int = 16) -> None:
        a = self.arenas.get(arena)
        if a is not None and o.ok and o.value:
            a.cursor = o.value + size
            a.objects += 1

    def _x_arena_reset(self, arena: int) -> Expect:
        return exactly("hanson.arena.reset", OK0) if arena in self.arenas else exactly("hanson.arena.einval", K_EINVAL)

    def _a_arena_reset(self, o: Outcome, arena: int) -> None:
        a = self.arenas.get(arena)
        if a is not None and o.ok:
            a.cursor, a.objects = a.base, 0

    def _x_arena_destroy(self, arena: int) -> Expect:
        return exactly("hanson.arena.reset", OK0) if arena in self.arenas else exactly("hanson.arena.einval", K_EINVAL)

    def _a_arena_destroy(self, o: Outcome, arena: int) -> None:
        if o.ok:
            self.arenas.pop(arena, None)

    # -- the variable-size heap ---------------------------------------------------

    def _block_expect(self, clause: str, size: int, align: int, default_align: int, ignore: int | None = None,
                      may_be_null: bool = False, impl: bool = False, align_clause: str | None = None,
                      null_clause: str = "posix.malloc.enomem", null_errno: tuple[str, ...] = ("ENOMEM",)) -> Expect:
        """A fresh block: non-null, ``align``-aligned, overlapping no live block (but ``ignore``);
        NULL is always allowed (insufficient storage) with an errno in ``null_errno`` (POSIX: ENOMEM),
        or with any errno when ``may_be_null``."""
        def null_ok(o: Outcome) -> str | None:
            if o.value == 0 and o.signal is None:
                if may_be_null or o.errno in null_errno:
                    return None
                return f"a NULL result must set errno to {' or '.join(null_errno)}, observed {o.describe()}"
            if not o.ok or o.value is None:
                return f"observed {o.describe()}"
            return None

        def aligned(o: Outcome) -> str | None:
            if o.value and o.value % align:
                return f"{o.value:#x} is not {align}-byte aligned"
            return None

        def disjoint(o: Outcome) -> str | None:
            if o.value:
                if o.value + max(size, 1) > 1 << 64:
                    return f"[{o.value:#x}, +{size}) wraps around the address space"
                other = self.heap.overlaps(o.value, size, ignore)
                if other is not None:
                    return f"[{o.value:#x}, +{max(size, 1)}) overlaps the live block at {other:#x}"
            return None

        pick = self.heap.pick(size, max(align, default_align)) if size <= PTRDIFF_MAX else None
        default = Outcome(value=pick) if pick is not None else NULL_ENOMEM
        return checked(clause, default, f"a {align}-aligned block of {size} bytes overlapping no live block",
                       (null_clause, null_ok), (align_clause or clause, aligned),
                       ("c11.malloc.disjoint", disjoint), impl_defined=impl)

    def _fresh(self, clause: str | None, size: int, ignore: int | None = None, may_be_null: bool = False,
               impl: bool = False, null_clause: str = "posix.malloc.enomem") -> Expect:
        """A malloc/calloc/realloc block: aligned for every fundamental type that fits in ``size``
        (16 from 16 bytes up; ``malloc(8)`` may be 8-aligned: C23 §7.24.3 p1, DR 445)."""
        small = size < MAX_ALIGN
        align_clause = "c23.malloc.aligned-small-size" if small else "c11.malloc.aligned-max-align-t"
        return self._block_expect(clause or align_clause, size, fundamental_align(size), MAX_ALIGN, ignore=ignore,
                                  may_be_null=may_be_null, impl=impl, null_clause=null_clause,
                                  align_clause=align_clause)

    def _too_big(self, size: int, null_clause: str) -> Expect:
        """A request above PTRDIFF_MAX.  glibc fails it with ENOMEM by its own rule; any other allocator
        is held to POSIX only: no block that large fits the address space, and a NULL carries ENOMEM."""
        if self.glibc_malloc:
            return exactly("glibc.malloc.enomem-over-ptrdiff-max", NULL_ENOMEM)
        return checked(null_clause, NULL_ENOMEM, f"NULL with errno ENOMEM (no block of {size & SIZE_MAX:#x} bytes fits)",
                       (null_clause, lambda o: None if o.value == 0 and o.signal is None and o.errno == "ENOMEM"
                        else f"a NULL result must set errno to ENOMEM, observed {o.describe()}"))

    def _x_malloc(self, size: int) -> Expect:
        if size > PTRDIFF_MAX or size < 0:
            return self._too_big(size, "posix.malloc.enomem")
        if size == 0:
            return self._fresh("c11.malloc.size0-impl-defined", 0, may_be_null=True, impl=True)
        return self._fresh(None, size)

    def _adopt(self, o: Outcome, size: int, contents: Contents) -> None:
        if o.ok and o.value:
            self.heap.add(o.value, size, contents)

    def _a_malloc(self, o: Outcome, size: int) -> None:
        if 0 <= size <= PTRDIFF_MAX:
            self._adopt(o, size, Contents(size, zero=False))

    def _x_calloc(self, nmemb: int, size: int) -> Expect:
        if nmemb < 0 or size < 0 or nmemb * size > SIZE_MAX:
            return checked("c11.calloc.overflow", NULL_ENOMEM, "NULL with errno ENOMEM",
                           ("c11.calloc.overflow", lambda o: None if o.value == 0 and o.signal is None
                            else f"nmemb * size overflows size_t, so the result must be NULL; observed {o.describe()}"),
                           ("posix.calloc.enomem", lambda o: None if o.errno == "ENOMEM"
                            else f"a NULL result must set errno to ENOMEM, observed {o.describe()}"))
        total = nmemb * size
        if total > PTRDIFF_MAX:
            return self._too_big(total, "posix.calloc.enomem")
        if total == 0:
            return self._fresh("c11.malloc.size0-impl-defined", 0, may_be_null=True, impl=True,
                               null_clause="posix.calloc.enomem")
        return self._fresh(None, total, null_clause="posix.calloc.enomem")

    def _a_calloc(self, o: Outcome, nmemb: int, size: int) -> None:
        if nmemb >= 0 and size >= 0 and nmemb * size <= PTRDIFF_MAX:
            self._adopt(o, nmemb * size, Contents(nmemb * size, zero=True))

    def _x_realloc(self, ptr: int, size: int) -> Expect:
        if ptr == 0:
            return self._x_malloc(size)
        old = self.heap.live(ptr)
        if old is None:
            return unknown("c11.free.undefined-non-live", "undefined: realloc of a pointer that is not live")
        if size > PTRDIFF_MAX or size < 0:
            return self._too_big(size, "posix.realloc.enomem")
        if size == 0:
            return self._fresh("c11.realloc.size0-impl-defined", 0, ignore=ptr, may_be_null=True, impl=True)
        e = self._fresh(None, size, ignore=ptr, null_clause="posix.realloc.enomem")
        # the model's own choice: grow or shrink in place when the room is there
        if ptr + size <= HEAP_END and self.heap.overlaps(ptr, size, ignore=ptr) is None:
            e = Expect(e.clause, Outcome(value=ptr), e.describe, predicate=e.predicate, blame_by=e.blame_by,
                       covers=e.covers)
        return e

    def _a_realloc(self, o: Outcome, ptr: int, size: int) -> None:
        if ptr == 0:
            self._a_malloc(o, size)
            return
        old = self.heap.live(ptr)
        if old is None or size < 0 or size > PTRDIFF_MAX:
            return
        if o.value == 0:
            if size == 0:
                self.heap.remove(ptr)    # glibc (and C17's allowed choice): realloc(p, 0) freed p
            return                       # a failure leaves the old block untouched
        if o.ok and o.value:
            self.heap.remove(ptr)
            self.heap.add(o.value, size, old.contents.moved(size))

    def _x_free(self, ptr: int) -> Expect:
        if ptr == 0:
            return exactly("c11.free.null-noop", Outcome())
        if self.heap.live(ptr) is None:
            return unknown("c11.free.undefined-non-live", "undefined: free of a pointer that is not live")
        return exactly("c11.free.deallocates", Outcome())

    def _a_free(self, o: Outcome, ptr: int) -> None:
        if ptr:
            self.heap.remove(ptr)

    def _x_posix_memalign(self, alignment: int, size: int) -> Expect:
        if alignment % 8 or not is_pow2(alignment):
            return exactly("posix.posix_memalign.einval-not-power-of-two" if alignment % 8 == 0
                           else "posix.posix_memalign.einval-not-multiple-of-pointer", NULL_EINVAL)
        if size > PTRDIFF_MAX or size < 0:
            return self._too_big(size, "posix.posix_memalign.enomem")
        if size == 0:
            return self._block_expect("posix.posix_memalign.size0-impl-defined", 0, alignment, MAX_ALIGN,
                                      may_be_null=True, impl=True, align_clause="posix.posix_memalign.aligned")
        return self._block_expect("posix.posix_memalign.aligned", size, alignment, MAX_ALIGN,
                                  null_clause="posix.posix_memalign.enomem")

    def _x_aligned_alloc(self, alignment: int, size: int) -> Expect:
        if size > PTRDIFF_MAX or size < 0 or alignment > 1 << 62 or alignment < 0:
            if self.glibc_malloc:
                return self._null_any("glibc.malloc.enomem-over-ptrdiff-max")
            return self._null_errno("posix.aligned_alloc.errors", ("ENOMEM", "EINVAL"))
        if not is_pow2(alignment):
            # C17 7.22.3.1 (DR 460): an unsupported alignment yields NULL (POSIX.1-2024: with EINVAL);
            # glibc before 2.38 instead rounds it up to a power of two.  Both recorded as implementation-defined.
            return self._block_expect("c11.aligned_alloc.unsupported-alignment", size, next_pow2(alignment),
                                      MAX_ALIGN, impl=True, null_clause="posix.aligned_alloc.errors",
                                      null_errno=("EINVAL", "ENOMEM"))
        if size == 0:
            return self._block_expect("c11.malloc.size0-impl-defined", 0, alignment, MAX_ALIGN, may_be_null=True,
                                      impl=True, align_clause="c11.aligned_alloc.aligned")
        return self._block_expect("c11.aligned_alloc.aligned", size, alignment, MAX_ALIGN,
                                  null_clause="posix.aligned_alloc.errors", null_errno=("ENOMEM", "EINVAL"))

    def _null_any(self, clause: str) -> Expect:
        return checked(clause, NULL_ENOMEM, "NULL",
                       (clause, lambda o: None if o.value == 0 else f"observed {o.describe()}"))

    def _null_errno(self, clause: str, errnos: tuple[str, ...]) -> Expect:
        return checked(clause, Outcome(value=0, errno=errnos[0]), f"NULL with errno {' or '.join(errnos)}",
                       (clause, lambda o: None if o.value == 0 and o.signal is None and o.errno in errnos
                        else f"observed {o.describe()}"))

    def _x_memalign(self, alignment: int, size: int) -> Expect:
        # memalign is in neither C nor POSIX: its errno is documented for glibc only (memalign(3))
        if size > PTRDIFF_MAX or size < 0 or alignment > 1 << 62 or alignment < 0:
            return self._null_any("glibc.malloc.enomem-over-ptrdiff-max" if self.glibc_malloc
                                  else "linux.memalign.null-on-failure")
        if not is_pow2(alignment) and not self.glibc_malloc:
            return unknown("glibc.memalign.rounds-up", "memalign(3): the alignment must be a power of two; "
                           "only glibc documents what it does with another")
        if size == 0:
            return self._block_expect("c11.malloc.size0-impl-defined", 0, next_pow2(alignment), MAX_ALIGN,
                                      may_be_null=True, impl=True, align_clause="glibc.memalign.rounds-up")
        return self._block_expect("glibc.memalign.rounds-up", size, next_pow2(alignment), MAX_ALIGN,
                                  may_be_null=not (is_pow2(alignment) and self.glibc_malloc),
                                  impl=not is_pow2(alignment),
                                  null_clause="posix.malloc.enomem" if self.glibc_malloc
                                  else "linux.memalign.null-on-failure")

    _a_posix_memalign = _a_aligned_alloc = _a_memalign = \
        lambda self, o, alignment, size: self._a_malloc(o, size)  # noqa: E731

    def _x_malloc_usable_size(self, ptr: int) -> Expect:
        if ptr == 0:
            return exactly("glibc.malloc_usable_size.at-least-size", OK0)
        b = self.heap.live(ptr)
        if b is None:
            return unknown("c11.free.undefined-non-live", "undefined: not a live block")
        return checked("glibc.malloc_usable_size.at-least-size", Outcome(value=b.size), f">= {b.size}",
                       ("glibc.malloc_usable_size.at-least-size",
                        lambda o: None if o.ok and o.value is not None and o.value >= b.size
                        else f"{o.describe()} is less than the {b.size} bytes asked for"))

    def _x_heap_store(self, addr: int, value: int = 0x41) -> Expect:
        if self.heap.inside(addr) is None:
            return unknown("c11.object.out-of-bounds", "undefined: the byte is outside every live block")
        return exactly("c11.object.value-kept", Outcome())

    def _a_heap_store(self, o: Outcome, addr: int, value: int = 0x41) -> None:
        hit = self.heap.inside(addr)
        if hit is not None:
            hit[1].contents.fill(hit[0], 1, value)

    def _x_heap_fill(self, addr: int, length: int, value: int = 0x41) -> Expect:
        if length < 0 or self.heap.inside(addr, length) is None:
            return unknown("c11.object.out-of-bounds", "undefined: the range leaves its live block")
        return exactly("c11.object.value-kept", Outcome())

    def _a_heap_fill(self, o: Outcome, addr: int, length: int, value: int = 0x41) -> None:
        hit = self.heap.inside(addr, length)
        if hit is not None and length > 0:
            hit[1].contents.fill(hit[0], length, value)

    def _x_heap_load(self, addr: int) -> Expect:
        hit = self.heap.inside(addr)
        if hit is None:
            return unknown("c11.object.out-of-bounds", "undefined: the byte is outside every live block")
        v, prov = hit[1].contents.load(hit[0])
        if v is None:
            return checked("c11.malloc.indeterminate", Outcome(value=0), "any byte value",
                           ("c11.malloc.indeterminate", lambda o: None if o.value is not None and 0 <= o.value < 256
                            else f"observed {o.describe()}"), impl_defined=True)
        return exactly(PROVENANCE_CLAUSE[prov], Outcome(value=v))

    def _x_heap_count(self, addr: int, length: int, value: int = 0x41) -> Expect:
        if length < 0 or self.heap.inside(addr, length) is None:
            return unknown("c11.object.out-of-bounds", "undefined: the range leaves its live block")
        off, b = self.heap.inside(addr, length)  # type: ignore[misc]
        lo, hi, prov = b.contents.count(off, length, value)
        clause = PROVENANCE_CLAUSE.get(prov, "c11.malloc.indeterminate")
        if lo == hi:
            return exactly(clause, Outcome(value=lo))
        return checked(clause, Outcome(value=lo), f"between {lo} and {hi}",
                       (clause, lambda o: None if o.value is not None and lo <= o.value <= hi
                        else f"observed {o.describe()}"), impl_defined=True)

    # -- the garbage-collected heap ---------------------------------------------

    def _x_gc_new(self, size: int, nrefs: int = 2) -> Expect:
        if not 1 <= size <= MAX_SIZE or not 0 <= nrefs <= MAX_REFS:
            return exactly("jones.gc.handle-valid", K_EINVAL)
        used = set(self.gc.objects) | self.gc.dead
        return checked("memspec.gc.handle-fresh", Outcome(value=self.gc.next_handle), "a fresh handle",
                       ("memspec.gc.handle-fresh", lambda o: None if o.ok and o.value is not None and o.value > 0
                        and o.value not in used else f"{o.describe()} is not a fresh handle"))

    def _a_gc_new(self, o: Outcome, size: int, nrefs: int = 2) -> None:
        if not (o.ok and o.value and o.value > 0 and 1 <= size <= MAX_SIZE and 0 <= nrefs <= MAX_REFS):
            return
        g = self.gc
        g.objects[o.value] = GcObject(o.value, size, [0] * nrefs, g.place(size), g.seq)
        g.seq += 1
        g.next_handle = max(g.next_handle, o.value + 1)
        g.collected = False

    def _x_gc_ref(self, obj: int, slot: int, target: int = 0) -> Expect:
        o = self.gc.objects.get(obj)
        if o is None or not 0 <= slot < len(o.refs) or (target and target not in self.gc.objects):
            return exactly("jones.gc.handle-valid", K_EINVAL)
        return exactly("jones.gc.refs-kept", OK0)

    def _a_gc_ref(self, o: Outcome, obj: int, slot: int, target: int = 0) -> None:
        if o.ok and obj in self.gc.objects:
            self.gc.objects[obj].refs[slot] = target
            self.gc.collected = False

    def _x_gc_get(self, obj: int, slot: int) -> Expect:
        o = self.gc.objects.get(obj)
        if o is None or not 0 <= slot < len(o.refs):
            return exactly("jones.gc.handle-valid", K_EINVAL)
        return exactly("jones.gc.refs-kept", Outcome(value=o.refs[slot]))

    def _x_gc_root(self, obj: int) -> Expect:
        if obj in self.gc.objects:
            return exactly("jones.gc.roots", OK0)
        return exactly("jones.gc.handle-valid", K_EINVAL)

    def _a_gc_root(self, o: Outcome, obj: int) -> None:
        if o.ok and obj in self.gc.objects:
            self.gc.roots.add(obj)

    def _x_gc_unroot(self, obj: int) -> Expect:
        if obj in self.gc.roots:
            return exactly("jones.gc.roots", OK0)
        return exactly("jones.gc.handle-valid", K_EINVAL)

    def _a_gc_unroot(self, o: Outcome, obj: int) -> None:
        if o.ok:
            self.gc.roots.discard(obj)
            self.gc.collected = False

    def _x_gc_collect(self) -> Expect:
        live = self.gc.reachable()
        dead = set(self.gc.objects) - live
        n = len(dead)

        def sound(o: Outcome) -> str | None:
            freed = dict(o.detail).get("freed")
            if freed is not None and set(freed) & live:
                return f"freed reachable objects {sorted(set(freed) & live)[:5]}"
            if o.value is not None and o.value > n:
                return f"freed {o.value} objects but only {n} were unreachable"
            return None

        def complete(o: Outcome) -> str | None:
            freed = dict(o.detail).get("freed")
            if freed is not None and dead - set(freed):
                return f"left unreachable objects {sorted(dead - set(freed))[:5]}"
            if o.value != n:
                return f"freed {o.describe()} objects, but {n} were unreachable"
            return None

        return checked("jones.gc.complete", Outcome(value=n, detail=(("freed", tuple(sorted(dead))),)),
                       f"{n} objects freed", ("jones.gc.sound", sound), ("jones.gc.complete", complete))

    def _a_gc_collect(self, o: Outcome) -> None:
        g = self.gc
        live = g.reachable()
        freed = dict(o.detail).get("freed")
        dead = set(freed) if freed is not None else set(g.objects) - live
        g.last_pause = g.pause_for(live)
        for h in dead:
            # a root is never garbage; if a (broken) collector freed one, the root now dangles,
            # and the soundness invariant reports it
            g.objects.pop(h, None)
            g.dead.add(h)
            self.gc_bound.pop(h, None)
        g.collected = True

    def _x_gc_compact(self) -> Expect:
        new = self.gc.compacted()
        moved = sum(1 for h, a in new.items() if self.gc.objects[h].addr != a)
        total = len(self.gc.objects)
        return checked("jones.gc.compact-slides", Outcome(value=moved), f"0..{total} objects moved",
                       ("jones.gc.compact-slides", lambda o: None if o.value is not None and 0 <= o.value <= total
                        else f"observed {o.describe()}"), impl_defined=True)

    def _a_gc_compact(self, o: Outcome) -> None:
        new = self.gc.compacted()
        bound = GC_BASE + sum(gc_round(x.size) for x in self.gc.objects.values())
        for h, a in new.items():
            ob = self.gc.objects[h]
            ob.addr, ob.confirmed = a, False
            self.gc_bound[h] = bound

    def _x_gc_live(self, obj: int) -> Expect:
        if obj in self.gc.objects:
            return exactly("jones.gc.sound", Outcome(value=1))
        if obj in self.gc.dead:
            return exactly("jones.gc.complete", Outcome(value=0))
        return exactly("jones.gc.handle-valid", K_EINVAL)

    def _x_gc_addr(self, obj: int) -> Expect:
        ob = self.gc.objects.get(obj)
        if ob is None:
            return exactly("jones.gc.handle-valid", K_EINVAL)
        if ob.confirmed:
            return exactly("memspec.gc.address-stable", Outcome(value=ob.addr))
        bound = self.gc_bound.get(obj, GC_BASE + GC_SIZE)
        size = gc_round(ob.size)

        def place(o: Outcome) -> str | None:
            v = o.value
            if v is None or v % GC_ALIGN or not GC_BASE <= v or v + size > bound:
                return f"{o.describe()} is not a {GC_ALIGN}-aligned address below {bound:#x} in the GC heap"
            for other in self.gc.objects.values():
                if other.confirmed and other.handle != obj and v < other.addr + gc_round(other.size) \
                        and other.addr < v + size:
                    return f"{v:#x} overlaps object {other.handle} at {other.addr:#x}"
            return None
        clause = "jones.gc.compact-slides" if obj in self.gc_bound else "memspec.gc.address-stable"
        return checked(clause, Outcome(value=ob.addr), "an address of the GC heap", (clause, place))

    def _a_gc_addr(self, o: Outcome, obj: int) -> None:
        ob = self.gc.objects.get(obj)
        if ob is not None and o.ok and o.value is not None and o.value > 0:
            ob.addr, ob.confirmed = o.value, True

    def _x_gc_pause(self) -> Expect:
        marked = len(self.gc.reachable()) if self.gc.collected else 0
        want = self.gc.last_pause
        return checked("jones.gc.pause-accounted", Outcome(value=want), f"{want} work units",
                       ("jones.gc.pause-accounted", lambda o: None if o.value is not None and o.value >= marked
                        else f"a pause must at least mark the {marked} live objects; observed {o.describe()}"),
                       impl_defined=True)


def new_model(facts: dict) -> PhysModel:
    facts = facts or {}
    m = facts.get("phys_machine") or {}
    geometry = (int(m.get("slub_min_objects", SLUB_MIN_OBJECTS)),
                max(0, min(MAX_ORDER, int(m.get("slub_max_order", SLUB_MAX_ORDER)))))
    return PhysModel(Machine.from_facts(facts), glibc_malloc=facts.get("malloc_rules", "glibc") == "glibc",
                     slab_geometry=geometry)
