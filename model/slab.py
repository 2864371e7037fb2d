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

The rules of the slab and kmalloc calls (``RULES``): an allocation is a free object of
one of the cache's slabs while one has room (``bonwick.slab.reuse``), else an object of
a new slab taken from the buddy allocator (``bonwick.slab.grow-from-buddy``); a kmalloc
object of a power-of-two class is aligned to its size (``linux.kmalloc.pow2-aligned``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from memspec.consts import GFP
from memspec.records import Outcome

from .allocator import K_EINVAL, K_ENOMEM, OK0, checked, is_pow2, not_failed
from .buddy import Buddy, OnNode, freeing, nodes_for, order_for
from .expect import Expect, exactly
from .frames import MAX_ORDER, PAGE_SHIFT, FrameTable, Machine, Owner
from .rules import Rule

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

    def free(self, obj: int) -> None:
        """Return the live object ``obj`` to its slab."""
        self.live.pop(obj)
        s, idx = self.slab_of(obj)  # type: ignore[misc]
        s.live.discard(idx)

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


# -- the slab and kmalloc calls' rules ------------------------------------------------


class Kernel(Protocol):
    """What the slab and kmalloc rules read and change of the phys model."""

    machine: Machine
    frames: FrameTable
    buddy: Buddy
    numa: OnNode
    slab_geometry: tuple[int, int]                          # the target's slab_min_objects, slab_max_order
    caches: dict[int, KmemCache]                            # handle -> kmem_cache_create's cache
    kmalloc_caches: dict[tuple[int, bool], KmemCache]       # (size class, GFP_DMA) -> cache
    kmalloc_large: dict[int, int]                           # address -> pfn of a kmalloc_large block


def slab_expect(m: Kernel, c: KmemCache, gfp: int) -> Expect:
    """An object of ``c``: a free one of its slabs while one has room, else one of a new slab."""
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
    zones = m.buddy.zonelist(nodes_for(m, -1, gfp), dma_only=dma)
    zone = m.buddy.first_zone_with(zones, c.order)
    if zone is None:
        return exactly("bonwick.slab.grow-from-buddy", K_ENOMEM)
    pick = m.buddy.pick(zone, c.order)
    block = m.buddy.block_checks(c.order, zone, "linux.buddy.zonelist-order", shift=PAGE_SHIFT)

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


def slab_apply(m: Kernel, c: KmemCache, o: Outcome) -> None:
    if not o.ok or o.value is None or o.value <= 0:
        return
    spfn = (o.value >> PAGE_SHIFT) & ~((1 << c.order) - 1)
    if spfn not in c.slabs:
        m.buddy.take(spfn, c.order, Owner.SLAB)
        c.slabs[spfn] = Slab(spfn)
    s, idx = c.slab_of(o.value) or (None, None)
    if s is None:
        return
    if idx in s.live:
        m.frames.violations.append(("bonwick.slab.object-once", f"{c.name}: object {o.value:#x} handed out twice"))
    s.live.add(idx)
    c.live[o.value] = spfn


def expect_kmem_cache_create(m: Kernel, size: int, align: int = 8) -> Expect:
    if size < 1 or not is_pow2(align):
        return exactly("memspec.slab.create-einval-args", K_EINVAL)
    if slab_order(KmemCache.object_size(size, align), *m.slab_geometry) is None:
        # linux.slab.create-einval: past KMALLOC_MAX_SIZE no slab order up to MAX_PAGE_ORDER holds an object
        return exactly("linux.slab.create-einval", K_EINVAL)
    taken = set(m.caches)
    return checked("linux.slab.create", Outcome(value=max(taken, default=0) + 1), "a new cache handle",
                   ("linux.slab.create", lambda o: None if o.ok and o.value is not None and o.value > 0
                    and o.value not in taken else f"{o.describe()} is not a fresh positive handle"))


def apply_kmem_cache_create(m: Kernel, o: Outcome, size: int, align: int = 8) -> None:
    if o.ok and o.value is not None and o.value > 0:
        if size >= 1 and is_pow2(align) and slab_order(KmemCache.object_size(size, align),
                                                       *m.slab_geometry) is not None:
            m.caches[o.value] = KmemCache.make(o.value, f"cache-{o.value}", size, align, *m.slab_geometry)


def expect_kmem_cache_alloc(m: Kernel, cache: int, gfp: int = 0) -> Expect:
    c = m.caches.get(cache)
    if c is None:
        return exactly("linux.slab.bad-cache", K_EINVAL)
    return slab_expect(m, c, gfp)


def apply_kmem_cache_alloc(m: Kernel, o: Outcome, cache: int, gfp: int = 0) -> None:
    if cache in m.caches:
        slab_apply(m, m.caches[cache], o)


def expect_kmem_cache_free(m: Kernel, cache: int, obj: int) -> Expect:
    c = m.caches.get(cache)
    if c is None:
        return exactly("linux.slab.bad-cache", K_EINVAL)
    return freeing(c.live, obj, "bonwick.slab.free", "linux.slub.free-not-live")


def apply_kmem_cache_free(m: Kernel, o: Outcome, cache: int, obj: int) -> None:
    c = m.caches.get(cache)
    if o.ok and c is not None and obj in c.live:
        c.free(obj)


def expect_kmem_cache_shrink(m: Kernel, cache: int) -> Expect:
    c = m.caches.get(cache)
    if c is None:
        return exactly("linux.slab.bad-cache", K_EINVAL)
    n = sum(1 << c.order for s in c.slabs.values() if not s.live)
    return exactly("bonwick.slab.shrink", Outcome(value=n))


def apply_kmem_cache_shrink(m: Kernel, o: Outcome, cache: int) -> None:
    c = m.caches.get(cache)
    if c is None or not o.ok:
        return
    for pfn in [p for p, s in c.slabs.items() if not s.live]:
        del c.slabs[pfn]
        m.buddy.give(pfn)


def kcache(m: Kernel, size: int, gfp: int = 0) -> KmemCache:
    """The kmalloc cache serving ``size``: a GFP_DMA request has caches of its own (dma-kmalloc-N,
    mm/slab_common.c kmalloc_type), so its objects never come from a Normal-zone slab and a
    kmalloc-N slab with room never obliges it (linux.gfp.dma-zone)."""
    cls = kmalloc_class(size)
    dma = bool(gfp & GFP["GFP_DMA"])
    c = m.kmalloc_caches.get((cls, dma))
    if c is None:
        c = m.kmalloc_caches[(cls, dma)] = KmemCache.make(
            -(cls | dma << 20), f"{'dma-' if dma else ''}kmalloc-{cls}", cls, cls if is_pow2(cls) else 8,
            *m.slab_geometry)
    return c


def expect_kmalloc(m: Kernel, size: int, gfp: int = 0) -> Expect:
    if size == 0:
        return exactly("linux.kmalloc.zero-size-ptr", Outcome(value=ZERO_SIZE_PTR))
    if size < 0:
        return exactly("linux.kmalloc.too-large", K_ENOMEM)
    if size <= KMALLOC_MAX_CACHE:
        c = kcache(m, size, gfp)
        e = slab_expect(m, c, gfp)
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
    zones = m.buddy.zonelist(nodes_for(m, -1, gfp), dma_only=bool(gfp & GFP["GFP_DMA"]))
    return m.buddy.block_expect(zones, order, "linux.kmalloc.large-from-buddy", "linux.kmalloc.large-from-buddy",
                                "linux.buddy.zonelist-order", shift=PAGE_SHIFT)


def apply_kmalloc(m: Kernel, o: Outcome, size: int, gfp: int = 0) -> None:
    if not o.ok or o.value is None or o.value <= 0 or size <= 0:
        return
    if size <= KMALLOC_MAX_CACHE:
        slab_apply(m, kcache(m, size, gfp), o)
    else:
        pfn = o.value >> PAGE_SHIFT
        m.buddy.take(pfn, order_for(size), Owner.KERNEL)
        m.kmalloc_large[o.value] = pfn


def kmalloc_owner(m: Kernel, obj: int) -> KmemCache | None:
    for c in m.kmalloc_caches.values():
        if obj in c.live:
            return c
    return None


def expect_kfree(m: Kernel, obj: int) -> Expect:
    if obj in (0, ZERO_SIZE_PTR) or kmalloc_owner(m, obj) or obj in m.kmalloc_large:
        return exactly("linux.kmalloc.kfree", OK0)
    return exactly("linux.slub.free-not-live", K_EINVAL)


def apply_kfree(m: Kernel, o: Outcome, obj: int) -> None:
    if not o.ok:
        return
    c = kmalloc_owner(m, obj)
    if c is not None:
        c.free(obj)
    elif obj in m.kmalloc_large:
        m.buddy.give(m.kmalloc_large.pop(obj))


def expect_ksize(m: Kernel, obj: int) -> Expect:
    if obj == ZERO_SIZE_PTR:
        return exactly("linux.kmalloc.ksize", OK0)
    c = kmalloc_owner(m, obj)
    if c is not None:
        return exactly("linux.kmalloc.ksize", Outcome(value=c.objsize))
    if obj in m.kmalloc_large:
        # the request got the smallest block of 2^order pages that holds it (5 KB -> 8 KB)
        order, _ = m.buddy.allocated[m.kmalloc_large[obj]]
        return replace(exactly("seed.buddy.internal-frag-5k-8k", Outcome(value=PAGE << order)),
                       covers=("seed.buddy.internal-frag-5k-8k", "linux.kmalloc.ksize"))
    return exactly("linux.slub.free-not-live", K_EINVAL)


def slab_counts_consistent(m: Kernel) -> list[tuple[str, str]]:
    """Every cache's counts agree with its slabs (bonwick.slab.counts), and every slab's frames are
    owned by the slab (bonwick.slab.from-buddy)."""
    for c in list(m.caches.values()) + list(m.kmalloc_caches.values()):
        bad = c.audit()
        if bad:
            return bad
        for pfn in c.slabs:
            if (m.frames.owner[pfn:pfn + (1 << c.order)] != Owner.SLAB).any():
                return [("bonwick.slab.from-buddy", f"{c.name}: slab {pfn}'s frames are not owned by the slab")]
    return []


def slab_frames_owned(m: Kernel, ranges: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """bonwick.slab.from-buddy over frames claimed or released (``ranges``: (pfn, count)) by a step
    that ran no slab rule: every slab there still owns its frames."""
    for pfn, count in ranges:
        for c in list(m.caches.values()) + list(m.kmalloc_caches.values()):
            n = 1 << c.order
            for head in range(pfn - pfn % n, pfn + max(count, 1), n):
                if head in c.slabs and (m.frames.owner[head:head + n] != Owner.SLAB).any():
                    return [("bonwick.slab.from-buddy", f"{c.name}: slab {head}'s frames are not owned by the slab")]
    return []


RULES = {
    "kmem_cache_create": Rule(expect_kmem_cache_create, apply_kmem_cache_create),
    "kmem_cache_alloc": Rule(expect_kmem_cache_alloc, apply_kmem_cache_alloc),
    "kmem_cache_free": Rule(expect_kmem_cache_free, apply_kmem_cache_free),
    "kmem_cache_shrink": Rule(expect_kmem_cache_shrink, apply_kmem_cache_shrink),
    "kmalloc": Rule(expect_kmalloc, apply_kmalloc),
    "kfree": Rule(expect_kfree, apply_kfree),
    "ksize": Rule(expect_ksize),
}
