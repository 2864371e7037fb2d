"""What the test kernel cannot stage is refused (unsupported), never answered as an errno the
judge would blame on QEMU; a fetch from a non-canonical address is staged for real (#GP)."""

from __future__ import annotations

import pytest

from memspec.errors import SessionFailed
from memspec.program import parse
from memspec.records import RunStatus, Verdict
from memspec.targets.testkernel_wire import HarnessRefused, decode

from .conftest import run_and_judge

# PML4[256] -> a PDPT whose entry 0 is a 1 GiB user page at physical 0 (the harness's memory)
TABLES = """\
set_pte(0x200000, 256, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0, PTE_P|PTE_RW|PTE_US|PTE_PS)
mov_cr3(0x200000)
"""


@pytest.mark.parametrize("op,cpl", [("ACC_EXEC", 3), ("ACC_EXEC", 0), ("ACC_WRITE", 3), ("ACC_WRITE", 0),
                                    ("ACC_READ", 3)])
def test_a_non_canonical_access_is_the_cpus_gp(qsys, qsys_facts, op, cpl) -> None:
    p = parse(TABLES + f"access(0x800000000000, {op}, {cpl}, 0)\n")
    run = qsys.run(p)
    assert run.status is RunStatus.OK, run.message
    assert run.outcomes[-1].signal == "#GP", run.outcomes[-1]
    j = run_and_judge(qsys, p, qsys_facts)
    assert j.failure is None, j.failure
    assert [c.verdict for c in j.checks if c.clause == "sdm.canonical.gp"] == [Verdict.PASS]


def test_an_access_the_kernel_cannot_stage_is_refused_not_judged(qsys, qsys_facts) -> None:
    # a CPL 0 store through the 1 GiB page to physical 0x1008: allowed, but the harness's memory
    p = parse(TABLES + "access(0xFFFF800000001008, ACC_WRITE, 0, 0)\naccess(0x800000000000, ACC_READ, 0, 0)\n")
    run = qsys.run(p)
    assert run.status is RunStatus.REFUSED and "harness's own memory" in run.message, run
    assert len(run.outcomes) == 3           # the calls before the refused one were judged
    j = run_and_judge(qsys, p, qsys_facts)
    assert j.failure is None
    assert [c.verdict for c in j.checks if c.clause == "memspec.target.alive"] == [Verdict.UNSUPPORTED]
    s = qsys.session("hw")
    for c in p.calls[:3]:
        s.call(c, _args(c))
    with pytest.raises(SessionFailed) as e:
        s.call(p.calls[3], _args(p.calls[3]))
    assert e.value.status is RunStatus.REFUSED
    # the session goes on after a refusal
    assert s.call(p.calls[4], _args(p.calls[4])).signal == "#GP"


def _args(call):
    from memspec.program import eval_args
    return tuple(int(x) for x in eval_args(call, {}))


def test_the_refusal_answer_is_distinct_from_the_programs_einval() -> None:
    assert decode("access", (0x1000, 1, 0, 0), "e address in the harness's slot").errno == "EINVAL"
    with pytest.raises(HarnessRefused, match="harness's own memory"):
        decode("access", (0x1000, 1, 0, 0), "r the access would reach the harness's own memory")
