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
from memspec.targets.base import Target
from memspec.targets.model import ModelSession


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


def _full_by_one(m, arena: int, size: int, align: int = 16):
    a = m.arenas.get(arena)
    if a is not None and size > 0 and align > 0 and not align & (align - 1) and (a.cursor + align - 1) // align * align + size == a.end:
        return exactly("hanson.arena.enomem-when-full", NULL_ENOMEM)
    return expect_arena_alloc(m, arena, size, align)


class ArenaFullByOne(PhysModel):
    """An arena refuses the allocation that would fill it exactly (``>=`` for ``>``)."""

    RULES = {**PhysModel.RULES, "arena_alloc": replace(PhysModel.RULES["arena_alloc"], expect=_full_by_one)}


BUGS = {c.__name__: c for c in (TopBlockLost, ArenaFullByOne)}


class BrokenPhys(Target):
    layers = ("phys",)

    def __init__(self, name: str):
        super().__init__()
        self.cls = BUGS[name]
        self.name = f"broken-phys:{name}"

    def session(self, layer: str = "phys") -> ModelSession:
        s = ModelSession("phys")
        s.system = self.cls()
        return s


def target(name: str) -> BrokenPhys:
    return BrokenPhys(name)
