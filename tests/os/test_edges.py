"""Edges where the kernel's choice is not the model's to make: a fetch that may run onto the
next page, faults counted by populate, MAP_FIXED_NOREPLACE beside the target's own mappings."""

from __future__ import annotations

import os

import pytest

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x100000000000
QUIET = {"quiet_ranges": [[W, W + (1 << 36)]]}      # as the linux target reports its sandbox window


def failed(facts, text, outcomes):
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", facts)
    return j.failure.clause if j.failure else None


def ok(v=0):
    return Outcome(value=v)


SEGV = Outcome(signal="SIGSEGV")


def test_a_fetch_at_a_pages_end_may_cross_into_an_unfetchable_page():
    at = "a = mmap({W:#x}, 0x1000, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\nfetch(a+{off:#x})\n"
    end = at.format(W=W, off=4095)
    assert failed({}, end, [ok(W), Outcome()]) is None
    assert failed({}, end, [ok(W), SEGV]) is None
    # far from the end the whole instruction is on this page
    assert failed({}, at.format(W=W, off=100), [ok(W), SEGV]) == "posix.mmap.prot-exec"
    # with an executable next page nothing can stop it
    two = f"a = mmap({W:#x}, 0x2000, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\nfetch(a+0xfff)\n"
    assert failed({}, two, [ok(W), SEGV]) == "posix.mmap.prot-exec"


def test_populate_of_file_pages_is_no_sure_major_fault():
    locked = ("b = open_file(0x1800, O_RDWR)\n"
              f"c = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_LOCKED, b, 0)\nj = majflt()\n")
    assert failed(QUIET, locked, [ok(3), ok(W), ok(0)]) is None
    assert failed(QUIET, locked, [ok(3), ok(W), ok(1)]) is None
    # a load of an uncached file page is surely a major fault
    loaded = ("b = open_file(0x1800, O_RDWR)\n"
              f"c = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE, b, 0)\nx = load(c)\nj = majflt()\n")
    assert failed(QUIET, loaded, [ok(3), ok(W), ok(0), ok(0)]) == "seed.fault.major-counted"
    assert failed(QUIET, loaded, [ok(3), ok(W), ok(0), ok(1)]) is None


def test_fixed_noreplace_outside_the_quiet_ranges_may_meet_the_targets_own_mapping():
    out = 0x7F0000000000
    text = f"a = mmap({out:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n"
    assert failed(QUIET, text, [Outcome(value=-1, errno="EEXIST")]) is None
    assert failed(QUIET, text, [ok(out)]) is None
    inside = f"a = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n"
    assert failed(QUIET, inside, [Outcome(value=-1, errno="EEXIST")]) == "linux.mmap.fixed-noreplace-maps"
    # the model alone (no quiet ranges: it knows every mapping) holds the exact answer
    assert failed({}, text, [Outcome(value=-1, errno="EEXIST")]) == "linux.mmap.fixed-noreplace-maps"


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")
def test_on_linux_a_fetch_of_zero_bytes_at_a_pages_end_faults_and_is_allowed():
    from memspec.targets.linux import LinuxTarget
    t = LinuxTarget()
    p = parse(f"a = mmap({W:#x}, 0x1000, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
              "fetch(a+0xfff)\n")
    run = t.run(p)
    assert run.outcomes[1].signal == "SIGSEGV"       # 00 00 (add [rax], al) needs the next page
    assert execute(t, p, t.facts()).failure is None


def test_a_forked_child_may_lack_the_parents_zero_page_pte():
    text = (f"a = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
            "x = load(a)\np3 = fork()\np3: d = mincore(a, 0x2000)\nm = mincore(a, 0x2000)\n")
    # no anon_vma (only a read fault): copy_page_range copies nothing; with one it copies the PTE
    assert failed({}, text, [ok(W), ok(0), ok(2), ok(0), ok(1)]) is None
    assert failed({}, text, [ok(W), ok(0), ok(2), ok(1), ok(1)]) is None
    # the parent keeps its PTE, and the untouched page is in neither
    assert failed({}, text, [ok(W), ok(0), ok(2), ok(0), ok(0)]) == "posix.mincore.residency"
    assert failed({}, text, [ok(W), ok(0), ok(2), ok(3), ok(1)]) == "posix.mincore.residency"


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")
def test_on_linux_the_child_of_a_read_only_touch_has_no_pte():
    from memspec.targets.linux import LinuxTarget
    t = LinuxTarget()
    p = parse(f"a = mmap({W:#x}, 0x7000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
              "x = load(a+0x4001)\np3 = fork()\np3: d = mincore(a+0x4000, 0x1000)\n")
    assert execute(t, p, t.facts()).failure is None


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")
def test_on_linux_a_closed_descriptor_is_not_reused_by_the_harness():
    # fork() makes the harness's pipes to the new process: they must not take the number the
    # program just closed, or its mmap of that number maps a pipe (ENODEV) instead of EBADF
    from memspec.targets.linux import LinuxTarget
    t = LinuxTarget()
    p = parse('a = memfd_create("f", 0)\nclose(a)\np2 = fork()\n'
              f"p2: b = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE, a, 0)\nc = mmap({W + 0x1000:#x}, 0x1000, PROT_READ, MAP_PRIVATE, a, 0)\n")
    run = t.run(p)
    assert [o.errno for o in run.outcomes[3:]] == ["EBADF", "EBADF"]
    assert execute(t, p, t.facts()).failure is None
