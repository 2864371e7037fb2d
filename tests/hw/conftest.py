"""Fixtures of the hw-layer tests: one calibrated qemu target per session (unicorn is required:
CI installs it, so a missing package fails these tests loudly instead of skipping them)."""

from __future__ import annotations

import pytest

from memspec.targets.qemu import QemuTarget


@pytest.fixture(scope="session")
def qemu() -> QemuTarget:
    return QemuTarget()


@pytest.fixture(scope="session")
def qemu_facts(qemu: QemuTarget) -> dict:
    return qemu.facts()
