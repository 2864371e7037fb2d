"""Calls of the phys layer (frames, buddy, slab, heaps, GC): registered with ``memspec.calls.register``.

Conventions of the layer's program text:

* buddy, DMA and NUMA calls speak **frame numbers** (``pfn``); slab and kmalloc
  objects and DMA handles are **physical addresses** (``pfn << 12 | offset``), as
  the kernel's direct map would show them; vmalloc areas, heap blocks, arenas and
  GC objects live in their own virtual ranges.
* a failed allocation is a value: ``-1`` with ``ENOMEM`` for kernel allocators,
  ``NULL`` (0) with an errno for the C library's.

Sample::

    b = buddy_alloc(1, 0)           # order 1 (8 KiB) on node 0 -> a pfn
    buddy_free(b)
    c = kmem_cache_create(192)
    o = kmem_cache_alloc(c)
    p = malloc(5000)
    heap_fill(p, 5000, 0x41)
    q = realloc(p, 9000)
    n = heap_count(q, 5000, 0x41)   # 5000: realloc preserved the contents
    free(q)
    g = gc_new(32, 2)
    gc_root(g)
    freed = gc_collect()
"""

from __future__ import annotations

from .calls import CallSpec, Param as P, register

# --- frames and the buddy allocator (mm/page_alloc.c) ------------------------
register(CallSpec("phys_boot", "phys", (P("node0"), P("node1", "int", 0), P("dma", "int", 0)),
                  doc="start the phys layer afresh on a machine of one node of node0 frames (two with node1 > 0) "
                      "whose first dma frames are ZONE_DMA; any sizes, not only multiples of a max-order block: "
                      "0, or -1 EINVAL for a shape no machine has (every allocation before it is forgotten)"))
register(CallSpec("buddy_alloc", "phys", (P("order"), P("node", "int", -1), P("gfp", "gfp", 0),
                                          P("owner", "pgowner", 5)), returns="value",
                  doc="alloc_pages_node(node, gfp, order): 2^order contiguous frames; returns the first pfn "
                      "(-1 ENOMEM on failure). node -1: the current CPU's node, falling back by distance"))
register(CallSpec("buddy_free", "phys", (P("pfn"),), returns="value",
                  doc="__free_pages(pfn, its order): 0, or -1 EINVAL if pfn does not start an allocated block"))
register(CallSpec("nr_free_pages", "phys", (P("node", "int", -1),),
                  doc="free frames on node (-1: all nodes)"))
register(CallSpec("buddy_largest", "phys", (P("node", "int", -1),),
                  doc="largest order with a free block on node (-1: any node), or -1 if none"))
# --- slab caches (Bonwick 1994; mm/slub.c) -----------------------------------
register(CallSpec("kmem_cache_create", "phys", (P("size"), P("align", "int", 8)),
                  doc="a cache of fixed-size objects; returns a cache handle (-1 EINVAL for a bad size/align)"))
register(CallSpec("kmem_cache_alloc", "phys", (P("cache"), P("gfp", "gfp", 0)), returns="addr",
                  doc="one object of the cache: its physical address (-1 ENOMEM)"))
register(CallSpec("kmem_cache_free", "phys", (P("cache"), P("obj")),
                  doc="return an object to its cache: 0, or -1 EINVAL for an object that is not live in it"))
register(CallSpec("kmem_cache_shrink", "phys", (P("cache"),),
                  doc="give the cache's empty slabs back to the buddy allocator; returns the frames released"))
register(CallSpec("kmalloc", "phys", (P("size"), P("gfp", "gfp", 0)), returns="addr",
                  doc="kmalloc(size, gfp): an object of the smallest kmalloc size class >= size"))
register(CallSpec("kfree", "phys", (P("obj"),), doc="kfree(obj): 0, or -1 EINVAL if obj is not a live kmalloc object"))
register(CallSpec("ksize", "phys", (P("obj"),), doc="ksize(obj): the usable size of a kmalloc object"))
# --- vmalloc and DMA ---------------------------------------------------------
register(CallSpec("vmalloc", "phys", (P("size"),), returns="addr",
                  doc="virtually contiguous area of scattered frames; returns its kernel virtual address"))
register(CallSpec("vfree", "phys", (P("addr"),), doc="free a vmalloc area: 0, or -1 EINVAL"))
register(CallSpec("vmalloc_to_pfn", "phys", (P("addr"),),
                  doc="the pfn backing the page of a vmalloc area at addr (-1 EFAULT if not mapped)"))
register(CallSpec("dma_alloc_coherent", "phys", (P("size"), P("dma_mask", "int", 0xFFFFFFFF)), returns="addr",
                  doc="physically contiguous buffer wholly below dma_mask; returns its bus (physical) address"))
register(CallSpec("dma_free_coherent", "phys", (P("handle"),), doc="free a DMA buffer: 0, or -1 EINVAL"))
# --- NUMA policies (set_mempolicy(2), numa(7)) -------------------------------
register(CallSpec("set_mempolicy", "phys", (P("mode", "mpol"), P("nodemask", "int", 0)),
                  doc="the calling thread's NUMA policy for later page allocations: 0 or -1 EINVAL"))
register(CallSpec("migrate_thread", "phys", (P("node"),),
                  doc="move the calling thread to a CPU of node: 0 or -1 EINVAL"))
register(CallSpec("numa_touch", "phys", (P("page"),),
                  doc="touch user page number page: the first touch allocates a frame under the policy; "
                      "returns its pfn (-1 ENOMEM); every touch counts a local or remote access"))
register(CallSpec("numa_stat", "phys", (P("counter", "numastat"),),
                  doc="a NUMA counter of the thread (NUMA_LOCAL, NUMA_REMOTE accesses; NUMA_HIT, NUMA_MISS, "
                      "NUMA_INTERLEAVE_HIT allocations)"))
# --- region/arena -----------------------------------------------------------
register(CallSpec("arena_create", "phys", (P("capacity"),), returns="addr",
                  doc="a region of capacity bytes; returns its base address (0 EINVAL for a bad capacity)"))
register(CallSpec("arena_alloc", "phys", (P("arena"), P("size"), P("align", "int", 16)), returns="addr",
                  doc="bump-allocate size bytes from the region (0 ENOMEM when it is full)"))
register(CallSpec("arena_reset", "phys", (P("arena"),), doc="free everything in the region at once"))
register(CallSpec("arena_destroy", "phys", (P("arena"),), doc="free the region itself"))
# --- the variable-size heap (C11 7.22.3; POSIX) -----------------------------
register(CallSpec("malloc", "phys", (P("size"),), returns="addr", doc="malloc(3): a block, or NULL and ENOMEM"))
register(CallSpec("calloc", "phys", (P("nmemb"), P("size")), returns="addr",
                  doc="calloc(3): a zeroed block of nmemb*size bytes, or NULL and ENOMEM"))
register(CallSpec("realloc", "phys", (P("ptr"), P("size")), returns="addr",
                  doc="realloc(3): resize, keeping the contents up to the lesser size"))
register(CallSpec("free", "phys", (P("ptr"),), returns="none", doc="free(3)"))
register(CallSpec("posix_memalign", "phys", (P("alignment"), P("size")), returns="addr",
                  doc="posix_memalign(3): the block's address, or 0 with the returned error (EINVAL, ENOMEM)"))
register(CallSpec("aligned_alloc", "phys", (P("alignment"), P("size")), returns="addr",
                  doc="aligned_alloc(3) (C11)"))
register(CallSpec("memalign", "phys", (P("alignment"), P("size")), returns="addr",
                  doc="memalign(3) (obsolete, glibc)"))
register(CallSpec("malloc_usable_size", "phys", (P("ptr"),), doc="malloc_usable_size(3): >= the size asked for"))
register(CallSpec("heap_store", "phys", (P("addr"), P("value", "int", 0x41)), returns="none",
                  doc="write one byte inside a live heap block"))
register(CallSpec("heap_load", "phys", (P("addr"),), doc="read one byte inside a live heap block"))
register(CallSpec("heap_fill", "phys", (P("addr"), P("length"), P("value", "int", 0x41)), returns="none",
                  doc="memset(addr, value, length) inside a live heap block"))
register(CallSpec("heap_count", "phys", (P("addr"), P("length"), P("value", "int", 0x41)),
                  doc="how many of the length bytes at addr equal value (a content probe)"))
# --- a garbage-collected heap (Jones & Lins 1996) ----------------------------
register(CallSpec("gc_new", "phys", (P("size"), P("nrefs", "int", 2)),
                  doc="a new object with nrefs reference slots (all null); returns its handle (-1 EINVAL)"))
register(CallSpec("gc_ref", "phys", (P("obj"), P("slot"), P("target", "int", 0)),
                  doc="obj.slot = target (0: null): 0 or -1 EINVAL"))
register(CallSpec("gc_get", "phys", (P("obj"), P("slot")), doc="the handle in obj.slot (0: null), or -1 EINVAL"))
register(CallSpec("gc_root", "phys", (P("obj"),), doc="add obj to the root set: 0 or -1 EINVAL"))
register(CallSpec("gc_unroot", "phys", (P("obj"),), doc="remove obj from the root set: 0 or -1 EINVAL"))
register(CallSpec("gc_collect", "phys", (), doc="a full collection; returns the number of objects freed"))
register(CallSpec("gc_compact", "phys", (), doc="slide live objects together; returns the number moved"))
register(CallSpec("gc_live", "phys", (P("obj"),), doc="1 if obj has not been freed, else 0"))
register(CallSpec("gc_addr", "phys", (P("obj"),), doc="obj's current address in the GC heap (-1 EINVAL if freed)"))
register(CallSpec("gc_pause", "phys", (), doc="work units of the last collection's pause"))

HEAP_CALLS = frozenset({"malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign",
                        "malloc_usable_size", "heap_store", "heap_load", "heap_fill", "heap_count"})

# The layer's allocators and the calls that drive each: a codec or state machine for one
# allocator draws from its calls only (``decode(data, ALLOCATORS["slab"])``, ``machine(t, "slab")``).
ALLOCATORS: dict[str, frozenset[str]] = {
    "buddy": frozenset({"buddy_alloc", "buddy_free", "nr_free_pages", "buddy_largest"}),
    "slab": frozenset({"kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free", "kmem_cache_shrink"}),
    "kmalloc": frozenset({"kmalloc", "kfree", "ksize"}),
    "vmalloc": frozenset({"vmalloc", "vfree", "vmalloc_to_pfn"}),
    "dma": frozenset({"dma_alloc_coherent", "dma_free_coherent"}),
    "numa": frozenset({"set_mempolicy", "migrate_thread", "numa_touch", "numa_stat"}),
    "arena": frozenset({"arena_create", "arena_alloc", "arena_reset", "arena_destroy"}),
    "heap": HEAP_CALLS,
    "gc": frozenset({"gc_new", "gc_ref", "gc_get", "gc_root", "gc_unroot", "gc_collect", "gc_compact", "gc_live",
                     "gc_addr", "gc_pause"}),
}
