"""The pipelined run's reading of replies (many lines a read, the common ones without json) on a
stand-in agent that misbehaves on purpose (``fake_pipelined.py``): garbage, a wrong id, a
refusal and a reply too many each end the run as the plain reading did (the same status, the
outcomes before it, the same message), and the next program on the same target runs in step."""

from __future__ import annotations

import os
import shlex
import sys

import pytest

from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets.agent import WINDOW, AgentTarget
from memspec.targets.protocol import ProtocolTarget

FAKE = os.path.join(os.path.dirname(__file__), "fake_pipelined.py")
MMAP = "a{i} = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"


class FakeAgent(AgentTarget):
    def __init__(self) -> None:
        ProtocolTarget.__init__(self, shlex.join([sys.executable, FAKE]), timeout=20.0, memory_mb=0)
        self.name = "fake-agent"


@pytest.fixture
def fake():
    t = FakeAgent()
    yield t
    t.close()


def _program(n: int, at: int, line: str):
    return parse("".join(MMAP.format(i=i) if i != at else line for i in range(n)))


def _values_in_step(run, n, step=4096):
    # the stand-in answers with its request id times 4096: consecutive ids within a run
    values = [o.value for o in run.outcomes]
    return len(values) == n and all(b - a == step for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("at", [0, 1, 700, 1999])
@pytest.mark.parametrize("bad, status, message", [
    ("msync(0x100000000000, 4096, MS_SYNC)\n", RunStatus.ERROR, "target answered garbage at call {n} (msync): not JSON"),
    ("mlock(0x100000000000, 4096)\n", RunStatus.ERROR, "target answered garbage at call {n} (mlock): reply id"),
    ("mincore(0x100000000000, 4096)\n", RunStatus.REFUSED, "call {n} refused: not the program's"),
])
def test_a_bad_reply_anywhere_in_a_long_program_ends_the_run_there(fake, at, bad, status, message):
    p = _program(2000, at, bad)
    assert len(b"".join(x for x in [b"x" * 90] * 2000)) > 4 * WINDOW
    run = fake.run(p)
    assert run.status is status and len(run.outcomes) == at, (run.status, run.message)
    assert run.message.startswith(message.format(n=at + 1)), run.message
    ok = fake.run(_program(300, -1, ""))
    assert ok.status is RunStatus.OK and _values_in_step(ok, 300), ok.message
    s = fake.stream(p)
    assert [s.outcome(i) for i in range(at)] == list(run.outcomes) or status is not RunStatus.OK
    assert s.outcome(at) is None and s.finish().status is status


def test_a_reply_too_many_is_garbage_at_the_next_call_or_found_by_the_next_program(fake):
    run = fake.run(_program(500, 250, "munlock(0x100000000000, 4096)\n"))
    assert run.status is RunStatus.ERROR and len(run.outcomes) == 251
    assert run.message == "target answered garbage at call 252 (mmap): reply id 252 does not match request id 253"
    run = fake.run(_program(500, 499, "munlock(0x100000000000, 4096)\n"), observe="none")
    assert run.status is RunStatus.OK and len(run.outcomes) == 500       # the extra line waits in the pipe
    nxt = fake.run(_program(300, -1, ""))         # the reset's reply is the extra line: a new process
    assert nxt.status is RunStatus.OK and _values_in_step(nxt, 300) and nxt.outcomes[0].value == 4096   # a new process's first id


def test_one_program_runs_the_same_twice_and_observes(fake):
    p = _program(1000, -1, "")
    a, b = fake.run(p, observe="each"), fake.run(p, observe="each")
    assert a.status is b.status is RunStatus.OK and len(a.observations) == len(b.observations) == 1000
    assert _values_in_step(b, 1000, 2 * 4096) and b.outcomes[0].value - a.outcomes[0].value == (2 * 1000 + 1) * 4096


def test_the_window_counts_each_request_at_most_what_it_can_be():
    # requests are formatted as they are sent; the window's byte counts are bounds made from the
    # formats, never less than the lines they stand for (ids of up to that many digits, a %% escape)
    from memspec.targets.agent import _bounds, _template
    p = parse("".join(MMAP.format(i=i) for i in range(30)) + 'x = shm_open("/a%b", O_RDWR|O_CREAT, 384)\n')
    kinds, fmts = _template(p, "end")
    for first in (1, 9, 95, 99_990, 10**12 - 5):
        lines = [f % (first + j) for j, f in enumerate(fmts)]
        ends = _bounds(fmts, len(str(first + len(fmts))))
        assert ends[0] == 0 and len(ends) == len(lines) + 1
        for j in range(len(lines)):
            for k in range(j, len(lines) + 1):
                assert ends[k] - ends[j] >= sum(map(len, lines[j:k]))
        assert ends[-1] - sum(map(len, lines)) <= len(lines) * len(str(first + len(fmts)))


def test_a_started_program_sends_its_reset_with_its_requests_and_reads_it_first(fake):
    assert fake.run(_program(20, -1, "")).status is RunStatus.OK
    before = fake._live.ident
    s = fake.start(_program(300, -1, ""))
    assert s.reset == before + 1 and s.sent > 0         # the reset, then the first window, in one write
    run = s.finish()
    assert run.status is RunStatus.OK and _values_in_step(run, 300), run.message
    assert run.outcomes[0].value == (before + 2) * 4096     # the same process: ids go on after the reset's


def test_a_started_program_whose_reset_is_not_answered_runs_again_on_a_new_process(fake):
    # a reply too many left in the pipe by the last program: the reset's answer is that line
    run = fake.run(_program(50, 49, "munlock(0x100000000000, 4096)\n"), observe="none")
    assert run.status is RunStatus.OK
    old = fake._live
    s = fake.start(_program(300, -1, ""))
    assert s.reset is not None
    again = s.finish()
    assert again.status is RunStatus.OK and _values_in_step(again, 300), again.message
    assert again.outcomes[0].value == 4096 and old.dead and fake._live is not old     # a new process's first id
    assert s.outcomes == list(again.outcomes) and s.seen_at.keys() == {299}
    # a process that died between programs: the reset goes as a round trip of its own, to a new one
    fake._live.p.kill()
    fake._live.p.wait()
    s = fake.start(_program(10, -1, ""))
    assert s.reset is None and s.finish().status is RunStatus.OK


def test_a_started_program_given_up_leaves_a_working_target(fake):
    s = fake.start(_program(300, -1, ""))
    fake.abandon(s)
    assert s.result is not None and s.result.status is RunStatus.ERROR
    assert _values_in_step(fake.run(_program(30, -1, "")), 30)


def test_started_programs_run_one_after_the_other_and_a_run_meanwhile_waits_for_them(fake):
    a, b = fake.start(_program(40, -1, "")), fake.start(_program(50, -1, ""))
    assert fake._flight() == [a, b] and a.sent == len(a.kinds) and b.sent == len(b.kinds)
    mid = fake.run(_program(30, -1, ""))        # reads both to their ends first
    assert fake._flight() == [] and a.result is not None and b.result is not None
    ra, rb = a.finish(), b.finish()
    assert _values_in_step(ra, 40) and _values_in_step(rb, 50) and _values_in_step(mid, 30)
    assert ra.outcomes[-1].value < rb.outcomes[0].value < mid.outcomes[0].value     # in that order
    # a program too big to go with the one in flight: that one is read first
    c = fake.start(_program(40, -1, ""))
    big = fake.start(_program(2000, -1, ""))
    assert c.result is not None and fake._flight() == [big]
    assert _values_in_step(big.finish(), 2000) and _values_in_step(c.finish(), 40)
    # given up: every started run ends, and the next program gets a new process
    d, e = fake.start(_program(20, -1, "")), fake.start(_program(20, -1, ""))
    fake.abandon(d)
    assert d.result.status is RunStatus.ERROR and e.result.status is RunStatus.ERROR and fake._flight() == []
    assert _values_in_step(fake.run(_program(30, -1, "")), 30)
