"""Blame on target (issue #26): each broken walker in tests/hw is blamed on its own clause -- the
clause it breaks -- by at least half of the failing programs among 200 random ones (the measure:
fuzz reproducers and check's random programs report the clause of the program that found them).

The order the judge ranks clauses by, when one observation contradicts several expectations, is
model/blame.py's (its module docstring): for an access, (1) an outcome only a translation some
invalidation removed gives -> that invalidation; (2) a #PF where the access was allowed -> the rights
rule the fault contradicts; (3) no fault where one was due -> the fault's clause; (4) a #PF whose
error code differs only in an access bit (W/R, U/S, I/D) -> that bit's ``sdm.pf.errcode.*``; (5) the
wrong data -> the leaf's translation clause; for an entry read back, a bit other than A/D ->
``sdm.ad.only-a-d``, A/D a removed translation explains -> its invalidation, else the A/D bit's rule.

A walker the model does not blame on its own clause would be a strict xfail here, with the reason,
so that the day the model names the right clause the test says so (none is, now)."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from memspec.fuzz.codec_hw import decode
from memspec.fuzz.differential import failing_signature
from memspec.model.blame import access_blame, entry_blame, rights_contradicted
from memspec.model.paging import matches
from memspec.model.pte import (CR0_PE, CR0_PG, CR0_WP, CR4_PAE, CR4_SMAP, CR4_SMEP, EFER_LMA, EFER_LME, EFER_NXE,
                               EXEC, READ, WRITE, Mode)
from memspec.model.walk import Path as Path_
from memspec.records import OK, Outcome

from . import broken_hw
from .broken_hw import BrokenTarget

sys.path.insert(0, str(Path(__file__).resolve().parent))
import broken_pcid  # noqa: E402

# walker -> the clauses that are its own (the rule it breaks)
OWN = {
    "ScribblesOnEntries": {"sdm.ad.only-a-d"},
    # U/S combined over every level decides CPL 3 accesses, and whether SMEP/SMAP apply at CPL 0
    "IgnoresUsAtPde": {"sdm.access.user-read-supervisor", "sdm.access.user-write-supervisor",
                       "sdm.access.user-fetch-supervisor", "sdm.access.smap-supervisor-page-unaffected",
                       "sdm.access.supervisor-fetch"},
    "DirtyOnRead": {"sdm.ad.no-dirty-on-read"},
    "NoRsvdBit": {"sdm.walk.rsvd.xd-without-nxe", "sdm.walk.pde.rsvd-2m-low", "sdm.walk.pdpte.rsvd-1g-low",
                  "sdm.walk.pte.rsvd-maxphy", "sdm.walk.pde.rsvd-maxphy", "sdm.walk.pdpte.rsvd-maxphy",
                  "sdm.walk.pml4e.rsvd-maxphy", "sdm.walk.pml5e.rsvd-maxphy", "sdm.walk.pml5e.rsvd-ps",
                  "sdm.walk.pml4e.rsvd-ps", "sdm.walk.pdpte.rsvd-ps-no-1g"},
    "NoIdBit": {"sdm.pf.errcode.id"},
    "KeepsAfterInvlpg": {"sdm.tlb.invlpg"},
    # CR0.WP decides CPL 0 writes to read-only pages, and whether PKRU.WD stops them (§4.6.2)
    "IgnoresWp": {"sdm.access.wp-supervisor-write", "sdm.pkeys.write-disable"},
    "SmapIgnoresAc": {"sdm.access.smap-ac-override"},
    "LargePageOffset4k": {"sdm.walk.pde.ps-2m", "sdm.walk.pdpte.ps-1g"},
    "InvpcidSingleFlushesCurrent": {"sdm.invpcid.single"},
    "Cr3FlushesOldPcid": {"sdm.tlb.cr3-flush-pcid"},
}
NOT_YET: dict[str, str] = {}
WALKERS = [c for c in broken_hw.BROKEN if c.__name__ in OWN] + [broken_pcid.InvpcidSingleFlushesCurrent,
                                                                 broken_pcid.Cr3FlushesOldPcid]


def _blamed(cls, n: int = 200) -> Counter:
    target = BrokenTarget(cls, {})
    rng = random.Random(1)
    seen: Counter = Counter()
    for _ in range(n):
        sig = failing_signature(target, decode(bytes(rng.randrange(256) for _ in range(256))), {})
        if sig is not None:
            seen[sig.clause] += 1
    return seen


@pytest.mark.parametrize("cls", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[c.__name__]))
                                 if c.__name__ in NOT_YET else c for c in WALKERS], ids=lambda c: c.__name__)
def test_a_broken_walker_is_blamed_on_its_own_clause(cls) -> None:
    seen = _blamed(cls)
    assert seen, f"{cls.__name__} was not caught"
    own = sum(k for c, k in seen.items() if c in OWN[cls.__name__])
    assert 2 * own >= sum(seen.values()), seen.most_common(6)


# -- the ranking's rows, one worked example each (model/blame.py) -------------------------------------

def _path(user=True, writable=True, xd=False, size=1 << 12, pkey=0) -> Path_:
    return Path_(uses=(), base=0x300000, size=size, user=user, writable=writable, xd=xd, glob=False, pkey=pkey,
                 dirty=False)


def _pf(code: int, cr2: int = 0x400000) -> Outcome:
    return Outcome(signal="#PF", detail=(("cr2", cr2), ("errcode", code)))


SMAP_SMEP = Mode(CR0_PG | CR0_PE | CR0_WP, CR4_PAE | CR4_SMAP | CR4_SMEP, EFER_LME | EFER_LMA | EFER_NXE)


@pytest.mark.parametrize("path, acc, cpl, code, clause", [
    (_path(size=1 << 21), READ, 0, 0x1, "sdm.access.smap-ac-override"),          # the AC override, not the 2 MiB page
    (_path(user=False), READ, 0, 0x1, "sdm.access.smap-supervisor-page-unaffected"),
    (_path(user=False), READ, 0, 0x0, "sdm.walk.pte.maps-4k"),                    # P = 0: a claim about the structure
    (_path(), EXEC, 3, 0x15, "sdm.access.smep-cpl3-unaffected"),
    (_path(writable=False, xd=True), READ, 3, 0x5, "sdm.access.xd-data-unaffected"),
    (_path(), WRITE, 3, 0x7, "sdm.access.user-write-writable"),
    (_path(), READ, 3, 0x25, "sdm.pkeys.ignored-without-pke"),
])
def test_a_fault_where_none_was_due_names_the_rights_rule_it_contradicts(path, acc, cpl, code, clause) -> None:
    assert rights_contradicted(path, SMAP_SMEP, acc, cpl, code) == clause
    # and through the access ranking (row 2), with a removed translation that does not explain it
    allowed = [(Outcome(value=0x3000cc), "sdm.walk.pte.maps-4k", path)]
    assert access_blame(_pf(code), allowed, lambda: [(Outcome(value=1), "sdm.tlb.invlpg")], SMAP_SMEP, acc, cpl,
                        "sdm.walk.pte.maps-4k", matches) == clause


def test_no_fault_where_a_rights_rule_faulted_names_that_rule_even_beside_a_stale_translation() -> None:
    # row 3: a stale translation allows other data; the target read the current page's data, which
    # the current walk's U/S forbids at CPL 3: the U/S rule, not the leaf's translation
    allowed = [(_pf(0x5), "sdm.access.user-read-supervisor", _path(user=False, size=1 << 21)),
               (Outcome(value=0x4000cc), "sdm.walk.pde.ps-2m", _path(size=1 << 21))]
    free = lambda: [(Outcome(value=0xa000cc), "sdm.access.user-read-supervisor")]  # noqa: E731
    assert access_blame(Outcome(value=0xa000cc), allowed, lambda: [], SMAP_SMEP, READ, 3, "x", matches, free) == \
        "sdm.access.user-read-supervisor"
    assert access_blame(Outcome(value=0xb000cc), allowed, lambda: [], SMAP_SMEP, READ, 3, "x", matches, free) == \
        "sdm.walk.pde.ps-2m"


def test_the_ranking_of_an_access() -> None:
    fetch_pf = _pf(0x11)
    allowed = [(fetch_pf, "sdm.access.xd-fetch", _path(xd=True))]
    none: list = []
    # row 4: the same fault without I/D (an access bit) is the I/D bit's; without P it is the cause's
    assert access_blame(_pf(0x01), allowed, lambda: none, SMAP_SMEP, EXEC, 0, "x", matches) == "sdm.pf.errcode.id"
    assert access_blame(_pf(0x13), allowed, lambda: none, SMAP_SMEP, EXEC, 0, "x", matches) == "sdm.pf.errcode.w"
    assert access_blame(_pf(0x10), allowed, lambda: none, SMAP_SMEP, EXEC, 0, "x", matches) == "sdm.access.xd-fetch"
    assert access_blame(_pf(0x11, cr2=0), allowed, lambda: none, SMAP_SMEP, EXEC, 0, "x", matches) == \
        "sdm.access.xd-fetch"
    # row 3: no fault where one was due
    assert access_blame(OK, allowed, lambda: none, SMAP_SMEP, EXEC, 0, "x", matches) == "sdm.access.xd-fetch"
    # row 1 before the rest: what a translation INVLPG removed gives
    assert access_blame(OK, allowed, lambda: [(OK, "sdm.tlb.invlpg")], SMAP_SMEP, EXEC, 0, "x", matches) == \
        "sdm.tlb.invlpg"
    # row 5: the wrong data through a 2 MiB page
    data = [(Outcome(value=0x2000cc), "sdm.walk.pde.ps-2m", _path(size=1 << 21))]
    assert access_blame(Outcome(value=0x1000cc), data, lambda: none, SMAP_SMEP, READ, 0, "x", matches) == \
        "sdm.walk.pde.ps-2m"
    # row 6: anything else is the expectation's own
    assert access_blame(Outcome(signal="#GP"), data, lambda: none, SMAP_SMEP, READ, 0, "x", matches) == "x"


@pytest.mark.parametrize("want, have, walked, last, stale, clause", [
    (0x1027, 0x1227, True, "sdm.ad.no-dirty-on-read", None, "sdm.ad.only-a-d"),      # bit 9: not A or D
    (0x1007, 0x1207, False, None, None, "memspec.hw.entry-readback"),                 # never walked
    (0x1027, 0x1007, True, "sdm.ad.no-dirty-on-read", (0x20, "sdm.tlb.invlpg"), "sdm.tlb.invlpg"),
    (0x1027, 0x1007, True, "sdm.ad.no-dirty-on-read", None, "sdm.ad.accessed-on-use"),
    (0x1067, 0x1027, True, "sdm.ad.dirty-on-write", (0x20, "sdm.tlb.invlpg"), "sdm.ad.dirty-on-write"),
    (0x1027, 0x1067, True, "sdm.tlb.ad-with-cached-translation", None, "sdm.ad.no-dirty-on-read"),
    (0x1027, 0x1067, True, "sdm.ad.accessed-on-use", None, "sdm.ad.only-a-d"),       # D in a non-leaf entry
])
def test_the_ranking_of_an_entry_read_back(want, have, walked, last, stale, clause) -> None:
    assert entry_blame(want, have, 0, walked, last, stale) == clause
