"""Broken allocators whose bug shows only at the edge of an argument's range, on a machine with every
frame in use, or in a slab cache whose largest slab holds fewer objects than SLUB's minimum (issue #26):
the reference model with one rule changed, served in process as ``py:`` targets
(``py:tests/phys/broken_edges.py:target("NumaTouchPastLastPage")``).  Fakes for testing the generator
(``specs/gen_phys.py``: ``g_edge``, ``g_full``, ``cache_size``) and the judge."""

from __future__ import annotations

from dataclasses import replace

from memspec.model import gc, numa, slab
from memspec.model.buddy import order_for
from memspec.model.allocator import K_EINVAL
from memspec.model.expect import Expect, exactly
from memspec.model.frames import MAX_ORDER, PAGE_SHIFT, Owner
from memspec.model.phys import PhysModel
from memspec.model.slab import KmemCache
from memspec.records import Outcome
from memspec.targets.model import PhysModelTarget

PAGE = 1 << PAGE_SHIFT


def _touch_past_last(m, page: int) -> Expect:
    # the bug: the last page number is MAX_PAGE, not MAX_PAGE - 1 (``>`` for ``>=``)
    if page == numa.MAX_PAGE:
        return m.buddy.block_expect(m.buddy.zonelist(m.machine.fallback(m.numa.cpu_node)), 0,
                                    "numa.first-touch.local", "linux.buddy.enomem-when-exhausted",
                                    "numa.first-touch.local", what="a free frame")
    return numa.expect_numa_touch(m, page)


def _apply_touch_past_last(m, o: Outcome, page: int) -> None:
    if page == numa.MAX_PAGE and o.ok and o.value is not None and o.value >= 0:
        m.buddy.take(o.value, 0, Owner.ANON)
        return
    numa.apply_numa_touch(m, o, page)


class NumaTouchPastLastPage(PhysModel):
    """numa_touch accepts the page number one past the last (MAX_PAGE) and gives it a frame."""

    RULES = {**PhysModel.RULES, "numa_touch": replace(PhysModel.RULES["numa_touch"], expect=_touch_past_last,
                                                      apply=_apply_touch_past_last)}


def _full_slab_hands_out_live(m, cache: int, gfp: int = 0) -> Expect:
    e = slab.expect_kmem_cache_alloc(m, cache, gfp)
    c = m.caches.get(cache)
    if e.default.value == -1 and e.default.errno == "ENOMEM" and c is not None and c.live:
        # the bug: a cache whose slabs are all full, with no block free for a new slab, hands out its
        # first object again instead of failing
        return Expect(e.clause, Outcome(value=min(c.live)), "an object")
    return e


class FullSlabHandsOutLive(PhysModel):
    """A cache whose slabs are all full, on a machine with no block free for another slab, hands out one
    of its live objects again instead of failing with ENOMEM."""

    RULES = {**PhysModel.RULES,
             "kmem_cache_alloc": replace(PhysModel.RULES["kmem_cache_alloc"], expect=_full_slab_hands_out_live)}


def _live_of_any(m, obj: int) -> Expect:
    if obj not in m.gc.objects:
        # the bug: any handle that names no live object is reported freed (0), also one never handed out
        return Expect("jones.gc.complete", Outcome(value=0), "0")
    return gc.expect_gc_live(m, obj)


class GcLiveOfAnyHandle(PhysModel):
    """gc_live answers 0 (freed) for a handle that was never an object's (0, -1, one not handed out yet)
    instead of -1 EINVAL."""

    RULES = {**PhysModel.RULES, "gc_live": replace(PhysModel.RULES["gc_live"], expect=_live_of_any)}


def _uncapped_order(objsize: int, min_objects: int, max_order: int) -> int | None:
    # the bug: min_objects is not capped at what an order-max_order slab holds, so an object of more
    # than a quarter of the largest slab finds no order and falls to get_order(objsize)
    lowest = order_for(min_objects * objsize)
    for fraction in (16, 8, 4, 2):
        for order in range(lowest, max_order + 1):
            slab = PAGE << order
            if slab % objsize <= slab // fraction:
                return order
    order = order_for(objsize)
    return order if order <= MAX_ORDER else None


def _apply_create_uncapped(m, o: Outcome, size: int, align: int = 8) -> None:
    if o.ok and o.value is not None and o.value > 0 and size >= 1 and align > 0 and not align & (align - 1):
        objsize = KmemCache.object_size(size, align)
        order = _uncapped_order(objsize, *m.slab_geometry)
        if order is not None:
            m.caches[o.value] = KmemCache(o.value, f"cache-{o.value}", objsize, order)


class SlabMinObjectsUncapped(PhysModel):
    """A cache's slab order from SLUB's calculate_order without capping min_objects at what the largest
    slab holds: objects of 8 KiB + 8 to 10 KiB get order-2 slabs of one object instead of order-3 slabs
    of three (slub_min_objects 4, slub_max_order 3)."""

    RULES = {**PhysModel.RULES,
             "kmem_cache_create": replace(PhysModel.RULES["kmem_cache_create"], apply=_apply_create_uncapped)}


def _create_refusing_one(m, size: int, align: int = 8) -> Expect:
    if size == 1:
        # the bug: a cache of one-byte objects refused (the size check is ``size < 2``)
        return exactly("memspec.slab.create-einval-args", K_EINVAL)
    return slab.expect_kmem_cache_create(m, size, align)


class CacheOfOneByteRefused(PhysModel):
    """kmem_cache_create(1) answers EINVAL: the smallest object size refused.  The directed suite up to
    program 14 passes it; program 15 asks for size 1 with a valid alignment (the generator's edge run
    met size 1 only with a random, often invalid, alignment before), so it is caught at every seed."""

    RULES = {**PhysModel.RULES,
             "kmem_cache_create": replace(PhysModel.RULES["kmem_cache_create"], expect=_create_refusing_one)}


def _mempolicy_offline_bits(m, mode: int, nodemask: int = 0) -> Expect:
    online = (1 << m.machine.nodes) - 1
    if mode == numa.BIND and nodemask > 0 and nodemask & ~online:
        # the bug: a nodemask naming a node past the online ones refused, instead of those bits ignored
        return exactly("numa.set_mempolicy.einval-empty", K_EINVAL)
    return numa.expect_set_mempolicy(m, mode, nodemask)


class BindMaskPastOnlineRefused(PhysModel):
    """set_mempolicy(MPOL_BIND, mask) refuses a mask with a bit past the online nodes (online | 1 << nodes)
    instead of ignoring it (numa.set_mempolicy.ok).  The directed suite up to program 14 passes it;
    program 15 asks for it, so it is caught at every seed, not only when a random program draws the mask."""

    RULES = {**PhysModel.RULES,
             "set_mempolicy": replace(PhysModel.RULES["set_mempolicy"], expect=_mempolicy_offline_bits)}


BUGS = {c.__name__: c for c in (NumaTouchPastLastPage, FullSlabHandsOutLive, GcLiveOfAnyHandle,
                                SlabMinObjectsUncapped, CacheOfOneByteRefused, BindMaskPastOnlineRefused)}


def target(name: str) -> PhysModelTarget:
    return PhysModelTarget(f"broken-phys:{name}", BUGS[name])

