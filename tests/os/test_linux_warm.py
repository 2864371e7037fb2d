"""The linux target's program child, forked ahead of its program (targets/linux.py _WarmChild):
it runs the program the harness sends, in the state the harness is in when the program runs,
and leaves no process behind."""

from __future__ import annotations

import os

import pytest

from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets import linux as L

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")

MMAP = "a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"


def _alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        return False


def test_each_program_gets_the_child_forked_ahead_and_a_fresh_one_follows():
    t = L.LinuxTarget()
    try:
        prog = parse(MMAP + "store(a, 0x5a)\nb = load(a)\n")
        first = t.run(prog)
        assert first.status is RunStatus.OK, first.message
        assert first.outcomes[2].value == 0x5a
        ahead = t._warm
        assert ahead is not None and _alive(ahead.pid)
        second = t.run(prog)
        assert second.status is RunStatus.OK and second.outcomes[2].value == 0x5a
        assert t._warm is not None and t._warm.pid != ahead.pid     # the one forked ahead was used
        # the observation the child sent as the raw map parses to the program's mapping
        (_, obs), = second.observations
        a = second.outcomes[0].value
        assert any(m.start <= a < m.end and m.perms.startswith("rw") for m in obs.maps_of("main"))
    finally:
        t.close()


def test_a_child_forked_in_another_state_is_not_used(tmp_path):
    """The umask and the working folder a program's process starts with are the harness's at
    the time the program runs, not when the child was forked ahead."""
    t = L.LinuxTarget()
    old_umask = os.umask(0o022)
    old_cwd = os.getcwd()
    try:
        assert t.run(parse(MMAP)).status is RunStatus.OK
        stale = t._warm
        os.umask(0o077)
        os.chdir(tmp_path)
        assert not stale.usable()
        prog = parse('fd = open_file(0x1000, O_RDWR)\nm = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0)\n')
        r = t.run(prog)
        assert r.status is RunStatus.OK, r.message
        assert not _alive(stale.pid)            # ended, not left waiting
    finally:
        os.umask(old_umask)
        os.chdir(old_cwd)
        t.close()


def test_no_child_outlives_close():
    t = L.LinuxTarget()
    for _ in range(3):
        assert t.run(parse(MMAP)).status is RunStatus.OK
    pids = [t._warm.pid] + list(t._exiting)
    t.close()
    assert t._warm is None and t._exiting == []
    assert not any(_alive(p) for p in pids)


def test_a_killed_child_forked_ahead_is_replaced():
    t = L.LinuxTarget()
    try:
        assert t.run(parse(MMAP)).status is RunStatus.OK
        os.kill(t._warm.pid, 9)
        r = t.run(parse(MMAP + "store(a, 1)\n"))
        assert r.status is RunStatus.OK, r.message
        assert len(r.outcomes) == 2
    finally:
        t.close()


def test_shm_names_a_program_leaves_are_gone_after_it():
    """A program that names shared memory objects gets the private /dev/shm (decided when its
    program arrives at the child forked ahead) or this run's prefix and the cleanup: either way
    a name it leaves behind is not left in the machine's /dev/shm."""
    t = L.LinuxTarget()
    try:
        assert t.run(parse(MMAP)).status is RunStatus.OK       # a child is now forked ahead
        name = f"memspec-warm-{os.getpid()}"
        prog = parse(f'fd = shm_open("/{name}", O_CREAT|O_RDWR, 0x180)\nftruncate(fd, 4096)\n'
                     'm = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\nstore(m, 3)\n')
        r = t.run(prog)
        assert r.status is RunStatus.OK, r.message
        assert all(o.ok for o in r.outcomes), r.outcomes
    finally:
        t.close()
    assert not [n for n in os.listdir("/dev/shm") if n.endswith(name)]


def _verdicts(j):
    return [(c.clause, c.verdict, c.index, c.expected, c.observed) for c in j.checks], j.status, j.message


def test_a_stream_is_judged_as_the_finished_run_is():
    """``judge`` on ``LinuxTarget.stream`` (outcomes judged as the child writes them) gives the
    judgement ``judge`` gives on the same run finished, checkpoint included."""
    from memspec.fuzz.layers import random_programs
    from memspec.specs.judge import judge
    t = L.LinuxTarget()
    facts = t.facts()
    try:
        n = 0
        for _, prog in random_programs("os", 12, 5, t.calls, facts):
            s = t.stream(prog)
            streamed = judge(prog, s, "linux", facts)
            whole = s.finish()          # the same run, finished: judged as run() results are
            if whole.status is RunStatus.REFUSED:
                continue
            assert _verdicts(streamed) == _verdicts(judge(prog, whole, "linux", facts))
            assert len(streamed.checks) >= len(prog.calls)
            n += 1
        assert n >= 6
    finally:
        t.close()


def test_a_stream_ends_as_the_run_does_when_the_child_hangs_or_dies():
    """A stream whose child stops (here: stopped before it reads its program) is judged a hang
    at the first call, and one whose child is killed a crash, named ``memspec.target.alive``;
    a stream that runs through passes."""
    import signal
    from memspec.specs.judge import judge
    from memspec.records import Verdict
    t = L.LinuxTarget(timeout=1.0)
    facts = t.facts()
    prog = parse(MMAP + "store(a, 1)\nb = load(a)\n")
    try:
        j = judge(prog, t.stream(prog), "linux", facts)
        assert j.failure is None and j.status is RunStatus.OK
        for sig, status, verdict in ((None, RunStatus.HANG, Verdict.HANG), (signal.SIGKILL, RunStatus.CRASH, Verdict.CRASH)):
            child = L._WarmChild()
            os.kill(child.pid, signal.SIGSTOP)
            child.send(prog, "end")
            if sig is not None:
                os.kill(child.pid, sig)
            j = judge(prog, L.LinuxStream(t, child), "linux", facts)
            assert j.status is status, j.message
            assert j.failure is not None and j.failure.clause == "memspec.target.alive"
            assert j.failure.verdict is verdict and j.failure.index == 0
    finally:
        t.close()


def test_a_long_program_gets_a_child_forked_with_it_and_the_one_ahead_waits():
    t = L.LinuxTarget()
    try:
        assert t.run(parse(MMAP)).status is RunStatus.OK
        ahead = t._warm
        long = parse(MMAP + "store(a, 9)\n" * L.SEND_MAX + "b = load(a)\n")
        r = t.run(long)
        assert r.status is RunStatus.OK, r.message
        assert len(r.outcomes) == len(long.calls) and r.outcomes[-1].value == 9
        assert t._warm is ahead and ahead.usable()      # not used, not replaced
        assert t.run(parse(MMAP)).status is RunStatus.OK
        assert t._warm is not ahead
    finally:
        t.close()


def test_programs_go_to_the_child_whole():
    """A program sent to a child forked ahead is pickled: every kind of argument comes back equal."""
    import pickle
    prog = parse('a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n'
                 'p1 = fork()\np1: store(a+0x1000, 3)\nfd = shm_open("/x", O_CREAT|O_RDWR, 0x180)\n')
    assert pickle.loads(pickle.dumps((prog, "each"), protocol=pickle.HIGHEST_PROTOCOL)) == (prog, "each")
