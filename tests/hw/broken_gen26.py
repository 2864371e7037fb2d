"""Broken walkers that only issue #26's generator features show (read-back of every entry of a path,
accesses across a page's offsets): the model with one rule wrong, served in process as ``py:`` targets
(``py:tests/hw/broken_gen26.py:target("NoAccessedInUpperEntries")``).  Fakes for testing the generator."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path as _P

from memspec.model.paging import Paging
from memspec.model.walk import Path

sys.path.insert(0, str(_P(__file__).resolve().parent))
from broken_hw import BrokenTarget  # noqa: E402


class NoAccessedInUpperEntries(Paging):
    """Sets A only in the entry that maps the page, never in the PML4E, PDPTE or PDE a walk used
    (SDM Vol. 3A §4.8: every paging-structure entry used gets A)."""

    def _apply_access(self, o, la, acc, cpl, ac):
        cur = self._last.get("cur") if self._last.get("la") == la else None
        before = {u.addr: self.mem.get(u.addr) for u in cur.uses[:-1]} if isinstance(cur, Path) else {}
        super()._apply_access(o, la, acc, cpl, ac)
        for addr, v in before.items():
            if v is not None and not v & 0x20 and addr in self.mem:
                self.mem[addr] &= ~0x20


class OffsetOf11Bits(Paging):
    """A 4 KiB translation keeps only bits 10:0 of the linear address as the offset in the page."""

    def _outcome_of(self, res, la, acc, cpl, ac):
        o, clause, pa = super()._outcome_of(res, la, acc, cpl, ac)
        if isinstance(res, Path) and res.size == 1 << 12 and o is not None and o.ok and la & 0x800:
            o, _, pa = super()._outcome_of(res, la & ~0x800, acc, cpl, ac)
        return o, clause, pa


BUGS = {"NoAccessedInUpperEntries": NoAccessedInUpperEntries, "OffsetOf11Bits": OffsetOf11Bits, "Paging": Paging}


def target(name: str) -> BrokenTarget:
    return BrokenTarget(BUGS[name])
