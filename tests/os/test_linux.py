"""The linux target against the model: the directed suite, SIGBUS, COW frames, and what it
cannot observe."""

from __future__ import annotations

import os

import pytest

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.specs.catalogue import all_clauses
from memspec.specs.judge import judge
from memspec.targets.linux import LinuxTarget, PRESSURE_CALLS
from memspec.targets.model import ModelTarget
from memspec.specs.directed import suite_programs

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")


@pytest.fixture(scope="module")
def linux():
    return LinuxTarget()


def test_suite_passes_on_linux_and_model(linux):
    facts = linux.facts()
    model = ModelTarget()
    for name, prog in suite_programs("os"):
        if all(c.name in linux.calls for c in prog.calls):
            j = execute(linux, prog, facts)
            assert j.failure is None, (name, j.failure)
        j = execute(model, prog, {})
        assert j.failure is None, (name, j.failure)


def test_sigbus_past_eof_and_zero_tail(linux):
    p = parse("fd = memfd_create(\"f\", 0)\nftruncate(fd, 0x1800)\n"
              "a = mmap(NULL, 0x3000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
              "x = load(a+0x17ff)\ny = load(a+0x1800)\nz = load(a+0x2000)\n")
    run = linux.run(p)
    assert [o.value for o in run.outcomes[3:5]] == [0, 0]
    assert run.outcomes[5].signal == "SIGBUS"


@pytest.mark.skipif(os.geteuid() != 0, reason="pagemap frame numbers need root")
def test_cow_frames_on_the_kernel(linux):
    p = parse("a = mmap(0x100000b00000, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              "store(a, 1)\np2 = fork()\nf1 = pfn_of(a)\np2: f2 = pfn_of(a)\np2: store(a, 2)\n"
              "p2: f3 = pfn_of(a)\nf4 = pfn_of(a)\nx = load(a)\n")
    run = linux.run(p)
    f1, f2, f3, f4 = (run.outcomes[i].value for i in (3, 4, 6, 7))
    assert f1 == f2 == f4 and f3 != f1
    assert run.outcomes[8].value == 1
    assert judge(p, run, "linux", linux.facts()).failure is None


def test_not_observable_names_catalogued_clauses_with_reasons(linux):
    cat = all_clauses()
    no = linux.not_observable()
    assert "linux.oom.kills-worst" in no and "seed.swap.clock-second-chance" in no
    for cid, why in no.items():
        assert cid in cat and why
    assert not PRESSURE_CALLS & linux.calls


def test_os_clause_counts():
    cat = all_clauses()
    assert len([c for c in cat.values() if c.layer == "os"]) >= 150
