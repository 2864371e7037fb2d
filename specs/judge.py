"""The judge: replay a target's outcomes through the model, call by call.

For each call the model computes what its clause allows (``model.expect``); the
observed outcome is checked against it and, if allowed, adopted (so an allowed
choice such as the address mmap picked carries forward).  At checkpoints the
target's memory map is compared with the model's.  The first disagreement ends
the judgement: after it the two states differ and later checks mean nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from memspec.program import Program, bind_result, eval_args
from memspec.records import Check, Judgement, Observation, RunResult, RunStatus, Verdict
from memspec.model.mm import System
from memspec.model.registry import new_model

from .catalogue import get as clause

# Checkpoint comparisons per layer: (model, observation, call index) -> failing Check or None.
# Other layers' modules register theirs as "module:function", imported on first use.
COMPARE: dict[str, str | Callable[[Any, Observation, int], Check | None]] = {
    "phys": "memspec.specs.compare_phys:compare",
    "hw": "memspec.specs.compare_hw:compare",
    "virt": "memspec.specs.compare_virt:compare",
}


# The clause a passing checkpoint comparison counts towards, per layer.
_VIEW_CLAUSE = {"os": "linux.proc-maps.matches"}


def _compare_for(layer: str) -> Callable[[Any, Observation, int], Check | None] | None:
    f = COMPARE.get(layer)
    if isinstance(f, str):
        import importlib
        mod, fn = f.split(":")
        try:
            f = getattr(importlib.import_module(mod), fn)
        except ModuleNotFoundError:
            return None
        COMPARE[layer] = f
    return f


_STATUS_VERDICT = {
    RunStatus.CRASH: Verdict.CRASH,
    RunStatus.HANG: Verdict.HANG,
    RunStatus.ERROR: Verdict.ERROR,
    RunStatus.REFUSED: Verdict.UNSUPPORTED,
}


def judge(program: Program, run: RunResult, target: str, facts: dict[str, Any] | None = None,
          invariants: bool = True, model: Any | None = None) -> Judgement:
    """Judge one run of ``program`` on ``target``; ``invariants`` also checks the model's own after every call.
    ``model`` replaces the layer's reference model (tests use it to show invariants catch a broken one)."""
    system = model if model is not None else new_model(program.layer, facts)
    compare = _compare_for(program.layer)
    j = Judgement(target=target, status=run.status, message=run.message)
    env: dict[str, int] = {}
    for i, call in enumerate(program.calls):
        if i >= len(run.outcomes):
            verdict = _STATUS_VERDICT.get(run.status, Verdict.ERROR)
            j.checks.append(Check("memspec.target.alive", verdict, i, "an outcome for every call",
                                  run.message or "the target stopped answering"))
            return j
        args = eval_args(call, env)
        proc = call.proc or "main"
        exp = system.expect(proc, call.name, args)
        clause(exp.clause)   # every rule names a catalogued clause
        observed = run.outcomes[i]
        why = exp.judge(observed)
        if why is not None:
            j.checks.append(Check(clause(exp.blame(observed)).id, Verdict.FAIL, i, exp.describe,
                                  observed.describe(), why))
            if isinstance(system, System):
                j.context["maps_before"] = _all_maps(system)
            return j
        verdict = (Verdict.UNKNOWN if exp.unknown else
                   Verdict.IMPL_DEFINED if exp.impl_defined else Verdict.PASS)
        j.checks.append(Check(exp.clause, verdict, i, exp.describe, observed.describe()))
        for other in exp.covers:   # the other clauses this call's check also held the target to
            if other != exp.clause:
                j.checks.append(Check(clause(other).id, verdict, i, exp.describe, observed.describe()))
        system.apply(proc, call.name, args, observed)
        system.bind(proc, call.name, call.result, observed)
        bind_result(env, call, observed.value)
        if invariants:
            for cid, msg in system.invariants():
                j.checks.append(Check(cid, Verdict.FAIL, i, "the invariant holds", msg, "model invariant broken",
                                      at="invariant"))
                return j
        obs = run.observation_after(i)
        if obs is not None and compare is not None:
            bad = compare(system, obs, i)
            if bad is None:
                j.checks.append(Check(_VIEW_CLAUSE.get(program.layer, "memspec.checkpoint"), Verdict.PASS, i,
                                      "the target's state matches the model's", "it does", at="checkpoint"))
            else:
                j.checks.append(bad)
                if isinstance(system, System):
                    j.context["maps_expected"] = _all_maps(system)
                    j.context["maps_observed"] = {p: [(m.start, m.end, m.perms) for m in ms] for p, ms in obs.maps}
                return j
    if hasattr(system, "fault_report"):
        j.context["fault_path"] = system.fault_report().get("stats", {})
    if run.status is not RunStatus.OK:
        verdict = _STATUS_VERDICT.get(run.status, Verdict.ERROR)
        j.checks.append(Check("memspec.target.alive", verdict, len(program.calls), "a clean finish", run.message))
    return j


def _all_maps(system: System) -> dict[str, list[tuple[int, int, str]]]:
    return {p: system.maps(p) for p in system.procs}


def _clip(ranges: list[tuple[int, int, str]], lo: int, hi: int) -> list[tuple[int, int, str]]:
    out = []
    for s, e, perms in ranges:
        s2, e2 = max(s, lo), min(e, hi)
        if s2 < e2:
            out.append((s2, e2, perms))
    return out


def _merge(ranges: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for s, e, p in sorted(ranges):
        if out and out[-1][1] == s and out[-1][2] == p:
            out[-1] = (out[-1][0], e, p)
        else:
            out.append((s, e, p))
    return out


def compare_maps(system: System, obs: Observation, index: int) -> Check | None:
    """Compare each process's map with the model's, over the ranges the model can speak for:
    the pages the model has mapped, and the target's quiet ranges (where nothing else lives)."""
    for proc in system.procs:
        seen = obs.maps_of(proc)
        if seen is None:
            continue
        expected = system.maps(proc)
        windows = [(s, e) for s, e, _ in expected] + list(system.config.quiet_ranges)
        observed_raw = [(m.start, m.end, m.perms) for m in seen]
        want: list[tuple[int, int, str]] = []
        got: list[tuple[int, int, str]] = []
        for lo, hi in _union(windows):
            want += _clip(expected, lo, hi)
            got += _clip(observed_raw, lo, hi)
        want, got = _merge(want), _merge(got)
        if want != got:
            addr = _first_difference(want, got)
            cid = system.blame(proc, addr)
            return Check(cid, Verdict.FAIL, index,
                         _fmt(want, addr), _fmt(got, addr),
                         f"process {proc}: memory map differs at {addr:#x} ({clause('linux.proc-maps.matches').statement})",
                         at="checkpoint")
    return None


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _first_difference(a: list[tuple[int, int, str]], b: list[tuple[int, int, str]]) -> int:
    for x, y in zip(a, b):
        if x != y:
            return min(x[0], y[0]) if x[0] != y[0] else (min(x[1], y[1]) if x[1] != y[1] else x[0])
    longer = a if len(a) > len(b) else b
    return longer[min(len(a), len(b))][0]


def _fmt(ranges: list[tuple[int, int, str]], near: int) -> str:
    close = [r for r in ranges if r[1] > near - 0x10000 and r[0] < near + 0x10000] or ranges[:3]
    return "; ".join(f"{s:#x}-{e:#x} {p}" for s, e, p in close) or "(nothing mapped)"


COMPARE["os"] = "memspec.specs.compare_os:compare"
