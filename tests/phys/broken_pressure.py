"""Broken allocators whose bug only an exhaustion phase shows (issue #26): the reference model with
one rule or mechanic changed, served in process as ``py:`` targets
(``py:tests/phys/broken_pressure.py:target("TopBlockLost")``).  Fakes for testing the generator and
the judge."""

from __future__ import annotations

from dataclasses import replace

from memspec.model.buddy import Buddy
from memspec.model.frames import MAX_ORDER
from memspec.model.heap import NULL_ENOMEM, expect_arena_alloc
from memspec.model.expect import exactly
from memspec.model.phys import PhysModel
from memspec.targets.model import PhysModelTarget


class TopBlockLost(PhysModel):
    """The buddy allocator never finds the free max-order block at the top of a zone: an allocation
    that only that block could serve fails (or falls back to another zone)."""

    class _Lossy(Buddy):
        __slots__ = ()

        def _lost(self, head: int, k: int, zone) -> bool:
            return k == MAX_ORDER and head + (1 << k) == zone.end

        def blocks_in(self, zone, order, limit=None):
            return ((h, k) for h, k in super().blocks_in(zone, order, limit) if not self._lost(h, k, zone))

        def pick(self, zone, order, limit=None):
            for k in range(order, MAX_ORDER + 1):
                heads = [h for h in self.lists[k] if h in zone and (limit is None or h + (1 << order) <= limit)
                         and not self._lost(h, k, zone)]
                if heads:
                    return min(heads)
            return None

    def __init__(self, machine=None):
        super().__init__(machine)
        self.buddy.__class__ = self._Lossy


class ZoneEndAligned(PhysModel):
    """The buddy allocator assumes every zone ends on a max-order boundary: at boot a max-order aligned pfn
    starts a max-order free block even when fewer frames are left in the zone, so on a machine whose zone
    ends elsewhere the last block crosses the end of the zone (into the next zone, the next node, or past
    the end of memory), and the next zone starts where that block ends."""

    def __init__(self, machine=None):
        super().__init__(machine)
        b, m = self.buddy, self.machine
        for head in list(b.free_head):
            b._pop(head)
        reserved = set(m.reserved)
        pfn = 0
        for z in m.zones:
            pfn = max(pfn, z.start)
            while pfn < z.end:
                if pfn in reserved:
                    pfn += 1
                    continue
                order = MAX_ORDER
                # the bug: a max-order block is never checked against the zone's end
                while order > 0 and (pfn % (1 << order) or (order < MAX_ORDER and pfn + (1 << order) > z.end)
                                     or any(pfn <= r < pfn + (1 << order) for r in reserved)):
                    order -= 1
                b._push(pfn, order)
                pfn += 1 << order


class StaleTopOrder(PhysModel):
    """The buddy allocator keeps, per zone, the highest order it searches: recomputed after every
    allocation (so it drops once the zone's top blocks are used up) but raised on a free only to the
    freed block's own order, not to the order it coalesced into.  Until a zone's highest orders are
    exhausted nothing shows; after it, blocks freed at a lower order merge into a max-order block the
    allocator no longer looks for."""

    class _Hinted(Buddy):
        __slots__ = ()

        def _top(self, zone) -> int:
            return StaleTopOrder.TOP.setdefault(id(self), {}).get(zone, MAX_ORDER)

        def blocks_in(self, zone, order, limit=None):
            return ((h, k) for h, k in super().blocks_in(zone, order, limit) if k <= self._top(zone))

        def pick(self, zone, order, limit=None):
            for k in range(order, min(MAX_ORDER, self._top(zone)) + 1):
                heads = [h for h in self.lists[k] if h in zone and (limit is None or h + (1 << order) <= limit)]
                if heads:
                    return min(heads)
            return None

        def take(self, pfn, order, owner):
            super().take(pfn, order, owner)
            zone = self.machine.zone_of(pfn)
            if zone is not None:
                StaleTopOrder.TOP.setdefault(id(self), {})[zone] = max(
                    (k for h, k in self.free_head.items() if h in zone), default=-1)

        def give(self, pfn):
            order = super().give(pfn)
            zone = self.machine.zone_of(pfn)
            if zone is not None:
                tops = StaleTopOrder.TOP.setdefault(id(self), {})
                tops[zone] = max(tops.get(zone, MAX_ORDER), order)      # the bug: not the coalesced order
            return order

    TOP: dict = {}      # id(buddy) -> zone -> the highest order searched

    def __init__(self, machine=None):
        super().__init__(machine)
        StaleTopOrder.TOP.pop(id(self.buddy), None)
        self.buddy.__class__ = self._Hinted


def _full_by_one(m, arena: int, size: int, align: int = 16):
    a = m.arenas.get(arena)
    if a is not None and size > 0 and align > 0 and not align & (align - 1) and (a.cursor + align - 1) // align * align + size == a.end:
        return exactly("hanson.arena.enomem-when-full", NULL_ENOMEM)
    return expect_arena_alloc(m, arena, size, align)


class ArenaFullByOne(PhysModel):
    """An arena refuses the allocation that would fill it exactly (``>=`` for ``>``)."""

    RULES = {**PhysModel.RULES, "arena_alloc": replace(PhysModel.RULES["arena_alloc"], expect=_full_by_one)}


BUGS = {c.__name__: c for c in (TopBlockLost, ArenaFullByOne, ZoneEndAligned, StaleTopOrder)}


def target(name: str) -> PhysModelTarget:
    return PhysModelTarget(f"broken-phys:{name}", BUGS[name])
