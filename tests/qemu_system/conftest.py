"""Fixtures for the qemu-system target's tests: one boot of the test kernel for the session.

CI installs qemu-system-x86 (and gcc, binutils) itself.  A missing QEMU fails these tests
under CI with the install command (MEMSPEC_REQUIRE_PEERS=1); a local run skips them with the reason.
"""

from __future__ import annotations

import shutil

import pytest

from ..conftest import missing_peer

from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge
from memspec.targets.qemu_system import APT_HINT, QEMU


def need_qemu() -> None:
    if shutil.which(QEMU) is None:
        missing_peer("qemu-system", f"the qemu-system target needs {QEMU}: {APT_HINT}")


@pytest.fixture(scope="session")
def qsys():
    need_qemu()
    from memspec.targets.qemu_system import QemuSystemTarget
    t = QemuSystemTarget(timeout=5.0)
    yield t
    t.close()


@pytest.fixture(scope="session")
def qsys_facts(qsys):
    return qsys.facts()


def run_and_judge(target, program, facts):
    return judge(program, target.run(program), target.name, facts)


def explained(target_name: str, clause: str) -> str:
    from memspec.specs.directed import explained as _explained, load_differences
    return _explained(load_differences(), target_name, clause)


def with_rsvd_p(run: RunResult) -> RunResult:
    """``run`` with P added to every reserved-bit #PF: what QEMU 7.2 would report without its
    RSVD-without-P bug (specs/differences.toml, Intel SDM Vol. 3A §4.7)."""
    outs = tuple(Outcome(o.value, o.errno, o.signal,
                         tuple((k, v | 1 if k == "errcode" and v & 8 else v) for k, v in o.detail))
                 if o.signal == "#PF" else o for o in run.outcomes)
    return RunResult(outs, run.observations, run.status, run.message)


# clauses under which the model may report QEMU 7.2's RSVD-without-P error code: accepted only
# when restoring P makes that call pass, never by the clause alone
RSVD_ONLY = ("sdm.tlb.invlpg", "sdm.tlb.stale-before-invalidation")


def _by_clause(target_name: str, clause: str) -> bool:
    return bool(explained(target_name, clause)) and not clause.startswith("sdm.walk.") and clause not in RSVD_ONLY


def unexplained_failure(target, program, facts, run=None):
    """The first failure of ``program`` on ``target`` that no cited qemu-system difference
    explains; None if there is none.  The RSVD-without-P bug is checked precisely: the run
    with P restored must get past the failing call."""
    run = target.run(program) if run is None else run
    f = judge(program, run, target.name, facts).failure
    if f is None or _by_clause(target.name, f.clause):
        return None
    f2 = judge(program, with_rsvd_p(run), target.name, facts).failure
    if f2 is None:
        return None
    if f2.index > f.index and _by_clause(target.name, f2.clause):
        return None
    return f2
