"""Deliberately broken walkers: the model with one SDM rule broken, run as a target.

Each must be caught by the judge (the correct model) with a small program.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memspec.model.expect import exactly
from memspec.model.paging import Paging
from memspec.model.paging_control import CR4_CET, CR4_VMXE
from memspec.model.pte import CR0_WP, EXEC, READ, ErrCode, Pte
from memspec.model.tlb import ALL, PAGE
from memspec.model.walk import Path
from memspec.program import Call
from memspec.records import OK, Observation, Outcome
from memspec.targets.base import Session, Target


class IgnoresUsAtPde(Paging):
    """Combines U/S over PML4E, PDPTE and PTE but forgets the PDE's."""

    def _candidates(self, la, acc, cpl, ac):
        cur, stale, removed = super()._candidates(la, acc, cpl, ac)
        if isinstance(cur, Path):
            cur = replace(cur, user=all(u.value & Pte.US for u in cur.uses if u.level != 2))
        return cur, stale, removed


class DirtyOnRead(Paging):
    """Sets D in the leaf on reads too."""

    def _apply_access(self, o, la, acc, cpl, ac):
        cur = self._last.get("cur") if self._last.get("la") == la else None
        super()._apply_access(o, la, acc, cpl, ac)
        if acc == READ and o.ok and isinstance(cur, Path) and cur.uses[-1].addr in self.mem:
            a = cur.uses[-1].addr
            self.mem[a] |= Pte.D


class NoRsvdBit(Paging):
    """Reports a reserved-bit fault as a plain protection fault (RSVD clear)."""

    def _outcome_of(self, res, la, acc, cpl, ac):
        o, clause, pa = super()._outcome_of(res, la, acc, cpl, ac)
        return _strip(o, ErrCode.RSVD), clause, pa


class NoIdBit(Paging):
    """Never sets I/D in the error code of a fetch."""

    def _outcome_of(self, res, la, acc, cpl, ac):
        o, clause, pa = super()._outcome_of(res, la, acc, cpl, ac)
        return _strip(o, ErrCode.ID), clause, pa


class KeepsAfterInvlpg(Paging):
    """INVLPG does not drop the cached translation."""

    def _apply_invlpg(self, o, addr):
        pass


class PfKeepsTranslation(Paging):
    """A #PF leaves the faulting page's cached translation in place (QEMU 5.0's behaviour)."""

    def _invalidate(self, kind, pcid, addr, clause):
        if kind == PAGE and clause == "sdm.tlb.pf-invalidates":
            return
        super()._invalidate(kind, pcid, addr, clause)


class FlushesGlobalOnCr3(Paging):
    """A CR3 write flushes global translations too (allowed by the SDM; caught by the strict TLB only)."""

    def _apply_mov_cr3(self, o, value):
        super()._apply_mov_cr3(o, value)
        if o.ok:
            self._invalidate(ALL, 0, 0, "sdm.tlb.cr3-flush-nonglobal")


class IgnoresWp(Paging):
    """Lets CPL 0 write read-only pages whatever CR0.WP says."""

    @property
    def mode(self):
        m = super().mode
        return replace(m, cr0=m.cr0 & ~(1 << 16))


class SmapIgnoresAc(Paging):
    """SMAP blocks CPL 0 data accesses to user pages even with EFLAGS.AC = 1."""

    def _outcome_of(self, res, la, acc, cpl, ac):
        return super()._outcome_of(res, la, acc, cpl, 0)


class LargePageOffset4k(Paging):
    """Takes only 12 offset bits from the linear address for 2 MiB pages."""

    def _candidates(self, la, acc, cpl, ac):
        cur, stale, removed = super()._candidates(la, acc, cpl, ac)
        if isinstance(cur, Path) and cur.size == 1 << 21:
            cur = replace(cur, size=1 << 12, base=cur.base)
        return cur, stale, removed


class ScribblesOnEntries(Paging):
    """Sets an available bit (bit 9) in the leaf entry it used, besides A/D."""

    def _apply_access(self, o, la, acc, cpl, ac):
        cur = self._last.get("cur") if self._last.get("la") == la else None
        super()._apply_access(o, la, acc, cpl, ac)
        if o.ok and isinstance(cur, Path) and cur.uses[-1].addr in self.mem:
            self.mem[cur.uses[-1].addr] |= 1 << 9


class CetWithoutWp(Paging):
    """Lets CR4.CET be set while CR0.WP = 0."""

    def _expect_mov_cr4(self, value):
        if value & CR4_CET and not self.cr0 & CR0_WP:
            return exactly("sdm.cr4.load", OK)
        return super()._expect_mov_cr4(value)


class WpClearWithCet(Paging):
    """Lets CR0.WP be cleared while CR4.CET = 1."""

    def _expect_mov_cr0(self, value):
        if self.cr4 & CR4_CET:
            return exactly("sdm.cr0.wp-load", OK)
        return super()._expect_mov_cr0(value)


class VmxeReserved(Paging):
    """Treats CR4.VMXE as reserved even on a CPU with VMX."""

    def _unsupported_cr4(self, cr4):
        return bool(cr4 & CR4_VMXE) or super()._unsupported_cr4(cr4)


BROKEN = [ScribblesOnEntries, IgnoresUsAtPde, DirtyOnRead, NoRsvdBit, NoIdBit, KeepsAfterInvlpg, PfKeepsTranslation,
          FlushesGlobalOnCr3, IgnoresWp, SmapIgnoresAc, LargePageOffset4k]


def _strip(o: Outcome | None, bit: int) -> Outcome | None:
    if o is None or o.signal != "#PF":
        return o
    d = dict(o.detail)
    return Outcome(signal="#PF", detail=(("cr2", d["cr2"]), ("errcode", d["errcode"] & ~bit)))


class _Session(Session):
    def __init__(self, model: Paging):
        self.model = model

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        o = self.model.expect("main", call.name, args).default
        self.model.apply("main", call.name, args, o)
        return o

    def observe(self) -> Observation:
        return Observation(extra=tuple(sorted(self.model.observe().items())))


class BrokenTarget(Target):
    layers = ("hw",)

    def __init__(self, cls: type[Paging], facts: dict[str, Any] | None = None):
        self.cls = cls
        self.name = f"broken-{cls.__name__}"
        self._facts = facts or {}

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def session(self, layer: str = "hw") -> _Session:
        return _Session(self.cls(self._facts))


__all__ = ["BROKEN", "BrokenTarget", "EXEC"]
