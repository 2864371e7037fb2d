"""os-layer checkpoints: the memory maps (compare_maps.compare_maps) and the fault counters.

At a checkpoint a target may report, per process, the faults it took since the program
began in that process (``Observation.extra["faults"] = {proc: [minor, major]}``; the linux
target reads getrusage).  The model's fault path counts the faults it is sure of; the
target's counts must be at least those (a real process also faults on its own memory, so
the bound is one-sided).  Worked example: after ``a = mmap(…)`` and ``store(a, 1)``,
``store(a+0x1000, 1)`` a process has at least 2 minor faults.

``fault_stats()`` accumulates the model's fault path over every checkpoint compared (faults
by class, evictions, write-backs, swap traffic, COW copies), for reports.
"""

from __future__ import annotations

from typing import Any

from memspec.records import Check, Observation, Verdict

from .compare_maps import compare_maps

_TOTALS: dict[str, int] = {}


def fault_stats(reset: bool = False) -> dict[str, int]:
    """The model's fault-path counters summed over the checkpoints compared so far."""
    out = dict(_TOTALS)
    if reset:
        _TOTALS.clear()
    return out


def compare(system: Any, obs: Observation, index: int) -> Check | None:
    bad = compare_maps(system, obs, index)
    if bad is not None:
        return bad
    report = system.fault_report() if hasattr(system, "fault_report") else None
    if report:
        for k, v in report["stats"].items():
            _TOTALS[k] = _TOTALS.get(k, 0) + v
    faults = dict(obs.extra).get("faults")
    if not faults or report is None:
        return None
    for proc, counts in report["procs"].items():
        seen = faults.get(proc)
        if not seen:
            continue
        if seen[0] < counts["minflt"]:
            return Check("seed.fault.minor-counted", Verdict.FAIL, index, f"at least {counts['minflt']} minor faults",
                         f"{seen[0]}", f"process {proc}: ru_minflt is below the faults the model is sure of",
                         at="checkpoint")
        if seen[1] < counts["majflt"]:
            return Check("seed.fault.major-counted", Verdict.FAIL, index, f"at least {counts['majflt']} major faults",
                         f"{seen[1]}", f"process {proc}: ru_majflt is below the page loads the model is sure of",
                         at="checkpoint")
    return None
