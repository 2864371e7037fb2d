"""The bochs target on the hw layer: the directed suite, its findings, a broken kernel, a dead guest."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from memspec.specs.directed import suite_programs
from memspec.errors import TargetError, UsageError
from memspec.program import parse
from memspec.records import Outcome, RunResult, RunStatus, Verdict

from .conftest import explained, need_bochs, run_and_judge

SETUP = """set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)
set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)
set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)
mov_cr3(0x200000)
"""


def test_the_floppy_image_carries_the_kernel_and_its_entry() -> None:
    from memspec.targets.bochs import FLOPPY_SIZE, floppy_image
    from memspec.targets.qemu_system import build_kernel
    kernel = build_kernel()
    img = open(floppy_image(kernel, 32), "rb").read()
    k = open(kernel, "rb").read()
    assert len(img) == FLOPPY_SIZE and img[510:512] == b"\x55\xaa"
    sectors, entry, mem_upper = struct.unpack_from("<H", img, 0x1F0)[0], *struct.unpack_from("<II", img, 0x1F4)
    assert sectors == -(-len(k) // 512) and img[512:512 + len(k)] == k
    at = k.find(struct.pack("<I", 0x1BADB002))
    assert entry == struct.unpack_from("<I", k, at + 28)[0] and mem_upper == 31 * 1024


def test_features_come_from_the_guests_cpuid(bochs, bochs_facts) -> None:
    f = bochs_facts
    assert f["vendor"] == "GenuineIntel" and f["bochs_cpu"] == "tigerlake"
    # Bochs' tigerlake model (peers FINDINGS): PKU, SMEP, SMAP, 1G pages, PCID; no LA57
    assert f["pku"] and f["smep"] and f["smap"] and f["page1g"] and f["pcid"] and not f["la57"]
    assert "5-level paging (CR4.LA57)" in bochs.unsupported()


def test_the_directed_suite_passes_apart_from_cited_differences(bochs, bochs_facts) -> None:
    failed, explained_ = [], []
    for origin, program in applicable(bochs):
        r = run_and_judge(bochs, program, bochs_facts)
        if r.failure is None:
            continue
        if explained(bochs.name, r.failure.clause):
            explained_.append(r.failure.clause)
        else:
            failed.append((origin, r.failure.clause, r.failure.observed))
    assert not failed, failed
    # the two Bochs protection-key bugs (docs/findings/bochs.md) are observed, not assumed
    assert set(explained_) == {"sdm.pkeys.access-disable", "sdm.pkeys.supervisor-page-unaffected"}, explained_


def test_bochs_pkru_findings_reproduce(bochs, bochs_facts) -> None:
    """Finding 1: PKRU.AD is ignored for supervisor reads of user pages.  Finding 2: PKRU.WD is
    applied to supervisor writes of supervisor pages.  Both faults/non-faults as observed."""
    base = ("boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE|CR4_PKE, EFER_LME|EFER_LMA|EFER_NXE)\n"
            "set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)\nset_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)\n"
            "set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)\n")
    one = parse(base + "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US|PTE_PK1)\nmov_cr3(0x200000)\n"
                "wrpkru(0x4)\naccess(0x405000, ACC_READ, 0)\naccess(0x405000, ACC_READ, 3)\n")
    r = bochs.run(one)
    assert r.outcomes[-2].value == (0x300000 << 8) | 0xCC      # CPL 0: allowed (the SDM says #PF)
    assert r.outcomes[-1].signal == "#PF" and dict(r.outcomes[-1].detail)["errcode"] == 0x25   # CPL 3: P|U|PK
    two = parse(base + "set_pte(0x203000, 7, 0x302000, PTE_P|PTE_RW|PTE_PK1)\nmov_cr3(0x200000)\n"
                "wrpkru(0x8)\naccess(0x407000, ACC_WRITE, 0)\n")
    r = bochs.run(two)
    assert r.outcomes[-1].signal == "#PF" and dict(r.outcomes[-1].detail)["errcode"] == 0x23   # P|W|PK
    j = run_and_judge(bochs, two, bochs_facts)
    assert j.failure.clause == "sdm.pkeys.supervisor-page-unaffected" and j.failure.verdict is Verdict.FAIL


def test_bochs_keeps_the_data_translation_after_a_fetch_fault(bochs, bochs_facts) -> None:
    """Finding 5: a #PF on a fetch does not remove the data translation of the same page
    (SDM §4.10.4.1 says it must); the cited difference explains it, by clause and outcome."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "findings", "programs",
                        "bochs-pf-keeps-data-tlb.mst")
    with open(path) as f:
        program = parse(f.read())
    r = bochs.run(program)
    assert r.outcomes[-2].signal == "#PF" and dict(r.outcomes[-2].detail)["errcode"] == 0x15
    assert r.outcomes[-1].value == (0x300010 << 8) | 0xCC        # the old frame: the SDM says 0x301010
    j = run_and_judge(bochs, program, bochs_facts)
    assert j.failure.clause == "sdm.tlb.pf-invalidates" and j.failure.verdict is Verdict.FAIL
    from memspec.specs.directed import excused_by, load_differences
    d = excused_by(load_differences(), "bochs", j.failure.clause, j.failure.observed, bochs_facts)
    assert d is not None and d.id == "bochs-pf-keeps-data-tlb"


def applicable(target):
    """The hw suite's programs whose every call ``target`` implements (the rest are not applicable)."""
    return [(o, p) for o, p in suite_programs("hw") if all(c.name in target.calls for c in p.calls)]


class FlipWrite:
    """The bochs target with the W/R bit of every #PF error code inverted."""

    name = "bochs-broken"

    def __init__(self, inner):
        self.inner = inner

    def run(self, program, observe="end"):
        r = self.inner.run(program, observe)
        outs = tuple(Outcome(o.value, o.errno, o.signal,
                             tuple((k, v ^ 2 if k == "errcode" else v) for k, v in o.detail))
                     if o.signal == "#PF" else o for o in r.outcomes)
        return RunResult(outs, r.observations, r.status, r.message)


def _caught(good, bad, facts):
    caught = []
    for origin, program in applicable(good):
        if not any(c.name == "access" for c in program.calls):
            continue
        if run_and_judge(good, program, facts).failure is not None:
            continue
        f = run_and_judge(bad, program, facts).failure
        if f is not None:
            assert f.verdict is Verdict.FAIL and f.clause.startswith("sdm."), f
            caught.append((origin, f.clause))
    return caught


def test_a_corrupted_error_code_is_caught(bochs, bochs_facts) -> None:
    assert len(_caught(bochs, FlipWrite(bochs), bochs_facts)) >= 5


def test_a_miscompiled_kernel_is_caught_under_bochs(bochs, bochs_facts) -> None:
    from memspec.targets.bochs import BochsTarget
    from memspec.targets.qemu_system import build_kernel
    bad = BochsTarget(image=build_kernel(("-DMEMSPEC_BROKEN_RING3",)))
    try:
        caught = _caught(bochs, bad, bochs_facts)
    finally:
        bad.close()
    assert caught and all(c.startswith("sdm.access.user-") or c.startswith("sdm.") for _, c in caught), caught
    assert any(c.startswith("sdm.access.user-") for _, c in caught), caught


def test_a_killed_guest_is_a_crash_and_the_target_recovers(bochs) -> None:
    assert bochs.run(parse(SETUP)).status is RunStatus.OK
    boots = bochs.boots
    bochs.guest.proc.kill()          # Bochs dies under the program
    bochs.guest.proc.wait()
    r = bochs.run(parse(SETUP + "v = access(0x405008, ACC_READ, 3)\n"))
    # a guest found dead before the program is restarted: the program still runs
    assert r.status is RunStatus.OK and r.outcomes[-1].value == (0x300008 << 8) | 0xCC
    assert bochs.boots == boots + 1


def test_the_session_and_the_batch_agree(bochs) -> None:
    program = parse(SETUP + "v = access(0x405008, ACC_READ, 3)\naccess(0x405000, ACC_WRITE, 3)\n"
                    "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_US)\ninvlpg(0x405000)\n"
                    "access(0x405000, ACC_WRITE, 3)\ne = read_pte(0x203000, 5)\n")
    batch = bochs.run(program).outcomes
    from memspec.targets.base import Target
    assert batch == Target.run(bochs, program).outcomes
    assert batch[-2].signal == "#PF" and dict(batch[-2].detail) == {"cr2": 0x405000, "errcode": 7}


def test_unknown_model_and_missing_bochs_are_clear_errors(monkeypatch) -> None:
    from memspec.targets.registry import make_target
    with pytest.raises(UsageError, match="unknown Bochs CPU model 'pentium'.*tigerlake"):
        make_target("bochs:pentium")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TargetError, match="apt-get install .*bochs"):
        make_target("bochs")


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_memspec_check_against_bochs_passes(tmp_path) -> None:
    need_bochs()
    from memspec.targets.bochs import BochsTarget
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "check", "--target", "bochs", "--layer", "hw",
                        "--programs", "20", "--machine-examples", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    (t,) = rep["targets"]
    assert t["name"] == "bochs" and t["programs"] >= 20 + len(applicable(BochsTarget))
    assert {f["clause"] for f in t["failures"]} <= {"sdm.pkeys.access-disable", "sdm.pkeys.supervisor-page-unaffected"}
    assert all(f["expected_difference"] for f in t["failures"])
    assert "EXPECTED DIFFERENCE sdm.pkeys" in r.stdout
    assert os.path.exists(out / "report.html")
