"""The bochs target on the virt layer: the test kernel as a VMX hypervisor (Intel EPT) on Intel CPU
models, its SVM path (AMD nested paging) on AMD ones.

Outcomes asserted here are derived from the Intel SDM Vol. 3C: a guest load returns the pattern of
the host frame EPT maps it to (§29.3.2); an EPT violation exits with reason 48, the access in exit
qualification bits 2:0, the AND of the EPT entries' R/W/X in bits 5:3, bit 7 for a valid guest-linear
address and bit 8 for the final translation (Table 28-7); a misconfigured entry exits with reason 49
(§29.3.3.1); with EPTP[6] = 1 the processor sets EPT A in the entries it used and D in the leaf of a
write (§29.3.5), with EPTP[6] = 0 it never writes them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from ..conftest import missing_peer

import memspec.specs.judge as judge_mod
from memspec.fuzz.layers import random_programs
from memspec.specs.directed import suite_programs
from memspec.calls_hw import pattern
from memspec.program import load, parse
from memspec.records import RunStatus, Verdict

from .conftest import explained, need_bochs, run_and_judge

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("broken_virt", os.path.join(HERE, "..", "virt", "broken_virt.py"))
broken_virt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken_virt)  # type: ignore[union-attr]

# Table 28-7
R, W, X, RA, WA, XA, GLA, FINAL = 1, 2, 4, 8, 16, 32, 128, 256
EPT_A, EPT_D = 1 << 8, 1 << 9

EPT = """set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)
set_epte(0x201000, 0, 0x202000, EPT_R|EPT_W|EPT_X)
set_epte(0x202000, 0, 0x203000, EPT_R|EPT_W|EPT_X)
set_epte(0x203000, 16, 0x410000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 17, 0x411000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 18, 0x412000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 19, 0x413000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
"""
GUEST = """set_gpte(0x10000, 0, 0x11000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x11000, 0, 0x12000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x12000, 0, 0x13000, PTE_P|PTE_RW|PTE_US)
"""


def boot(eptp: str = "EPTP_WB|EPTP_WL4") -> str:
    return f"vm_boot(0, VM_EPT, 0x200000, {eptp}, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)\n"


def named(program, run) -> dict:
    return {c.result: o for c, o in zip(program.calls, run.outcomes) if c.result}


def violation(o) -> tuple[int, int, int | None]:
    assert o.signal == "EPT_VIOLATION", o
    d = dict(o.detail)
    return d["exit_qualification"], d["gpa"], d.get("gla")


def applicable(target, layer: str = "virt"):
    return [(o, p) for o, p in suite_programs(layer) if all(c.name in target.calls for c in p.calls)]


@pytest.fixture(scope="module")
def bochs_amd():
    need_bochs()
    from memspec.targets.bochs import BochsTarget
    t = BochsTarget(model="ryzen")
    yield t
    t.close()


# -- features ---------------------------------------------------------------------------------

def test_vmx_features_come_from_the_capability_msrs(bochs, bochs_facts) -> None:
    from memspec.targets.testkernel_wire import VM_EPT
    v = bochs_facts["vmx"]
    cap = int(v["msr"]["IA32_VMX_EPT_VPID_CAP"], 16)
    proc2 = int(v["msr"]["IA32_VMX_PROCBASED_CTLS2"], 16)
    assert v["ept"] == bool(proc2 >> 33 & 1) and v["ept"]                     # allowed-1 of "enable EPT"
    for key, bit in (("ept_xonly", 0), ("ept_wl4", 6), ("ept_wb", 14), ("ept_2m", 16), ("ept_1g", 17),
                     ("ept_ad", 21), ("invept_single", 25), ("invept_all", 26)):
        assert v[key] == bool(cap >> bit & 1), key
    # tigerlake (peers' FINDINGS): EPT with 1-GByte pages and A/D, execute-only, no 5-level walks
    assert v["ept_1g"] and v["ept_ad"] and v["ept_xonly"] and not v["ept_wl5"]
    assert (bochs_facts["ept_1g"], bochs_facts["ept_ad"], bochs_facts["ept_xonly"]) == (True, True, True)
    assert bochs.vm_kinds == frozenset({VM_EPT})
    assert "set_epte" in bochs.calls and "set_npte" not in bochs.calls
    assert "5-level EPT walks (IA32_VMX_EPT_VPID_CAP[7])" in bochs.unsupported()
    assert "sdm.ept.violation.pml5e-not-present" in bochs.not_observable()


def test_a_cpu_model_without_ept_ad_and_1g_pages_is_judged_without_them() -> None:
    """Sandy Bridge: EPT without A/D flags or 1-GByte pages (IA32_VMX_EPT_VPID_CAP[21] = [17] = 0).
    Both are listed as unsupported, an EPTP with A/D enabled fails the VM entry for real (the model
    expects EINVAL from the same fact), and programs that need them are not applicable."""
    need_bochs()
    from memspec.specs.directed import lacks as _lacks
    from memspec.targets.bochs import BochsTarget
    t = BochsTarget(model="corei7_sandy_bridge_2600k")
    try:
        f = t.facts()
        assert not f["ept_ad"] and not f["ept_1g"] and f["vmx"]["ept"]
        assert {"EPT accessed and dirty flags (IA32_VMX_EPT_VPID_CAP[21])",
                "EPT 1-GByte pages (IA32_VMX_EPT_VPID_CAP[17])"} <= set(t.unsupported())
        p = parse(EPT + boot("EPTP_WB|EPTP_WL4|EPTP_AD") + boot())
        r = t.run(p)
        assert r.outcomes[-2].errno == "EINVAL" and r.outcomes[-1].ok
        assert run_and_judge(t, p, f).failure is None
        large = [p for o, p in applicable(t) if "large-pages" in o]
        assert large and all(_lacks(f, p.meta("requires")) for p in large)
    finally:
        t.close()


# -- the suite and the SDM's outcomes -------------------------------------------------------------

def test_the_virt_suite_passes_on_bochs(bochs, bochs_facts) -> None:
    progs = applicable(bochs)
    assert len(progs) >= 7 and all(any(c.name == "set_epte" for c in p.calls) for _, p in progs)
    failed = []
    for origin, program in progs:
        r = run_and_judge(bochs, program, bochs_facts)
        if r.failure is not None and not explained(bochs.name, r.failure.clause):
            failed.append((origin, r.failure.clause, r.failure.observed))
    assert not failed, failed


def test_ept_violations_misconfigurations_and_faults_match_the_sdm(bochs, bochs_facts) -> None:
    p = parse(EPT + """set_epte(0x203000, 256, 0x500000, EPT_R|EPT_MT_WB)
set_epte(0x203000, 257, 0x501000, EPT_X|EPT_MT_WB)
set_epte(0x203000, 258, 0, 0)
set_epte(0x203000, 259, 0x503000, EPT_W|EPT_MT_WB)
set_epte(0x203000, 260, 0x504000, EPT_R|EPT_W|EPT_MT_WB|EPT_MT_WC)
""" + boot() + GUEST + """set_gpte(0x13000, 0, 0x100000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 1, 0x101000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 2, 0x102000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 3, 0x103000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 4, 0x104000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_US)
r = vm_access(0x8, ACC_READ, 3)
w = vm_access(0x8, ACC_WRITE, 3)
f = vm_access(0x0, ACC_EXEC, 0)
xo = vm_access(0x1000, ACC_EXEC, 3)
xr = vm_access(0x1008, ACC_READ, 3)
np = vm_access(0x2010, ACC_READ, 0)
wo = vm_access(0x3000, ACC_READ, 0)
mt = vm_access(0x4000, ACC_READ, 0)
pf = vm_access(0x5008, ACC_WRITE, 3)
gnp = vm_access(0x6000, ACC_READ, 3)
""")
    r = bochs.run(p)
    assert r.status is RunStatus.OK, r.message
    n = named(p, r)
    assert n["r"].value == pattern(0x500008)                             # gva 0x8 -> gpa 0x100008 -> hpa 0x500008
    assert violation(n["w"]) == (W | RA | GLA | FINAL, 0x100008, 0x8)    # EPT read-only
    assert violation(n["f"]) == (X | RA | GLA | FINAL, 0x100000, 0x0)
    assert n["xo"].ok                                                    # execute-only: the fetch runs int3
    assert violation(n["xr"]) == (R | XA | GLA | FINAL, 0x101008, 0x1008)
    assert violation(n["np"]) == (R | GLA | FINAL, 0x102010, 0x2010)     # EPT PTE not present: bits 5:3 = 0
    assert n["wo"].signal == "EPT_MISCONFIG" and dict(n["wo"].detail)["gpa"] == 0x103000   # W without R
    assert n["mt"].signal == "EPT_MISCONFIG" and dict(n["mt"].detail)["gpa"] == 0x104000   # memory type 7
    assert n["pf"].signal == "#PF" and dict(n["pf"].detail) == {"errcode": 7, "cr2": 0x5008}  # the guest's own
    assert n["gnp"].signal == "#PF" and dict(n["gnp"].detail) == {"errcode": 4, "cr2": 0x6000}
    assert run_and_judge(bochs, p, bochs_facts).failure is None


@pytest.mark.parametrize("ad", [False, True], ids=["ept-ad-off", "ept-ad-on"])
def test_guest_and_ept_accessed_dirty_flags(bochs, bochs_facts, ad) -> None:
    """Guest A/D are set in the guest's entries either way (SDM Vol. 3A §4.8); EPT A/D only with
    EPTP[6] = 1, and then the guest walk's own table accesses count as writes (D in their leaf)."""
    p = parse(EPT + "set_epte(0x203000, 256, 0x500000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)\n"
              + boot("EPTP_WB|EPTP_WL4|EPTP_AD" if ad else "EPTP_WB|EPTP_WL4") + GUEST
              + "set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)\n"
              "v = vm_access(0x5008, ACC_READ, 3)\nl = read_epte(0x203000, 256)\nt = read_epte(0x203000, 19)\n"
              "g = read_gpte(0x13000, 5)\nw = vm_access(0x5008, ACC_WRITE, 3)\nd = read_epte(0x203000, 256)\n"
              "h = read_gpte(0x13000, 5)\nroot = read_epte(0x200000, 0)\n")
    r = bochs.run(p)
    n = named(p, r)
    assert n["v"].value == pattern(0x500008)
    assert n["g"].value & 0x60 == 0x20 and n["h"].value & 0x60 == 0x60        # guest A, then A|D
    leaf = 0x500037
    if ad:
        assert n["l"].value == leaf | EPT_A and n["d"].value == leaf | EPT_A | EPT_D
        assert n["t"].value & (EPT_A | EPT_D) == EPT_A | EPT_D                 # the guest PTE's page: written
        assert n["root"].value & (EPT_A | EPT_D) == EPT_A                      # non-leaf: A only
    else:
        assert (n["l"].value, n["d"].value, n["root"].value) == (leaf, leaf, 0x201007)
    assert run_and_judge(bochs, p, bochs_facts).failure is None


def test_ept_large_pages_and_invept(bochs, bochs_facts) -> None:
    p = load(os.path.join(HERE, "..", "..", "specs", "suite", "virt", "12-ept-large-pages.mst"))
    n = named(p, bochs.run(p))
    assert n["g"].value == pattern(0x300008)                      # gpa 0x40300008 in the 1-GByte page at hpa 0
    assert violation(n["n"])[0] == R | GLA | FINAL                  # EPT PDPTE not present
    assert n["a"].value & (EPT_A | EPT_D) == EPT_A | EPT_D and n["a"].value & 0x80
    p = load(os.path.join(HERE, "..", "..", "specs", "suite", "virt", "05-ept-invept-two-guests.mst"))
    n = named(p, bochs.run(p))
    assert n["a"].value == pattern(0x500008) and n["c"].value == pattern(0x600008)
    assert n["b"].value in (pattern(0x500008), pattern(0x600008))    # stale until INVEPT, or not
    assert n["d"].value == pattern(0xD00008) and n["e"].value == n["c"].value


def test_hw_programs_run_after_vmx_operation(bochs, bochs_facts) -> None:
    """A reset leaves VMX operation (which forbids clearing CR0.PG) before it re-boots the paging mode:
    an hw program after an EPT one runs on plain paging again, and VMX is entered afresh after it."""
    ept = parse(EPT + "set_epte(0x203000, 256, 0x500000, EPT_R|EPT_MT_WB)\n" + boot() + GUEST
                + "set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)\nv = vm_access(0x5008, ACC_READ, 3)\n")
    hw = parse("boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)\n"
               "set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)\nset_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)\n"
               "set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)\nset_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)\n"
               "mov_cr3(0x200000)\nv = access(0x405008, ACC_READ, 3)\n")
    for program in (ept, hw, ept):
        r = bochs.run(program)
        assert r.status is RunStatus.OK and run_and_judge(bochs, program, bochs_facts).failure is None
    assert named(hw, bochs.run(hw))["v"].value == pattern(0x300008)
    assert named(ept, bochs.run(ept))["v"].value == pattern(0x500008)


# -- Bochs' EPT findings (docs/findings/bochs.md, findings 3 and 4) ---------------------------------

def test_bochs_ept_findings_reproduce(bochs, bochs_facts) -> None:
    bit12 = parse(EPT.splitlines(keepends=True)[0] + EPT.splitlines(keepends=True)[1]
                  + "set_epte(0x202000, 0, 0x400000, EPT_R|EPT_W|EPT_X|EPT_MT_WB|EPT_PS)\n"
                  "set_epte(0x202000, 1, 0x801000, EPT_R|EPT_W|EPT_X|EPT_MT_WB|EPT_PS)\n"
                  "set_epte(0x202000, 2, 0xA02000, EPT_R|EPT_W|EPT_X|EPT_MT_WB|EPT_PS)\n" + boot() + GUEST
                  + "set_gpte(0x13000, 5, 0x200000, PTE_P|PTE_RW|PTE_US)\nset_gpte(0x13000, 6, 0x400000, PTE_P|PTE_RW|PTE_US)\n"
                  "b = vm_access(0x6008, ACC_READ, 0)\na = vm_access(0x5008, ACC_READ, 0)\n")
    n = named(bit12, bochs.run(bit12))
    assert n["b"].signal == "EPT_MISCONFIG"                 # bit 13 of a 2-MByte EPT page: reserved, checked
    assert n["a"].value == pattern(0x800008)                # bit 12: reserved too, but Bochs ignores it
    f = run_and_judge(bochs, bit12, bochs_facts).failure
    assert f.clause == "sdm.ept.misconfig.rsvd-large-low" and explained(bochs.name, f.clause)
    guest_ad = parse(EPT.replace("set_epte(0x203000, 19, 0x413000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)",
                                 "set_epte(0x203000, 19, 0x413000, EPT_R|EPT_MT_WB)")
                     + "set_epte(0x203000, 256, 0x500000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)\n" + boot() + GUEST
                     + "set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)\nv = vm_access(0x5008, ACC_READ, 0)\n"
                     "a = read_gpte(0x13000, 5)\n")
    n = named(guest_ad, bochs.run(guest_ad))
    # the SDM: an EPT violation (the A-flag update is a write to a page EPT maps read-only)
    assert n["v"].value == pattern(0x500008) and n["a"].value & 0x20
    f = run_and_judge(bochs, guest_ad, bochs_facts).failure
    assert f.clause == "sdm.ept.violation.guest-paging-entry" and explained(bochs.name, f.clause)
    assert "EPT_VIOLATION exit_qualification=0x8a gpa=0x13028" in f.expected


# -- broken implementations caught through this target ------------------------------------------

@pytest.fixture(scope="module")
def bochs_ept_runs(bochs, bochs_facts):
    """The EPT suite and seeded random EPT programs, run once on Bochs; those the correct model
    accepts (or whose only failure is a cited Bochs difference) are kept as the reference."""
    programs = [p for _o, p in applicable(bochs)] + [p for _o, p in random_programs("virt", 60, 3, bochs.calls)
                                                     if any(c.name == "vm_access" for c in p.calls)]
    runs = []
    for p in programs:
        r = bochs.run(p)
        if r.status is RunStatus.OK and judge_mod.judge(p, r, bochs.name, bochs_facts).failure is None:
            runs.append((p, r))
    return runs


@pytest.mark.parametrize("bug", ["ept-ignores-x", "skip-table-translation", "skip-final-translation",
                                 "untagged-cache"])
def test_seeded_broken_ept_models_fail_on_bochs_observations(bochs, bochs_facts, bochs_ept_runs, bug) -> None:
    """The virt issue's broken models (tests/virt/broken_virt.py) as the judge of Bochs' own runs:
    the same programs, the observations Bochs made; a broken model is caught when it rejects one."""
    assert len(bochs_ept_runs) >= 30
    orig = judge_mod.new_model
    judge_mod.new_model = lambda layer, f=None: broken_virt.broken_model(bug, f)
    try:
        caught = [f for p, r in bochs_ept_runs
                  if (f := judge_mod.judge(p, r, bochs.name, bochs_facts).failure) is not None]
    finally:
        judge_mod.new_model = orig
    # untagged-cache too: its foreign mapping is only an option, but it leaves the model's EPT A/D
    # expectations and its isolation invariants wrong where Bochs (which caches none) is right
    assert caught and all(f.verdict is Verdict.FAIL for f in caught), bug
    assert all(f.clause.startswith(("sdm.", "memspec.virt.")) for f in caught), {f.clause for f in caught}


def test_a_miscompiled_kernel_is_caught_on_the_ept_suite(bochs, bochs_facts) -> None:
    """-DMEMSPEC_BROKEN_EPT_QUAL swaps the read and write bits of every EPT violation's qualification."""
    from memspec.targets.bochs import BochsTarget
    from memspec.targets.qemu_system import build_kernel
    bad = BochsTarget(image=build_kernel(("-DMEMSPEC_BROKEN_EPT_QUAL",)))
    try:
        caught = []
        for origin, program in applicable(bochs):
            if run_and_judge(bochs, program, bochs_facts).failure is not None:
                continue
            f = run_and_judge(bad, program, bochs_facts).failure
            if f is not None:
                assert f.verdict is Verdict.FAIL, f
                caught.append((origin, f.clause))
    finally:
        bad.close()
    assert len(caught) >= 2 and all(c.startswith("sdm.ept.violation.") for _, c in caught), caught


# -- AMD models: the SVM path, and two implementations of nested paging ----------------------------

def test_amd_models_run_nested_paging(bochs_amd) -> None:
    from memspec.targets.testkernel_wire import VM_NPT
    f = bochs_amd.facts()
    assert f["vendor"] == "AuthenticAMD" and f["svm"] and f["npt"] and "vmx" not in f
    assert bochs_amd.vm_kinds == frozenset({VM_NPT}) and "set_epte" not in bochs_amd.calls
    assert any("Intel VMX with EPT" in u for u in bochs_amd.unsupported())
    progs = applicable(bochs_amd)
    npt_dir = os.path.join(HERE, "..", "qemu_system", "npt")
    progs += [(name, load(os.path.join(npt_dir, name))) for name in sorted(os.listdir(npt_dir))]
    assert len(progs) >= 6
    for origin, program in progs:
        j = run_and_judge(bochs_amd, program, f)
        assert j.failure is None, (origin, j.failure.clause, j.failure.observed)
    ept = parse(EPT + boot())
    assert bochs_amd.run(ept).status is RunStatus.REFUSED


def test_qemu_and_bochs_nested_paging_disagree_only_where_cited(bochs_amd) -> None:
    """Random NPT programs on both full-system peers: wherever their outcomes differ, the side the
    model rejects has a cited difference (QEMU 7.2's reserved-bit #PF without P)."""
    from memspec.targets.qemu_system import APT_HINT, QEMU, QemuSystemTarget
    if shutil.which(QEMU) is None:
        missing_peer("qemu-system", f"this comparison needs {QEMU}: {APT_HINT}")
    qemu = QemuSystemTarget(timeout=5.0)
    try:
        facts = {t.name: t.facts() for t in (qemu, bochs_amd)}
        differ = 0
        for _origin, p in random_programs("virt", 50, 0, bochs_amd.calls):
            runs = {t.name: t.run(p) for t in (qemu, bochs_amd)}
            if runs[qemu.name].outcomes == runs[bochs_amd.name].outcomes:
                continue
            differ += 1
            for name, r in runs.items():
                f = judge_mod.judge(p, r, name, facts[name]).failure
                assert f is None or explained(name, f.clause), (name, f.clause, f.observed)
            # Bochs' AMD nested paging has no cited difference: the model never rejects it
            assert judge_mod.judge(p, runs[bochs_amd.name], bochs_amd.name, facts[bochs_amd.name]).failure is None
        assert differ >= 1      # the two peers do disagree (on QEMU's cited reserved-bit error code)
    finally:
        qemu.close()


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_memspec_check_against_bochs_virt_passes(tmp_path) -> None:
    need_bochs()
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "check", "--target", "bochs", "--layer", "virt",
                        "--programs", "40", "--machine-examples", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = json.loads((out / "report.json").read_text())["targets"]
    assert t["name"] == "bochs" and t["layers"] == ["virt"] and t["programs"] >= 40
    assert all(f["expected_difference"] for f in t["failures"])
    # EPT clauses exercised: violations by access type, misconfigurations, A/D, large pages
    assert {"sdm.ept.violation.read", "sdm.ept.violation.write", "sdm.ept.violation.execute",
            "sdm.ept.misconfig.write-without-read", "sdm.ept.misconfig.memory-type", "sdm.ept.ad.readback",
            "sdm.ept.guest-ad", "sdm.ept.violation.pdpte-not-present", "sdm.eptp.invalid-fails-entry"} <= set(t["clauses"])
    assert t["facts"]["vmx"]["ept_1g"] and "5-level EPT walks (IA32_VMX_EPT_VPID_CAP[7])" in t["unsupported"]
