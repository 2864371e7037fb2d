"""Broken walkers whose bug only a multi-address-space, PCID-tagged sequence shows (issue #26): the
model with one TLB rule changed, served in process as ``py:`` targets
(``py:tests/hw/broken_pcid.py:target("InvpcidSingleFlushesCurrent")``).  Fakes for testing the
generator and the judge."""

from __future__ import annotations

import sys
from pathlib import Path

from memspec.model.paging import Paging
from memspec.model.pte import CR4_PCIDE
from memspec.model.tlb import PCID_ALL, RefTlb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broken_hw import BrokenTarget  # noqa: E402


class _Caching(Paging):
    """Answers from its own TLB whenever it holds the translation (the model's reference TLB, which
    caches every translation it used), while declaring no stricter law than the SDM's: the judge
    allows any translation the SDM lets survive, and nothing older."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.strict = True


class InvpcidSingleFlushesCurrent(_Caching):
    """INVPCID single-context drops the translations of the current PCID, not of the PCID it names."""

    def _apply_invpcid(self, o, kind, pcid, addr):
        super()._apply_invpcid(o, kind, self.pcid if kind == 1 else pcid, addr)


class Cr3FlushesOldPcid(_Caching):
    """A flushing CR3 load with CR4.PCIDE = 1 drops the translations of the PCID it leaves instead of
    those of the PCID it loads."""

    def _apply_mov_cr3(self, o, value):
        if o.ok and self.cr4 & CR4_PCIDE and not value >> 63:
            old = self.pcid
            self.cr3 = value
            self._write_harness_entry()
            self.history.load_root(self.root, self.pcid)
            self._invalidate(PCID_ALL, old, 0, "sdm.tlb.cr3-flush-pcid")
            return
        super()._apply_mov_cr3(o, value)


class _NoTlb(RefTlb):
    def lookup(self, la, pcid):
        return None


class _Refetching(_Caching):
    """Walks the tables afresh for every access (a TLB that holds nothing): the other end of what the
    SDM allows, the control for a judge that must not insist on a kept translation."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.tlb = _NoTlb()


class Cr3NeverFlushes(_Caching):
    """With CR4.PCIDE = 1, every CR3 load acts as if bit 63 were set: a flushing load of a PCID keeps
    that PCID's translations."""

    def _apply_mov_cr3(self, o, value):
        if o.ok and self.cr4 & CR4_PCIDE and not value >> 63:
            self.cr3 = value
            self._write_harness_entry()
            self.history.load_root(self.root, self.pcid)
            return
        super()._apply_mov_cr3(o, value)


BUGS = {c.__name__: c for c in (_Caching, _Refetching, InvpcidSingleFlushesCurrent, Cr3FlushesOldPcid,
                                Cr3NeverFlushes)}


def target(name: str) -> BrokenTarget:
    return BrokenTarget(BUGS[name])
