"""One pass over an access's removed walks for what the hw judge asks of them (``model.paging``).

An access that only its current walk explains, and for which invalidations removed older walks,
asks two things of those walks: which invalidation it exercised (``Paging._exercised``: the one that
removed the latest cached walk giving another outcome) and, when it sets A or D, which of them would
have given the same data (``Paging._giving``, read by ``_note_stale_ad`` at apply).  Both read each
walk's leaf the same way; ``removed_pass`` reads it once and answers both, for a successful load or
store whose data is the harness pattern (the access memo's case: the outcome has no loose bits).

Worked example (the kvm step): PTE 5 rewritten to frame 3 after frames 2, 1, 0 and 7, INVLPG, a
load: the latest removed walk (frame 2) gives other data, so the INVLPG is exercised; no removed
walk reads frame 3's qword, so none gives the load's data.
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import HARNESS_SLOT
from memspec.records import Outcome

from .blame import matches
from .pte import READ, WRITE, addr_mask
from .tlb import PAGE_SIZES, Removed

U64 = (1 << 64) - 1


def removed_pass(m: Any, removed: Removed, o_cur: Outcome, clause: str, la: int, acc: int, cpl: int,
                 ac: int) -> tuple[str, list[tuple[tuple, Any, int]]]:
    """(``m._exercised(removed, o_cur, clause, ...)``, ``m._giving(removed, la, acc, o_cur)``) for a load
    or store whose successful ``o_cur`` carries no loose bits: the removed walks gone over once, latest
    first, each one's invalidation worked out only where either answer needs it."""
    amask, low, ram, mem, unsure, value = addr_mask(m.maxphy), m.low, m.ram, m.mem, m.unsure, o_cur.value
    exercised: str | None = None
    giving: list[tuple[tuple, Any, int]] = []
    for cand, glob, ev in removed.order():
        t, level, entries, fault, _rsvd = cand
        if fault is not None:
            continue                # a fault gives no data and is never the exercised walk
        size = PAGE_SIZES[level]
        pa = (entries[-1][1] & amask & ~(size - 1)) | (la & (size - 1))
        if not low <= pa < ram or (pa >> 3) & 0x1FF == HARNESS_SLOT and m._is_harness_entry(pa):
            other, gives = True, False          # memory the pattern does not cover
        else:
            v = mem.get(pa)
            loose = 0
            if v is None:
                v = ((pa << 8) | 0xCC) & U64    # pattern(pa)
            elif acc == READ:
                loose = 0x60 | unsure.get(pa, 0)
            if acc == WRITE:
                v = (v & ~0xFF) | 0xCC
            x = value ^ v
            other, gives = x != 0, x & ~loose == 0
        if gives or exercised is None:
            if ev is None:
                ev = removed.event_of(cand, glob)
            if gives:
                giving.append((cand, ev, t))
            if exercised is None and ev.clause.startswith("sdm."):
                if other:
                    exercised = ev.clause
                else:               # the same data: the rights decide (built, as _exercised does)
                    o_old, _, _ = m._outcome_of(removed.result(cand), la, acc, cpl, ac)
                    if o_old is None or not matches(o_old, o_cur):
                        exercised = ev.clause
    return (clause if exercised is None else exercised), giving

