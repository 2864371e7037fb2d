"""Every virt law has a broken implementation that the judge catches, with a minimal reproducer.

Each case runs a program on a broken target (the reference model with one rule wrong);
the judge must fail it on the named clause and the shared minimiser (the one ``memspec
check`` uses) must shrink it to at most the calls the bug needs.  The broken models are
also caught by their own invariants, one per invariant.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from memspec.calls_hw import pattern
from memspec.fuzz.differential import failing_signature, shrink_failure
from memspec.model.pte import EXEC, READ
from memspec.model.virt import VirtModel
from memspec.program import eval_args, format_program, parse
from memspec.records import OK, Outcome
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

_spec = importlib.util.spec_from_file_location("broken_virt", os.path.join(os.path.dirname(__file__), "broken_virt.py"))
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]

T = broken.BrokenVirtTarget

EPT_4M = """set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)
set_epte(0x201000, 0, 0x202000, EPT_R|EPT_W|EPT_X)
set_epte(0x202000, 0, 0x400000, EPT_R|EPT_W|EPT_MT_WB|EPT_PS)
"""
GUEST = """set_gpte(0x10000, 0, 0x11000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x11000, 0, 0x12000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x12000, 0, 0x13000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)
"""
BOOT0 = "vm_boot(0, VM_EPT, 0x200000, EPTP_WB|EPTP_WL4, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)\n"

# guest 1: its own EPT (gpa 0-2M -> hpa 0xC00000), the same guest-physical layout
EPT_1 = """set_epte(0x240000, 0, 0x241000, EPT_R|EPT_W|EPT_X)
set_epte(0x241000, 0, 0x242000, EPT_R|EPT_W|EPT_X)
set_epte(0x242000, 0, 0xC00000, EPT_R|EPT_W|EPT_X|EPT_MT_WB|EPT_PS)
"""

# guest tables at gpa 0x410000 (hpa 0x810000) and a decoy set at gpa 0x10000 (hpa 0x410000): a walk
# that takes table gpas for hpas reads the decoy
DECOY = EPT_4M + """set_epte(0x202000, 2, 0x800000, EPT_R|EPT_W|EPT_X|EPT_MT_WB|EPT_PS)
vm_boot(0, VM_EPT, 0x200000, EPTP_WB|EPTP_WL4, 0x410000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)
set_gpte(0x410000, 0, 0x411000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x411000, 0, 0x412000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x412000, 0, 0x413000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x413000, 5, 0x180000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x10000, 0, 0x411000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x11000, 0, 0x412000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x12000, 0, 0x413000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)
v = vm_access(0x5008, ACC_READ, 3)
"""

KPTI_BASE = """kpti_boot(KPTI_ON|KPTI_PCID)
kpti_map(0x400000, 0x300000, KMAP_USER)
kpti_map(0xffffffff81000000, 0x500000, KMAP_KERNEL)
kpti_map(0xfffffe0000000000, 0x600000, KMAP_TRAMPOLINE)
"""

CASES = [
    # (bug, program, clause the judge must name, most calls a minimal reproducer needs)
    ("ept-ignores-x", EPT_4M + BOOT0 + GUEST + "v = vm_access(0x5008, ACC_READ, 3)\nvm_access(0x5000, ACC_EXEC, 3)\n",
     "sdm.ept.violation.execute", 9),
    ("skip-table-translation", EPT_4M + BOOT0 + GUEST + "v = vm_access(0x5008, ACC_READ, 3)\n",
     "sdm.ept.guest-paging-structures-translated", 9),
    ("untagged-cache", EPT_4M + EPT_1 + BOOT0 + GUEST + "v = vm_access(0x5008, ACC_READ, 3)\n"
     + "vm_boot(1, VM_EPT, 0x240000, EPTP_WB|EPTP_WL4, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)\n" + GUEST + "w = vm_access(0x5008, ACC_READ, 3)\n",
     "memspec.virt.guests-isolated", 20),
    ("user-set-maps-kernel", KPTI_BASE + "u = user_access(0x400000)\nk = user_access(0xffffffff81000000)\n",
     "linux.pti.user-set-no-kernel", 3),
    ("pcid-reuse-no-flush", KPTI_BASE + "a = user_access(0x400000)\nsyscall_enter()\ncontext_switch(2)\n"
     "syscall_exit()\nb = user_access(0x400000)\n", "linux.pti.pcid-flush-on-reuse", 7),
    ("pcid-flush-every-switch", KPTI_BASE + "syscall_enter()\nsyscall_exit()\nf = kpti_stat(KSTAT_FLUSHES)\n",
     "linux.pti.pcid-no-flush", 3),
]


@pytest.mark.parametrize("bug,text,clause,most", CASES, ids=[c[0] for c in CASES])
def test_broken_implementation_fails_with_minimal_reproducer(bug, text, clause, most):
    target = T(bug)
    program = parse(text)
    sig = failing_signature(target, program, {})
    assert sig is not None, f"{bug} passed:\n{text}"
    assert sig.clause == clause
    small = shrink_failure(target, program, {}, sig)
    assert failing_signature(target, small, {}) == sig
    assert len(small) <= most, format_program(small)
    # the reference model passes the minimal program (the bug is the target's)
    assert failing_signature(ModelTarget(), small, {}) is None, format_program(small)


INVARIANT_CASES = [
    # (bug, program, the invariant the broken model's own check must name)
    ("skip-table-translation", DECOY, "memspec.virt.two-d-equals-composition"),
    ("skip-final-translation", EPT_4M + BOOT0 + GUEST + "v = vm_access(0x5008, ACC_READ, 3)\n",
     "memspec.virt.guest-confined"),
    ("untagged-cache", CASES[2][1], "memspec.virt.guests-isolated"),
    ("user-set-maps-kernel", KPTI_BASE, "linux.pti.user-set-no-kernel"),
    ("pcid-reuse-no-flush", CASES[4][1], "linux.pti.pcid-flush-on-reuse"),
]


@pytest.mark.parametrize("bug,text,clause", INVARIANT_CASES, ids=[c[0] + ":" + c[2] for c in INVARIANT_CASES])
def test_broken_model_caught_by_its_own_invariant(bug, text, clause):
    program = parse(text)
    target = T(bug)
    j = judge(program, target.run(program), target.name, model=broken.broken_model(bug))
    f = j.failure
    assert f is not None and f.at == "invariant", j.checks[-1]
    assert f.clause == clause, f
    # and the reference model keeps every invariant on the same program
    ok = judge(program, ModelTarget().run(program), "model")
    assert ok.passed, ok.failure


def test_decoy_program_shows_the_difference():
    """The skip-table-translation walker reaches the decoy's frame; the reference reaches the real one."""
    program = parse(DECOY)
    good = ModelTarget().run(program).outcomes[-1].value
    bad = T("skip-table-translation").run(program).outcomes[-1].value
    assert good == (0x580008 << 8) | 0xCC and bad == (0x500008 << 8) | 0xCC


def model_after(text: str) -> VirtModel:
    """The reference model after running ``text`` (taking its own choices)."""
    m, env = VirtModel(), {}
    for call in parse(text).calls:
        args = eval_args(call, env)
        m.apply("main", call.name, args, m.expect("main", call.name, args).default)
    return m


def test_blame_names_the_law_whose_breach_gives_the_observation():
    """The decoy world, with the decoy's leaf at gpa 0x500000 (EPT: executable) while the real one is at
    gpa 0x180000 (EPT: not executable).  A fetch the reference refuses for EPT X that completes breaks
    sdm.ept.violation.execute, even though a walk of the untranslated guest tables would complete it too;
    a read of the decoy's frame breaks sdm.ept.guest-paging-structures-translated; any other wrong
    outcome is blamed on the reference walk's own clause."""
    m = model_after(DECOY.replace("set_gpte(0x13000, 5, 0x100000", "set_gpte(0x13000, 5, 0x500000")
                    .replace("v = vm_access(0x5008, ACC_READ, 3)\n", ""))
    fetch = m.expect("main", "vm_access", (0x5000, EXEC, 3))
    assert fetch.default.signal == "EPT_VIOLATION" and fetch.clause == "sdm.ept.violation.execute"
    assert m.walk_2d(m.vm, 0x5000, EXEC, 3, use_cache=False, translate_tables=False).outcome == OK
    assert fetch.judge(OK) is not None and fetch.blame(OK) == "sdm.ept.violation.execute"
    read = m.expect("main", "vm_access", (0x5008, READ, 3))
    assert read.default == Outcome(value=pattern(0x580008)) and read.clause == "sdm.ept.two-dimensional"
    decoy = Outcome(value=pattern(0x900008))
    assert read.judge(decoy) is not None and read.blame(decoy) == "sdm.ept.guest-paging-structures-translated"
    assert read.blame(Outcome(value=pattern(0x580010))) == "sdm.ept.two-dimensional"


def test_the_reference_model_has_no_bug_switches():
    """Every bug lives in broken_virt.py as a subclass; the model and its KPTI part carry none."""
    m = VirtModel()
    assert not hasattr(m, "broken") and not hasattr(m.kpti, "broken")
    assert sorted(broken.BUGS) == sorted({c[0] for c in CASES} | {c[0] for c in INVARIANT_CASES}
                                         | {"guest-d-on-read", "ept-a-missing", "qual-paging-write-only"})


@pytest.mark.parametrize("bug", ["ept-ignores-x", "skip-table-translation", "skip-final-translation", "untagged-cache",
                                 "user-set-maps-kernel", "pcid-reuse-no-flush", "pcid-flush-every-switch"])
def test_codec_fuzzing_finds_each_broken_implementation(bug):
    """Seeded random programs from the virt codec expose every bug within a short campaign."""
    import random

    from memspec.fuzz.codec_virt import decode
    target = T(bug)
    rng = random.Random(7)
    # 400: ept-ignores-x shows in about 1 program of 80 (5 of these 400, with the generator before and
    # after issue #26's features alike), so a window of 200 passed or failed on where they fell
    for _ in range(400):
        p = decode(bytes(rng.randrange(256) for _ in range(256)))
        if failing_signature(target, p, {}) is not None:
            return
    pytest.fail(f"400 random programs did not expose {bug}")
