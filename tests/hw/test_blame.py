"""Blame on target (issue #26): each broken walker in tests/hw is blamed on its own clause -- the
clause it breaks -- by at least half of the failing programs among 200 random ones (the measure:
fuzz reproducers and check's random programs report the clause of the program that found them).

The order the judge should rank clauses by, when one observation contradicts several expectations
(what the hw model's ``blame_by`` has to implement):

1. a fault where none was due, or none where one was: the permission or presence clause of the walk
   (``sdm.access.*``, ``sdm.walk.*.not-present``, ``sdm.walk.*.rsvd*``);
2. the right kind of outcome with a wrong value: the translation clause of the leaf that mapped it
   (``sdm.walk.pde.ps-2m``, ``sdm.walk.pdpte.ps-1g``, ``sdm.walk.pte.maps-4k``), not the permission
   clause that allowed the access;
3. a #PF with the right CR2 and wrong error-code bits: the clause of the bit (none is catalogued yet:
   the walk's clause is named instead);
4. an observation only a translation some invalidation removed explains: that invalidation's clause
   (``sdm.tlb.invlpg``, ``sdm.invpcid.*``, ``sdm.tlb.cr3-flush-pcid``) -- but only when the walker's
   own translation does not explain it better under 1-3.

The walkers the model does not blame on their own clause yet are strict xfails, each with the
reason, so that the day the model names the right clause the test says so."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from memspec.fuzz.codec_hw import decode
from memspec.fuzz.differential import failing_signature

from . import broken_hw
from .broken_hw import BrokenTarget

sys.path.insert(0, str(Path(__file__).resolve().parent))
import broken_pcid  # noqa: E402

# walker -> the clauses that are its own (the rule it breaks)
OWN = {
    "ScribblesOnEntries": {"sdm.ad.only-a-d"},
    "IgnoresUsAtPde": {"sdm.access.user-read-supervisor", "sdm.access.user-write-supervisor",
                       "sdm.access.user-fetch-supervisor"},
    "DirtyOnRead": {"sdm.ad.no-dirty-on-read"},
    "NoRsvdBit": {"sdm.walk.rsvd.xd-without-nxe", "sdm.walk.pde.rsvd-2m-low", "sdm.walk.pdpte.rsvd-1g-low",
                  "sdm.walk.pte.rsvd-maxphy", "sdm.walk.pde.rsvd-maxphy", "sdm.walk.pdpte.rsvd-maxphy",
                  "sdm.walk.pml4e.rsvd-maxphy"},
    "NoIdBit": {"sdm.access.xd-fetch", "sdm.access.smep-fetch", "sdm.access.user-fetch-supervisor"},
    "KeepsAfterInvlpg": {"sdm.tlb.invlpg"},
    "IgnoresWp": {"sdm.access.wp-supervisor-write"},
    "SmapIgnoresAc": {"sdm.access.smap-ac-override"},
    "LargePageOffset4k": {"sdm.walk.pde.ps-2m", "sdm.walk.pdpte.ps-1g"},
    "InvpcidSingleFlushesCurrent": {"sdm.invpcid.single"},
    "Cr3FlushesOldPcid": {"sdm.tlb.cr3-flush-pcid"},
}
NOT_YET = {
    "ScribblesOnEntries": "an entry read back with bit 9 set is blamed on sdm.ad.no-dirty-on-read as often as "
                          "on sdm.ad.only-a-d: read_pte's blame does not look at which bit differs",
    "KeepsAfterInvlpg": "A/D bits read back after the kept translation was used are blamed on sdm.ad.* rather "
                        "than on the INVLPG that should have removed it (order 4)",
    "NoIdBit": "no clause for the error code's I/D bit: a fetch's #PF without I/D is blamed on the walk's "
               "presence clause (order 3)",
    "SmapIgnoresAc": "as often blamed on the large page's clause (sdm.walk.pde.ps-2m, a side clause of the "
                     "walk) as on the SMAP override it breaks (order 1)",
    "InvpcidSingleFlushesCurrent": "a whole-PCID flush (INVPCID single, a flushing CR3 load) is not found as the "
                                   "invalidation whose translation the observation needed, so the leaf's "
                                   "translation clause is named (order 4 before 2)",
    "Cr3FlushesOldPcid": "as InvpcidSingleFlushesCurrent: the flush of the PCID loaded is not found as the "
                         "invalidation that removed the old translation (order 4)",
}
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
