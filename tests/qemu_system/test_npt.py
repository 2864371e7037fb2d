"""AMD nested paging (SVM + NPT) for real: directed programs under tests/qemu_system/npt/.

Each program runs on the test kernel's SVM guest and is judged by the virt layer's 2-D walk
model; the key outcomes are also asserted here as derived from the AMD APM Vol. 2 §15.25
(nested paging): a guest load returns the host frame's pattern, #NPF exits carry a #PF-style
error code in EXITINFO1 (nested walks are user accesses, so U is always set) with bit 32 for
the final gpa or bit 33 for a guest page-table access, and the gpa in EXITINFO2; guest page
faults are intercepted with the error code in EXITINFO1 and the linear address in EXITINFO2.
"""

from __future__ import annotations

import glob
import os

import pytest

from memspec.calls_hw import pattern
from memspec.program import load, parse
from memspec.records import RunStatus

from .conftest import run_and_judge, unexplained_failure

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = sorted(glob.glob(os.path.join(HERE, "npt", "*.mst")))
FINAL, GUEST_TABLE = 1 << 32, 1 << 33
P, W, U, ID = 1, 2, 4, 16


def _named(program, run) -> dict:
    return {c.result: o for c, o in zip(program.calls, run.outcomes) if c.result}


def npf(o):
    assert o.signal == "#NPF", o
    d = dict(o.detail)
    return d["exitinfo1"], d["exitinfo2"]


def pf(o):
    assert o.signal == "#PF", o
    d = dict(o.detail)
    return d["errcode"], d["cr2"]


@pytest.mark.parametrize("path", PROGRAMS, ids=os.path.basename)
def test_npt_program_is_judged_by_the_virt_model(qsys, qsys_facts, path) -> None:
    program = load(path)
    f = unexplained_failure(qsys, program, qsys_facts)
    assert f is None, (f.clause, f.index, f.note[:500])


def test_two_dimensional_walk_and_faults_match_the_apm(qsys) -> None:
    p = load(os.path.join(HERE, "npt", "01-two-dimensional.mst"))
    r = qsys.run(p)
    n = _named(p, r)
    assert r.status is RunStatus.OK
    assert n["v"].value == pattern(0x800008)                 # gva 0x5008 -> gpa 0x200008 -> hpa 0x800008
    assert npf(n["w"]) == (FINAL | P | W | U, 0x200008)      # nested page read-only
    assert pf(n["x"]) == (0, 0x6000)                         # guest PTE not present: the guest's own #PF
    assert pf(n["y"]) == (P | U, 0x7000)                     # CPL 3 on a guest supervisor page
    assert n["z"].value == pattern(0x403008)                 # gpa 0x3000 in the 2 MiB nested page at 4 MiB
    assert n["f"].ok                                         # fetch reached the pattern's int3
    assert n["a"].value & 0x60 == 0x60                       # guest PTE: A and D (the write got past stage 1)
    assert n["b"].value & 0x60 == 0x20                       # nested PDE: A, no D (the write faulted there)


def test_nested_faults_on_guest_tables_and_rights_match_the_apm(qsys) -> None:
    p = load(os.path.join(HERE, "npt", "02-guest-table-fault.mst"))
    n = _named(p, qsys.run(p))
    assert n["v"].value == pattern(0x305008)
    info1, gpa = npf(n["u"])
    assert info1 & GUEST_TABLE and not info1 & FINAL and info1 & U and not info1 & P and gpa == 0x14008
    p = load(os.path.join(HERE, "npt", "03-nested-rights.mst"))
    n = _named(p, qsys.run(p))
    assert n["r"].value == pattern(0x800000)
    assert npf(n["x"]) == (FINAL | P | U | ID, 0x200000)     # NX in the nested PDE, host EFER.NXE = 1
    assert npf(n["s"]) == (FINAL | P | U, 0x400000)          # nested U/S = 0: even a CPL-0 guest read
    assert npf(n["t"]) == (FINAL | P | W | U, 0x400000)


def test_guests_are_separate_and_invept_takes_the_new_mapping(qsys) -> None:
    p = load(os.path.join(HERE, "npt", "04-two-guests-invept.mst"))
    n = _named(p, qsys.run(p))
    assert (n["b"].value, n["a"].value, n["c"].value, n["d"].value) == (
        pattern(0xA00008), pattern(0x800008), pattern(0xC00008), pattern(0xA00008))
    p = load(os.path.join(HERE, "npt", "05-guest-cr3.mst"))
    n = _named(p, qsys.run(p))
    assert (n["a"].value, n["b"].value, n["c"].value) == (pattern(0x800000), pattern(0x801000), pattern(0x800000))


def test_intel_ept_is_refused_not_judged(qsys) -> None:
    r = qsys.run(parse("set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)\n"
                       "vm_boot(0, VM_EPT, 0x200000, EPTP_WB|EPTP_WL4, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)\n"))
    assert r.status is RunStatus.REFUSED and "VMX" in r.message
