"""The ``linux-guest`` target: Debian's Linux 6.1 under qemu-system-x86_64 with memspec's own
initramfs.  The initramfs is a valid newc archive holding the init, the agent and the modules
in dependency order; the guest boots once (slow: TCG where there is no hardware
virtualization), answers the hello with its own facts and runs programs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from memspec.errors import TargetError
from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets.linux_guest import APT_HINT, QEMU_SYSTEM, build_initramfs, find_kernel, module_files

from ..conftest import missing_peer

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="the guest kernel is Linux's")


def test_a_missing_kernel_names_the_install_command(tmp_path):
    with pytest.raises(TargetError, match="apt-get install -y qemu-system-x86 linux-image-amd64"):
        find_kernel(str(tmp_path / "vmlinuz-*"))


def test_modules_come_after_what_they_need(tmp_path):
    base = tmp_path / "6.1.0-1-amd64"
    base.mkdir()
    (base / "modules.dep").write_text("kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko\n"
                                      "kernel/lib/crc16.ko:\nkernel/fs/jbd2/jbd2.ko:\nkernel/other.ko:\n")
    got = [os.path.relpath(p, base) for p in module_files("6.1.0-1-amd64", ("ext4",), str(tmp_path))]
    assert got == ["kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"]


def test_the_initramfs_is_a_newc_archive(tmp_path):
    if shutil.which("cpio") is None:
        missing_peer("cpio", "cpio(1) reads the archive back: apt-get install -y cpio (tools/test.sh installs it)")
    files = []
    for name, text in (("init", b"#!init"), ("agent", b"agent!"), ("a.ko", b"mod")):
        (tmp_path / name).write_bytes(text)
        files.append(str(tmp_path / name))
    out = tmp_path / "i.cpio"
    assert build_initramfs(str(out), files[0], files[1], [files[2]]) == ["/m/0.ko"]
    listing = subprocess.run(["cpio", "-itv"], stdin=open(out, "rb"), capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    names = [ln.split()[-1] for ln in listing.stdout.splitlines()]
    assert names == ["dev", "dev/console", "m", "init", "agent", "m/0.ko"]
    assert listing.stdout.splitlines()[1].startswith("crw")


@pytest.mark.slow
def test_the_guest_boots_and_runs_programs():
    if shutil.which(QEMU_SYSTEM) is None:
        missing_peer("qemu-system-x86", f"the linux-guest target needs {QEMU_SYSTEM}: {APT_HINT}")
    try:
        find_kernel()
    except TargetError as e:
        missing_peer("linux-image-amd64", str(e))
    from memspec.targets.registry import make_target
    t = make_target("linux-guest", timeout=30.0)
    try:
        f = t.facts()
        assert f["kernel"].startswith("6.1.") and f["impl_version"] == f["kernel"]
        assert f["tmp_fs"] == "ext4" and f["accel"] in ("kvm", "tcg")
        assert 0 < f["ram_pages"] < (600 << 20) // 4096          # -m 512, not the host's RAM
        assert 102 not in f["madv_known"]                          # MADV_GUARD_INSTALL: 6.13
        p = parse("a = mmap(0x100000000000, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                  "store(a, 5)\nfetch(a)\np2 = fork()\np2: x = load(a)\nfd = open_file(0x1000, O_RDWR)\n"
                  "e = mseal(a, 0x1000, 0)\n")
        run = t.run(p)
        assert run.status is RunStatus.OK, run.message
        o = run.outcomes
        assert o[0].value == 0x100000000000 and o[2].signal == "SIGSEGV" and o[4].value == 5
        assert o[6].errno == "ENOSYS"                               # mseal: 6.10
    finally:
        t.close()
