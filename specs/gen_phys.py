"""The phys layer's generator: a well-typed program of the phys layer's calls.

``program(chooser, calls)`` draws each step from the call groups the target
implements (``calls``; None: all), so the libc target gets heap-only programs.
The builder keeps a belief of what is live (blocks, pages, objects, handles)
so that frees, reallocs and probes mostly name live results -- the deep states
-- and sizes sit on the boundaries that matter: pages, buddy orders, kmalloc
size classes, glibc's mmap threshold, PTRDIFF_MAX.  Content probes stay inside
blocks the builder believes live, and it never frees what it believes dead, so
a real target is never asked to run undefined behaviour by construction.

Every decision is drawn from a ``Chooser`` (``specs/choose.py``): fuzzer bytes drive it in the
codec (``fuzz/codec_phys.py``), Hypothesis draws in the state machine (``specs/machine_phys.py``).

Worked example: ``program(ByteChooser(bytes(range(40))), ALLOCATORS["heap"])`` is a program of
malloc/realloc/free/... calls only.
"""

from __future__ import annotations

import functools
from typing import Any

from memspec.model.buddy import Buddy
from memspec.model.frames import MAX_ORDER, FrameTable, Machine, Owner
from memspec.model.gc import MAX_REFS as GC_MAX_REFS, MAX_SIZE as GC_MAX_SIZE
from memspec.model.heap import ARENA_MAX
from memspec.model.numa import MAX_PAGE
from memspec.model.phys import BOOT_MAX_FRAMES
from memspec.model.slab import KMALLOC_MAX_SIZE, SLUB_MAX_ORDER, SLUB_MIN_OBJECTS, KmemCache, slab_order
from memspec.program import Call, Flags, Int, Program, Ref

from .choose import Chooser, swarm

MAX_CALLS = 32
SWARM_PERCENT = 40          # programs that draw from a random subset of the call groups (swarm testing)
PAGE = 4096

HEAP_SIZES = (0, 1, 7, 8, 15, 16, 17, 24, 32, 100, 128, 500, 512, 1000, 1024, 4095, 4096, 4097, 5000, 5120,
              8191, 8192, 9000, 16384, 65536, 131071, 131072, 131073, 262144, 1 << 20)
HUGE_SIZES = ((1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 40)
ALIGNS = (0, 1, 2, 8, 16, 24, 32, 48, 64, 100, 256, 4096, 8192, 65536)
VALID_ALIGNS = tuple(a for a in ALIGNS if a >= 8 and a & (a - 1) == 0)     # what every heap must accept
KSIZES = (0, 1, 8, 9, 16, 17, 24, 32, 33, 64, 65, 96, 97, 100, 128, 192, 193, 256, 512, 513, 1000, 2048, 4096, 4097,
          8192, 8193, 5000, 65536, 1 << 22, (1 << 22) + 1)     # each size class's edge, either side
CACHE_SIZES = (8, 24, 64, 192, 256, 700, 1024, 3000, 4096, 8192, 0, 40000, 1 << 22, (1 << 22) + 1)
DMA_MASKS = (0xFFFFFF, 0xFFFFFFFF, 0xFFFFF, 0x3FFFFFF)
DMA_SIZES = (0, 1, 4096, 5000, 9000, 1 << 20, 4 << 20, 8 << 20)
ORDERS = (0, 0, 1, 1, 2, 3, 5, 9, 10, 10, 11)
VMALLOC_SIZES = (0, 1, 4096, 10000, 1 << 20, 5 << 20, 40 << 20, 80 << 20)
EXHAUST_MAX = 20            # allocations of one exhaustion phase at most (the program stays short enough to shrink)
FREE_ORDERS = ("reverse", "same", "evens-first", "odds-first", "shuffled")
BRIM_CACHE_SIZES = (64, 256, 512, 1024, 2048, 4096)
BOOT_PERCENT = 35           # programs that start on a machine of another shape (``phys_boot``), when the target takes it
# node and DMA-zone sizes in frames: mostly ones that do not end on a max-order (1,024-frame) boundary
NODE_SIZES = (1, 2, 3, 511, 1000, 1023, 1024, 1025, 1536, 2047, 2049, 3000, 4095, 4097, 5000, 8191, 8192, 8193,
              12345, 16383)
DMA_ZONES = (0, 1, 513, 1000, 1023, 1024, 1025, 3000, 4095, 4096)
KMALLOC_BRIM = (64, 192, 1024, 4096, 8192, 1 << 20, 1 << 21, 1 << 22)    # size classes and kmalloc_large orders
SIZE_MAX = (1 << 64) - 1
PTRDIFF_MAX = (1 << 63) - 1
# calloc's nmemb and size where their product meets SIZE_MAX or PTRDIFF_MAX: exactly there, one element past it
CALLOC_EDGES = ((1, SIZE_MAX), (SIZE_MAX, 1), (3, SIZE_MAX // 3), (SIZE_MAX // 3 + 1, 3), (1 << 32, 1 << 32),
                (1 << 32, (1 << 32) - 1), (2, PTRDIFF_MAX // 2), (2, PTRDIFF_MAX // 2 + 1), (1 << 20, 1 << 44))
# machines small enough to fill with a few buddy_allocs (``PhysGen.fill_machine``): frames of node 0 and 1
FULL_CACHE_SIZES = (1024, 2048, 4096, 8192, 16392)    # slabs of order 0 to 3 holding 4 objects, or 1
FULL_NODES = ((2, 0), (3, 0), (5, 0), (8, 0), (17, 0), (33, 0), (100, 0), (1025, 0), (4, 3), (9, 7), (64, 64),
              (1025, 17))


def heap_size(r: Chooser, huge: bool = True) -> int:
    """A heap request: mostly a boundary that matters (``HEAP_SIZES``), sometimes any size up to 20000,
    rarely (``huge``) one no heap can give (``HUGE_SIZES``)."""
    if huge and r.chance(3):
        return r.choice(HUGE_SIZES)
    if r.chance(70):
        return r.choice(HEAP_SIZES)
    return r.integer(1, 20000)


def machine_shape(r: Chooser) -> tuple[int, int, int] | None:
    """The arguments of a ``phys_boot`` that starts a program (``BOOT_PERCENT`` of them; None: the target's own
    machine): one or two nodes and a DMA zone of sizes that mostly do not end on a max-order boundary
    (``NODE_SIZES``), rarely (5 %) a shape no machine has (refused: EINVAL)."""
    # each draw's smallest value is the simplest program (Hypothesis shrinks towards it): no phys_boot, then
    # a valid shape
    if r.chance(100 - BOOT_PERCENT):
        return None
    n0 = r.choice(NODE_SIZES) if r.chance(80) else r.integer(1, 16384)
    n1 = 0 if r.chance(30) else r.choice(NODE_SIZES) if r.chance(80) else r.integer(1, 16384)
    dma = min(n0, r.choice(DMA_ZONES) if r.chance(70) else r.choice((n0, n0 - 1, r.integer(0, n0))))
    if not r.chance(95):
        return r.choice(((0, n1, 0), (n0, n1, n0 + 1), (n0, -1, dma)))
    return n0, n1, dma


@functools.cache
def slab_order_edges(min_objects: int = SLUB_MIN_OBJECTS, max_order: int = SLUB_MAX_ORDER) -> tuple[int, ...]:
    """The object sizes (multiples of 8, up to 128 KiB and one step past) at which SLUB's slab order changes
    under a geometry (``slab_order``): a cache of such a size has slabs of another order, so another number
    of objects per slab, than one 8 bytes smaller.

    >>> slab_order_edges()[:4]
    (8, 344, 352, 376)
    """
    out, prev = [], None
    for size in range(8, (1 << 17) + 16, 8):
        order = slab_order(size, min_objects, max_order)
        if order != prev:
            out.append(size)
            prev = order
    return tuple(out)


def slab_cap_edges(min_objects: int = SLUB_MIN_OBJECTS, max_order: int = SLUB_MAX_ORDER) -> tuple[int, ...]:
    """The object sizes, either side, at which the largest slab (order ``max_order``) holds fewer objects
    than ``min_objects`` asks for, so that calculate_order caps the count: a slab of 1, 2, 3 ... objects.

    >>> slab_cap_edges()
    (8192, 8200, 10920, 10928, 16384, 16392, 32768, 32776)
    """
    out: set[int] = set()
    for k in range(1, max(min_objects, 1) + 1):
        cap = (PAGE << max_order) // k // 8 * 8
        out.update((cap, cap + 8))
    return tuple(sorted(out))


def free_order(r: Chooser, names: list, how: str | None = None) -> list:
    """``names`` in one of ``FREE_ORDERS`` (``how``, else drawn): coalescing and free-list bugs depend on it."""
    how = how or r.choice(FREE_ORDERS)
    if how == "reverse":
        return names[::-1]
    if how == "evens-first":
        return names[::2] + names[1::2]
    if how == "odds-first":
        return names[1::2] + names[::2]
    if how == "shuffled":
        rest, out = list(names), []
        while rest:
            out.append(rest.pop(r.integer(0, len(rest) - 1)))
        return out
    return list(names)


def _num(v: int) -> Int:
    return Int(v, hex=abs(v) >= 4096)


# call groups: (weight, calls the group needs at least one of)
GROUPS = (
    (30, "heap", ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign",
                  "malloc_usable_size")),
    (16, "probe", ("heap_store", "heap_load", "heap_fill", "heap_count")),
    (14, "buddy", ("buddy_alloc", "buddy_free", "nr_free_pages", "buddy_largest")),
    (12, "slab", ("kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free", "kmem_cache_shrink")),
    (8, "kmalloc", ("kmalloc", "kfree", "ksize")),
    (5, "vmalloc", ("vmalloc", "vfree", "vmalloc_to_pfn")),
    (5, "dma", ("dma_alloc_coherent", "dma_free_coherent")),
    (8, "numa", ("set_mempolicy", "migrate_thread", "numa_touch", "numa_stat")),
    (5, "arena", ("arena_create", "arena_alloc", "arena_reset", "arena_destroy")),
    (12, "gc", ("gc_new", "gc_ref", "gc_get", "gc_root", "gc_unroot", "gc_collect", "gc_compact", "gc_live",
                "gc_addr", "gc_pause")),
    # an exhaustion and recovery phase of one allocator (``PhysGen.g_pressure``)
    (16, "pressure", ("buddy_alloc", "kmem_cache_alloc", "kmalloc", "vmalloc", "dma_alloc_coherent", "arena_alloc",
                      "malloc", "gc_new")),
    # one call with its arguments at the edges of their ranges (``PhysGen.g_edge``)
    (12, "edge", ("phys_boot", "buddy_alloc", "nr_free_pages", "buddy_largest", "kmem_cache_create", "kmalloc",
                  "vmalloc", "vmalloc_to_pfn", "dma_alloc_coherent", "set_mempolicy", "migrate_thread", "numa_touch",
                  "numa_stat", "arena_create", "arena_alloc", "gc_new", "gc_ref", "gc_get", "gc_root", "gc_unroot",
                  "gc_live", "gc_addr", "calloc",
                  "posix_memalign", "aligned_alloc", "memalign", "realloc")),
    # the whole machine used up, every allocator asked, then some of it freed (``PhysGen.g_full``)
    (6, "full", ("buddy_alloc",)),
)


class PhysGen:
    def __init__(self, r: Chooser, calls: frozenset[str] | None, facts: dict[str, Any] | None = None):
        self.r = r
        self.allowed = calls
        # the machine the target declares in its hello (fact ``phys_machine``): its nodes' sizes, not ours
        self.machine = Machine.from_facts(facts or {})
        shape = (facts or {}).get("phys_machine") or {}
        # SLUB's slab_min_objects and slab_max_order, the target's own (as the model reads them: phys.new_model)
        self.geometry = (int(shape.get("slub_min_objects", SLUB_MIN_OBJECTS)),
                         max(0, min(MAX_ORDER, int(shape.get("slub_max_order", SLUB_MAX_ORDER)))))
        self.calls: list[Call] = []
        self.n = 0
        self.blocks: list[tuple[str, int]] = []        # heap blocks believed live: (name, size)
        self.pages: list[str] = []
        self.caches: list[str] = []
        self.objs: list[tuple[str, str]] = []          # (cache, object)
        self.kobjs: list[str] = []
        self.areas: list[tuple[str, int]] = []
        self.dmas: list[str] = []
        self.arenas: list[str] = []
        self.gcs: list[str] = []
        self.nrefs: dict[str, int] = {}                # GC object -> its reference slots
        self.gc_dead: list[str] = []                   # GC objects a collection is known to have freed
        self.walk = 0                                  # the position in a run of one call's edges (``g_edge``)
        self.groups = [(w, g, [c for c in cs if self.ok(c)]) for w, g, cs in GROUPS]
        self.groups = swarm(r, [(w, g, cs) for w, g, cs in self.groups if cs], SWARM_PERCENT)

    def ok(self, name: str) -> bool:
        return self.allowed is None or name in self.allowed

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def emit(self, name: str, *args: Int | Ref | Flags, result: str | None = None) -> None:
        self.calls.append(Call(name, tuple(args), result))

    def heap_size(self) -> int:
        return heap_size(self.r)

    def boot(self) -> None:
        """Sometimes start on a machine of another shape (``machine_shape``)."""
        if not self.ok("phys_boot"):
            return
        shape = machine_shape(self.r)
        if shape is None:
            return
        n0, n1, dma = shape
        if n0 > 0 and n1 >= 0 and 0 <= dma <= n0:
            self.machine = Machine.shaped((n0, n1) if n1 else (n0,), dma, self.machine.reserved)
        self.emit("phys_boot", _num(n0), _num(n1), _num(dma))

    def step(self) -> None:
        r = self.r
        if not self.groups:
            return
        total = sum(w for w, _, _ in self.groups)
        x = r.integer(0, total - 1)
        for w, g, cs in self.groups:
            if x < w:
                getattr(self, "g_" + g)(cs)
                return
            x -= w

    # -- the variable-size heap ----------------------------------------------------

    def _new_block(self, call: str, size: int, *args: Int) -> None:
        n = self.name("p")
        self.emit(call, *args, result=n)
        # a block too large to be sure of is never probed or freed through (it may be NULL)
        if 0 < size <= (1 << 20):
            self.blocks.append((n, size))
        elif size == 0 and self.r.chance(50):
            self.blocks.append((n, 0))

    def g_heap(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        live = self.blocks
        if c in ("free", "realloc", "malloc_usable_size") and not live and r.chance(80):
            c = "malloc" if self.ok("malloc") else c
        if c == "malloc":
            s = self.heap_size()
            self._new_block("malloc", s, _num(s))
        elif c == "calloc":
            k = r.choice((0, 1, 3, 10, 1 << 32, 1000))
            s = r.choice((0, 1, 8, 100, 4096, 1 << 32))
            self._new_block("calloc", k * s if k * s < 1 << 64 else 1 << 64, _num(k), _num(s))
        elif c in ("posix_memalign", "aligned_alloc", "memalign"):
            a = r.choice(ALIGNS)
            s = self.heap_size() if r.chance(80) else a * r.integer(1, 4)
            # a refused alignment gives NULL: believe the block live only when the alignment is valid
            valid = a > 0 and a & (a - 1) == 0 and (a >= 8 or c != "posix_memalign")
            self._new_block(c, s if valid else 1 << 64, _num(a), _num(s))
        elif c == "free":
            if live and r.chance(95):
                n, _ = live.pop(r.integer(0, len(live) - 1))
                self.emit("free", Ref(n))
            else:
                self.emit("free", Int(0))
        elif c == "realloc":
            s = self.heap_size()
            if live and r.chance(90):
                n, _ = live.pop(r.integer(0, len(live) - 1))
                old: Int | Ref = Ref(n)
            else:
                old = Int(0)
            self._new_block("realloc", s, old, _num(s))
        elif c == "malloc_usable_size":
            arg: Int | Ref = Ref(r.choice(live)[0]) if live else Int(0)
            self.emit("malloc_usable_size", arg, result=self.name("u"))

    def g_probe(self, cs: list[str]) -> None:
        r = self.r
        live = [(n, s) for n, s in self.blocks if s > 0]
        if not live:
            if self.ok("malloc"):
                s = r.choice(HEAP_SIZES[1:20])
                self._new_block("malloc", s, _num(s))
            return
        n, size = r.choice(live)
        c = r.choice(cs)
        off = r.choice((0, size - 1, r.integer(0, size - 1)))
        val = r.choice((0, 0x41, 0xFF, r.integer(0, 255)))
        ref = Ref(n, off) if off else Ref(n)
        if c == "heap_store":
            self.emit(c, ref, _num(val))
        elif c == "heap_load":
            self.emit(c, ref, result=self.name("v"))
        else:
            length = r.choice((size - off, 1, r.integer(1, size - off)))
            self.emit(c, ref, _num(length), _num(val), **({} if c == "heap_fill" else {"result": self.name("v")}))

    # -- buddy ---------------------------------------------------------------

    def g_buddy(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c == "buddy_free" and not self.pages:
            c = "buddy_alloc" if self.ok("buddy_alloc") else c
        if c == "buddy_alloc":
            order = r.choice(ORDERS)
            node = r.choice((-1, -1) + tuple(range(self.machine.nodes)) + (self.machine.nodes,))
            gfp = r.choice(((), (), ("GFP_KERNEL",), ("GFP_DMA",), ("GFP_THISNODE",)))
            n = self.name("b")
            self.emit(c, Int(order), Int(node), Flags(gfp) if gfp else Int(0),
                      Flags((r.choice(("PG_KERNEL", "PG_ANON", "PG_PAGECACHE", "PG_PAGETABLE")),)), result=n)
            self.pages.append(n)
        elif c == "buddy_free":
            if self.pages and r.chance(92):
                self.emit(c, Ref(self.pages.pop(r.integer(0, len(self.pages) - 1))))
            else:
                self.emit(c, _num(r.integer(0, 20000)))
        else:
            self.emit(c, Int(r.choice((-1, 0, 1))), result=self.name("n"))

    # -- exhaustion and recovery ----------------------------------------------------

    def free_order(self, names: list) -> list:
        return free_order(self.r, names)

    def g_pressure(self, cs: list[str]) -> None:
        """One allocator driven to (or near) exhaustion, then freed in one of ``FREE_ORDERS`` and asked
        again: the buddy's blocks of one order on one node used up (behind the node's max-order blocks, for
        a low order); a slab cache past the brim of its slabs; kmalloc of one size class or of large blocks
        until the machine runs out; vmalloc and DMA buffers until the frames (the DMA zone) run out; an
        arena filled to its capacity and reset; heap blocks of one size class freed out of order and asked
        for again at the coalesced size; GC objects dropped, collected and compacted, then allocated again."""
        r = self.r
        kinds = [k for k, need in (("buddy", ("buddy_alloc", "buddy_free")),
                                   ("slab", ("kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free")),
                                   ("kmalloc", ("kmalloc", "kfree")),
                                   ("vmalloc", ("vmalloc", "vfree")),
                                   ("dma", ("dma_alloc_coherent", "dma_free_coherent")),
                                   ("arena", ("arena_create", "arena_alloc", "arena_reset")),
                                   ("heap", ("malloc", "free")),
                                   ("gc", ("gc_new", "gc_root", "gc_unroot", "gc_collect")))
                 if all(self.ok(c) for c in need)]
        if not kinds:
            return
        # the buddy allocator, under every other allocator, a quarter of the time besides its share
        getattr(self, "exhaust_" + ("buddy" if "buddy" in kinds and r.chance(25) else r.choice(kinds)))()

    def exhaust_buddy(self) -> None:
        r, m = self.r, self.machine
        node = r.integer(0, m.nodes - 1)
        frames = m.node_frames[node]
        order = r.choice((MAX_ORDER, MAX_ORDER, MAX_ORDER - 1, r.integer(0, MAX_ORDER - 2)))
        thisnode = Flags(("GFP_THISNODE",))
        names: list[str] = []

        def take(k: int, n: int) -> None:
            for _ in range(n):
                names.append(self.name("b"))
                self.emit("buddy_alloc", Int(k), Int(node), thisnode, Flags(("PG_KERNEL",)), result=names[-1])

        if order < MAX_ORDER - 1 and frames >> MAX_ORDER and r.chance(60):
            # the node's max-order blocks first, so that the low order exhausts what is left
            big = min(EXHAUST_MAX // 2, frames >> MAX_ORDER)
            take(MAX_ORDER, big)
            frames -= big << MAX_ORDER
        # one more than the node holds, as far as EXHAUST_MAX reaches
        take(order, min(EXHAUST_MAX, (frames >> order) + 1))
        self.buddy_state(node)
        keep = r.integer(0, 2) if r.chance(30) else 0
        ordered = self.free_order(names)
        for name in ordered[keep:]:
            self.emit("buddy_free", Ref(name))
        self.pages.extend(ordered[:keep])
        self.buddy_state(node)
        # the highest orders must be back: the largest block the node can hold, and the exhausted order
        for k in dict.fromkeys((MAX_ORDER, min(MAX_ORDER, max(m.node_frames[node].bit_length() - 1, 0)), order)):
            self.pages.append(self.name("b"))
            self.emit("buddy_alloc", Int(k), Int(node), thisnode, Flags(("PG_KERNEL",)), result=self.pages[-1])

    def exhaust_kmalloc(self) -> None:
        r, m = self.r, self.machine
        size = r.choice(KMALLOC_BRIM)
        per = max(1, (size + PAGE - 1) // PAGE)
        # a size class: past the brim of a slab; kmalloc_large: one more block than the machine holds
        n = min(EXHAUST_MAX, PAGE // size * r.choice((1, 2)) + 1 if size < PAGE else m.total // per + 1)
        gfp = Flags(("GFP_DMA",)) if r.chance(15) else Int(0)
        names = []
        for _ in range(n):
            names.append(self.name("k"))
            self.emit("kmalloc", _num(size), gfp, result=names[-1])
        for name in self.free_order(names):
            self.emit("kfree", Ref(name))
        for s in dict.fromkeys((size, 1 << 22)):
            k = self.name("k")
            self.emit("kmalloc", _num(s), gfp, result=k)
            self.kobjs.append(k)
        if self.ok("ksize"):
            self.emit("ksize", Ref(self.kobjs[-1]), result=self.name("s"))

    def exhaust_vmalloc(self) -> None:
        r, m = self.r, self.machine
        # a large machine's max-order blocks taken first (one call each; vmalloc claims frame by frame)
        big = []
        if m.total > 4096 and self.ok("buddy_alloc") and self.ok("buddy_free"):
            for _ in range(min(EXHAUST_MAX, m.total >> MAX_ORDER)):
                big.append(self.name("b"))
                self.emit("buddy_alloc", Int(MAX_ORDER), Int(-1), Int(0), Flags(("PG_KERNEL",)), result=big[-1])
        # what is left is at least one max-order block's worth (the reserved frame splits one of them)
        left = m.total - (max(len(big) - 1, 0) << MAX_ORDER)
        # areas of a share of the frames left: the last ones fail for want of frames
        size = PAGE * max(1, -(-left // r.choice((3, 4, 8, 16))))
        names = []
        for _ in range(min(EXHAUST_MAX, left * PAGE // size + 1)):
            names.append(self.name("v"))
            self.emit("vmalloc", _num(size), result=names[-1])
        for name in self.free_order(names + big):
            self.emit("buddy_free" if name in big else "vfree", Ref(name))
        v = self.name("v")
        self.emit("vmalloc", _num(size if r.chance(50) else PAGE * max(1, left - r.integer(0, 64))), result=v)
        if self.ok("vmalloc_to_pfn"):
            self.emit("vmalloc_to_pfn", Ref(v), result=self.name("f"))

    def exhaust_dma(self) -> None:
        r, m = self.r, self.machine
        dma = m.dma_frames or m.node_frames[0]
        # buffers of one order, until the DMA zone (or the device's reach) has none left
        order = min(MAX_ORDER, max(0, (dma // r.choice((2, 4, 8, 16))).bit_length() - 1))
        mask = r.choice((0xFFFFFF, 0xFFFFFF, 0xFFFFFFFF, (dma << 12) - 1 if dma else 0xFFFFF))
        names = []
        for _ in range(min(EXHAUST_MAX, (dma >> order) + 1)):
            names.append(self.name("d"))
            self.emit("dma_alloc_coherent", _num(PAGE << order), _num(mask), result=names[-1])
        for name in self.free_order(names):
            self.emit("dma_free_coherent", Ref(name))
        for k in dict.fromkeys((MAX_ORDER, order)):
            d = self.name("d")
            self.emit("dma_alloc_coherent", _num(PAGE << k), _num(mask), result=d)
            self.dmas.append(d)

    def exhaust_gc(self) -> None:
        r = self.r
        size = r.choice((16, 100, 4096, 1 << 20))
        names = []
        for _ in range(r.integer(4, 12)):
            names.append(self.name("g"))
            self.emit("gc_new", _num(size), Int(1), result=names[-1])
            self.nrefs[names[-1]] = 1
        # a chain from a root, then the root dropped or the chain cut: a collection frees it all (or half)
        for a, b in zip(names, names[1:]):
            if self.ok("gc_ref"):
                self.emit("gc_ref", Ref(a), Int(0), Ref(b))
        self.emit("gc_root", Ref(names[0]))
        rooted = r.chance(50)
        if not rooted:
            self.emit("gc_unroot", Ref(names[0]))
        elif self.ok("gc_ref"):
            self.emit("gc_ref", Ref(names[len(names) // 2]), Int(0), Int(0))
        self.emit("gc_collect", result=self.name("w"))
        # nothing outside the chain refers into it: unrooted, all of it is garbage; cut, its second half
        self.gc_dead.extend(names if not rooted else names[len(names) // 2 + 1:] if self.ok("gc_ref") else [])
        if self.ok("gc_compact") and r.chance(70):
            self.emit("gc_compact", result=self.name("w"))
        for _ in range(r.integer(1, 3)):
            g = self.name("g")
            self.emit("gc_new", _num(size), Int(1), result=g)
            self.gcs.append(g)
            self.nrefs[g] = 1
            if self.ok("gc_addr"):
                self.emit("gc_addr", Ref(g), result=self.name("r"))
        if rooted:
            self.gcs.append(names[0])

    def buddy_state(self, node: int) -> None:
        for c in ("buddy_largest", "nr_free_pages"):
            if self.ok(c):
                self.emit(c, Int(node), result=self.name("n"))

    def cache_size(self) -> int:
        """An object size where SLUB's slab order changes under the target's geometry
        (``slab_order_edges``), or the size just below it; or where its largest slab holds fewer objects
        than its minimum (``slab_cap_edges``)."""
        r = self.r
        if r.chance(50):
            return r.choice(slab_cap_edges(*self.geometry))
        return max(8, r.choice(slab_order_edges(*self.geometry)) - r.choice((0, 8)))

    def exhaust_slab(self) -> None:
        r = self.r
        size = r.choice(BRIM_CACHE_SIZES) if r.chance(50) else self.cache_size()
        cache = self.name("c")
        self.emit("kmem_cache_create", _num(size), Int(8), result=cache)
        self.caches.append(cache)
        # the objects of as many slabs as the cache's order makes them, and one more
        per_slab = KmemCache.make(0, "", size, 8, *self.geometry).per_slab
        n = min(EXHAUST_MAX, per_slab * r.choice((1, 2, 4)) + r.choice((0, 1, 1)))
        objs = []
        for _ in range(n):
            objs.append(self.name("o"))
            self.emit("kmem_cache_alloc", Ref(cache), Int(0), result=objs[-1])
        for o in self.free_order(objs):
            self.emit("kmem_cache_free", Ref(cache), Ref(o))
        if self.ok("kmem_cache_shrink") and r.chance(60):
            self.emit("kmem_cache_shrink", Ref(cache), result=self.name("n"))
        for _ in range(r.integer(1, 3)):
            o = self.name("o")
            self.emit("kmem_cache_alloc", Ref(cache), Int(0), result=o)
            self.objs.append((cache, o))

    def exhaust_arena(self) -> None:
        r = self.r
        cap = r.choice((256, 4096, 65536))
        arena = self.name("a")
        self.emit("arena_create", _num(cap), result=arena)
        self.arenas.append(arena)
        size = r.choice((16, 64, cap // 4, cap // 2))
        for _ in range(min(EXHAUST_MAX, cap // size + 1)):
            self.emit("arena_alloc", Ref(arena), _num(size), Int(16), result=self.name("x"))
        self.emit("arena_reset", Ref(arena))
        self.emit("arena_alloc", Ref(arena), _num(cap if r.chance(50) else size), Int(16), result=self.name("x"))

    def exhaust_heap(self) -> None:
        r = self.r
        size = r.choice((16, 24, 100, 1000, 4096, 5000))
        names = []
        for _ in range(r.integer(4, 12)):
            names.append(self.name("p"))
            self.emit("malloc", _num(size), result=names[-1])
        keep = r.integer(0, 2)
        ordered = self.free_order(names)
        for name in ordered[keep:]:
            self.emit("free", Ref(name))
        self.blocks.extend((name, size) for name in ordered[:keep])
        for s in (size * 2, size * (len(names) - keep)):
            self._new_block("malloc", s, _num(s))

    # -- a new machine, and the whole machine used up ---------------------------------------

    def forget(self) -> None:
        """A new machine (``phys_boot``) starts with nothing allocated: the belief forgets it all too."""
        for held in (self.blocks, self.pages, self.caches, self.objs, self.kobjs, self.areas, self.dmas,
                     self.arenas, self.gcs, self.gc_dead):
            held.clear()
        self.nrefs.clear()

    def reboot(self, n0: int, n1: int, dma: int) -> None:
        """``phys_boot(n0, n1, dma)`` in the middle of a program; a shape no machine has is refused
        (EINVAL) and changes nothing."""
        self.emit("phys_boot", _num(n0), _num(n1), _num(dma))
        if n0 > 0 and n1 >= 0 and 0 <= dma <= n0 and n0 + n1 <= BOOT_MAX_FRAMES:
            self.machine = Machine.shaped((n0, n1) if n1 else (n0,), dma, self.machine.reserved)
            self.forget()

    def g_full(self, cs: list[str]) -> None:
        """Every frame of the machine allocated, every allocator that needs frames asked while none is
        left (each must fail cleanly: a new slab for a cache and for kmalloc, kmalloc_large, vmalloc, DMA,
        a first touch, the buddy itself), then part of it freed and each asked again -- vmalloc for exactly
        the frames freed and one more.  On a machine of a few frames booted for it (``FULL_NODES``), or on
        the target's own machine when the phase opens the program (the free blocks known: no call before)."""
        r = self.r
        if not self.ok("buddy_free"):
            return
        if self.ok("phys_boot"):
            n0, n1 = r.choice(FULL_NODES)
            self.reboot(n0, n1, r.choice((0, min(n0, 1), n0 // 2, n0)))
        elif self.calls:
            return
        m = self.machine
        buddy = Buddy(m, FrameTable(m))
        cache = None
        if self.ok("kmem_cache_create") and self.ok("kmem_cache_alloc"):
            size = r.choice(FULL_CACHE_SIZES)
            cache = self.name("c")
            self.emit("kmem_cache_create", _num(size), Int(8), result=cache)
            self.caches.append(cache)
            c = KmemCache.make(0, "", size, 8, *self.geometry)
            zone = buddy.first_zone_with(buddy.zonelist(m.fallback(0)), c.order)
            if zone is not None and r.chance(60):
                # the cache's first slab filled before the machine: then it has slabs, none with room
                buddy.take(buddy.pick(zone, c.order), c.order, Owner.SLAB)
                for _ in range(c.per_slab):
                    o = self.name("o")
                    self.emit("kmem_cache_alloc", Ref(cache), Int(0), result=o)
                    self.objs.append((cache, o))
        # the free blocks left (the model's own choices so far), taken largest first: each request then
        # finds a block of exactly its order, and the last one leaves no frame free
        orders = sorted(buddy.free_head.values(), reverse=True)
        if len(orders) > 28:
            return
        names = []
        for k in orders:
            names.append(self.name("b"))
            self.emit("buddy_alloc", Int(k), Int(-1), Int(0), Flags(("PG_KERNEL",)), result=names[-1])
        self.ask_all(cache, 1)
        ordered = self.free_order(names)
        keep = r.integer(0, len(ordered) - 1) if r.chance(60) else 0
        for i, name in enumerate(ordered):
            if i >= keep:
                self.emit("buddy_free", Ref(name))
            else:
                self.pages.append(name)
        freed = sum(1 << k for name, k in zip(names, orders) if name in ordered[keep:])
        if self.ok("vmalloc") and r.chance(40):
            v = self.name("v")
            self.emit("vmalloc", _num(PAGE * (freed + r.choice((0, 0, 1)))), result=v)
            self.areas.append((v, PAGE * freed))
        self.ask_all(cache, freed)

    def ask_all(self, cache: str | None, frames: int) -> None:
        """One request of each allocator that needs frames, and the buddy's state (``g_full``)."""
        r = self.r
        asks = [c for c in ("buddy_alloc", "kmem_cache_alloc", "kmalloc", "kmalloc_large", "vmalloc",
                            "dma_alloc_coherent", "numa_touch") if self.ok(c.replace("_large", ""))]
        if cache is None and "kmem_cache_alloc" in asks:
            asks.remove("kmem_cache_alloc")
        for c in asks:
            if not r.chance(70):
                continue
            if c == "buddy_alloc":
                b = self.name("b")
                self.emit(c, Int(r.choice((0, 0, 1, max(0, frames.bit_length() - 1)))), Int(-1), Int(0),
                          Flags(("PG_KERNEL",)), result=b)
                self.pages.append(b)
            elif c == "kmem_cache_alloc":
                o = self.name("o")
                self.emit(c, Ref(cache), Int(0), result=o)             # type: ignore[arg-type]
                self.objs.append((cache, o))                           # type: ignore[arg-type]
            elif c in ("kmalloc", "kmalloc_large"):
                k = self.name("k")
                size = r.choice(KSIZES[1:18]) if c == "kmalloc" else r.choice((8193, 1 << 20, PAGE * max(frames, 1)))
                self.emit("kmalloc", _num(size), Flags(("GFP_DMA",)) if r.chance(15) else Int(0), result=k)
                self.kobjs.append(k)
            elif c == "vmalloc":
                v = self.name("v")
                self.emit(c, _num(PAGE * r.choice((1, 1, 2, max(frames, 1)))), result=v)
                self.areas.append((v, PAGE))
            elif c == "dma_alloc_coherent":
                d = self.name("d")
                self.emit(c, _num(PAGE * r.choice((1, 1, 2))), _num(r.choice(DMA_MASKS)), result=d)
                self.dmas.append(d)
            else:
                self.emit(c, Int(r.integer(0, 40)), result=self.name("t"))
        self.buddy_state(-1)

    # -- arguments at the edges of their ranges ---------------------------------------------

    def g_edge(self, cs: list[str]) -> None:
        """One call whose arguments sit at the edges of what it accepts: the first value refused, the
        last one taken, the next one refused again (node -2/-1/last/one past, order -1/0/max/max+1, the
        largest machine phys_boot builds and one frame more, a DMA zone as big as node 0 and one frame
        bigger, kmalloc's and a cache's largest object and one byte more, a slot past an object's last,
        calloc's product exactly at SIZE_MAX and one element over, ...)."""
        c = self.r.choice(cs)
        # a run of the call: its edges one after another (the first argument's values in turn, from a drawn one)
        self.walk = self.r.integer(0, 63)
        for _ in range(self.r.choice((1, 2, 3, 4))):
            self.edge_call(c)
            self.walk += 1

    def edge(self, values: tuple) -> Any:
        """The run's next value of ``values`` (``g_edge``)."""
        return values[self.walk % len(values)]

    def edge_call(self, c: str) -> None:
        """One call of ``g_edge`` (after what it needs: an arena, an area, a GC object, when none is live)."""
        r, m = self.r, self.machine
        if c == "arena_alloc" and not self.arenas and self.ok("arena_create"):
            self.arenas.append(self.name("a"))
            self.emit("arena_create", _num(r.choice((256, PAGE))), result=self.arenas[-1])
        elif c == "vmalloc_to_pfn" and not self.areas and self.ok("vmalloc"):
            self.areas.append((self.name("v"), r.choice((1, PAGE, 3 * PAGE))))
            self.emit("vmalloc", _num(self.areas[-1][1]), result=self.areas[-1][0])
        elif c in ("gc_ref", "gc_get") and not self.gcs and self.ok("gc_new"):
            g = self.name("g")
            self.nrefs[g] = r.choice((0, 1, 2))
            self.emit("gc_new", Int(16), Int(self.nrefs[g]), result=g)
            self.gcs.append(g)
        node_edges = (-2, -1, 0, m.nodes - 1, m.nodes)
        if c == "phys_boot":
            n0 = r.choice((1, 2, r.choice(NODE_SIZES)))
            n1 = r.choice((0, 0, 1, r.choice(NODE_SIZES)))
            big = BOOT_MAX_FRAMES - n1
            self.reboot(*self.edge(((0, n1, 0), (-1, n1, 0), (n0, -1, 0), (n0, n1, -1), (n0, n1, n0), (n0, n1, n0 + 1),
                                   (1, 0, 0), (1, 0, 1), (big, n1, r.choice((0, 1, 4096))), (big + 1, n1, 0),
                                   (BOOT_MAX_FRAMES, 0, BOOT_MAX_FRAMES))))
        elif c == "buddy_alloc":
            gfp = r.choice((Int(0), Flags(("GFP_THISNODE",)), Flags(("GFP_DMA",))))
            owner = r.choice((Int(0), Int(6), Flags(("PG_SLAB",)), Flags(("PG_KERNEL",))))
            b = self.name("b")
            # the order at an edge on a valid node, then the node at an edge for an order-0 block
            order, node = self.edge(tuple((o, r.choice((-1, 0))) for o in (-1, 0, MAX_ORDER, MAX_ORDER + 1)) +
                                    tuple((0, n) for n in node_edges))
            self.emit(c, Int(order), Int(node), gfp, owner, result=b)
            self.pages.append(b)
        elif c in ("nr_free_pages", "buddy_largest"):
            self.emit(c, Int(self.edge(node_edges)), result=self.name("n"))
        elif c == "kmem_cache_create":
            n = self.name("c")
            # the size at an edge with a valid alignment, then the alignment at an edge for a small object
            size, align = self.edge(tuple((z, 8) for z in (-1, 0, 1, 8, 9, KMALLOC_MAX_SIZE - 8, KMALLOC_MAX_SIZE,
                                                           KMALLOC_MAX_SIZE + 1)) +
                                    tuple((64, a) for a in (-8, 0, 1, 2, 3, PAGE, PAGE << MAX_ORDER)))
            self.emit(c, _num(size), _num(align), result=n)
            self.caches.append(n)
        elif c == "kmalloc":
            k = self.name("k")
            self.emit(c, _num(self.edge((-1, 0, 1, 8, 9, 8192, 8193, KMALLOC_MAX_SIZE, KMALLOC_MAX_SIZE + 1))),
                      Flags(("GFP_DMA",)) if r.chance(25) else Int(0), result=k)
            self.kobjs.append(k)
        elif c == "vmalloc":
            free = m.total - len(m.reserved)
            size = self.edge((-1, 0, 1, PAGE - 1, PAGE, PAGE + 1, free * PAGE, free * PAGE + 1))
            v = self.name("v")
            self.emit(c, _num(size), result=v)
            if size > 0:
                self.areas.append((v, size))
        elif c == "vmalloc_to_pfn" and self.areas:
            v, size = r.choice(self.areas)
            end = -(-size // PAGE) * PAGE
            self.emit(c, Ref(v, self.edge((-1, end - 1, end, end + PAGE - 1, end + PAGE))), result=self.name("f"))
        elif c == "dma_alloc_coherent":
            d = self.name("d")
            limit = (m.dma_frames or m.node_frames[0]) << 12
            # the size at an edge under a mask that covers every frame, then the mask at an edge for one page
            size, mask = self.edge(tuple((z, SIZE_MAX) for z in (-1, 0, 1, PAGE << MAX_ORDER, (PAGE << MAX_ORDER) + 1)) +
                                   tuple((PAGE, k) for k in (0, PAGE - 1, 2 * PAGE - 1, limit - 1, limit,
                                                             (m.total << 12) - 1, SIZE_MAX)))
            self.emit(c, _num(size), _num(mask), result=d)
            self.dmas.append(d)
        elif c == "set_mempolicy":
            online = (1 << m.nodes) - 1
            # the mode at an edge with the online nodes, then the nodemask at an edge under each mode that
            # takes one (MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE: they differ on an empty mask)
            mode, mask = self.edge(tuple((k, online) for k in (-1, 0, 1, 2, 3, 4, 5)) +
                                   tuple((mode, k) for mode in (2, 1, 3)
                                         for k in (-1, 0, 1, online, 1 << m.nodes, online | 1 << m.nodes, 1 << 63)))
            self.emit(c, Int(mode), _num(mask))
        elif c == "migrate_thread":
            self.emit(c, Int(self.edge(node_edges)))
        elif c == "numa_touch":
            self.emit(c, _num(self.edge((-1, 0, MAX_PAGE - 1, MAX_PAGE))), result=self.name("t"))
        elif c == "numa_stat":
            self.emit(c, Int(self.edge((-1, 0, 4, 5))), result=self.name("s"))
        elif c == "arena_create":
            cap = self.edge((-1, 0, 1, ARENA_MAX, ARENA_MAX + 1))
            a = self.name("a")
            self.emit(c, _num(cap), result=a)
            if 0 < cap <= ARENA_MAX:
                self.arenas.append(a)
        elif c == "arena_alloc" and self.arenas:
            # the size at an edge with a valid alignment, then the alignment at an edge for 16 bytes
            size, align = self.edge(tuple((z, 16) for z in (-1, 0, 1, ARENA_MAX, ARENA_MAX + 1)) +
                                    tuple((16, a) for a in (-16, 0, 1, 3, 16, PAGE, 1 << 40)))
            self.emit(c, Ref(r.choice(self.arenas)), _num(size), _num(align), result=self.name("x"))
        elif c == "gc_new":
            # one argument at an edge, the other one valid
            size, k = self.edge(((1, -1), (16, 0), (1, GC_MAX_REFS), (16, GC_MAX_REFS + 1), (-1, 2), (0, 1),
                                 (GC_MAX_SIZE, 1), (GC_MAX_SIZE + 1, 2)))
            g = self.name("g")
            self.emit(c, _num(size), Int(k), result=g)
            if 1 <= size <= GC_MAX_SIZE and 0 <= k <= GC_MAX_REFS:
                self.gcs.append(g)
                self.nrefs[g] = k
        elif c in ("gc_root", "gc_unroot", "gc_live", "gc_addr") or c == "gc_get" and (not self.gcs or r.chance(50)):
            # a handle that names no object: one a collection freed, null, -1, one never handed out
            h = Ref(r.choice(self.gc_dead)) if self.gc_dead and r.chance(60) else _num(r.choice((0, -1, 1 << 31)))
            if c == "gc_get":
                self.emit(c, h, Int(0), result=self.name("r"))
            else:
                self.emit(c, h, **({"result": self.name("r")} if c in ("gc_live", "gc_addr") else {}))
        elif c in ("gc_ref", "gc_get") and self.gcs:
            g = r.choice(self.gcs)
            k = self.nrefs.get(g, 0)
            slot = Int(self.edge((-1, k - 1, k, GC_MAX_REFS)))
            if c == "gc_get":
                self.emit(c, Ref(g), slot, result=self.name("r"))
            else:
                target = Ref(r.choice(self.gcs)) if r.chance(60) else \
                    Ref(r.choice(self.gc_dead)) if self.gc_dead and r.chance(50) else Int(r.choice((0, -1)))
                self.emit(c, Ref(g), slot, target)
        elif c == "calloc":
            k, s = self.edge(CALLOC_EDGES)
            self._new_block(c, 1 << 64, _num(k), _num(s))
        elif c in ("posix_memalign", "aligned_alloc", "memalign"):
            # the alignment at an edge for 16 bytes, then the size at an edge under alignment 16
            # (-1: a size_t of all ones, which the model reads as negative)
            aligns = (-1, 0, 4, 8, 1 << 62, 1 << 63) if c == "posix_memalign" else (-1, 1 << 62, 1 << 63)
            a, size = self.edge(tuple((x, 16) for x in aligns) +
                                tuple((16, z) for z in (-1, 0, PTRDIFF_MAX, PTRDIFF_MAX + 1)))
            self._new_block(c, 1 << 64, _num(a), _num(size))
        elif c == "realloc":
            # a live block resized to the edges of what a size_t asks: -1, 0, PTRDIFF_MAX and one more
            if not self.blocks and self.ok("malloc"):
                self._new_block("malloc", 16, _num(16))
            old: Int | Ref = Ref(self.blocks.pop()[0]) if self.blocks else Int(0)
            self._new_block(c, 1 << 64, old, _num(self.edge((-1, 0, PTRDIFF_MAX, PTRDIFF_MAX + 1))))

    # -- slab and kmalloc -------------------------------------------------------

    def g_slab(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c != "kmem_cache_create" and not self.caches:
            c = "kmem_cache_create" if self.ok("kmem_cache_create") else c
            if not self.caches and c != "kmem_cache_create":
                return
        if c == "kmem_cache_create":
            n = self.name("c")
            edge = not r.chance(70)
            size = self.cache_size() if edge else r.choice(CACHE_SIZES)
            self.emit(c, _num(size), Int(8 if edge else r.choice((8, 8, 16, 64, 3, 1))), result=n)
            self.caches.append(n)
            # a cache whose slabs hold few objects: filled past its first slab, so that the slab's size shows
            per_slab = KmemCache.make(0, "", size, 8, *self.geometry).per_slab if edge else 0
            if 0 < per_slab < 8 and self.ok("kmem_cache_alloc") and r.chance(70):
                for _ in range(per_slab + 1):
                    o = self.name("o")
                    self.emit("kmem_cache_alloc", Ref(n), Int(0), result=o)
                    self.objs.append((n, o))
        elif c == "kmem_cache_alloc":
            cache = r.choice(self.caches)
            for _ in range(r.choice((1, 1, 2, 5))):
                n = self.name("o")
                self.emit(c, Ref(cache), Int(0), result=n)
                self.objs.append((cache, n))
        elif c == "kmem_cache_free":
            if self.objs and r.chance(92):
                cache, n = self.objs.pop(r.integer(0, len(self.objs) - 1))
                self.emit(c, Ref(cache), Ref(n))
            else:
                self.emit(c, Ref(r.choice(self.caches)), _num(r.integer(0, 1 << 26)))
        else:
            self.emit(c, Ref(r.choice(self.caches)), result=self.name("n"))

    def g_kmalloc(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c != "kmalloc" and not self.kobjs and self.ok("kmalloc"):
            c = "kmalloc"
        if c == "kmalloc":
            n = self.name("k")
            self.emit(c, _num(r.choice(KSIZES)), Flags(("GFP_DMA",)) if r.chance(10) else Int(0), result=n)
            self.kobjs.append(n)
        elif c == "kfree":
            if self.kobjs and r.chance(92):
                self.emit(c, Ref(self.kobjs.pop(r.integer(0, len(self.kobjs) - 1))))
            else:
                self.emit(c, Int(r.choice((0, 16, 4096))))
        elif self.kobjs:
            self.emit(c, Ref(r.choice(self.kobjs)), result=self.name("s"))

    # -- vmalloc, DMA, NUMA, arena -----------------------------------------------

    def g_vmalloc(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c != "vmalloc" and not self.areas and self.ok("vmalloc"):
            c = "vmalloc"
        if c == "vmalloc":
            n = self.name("v")
            size = r.choice(VMALLOC_SIZES)
            self.emit(c, _num(size), result=n)
            if size:
                self.areas.append((n, size))
        elif c == "vfree":
            if self.areas and r.chance(92):
                self.emit(c, Ref(self.areas.pop(r.integer(0, len(self.areas) - 1))[0]))
            else:
                self.emit(c, _num(r.integer(0, 1 << 20)))
        elif self.areas:
            n, size = r.choice(self.areas)
            off = r.choice((0, size - 1, r.integer(0, size + PAGE)))
            self.emit(c, Ref(n, off) if off else Ref(n), result=self.name("f"))

    def g_dma(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c == "dma_alloc_coherent" or not self.dmas:
            if not self.ok("dma_alloc_coherent"):
                return
            n = self.name("d")
            self.emit("dma_alloc_coherent", _num(r.choice(DMA_SIZES)),
                      _num(r.choice(DMA_MASKS)), result=n)
            self.dmas.append(n)
        else:
            self.emit(c, Ref(self.dmas.pop(r.integer(0, len(self.dmas) - 1))) if r.chance(92) else Int(4096))

    def g_numa(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c == "set_mempolicy":
            mode = r.choice(("MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED", "MPOL_LOCAL", "7"))
            mask = r.choice((0, 1, 2, 3, 4, 7)) if mode not in ("MPOL_DEFAULT", "MPOL_LOCAL") or r.chance(10) else 0
            self.emit(c, Int(7) if mode == "7" else Flags((mode,)), Int(mask))
        elif c == "migrate_thread":
            self.emit(c, Int(r.choice((0, 1, 1, 2))))
        elif c == "numa_touch":
            for _ in range(r.choice((1, 1, 4, 16))):
                self.emit(c, Int(r.integer(-1, 40)), result=self.name("t"))
        else:
            stat = r.choice(("NUMA_LOCAL", "NUMA_REMOTE", "NUMA_HIT", "NUMA_MISS", "NUMA_INTERLEAVE_HIT", "9"))
            self.emit(c, Int(9) if stat == "9" else Flags((stat,)), result=self.name("s"))

    def g_arena(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        if c != "arena_create" and not self.arenas and self.ok("arena_create"):
            c = "arena_create"
        if c == "arena_create":
            n = self.name("a")
            self.emit(c, _num(r.choice((0, 100, 4096, 65536, 1 << 27))), result=n)
            self.arenas.append(n)
        elif self.arenas:
            a = r.choice(self.arenas)
            if c == "arena_alloc":
                self.emit(c, Ref(a), _num(r.choice((0, 1, 24, 100, 1000, 5000, 70000))),
                          Int(r.choice((1, 8, 16, 16, 64, 4096, 3))), result=self.name("x"))
            elif c == "arena_destroy":
                self.arenas.remove(a)
                self.emit(c, Ref(a))
            else:
                self.emit(c, Ref(a))

    # -- GC ----------------------------------------------------------------------

    def g_gc(self, cs: list[str]) -> None:
        r = self.r
        c = r.choice(cs)
        needs_obj = c in ("gc_ref", "gc_get", "gc_root", "gc_unroot", "gc_live", "gc_addr")
        if (needs_obj and not self.gcs or r.chance(25)) and self.ok("gc_new"):
            c = "gc_new"
        if c == "gc_new":
            n = self.name("g")
            k = r.choice((0, 1, 2, 2, 4))
            self.emit(c, _num(r.choice((1, 16, 32, 100, 4096, 0))), Int(k), result=n)
            self.gcs.append(n)
            self.nrefs[n] = k
        elif c == "gc_ref" and self.gcs:
            t: Int | Ref = Ref(r.choice(self.gcs)) if r.chance(80) else Int(0)
            self.emit(c, Ref(r.choice(self.gcs)), Int(r.choice((0, 1, 0, 3))), t)
        elif c == "gc_get" and self.gcs:
            self.emit(c, Ref(r.choice(self.gcs)), Int(r.choice((0, 1))), result=self.name("r"))
        elif c in ("gc_root", "gc_unroot", "gc_live", "gc_addr") and self.gcs:
            self.emit(c, Ref(r.choice(self.gcs)), **({"result": self.name("r")} if c in ("gc_live", "gc_addr") else {}))
        elif c in ("gc_collect", "gc_compact", "gc_pause"):
            self.emit(c, result=self.name("w"))


def program(r: Chooser, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """A program of the phys layer's calls in ``calls`` (all when None), every decision drawn from ``r``."""
    b = PhysGen(r, calls, facts)
    b.boot()
    n = r.integer(1, MAX_CALLS)
    while len(b.calls) < n and not r.exhausted:
        b.step()
    return Program(tuple(b.calls[:MAX_CALLS * 2]))
