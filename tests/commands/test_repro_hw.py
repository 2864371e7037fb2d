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


# --- kvm: a /dev/kvm C file that replays the kvm target's guest code -----------------------------

KVM_CR0 = os.path.join(ROOT, "docs", "findings", "programs", "kvm-mov-cr0-high-bits.mst")
HW = os.path.join(ROOT, "specs", "suite", "hw")
KVM_PROGRAMS = [KVM_CR0] + [os.path.join(HW, n) for n in (
    "34-cet.mst",                   # 7 writes of CR0 and CR4
    "03-rsvd.mst",                  # page tables, CPL 3 reads, reserved-bit faults
    "07-smep-smap.mst",             # CPL 0 fetches and reads of user pages
    "11-tlb-pf-invalidates.mst",    # a stale translation: either outcome allowed
    "12-pkeys.mst",                 # WRPKRU: KVM's emulator gives up (KVM_EXIT_INTERNAL_ERROR)
    "29-self-reference.mst")]       # a table that maps itself


def _kvm_ready():
    from memspec.targets.kvm.ioctl import kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", why)
    return shutil.which("cc") or shutil.which("gcc")


def _build_and_run(cc, folder, src=None):
    exe = os.path.join(folder, "repro")
    c_file = os.path.join(folder, "repro.c")
    if src is not None:
        with open(c_file, "w") as fh:
            fh.write(src)
    subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Werror", "-o", exe, c_file], check=True)
    return subprocess.run([exe], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def kvm():
    _kvm_ready()
    from memspec.targets.registry import make_target
    t = make_target("kvm", timeout=10.0)
    yield t
    t.close()


@pytest.mark.parametrize("path", KVM_PROGRAMS, ids=lambda p: os.path.basename(p).removesuffix(".mst"))
def test_kvm_c_file_gives_memspecs_verdict(kvm, path, tmp_path):
    from memspec.commands.repro_kvm import EXIT_STATUS as KVM_EXIT, repro_kvm
    cc = _kvm_ready()
    folder, r = repro_kvm(path, str(tmp_path / "kvm"), target=kvm)
    assert not r.disagreements and any(c.patterns for c in r.checks)
    out = _build_and_run(cc, folder)
    assert out.returncode == {"pass": KVM_EXIT["CONFORMS"], "fail": KVM_EXIT["DIVERGES"]}[r.verdict], \
        (r.verdict, out.stdout, out.stderr)
    if r.verdict == "fail":
        first = next(c for c in r.checks if c.diverges)
        assert f"DIVERGES at call {first.index + 1}:" in out.stdout and f"clause:   {first.clause}" in out.stdout
        assert out.stdout.splitlines()[-1] == f"VERDICT: DIVERGES ({first.clause})"
    else:
        assert out.stdout.startswith("VERDICT: CONFORMS")


def test_kvm_c_file_catches_memory_that_reads_wrong(kvm, tmp_path):
    # the same reproducer with guest RAM holding another pattern: the first load reads a value the
    # model does not allow, and the C file says which call and clause
    from memspec.commands.repro_kvm import c_source, repro_kvm
    cc = _kvm_ready()
    folder, r = repro_kvm(os.path.join(HW, "01-walk-4k.mst"), str(tmp_path / "walk"), target=kvm)
    assert r.verdict == "pass"
    src = c_source(r)
    assert "(pa << 8) | 0xCC;" in src
    out = _build_and_run(cc, folder, src.replace("(pa << 8) | 0xCC;", "(pa << 8) | 0xCD;"))
    first_read = next(c for c in r.checks if c.observed.value is not None and c.patterns)
    assert out.returncode == 1 and f"DIVERGES at call {first_read.index + 1}:" in out.stdout, out.stdout
    assert f"VERDICT: DIVERGES ({first_read.clause})" in out.stdout


def test_kvm_slot_patterns_compare_what_the_target_decodes(kvm):
    # a CPL 3 read's #PF: vector, error code and CR2 compared, the faulting RIP and RAX not
    from memspec.commands.repro_kvm import _patterns
    from memspec.model.expect import Expect
    from memspec.targets.kvm.compile import _Compiled
    from memspec.targets.kvm.guest import ST_EXC, UCS
    cc = _Compiled(0, "access", addr=0x405000, op=0, cpl=3)
    want = Outcome(signal="#PF", detail=(("cr2", 0x405000), ("errcode", 0xD), ("path", "cpl3-shadow")))
    exp = Expect("sdm.walk.pte.rsvd-maxphy", want, "#PF", (want,))
    raw = (ST_EXC | 14 | UCS << 16, 0x1234, 0xD, 0x405000, 0x99)
    (p,) = _patterns(cc, kvm.machine.code, exp, raw)
    assert p.masks[1] == 0 and p.masks[4] == 0 and p.masks[2] == p.masks[3] == (1 << 64) - 1
    assert p.masks[0] & 0xFF == 0xFF


def test_kvm_refuses_programs_it_cannot_run(kvm, tmp_path):
    from memspec.commands.repro_kvm import repro_kvm
    from memspec.errors import UsageError
    with pytest.raises(UsageError, match="kvm does not implement seg_access"):
        repro_kvm(os.path.join(SEG, "17-long-noncanonical-ss.mst"), str(tmp_path / "x"), target=kvm)


# --- docs/findings/qemu.md, finding 5: the hand-written image of the null-SS CPL bug -----------

NULL_SS = os.path.join(ROOT, "docs", "findings", "repro", "qemu-null-ss-cpl.S")


def _null_ss_image(tmp_path, *defines: str) -> str:
    for tool in ("gcc", "ld", "objcopy"):
        if shutil.which(tool) is None:
            missing_peer("qemu-system", f"{tool} builds the image: apt-get install -y gcc binutils")
    obj, elf, image = (str(tmp_path / f"i.{x}") for x in ("o", "elf", "bin"))
    subprocess.run(["gcc", *defines, "-c", NULL_SS, "-o", obj], check=True)
    subprocess.run(["ld", "-m", "elf_x86_64", "-Ttext=0x100000", "-e", "start32", "--no-warn-rwx-segments",
                    "-o", elf, obj], check=True)
    subprocess.run(["objcopy", "-O", "binary", elf, image], check=True)
    return image


def _boot(image: str) -> tuple[str, int]:
    if shutil.which("qemu-system-x86_64") is None:
        missing_peer("qemu-system", "apt-get install -y --no-install-recommends qemu-system-x86")
    r = subprocess.run(["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "32", "-nodefaults",
                        "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", image],
                       capture_output=True, text=True, timeout=120)
    return r.stdout, r.returncode


def test_null_ss_at_cpl1_makes_qemus_cpl_0(tmp_path):
    out, rc = _boot(_null_ss_image(tmp_path))
    # the control first: MOV from CR0 at CPL 1 is #GP before the load
    assert "1. MOV from CR0 at CPL 1: #GP (the control)" in out, out
    # QEMU 7.2 (and upstream as read): the same instruction completes after MOV SS, 0x1
    assert out.splitlines()[-1].startswith("VERDICT: REPRODUCED") and rc == 3, (rc, out)


def test_null_ss_image_conforms_when_step_2_loads_a_dpl1_data_segment(tmp_path):
    out, rc = _boot(_null_ss_image(tmp_path, "-DSS_SELECTOR=0x21"))
    assert "3. MOV from CR0 at CPL 1: #GP: the CPL is still 1" in out and rc == 1, (rc, out)
