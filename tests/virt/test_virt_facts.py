"""Virt rules that depend on the CPU read the target's facts, and every value of each fact is judged:
EPTP memory types and walk lengths (IA32_VMX_EPT_VPID_CAP bits 8, 14, 6, 7), 2-MByte EPT pages
(bit 16), the host's EFER.NXE under nested paging (``nx``), and no capacity on cached mappings."""

from __future__ import annotations

import importlib.util
import os

import pytest

from memspec.model.ept import Ept, EptMisconfig, EptPath
from memspec.model.pte import READ, Pte
from memspec.model.virt import VirtModel
from memspec.model.walk2d import VM_EPT, VM_NPT, GpCache

_spec = importlib.util.spec_from_file_location("walk2d", os.path.join(os.path.dirname(__file__), "test_walk2d.py"))
walk2d = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(walk2d)  # type: ignore[union-attr]

CR4_PAE, EFER = 1 << 5, (1 << 8) | (1 << 10) | (1 << 11)


def boot_answer(facts: dict, eptp_flags: int) -> tuple[str, str | None]:
    exp = VirtModel(facts).expect("main", "vm_boot", (0, VM_EPT, 0x200000, eptp_flags, 0x10000, CR4_PAE, EFER))
    return exp.clause, exp.default.errno


WB4, UC4, WB5 = 6 | (3 << 3), 0 | (3 << 3), 6 | (4 << 3)


@pytest.mark.parametrize("facts, flags, ok", [
    ({}, UC4, True), ({"ept_uc": True}, UC4, True), ({"ept_uc": False}, UC4, False),
    ({"vmx": {"msr": {"IA32_VMX_EPT_VPID_CAP": hex(1 << 14 | 1 << 6)}}}, UC4, False),
    ({"vmx": {"msr": {"IA32_VMX_EPT_VPID_CAP": hex(1 << 8 | 1 << 6)}}}, UC4, True),
    ({"ept_wb": False}, WB4, False), ({"ept_wb": True}, WB4, True),
    ({"ept_wl4": False}, WB4, False),
    ({"ept_wl5": True, "la57": False}, WB5, True), ({"ept_wl5": False, "la57": True}, WB5, False),
    ({"la57": True}, WB5, True), ({"la57": False}, WB5, False),          # not reported: only with 5-level paging
])
def test_eptp_checks_follow_the_ept_capabilities(facts, flags, ok) -> None:
    clause, errno = boot_answer(facts, flags)
    assert (clause, errno) == (("sdm.eptp.valid", None) if ok else ("sdm.eptp.invalid-fails-entry", "EINVAL"))


@pytest.mark.parametrize("facts, misconfig", [({}, False), ({"ept_2m": True}, False), ({"ept_2m": False}, True),
                                              ({"vmx": {"msr": {"IA32_VMX_EPT_VPID_CAP": hex(1 << 17)}}}, True)])
def test_a_2m_ept_page_needs_2m_support(facts, misconfig) -> None:
    m = VirtModel(facts)
    m.mem[0x200000] = 0x201000 | 0x7
    m.mem[0x201000] = 0x202000 | 0x7
    m.mem[0x202000] = 0x400000 | 0x7 | (6 << 3) | int(Ept.PS)
    walk2d.boot(m, VM_EPT)
    res = m.nested_walk(m.vm, 0x1000)
    if misconfig:
        assert isinstance(res, EptMisconfig) and res.clause == "sdm.ept.misconfig.rsvd-ps"
    else:
        assert isinstance(res, EptPath) and res.size == 1 << 21


@pytest.mark.parametrize("nx, faults", [(None, False), (True, False), (False, True)])
def test_nested_xd_bit_is_reserved_when_the_host_runs_without_nxe(nx, faults) -> None:
    m = walk2d.standard(VM_NPT, data_rights=Pte.P | Pte.RW | Pte.US | (1 << 63))
    if nx is not None:
        m.facts["nx"] = nx
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    if faults:
        d = dict(w.outcome.detail)
        assert w.outcome.signal == "#NPF" and d["exitinfo1"] & 0x8 and d["exitinfo2"] == 0x100008   # RSVD
    else:
        assert w.outcome.value is not None and w.outcome.signal is None


def test_cached_guest_physical_mappings_have_no_capacity() -> None:
    c = GpCache()
    first = object()
    c.fill(1, 0x0, type("P", (), {"size": 4096})(), 0)
    c.entries[0] = (1, 0, 4096, first, 0)
    for i in range(1, 400):
        c.fill(1, i << 12, type("P", (), {"size": 4096})(), i)
    assert c.lookup(1, 0x10) == [first]      # still allowed until INVEPT
    c.invalidate(1)
    assert c.lookup(1, 0x10) == []
