"""Shared test helpers: run the installed ``memspec`` command line in a subprocess; and
``missing_peer``, the one rule for a peer (QEMU, Bochs, /dev/kvm, unicorn, a malloc library,
chromium, redis-server) that is not on this machine.

CI (``tools/test.sh`` sets ``MEMSPEC_REQUIRE_PEERS=1``) requires every peer: a missing one
fails its tests with the install command, so an untested target never passes as green.  A
local ``pytest`` without that variable skips them with the same reason instead, so a laptop
without Bochs is not always red.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_benchmark(script: str):
    """A script of benchmarks/ imported as a module (once per process; scripts are not a package)."""
    import importlib.util
    name = "memspec_bench_" + os.path.splitext(script)[0]
    if name in sys.modules:
        return sys.modules[name]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "benchmarks", script))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_test_module(path: str, name: str):
    """A helper file of tests/ (a broken implementation, a fake target) imported as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def report_failures(out: str) -> list[dict]:
    """Every failure of every target in the report.json a ``check`` wrote to the folder ``out``."""
    import json
    with open(os.path.join(out, "report.json")) as f:
        return [fail for t in json.load(f)["targets"] for fail in t["failures"]]


def run_memspec(*args: str, timeout: float = 600, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memspec.commands.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.fixture
def memspec_cli():
    return run_memspec


def peers_required() -> bool:
    return os.environ.get("MEMSPEC_REQUIRE_PEERS", "") not in ("", "0")


def missing_peer(peer: str, why: str) -> None:
    """``peer`` cannot be used here (``why`` says how to install it): fail under CI, skip locally."""
    msg = f"peer {peer} is missing: {why}"
    if peers_required():
        pytest.fail(msg + " (MEMSPEC_REQUIRE_PEERS=1: every peer is required)", pytrace=False)
    pytest.skip(msg + " (set MEMSPEC_REQUIRE_PEERS=1 to make this a failure, as CI does)")


# (binary, peer, how to install it): what ``need`` and ``target_fixture`` take
GCC = ("gcc", "gcc", "the native agent is built with gcc: apt-get install -y gcc libc6-dev")


def need(*binaries: tuple[str, str, str]) -> None:
    """Each ``(binary, peer, why)`` on the PATH, or ``missing_peer(peer, why)``."""
    for binary, peer, why in binaries:
        if shutil.which(binary) is None:
            missing_peer(peer, why)


def target_fixture(name: str, *binaries: tuple[str, str, str]):
    """A module-scoped fixture: the registry's target ``name`` once its ``binaries`` are here,
    closed after the module's tests."""
    @pytest.fixture(scope="module")
    def fixture():
        need(*binaries)
        from memspec.targets.registry import make_target
        t = make_target(name)
        yield t
        t.close()
    return fixture


# Tests that boot a whole emulated machine or kernel (full-system QEMU with the test kernel,
# Bochs, User-mode Linux, Linux under QEMU, qemu-user): each takes seconds to minutes, so they
# are slow as a whole: CI runs them (tools/test.sh selects "slow or not slow"), a plain local
# pytest leaves them out (pytest -m slow tests/qemu_system runs them).
EMULATOR_DIRS = ("qemu_system", "bochs", "uml", "qemu_user")


def os_program_failure(text: str, on: str = "model"):
    """The first failing check of an os program run on the reference model (``on="model"``) or on
    the running kernel through the ``linux`` target (``on="linux"``), judged by the model; None if
    it passes.  For tests that pin a kernel behaviour the model must agree with."""
    from memspec.fuzz.differential import execute
    from memspec.program import parse
    if on == "model":
        from memspec.targets.model import ModelTarget
        return execute(ModelTarget(), parse(text), {}).failure
    from memspec.targets.linux import LinuxTarget
    t = LinuxTarget()
    return execute(t, parse(text), t.facts()).failure


ON_LINUX = pytest.mark.skipif(os.uname().sysname != "Linux", reason="runs the program on the Linux kernel")
ON_LINUX_ROOT = pytest.mark.skipif(os.uname().sysname != "Linux" or os.geteuid() != 0,
                                   reason="pagemap frame numbers need root on Linux")


def pytest_collection_modifyitems(config, items) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        rel = os.path.relpath(str(item.path), here)
        if rel.split(os.sep, 1)[0] in EMULATOR_DIRS:
            item.add_marker(pytest.mark.slow)
