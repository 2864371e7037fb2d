"""``memspec repro``: the C reproducer gives memspec's verdict without memspec.

Every os suite program and every saved os counterexample on ``linux``, and the malloc findings on
their libraries: built with ``cc -O2``, the C file exits 0 where memspec passes the program and 1
where it fails it (an os file also compares each process's memory map at memspec's checkpoint).  Preloaded shims that break one law show that the C checks catch a broken
implementation that the real one does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memspec.commands.repro import repro
from memspec.errors import UsageError
from memspec.fuzz.differential import execute
from memspec.program import load
from memspec.targets.libc import PRELOAD
from memspec.targets.registry import make_target

from ..conftest import missing_peer

ROOT = Path(__file__).resolve().parents[2]
OS_SUITE = sorted((ROOT / "specs" / "suite" / "os").glob("*.mst"))
BROKEN = sorted((ROOT / "tests" / "broken" / "repro").glob("*.mst"))
FINDINGS = sorted(p for p in (ROOT / "docs" / "findings" / "programs").glob("*.mst")
                  if (load(str(p)).meta("target") or "").startswith("malloc:"))
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")


def cc() -> str:
    c = shutil.which("cc") or shutil.which("gcc")
    if c is None:
        pytest.fail("the reproducers are built with cc: apt-get install gcc (tools/test.sh does)")
    return c


def build(folder: Path) -> Path:
    exe = folder / "repro"
    subprocess.run([cc(), "-O2", "-std=c99", "-o", str(exe), str(folder / "repro.c")], check=True,
                   capture_output=True, text=True)
    return exe


def run_c(exe: Path, preload: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env, cwd=exe.parent)


def memspec_verdict(path: Path, spec: str) -> str:
    """memspec's own verdict, as `memspec replay` reaches it: pass, fail or not applicable."""
    prog = load(str(path))
    t = make_target(spec)
    try:
        if t.calls is not None and {c.name for c in prog.calls} - set(t.calls):
            return "not applicable"
        j = execute(t, prog, t.facts(), observe="end")
    finally:
        t.close()
    f = j.failure
    if f is None:
        return "pass"
    return "not applicable" if f.verdict.value == "unsupported" else f.verdict.value


def agree(path: Path, spec: str, tmp_path: Path, preload: str | None = None) -> tuple[str, subprocess.CompletedProcess | None]:
    try:
        folder, r = repro(str(path), spec, str(tmp_path / "out"))
    except UsageError as e:
        assert "not applicable" in str(e), e
        assert memspec_verdict(path, spec) == "not applicable"
        return "not applicable", None
    proc = run_c(build(Path(folder)), preload)
    want = {"pass": 0, "fail": 1}[r.verdict]
    assert proc.returncode == want, (r.verdict, proc.stdout, proc.stderr)
    return r.verdict, proc


@pytest.mark.parametrize("path", OS_SUITE, ids=[p.stem for p in OS_SUITE])
def test_os_suite_program_gives_memspecs_verdict_on_linux(path, tmp_path):
    verdict, proc = agree(path, "linux", tmp_path)
    if proc is not None:
        assert ("CONFORMS" in proc.stdout) == (verdict == "pass"), proc.stdout


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_saved_os_counterexample_gives_memspecs_verdict_on_linux(path, tmp_path):
    agree(path, "linux", tmp_path)


@pytest.mark.parametrize("path", FINDINGS, ids=[p.stem for p in FINDINGS])
def test_malloc_finding_reproduces_without_memspec(path, tmp_path):
    spec = load(str(path)).meta("target")
    lib = LIBDIR / PRELOAD[spec.split(":", 1)[1]][0]
    if not lib.exists():
        missing_peer(spec, f"{lib} is not installed (Debian: libtcmalloc-minimal4, libjemalloc2, libmimalloc2.0)")
    verdict, proc = agree(path, spec, tmp_path, preload=str(lib))
    assert verdict == "fail"
    clause = load(str(path)).meta("clause")
    assert "DIVERGES at call" in proc.stdout and f"clause:   {clause}" in proc.stdout, proc.stdout
    readme = (tmp_path / "out" / "README.md").read_text()
    assert clause in readme and "LD_PRELOAD=" in readme and lib.name in readme


# --- QEMU linux-user: the same C file run under qemu-x86_64 -------------------------------------

QEMU_USER = sorted(p for p in (ROOT / "docs" / "findings" / "programs").glob("*.mst")
                   if load(str(p)).meta("target") == "qemu-user")
EXIT_OF = {"pass": 0, "fail": 1, "crash": 3, "hang": 4}


def build_static(folder: Path) -> Path:
    exe = folder / "repro"
    subprocess.run([cc(), "-O2", "-static", "-std=c99", "-o", str(exe), str(folder / "repro.c")], check=True,
                   capture_output=True, text=True)
    return exe


@pytest.mark.slow
@pytest.mark.parametrize("path", QEMU_USER, ids=[p.stem for p in QEMU_USER])
def test_qemu_user_finding_reproduces_under_qemu_and_conforms_natively(path, tmp_path):
    if shutil.which("qemu-x86_64") is None:
        missing_peer("qemu-user", "apt-get install -y qemu-user")
    folder, r = repro(str(path), "qemu-user", str(tmp_path / "out"))
    clause = load(str(path)).meta("clause")
    assert r.verdict != "pass" and r.failure.clause == clause, (r.verdict, r.failure)
    readme = (Path(folder) / "README.md").read_text()
    assert "cc -O2 -static -o repro repro.c" in readme and "qemu-x86_64 ./repro" in readme
    exe = build_static(Path(folder))
    out = subprocess.run(["qemu-x86_64", str(exe)], capture_output=True, text=True, timeout=120, cwd=folder)
    assert out.returncode == EXIT_OF[r.verdict], (r.verdict, out.stdout, out.stderr)
    assert f"clause:   {clause}" in out.stdout, out.stdout
    # the kernel itself gives every answer the model allows: the file is QEMU's reproducer, not the kernel's
    native = run_c(exe)
    assert native.returncode == 0 and "CONFORMS" in native.stdout, native.stdout + native.stderr


UML = sorted(p for p in (ROOT / "docs" / "findings" / "programs").glob("*.mst") if load(str(p)).meta("target") == "uml")


@pytest.mark.slow
@pytest.mark.parametrize("path", UML, ids=[p.stem for p in UML])
def test_uml_finding_reproduces_as_the_first_process_of_user_mode_linux(path, tmp_path):
    if shutil.which("linux.uml") is None:
        missing_peer("uml", "apt-get install -y user-mode-linux")
    folder, r = repro(str(path), "uml", str(tmp_path / "out"))
    clause = load(str(path)).meta("clause")
    assert r.verdict == "fail" and r.failure.clause == clause, (r.verdict, r.failure)
    readme = (Path(folder) / "README.md").read_text()
    block = readme.split("## Build and run", 1)[1].split("```")[1].strip().splitlines()
    assert block[0] == "cc -O2 -static -o repro repro.c" and block[1].startswith("linux.uml "), block
    build_static(Path(folder))
    out = subprocess.run(block[1], shell=True, capture_output=True, text=True, timeout=120, cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "DIVERGES at call" in out.stdout and f"clause:   {clause}" in out.stdout, out.stdout


def test_a_call_that_never_answers_is_a_hang_with_every_process_killed(tmp_path):
    # made where the kernel answers, run where the store never returns (a preloaded constructor
    # makes the worker's SIGSEGV handler spin): HANG at that call, exit 4, nothing left running
    prog = tmp_path / "hang.mst"
    prog.write_text("a = mmap(0x100000000000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                    "store(a, 1)\n")
    folder, r = repro(str(prog), "linux", str(tmp_path / "r"))
    assert r.verdict == "pass"
    src = (Path(folder) / "repro.c").read_text()
    (Path(folder) / "repro.c").write_text(src.replace("static unsigned call_limit = 60;", "static unsigned call_limit = 2;"))
    exe = build(Path(folder))
    assert run_c(exe).returncode == 0
    so = shim(tmp_path, "spin", SPIN_SHIM)
    out = run_c(exe, so)
    assert out.returncode == 4 and "HANG at call 2: no answer within 2 s" in out.stdout, out.stdout + out.stderr
    left = subprocess.run(["pgrep", "-f", str(exe)], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


# --- the C checks catch a broken implementation ------------------------------------------------

CALLOC_SHIM = r'''
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
extern void *__libc_calloc(size_t, size_t);
/* broken on purpose: an overflowing calloc returns NULL without ENOMEM */
void *calloc(size_t n, size_t s) { if (s && n > SIZE_MAX / s) { errno = 0; return 0; } return __libc_calloc(n, s); }
'''

SYSCALL_SHIM = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
/* broken on purpose: mmap with length 0 fails with ENOMEM instead of EINVAL */
long syscall(long nr, ...) {
  va_list ap; long a[6];
  va_start(ap, nr); for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long); va_end(ap);
  if (nr == SYS_mmap && a[1] == 0) { errno = ENOMEM; return -1; }
  long (*real)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
'''


SPIN_SHIM = r'''
#include <signal.h>
/* broken on purpose: once the program has installed its SIGSEGV handler, a fault spins forever */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old);
static void spin(int s) { (void)s; for (;;) {} }
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  extern int __sigaction(int, const struct sigaction *, struct sigaction *);
  if (sig == SIGSEGV && act) { struct sigaction a = *act; a.sa_flags = 0; a.sa_handler = spin; return __sigaction(sig, &a, old); }
  return __sigaction(sig, act, old);
}
'''


MPROTECT_SHIM = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/syscall.h>
/* broken on purpose: mprotect answers 0 and changes nothing */
long syscall(long nr, ...) {
  va_list ap; long a[6];
  va_start(ap, nr); for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long); va_end(ap);
  if (nr == SYS_mprotect) return 0;
  long (*real)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
'''


def shim(tmp_path: Path, name: str, source: str) -> str:
    c = tmp_path / f"{name}.c"
    c.write_text(source)
    so = tmp_path / f"{name}.so"
    subprocess.run([cc(), "-shared", "-fPIC", "-O2", "-o", str(so), str(c), "-ldl"], check=True)
    return str(so)


def test_c_file_catches_a_broken_calloc_that_glibc_does_not_break(tmp_path):
    prog = tmp_path / "calloc.mst"
    prog.write_text("big = calloc(0x100000000, 0x100000000)\n")
    so = shim(tmp_path, "calloc", CALLOC_SHIM)
    folder, r = repro(str(prog), f"malloc:{so}", str(tmp_path / "broken"))
    assert r.verdict == "fail"
    out = run_c(build(Path(folder)), so)
    assert out.returncode == 1 and "clause:   posix.calloc.enomem" in out.stdout
    assert "expected: NULL with errno ENOMEM" in out.stdout and "observed: 0" in out.stdout
    # the same file on glibc itself conforms
    assert run_c(Path(folder) / "repro").returncode == 0


def test_os_reproducer_catches_a_kernel_answer_the_model_refuses(tmp_path):
    # made where the kernel is right (linux passes), run where mmap(len=0) answers ENOMEM
    folder, r = repro(str(ROOT / "tests" / "broken" / "repro" / "len0-wrong-errno.mst"), "linux", str(tmp_path / "r"))
    assert r.verdict == "pass"
    exe = build(Path(folder))
    assert run_c(exe).returncode == 0
    out = run_c(exe, shim(tmp_path, "len0", SYSCALL_SHIM))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "DIVERGES at call 1" in out.stdout and "clause:   posix.mmap.einval-len0" in out.stdout
    assert "expected: -1 EINVAL" in out.stdout and "observed: -1 ENOMEM" in out.stdout
    assert "POSIX" in out.stdout        # the clause's citation


def test_os_reproducer_compares_the_memory_map_at_the_checkpoint(tmp_path):
    # every call's outcome is allowed (mprotect answers 0), but /proc/self/maps shows the old
    # protection: only the checkpoint comparison sees it, as memspec's judge does
    prog = tmp_path / "maps.mst"
    prog.write_text("a = mmap(0x100000040000, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                    "mprotect(a+0x1000, 0x1000, PROT_READ|PROT_WRITE)\n"
                    "b = mmap(0, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    folder, r = repro(str(prog), "linux", str(tmp_path / "r"))
    assert r.verdict == "pass" and [m.index for m in r.maps] == [2]
    src = (Path(folder) / "repro.c").read_text()
    assert "check_maps(3, 0, \"main\"" in src
    exe = build(Path(folder))
    native = run_c(exe)
    assert native.returncode == 0 and "the memory maps at 1 checkpoint are the model's" in native.stdout, native.stdout
    out = run_c(exe, shim(tmp_path, "mprotect", MPROTECT_SHIM))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "DIVERGES at the checkpoint after call 3: process main: memory map differs at 0x100000041000" in out.stdout
    assert "clause:   posix.mprotect.sets-prot" in out.stdout, out.stdout
    assert "compared: linux.proc-maps.matches" in out.stdout
    assert "expected: 0x100000040000-0x100000041000 r--p; 0x100000041000-0x100000042000 rw-p" in out.stdout
    assert "observed: 0x100000040000-0x100000042000 r--p" in out.stdout


def test_cli_writes_the_file_and_a_readme(tmp_path):
    prog = ROOT / "specs" / "suite" / "os" / "08-fork-cow.mst"
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "repro", str(prog), "--target", "linux",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "verdict on linux: pass" in r.stdout
    readme = (tmp_path / "README.md").read_text()
    assert "cc -O2 -o repro repro.c" in readme and "Seen on: target `linux`" in readme
    src = (tmp_path / "repro.c").read_text()
    assert "fork()" in src and "sigsetjmp" in src and "#include <Python.h>" not in src
    bad = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "repro", str(prog), "--target", "qemu"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "os layer on the linux target" in bad.stderr


# --- the /dev/kvm reproducer of the KVM finding (docs/findings/repro) ----------------------------

KVM_C = ROOT / "docs" / "findings" / "repro" / "kvm-mov-cr0-high-bits.c"


def test_kvm_c_reproducer_gives_memspecs_verdict(tmp_path):
    from memspec.targets.kvm.ioctl import kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", why)
    exe, ctl = tmp_path / "kvm-cr0", tmp_path / "kvm-ctl"
    subprocess.run([cc(), "-O2", "-std=c99", "-o", str(exe), str(KVM_C)], check=True)
    # control: NW without CD is refused by every KVM path, so the #GP detection itself is shown to work
    subprocess.run([cc(), "-O2", "-std=c99", "-DNEW_CR0=0xa0010011ULL", "-o", str(ctl), str(KVM_C)], check=True)
    c = run_c(ctl)
    assert c.returncode == 0 and "CONFORMS" in c.stdout, c.stdout + c.stderr
    verdict = memspec_verdict(ROOT / "docs" / "findings" / "programs" / "kvm-mov-cr0-high-bits.mst", "kvm")
    out = run_c(exe)
    assert out.returncode == {"pass": 0, "fail": 1}[verdict], (verdict, out.stdout, out.stderr)
    if verdict == "fail":
        assert "clause:   sdm.cr0.rsvd-gp" in out.stdout and "CR0 reads back 0x80010011" in out.stdout


# --- the /dev/kvm reproducers `memspec repro --target kvm` writes for the KVM findings -----------

KVM_FINDINGS = sorted(p for p in (ROOT / "docs" / "findings" / "programs").glob("kvm-*.mst"))


@pytest.mark.parametrize("path", KVM_FINDINGS, ids=[p.stem for p in KVM_FINDINGS])
def test_kvm_finding_reproducer_says_whether_it_reproduced_and_shows_the_effect(path, tmp_path):
    from memspec.targets.kvm.ioctl import kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", why)
    folder, r = repro(str(path), "kvm", str(tmp_path / "out"))
    assert not r.disagreements, r.disagreements
    out = run_c(build(Path(folder)))
    want = {"pass": 0, "fail": 1}[r.verdict]
    assert out.returncode == want, (r.verdict, out.stdout, out.stderr)
    finding = load(str(path)).meta("clause")
    last = out.stdout.splitlines()[-2]          # the line before the verdict
    if r.verdict == "pass":           # a KVM without the bug
        assert last == f"NOT REPRODUCED: {finding} (every call conforms)", out.stdout
        return
    first = next(c for c in r.checks if c.diverges)
    assert last == f"REPRODUCED: {finding}", out.stdout
    assert "effect (read after the guest code" in out.stdout and "CR0 = 0x" in out.stdout
    assert "kernel log: " in out.stdout
    if first.text.startswith("mov_cr0(0x180010001)"):
        # the finding itself: bit 32 of the value written is gone, the rest was loaded
        assert "CR0 reads back 0x80010001" in out.stdout and "(bits 0x100000000 differ)" in out.stdout
    if first.text.startswith("access("):
        assert "the walk of 0x" in out.stdout and "PML4E at 0x" in out.stdout
    if first.observed.signal == "KVM_EXIT_INTERNAL_ERROR" and os.geteuid() == 0:
        assert "INTERNAL_ERROR" in out.stdout.split("effect (", 1)[1], out.stdout


def test_kvm_reproducer_of_a_finding_says_not_reproduced_where_the_call_conforms(tmp_path):
    from memspec.targets.kvm.ioctl import kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", why)
    # a CR0 write every KVM path refuses (NW without CD): saved, falsely, as the finding
    prog = tmp_path / "control.mst"
    prog.write_text("# memspec-program: 1\n# target: kvm\n# layer: hw\n# clause: sdm.cr0.rsvd-gp\n"
                    "mov_cr0(0xa0010011)\n")
    folder, r = repro(str(prog), "kvm", str(tmp_path / "out"))
    assert r.verdict == "pass"
    out = run_c(build(Path(folder)))
    assert out.returncode == 0 and out.stdout.splitlines()[-2] == "NOT REPRODUCED: sdm.cr0.rsvd-gp (every call conforms)"
