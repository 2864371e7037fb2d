"""The kvm target runs a program in chunks (many calls per KVM_RUN); a call that reads a named
result of an earlier call starts a new chunk, so that the value is known when the call is built.
Results that no later call reads do not end a chunk."""

from __future__ import annotations

from memspec.program import parse

from .conftest import run_and_judge
from .test_robustness import WALK

# the PTE read back is written again, as a value, to another slot: only right if ``v`` was known
# (the guest's own read, A bit included) when the second set_pte was built
READS_BACK = parse(WALK + "set_pte(0x203000, 1, 0x300000, PTE_P|PTE_RW)\nmov_cr3(0x200000)\n"
                          "a = access(0x1008, ACC_READ, 0)\nv = read_pte(0x203000, 1)\n"
                          "set_pte(0x203000, 2, v, 0)\nw = read_pte(0x203000, 2)\nb = access(0x1010, ACC_READ, 0)\n")


def test_a_result_read_later_is_known_when_the_call_is_built(kvm_target, kvm_facts):
    run = kvm_target.run(READS_BACK)
    v, w = run.outcomes[6].value, run.outcomes[8].value
    assert v == 0x300000 | 0x23 and w == v        # P|RW|A, copied by value
    j = run_and_judge(kvm_target, READS_BACK, kvm_facts)
    assert j.passed, j.failure
