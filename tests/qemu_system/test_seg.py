"""The segmentation calls on the test kernel's segmentation unit (64-bit mode): the command
lines they travel as, the long-mode suite judged by the model with QEMU's cited differences,
the refusals, and a kernel that loses FS's base caught by the model."""

from __future__ import annotations

import random

import pytest

from memspec.model.seg import make_descriptor
from memspec.program import eval_args, parse
from memspec.records import Outcome, RunStatus, Verdict
from memspec.specs.directed import excused_by, load_differences, suite_programs
from memspec.specs.judge import judge
from memspec.targets.testkernel_wire import EINVAL, decode, descriptor, encode

from .conftest import need_qemu

SEG_CALLS = {"seg_mode", "set_desc", "read_desc", "lgdt", "load_seg", "seg_access", "wrmsr_segbase"}
# the long-mode programs the kernel runs, and the QEMU bugs they show (docs/findings/qemu.md)
FINDINGS = {
    "17-long-noncanonical-ss": ("sdm.seg.long.noncanonical-ss", "qemu-seg-noncanonical-ss-gp"),
    "18-wrmsr-noncanonical": ("sdm.seg.wrmsr-base-noncanonical-gp", "qemu-wrmsr-fs-base-noncanonical"),
    "19-long-es-base": ("sdm.seg.long.base-ignored", "qemu-seg-long-override-base"),
    "21-long-null-ss-rpl": ("sdm.seg.load.null-ss-64-rpl-gp", "qemu-null-ss-rpl"),
}


def seg_suite():
    return [(o, p) for o, p in suite_programs("hw", capabilities=True) if any(c.name in SEG_CALLS for c in p.calls)]


def test_the_command_lines_check_arguments_as_the_model():
    assert encode("seg_mode", (3,)) == "D 3"
    assert encode("seg_mode", (7,)) == EINVAL and encode("seg_mode", (0,)) == EINVAL    # no A20 gate offered
    assert encode("set_desc", (24, 0, 0, 2, 0, 0)) == EINVAL                             # the harness's
    assert encode("set_desc", (1, 1 << 32, 0, 2, 0, 0)) == EINVAL
    assert encode("set_desc", (1, 0, 0, 2, 0, 1)) == EINVAL                              # not a flag bit
    assert encode("load_seg", (2, 0x10003, 0)) == EINVAL and encode("load_seg", (2, 3, 4)) == EINVAL
    assert encode("seg_access", (1, 0, 0, 4)) == EINVAL and encode("seg_access", (3, 0, 0, 3)) == EINVAL
    assert encode("wrmsr_segbase", (3, 0)) == EINVAL
    assert encode("seg_access", (2, 0x800000000000, 1, 8)) == "a 2 800000000000 1 8"
    rng = random.Random(23)
    for _ in range(200):
        args = (rng.randrange(1 << 32), rng.randrange(1 << 20), rng.randrange(16), rng.randrange(4),
                rng.choice((0, 1 << 12, 1 << 15, 1 << 21, 1 << 22, 1 << 23, (1 << 12) | (1 << 15) | (1 << 23))))
        assert descriptor(*args) == make_descriptor(*args)
        assert encode("set_desc", (5,) + args) == f"d 5 {make_descriptor(*args):x}"


def test_answers_keep_the_error_code_of_segmentation_faults():
    assert decode("load_seg", (3, 0x10, 0), "x d 10 0 ffffffffc0011000") == \
        Outcome(signal="#GP", detail=(("errcode", 0x10),))
    assert decode("load_seg", (2, 0x10, 0), "x b 10 0 0") == Outcome(signal="#NP", detail=(("errcode", 0x10),))
    assert decode("load_seg", (1, 0x8, 0), "x 6 0 0 0") == Outcome(signal="#UD")
    assert decode("seg_access", (2, 0, 0, 4), "v 200000cc") == Outcome(value=0x200000CC)
    assert decode("mov_cr4", (0,), "x d 0 0 0") == Outcome(signal="#GP")     # the paging calls' shape unchanged


def test_qemu_system_and_bochs_offer_the_segmentation_calls():
    from memspec.targets.bochs import BochsTarget
    from memspec.targets.qemu_system import QemuSystemTarget
    assert SEG_CALLS <= QemuSystemTarget.calls and SEG_CALLS <= BochsTarget.calls


def test_the_long_mode_suite_fails_only_as_cited(qsys, qsys_facts):
    diffs = load_differences()
    seen: dict[str, tuple[str, str]] = {}
    ran = 0
    for origin, program in seg_suite():
        run = qsys.run(program)
        j = judge(program, run, qsys.name, qsys_facts)
        if run.status is RunStatus.REFUSED:
            # the kernel stages 64-bit mode only
            assert "64-bit mode" in run.message, (origin, run.message)
        else:
            assert run.status is RunStatus.OK, (origin, run.message)
            ran += 1
        if j.failure is not None:
            d = excused_by(diffs, qsys.name, j.failure.clause, j.failure.observed, qsys_facts)
            assert d is not None, (origin, j.failure.clause, j.failure.observed)
            seen[origin.split("/")[-1].removesuffix(".mst")] = (j.failure.clause, d.id)
    assert ran >= 6
    assert seen == FINDINGS


# loads at CPL 1..3 go through IRETQ to a stub of that ring and come back through INT 0x81
RINGS = """# memspec-program: 1
seg_mode(SEG_LONG)
set_desc(4, 0x300000, 0xFFF, DESC_DATA_RW, 3, DESC_S|DESC_P|DESC_DB)
load_seg(SREG_FS, 0x23, 3)
v = seg_access(SREG_FS, 0x10, ACC_READ, 4)
set_desc(5, 0x0, 0xFFF, DESC_DATA_RW, 1, DESC_S|DESC_P)
load_seg(SREG_SS, 0x29, 1)
a = seg_access(SREG_SS, 0x200000, ACC_WRITE, 8)
load_seg(SREG_SS, 0x29, 2)
load_seg(SREG_DS, 0x2B, 3)
load_seg(SREG_CS, 0x23, 3)
c = read_desc(30)
"""


def test_loads_at_cpl_1_to_3(qsys, qsys_facts):
    program = parse(RINGS)
    run = qsys.run(program)
    assert run.status is RunStatus.OK, run.message
    assert judge(program, run, qsys.name, qsys_facts).failure is None
    got = [o for o in run.outcomes]
    assert got[2].ok and got[3] == Outcome(value=0x300010CC)                  # FS's base from a DPL 3 descriptor
    assert got[7] == Outcome(signal="#GP", detail=(("errcode", 0x28),))       # SS: RPL 1 != CPL 2
    assert got[8] == Outcome(signal="#GP", detail=(("errcode", 0x28),))       # DS: DPL 1 < CPL 3
    assert got[9].signal == "#UD" and got[10] == Outcome(value=0)             # the ring's descriptors are gone
    # a null SS at CPL 1 (RPL 1) loads in 64-bit mode; QEMU 7.2 then runs the ring's code at CPL 0
    # (it takes the null SS's DPL as the CPL), which the way back shows: refused, not judged
    run = qsys.run(parse("# memspec-program: 1\nload_seg(SREG_SS, 0x1, 1)\n"))
    assert run.status is RunStatus.OK or "without a stack switch" in run.message, run


def test_refusals_name_their_reason(qsys, qsys_facts):
    cases = {
        "seg_mode(SEG_PROTECTED)\n": "64-bit mode",
        "seg_mode(SEG_LONG)\nlgdt(0xF7)\nload_seg(SREG_DS, 0x08, 3)\n": "indexes 30, 31",
        "lgdt(0x47)\nload_seg(SREG_DS, 0x08, 0)\n": "exception",
        "set_pte(0x200000, 0, 0x201000, PTE_P)\nseg_access(SREG_DS, 0x200000)\n": "paging calls",
    }
    for text, why in cases.items():
        program = parse("# memspec-program: 1\n" + text)
        run = qsys.run(program)
        assert run.status is RunStatus.REFUSED and why in run.message, (text, run)
        assert judge(program, run, qsys.name, qsys_facts).failure is None
    # a reset makes the unit usable again, and the session runs the same calls
    program = parse("# memspec-program: 1\nseg_mode(SEG_LONG)\nwrmsr_segbase(SREG_GS, 0x100000)\n"
                    "v = seg_access(SREG_GS, 0x100000, ACC_WRITE, 8)\n")
    run = qsys.run(program)
    assert run.status is RunStatus.OK and run.outcomes[-1] == Outcome(value=0x200000CC)
    s = qsys.session()
    got = [s.call(c, tuple(int(x) for x in eval_args(c, {}))) for c in program.calls]
    assert got == list(run.outcomes)


def test_a_kernel_that_loses_the_fs_base_is_caught(qsys_facts):
    need_qemu()
    from memspec.targets.qemu_system import QemuSystemTarget, build_kernel
    bad = QemuSystemTarget(timeout=5.0, image=build_kernel(("-DMEMSPEC_BROKEN_SEG",)))
    try:
        caught = []
        for origin, program in seg_suite():
            f = judge(program, bad.run(program), bad.name, qsys_facts).failure
            if f is not None and f.clause not in {c for c, _ in FINDINGS.values()}:
                assert f.verdict is Verdict.FAIL, f
                caught.append((origin, f.clause))
    finally:
        bad.close()
    assert {c for _o, c in caught} == {"sdm.seg.long.fs-gs-base"}, caught
