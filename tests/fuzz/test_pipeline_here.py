"""fuzz/pipeline.RunAhead judging here (``judge_in="here"``, the default for a target that can
``start`` a program in its own process): program k+1 is started before program k is judged, its
run read to the end before program k is handed over (no run in flight while the caller holds the
target), the plain loop's order and results, an unclean run handed over before the next starts,
skipped programs never run, an error of the judge leaving no run behind; and on the native agent,
the same judgements as the plain loop."""

from __future__ import annotations

import pytest

from memspec.fuzz.pipeline import RunAhead
from memspec.program import parse
from memspec.records import Outcome, RunResult, RunStatus


def _programs(n: int):
    return [(f"p{i}", parse(f"a = mmap(0, {4096 * (i + 1)}, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"))
            for i in range(n)]


def _k(program) -> int:
    return program.calls[0].args[1].value // 4096 - 1


class Starter:
    """A fake target that starts programs, run one after the other as the agent runs them: records
    the order of starts, finishes, runs and abandons."""

    runs_elsewhere = True

    def __init__(self, crash: tuple[int, ...] = ()) -> None:
        self.log: list[tuple[str, int]] = []
        self.crash = set(crash)
        self.in_flight: list[int] = []

    def _result(self, k: int) -> RunResult:
        if k in self.crash:
            return RunResult((), (), RunStatus.CRASH, "killed")
        return RunResult((Outcome(value=k),), ())

    def run(self, program, observe="end"):
        assert not self.in_flight, "a run while others are in flight"
        self.log.append(("run", _k(program)))
        return self._result(_k(program))

    def start(self, program, observe="end"):
        k = _k(program)
        self.in_flight.append(k)
        self.log.append(("start", k))
        target = self

        class Started:
            def finish(self):
                assert target.in_flight[0] == k, "read out of order"
                target.in_flight.pop(0)
                target.log.append(("finish", k))
                return target._result(k)
        s = Started()
        s.k = k
        return s

    def abandon(self, started) -> None:
        self.log.append(("abandon", started.k))
        self.in_flight.remove(started.k)


def _judge_on(t: Starter):
    def judge(program, run):
        t.log.append(("judge", _k(program)))
        return ("judged", _k(program), run.status)
    return judge


def test_the_default_for_a_target_that_starts_is_here_and_gives_the_plain_loops_results():
    t = Starter()
    with RunAhead(t, _programs(5), judge=_judge_on(t)) as ra:
        assert ra.judge_in == "here" and ra.ahead
        got = []
        for tag, program, run, j in ra:
            tag_k = int(tag[1:])
            assert t.in_flight == ([tag_k + 2] if tag_k + 2 < 5 else [])    # and one queued behind it
            got.append((tag, run.outcomes[0].value, j))
    assert got == [(f"p{k}", k, ("judged", k, RunStatus.OK)) for k in range(5)]
    # programs k + 1 and k + 2 started before program k is judged, k + 1 read after it
    assert t.log == [("run", 0), ("start", 1), ("start", 2), ("judge", 0), ("finish", 1),
                     ("start", 3), ("judge", 1), ("finish", 2),
                     ("start", 4), ("judge", 2), ("finish", 3),
                     ("judge", 3), ("finish", 4),
                     ("judge", 4)]
    plain = Starter()
    with RunAhead(plain, _programs(5), judge=_judge_on(plain), ahead=False) as ra:
        assert [(tag, run.outcomes[0].value, j) for tag, _p, run, j in ra] == got
    assert ("start", 1) not in plain.log


def test_nothing_more_starts_after_an_unclean_run_until_it_is_handed_over():
    t = Starter(crash=(1, 4))
    seen = []
    with RunAhead(t, _programs(7), judge=_judge_on(t)) as ra:
        for tag, program, run, j in ra:
            seen.append((tag, run.status))
            if tag == "p1":         # program 2 was started before program 1's end was known
                assert ("start", 3) not in t.log and t.in_flight == []
            if tag == "p4":
                assert ("start", 6) not in t.log and ("run", 6) not in t.log
    assert seen == [(f"p{k}", RunStatus.CRASH if k in (1, 4) else RunStatus.OK) for k in range(7)]
    assert ("start", 3) in t.log and ("start", 6) in t.log


def test_skipped_programs_are_never_run_nor_judged_here():
    t = Starter()
    with RunAhead(t, _programs(5), skip=lambda p: _k(p) in (1, 2), judge=_judge_on(t)) as ra:
        got = [(tag, run is None, j is None) for tag, _p, run, j in ra]
    assert got == [("p0", False, False), ("p1", True, True), ("p2", True, True), ("p3", False, False), ("p4", False, False)]
    assert [k for what, k in t.log if what in ("run", "finish")] == [0, 3, 4]


def test_an_error_of_the_judge_leaves_no_run_in_flight():
    t = Starter()

    def judge(program, run):
        if _k(program) == 1:
            raise ValueError("judge exploded")
        return 0
    with RunAhead(t, _programs(4), judge=judge) as ra:
        it = iter(ra)
        next(it)
        with pytest.raises(ValueError, match="judge exploded"):
            next(it)
    assert ("abandon", 2) in t.log and ("abandon", 3) in t.log and t.in_flight == []


def test_here_is_refused_for_a_target_that_cannot_start():
    class Plain:
        def run(self, program, observe="end"):
            return RunResult((), ())
    with pytest.raises(ValueError, match="start"):
        RunAhead(Plain(), _programs(2), judge=lambda p, r: 0, judge_in="here")
    assert RunAhead(Plain(), _programs(2), judge=lambda p, r: 0).judge_in == "process"


@pytest.mark.slow
def test_on_the_native_agent_the_same_judgements_as_the_plain_loop():
    from memspec.errors import TargetError
    from memspec.fuzz.layers import random_programs
    from memspec.specs.judge import judge
    from memspec.targets.agent import AgentTarget
    try:
        t = AgentTarget(timeout=20.0)
    except TargetError as e:
        pytest.skip(f"the native agent cannot be built here: {e}")
    try:
        facts = t.facts()
        programs = list(random_programs("os", 40, 7, t.calls, facts))
        got = {}
        for ahead in (True, False):
            with RunAhead(t, programs, ahead=ahead, judge=lambda p, r: judge(p, r, t.name, facts)) as ra:
                assert ra.judge_in == "here"
                got[ahead] = []
                for tag, p, run, j in ra:
                    assert j == judge(p, run, t.name, facts)        # the judgement of that very run
                    got[ahead].append((tag, len(run.outcomes), run.status, j.passed))
        assert got[True] == got[False]
        # a started run given up leaves the next program a working agent
        started = t.start(programs[3][1])
        t.abandon(started)
        run = t.run(programs[4][1])
        assert (len(run.outcomes), run.status, judge(programs[4][1], run, t.name, facts).passed) == got[False][4][1:]
    finally:
        t.close()


@pytest.mark.slow
def test_a_failure_re_run_while_programs_are_in_flight_gets_the_agent_to_itself():
    # a broken agent (mprotect protects one page short): each failing judgement is re-run on the
    # target at once, as check's findings do, while the next programs are in flight there
    from memspec.errors import TargetError
    from memspec.specs.judge import judge
    from memspec.targets.agent import AgentTarget
    try:
        t = AgentTarget(timeout=20.0, defines=("-DAGENT_BUG_MPROTECT_SHORT",))
    except TargetError as e:
        pytest.skip(f"the native agent cannot be built here: {e}")
    bad = parse("a = mmap(0x100000000000, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                "mprotect(a, 0x3000, PROT_READ)\nstore(a+0x2000, 1)\n")
    good = parse("a = mmap(0x100000000000, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                 "store(a+0x1000, 7)\nb = load(a+0x1000)\nmunmap(a, 0x3000)\n")
    programs = [(f"p{i}", bad if i % 3 == 1 else good) for i in range(12)]
    try:
        facts = t.facts()
        t.run(good)
        agent = t._live.p.pid
        seen = []
        with RunAhead(t, programs, judge=lambda p, r: judge(p, r, t.name, facts)) as ra:
            assert ra.judge_in == "here"
            for tag, p, run, j in ra:
                failure = j.failure
                seen.append((tag, None if failure is None else (failure.index, failure.clause)))
                if failure is not None:
                    again = judge(p, t.run(p), t.name, facts)        # the re-run, mid-flight
                    assert again.failure is not None and (again.failure.index, again.failure.clause) == \
                        (failure.index, failure.clause)
        assert seen == [(f"p{i}", (2, "posix.mmap.prot-enforced-write") if i % 3 == 1 else None) for i in range(12)]
        assert t._live.p.pid == agent       # the runs in flight were read first, not lost with a new agent
    finally:
        t.close()
