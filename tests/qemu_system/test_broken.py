"""A peer that gets paging wrong must fail the check through this target, naming an SDM clause:
a wrapper that corrupts the error code, and deliberately miscompiled test kernels."""

from __future__ import annotations

import pytest

from memspec.specs.directed import suite_programs
from memspec.records import Outcome, RunResult, Verdict

from .conftest import need_qemu, run_and_judge


class FlipUser:
    """The qemu-system target with the U/S bit of every #PF error code inverted."""

    name = "qemu-system-broken"

    def __init__(self, inner):
        self.inner = inner

    def run(self, program, observe="end"):
        r = self.inner.run(program, observe)
        outs = tuple(Outcome(o.value, o.errno, o.signal,
                             tuple((k, v ^ 4 if k == "errcode" else v) for k, v in o.detail))
                     if o.signal == "#PF" else o for o in r.outcomes)
        return RunResult(outs, r.observations, r.status, r.message)


def _caught(good_target, bad_target, facts):
    caught = []
    for origin, program in suite_programs("hw"):
        if not any(c.name == "access" for c in program.calls):
            continue
        good = run_and_judge(good_target, program, facts)
        if good.failure is not None:
            continue
        bad = run_and_judge(bad_target, program, facts)
        if bad.failure is not None:
            assert bad.failure.verdict is Verdict.FAIL and bad.failure.clause.startswith("sdm."), bad.failure
            caught.append((origin, bad.failure.clause))
    return caught


def test_a_corrupted_error_code_is_caught(qsys, qsys_facts) -> None:
    caught = _caught(qsys, FlipUser(qsys), qsys_facts)
    assert len(caught) >= 5, caught


@pytest.mark.parametrize("define, clause_prefix", [
    ("-DMEMSPEC_BROKEN_ERRCODE", "sdm."),
    ("-DMEMSPEC_BROKEN_RING3", "sdm.access.user-"),
])
def test_a_miscompiled_kernel_is_caught(qsys, qsys_facts, define, clause_prefix) -> None:
    need_qemu()
    from memspec.targets.qemu_system import QemuSystemTarget, build_kernel
    bad = QemuSystemTarget(timeout=5.0, image=build_kernel((define,)))
    try:
        caught = _caught(qsys, bad, qsys_facts)
    finally:
        bad.close()
    assert len(caught) >= 2, caught
    assert any(c.startswith(clause_prefix) for _o, c in caught), caught
