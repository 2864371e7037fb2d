"""A guest that dies gets a verdict (crash or hang) naming the call, and the next program runs."""

from __future__ import annotations

from memspec.program import parse
from memspec.records import RunStatus

SETUP = """set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)
set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)
set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)
mov_cr3(0x200000)
"""


def test_a_write_that_kills_the_guest_is_a_crash_and_the_target_recovers(qsys) -> None:
    assert qsys.run(parse(SETUP)).status is RunStatus.OK     # a live guest to start from
    boots = qsys.boots
    # QEMU 7.2 accepts CR4.PAE = 0 in 64-bit mode (specs/differences.toml): the guest triple-faults
    r = qsys.run(parse(SETUP + "mov_cr4(0)\naccess(0x405000, ACC_READ, 0)\n"))
    assert r.status in (RunStatus.CRASH, RunStatus.HANG), r
    assert len(r.outcomes) == 6 and dict(r.outcomes[5].detail)["guest"].startswith("died after the write")
    ok = qsys.run(parse(SETUP + "v = access(0x405008, ACC_READ, 3)\n"))
    assert ok.status is RunStatus.OK and ok.outcomes[-1].value == (0x300008 << 8) | 0xCC
    assert qsys.boots == boots + 1


def test_the_session_and_the_batch_agree(qsys) -> None:
    program = parse(SETUP + "v = access(0x405008, ACC_READ, 3)\naccess(0x405000, ACC_WRITE, 3)\n"
                    "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_US)\ninvlpg(0x405000)\n"
                    "access(0x405000, ACC_WRITE, 3)\ne = read_pte(0x203000, 5)\n")
    batch = qsys.run(program).outcomes
    from memspec.targets.base import Target
    stepped = Target.run(qsys, program).outcomes      # one exchange per call, through session()
    assert batch == stepped
    assert batch[-2].signal == "#PF" and dict(batch[-2].detail) == {"cr2": 0x405000, "errcode": 7}
