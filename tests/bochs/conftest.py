"""Fixtures for the bochs target's tests: one Bochs boot of the test kernel per session.

CI installs Bochs (bochs, bochsbios, vgabios, bochs-term) itself.  A missing Bochs fails
these tests under CI (MEMSPEC_REQUIRE_PEERS=1) with the install command; a local run skips
them with the reason.
"""

from __future__ import annotations

import shutil

import pytest

from ..conftest import missing_peer

from memspec.specs.judge import judge
from memspec.targets.bochs import APT_HINT, BOCHS


def need_bochs() -> None:
    if shutil.which(BOCHS) is None:
        missing_peer("bochs", f"the bochs target needs Bochs: {APT_HINT}")


@pytest.fixture(scope="session")
def bochs():
    need_bochs()
    from memspec.targets.bochs import BochsTarget
    t = BochsTarget()
    yield t
    t.close()


@pytest.fixture(scope="session")
def bochs_facts(bochs):
    return bochs.facts()


def run_and_judge(target, program, facts):
    return judge(program, target.run(program), target.name, facts)


def explained(target_name: str, clause: str) -> str:
    from memspec.specs.directed import explained as _explained, load_differences
    return _explained(load_differences(), target_name, clause)
