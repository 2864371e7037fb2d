"""The judge's lean loop gives the judgement the plain one did.

``specs.judge._judge_calls`` lays ``judge_call`` and ``invariant_failure`` flat, reads each call's
constant arguments once per program (``program.const_args``, shared with the target's run) and
records a passing call compactly (``Judgement.add_pass``: its ``Check`` made when ``checks`` is
read).  ``plain_judge`` below is the loop as it was, on ``judge_call``; on random programs of every
layer, run on the model target and then tampered with (an outcome changed, the run cut short, a
crash), the two give the same checks (clause, verdict, index, expected, observed, note, at, in
order), status, message and context.
"""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest

from memspec.calls import LAYERS
from memspec.fuzz.layers import random_programs
from memspec.model.mm import System
from memspec.model.registry import new_model
from memspec.program import Program, bind_result, const_args, eval_args, parse
from memspec.records import Check, Judgement, Outcome, RunResult, RunStatus, Verdict
from memspec.specs import judge as J
from memspec.specs.compare_maps import _all_maps
from memspec.specs.step import invariant_failure, judge_call
from memspec.targets.model import ModelTarget


def plain_judge(program: Program, run: RunResult, target: str, facts: dict[str, Any] | None = None) -> Judgement:
    """``judge`` as it was before the lean loop: one ``judge_call`` per call, every ``Check`` made at once."""
    source = J._Replay(run)
    j = Judgement(target=target)
    ran_out = _plain_calls(program, source, j, facts)
    final = source.finish()
    j.status, j.message = final.status, final.message
    if ran_out is not None:
        verdict = J._STATUS_VERDICT.get(final.status, Verdict.ERROR)
        j.checks.append(Check("memspec.target.alive", verdict, ran_out, "an outcome for every call",
                              final.message or "the target stopped answering"))
    elif j.failure is None and final.status is not RunStatus.OK:
        verdict = J._STATUS_VERDICT.get(final.status, Verdict.ERROR)
        j.checks.append(Check("memspec.target.alive", verdict, len(program.calls), "a clean finish", final.message))
    return j


def _plain_calls(program: Program, source: Any, j: Judgement, facts: dict[str, Any] | None) -> int | None:
    system = new_model(program.layer, facts)
    compare = J._compare_for(program.layer)
    env: dict[str, int] = {}
    last = len(program.calls) - 1
    for i, call in enumerate(program.calls):
        observed = source.outcome(i)
        if observed is None:
            return i
        args = eval_args(call, env)
        checks = judge_call(system, call.proc or "main", call, args, observed, i)
        j.checks += checks
        if checks[0].verdict is Verdict.FAIL:
            if isinstance(system, System):
                j.context["maps_before"] = _all_maps(system)
            return None
        if call.result is not None:
            bind_result(env, call, observed.value)
        obs = source.observation(i)
        bad = invariant_failure(system, i, J.RECOUNT and (obs is not None or i == last))
        if bad is not None:
            j.checks.append(bad)
            return None
        if obs is not None and not J._shows_nothing(obs):
            bad = compare(system, obs, i)
            if bad is None:
                j.checks.append(Check(J._VIEW_CLAUSE.get(program.layer, "memspec.checkpoint"), Verdict.PASS, i,
                                      "the target's state matches the model's", "it does", at="checkpoint"))
            else:
                j.checks.append(bad)
                if isinstance(system, System):
                    j.context["maps_expected"] = _all_maps(system)
                    j.context["maps_observed"] = {p: [(m.start, m.end, m.perms) for m in ms] for p, ms in obs.maps}
                return None
    if hasattr(system, "fault_report"):
        j.context["fault_path"] = system.fault_report().get("stats", {})
    return None


_WRONG = (Outcome(value=0x1234), Outcome(value=-1, errno="EINVAL"), Outcome(signal="#PF"), Outcome())


def _tampered(run: RunResult, rng: random.Random) -> RunResult:
    """The run as it was, or with one outcome changed, cut short, or ended by a crash."""
    outs = list(run.outcomes)
    how = rng.randrange(5)
    if how == 1 and outs:
        k = rng.randrange(len(outs))
        outs[k] = rng.choice([o for o in _WRONG if o != outs[k]])
    elif how == 2 and outs:
        outs = outs[:rng.randrange(len(outs))]
        return RunResult(tuple(outs), (), RunStatus.CRASH, "killed by signal 9")
    elif how == 3:
        return RunResult(tuple(outs), run.observations, RunStatus.HANG, "time limit")
    return RunResult(tuple(outs), run.observations, run.status, run.message)


def _same(a: Judgement, b: Judgement) -> None:
    assert a.failure == b.failure
    assert a.checks == b.checks
    assert (a.status, a.message) == (b.status, b.message)
    assert a.context == b.context


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_lean_loop_judges_random_programs_as_the_plain_one(layer: str) -> None:
    target = ModelTarget()
    rng = random.Random(f"loop:{layer}")
    facts = target.facts()
    n = failed = 0
    for _, program in random_programs(layer, 40, 5, None, facts):
        for observe in ("end", "each"):
            run = _tampered(target.run(program, observe=observe), rng)
            lean, plain = J.judge(program, run, target.name, facts), plain_judge(program, run, target.name, facts)
            _same(lean, plain)
            n += 1
            failed += lean.failure is not None
    assert n > 40 and 0 < failed < n      # passing and failing judgements both compared


def test_passing_checks_are_made_when_read_and_are_plain_checks() -> None:
    program = parse("set_pte(0x203000, 5, 0x300000, 0x3)\nset_pte(0x203000, 6, 0x301000, 0x3)\n")
    run = RunResult((Outcome(), Outcome()))
    j = J.judge(program, run, "t")
    assert j.failure is None and j.passed           # read without making the checks
    assert any(type(c) is tuple for c in j._checks)
    checks = j.checks
    assert all(type(c) is Check for c in checks) and checks is j.checks
    assert [(c.clause, c.verdict, c.index, c.observed) for c in checks] == [
        ("memspec.hw.set-pte", Verdict.PASS, 0, "ok"), ("memspec.hw.set-pte", Verdict.PASS, 1, "ok")]
    j2 = J.judge(program, run, "t")
    assert pickle.loads(pickle.dumps(j2)) == j == j2     # pickled and compared as its checks
    j2.checks.append(Check("x", Verdict.FAIL, 1))
    assert j2.failure == Check("x", Verdict.FAIL, 1) and j != j2
    j2.checks = []
    assert j2.checks == [] and j2.failure is None


def test_constant_arguments_are_worked_out_once_per_program() -> None:
    program = parse("a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmunmap(a, 4096)\n")
    consts = const_args(program)
    assert consts == ((0, 4096, 1, 0x22, -1, 0), None)
    assert const_args(program) is consts
    assert const_args(parse("munmap(0x1000, 4096)\n")) == ((0x1000, 4096),)
