"""A program's processes on the native agent, from start to end: main answers memspec itself
(the supervisor answers its own requests after main's), shared memory names die with their
program, a process that died between programs is replaced without a verdict, and main's
gathered answers still go out before it or a process it relays to dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets.agent import AgentTarget, build_agent

from ..conftest import GCC, need, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="the agent makes Linux system calls")

agent = target_fixture("linux-agent", GCC)

MAP = "a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"


def _call(ident, name, *args, result=None):
    return {"type": "call", "id": ident, "proc": "main", "name": name, "args": list(args), "result": result,
            "batch": True}


def test_the_supervisors_own_answers_come_after_mains():
    # main writes its answers itself; a request the supervisor answers (an unknown type, a reset)
    # is answered once main has answered everything sent before it
    need(GCC)
    lines = [{"type": "hello", "protocol": 1}, _call(1, "mmap", 0, 4096, 3, 0x22, -1, 0, result="a"),
             _call(2, "mprotect", {"ref": "a", "add": 0}, 4096, 1), {"type": "what", "id": 3},
             _call(4, "munmap", {"ref": "a", "add": 0}, 4096), {"type": "observe", "id": 5},
             {"type": "reset", "id": 6}, _call(7, "munmap", 0x100000000000, 4096), {"type": "what", "id": 8},
             {"type": "bye"}]
    for blocks in ([], ["--answer-blocks"]):
        r = subprocess.run([build_agent(), *blocks], input="".join(json.dumps(m) + "\n" for m in lines),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = [json.loads(x) for x in r.stdout.splitlines()[1:]]
        assert [(m["type"], m["id"]) for m in out] == [("reply", 1), ("reply", 2), ("error", 3), ("reply", 4),
                                                     ("state", 5), ("reply", 6), ("reply", 7), ("error", 8)], out


def test_shared_memory_names_do_not_outlive_their_program(agent):
    made = parse('fd = shm_open("/lc1", O_CREAT|O_RDWR, 0x180)\nftruncate(fd, 4096)\n'
                 'p2 = fork()\np2: drop_privileges()\np2: g = shm_open("/lc2", O_CREAT|O_RDWR, 0x1b6)\n')
    looked = parse('x = shm_open("/lc1", O_RDWR, 0)\ny = shm_open("/lc2", O_RDWR, 0)\n')
    for _ in range(3):
        run = agent.run(made)
        assert run.status is RunStatus.OK and run.outcomes[0].value >= 0, run.message
        run = agent.run(looked)
        assert run.status is RunStatus.OK, run.message
        assert [(o.value, o.errno) for o in run.outcomes] == [(-1, "ENOENT"), (-1, "ENOENT")]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_a_process_that_died_between_programs_is_replaced_without_a_verdict(agent):
    p = parse(MAP + "store(a, 7)\nx = load(a)\n")
    first = agent.run(p)
    assert first.status is RunStatus.OK and first.outcomes[2].value == 7
    sup = agent._live.p.pid
    mains = _children(sup)
    assert len(mains) == 1                 # the program's main, alive until the next reset
    os.kill(mains[0], signal.SIGKILL)      # main, between programs
    time.sleep(0.2)
    again = agent.run(p)
    assert again.status is RunStatus.OK and again.outcomes[2].value == 7, again.message
    os.kill(agent._live.p.pid, signal.SIGKILL)     # the agent itself: the reset finds it gone
    again = agent.run(p)
    assert again.status is RunStatus.OK and again.outcomes[2].value == 7, again.message
    assert [o.errno for o in again.outcomes] == [o.errno for o in first.outcomes]


def test_quiet_answers_gathered_before_a_crash_go_out():
    # calls that cannot end main unnoticed (queries, descriptors, limits, madvise(MADV_DONTNEED))
    # have their answers gathered; the crash is still the crashing call's
    need(GCC)
    t = AgentTarget(defines=("-DAGENT_BUG_CRASH_ON_MSYNC",))
    try:
        quiet = ('f = memfd_create("q", 0)\nftruncate(f, 8192)\nlseek(f, 4096, 0)\nmincore(a, 4096)\n'
                 'madvise(a, 4096, MADV_DONTNEED)\nset_fsize_limit(1048576)\nn = minflt()\nclose(f)\n')
        p = parse(MAP + quiet * 20 + "msync(a, 4096, MS_SYNC)\n" + quiet)
        run = t.run(p)
        assert run.status is RunStatus.CRASH and len(run.outcomes) == 1 + 8 * 20, (run.status, len(run.outcomes))
        assert "main process died: killed by SIGABRT" in run.message, run.message
        assert t.run(parse(MAP + quiet)).status is RunStatus.OK
    finally:
        t.close()


def test_answers_gathered_before_a_forked_process_dies_go_out():
    # a call main relays to another process of the program has its answer gathered like main's
    # own; when that process dies, main writes out the answers before the call, then ends
    need(GCC)
    t = AgentTarget(defines=("-DAGENT_BUG_DIE_ON_PROT_NONE=SIGSEGV",))
    try:
        rounds = "".join(f"p2: b{i} = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                         f"p2: x{i} = load(b{i})\np2: munmap(b{i}, 4096)\nmincore(a, 4096)\n" for i in range(30))
        p = parse(MAP + "p2 = fork()\n" + rounds + "p2: mprotect(a, 4096, PROT_NONE)\n" + rounds)
        run = t.run(p)
        assert run.status is RunStatus.CRASH and len(run.outcomes) == 2 + 4 * 30, (run.status, len(run.outcomes))
        assert "process p2 died: killed by SIGSEGV" in run.message, run.message
        assert t.run(parse(MAP + "p2 = fork()\n" + rounds)).status is RunStatus.OK
    finally:
        t.close()
