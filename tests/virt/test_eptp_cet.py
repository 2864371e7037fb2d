"""EPTP bit 7 enables the access rights of supervisor shadow-stack pages (Intel SDM Vol. 3C Table 25-9):
a valid setting on a CPU with CET shadow stacks, reserved (VM entry fails, §27.2.1.1) on one without.
The model reads the target's fact ``cet`` and allows either answer when the target does not report it.
Before, bit 7 was always reserved: a false alarm on Bochs' tigerlake model, which has CET (found by the
virt generator's odd EPT pointers, check --target bochs --layer virt)."""

from __future__ import annotations

import pytest

from memspec.model.virt import VirtModel
from memspec.model.walk2d import VM_EPT
from memspec.records import OK, Outcome

ROOT, GCR3, CR4_PAE, EFER_LME = 0x200000, 0x10000, 0x20, 0x100
WB_WL4 = 0x6 | 3 << 3          # memory type WB, page-walk length 4
EINVAL = Outcome(value=-1, errno="EINVAL")


def _expect(facts: dict, eptp_flags: int = WB_WL4 | 1 << 7):
    m = VirtModel(facts)
    return m.expect("main", "vm_boot", (0, VM_EPT, ROOT, eptp_flags, GCR3, CR4_PAE, EFER_LME))


@pytest.mark.parametrize("cet, ok, refused", [(True, True, False), (False, False, True), (None, True, True)])
def test_eptp_bit_7_follows_the_cet_fact(cet, ok, refused) -> None:
    e = _expect({} if cet is None else {"cet": cet})
    assert (e.judge(OK) is None) is ok
    assert (e.judge(EINVAL) is None) is refused


def test_without_bit_7_the_fact_changes_nothing() -> None:
    for facts in ({}, {"cet": True}, {"cet": False}):
        e = _expect(facts, WB_WL4)
        assert e.judge(OK) is None and e.judge(EINVAL) is not None
