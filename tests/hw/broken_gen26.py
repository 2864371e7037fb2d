"""Broken walkers that only issue #26's generator features show (read-back of every entry of a path,
accesses across a page's offsets, stores through a cached translation, global rechanges, FS/GS base
edges): the model with one rule wrong, served in process as ``py:`` targets
(``py:tests/hw/broken_gen26.py:target("NoAccessedInUpperEntries")``).  Fakes for testing the generator."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path as _P

from memspec.model.expect import exactly
from memspec.model.paging import Paging
from memspec.model.pte import CR0_PG, WRITE, addr_mask
from memspec.model.segunit import SegUnit
from memspec.model.tlb import ALL_NONGLOBAL, RefTlb
from memspec.model.walk import Path
from memspec.records import Outcome

sys.path.insert(0, str(_P(__file__).resolve().parent))
from broken_hw import BrokenTarget  # noqa: E402
from broken_seg import BrokenSegTarget  # noqa: E402


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


class BootWithoutPg(Paging):
    """Enters the mode asked for even without CR0.PG (IA-32e mode needs PG, PE, PAE and LME together)."""

    def _expect_boot(self, cr0, cr4, efer):
        return super()._expect_boot(cr0 | CR0_PG, cr4, efer)


class InitialRootRefused(Paging):
    """Refuses a CR3 load of the first page of program RAM (the initial root, INITIAL_CR3)."""

    def _expect_mov_cr3(self, value):
        if value & addr_mask(self.maxphy) == self.low:
            return exactly("memspec.hw.root-in-ram", Outcome(value=-1, errno="EINVAL"))
        return super()._expect_mov_cr3(value)


class _KeepsNonGlobal(RefTlb):
    def apply(self, ev):
        if ev.kind == ALL_NONGLOBAL:
            self.entries = [e for e in self.entries if e.pcid != -1]      # the global ones go instead
            return
        super().apply(ev)


class InvpcidAllKeepsNonGlobal(Paging):
    """INVPCID type 3 (all contexts, globals kept) drops the global translations and keeps the others
    (SDM Vol. 2B INVPCID: type 3 invalidates every translation except global ones)."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.tlb = _KeepsNonGlobal()


class StaleStoreLost(Paging):
    """A store through a translation the TLB still holds from before its leaf changed (no invalidation
    since) is lost: the page it mapped keeps its old contents, though the store was reported done
    (SDM Vol. 3A §4.10.2.3: the cached translation is used for the access).  Missed by ``check`` at
    default settings with the generator and suite of be4fc7d; caught by ``HwGen.stale_store``."""

    def _apply_access(self, o, la, acc, cpl, ac):
        cur = self._last.get("cur") if self._last.get("la") == la else None
        before = dict(self.mem) if acc == WRITE and o.value is not None else None
        super()._apply_access(o, la, acc, cpl, ac)
        if before is None:
            return
        fresh = cur.pa(la) if isinstance(cur, Path) else None
        for addr, v in before.items():
            if addr != fresh and self.mem.get(addr) != v and self.mem.get(addr) == o.value:
                self.mem[addr] = v


class InvpcidAllGlobalKeepsGlobal(Paging):
    """INVPCID type 2 (all contexts, globals included) keeps the global translations, as type 3 does
    (SDM Vol. 2B INVPCID: type 2 invalidates every translation, global ones too).  Missed by ``check``
    at default settings with the generator and suite of be4fc7d; caught by GLOBAL_RECHANGE_PERCENT."""

    def _apply_invpcid(self, o, kind, pcid, addr):
        super()._apply_invpcid(o, 3 if kind == 2 else kind, pcid, addr)


class SegbaseAllOnesRefused(SegUnit):
    """Refuses an FS/GS base of 2^64 - 1 as out of range (it is canonical: WRMSR loads it).  Missed by
    ``check`` at default settings with the generator of be4fc7d; caught by SEGBASE_EDGE_PERCENT."""

    def expect(self, name, args):
        if name == "wrmsr_segbase" and args[1] == (1 << 64) - 1:
            return exactly("sdm.seg.wrmsr-base", Outcome(value=-1, errno="EINVAL"))
        return super().expect(name, args)


BUGS = {"NoAccessedInUpperEntries": NoAccessedInUpperEntries, "OffsetOf11Bits": OffsetOf11Bits, "BootWithoutPg": BootWithoutPg,
        "InitialRootRefused": InitialRootRefused,
        "InvpcidAllKeepsNonGlobal": InvpcidAllKeepsNonGlobal, "StaleStoreLost": StaleStoreLost,
        "InvpcidAllGlobalKeepsGlobal": InvpcidAllGlobalKeepsGlobal, "Paging": Paging}
SEG_BUGS = {"SegbaseAllOnesRefused": SegbaseAllOnesRefused, "SegUnit": SegUnit}


def target(name: str) -> BrokenTarget | BrokenSegTarget:
    if name in SEG_BUGS:
        return BrokenSegTarget(SEG_BUGS[name])
    return BrokenTarget(BUGS[name])
