"""The ``qemu-user`` target: the native agent under qemu-x86_64.  Its facts are probed inside the
emulator, a missing system call is not applicable (never failed), every disagreement with the
model on the os suite and on seeded random programs is a cited difference of
specs/differences-qemu-user.toml, and a missing qemu-x86_64 names its install command."""

from __future__ import annotations

import os

import pytest

from memspec.errors import TargetError
from memspec.fuzz.differential import execute
from memspec.fuzz.layers import random_programs
from memspec.program import parse
from memspec.records import RunStatus, Verdict
from memspec.specs.directed import excused_by, load_differences, suite_programs
from memspec.targets.qemu_user import APT_HINT, QEMU_USER, find_qemu_user

from ..conftest import GCC, need, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="qemu-x86_64 runs Linux programs")


QEMU = (QEMU_USER, "qemu-user", f"the qemu-user target needs {QEMU_USER}: {APT_HINT}")
qu = target_fixture("qemu-user", QEMU, GCC)


def test_a_missing_qemu_names_the_install_command():
    with pytest.raises(TargetError, match="apt-get install -y qemu-user"):
        find_qemu_user("qemu-x86_64-not-installed-here")


def test_facts_are_probed_inside_the_emulator(qu):
    f = qu.facts()
    assert f["page_size"] == 4096
    assert f["task_size"] in ((1 << 47) - 4096, (1 << 56) - 4096)
    assert f["exec_only"] is False          # QEMU maps guest PROT_EXEC pages host-readable
    assert f["impl_version"].split(".")[0].isdigit()
    assert 0 < f["base_maps"] < 64


def test_a_call_qemu_lacks_is_not_applicable(qu):
    # QEMU 7.2 answers mlock2 with ENOSYS: the agent leaves it out of its calls
    missing = [u.split(":")[0] for u in qu.unsupported() if u.endswith("ENOSYS")]
    assert "mlock2" in missing and "mlock2" not in qu.calls
    for name in missing:
        assert name not in qu.calls
    assert {"mmap", "munmap", "mprotect", "load", "store", "fetch", "fork"} <= qu.calls


def test_accesses_and_processes_under_qemu(qu):
    p = parse("a = mmap(0x100000000000, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              "store(a, 5)\nmprotect(a+0x1000, 0x1000, PROT_READ)\nstore(a+0x1000, 1)\nfetch(a)\n"
              "p2 = fork()\np2: store(a, 6)\nx = load(a)\np2: y = load(a)\n")
    run = qu.run(p)
    assert run.status is RunStatus.OK, run.message
    o = run.outcomes
    assert o[3].signal == "SIGSEGV" and o[4].signal == "SIGSEGV"    # read-only store; fetch without PROT_EXEC
    assert (o[7].value, o[8].value) == (5, 6)                       # copy-on-write after fork
    assert {p for p, _ in run.observations[-1][1].maps} == {"main", "p2"}


def _unexplained(qu, programs):
    diffs = load_differences()
    facts = qu.facts()
    judged, excused, bad = 0, 0, []
    for name, p in programs:
        if any(c.name not in qu.calls for c in p.calls):
            continue
        j = execute(qu, p, facts)
        judged += 1
        f = j.failure
        if f is None:
            continue
        if excused_by(diffs, qu.name, f.clause, f.observed, facts):
            excused += 1
            continue
        if j.status is RunStatus.REFUSED:
            continue
        bad.append((name, f.clause, f.verdict.name, f.observed, j.message))
    return judged, excused, bad


def test_every_disagreement_on_the_suite_is_explained(qu):
    judged, excused, bad = _unexplained(qu, suite_programs("os"))
    assert not bad, bad
    assert judged >= 30 and excused >= 3      # MAP_FIXED_NOREPLACE, madvise, mprotect len 0 at least


@pytest.mark.slow
def test_every_disagreement_on_random_programs_is_explained(qu):
    judged, excused, bad = _unexplained(qu, random_programs("os", 150, 0, qu.calls, qu.facts()))
    assert not bad, bad
    assert judged >= 100 and excused >= 10


def test_the_differences_catch_the_known_ones_and_only_them(qu):
    diffs = load_differences()
    facts = qu.facts()
    noreplace = parse("a = mmap(0x100000000000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                      "b = mmap(0x100000000000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n")
    advice = parse("a = mmap(0x100000000000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                   "madvise(a, 0x1000, 32)\n")
    # the three: MAP_FIXED_NOREPLACE over a mapping returns a new address, an invalid
    # advice returns 0, mlock2 is ENOSYS (not applicable: test_a_call_qemu_lacks_is_not_applicable)
    j = execute(qu, noreplace, facts)
    assert j.failure is not None and j.failure.clause == "linux.mmap.fixed-noreplace-eexist"
    assert j.failure.observed.startswith("0x")
    assert excused_by(diffs, qu.name, j.failure.clause, j.failure.observed, facts).id == "qemu-user-map-fixed-noreplace-as-hint"
    j = execute(qu, advice, facts)
    assert j.failure is not None and j.failure.clause == "posix.madvise.einval-advice" and j.failure.observed == "0"
    assert excused_by(diffs, qu.name, j.failure.clause, j.failure.observed, facts) is not None
    # not another wrong outcome, not another implementation, not a release the entries do not name
    assert excused_by(diffs, qu.name, j.failure.clause, "-1 ENOMEM", facts) is None
    assert excused_by(diffs, "linux-agent", j.failure.clause, j.failure.observed, facts) is None
    assert excused_by(diffs, qu.name, j.failure.clause, j.failure.observed, {"impl_version": "7.1.0"}) is None


@pytest.mark.slow
def test_a_store_after_a_failed_mprotect_hangs_qemu_and_gets_a_hang_verdict():
    need(QEMU, GCC)
    from memspec.targets.registry import make_target
    t = make_target("qemu-user", timeout=3.0)
    try:
        p = parse("a = mmap(0x100000025000, 0x7000, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                  "mprotect(a+0x6000, 0x7000, PROT_NONE)\nstore(a+0x6000, 98)\n")
        j = execute(t, p, t.facts())
        assert j.status is RunStatus.HANG and j.failure.verdict is Verdict.HANG
        assert run_outcome_errno(j) == "ENOMEM"
        assert excused_by(load_differences(), t.name, j.failure.clause, j.failure.observed, t.facts()) is not None
        # the hung emulator was killed and replaced: the next program runs
        ok = execute(t, parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"), t.facts())
        assert ok.status is RunStatus.OK and ok.failure is None
    finally:
        t.close()


def run_outcome_errno(j):
    return next(c.observed for c in j.checks if c.index == 1 and c.at == "call").split()[-1]
