"""The test kernel builds from the installed sources, boots, and reports its CPU's features."""

from __future__ import annotations

import os

import pytest

from memspec.errors import TargetError
from memspec.targets.qemu_system import QemuSystemTarget, build_kernel
from memspec.targets.testkernel_wire import decode, encode


def test_the_kernel_build_is_cached_by_source_hash(qsys) -> None:
    a = build_kernel()
    assert a == qsys.image and os.path.getsize(a) > 4096
    assert build_kernel() == a
    b = build_kernel(("-DMEMSPEC_BROKEN_ERRCODE",))
    assert b != a, "a different build must not share the cache entry"


def test_feature_probe_reports_the_paging_features(qsys_facts) -> None:
    f = qsys_facts
    for key in ("la57", "page1g", "pcid", "invpcid", "smep", "smap", "pku", "nx", "svm", "npt", "maxphyaddr"):
        assert key in f, key
    assert f["ram"] >= 16 << 20
    # -cpu max under TCG: 5-level paging, 1 GiB pages, SMEP/SMAP/PKU (QEMU 7.2 has no TCG PCID)
    assert f["la57"] and f["page1g"] and f["smep"] and f["smap"] and f["nx"]


def test_a_missing_qemu_binary_says_how_to_install_it() -> None:
    with pytest.raises(TargetError, match="apt-get install"):
        QemuSystemTarget(binary="qemu-system-x86_64-not-installed")


def test_call_encoding_round_trip() -> None:
    assert encode("set_pte", (0x200000, 1, 0x201000, 3)) == "W 200008 201003"
    assert encode("access", (0x405004, 0, 3, 0)).errno == "EINVAL"       # unaligned: the harness's rule
    pf = decode("access", (0x1000, 1, 3, 0), "x e 6 1000 ffffffffc0013005")
    assert pf.signal == "#PF" and dict(pf.detail) == {"cr2": 0x1000, "errcode": 6}
    assert decode("access", (0x1000, 0, 3, 0), "v 1000cc").value == 0x1000CC
    assert decode("access", (0x1000, 2, 0, 0), "k").ok
    assert decode("mov_cr4", (0,), "x d 0 0 ffffffffc0012000").signal == "#GP"


def test_the_serial_line_alone_carries_batches(qsys) -> None:
    from memspec.targets.qemu_system import Guest
    g = Guest(qsys.image, shared_memory=False)
    try:
        out = g.exchange(["R 80010001 20 d00 100000", "W 100000 101003", "W 101000 102003", "W 102000 103003",
                          "W 103000 300003", "3 100000", "A 8 0 0 0", "A 1000 1 3 0"], 10)
    finally:
        g.close()
    assert out[-2:] == ["v 300008cc", out[-1]] and out[-1].startswith("x e 6 1000 ")


def test_batch_module_and_port_e9_console(qsys, tmp_path) -> None:
    """The Bochs path: commands from a multiboot module, answers on port 0xE9 (here QEMU's
    isa-debugcon and -initrd stand in for Bochs' port_e9_hack and GRUB's module line)."""
    import subprocess
    import time
    from memspec.targets.qemu_system import find_qemu
    probes = tmp_path / "probes.txt"
    probes.write_text("R 80010001 20 d00 100000\nW 100000 101003\nW 101000 102003\nW 102000 103003\n"
                      "W 103000 300003\n3 100000\nA 8 0 0 0\n")
    out = tmp_path / "e9.out"
    p = subprocess.Popen([find_qemu(), "-accel", "tcg", "-cpu", "max", "-m", "32", "-nodefaults", "-display", "none",
                          "-no-reboot", "-kernel", qsys.image, "-initrd", str(probes), "-append", "console=e9",
                          "-chardev", f"file,id=e9,path={out}", "-device", "isa-debugcon,iobase=0xe9,chardev=e9",
                          "-serial", "none"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (out.exists() and "bye" in out.read_text()):
            time.sleep(0.1)
    finally:
        p.kill()
        p.wait()
    lines = out.read_text().splitlines()
    assert lines[0] == "memspec-testkernel 1 ready" and lines[-2] == "v 300008cc" and lines[-1] == "bye", lines
