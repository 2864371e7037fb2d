"""Fixtures of the hw-layer tests: one calibrated qemu target per session (unicorn is a peer:
CI installs it and requires it; a local run without it skips these tests with the reason)."""

from __future__ import annotations

import pytest

from ..conftest import missing_peer

from memspec.errors import TargetError
from memspec.targets.qemu import QemuTarget


@pytest.fixture(scope="session")
def qemu() -> QemuTarget:
    try:
        return QemuTarget()
    except TargetError as e:       # unicorn missing or not the calibrated version
        missing_peer("qemu (unicorn)", str(e))


@pytest.fixture(scope="session")
def qemu_facts(qemu: QemuTarget) -> dict:
    return qemu.facts()
