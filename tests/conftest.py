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
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
