"""The judge: replay a target's outcomes through the model, call by call.

For each call the model computes what its clause allows (``model.expect``); the
observed outcome is checked against it and, if allowed, adopted (so an allowed
choice such as the address mmap picked carries forward).  At checkpoints the
target's state is compared with the model's, by the layer's comparison
(``COMPARE``); a checkpoint at which the target showed nothing is not counted.
The first disagreement ends the judgement: after it the two states differ and
later checks mean nothing.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from memspec.calls import LAYERS
from memspec.program import Program, bind_result, const_args, eval_args
from memspec.records import Check, Judgement, Observation, Outcome, RunResult, RunStatus, Verdict
from memspec.model.invariants import check_step as invariant_step
from memspec.model.mm import System
from memspec.model.registry import new_model

from . import compare_hw, compare_os, compare_phys, compare_virt
from .catalogue import CATALOGUE, get as clause
from .step import fused, invariant_check, os_judged
from .compare_maps import _all_maps, compare_maps

__all__ = ["COMPARE", "judge", "compare_maps"]

Compare = Callable[[Any, Observation, int], "Check | None"]

# Checkpoint comparisons per layer: (model, observation, call index) -> failing Check or None.
# Every layer has one; a layer without one is an error at import, not a silent pass.
COMPARE: dict[str, Compare] = {
    "phys": compare_phys.compare,
    "hw": compare_hw.compare,
    "os": compare_os.compare,
    "virt": compare_virt.compare,
}
if set(COMPARE) != set(LAYERS):
    raise ImportError(f"checkpoint comparisons {sorted(COMPARE)} do not cover the layers {sorted(LAYERS)}")


# The clause a passing checkpoint comparison counts towards, per layer.
_VIEW_CLAUSE = {"os": "linux.proc-maps.matches"}


def _compare_for(layer: str) -> Compare:
    try:
        return COMPARE[layer]
    except KeyError:
        raise KeyError(f"no checkpoint comparison for layer {layer!r} (have: {', '.join(sorted(COMPARE))})") from None


def _shows_nothing(obs: Observation) -> bool:
    """A checkpoint where the target reported no state (``Observation()``): nothing was compared."""
    return not obs.maps and not obs.extra


_STATUS_VERDICT = {
    RunStatus.CRASH: Verdict.CRASH,
    RunStatus.HANG: Verdict.HANG,
    RunStatus.ERROR: Verdict.ERROR,
    RunStatus.REFUSED: Verdict.UNSUPPORTED,
}


# whether ``judge`` recounts the invariants over the whole state at checkpoints and at the end
# (MEMSPEC_INVARIANT_RECOUNT=0 leaves it out, in this process and the ones it starts: a run of the
# broken-model tests with the footprint checks alone)
RECOUNT = os.environ.get("MEMSPEC_INVARIANT_RECOUNT", "1") != "0"


class _Replay:
    """A finished run read call by call, as ``judge`` reads a stream (``LinuxTarget.stream``)."""

    def __init__(self, run: RunResult) -> None:
        self.run = run
        # the checkpoint after each call: the first reported at an index, as ``observation_after`` finds it
        self.seen_at = {i: o for i, o in reversed(run.observations)}

    def outcome(self, index: int) -> Outcome | None:
        return self.run.outcomes[index] if index < len(self.run.outcomes) else None

    def observation(self, index: int) -> Observation | None:
        return self.seen_at.get(index)

    def finish(self) -> RunResult:
        return self.run


def judge(program: Program, run: "RunResult | Any", target: str, facts: dict[str, Any] | None = None,
          invariants: bool = True, model: Any | None = None, recount: bool | None = None) -> Judgement:
    """Judge one run of ``program`` on ``target``; ``invariants`` also checks the model's own after every call
    (over the call's footprint) and recounts them over the whole state at each checkpoint and at the end
    (``recount=False``, or ``RECOUNT`` false, leaves the recount out: tests use it to show the footprint
    checks alone catch every broken model).
    ``model`` replaces the layer's reference model (tests use it to show invariants catch a broken one).
    ``run`` is a finished ``RunResult``, or a run still going that gives each call's outcome as it
    comes (``outcome(i)``, ``observation(i)``, ``finish()``: ``LinuxTarget.stream``), judged while
    the target runs the calls after it; the judgement is the same."""
    source = _Replay(run) if isinstance(run, RunResult) else run
    j = Judgement(target=target)
    try:
        ran_out = _judge_calls(program, source, j, facts, invariants, model, recount)
    finally:
        final = source.finish()
        j.status, j.message = final.status, final.message
    if ran_out is not None:
        verdict = _STATUS_VERDICT.get(final.status, Verdict.ERROR)
        j.checks.append(Check("memspec.target.alive", verdict, ran_out, "an outcome for every call",
                              final.message or "the target stopped answering"))
    elif j.failure is None and final.status is not RunStatus.OK:
        verdict = _STATUS_VERDICT.get(final.status, Verdict.ERROR)
        j.checks.append(Check("memspec.target.alive", verdict, len(program.calls), "a clean finish", final.message))
    return j


def _judge_calls(program: Program, source: Any, j: Judgement, facts: dict[str, Any] | None,
                 invariants: bool, model: Any | None, recount: bool | None) -> int | None:
    """Judge call by call into ``j`` until the first failure; the index of the first call
    without an outcome, if the run ended before the last."""
    system = model if model is not None else new_model(program.layer, facts)
    recount = RECOUNT if recount is None else recount
    compare = _compare_for(program.layer)
    env: dict[str, int] = {}
    last = len(program.calls) - 1
    consts = const_args(program)       # the run worked them out too: shared, not evaluated twice
    # the loop is judge_outcome and invariant_failure (specs/step.py) laid flat: this runs once per
    # judged call, and each Python call saved here is a share of every layer's judging
    replay = type(source) is _Replay
    outcomes = source.run.outcomes if replay else ()
    outcome, observation = source.outcome, (source.seen_at.get if replay else source.observation)
    expect, apply, bind = system.expect, system.apply, system.bind
    # the os model's expect, judge and apply in one call (specs/step.py), for a class with their own forms
    judged = os_judged if fused(type(system)) else None
    # the os model's own bind names a forked process and does nothing for any other call
    bind_any = getattr(type(system), "bind", None) is not System.bind
    footprint = getattr(type(system), "incremental_invariants", False)
    # the os model's own step check, called without its method (``System.invariants(full=False)``)
    step_check = invariant_step if getattr(type(system), "invariants", None) is System.invariants else None
    returns = {}            # call name -> whether its named result binds a number (bind_result's test)
    add = j.sink()          # a Check, or a passing one as a tuple: made when the judgement's checks are read
    PASS, IMPL, UNKNOWN = Verdict.PASS, Verdict.IMPL_DEFINED, Verdict.UNKNOWN
    for i, call in enumerate(program.calls):
        if replay:
            observed = outcomes[i] if i < len(outcomes) else None
        else:
            observed = outcome(i)
        if observed is None:
            return i    # the run ended before this call: ``judge`` says how
        args = consts[i]
        if args is None:
            args = eval_args(call, env)
        proc, name = call.proc or "main", call.name
        if judged is not None:      # expect, judge and (allowed) apply in one call
            exp, why = judged(system, proc, name, args, observed)
        else:
            exp = expect(proc, name, args)
            why = exp.judge(observed)
        cid = exp.clause
        if cid not in CATALOGUE:
            clause(cid)         # every rule names a catalogued clause: a KeyError if not
        if why is not None:
            add(Check(clause(exp.blame(observed)).id, Verdict.FAIL, i, exp.describe, observed.describe(), why))
            if isinstance(system, System):
                j.context["maps_before"] = _all_maps(system)
            return None
        verdict = UNKNOWN if exp.unknown else IMPL if exp.impl_defined else PASS
        if exp.covers:
            for other in exp.covers:
                if other not in CATALOGUE:
                    clause(other)
        if judged is None:
            apply(proc, name, args, observed)
        result = call.result
        if bind_any or (result is not None and name == "fork"):
            bind(proc, name, result, observed)
        # the passing checks, judge_call's in its order
        add((cid, verdict, i, exp.describe, observed))
        if exp.covers:
            for other in exp.covers:
                if other != cid:
                    add((other, verdict, i, exp.describe, observed))
        if result is not None:      # bind_result
            binds = returns.get(name)
            if binds is None:
                binds = returns[name] = call.spec.returns != "proc"
            if binds and result:
                v = observed.value
                env[result] = v if v is not None else -1
        obs = observation(i)
        full = recount and (obs is not None or i == last)
        if invariants:
            if full or not footprint:
                broken = system.invariants()
            elif step_check is not None:
                broken = step_check(system)
            else:
                broken = system.invariants(full=False)
            bad = invariant_check(broken, i) if broken else None
            if bad is not None:
                add(bad)
                return None
        if obs is not None and not _shows_nothing(obs):
            bad = compare(system, obs, i)
            if bad is None:
                add(Check(_VIEW_CLAUSE.get(program.layer, "memspec.checkpoint"), Verdict.PASS, i,
                          "the target's state matches the model's", "it does", at="checkpoint"))
            else:
                add(bad)
                if isinstance(system, System):
                    j.context["maps_expected"] = _all_maps(system)
                    j.context["maps_observed"] = {p: [(m.start, m.end, m.perms) for m in ms] for p, ms in obs.maps}
                return None
    if hasattr(system, "fault_report"):
        j.context["fault_path"] = system.fault_report().get("stats", {})
    return None
