"""Checkpoint comparison for the hw layer: every paging entry in memory, A/D bits included.

A target reports, at a checkpoint, ``extra = (("entries", ((pa, value), ...)),)``: every
qword of the frames the program wrote that no longer holds the harness pattern.  The
model knows what each should hold; bits it is unsure about (A/D set or not by a walk
that faulted, or by a cached translation) may go either way.  Any other difference
is blamed as a ``read_pte`` of the entry would be (``model.entry_blame``: the order in
model/blame.py -- ``sdm.ad.only-a-d`` when a bit other than A and D changed in an entry
a walk used, the A/D rule of the bit otherwise).
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import pattern
from memspec.records import Check, Observation, Verdict

A_D = 0x60


def compare(model: Any, obs: Observation, index: int) -> Check | None:
    seen = dict(obs.extra).get("entries")
    if seen is None or not hasattr(model, "mem"):
        return None
    got = dict(seen)
    addrs = sorted(set(got) | {a for a in model.mem if model.low <= a < model.ram})
    for pa in addrs:
        want = model.read(pa)
        have = got.get(pa, pattern(pa))
        loose = model.unsure.get(pa, 0)
        diff = (want ^ have) & ~loose
        if not diff:
            continue
        if model._is_harness_entry(pa):
            continue
        if hasattr(model, "entry_blame"):
            cid = model.entry_blame(pa, have, loose)
        else:
            cid = model.ad_clause.get(pa, "memspec.hw.entry-readback") if not diff & ~A_D else "sdm.ad.only-a-d"
        return Check(cid, Verdict.FAIL, index, f"{pa:#x} = {want:#x}" + (f" (bits {loose:#x} either way)" if loose else ""),
                     f"{pa:#x} = {have:#x}", "a paging entry in memory differs from the model's at the checkpoint")
    return None
