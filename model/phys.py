"""The phys layer's model: frames and NUMA, buddy, slab/kmalloc, vmalloc, DMA,
region/arena, a variable-size heap and a garbage-collected heap.

It follows ``model.expect.LayerModel``: ``expect`` computes what the clauses
allow for one call now (allocators choose addresses, so most answers are
*sets*: "any free, order-aligned block of the first zone that has one"),
``apply`` adopts the target's allowed choice, ``invariants`` reports every
broken law.  Each allocator owns its rules beside its state and exports them as
one table (``RULES``: call name -> expect and apply; see ``model.rules``):

=========================  ====================================================
``model.buddy``            buddy_alloc, buddy_free, nr_free_pages, buddy_largest
``model.slab``             kmem_cache_*, kmalloc, kfree, ksize
``model.vmalloc``          vmalloc, vfree, vmalloc_to_pfn
``model.dma``              dma_alloc_coherent, dma_free_coherent
``model.numa``             set_mempolicy, migrate_thread, numa_touch, numa_stat
``model.heap``             arena_*, malloc and the C library's heap calls
``model.gc``               gc_*
this module                phys_boot (a machine of another shape)
=========================  ====================================================

This module is their composition: one machine, the allocators' state, the
composed table (checked against the call table at import) and the invariants.
Each rule names its clause (specs/clauses_phys.py).

Worked example::

    b = buddy_alloc(1, 0)        # any free order-1 block of node 0's Normal zone
    buddy_free(b)                # 0; b's frames coalesce with their buddy again
    buddy_free(b)                # -1 EINVAL (linux.buddy.free-unallocated)
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable

from memspec.records import Outcome

from . import buddy, dma, gc, heap, numa, slab, vmalloc
from .allocator import K_EINVAL, OK0
from .buddy import Buddy
from .expect import Expect, exactly
from .frames import MAX_ORDER, FrameTable, Machine
from .gc import GcHeap
from .heap import Arena, Heap
from .intervals import IntervalMap
from .numa import NumaState
from .rules import Rule, Rules, compose
from .slab import SLUB_MAX_ORDER, SLUB_MIN_OBJECTS, KmemCache
from .vmalloc import VmArea

BOOT_MAX_FRAMES = 1 << 16      # the largest machine phys_boot builds (256 MiB): the frame table stays small


def expect_phys_boot(m: "PhysModel", node0: int, node1: int = 0, dma: int = 0) -> Expect:
    """A machine of any positive size (memspec.phys.boot): nodes and the DMA zone need not be multiples
    of a max-order block (linux.buddy.init-free-ranges seeds them)."""
    if node0 <= 0 or node1 < 0 or not 0 <= dma <= node0 or node0 + node1 > BOOT_MAX_FRAMES:
        return exactly("memspec.phys.boot", K_EINVAL)
    return exactly("memspec.phys.boot", OK0)


def apply_phys_boot(m: "PhysModel", o: Outcome, node0: int, node1: int = 0, dma: int = 0) -> None:
    if o.ok and o.value == 0 and expect_phys_boot(m, node0, node1, dma).default == OK0:
        m.boot(Machine.shaped((node0, node1) if node1 else (node0,), dma, m.machine.reserved))


BOOT_RULES: Rules = {"phys_boot": Rule(expect_phys_boot, apply_phys_boot)}
RULES: Rules = compose("phys", BOOT_RULES, buddy.RULES, slab.RULES, vmalloc.RULES, dma.RULES, numa.RULES, heap.RULES,
                       gc.RULES, lead=(1, 2))

# call name -> the allocator whose rule it is (what a step's footprint names besides frames and blocks)
FAMILY: dict[str, str] = {name: fam for fam, rules in (
    ("buddy", buddy.RULES), ("slab", slab.RULES), ("vmalloc", vmalloc.RULES), ("dma", dma.RULES),
    ("numa", numa.RULES), ("heap", heap.RULES), ("gc", gc.RULES)) for name in rules}

Law = Callable[["PhysModel"], list[tuple[str, str]]]


class PhysModel:
    """The whole phys layer: one machine, its allocators, one thread's NUMA policy."""

    # The judge lists per-process memory maps when a check fails; this layer has no processes.
    procs: tuple[str, ...] = ()

    # call name -> Rule; a subclass (a deliberately broken model in the tests) may replace entries
    RULES: Rules = RULES

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
        # the footprint of the steps since the last invariant check, besides the frames the frame
        # table and the heads the buddy lists record: the allocators whose rules ran
        self.touched: set[str] = set()
        self.bound_checked = 0        # numa.bound entries already checked

    def boot(self, machine: Machine) -> None:
        """Start afresh on ``machine`` (phys_boot): every allocator's state forgotten, the target's own
        facts (its malloc rules, SLUB's geometry) kept."""
        glibc, geometry = self.glibc_malloc, self.slab_geometry
        self.__init__(machine)          # type: ignore[misc] -- a broken subclass keeps its bug
        self.glibc_malloc, self.slab_geometry = glibc, geometry

    # -- LayerModel -----------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        return self.RULES[name].expect(self, *args)

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        f = self.RULES[name].apply
        if f is not None:
            self.touched.add(FAMILY.get(name, name))
            f(self, outcome, *args)

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        pass

    # ``invariants(full=False)`` checks only the footprint of the steps since the last check
    incremental_invariants = True

    def invariants(self, full: bool = True) -> list[tuple[str, str]]:
        """The broken invariants: all of them recounted over the whole state (``full``: at
        checkpoints and at the end of a program), or each in its incremental form over the
        footprint of the steps since the last check (after a step: the frames claimed and
        released, the free blocks pushed and popped, the allocators whose rules ran).  Either
        way the footprint starts afresh."""
        laws = self.INVARIANTS if full else self.STEP_INVARIANTS
        try:
            for law in laws.values():
                bad = law(self)
                if bad:
                    return bad
            return []
        finally:
            self.frames.touched.clear()
            self.buddy.touched.clear()
            self.touched.clear()
            self.bound_checked = len(self.numa.bound)

    # Each invariant on its own, named after what it protects (the state machines call them one by one).

    def no_frame_owned_twice(self) -> list[tuple[str, str]]:
        out = self.frames.violations[:]
        self.frames.violations.clear()
        return out

    def buddy_blocks_aligned_and_coalesced(self) -> list[tuple[str, str]]:
        return self.buddy.audit()

    def free_plus_used_is_total(self) -> list[tuple[str, str]]:
        return self.buddy.accounting()

    def slab_counts_consistent(self) -> list[tuple[str, str]]:
        return slab.slab_counts_consistent(self)

    def live_heap_blocks_disjoint(self) -> list[tuple[str, str]]:
        return self.heap.audit()

    def gc_sound_and_complete(self) -> list[tuple[str, str]]:
        return self.gc.audit()

    def bind_never_off_node(self) -> list[tuple[str, str]]:
        return numa.bind_never_off_node(self)

    # Their incremental forms, over the footprint (each catches what its full form catches there).

    def buddy_blocks_step(self) -> list[tuple[str, str]]:
        return self.buddy.audit_step(self.frames.touched)

    def free_plus_used_step(self) -> list[tuple[str, str]]:
        return self.buddy.accounting_step()

    def slab_counts_step(self) -> list[tuple[str, str]]:
        if "slab" in self.touched:
            return slab.slab_counts_consistent(self)
        return slab.slab_frames_owned(self, self.frames.touched)

    def live_heap_blocks_step(self) -> list[tuple[str, str]]:
        return self.heap.audit() if "heap" in self.touched else []

    def gc_step(self) -> list[tuple[str, str]]:
        return self.gc.audit() if "gc" in self.touched else []

    def bind_step(self) -> list[tuple[str, str]]:
        """``bind_never_off_node`` over the frames allocated under MPOL_BIND since the last check."""
        for pfn, mask in self.numa.bound[self.bound_checked:]:
            node = self.machine.node_of(pfn)
            if not mask >> node & 1:
                return [("numa.bind.no-spill", f"frame {pfn} on node {node} was allocated under MPOL_BIND to {mask:#x}")]
        return []

    # in the order ``invariants`` checks them (the first broken one is reported)
    INVARIANTS: MappingProxyType[str, Law] = MappingProxyType({
        "no_frame_owned_twice": no_frame_owned_twice,
        "buddy_blocks_aligned_and_coalesced": buddy_blocks_aligned_and_coalesced,
        "free_plus_used_is_total": free_plus_used_is_total,
        "slab_counts_consistent": slab_counts_consistent,
        "live_heap_blocks_disjoint": live_heap_blocks_disjoint,
        "gc_sound_and_complete": gc_sound_and_complete,
        "bind_never_off_node": bind_never_off_node,
    })
    # the same laws, incremental, in the same order and under the same names
    STEP_INVARIANTS: MappingProxyType[str, Law] = MappingProxyType({
        "no_frame_owned_twice": no_frame_owned_twice,
        "buddy_blocks_aligned_and_coalesced": buddy_blocks_step,
        "free_plus_used_is_total": free_plus_used_step,
        "slab_counts_consistent": slab_counts_step,
        "live_heap_blocks_disjoint": live_heap_blocks_step,
        "gc_sound_and_complete": gc_step,
        "bind_never_off_node": bind_step,
    })

    def observe(self) -> dict[str, Any]:
        """What a kernel would show: /proc/buddyinfo, free pages per node, /proc/slabinfo counts."""
        return {
            "buddyinfo": self.buddy.buddyinfo(),
            "nr_free": [self.buddy.free_pages(n) for n in range(self.machine.nodes)],
            "slabinfo": {c.name: list(c.info()) for c in list(self.caches.values()) + list(self.kmalloc_caches.values())},
        }


def new_model(facts: dict) -> PhysModel:
    facts = facts or {}
    m = facts.get("phys_machine") or {}
    geometry = (int(m.get("slub_min_objects", SLUB_MIN_OBJECTS)),
                max(0, min(MAX_ORDER, int(m.get("slub_max_order", SLUB_MAX_ORDER)))))
    return PhysModel(Machine.from_facts(facts), glibc_malloc=facts.get("malloc_rules", "glibc") == "glibc",
                     slab_geometry=geometry)
