"""A KVM that gets one page-fault error-code bit wrong must fail the check, naming an SDM clause."""

from __future__ import annotations

from memspec.specs.directed import suite_programs
from memspec.records import Outcome, RunResult, Verdict

from .conftest import run_and_judge


class FlipWrite:
    """The kvm target with the W/R bit of every #PF error code inverted."""

    name = "kvm-broken"

    def __init__(self, inner):
        self.inner = inner

    def run(self, program, observe="end"):
        r = self.inner.run(program, observe)
        outs = tuple(Outcome(o.value, o.errno, o.signal, tuple((k, v ^ 2 if k == "errcode" else v) for k, v in o.detail))
                     if o.signal == "#PF" else o for o in r.outcomes)
        return RunResult(outs, r.observations, r.status, r.message)


def test_judge_catches_a_flipped_error_code_bit(kvm_target, kvm_facts):
    broken = FlipWrite(kvm_target)
    caught = []
    for origin, program in suite_programs("hw"):
        if not any(c.name == "access" for c in program.calls):
            continue
        good = run_and_judge(kvm_target, program, kvm_facts)
        bad = run_and_judge(broken, program, kvm_facts)
        if bad.failure is not None and good.failure is None:
            assert bad.failure.verdict is Verdict.FAIL and bad.failure.clause.startswith("sdm.")
            caught.append(origin)
    assert len(caught) >= 5, caught
