"""Checkpoint comparison for the phys layer: what a kernel shows of its allocators.

A target may report, in ``Observation.extra``:

* ``buddyinfo``: free blocks per order per zone (/proc/buddyinfo).  With full
  coalescing the free lists are a function of the allocated frames, which the
  judge has already agreed with call by call; so any difference is a buddy
  that failed to merge (clause ``linux.buddy.coalesce``), unless the totals
  differ (``memspec.phys.free-plus-used``);
* ``nr_free``: free frames per node;
* ``slabinfo``: per cache ``[active_objs, num_objs, num_slabs]`` (/proc/slabinfo);
  only ``active_objs`` is compared (how many slabs a cache keeps is its choice).

The C library's heap reports nothing here: it is judged call by call only.
"""

from __future__ import annotations

from typing import Any

from memspec.records import Check, Observation, Verdict


def compare(model: Any, obs: Observation, index: int) -> Check | None:
    seen = dict(obs.extra)
    if not seen or not hasattr(model, "observe"):
        return None
    want = model.observe()
    if "nr_free" in seen and list(seen["nr_free"]) != list(want["nr_free"]):
        return Check("memspec.phys.free-plus-used", Verdict.FAIL, index, f"free frames per node {want['nr_free']}",
                     f"{list(seen['nr_free'])}", "free frame counts differ")
    if "buddyinfo" in seen:
        got = {k: list(v) for k, v in dict(seen["buddyinfo"]).items()}
        for zone, orders in want["buddyinfo"].items():
            if got.get(zone) != orders:
                free_w = sum(n << k for k, n in enumerate(orders))
                free_g = sum(n << k for k, n in enumerate(got.get(zone) or []))
                cid = "linux.buddy.coalesce" if free_w == free_g else "memspec.phys.free-plus-used"
                return Check(cid, Verdict.FAIL, index, f"{zone}: {orders}", f"{zone}: {got.get(zone)}",
                             "free blocks per order (/proc/buddyinfo) differ from the maximally coalesced lists")
    if "slabinfo" in seen:
        got_s = dict(seen["slabinfo"])
        for name, (active, _, _) in want["slabinfo"].items():
            if name in got_s and int(got_s[name][0]) != active:
                return Check("bonwick.slab.counts", Verdict.FAIL, index, f"{name}: {active} active objects",
                             f"{name}: {got_s[name][0]}", "slab object counts differ")
    return None
