"""TLB maintenance (SDM Vol. 3A §4.10.4): INVLPG and INVPCID, and the law the model's invariants
check after each step -- no translation in the reference TLB outlives an invalidation that covers
it (§4.10.4.1), and no bit beyond A and D is ever uncertain (§4.8).

The flushes a control-register load makes are ``paging_control``'s, the one a #PF makes is the
access's (``paging_ad``); all go through ``PagingState._invalidate`` into the history.

Worked example: ``invlpg(la)`` with CR4.PCIDE = 1 removes the translations of ``la``'s page for the
current PCID and the global ones (sdm.tlb.invlpg); ``invpcid(1, 5, 0)`` removes PCID 5's
non-global translations (sdm.invpcid.single); a non-canonical ``invlpg`` does nothing
(sdm.invlpg.noncanonical-nop).
"""

from __future__ import annotations

from memspec.records import OK, Outcome

from .expect import Expect
from .paging_state import EINVAL, GP, UD, PagingState, exactly
from .pte import CR4_PCIDE
from .tlb import ALL, ALL_NONGLOBAL, PAGE, PAGE_GLOBAL, PCID_ALL
from .walk import canonical


class Invalidation(PagingState):
    """INVLPG's and INVPCID's rules and the TLB's law (see the module docstring)."""

    # the judge's check after each step (``full=False``) looks at the reference TLB only when it or
    # the invalidations changed since the last look
    incremental_invariants = True

    def invariants(self, full: bool = True) -> list[tuple[str, str]]:
        """No reference-TLB entry outlives an invalidation that covers it; A/D never unset by the CPU.

        ``full=False``: the TLB's entries are looked at only if an invalidation was recorded or the
        entries changed (a fill, a drop) since the last look: the law reads nothing else, so it holds
        as it did.  Example: after ``set_pte`` (no invalidation, no fill) only the unsure bits."""
        entries, n_events = self.tlb.entries, len(self.history.events)
        if not full and entries is self._inv_entries and len(entries) == self._inv_size and \
                n_events == self._inv_events:
            if not self.unsure:
                return []       # nothing the law reads changed, and no bit is uncertain
            entries = []
        bad: list[tuple[str, str]] = []
        for e in entries:
            ev = self.history.killed(e.created, e.pcid if e.pcid >= 0 else -1, e.la_base, e.path.size, e.pcid == -1)
            if ev is not None:
                bad.append((ev.clause, f"a translation of {e.la_base:#x} (PCID {e.pcid}) survived {ev.kind} "
                                       f"invalidation at time {ev.time}"))
        if not bad:     # looked at and found holding: the next step's look may be left out
            self._inv_entries, self._inv_size, self._inv_events = self.tlb.entries, len(self.tlb.entries), n_events
        for addr, mask in self.unsure.items():
            if mask & ~0x60:
                bad.append(("sdm.ad.only-a-d", f"entry {addr:#x}: bits {mask:#x} beyond A/D are uncertain"))
        return bad

    def _expect_invlpg(self, addr: int) -> Expect:
        if not canonical(addr, self.mode):
            return exactly("sdm.invlpg.noncanonical-nop", OK)
        if self._harness_slot(addr):
            return exactly("memspec.hw.harness-slot", EINVAL)
        return exactly("sdm.tlb.invlpg", OK)

    def _apply_invlpg(self, o: Outcome, addr: int) -> None:
        if o.ok and canonical(addr, self.mode):
            self._invalidate(PAGE_GLOBAL, self.pcid, addr, "sdm.tlb.invlpg")

    def _expect_invpcid(self, kind: int, pcid: int, addr: int) -> Expect:
        if not self.facts["invpcid"]:
            return exactly("sdm.invpcid.ud-unsupported", UD)
        if kind > 3 or pcid > 0xFFF:
            return exactly("sdm.invpcid.gp-type-pcid", GP)
        if kind == 0 and not canonical(addr, self.mode):
            return exactly("sdm.invpcid.gp-noncanonical", GP)
        if kind in (0, 1) and pcid and not self.cr4 & CR4_PCIDE:
            return exactly("sdm.invpcid.gp-pcid-without-pcide", GP)
        if kind == 0 and self._harness_slot(addr):
            return exactly("memspec.hw.harness-slot", EINVAL)
        return exactly(("sdm.invpcid.addr", "sdm.invpcid.single", "sdm.invpcid.all-global", "sdm.invpcid.all")[kind], OK)

    def _apply_invpcid(self, o: Outcome, kind: int, pcid: int, addr: int) -> None:
        if not o.ok:
            return
        if kind == 0:
            self._invalidate(PAGE, pcid, addr, "sdm.invpcid.addr")
        elif kind == 1:
            self._invalidate(PCID_ALL, pcid, 0, "sdm.invpcid.single")
        elif kind == 2:
            self._invalidate(ALL, 0, 0, "sdm.invpcid.all-global")
        else:
            self._invalidate(ALL_NONGLOBAL, 0, 0, "sdm.invpcid.all")
