"""``memspec repro`` for hw and virt programs: the test kernel with the program built in gives
memspec's verdict (the same clause at a divergence) when booted as its README says."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ..conftest import missing_peer

from memspec.commands.repro_hw import _pattern, repro_hw
from memspec.records import Outcome
from memspec.targets.testkernel_repro import EXIT_STATUS, BOCHS_COMMAND, BuiltinCall, Pattern, header, matches, qemu_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RSVD = os.path.join(ROOT, "specs", "suite", "hw", "03-rsvd.mst")            # docs/findings/qemu.md, finding 1
WALK = os.path.join(ROOT, "specs", "suite", "hw", "01-walk-4k.mst")         # conforms on qemu-system
NPF = os.path.join(ROOT, "docs", "findings", "programs", "qemu-npf-rsvd-without-p.mst")   # the same, nested
BOCHS_BIT12 = os.path.join(ROOT, "docs", "findings", "programs", "bochs-ept-large-page-bit12.mst")


def test_patterns_compare_what_decode_reads():
    # a page fault: vector, error code and CR2 compared, the RIP not
    p = _pattern("access", (0x405000, 0, 3, 0), "x e d 405000 ffffffffc0017000",
                 lambda o: o == Outcome(signal="#PF", detail=(("cr2", 0x405000), ("errcode", 0xD))))
    assert p is not None and p.masks[3] == 0 and all(m == (1 << 64) - 1 for m in p.masks[:3])
    assert matches("x e d 405000 1234", p) and not matches("x e c 405000 1234", p)
    assert matches("e refused", Pattern("e")) and not matches("k", Pattern("e"))
    h = header("t", [BuiltinCall("A 0 0 0 0", "call 1: access(0)", "c", "SDM", "ok", [p]),
                     BuiltinCall("P", "call 2: \"x\"", "c", "SDM", "ok", None)])
    assert "bi_pats_0" in h and ", -1, 0}" in h and '\\042x\\042' in h


@pytest.fixture(scope="module")
def qsys():
    if shutil.which("qemu-system-x86_64") is None:
        missing_peer("qemu-system", "apt-get install -y --no-install-recommends qemu-system-x86")
    from memspec.targets.qemu_system import QemuSystemTarget
    t = QemuSystemTarget(timeout=10.0)
    yield t
    t.close()


def _qemu(folder: str) -> tuple[str, int]:
    r = subprocess.run(qemu_command(), cwd=folder, capture_output=True, text=True, timeout=120)
    return r.stdout, r.returncode


@pytest.mark.parametrize("path,clause", [(RSVD, "sdm.walk.pte.rsvd-maxphy"), (NPF, "apm.npt.npf-final")],
                         ids=["rsvd", "npf"])
def test_qemu_finding_diverges_with_memspecs_clause(qsys, tmp_path, path, clause):
    folder, r = repro_hw(path, "qemu-system", str(tmp_path / "finding"), target=qsys)
    assert r.verdict == "fail" and not r.disagreements
    first = next(c for c in r.checks if c.diverges)
    assert first.clause == r.failure.clause == clause
    out, rc = _qemu(folder)
    assert f"DIVERGES at call {first.index + 1}:" in out, out
    assert out.splitlines()[-1] == f"VERDICT: DIVERGES ({first.clause})" and rc == EXIT_STATUS["DIVERGES"]
    readme = open(os.path.join(folder, "README.md")).read()
    assert "isa-debug-exit" in readme and "bochs -q -f bochsrc" in readme and first.citation in readme
    assert os.path.exists(os.path.join(folder, "floppy.img")) and os.path.exists(os.path.join(folder, "bochsrc"))


def test_qemu_conforming_program_conforms(qsys, tmp_path):
    folder, r = repro_hw(WALK, "qemu-system", str(tmp_path / "walk"), target=qsys)
    assert r.verdict == "pass" and not r.disagreements
    out, rc = _qemu(folder)
    assert out.splitlines()[-1].startswith("VERDICT: CONFORMS") and rc == EXIT_STATUS["CONFORMS"], out


SEG = os.path.join(ROOT, "specs", "suite", "hw", "segmentation")
# docs/findings/qemu.md, findings 2-4: the test kernel's segmentation unit, 64-bit mode
SEG_FINDINGS = [("17-long-noncanonical-ss.mst", "sdm.seg.long.noncanonical-ss"),
                ("18-wrmsr-noncanonical.mst", "sdm.seg.wrmsr-base-noncanonical-gp"),
                ("21-long-null-ss-rpl.mst", "sdm.seg.load.null-ss-64-rpl-gp")]


@pytest.mark.parametrize("name,clause", SEG_FINDINGS, ids=["ss-noncanonical", "wrmsr-fs-base", "null-ss-rpl"])
def test_qemu_segmentation_finding_image_gives_memspecs_verdict(qsys, tmp_path, name, clause):
    folder, r = repro_hw(os.path.join(SEG, name), "qemu-system", str(tmp_path / "seg"), target=qsys)
    assert r.verdict == "fail" and r.failure.clause == clause and not r.disagreements
    first = next(c for c in r.checks if c.diverges)
    assert first.clause == clause and first.index == len(r.checks) - 1
    out, rc = _qemu(folder)
    assert f"DIVERGES at call {first.index + 1}:" in out, out
    assert out.splitlines()[-1] == f"VERDICT: DIVERGES ({clause})" and rc == EXIT_STATUS["DIVERGES"], out


def test_qemu_segmentation_conforming_image_conforms(qsys, tmp_path):
    # FS's base from WRMSR, then a null FS (base kept or cleared: both allowed)
    folder, r = repro_hw(os.path.join(SEG, "20-long-null-fs.mst"), "qemu-system", str(tmp_path / "fs"), target=qsys)
    assert r.verdict == "pass" and not r.disagreements
    out, rc = _qemu(folder)
    assert out.splitlines()[-1].startswith("VERDICT: CONFORMS") and rc == EXIT_STATUS["CONFORMS"], out


def test_bochs_runs_the_segmentation_finding_image_and_conforms(qsys, tmp_path):
    # the image made on qemu-system, booted under Bochs, whose CPU raises the #SS(0) the SDM asks for
    if shutil.which("bochs") is None:
        missing_peer("bochs", "apt-get install -y --no-install-recommends bochs bochsbios vgabios bochs-term")
    folder, r = repro_hw(os.path.join(SEG, SEG_FINDINGS[0][0]), "qemu-system", str(tmp_path / "ss"), target=qsys)
    out = subprocess.run(["bash", "-c", BOCHS_COMMAND], cwd=folder, capture_output=True, text=True,
                         timeout=300).stdout
    assert out.splitlines()[-1].startswith("VERDICT: CONFORMS"), out


def test_bochs_finding_diverges_with_memspecs_clause(tmp_path):
    if shutil.which("bochs") is None:
        missing_peer("bochs", "apt-get install -y --no-install-recommends bochs bochsbios vgabios bochs-term")
    folder, r = repro_hw(BOCHS_BIT12, "bochs", str(tmp_path / "bit12"))
    first = next(c for c in r.checks if c.diverges)
    assert first.clause == r.failure.clause == "sdm.ept.misconfig.rsvd-large-low" and not r.disagreements
    out = subprocess.run(["bash", "-c", BOCHS_COMMAND], cwd=folder, capture_output=True, text=True,
                         timeout=300).stdout
    assert f"DIVERGES at call {first.index + 1}:" in out, out
    assert out.splitlines()[-1] == f"VERDICT: DIVERGES ({first.clause})"


# --- kvm: a /dev/kvm C file for hw programs of control-register writes --------------------------

KVM_CR0 = os.path.join(ROOT, "docs", "findings", "programs", "kvm-mov-cr0-high-bits.mst")
CET = os.path.join(ROOT, "specs", "suite", "hw", "34-cet.mst")      # 7 writes of CR0 and CR4


@pytest.mark.parametrize("path", [KVM_CR0, CET], ids=["finding", "conforming"])
def test_kvm_c_file_gives_memspecs_verdict(path, tmp_path):
    from memspec.commands.repro_kvm import repro_kvm
    from memspec.targets.kvm.ioctl import kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", why)
    cc = shutil.which("cc") or shutil.which("gcc")
    folder, r = repro_kvm(path, str(tmp_path / "kvm"))
    exe = os.path.join(folder, "repro")
    subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Werror", "-o", exe, os.path.join(folder, "repro.c")], check=True)
    out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert out.returncode == {"pass": 0, "fail": 1}[r.verdict], (r.verdict, out.stdout, out.stderr)
    if r.verdict == "fail":
        first = next(c for c in r.checks if c.diverges)
        assert f"DIVERGES at call {first.index + 1}:" in out.stdout and f"clause:   {first.clause}" in out.stdout
    else:
        assert out.stdout.startswith("CONFORMS")


def test_kvm_refuses_calls_without_a_c_form(tmp_path):
    from memspec.commands.repro_kvm import repro_kvm
    from memspec.errors import UsageError
    with pytest.raises(UsageError, match="no /dev/kvm C form for"):
        repro_kvm(RSVD, str(tmp_path / "x"))
