"""phys-layer clauses: frames and NUMA, buddy, slab/kmalloc, vmalloc, DMA, region,
the variable-size heap and the garbage-collected heap.

Sources: ISO/IEC 9899:2011 (C11) §7.22.3 Memory management functions (and the
C17 corrections of DR 445 and DR 460; C23 §7.24.3); POSIX.1-2024 XSH malloc(), calloc(), realloc(),
free(), posix_memalign(), aligned_alloc(); the glibc manual and Linux man-pages 6.9 for glibc's
documented choices; Linux 6.x Documentation/mm/ (physical_memory.rst,
slub.rst, vmalloc in Documentation/core-api/memory-allocation.rst,
Documentation/core-api/dma-api.rst) and mm/page_alloc.c, mm/slub.c,
mm/vmalloc.c, mm/mempolicy.c; set_mempolicy(2), numa(7); J. Bonwick, "The Slab
Allocator: An Object-Caching Kernel Memory Allocator", USENIX Summer 1994;
D. R. Hanson, "Fast allocation and deallocation of memory based on object
lifetimes", SP&E 20(1), 1990; R. Jones and R. Lins, "Garbage Collection:
Algorithms for Automatic Dynamic Memory Management", Wiley 1996; and the seed
article (``seed``).
"""

from __future__ import annotations

from .catalogue import declare

C11 = "ISO/IEC 9899:2011 §7.22.3"
C23 = "ISO/IEC 9899:2024 (C23) §7.24.3"
POSIX = "POSIX.1-2024 XSH"
PA = "Linux mm/page_alloc.c"
PHYS_DOC = "Linux Documentation/mm/physical_memory.rst"
BONWICK = "Bonwick, The Slab Allocator, USENIX Summer 1994"
SLUB = "Linux mm/slub.c; Documentation/mm/slub.rst"
MEMALLOC = "Linux Documentation/core-api/memory-allocation.rst"
DMA_API = "Linux Documentation/core-api/dma-api.rst, dma_alloc_coherent"
JONES = "Jones & Lins, Garbage Collection (Wiley 1996)"
HANSON = "Hanson, Fast allocation and deallocation of memory based on object lifetimes, SP&E 20(1) 1990"
SETPOL = "set_mempolicy(2), Linux man-pages 6.9"
SEED = "seed"

declare(
    "phys",
    # --- frames ----------------------------------------------------------------
    ("memspec.phys.frame-one-owner", "every frame has exactly one owner at all times (a free list, a slab, a page "
     "table, an anonymous page, the page cache or the kernel)",
     f"{PHYS_DOC} (struct page: one use at a time); {PA} (bad_page on freeing a page still in use)"),
    ("memspec.phys.free-plus-used", "per node, free frames plus allocated frames equal the node's frames",
     f"{PHYS_DOC}, Nodes and Zones; /proc/zoneinfo nr_free_pages against managed pages"),
    ("memspec.phys.boot", "phys_boot starts the layer afresh on a machine of one or two nodes of any positive "
     "number of frames whose first frames (up to node 0's) are ZONE_DMA: 0, every earlier allocation forgotten; a "
     "shape no machine has (no frames, a DMA zone larger than node 0) is refused (-1 EINVAL)",
     f"{PHYS_DOC}, Nodes and Zones (a node's and a zone's spanned pages are any count: e820 ranges end anywhere); "
     "memspec's own reset call, as vm_boot and seg_mode are"),
    # --- buddy -----------------------------------------------------------------
    ("linux.buddy.init-free-ranges", "at boot each zone's free frames enter the free lists as the largest naturally "
     "aligned blocks that fit (order min(MAX_ORDER, trailing zero bits of the pfn), lowered while the block would "
     "pass the range's end), so a zone that does not end on a max-order boundary ends in smaller blocks and no "
     "block crosses the end of a zone or a node",
     "Linux mm/memblock.c __free_pages_memory (memblock_free_all -> free_low_memory_core_early); mm/mm_init.c "
     "memblock_free_pages -> __free_pages_core, and deferred_free_pages (zone by zone, merged by __free_one_page into the same lists); "
     f"{PA} __free_one_page/page_is_buddy (no merge with a buddy of another zone)"),
    ("linux.buddy.alloc-from-free", "an allocation of order k returns 2^k frames that were all free",
     f"{PA} __rmqueue_smallest, expand"),
    ("linux.buddy.block-aligned", "a block of order k starts at a pfn that is a multiple of 2^k",
     f"{PA}, comment above __free_one_page: blocks are naturally aligned; Knuth TAOCP vol. 1 §2.5"),
    ("linux.buddy.no-overlap", "free blocks never overlap", f"{PA} __free_one_page"),
    ("linux.buddy.within-zone", "a block never crosses a zone boundary", f"{PHYS_DOC}, Zones; {PA} page_is_buddy"),
    ("linux.buddy.coalesce", "a freed block merges with its buddy while the buddy is free and of the same order, "
     "so no two free buddies are ever left apart", f"{PA} __free_one_page; {SEED}: 'enabling efficient splitting and coalescing'"),
    ("linux.buddy.no-spurious-failure", "an allocation does not fail while the zone it must use has a free block "
     "of the order", f"{PA} get_page_from_freelist (ignoring watermarks, which the model does not keep)"),
    ("linux.buddy.enomem-when-exhausted", "an allocation fails (NULL: -1 ENOMEM) when no allowed zone has a free "
     "block of the order", f"{PA} __alloc_pages: returns NULL"),
    ("linux.buddy.order-too-large", "an order above MAX_ORDER (10: 4 MiB) fails",
     f"{PA} __alloc_pages: if (order > MAX_PAGE_ORDER) return NULL; {SEED}: blocks from 4 KB up to 4 MB"),
    ("linux.buddy.einval", "a node that does not exist, or a page owner that is not one, is rejected (EINVAL)",
     f"{PA} alloc_pages_node (VM_BUG_ON on an invalid nid; the model answers EINVAL)"),
    ("linux.buddy.zonelist-order", "a block comes from the first zone of the zonelist that has one: the preferred "
     "node before farther nodes, a node's Normal zone before its DMA zone", f"{PA} build_zonelists, get_page_from_freelist; lowmem_reserve"),
    ("linux.gfp.dma-zone", "a GFP_DMA allocation comes from ZONE_DMA", f"{PHYS_DOC}, ZONE_DMA; include/linux/gfp.h"),
    ("linux.gfp.thisnode", "an allocation with __GFP_THISNODE comes from the requested node only", "include/linux/gfp_types.h __GFP_THISNODE"),
    ("linux.buddy.free", "freeing an allocated block succeeds", f"{PA} __free_pages"),
    ("linux.buddy.free-unallocated", "freeing a block that is not an allocated block is refused (a double free is "
     "never put on a free list twice)", f"{PA} free_page_is_bad / bad_page: 'Bad page state'"),
    ("seed.buddy.internal-frag-5k-8k", "a request gets the smallest power-of-two block of pages that holds it: "
     "a 5 KB request gets an 8 KB block (order 1), wasting 3 KB",
     f"{SEED}: 'A process requesting 5 KB receives an 8 KB block -- wasting 3 KB per allocation'"),
    ("seed.buddy.sizes-4k-4m", "buddy blocks range from 4 KiB (order 0) to 4 MiB (order 10)",
     f"{SEED}: 'power-of-2-sized blocks (from 4 KB up to 4 MB in typical configurations)'"),
    # --- slab ----------------------------------------------------------------
    ("linux.slab.create", "kmem_cache_create returns a new cache", f"{SLUB} kmem_cache_create; {BONWICK} §3.1"),
    ("linux.slab.create-einval", "a cache whose object (rounded up to its alignment) is larger than "
     "KMALLOC_MAX_SIZE (4 MiB: one MAX_PAGE_ORDER block) is refused; every smaller size is accepted, in a slab "
     "of a higher order when need be", "mm/slab_common.c kmem_cache_sanity_check (size > KMALLOC_MAX_SIZE: "
     "-EINVAL, CONFIG_DEBUG_VM); mm/slub.c calculate_order (falls back to get_order(size) up to MAX_PAGE_ORDER, "
     "else -ENOSYS) and kmem_cache_open; include/linux/slab.h KMALLOC_MAX_SIZE"),
    ("memspec.slab.create-einval-args", "a cache of size 0, or with an alignment that is not a power of two, is "
     "refused (EINVAL).  The kernel defines neither: its ALIGN() needs a power of two and no check refuses size 0; "
     "this is memspec's convention for the protocol's kmem_cache_create, never a kernel rule",
     "memspec convention; include/linux/align.h ALIGN (a power-of-two alignment)"),
    ("linux.slab.bad-cache", "an operation on a cache that does not exist is refused", f"{SLUB}"),
    ("bonwick.slab.reuse", "an allocation reuses a free object of an existing slab before the cache grows by a new slab",
     f"{BONWICK} §3.2 (the allocator grows a cache only when it has no free buffer); {SLUB} ___slab_alloc"),
    ("bonwick.slab.object-once", "a live object is never handed out again until it is freed",
     f"{BONWICK} §3.2; {SLUB} debug: 'Object already free' / freelist corruption checks"),
    ("bonwick.slab.no-spurious-failure", "an allocation does not fail while the cache or the buddy allocator has room",
     f"{BONWICK} §3.2 kmem_cache_alloc"),
    ("bonwick.slab.grow-from-buddy", "a new slab is a buddy block of the cache's order, cut into objects at multiples "
     "of the object size", f"{BONWICK} §3.2 (slab layout); {SLUB} allocate_slab"),
    ("bonwick.slab.from-buddy", "a slab's frames are owned by the slab", f"{SLUB} allocate_slab (PageSlab)"),
    ("bonwick.slab.counts", "per cache, live objects equal the objects in use counted over its slabs, and no slab "
     "holds more than fit", f"{BONWICK} §3.2 (slab reference counts); /proc/slabinfo active_objs"),
    ("bonwick.slab.free", "freeing a live object of the cache succeeds", f"{BONWICK} §3.1 kmem_cache_free"),
    ("linux.slub.free-not-live", "freeing an object that is not live in the cache (double free, wrong cache) is refused",
     f"{SLUB} free_consistency_checks: 'Object already free', cache_from_obj 'Wrong slab cache'"),
    ("bonwick.slab.shrink", "kmem_cache_shrink returns every empty slab's frames to the page allocator",
     f"{BONWICK} §3.4 (reclaiming memory); {SLUB} __kmem_cache_shrink"),
    ("linux.kmalloc.zero-size-ptr", "kmalloc(0) returns ZERO_SIZE_PTR (16)", "include/linux/slab.h ZERO_SIZE_PTR"),
    ("linux.kmalloc.kfree", "kfree of NULL, ZERO_SIZE_PTR or a live kmalloc object succeeds", f"{SLUB} kfree"),
    ("linux.kmalloc.ksize", "ksize is the size of the object's kmalloc class (or the large allocation's pages)",
     f"{SLUB} __ksize; mm/slab_common.c kmalloc_info (kmalloc-8 .. kmalloc-8192, 96, 192)"),
    ("linux.kmalloc.large-from-buddy", "kmalloc above the largest size class takes pages straight from the buddy "
     "allocator", "mm/slub.c __kmalloc_large_node"),
    ("linux.kmalloc.too-large", "kmalloc above the largest buddy order fails", "mm/slab_common.c KMALLOC_MAX_SIZE"),
    ("linux.kmalloc.pow2-aligned", "a kmalloc object of a power-of-two size class is aligned to that size",
     f"{MEMALLOC}: 'the address of a chunk allocated with kmalloc is aligned to at least ARCH_KMALLOC_MINALIGN ... "
     "For sizes which are a power of two, the alignment is also guaranteed to be at least the respective size'"),
    # --- vmalloc -----------------------------------------------------------------
    ("seed.vmalloc.virtually-contiguous", "vmalloc returns one virtually contiguous area of the kernel's vmalloc "
     "range whose pages map the frames it took", f"{SEED}: 'vmalloc() provides virtually contiguous but physically "
     "discontiguous memory'; mm/vmalloc.c"),
    ("seed.vmalloc.physically-scattered", "vmalloc needs free frames, not a contiguous run: it succeeds while enough "
     "frames are free, however scattered", f"{SEED}; mm/vmalloc.c __vmalloc_area_node (order-0 pages)"),
    ("linux.vmalloc.guard-page", "vmalloc areas are separated by an unmapped guard page", "mm/vmalloc.c (VM_NO_GUARD unset: size += PAGE_SIZE)"),
    ("linux.vmalloc.size0", "vmalloc(0) fails", "mm/vmalloc.c __vmalloc_node_range: if (!size ...) fail"),
    ("linux.vmalloc.vfree", "vfree of an area frees its frames", "mm/vmalloc.c vfree"),
    ("linux.vmalloc.vfree-not-area", "vfree of an address that does not start an area is refused",
     "mm/vmalloc.c vfree: 'Trying to vfree() nonexistent vm area'"),
    ("linux.vmalloc.to-pfn-unmapped", "vmalloc_to_pfn outside every area finds no frame", "mm/vmalloc.c vmalloc_to_page"),
    # --- DMA ------------------------------------------------------------------
    ("linux.dma.contiguous", "dma_alloc_coherent returns physically contiguous frames", f"{DMA_API}; {SEED}: 'DMA hardware that "
     "requires physically contiguous buffers must use dma_alloc_coherent()'"),
    ("linux.dma.below-mask", "the whole buffer lies below the device's DMA mask", f"{DMA_API}; kernel/dma/direct.c dma_coherent_ok"),
    ("linux.dma.fails-cleanly", "dma_alloc_coherent fails with NULL when no contiguous run below the mask exists, "
     "and only then", f"{DMA_API}: returns NULL if the allocation failed"),
    ("linux.dma.size0", "a DMA buffer of size 0 is refused (NULL: -1 with EINVAL or ENOMEM)",
     "kernel/dma/direct.c dma_direct_alloc (no explicit check: PAGE_ALIGN(0) is 0, and get_order(0) exceeds "
     "MAX_PAGE_ORDER, so the page allocator returns NULL); kernel/dma/mapping.c dma_alloc_attrs"),
    ("linux.dma.free", "dma_free_coherent of a live buffer frees its frames", DMA_API),
    ("linux.dma.free-unallocated", "dma_free_coherent of an address that is not a live buffer is refused", DMA_API),
    # --- NUMA ------------------------------------------------------------------
    ("numa.set_mempolicy.ok", "a valid mode and node mask set the thread's policy", SETPOL),
    ("numa.set_mempolicy.einval-mode", "an unknown mode fails with EINVAL", f"{SETPOL}, ERRORS: EINVAL mode is invalid"),
    ("numa.set_mempolicy.einval-default-mask", "MPOL_DEFAULT or MPOL_LOCAL with a non-empty node mask fails with EINVAL",
     f"{SETPOL}, ERRORS: EINVAL mode is MPOL_DEFAULT and nodemask is nonempty"),
    ("numa.set_mempolicy.einval-empty", "MPOL_BIND or MPOL_INTERLEAVE with no online node in the mask fails with EINVAL",
     f"{SETPOL}, ERRORS: EINVAL nodemask ... contains none that are permitted"),
    ("numa.first-touch.local", "under the default policy a page gets a frame on the node of the CPU that first "
     "touches it, falling back by distance when that node is full", f"{SETPOL}, MPOL_DEFAULT/MPOL_LOCAL; numa(7); {SEED}: first-touch allocation"),
    ("numa.first-touch.stays", "a touched page keeps its frame: later touches return the same frame",
     f"numa(7); {SEED}: 'naive first-touch allocation can produce remote-memory access when threads migrate'"),
    ("numa.preferred.node-first", "under MPOL_PREFERRED a page comes from the preferred node while it has room",
     f"{SETPOL}, MPOL_PREFERRED"),
    ("numa.bind.no-spill", "under MPOL_BIND a page comes only from the mask's nodes (nearest first)",
     f"{SETPOL}, MPOL_BIND: 'restricts memory allocation to the nodes specified in nodemask'"),
    ("numa.bind.enomem", "under MPOL_BIND an allocation fails rather than spill when the mask's nodes are full",
     f"{SETPOL}, MPOL_BIND; mm/mempolicy.c policy_nodemask"),
    ("numa.interleave.round-robin", "under MPOL_INTERLEAVE successive pages go to the mask's nodes in turn",
     f"{SETPOL}, MPOL_INTERLEAVE; mm/mempolicy.c interleave_nodes"),
    ("numa.migrate.ok", "a thread may move to a CPU of any online node", "sched_setaffinity(2); numa(7)"),
    ("numa.migrate.einval", "moving to a node that does not exist fails with EINVAL", "sched_setaffinity(2), ERRORS"),
    ("numa.touch.einval", "a negative or out-of-range page number is refused", "memspec convention"),
    ("seed.numa.remote-after-migration", "every access counts as local or remote by the frame's node against the "
     "thread's node, so a migrated thread's accesses to its old pages show as remote",
     f"{SEED}: NUMA topology and allocation locality; numastat(8) local_node/other_node"),
    ("numa.stat.counts", "NUMA_HIT counts pages placed on the intended node, NUMA_MISS pages placed elsewhere, "
     "NUMA_INTERLEAVE_HIT interleaved pages placed on their turn's node", "numastat(8); mm/vmstat.c"),
    ("numa.stat.einval", "an unknown counter is refused", "memspec convention"),
    # --- region/arena -----------------------------------------------------------
    ("hanson.arena.disjoint", "a new region overlaps no other region", HANSON),
    ("hanson.arena.create-einval", "a region of capacity 0, or above 64 MiB, is refused.  Hanson's regions have no "
     "size limit: the bound is memspec's convention for the protocol's arena_create, not a rule of the paper",
     f"memspec convention (model/heap.py ARENA_MAX); {HANSON} (regions of any size)"),
    ("hanson.arena.einval", "an operation on something that is not a live region, or an alignment that is not a "
     "power of two, is refused", f"memspec convention for the protocol's arena calls; {HANSON}"),
    ("hanson.arena.bump", "a region allocation is aligned and lies in the region's unused part: earlier objects stay "
     "live until the region is reset", f"{HANSON}; {SEED}: 'Region/arena allocation -- All allocations from a defined region freed together'"),
    ("hanson.arena.enomem-when-full", "a region allocation fails exactly when the unused part cannot hold it", HANSON),
    ("hanson.arena.reset", "resetting (or destroying) a region frees all its objects at once",
     f"{HANSON} (deallocate); {SEED}: 'eliminates per-object overhead'"),
    # --- the variable-size heap -------------------------------------------------------
    ("c11.malloc.aligned-max-align-t", "a successful malloc/calloc/realloc result of 16 bytes or more is suitably "
     "aligned for any object with a fundamental alignment: 16 bytes on x86-64 (alignof(max_align_t))",
     f"{C11} p1; {C23} p1; System V AMD64 ABI §3.1.2 (max_align_t: 16)"),
    ("c23.malloc.aligned-small-size", "a successful malloc/calloc/realloc result of n < 16 bytes is aligned for every "
     "object with a fundamental alignment and a size <= n: the largest power of two <= n (malloc(8): 8 bytes; "
     "malloc(0): any unique pointer).  Issue #14 asked for 16 bytes for every block; C17 (DR 445) and C23 say "
     "otherwise, and memspec follows the standard.  The alignment each library actually gives is in the "
     "implementation-choice table",
     f"{C23} p1: 'suitably aligned so that it can be assigned to a pointer to any type of object with a fundamental "
     "alignment requirement and size less than or equal to the size requested'; ISO/IEC 9899:2018 §7.22.3 p1 (DR 445)"),
    ("c11.malloc.disjoint", "the block of a successful allocation overlaps no other live block",
     f"{C11} p1: 'a pointer to an object disjoint from any other object'"),
    ("posix.malloc.enomem", "an allocation may fail only with a null pointer and errno ENOMEM",
     f"{POSIX} malloc(), RETURN VALUE ('shall return a null pointer and set errno') and ERRORS: ENOMEM "
     "Insufficient storage space is available"),
    ("posix.calloc.enomem", "a calloc that fails (too large, or nmemb*size overflows size_t) returns a null pointer "
     "and sets errno to ENOMEM", f"{POSIX} calloc(), RETURN VALUE and ERRORS: ENOMEM; {C23}.2 p3"),
    ("posix.realloc.enomem", "a realloc to a non-zero size that fails returns a null pointer, sets errno to ENOMEM "
     "and leaves the old block as it was", f"{POSIX} realloc(), RETURN VALUE ('If there is not enough available "
     "memory, realloc() shall return a null pointer and set errno to [ENOMEM]') and ERRORS"),
    ("posix.posix_memalign.enomem", "posix_memalign that cannot allocate returns ENOMEM",
     f"{POSIX} posix_memalign(), ERRORS: ENOMEM There is insufficient memory available with the requested alignment"),
    ("posix.aligned_alloc.errors", "aligned_alloc that fails returns a null pointer with errno EINVAL (an alignment "
     "the implementation does not support) or ENOMEM", f"{POSIX} aligned_alloc(), RETURN VALUE and ERRORS: EINVAL, "
     "ENOMEM; ISO/IEC 9899:2018 §7.22.3.1 (DR 460)"),
    ("linux.memalign.null-on-failure", "memalign (in neither C nor POSIX) reports a failure by returning NULL; errno "
     "is documented for glibc only, so another allocator's errno is its own choice",
     "memalign(3), Linux man-pages 6.9 (STANDARDS: None; RETURN VALUE)"),
    ("c11.malloc.size0-impl-defined", "a zero-size request returns either NULL or a unique pointer "
     "(implementation-defined; glibc returns a unique pointer)", f"{C11} p1: 'If the size of the space requested "
     "is zero, the behavior is implementation-defined'; glibc manual, Basic Allocation"),
    ("glibc.malloc.enomem-over-ptrdiff-max", "glibc only: a request above PTRDIFF_MAX fails with ENOMEM (other "
     "allocators are held to posix.*.enomem)",
     "glibc malloc/malloc.c checked_request2size (since 2.30); malloc(3) NOTES"),
    ("c11.malloc.indeterminate", "the bytes of a new malloc block have indeterminate values",
     f"{C11}.4 p2: 'whose value is indeterminate'"),
    ("c11.calloc.zeroed", "every byte of a calloc block reads as zero", f"{C11}.2 p2: 'The space is initialized to all bits zero'"),
    ("c11.calloc.overflow", "calloc whose nmemb*size overflows size_t returns a null pointer (errno: posix.calloc.enomem)",
     f"{POSIX} calloc(), ERRORS: ENOMEM; calloc(3): 'If the multiplication ... would result in integer overflow, then calloc() returns an error'"),
    ("c11.realloc.preserves-contents", "realloc keeps the contents up to the lesser of the old and new sizes",
     f"{C11}.5 p2: 'The contents of the new object shall be the same as that of the old object prior to deallocation, up to the lesser of the new and old sizes'"),
    ("c11.realloc.size0-impl-defined", "realloc(p, 0) either frees p and returns NULL (glibc) or returns a new "
     "unique pointer", f"{C11}.5 (C17: implementation-defined whether the old object is deallocated); realloc(3): 'equivalent to free(ptr)'"),
    ("c11.free.null-noop", "free(NULL) does nothing", f"{C11}.3 p2: 'If ptr is a null pointer, no action occurs'"),
    ("c11.free.deallocates", "free of a live block deallocates it", f"{C11}.3 p2"),
    ("c11.free.undefined-non-live", "free or realloc of a pointer that is not live is undefined (judged unknown; real "
     "targets refuse to run it)", f"{C11}.3 p2: 'if the argument does not match a pointer earlier returned ... the behavior is undefined'"),
    ("c11.object.out-of-bounds", "touching a byte outside every live block is undefined (judged unknown; real targets "
     "refuse to run it)", "ISO/IEC 9899:2011 §6.5.6 p8, J.2"),
    ("c11.object.value-kept", "a byte stored in a live block reads back until it is overwritten or freed",
     "ISO/IEC 9899:2011 §6.2.4 p2 (an object retains its last-stored value throughout its lifetime)"),
    ("posix.posix_memalign.einval-not-power-of-two", "posix_memalign with an alignment that is not a power of two "
     "returns EINVAL", f"{POSIX} posix_memalign(), ERRORS: EINVAL The value of the alignment parameter is not a power of two multiple of sizeof(void *)"),
    ("posix.posix_memalign.einval-not-multiple-of-pointer", "posix_memalign with an alignment that is not a "
     "multiple of sizeof(void *) returns EINVAL", f"{POSIX} posix_memalign(), ERRORS: EINVAL"),
    ("posix.posix_memalign.aligned", "posix_memalign's block is aligned to the requested alignment",
     f"{POSIX} posix_memalign(): 'The address of the allocated memory will be a multiple of alignment'"),
    ("posix.posix_memalign.size0-impl-defined", "posix_memalign of size 0 yields NULL or a unique pointer",
     f"{POSIX} posix_memalign(): 'If the size of the space requested is 0, the behavior is implementation-defined'"),
    ("c11.aligned_alloc.aligned", "aligned_alloc's block is aligned to the requested alignment", "ISO/IEC 9899:2011 §7.22.3.1"),
    ("c11.aligned_alloc.unsupported-alignment", "aligned_alloc with an alignment that is not a power of two returns "
     "NULL (C17) or, in glibc before 2.38, a block aligned to the next power of two", "ISO/IEC 9899:2018 §7.22.3.1 "
     "(DR 460); aligned_alloc(3) (glibc 2.38 NEWS)"),
    ("glibc.memalign.rounds-up", "memalign's pointer (also for size 0) is a multiple of the requested alignment, "
     "rounded up to a power of two", "memalign(3): 'The memory address will be a multiple of alignment'; glibc "
     "malloc/malloc.c _mid_memalign"),
    ("glibc.malloc_usable_size.at-least-size", "malloc_usable_size of a live block is at least the size asked for "
     "(0 for NULL)", "malloc_usable_size(3): 'The value returned ... may be greater than the requested size'"),
    # --- the garbage-collected heap --------------------------------------------------
    ("jones.gc.sound", "a collection never frees an object reachable from the roots",
     f"{JONES} ch. 1 (liveness by reachability), ch. 2 (mark-sweep: only unmarked objects are swept)"),
    ("jones.gc.complete", "a full collection frees every object unreachable when it starts",
     f"{JONES} ch. 2 (a non-incremental mark-sweep cycle reclaims all garbage)"),
    ("jones.gc.roots", "objects named as roots stay roots until removed", f"{JONES} ch. 1 (the root set)"),
    ("jones.gc.refs-kept", "a reference slot keeps the object stored in it, across collections and compactions",
     f"{JONES} ch. 5 (compaction updates every pointer to a moved object)"),
    ("jones.gc.handle-valid", "operations on freed or unknown objects, or on slots out of range, are refused", "memspec convention"),
    ("jones.gc.compact-slides", "after compaction the live objects lie packed from the heap's base, below the sum of "
     "their sizes", f"{JONES} ch. 5 (sliding compaction, the Lisp 2 algorithm)"),
    ("jones.gc.pause-accounted", "a collection's pause is accounted in work units: at least one per live object "
     "marked (the model: marked + slots traced + objects swept)", f"{JONES} ch. 2 (mark-sweep cost); {SEED}: "
     "'Adds latency variance from collection pauses'"),
    ("memspec.gc.handle-fresh", "a new object gets a handle never used before", "memspec convention (handles are program-visible names)"),
    ("memspec.gc.address-stable", "an object's address changes only by compaction", f"{JONES} ch. 2 (a non-moving collector)"),
)
