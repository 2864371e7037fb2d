"""EPT-violation exit qualification (Intel SDM Vol. 3C §28.2.1, Table 28-7) for guest paging-structure
accesses, and the bits the SDM leaves either way; every value of the facts that decide them."""

from __future__ import annotations

import importlib.util
import os

import pytest

from memspec.model.ept import Ept, Qual
from memspec.model.pte import READ, WRITE
from memspec.model.virt import _same
from memspec.program import parse
from memspec.records import Outcome
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

_here = os.path.dirname(__file__)
_spec = importlib.util.spec_from_file_location("walk2d", os.path.join(_here, "test_walk2d.py"))
walk2d = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(walk2d)  # type: ignore[union-attr]
_spec = importlib.util.spec_from_file_location("broken_virt", os.path.join(_here, "broken_virt.py"))
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]

WB = walk2d.WB


def table_violation(ad: bool, facts: dict | None = None):
    """Guest PDPT page (gpa 0x11000) mapped read-only by EPT; a guest read at gva 0x5008."""
    m = walk2d.standard(ad=ad)
    m.facts.update(facts or {})
    m.mem[0x212000 + 8 * 0x11] = 0x411000 | Ept.R | WB
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    assert w.outcome.signal == "EPT_VIOLATION" and w.clause == "sdm.ept.violation.guest-paging-entry"
    return dict(w.outcome.detail)


def test_guest_paging_access_under_ept_ad_sets_bits_0_and_1():
    d = table_violation(ad=True)
    assert d["exit_qualification"] == Qual.READ | Qual.WRITE | Qual.READABLE | Qual.GLA_VALID == 0x8B
    assert not d["qual_any"] & (Qual.READ | Qual.WRITE)          # both required, neither either way


def test_guest_a_flag_update_without_ept_ad_is_a_write_bit_0_either_way():
    d = table_violation(ad=False)
    assert d["exit_qualification"] == Qual.WRITE | Qual.READABLE | Qual.GLA_VALID == 0x8A
    assert d["qual_any"] & Qual.READ and not d["qual_any"] & Qual.WRITE


def test_guest_paging_read_without_ept_ad_sets_bit_0_only():
    m = walk2d.standard()
    m.mem[0x212000 + 8 * 0x12] = 0                                # guest PD's page not present in EPT
    d = dict(m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False).outcome.detail)
    assert d["exit_qualification"] == Qual.READ | Qual.GLA_VALID and not d["qual_any"] & (Qual.READ | Qual.WRITE)


@pytest.mark.parametrize("fact, advanced_loose", [({}, True), ({"ept_exit_info": True}, True),
                                                   ({"ept_exit_info": False}, False),
                                                   ({"vmx": {"msr": {"IA32_VMX_EPT_VPID_CAP": hex(1 << 22)}}}, True),
                                                   ({"vmx": {"msr": {"IA32_VMX_EPT_VPID_CAP": "0x6334141"}}}, False)])
def test_advanced_exit_information_bits_follow_the_fact(fact, advanced_loose):
    m = walk2d.standard(data_rights=Ept.R)
    m.facts.update(fact)
    d = dict(m.walk_2d(m.vm, 0x5008, WRITE, 3, use_cache=False).outcome.detail)
    assert d["exit_qualification"] == 0x18A
    assert bool(d["qual_any"] & (0x7 << 9)) is advanced_loose
    assert d["qual_any"] & (1 << 6)                               # undefined without mode-based execute control
    want = Outcome(signal="EPT_VIOLATION", detail=tuple(d.items()))
    seen = dict(d, exit_qualification=0x18A | (1 << 9) | (1 << 10))
    assert _same(Outcome(signal="EPT_VIOLATION", detail=tuple(seen.items())), want) is advanced_loose
    wrong = dict(d, exit_qualification=0x189)                     # read bit instead of write: never allowed
    assert not _same(Outcome(signal="EPT_VIOLATION", detail=tuple(wrong.items())), want)


PROGRAM = """set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)
set_epte(0x201000, 0, 0x202000, EPT_R|EPT_W|EPT_X)
set_epte(0x202000, 0, 0x203000, EPT_R|EPT_W|EPT_X)
set_epte(0x203000, 16, 0x410000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 17, 0x411000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 18, 0x412000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 19, 0x413000, EPT_R|EPT_MT_WB)
set_epte(0x203000, 256, 0x500000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
vm_boot(0, VM_EPT, 0x200000, {eptp}, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)
set_gpte(0x10000, 0, 0x11000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x11000, 0, 0x12000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x12000, 0, 0x13000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)
v = vm_access(0x5008, ACC_READ, 0)
"""


def test_a_target_setting_bit_1_only_under_ept_ad_fails_the_clause():
    p = parse(PROGRAM.format(eptp="EPTP_WB|EPTP_WL4|EPTP_AD"))
    good = ModelTarget().run(p)
    assert dict(good.outcomes[-1].detail)["exit_qualification"] == 0x8B and judge(p, good, "model").failure is None
    bad = broken.BrokenVirtTarget("qual-paging-write-only").run(p)
    assert dict(bad.outcomes[-1].detail)["exit_qualification"] == 0x8A
    f = judge(p, bad, "broken").failure
    assert f is not None and f.clause == "sdm.ept.violation.guest-paging-entry" and f.index == len(p.calls) - 1
    assert "exit_qualification=0x8b" in f.expected


def test_without_ept_ad_the_flag_update_passes_with_or_without_bit_0():
    p = parse(PROGRAM.format(eptp="EPTP_WB|EPTP_WL4"))
    run = ModelTarget().run(p)
    o = run.outcomes[-1]
    assert o.signal == "EPT_VIOLATION" and dict(o.detail)["exit_qualification"] == 0x8A
    for q in (0x8A, 0x8B):
        d = dict(o.detail, exit_qualification=q)
        d.pop("qual_any")
        alt = Outcome(signal=o.signal, detail=tuple(d.items()))
        r = type(run)(run.outcomes[:-1] + (alt,), run.observations)
        assert judge(p, r, "t").failure is None, q
    d = dict(o.detail, exit_qualification=0x89)                   # a read: never the flag update's answer
    r = type(run)(run.outcomes[:-1] + (Outcome(signal=o.signal, detail=tuple(d.items())),), run.observations)
    assert judge(p, r, "t").failure is not None
