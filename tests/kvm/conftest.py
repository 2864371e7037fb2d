"""Shared fixtures for the kvm target's tests.

CI has /dev/kvm and requires it (MEMSPEC_REQUIRE_PEERS=1), so there a missing or unusable
/dev/kvm fails these tests with the reason; a local run skips them with the same reason.
"""

from __future__ import annotations

import pytest

from ..conftest import missing_peer

from memspec.specs.judge import judge


@pytest.fixture(scope="session")
def kvm_target():
    from memspec.targets.kvm import KvmTarget, kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", f"the kvm target needs a usable /dev/kvm: {why}")
    t = KvmTarget(timeout=2.0)
    yield t
    t.close()


@pytest.fixture(scope="session")
def kvm_facts(kvm_target):
    return kvm_target.facts()


def run_and_judge(target, program, facts):
    return judge(program, target.run(program), target.name, facts)
