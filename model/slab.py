"""Slab caches after Bonwick (USENIX Summer 1994), as Linux's SLUB keeps them, and kmalloc.

Laws:

* a cache (``kmem_cache``) hands out objects of one size; its memory comes in
  slabs, each a buddy block of the cache's order cut into ``objs_per_slab``
  objects;
* a slab is *full*, *partial* or *empty* by how many of its objects are live;
* an allocation reuses a free object of an existing slab before it takes a new
  slab from the page allocator (Bonwick §3.2: the allocator grows a cache only
  when it has no free object);
* an object is live at most once: a second allocation of a live object, or a
  free of an object that is not live, is a bug (SLUB debug: "Object already free");
* ``kmem_cache_shrink`` gives every empty slab back to the buddy allocator.

kmalloc serves ``size`` from the smallest size class >= size (kmalloc-8 ..
kmalloc-8192, with the odd 96 and 192), and anything larger straight from the
buddy allocator (kmalloc_large).  Worked example: ``kmalloc(100)`` comes from
kmalloc-128, so ``ksize`` says 128; ``kmalloc(5000)`` from kmalloc-8192.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .buddy import order_for
from .frames import MAX_ORDER, PAGE_SHIFT

PAGE = 1 << PAGE_SHIFT
KMALLOC_CLASSES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
KMALLOC_MAX_CACHE = KMALLOC_CLASSES[-1]
ZERO_SIZE_PTR = 16          # include/linux/slab.h: what kmalloc(0) returns
# KMALLOC_MAX_SIZE (include/linux/slab.h, SLUB): 1 << (MAX_PAGE_ORDER + PAGE_SHIFT), 4 MiB on x86-64.
# The largest object a cache may hold: kmem_cache_sanity_check refuses a larger size (CONFIG_DEBUG_VM),
# and without it SLUB's calculate_order finds no order up to MAX_PAGE_ORDER that holds one object.
KMALLOC_MAX_SIZE = PAGE << MAX_ORDER
# SLUB's slab geometry is the kernel's choice (boot parameters slub_min_objects and slub_max_order,
# Documentation/mm/slub.rst; the default min_objects grows with the CPU count): a target states its
# own through the facts; these are the model's when it runs alone.
SLUB_MIN_OBJECTS = 4
SLUB_MAX_ORDER = 3          # PAGE_ALLOC_COSTLY_ORDER, slub_max_order's default


def kmalloc_class(size: int) -> int:
    """The kmalloc size class of a ``1 <= size <= 8192`` request."""
    for c in KMALLOC_CLASSES:
        if size <= c:
            return c
    raise ValueError(size)


def slab_order(objsize: int, min_objects: int = SLUB_MIN_OBJECTS, max_order: int = SLUB_MAX_ORDER) -> int | None:
    """The slab order for ``objsize``-byte objects, as SLUB's calculate_order (mm/slub.c) finds it:
    at least ``min_objects`` (capped at what an order-``max_order`` slab holds) per slab, the smallest
    order up to ``max_order`` that wastes at most 1/16 of the slab, else 1/8, 1/4, 1/2; an object
    too big for that gets the smallest order holding it (``get_order``) up to MAX_PAGE_ORDER; None
    when none holds it (the cache cannot be created: -ENOSYS).

    >>> [slab_order(n) for n in (8, 1024, 2048, 9000, 40000, 1 << 22, (1 << 22) + 1)]
    [0, 0, 1, 3, 4, 10, None]
    """
    min_objects = min(min_objects, (PAGE << max_order) // objsize)
    if min_objects >= 1:
        lowest = order_for(min_objects * objsize)
        for fraction in (16, 8, 4, 2):
            for order in range(lowest, max_order + 1):
                slab = PAGE << order
                if slab % objsize <= slab // fraction:
                    return order
    order = order_for(objsize)
    return order if order <= MAX_ORDER else None


@dataclass(slots=True)
class Slab:
    pfn: int
    live: set[int] = field(default_factory=set)   # object indices in use


@dataclass(slots=True)
class KmemCache:
    """One cache: object size, slab geometry, slabs by first pfn, live objects."""

    handle: int
    name: str
    objsize: int
    order: int
    slabs: dict[int, Slab] = field(default_factory=dict)
    live: dict[int, int] = field(default_factory=dict)     # object address -> slab pfn

    @staticmethod
    def object_size(size: int, align: int) -> int:
        """The object's size in its slab: at least a pointer (the free pointer), rounded up to ``align``."""
        objsize = max(size, 8)
        return (objsize + align - 1) // align * align

    @classmethod
    def make(cls, handle: int, name: str, size: int, align: int, min_objects: int = SLUB_MIN_OBJECTS,
             max_order: int = SLUB_MAX_ORDER) -> "KmemCache":
        objsize = cls.object_size(size, align)
        order = slab_order(objsize, min_objects, max_order)
        if order is None:
            raise ValueError(f"no slab order holds a {objsize}-byte object")
        return cls(handle, name, objsize, order)

    @property
    def per_slab(self) -> int:
        return (PAGE << self.order) // self.objsize

    def slab_of(self, addr: int) -> tuple[Slab, int] | None:
        """The slab and object index at ``addr``, if addr is an object boundary of one of our slabs."""
        pfn = (addr >> PAGE_SHIFT) & ~((1 << self.order) - 1)
        s = self.slabs.get(pfn)
        if s is None:
            return None
        off = addr - (pfn << PAGE_SHIFT)
        if off % self.objsize or off // self.objsize >= self.per_slab:
            return None
        return s, off // self.objsize

    def has_free(self) -> bool:
        return any(len(s.live) < self.per_slab for s in self.slabs.values())

    def pick(self) -> int | None:
        """The model's own choice: the fullest partial slab, lowest free index (SLUB keeps
        allocating from its current slab until it fills); then an empty slab."""
        best = None
        for s in self.slabs.values():
            if len(s.live) < self.per_slab:
                key = (-len(s.live), s.pfn)
                if best is None or key < best[0]:
                    best = (key, s)
        if best is None:
            return None
        s = best[1]
        idx = min(set(range(self.per_slab)) - s.live)
        return (s.pfn << PAGE_SHIFT) + idx * self.objsize

    def state(self, s: Slab) -> str:
        return "full" if len(s.live) == self.per_slab else "empty" if not s.live else "partial"

    def info(self) -> tuple[int, int, int]:
        """/proc/slabinfo's active_objs, num_objs, num_slabs."""
        return len(self.live), len(self.slabs) * self.per_slab, len(self.slabs)

    def audit(self) -> list[tuple[str, str]]:
        total = 0
        for s in self.slabs.values():
            if len(s.live) > self.per_slab or any(i < 0 or i >= self.per_slab for i in s.live):
                return [("bonwick.slab.counts", f"{self.name}: slab {s.pfn} has {len(s.live)} of {self.per_slab}")]
            total += len(s.live)
        if total != len(self.live):
            return [("bonwick.slab.counts",
                     f"{self.name}: {len(self.live)} live objects but the slabs count {total} in use")]
        return []
