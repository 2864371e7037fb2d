"""A guest that triple-faults, one that never halts and a mode KVM refuses each become a
verdict with the program that caused it, and the target goes on with the next program."""

from __future__ import annotations

from memspec.program import parse
from memspec.records import RunStatus, Verdict

from memspec.specs.judge import judge

from .conftest import run_and_judge

WALK = """set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW)
set_pte(0x202000, 0, 0x203000, PTE_P|PTE_RW)
"""
GOOD = parse(WALK + "set_pte(0x203000, 1, 0x300000, PTE_P|PTE_RW)\nmov_cr3(0x200000)\nv = access(0x1008, ACC_READ, 0)\n")


def still_fine(target, facts):
    j = run_and_judge(target, GOOD, facts)
    assert j.passed, j.failure
    assert target.run(GOOD).outcomes[-1].value == (0x300008 << 8) | 0xCC


def test_triple_fault_is_a_crash_verdict(kvm_target, kvm_facts):
    # PT[0] maps the root table itself; a store at 0xff8 hits root[511], the harness's own
    # slot, so the next exception cannot be delivered: KVM_EXIT_SHUTDOWN
    p = parse(WALK + "set_pte(0x203000, 0, 0x200000, PTE_P|PTE_RW)\nmov_cr3(0x200000)\n"
                     "access(0xff8, ACC_WRITE, 0)\naccess(0x5000, ACC_READ, 0)\n")
    run = kvm_target.run(p)
    assert run.status is RunStatus.CRASH and "SHUTDOWN" in run.message, run
    j = run_and_judge(kvm_target, p, kvm_facts)
    assert j.failure is not None and j.failure.verdict is Verdict.CRASH
    still_fine(kvm_target, kvm_facts)


def test_guest_that_never_halts_is_a_hang_verdict(kvm_target, kvm_facts):
    # an entry whose bytes are `jmp $` (EB FE), executed through a mapping of its table
    p = parse(WALK + "set_pte(0x204000, 0, 0, 0xFEEB)\nset_pte(0x203000, 1, 0x204000, PTE_P|PTE_RW)\n"
                     "mov_cr3(0x200000)\naccess(0x1000, ACC_EXEC, 0)\n")
    run = kvm_target.run(p)
    assert run.status is RunStatus.HANG, run
    assert len(run.outcomes) == 6     # every call before the fetch answered
    j = judge(p, run, "kvm", kvm_facts)
    assert j.failure is not None and j.failure.verdict is Verdict.HANG
    still_fine(kvm_target, kvm_facts)


def test_set_sregs_einval_is_an_error_verdict(kvm_target, kvm_facts):
    # pretend the probe found LA57: KVM_SET_SREGS then refuses the boot with EINVAL
    m = kvm_target.machine
    saved = dict(m.features)
    m.features["la57"] = True
    try:
        p = parse("boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE|CR4_LA57, EFER_LME|EFER_NXE)\n")
        run = kvm_target.run(p)
    finally:
        m.features.clear()
        m.features.update(saved)
    assert run.status is RunStatus.ERROR and "KVM_SET_SREGS" in run.message and "Invalid argument" in run.message
    j = judge(p, run, "kvm", dict(kvm_facts, la57=True))
    assert j.failure is not None and j.failure.verdict is Verdict.ERROR
    still_fine(kvm_target, kvm_facts)


def test_unemulated_instruction_is_that_calls_outcome(kvm_target):
    run = kvm_target.run(parse("wrpkru(0)\nmov_cr4(CR4_PAE)\n"))
    assert run.status is RunStatus.OK
    assert run.outcomes[0].signal == "KVM_EXIT_INTERNAL_ERROR"
    assert run.outcomes[1].ok


def test_unbacked_physical_memory_reads_all_ones(kvm_target):
    run = kvm_target.run(parse(WALK + "set_pte(0x203000, 1, 0x40000000, PTE_P|PTE_RW)\nmov_cr3(0x200000)\n"
                                      "v = access(0x1000, ACC_READ, 0)\n"))
    assert run.status is RunStatus.OK and run.outcomes[-1].value == (1 << 64) - 1


def test_a_session_given_up_after_a_refusal_refuses_the_rest(kvm_target, monkeypatch):
    """A call the harness refuses at run time (e.g. a fetch that ran the harness's own code)
    gives up the VM: the session's later calls are refused too, never a failure of KVM."""
    import pytest

    from memspec.errors import SessionFailed
    s = kvm_target.session("hw")
    calls = list(GOOD.calls)
    for c in calls[:5]:
        s.call(c, _ints(c))
    m = kvm_target.machine

    def refuse(chunk):
        m.broken = True
        return RunStatus.REFUSED, "the fetch ran code outside the pattern", 0
    monkeypatch.setattr(m, "run_chunk", refuse)
    with pytest.raises(SessionFailed) as first:
        s.call(calls[5], _ints(calls[5]))
    assert first.value.status is RunStatus.REFUSED
    monkeypatch.undo()
    with pytest.raises(SessionFailed) as later:
        s.call(calls[4], _ints(calls[4]))
    assert later.value.status is RunStatus.REFUSED and "given up after call 6" in later.value.message
    # a fresh session (a new VM) runs again
    still_fine(kvm_target, kvm_target.facts())


def _ints(call):
    from memspec.program import eval_args
    return tuple(int(x) for x in eval_args(call, {}))
