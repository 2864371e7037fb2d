"""The one judged step (specs/step.py) that the judge and every state machine take."""

from __future__ import annotations

import pytest

from memspec.errors import SessionFailed
from memspec.model.registry import new_model
from memspec.program import parse
from memspec.records import Outcome, RunResult, RunStatus, Verdict
from memspec.specs.failures import ConformanceFailure
from memspec.specs.judge import judge
from memspec.specs.step import Stepper, judge_call

MMAP = parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n").calls[0]
LEN0 = parse("munmap(0x100000000000, 0)\n").calls[0]


class Session:
    """Answers from a script; raises SessionFailed where the script says so."""

    def __init__(self, answers):
        self.answers = list(answers)

    def call(self, call, args):
        a = self.answers.pop(0)
        if isinstance(a, SessionFailed):
            raise a
        return a


def test_judge_call_adopts_an_allowed_outcome_and_refuses_a_wrong_one() -> None:
    m = new_model("os", {})
    checks = judge_call(m, "main", MMAP, (0, 0x1000, 1, 0x22, -1, 0), Outcome(value=0x7f0000000000), 0)
    assert checks[0].verdict in (Verdict.PASS, Verdict.IMPL_DEFINED)
    assert m.maps("main"), "the allowed outcome was adopted"
    bad = judge_call(m, "main", LEN0, (0x100000000000, 0), Outcome(value=0), 1)
    assert len(bad) == 1 and bad[0].verdict is Verdict.FAIL and "einval" in bad[0].clause


def test_the_stepper_and_the_judge_agree_on_the_same_outcomes() -> None:
    prog = parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmunmap(a, 0)\n")
    outcomes = [Outcome(value=0x7f0000000000), Outcome(value=0)]     # munmap of length 0 must be EINVAL
    j = judge(prog, RunResult(status=RunStatus.OK, outcomes=list(outcomes)), "t", {})
    s = Stepper(new_model("os", {}), Session(outcomes))
    s.step(prog.calls[0])
    with pytest.raises(ConformanceFailure) as e:
        s.step(prog.calls[1])
    assert e.value.clause == j.failure.clause and e.value.index == j.failure.index == 1
    assert len(e.value.program.calls) == 2


def test_a_refused_step_is_unsupported_and_the_run_goes_on() -> None:
    seen = []
    s = Stepper(new_model("os", {}), Session([SessionFailed(RunStatus.REFUSED, "cannot stage it"),
                                               Outcome(value=0x7f0000000000)]), seen.append)
    assert s.step(MMAP) is None
    assert s.calls == [] and sum(s.unsupported.values()) == 1 and "refused" in seen[0]
    assert s.step(MMAP) is not None and len(s.calls) == 1


@pytest.mark.parametrize("status", [RunStatus.CRASH, RunStatus.HANG, RunStatus.ERROR])
def test_a_dead_target_is_a_target_alive_failure(status) -> None:
    s = Stepper(new_model("os", {}), Session([SessionFailed(status, "gone")]))
    with pytest.raises(ConformanceFailure) as e:
        s.step(MMAP)
    assert e.value.clause == "memspec.target.alive" and e.value.observed == "gone"


def test_invariants_are_checked_when_asked() -> None:
    class Broken:
        def __init__(self):
            self.m = new_model("os", {})

        def __getattr__(self, name):
            return getattr(self.m, name)

        def invariants(self):
            return [("memspec.inv.vmas-disjoint", "VMA at 0x1000 overlaps the previous one")]

    s = Stepper(Broken(), Session([Outcome(value=0x7f0000000000)] * 2), invariants=True)
    with pytest.raises(ConformanceFailure) as e:
        s.step(MMAP)
    assert e.value.clause == "memspec.inv.vmas-disjoint"
    s2 = Stepper(Broken(), Session([Outcome(value=0x7f0000000000)]))
    s2.step(MMAP)                         # not asked: the step passes
    with pytest.raises(ConformanceFailure):
        s2.check_invariants()             # the machine's @invariant asks
