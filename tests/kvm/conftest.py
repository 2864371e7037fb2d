"""Shared fixtures for the kvm target's tests.

CI has /dev/kvm, so a missing or unusable /dev/kvm fails these tests with the
reason (it never skips them): a skip would hide that the target went untested.
"""

from __future__ import annotations

import pytest

from memspec.specs.judge import judge


@pytest.fixture(scope="session")
def kvm_target():
    from memspec.targets.kvm import KvmTarget, kvm_status
    why = kvm_status()
    if why:
        pytest.fail(f"the kvm target needs a usable /dev/kvm: {why}", pytrace=False)
    t = KvmTarget(timeout=2.0)
    yield t
    t.close()


@pytest.fixture(scope="session")
def kvm_facts(kvm_target):
    return kvm_target.facts()


def run_and_judge(target, program, facts):
    return judge(program, target.run(program), target.name, facts)
