"""The native agent (targets/agent/agent.c) and the ``linux-agent`` target: it builds, it gives the
``linux`` target's verdicts on the os suite and on seeded random programs, a broken agent is
caught, and a crashing or garbage-answering one gets its verdict."""

from __future__ import annotations

import os
import subprocess

import pytest

from memspec.fuzz.differential import execute
from memspec.fuzz.layers import random_programs
from memspec.program import parse
from memspec.records import RunStatus, Verdict
from memspec.specs.directed import suite_programs
from memspec.specs.judge import judge
from memspec.targets.agent import AgentTarget, build_agent
from memspec.targets.registry import make_target

from ..conftest import GCC, need, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="the agent makes Linux system calls")


agent = target_fixture("linux-agent", GCC)


@pytest.fixture(scope="module")
def linux():
    return make_target("linux-py")     # the Python child: the agent is judged against another runtime


def test_agent_builds_once_and_answers_hello():
    need(GCC)
    exe = build_agent()
    assert os.access(exe, os.X_OK)
    assert build_agent() == exe                       # cached by content hash: not rebuilt
    before = os.stat(exe).st_mtime_ns
    assert build_agent() == exe and os.stat(exe).st_mtime_ns == before
    r = subprocess.run([exe], input='{"type":"hello","protocol":1}\n{"type":"bye"}\n', capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"layers":["os"]' in r.stdout and '"mmap"' in r.stdout and '"task_size"' in r.stdout


def test_agent_answers_garbage_with_an_error_and_keeps_going():
    need(GCC)
    exe = build_agent()
    r = subprocess.run([exe], input='not json\n{"type":"reset","id":4}\n', capture_output=True, text=True, timeout=30)
    lines = r.stdout.splitlines()
    assert lines[0].startswith('{"type":"error","id":null') and lines[1] == '{"type":"reply","id":4,"value":0}'


def test_facts_come_from_the_agent_and_the_machine(agent, linux):
    f, g = agent.facts(), linux.facts()
    # probed inside the agent's own process
    for key in ("exec_only", "task_size", "page_size", "mmap_min_addr", "shm_private", "kernel"):
        assert f[key] == g[key], key
    assert 0 < f["base_maps"] < g["base_maps"]        # a static binary maps less than a Python interpreter
    # the machine's, as the linux target reads them
    for key in ("thp", "nodes", "ram_pages", "overcommit_memory"):
        assert f[key] == g[key], key
    assert agent.calls == linux.calls


def _verdict(j):
    f = j.failure
    return j.status.name, (f.clause, f.verdict.name, f.index) if f else None


def _agree(agent, linux, programs):
    fa, fl = agent.facts(), linux.facts()
    same, refused, differ = 0, [], []
    for name, p in programs:
        if any(c.name not in agent.calls for c in p.calls):
            continue
        ja, jl = execute(agent, p, fa), execute(linux, p, fl)
        va, vl = _verdict(ja), _verdict(jl)
        for _ in range(2):
            if va == vl:
                break
            # a kernel's timing can decide a verdict once (check reports that as flaky, not as a
            # failure); a difference in how the two runtimes drive the kernel shows every time
            ja, jl = execute(agent, p, fa), execute(linux, p, fl)
            va, vl = _verdict(ja), _verdict(jl)
        if va == vl:
            same += 1
        elif RunStatus.REFUSED in (ja.status, jl.status):
            # one harness refused to touch memory that is not the program's (the Python child and
            # the agent have mappings of their own in different places): not a verdict to compare
            refused.append((name, va, vl))
        else:
            differ.append((name, va, vl, ja.failure, jl.failure))
    return same, refused, differ


@pytest.mark.slow   # the suite and 300 random programs on two targets: ~30 s
def test_agent_agrees_with_linux_on_the_suite_and_random_programs(agent, linux):
    programs = list(suite_programs("os")) + list(random_programs("os", 80, 11, agent.calls, agent.facts()))
    same, refused, differ = _agree(agent, linux, programs)
    assert not differ, differ
    assert same >= 100 and len(refused) <= same // 20, (same, refused)


@pytest.mark.slow
def test_agent_agrees_with_linux_on_many_random_programs(agent, linux):
    for seed in (1, 2, 3):
        same, refused, differ = _agree(agent, linux, random_programs("os", 300, seed, agent.calls, agent.facts()))
        assert not differ, (seed, differ)
        assert same >= 250, (seed, same, refused)


def test_refuses_memory_that_is_not_the_programs(agent):
    # the range covers the agent's own binary, stack and libraries: never touched
    run = agent.run(parse("mprotect(0x1000, 0x7ffffffff000, PROT_NONE)\n"))
    assert run.status is RunStatus.REFUSED and "did not map" in run.message
    run = agent.run(parse("close(1)\n"))
    assert run.status is RunStatus.REFUSED and "harness" in run.message
    assert agent.run(parse("x = load(0x1000)\n")).outcomes[0].signal == "SIGSEGV"    # nothing there: probed


def test_faults_signals_and_processes(agent):
    p = parse("fd = memfd_create(\"f\", 0)\nftruncate(fd, 0x1800)\n"
              "a = mmap(NULL, 0x3000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
              "x = load(a+0x17ff)\ny = load(a+0x2000)\nstore(a, 7)\np2 = fork()\np2: z = load(a)\n"
              "b = mmap(0x100000000000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nfetch(b)\n"
              "p2: store(b, 1)\n")
    run = agent.run(p)
    assert run.status is RunStatus.OK, run.message
    o = run.outcomes
    assert o[3].value == 0 and o[4].signal == "SIGBUS" and o[7].value == 7
    assert o[9].signal == "SIGSEGV"          # no PROT_EXEC: the fetch itself faults (NX)
    assert o[10].signal == "SIGSEGV"         # p2 was forked before b was mapped: nothing there
    obs = run.observations[-1][1]
    faults = dict(obs.extra)["faults"]
    assert set(faults) == {"main", "p2"} and faults["main"][0] >= 1
    assert judge(p, run, agent.name, agent.facts()).failure is None


def test_a_broken_agent_is_caught():
    need(GCC)
    broken = AgentTarget(defines=("-DAGENT_BUG_MPROTECT_SHORT",))
    try:
        p = parse("a = mmap(0x100000000000, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                  "mprotect(a, 0x3000, PROT_READ)\nstore(a+0x2000, 1)\n")
        j = execute(broken, p, broken.facts())
        assert j.failure is not None and j.failure.verdict is Verdict.FAIL
        assert (j.failure.index, j.failure.clause) == (2, "posix.mmap.prot-enforced-write")
    finally:
        broken.close()


def test_a_crashing_agent_gets_a_crash_verdict_and_is_replaced():
    need(GCC)
    t = AgentTarget(defines=("-DAGENT_BUG_CRASH_ON_MSYNC",))
    try:
        p = parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmsync(a, 0x1000, MS_SYNC)\n")
        j = execute(t, p, t.facts())
        assert j.status is RunStatus.CRASH and j.failure.clause == "memspec.target.alive"
        assert j.failure.verdict is Verdict.CRASH and "main process died: killed by SIGABRT" in j.message, j.message
        ok = execute(t, parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"), t.facts())
        assert ok.status is RunStatus.OK and ok.failure is None
    finally:
        t.close()


def test_a_garbage_answer_gets_an_error_verdict():
    need(GCC)
    t = AgentTarget(defines=("-DAGENT_BUG_GARBAGE_ON_MINCORE",))
    try:
        p = parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nm = mincore(a, 0x1000)\n")
        j = execute(t, p, t.facts())
        assert j.status is RunStatus.ERROR and j.failure.verdict is Verdict.ERROR and "garbage" in j.message
    finally:
        t.close()
