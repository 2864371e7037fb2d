"""The test kernel builds from the installed sources, boots, and reports its CPU's features."""

from __future__ import annotations

import os

import pytest

from memspec.errors import TargetError
from memspec.targets.qemu_system import QemuSystemTarget, build_kernel, encode, decode


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
