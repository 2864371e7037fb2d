"""fuzz/pipeline.RunAhead: program k is judged while program k+1 runs, with the plain loop's order
and results; the target is only ever used on the caller's thread (a child is never forked from
another); the judge's thread never takes Ctrl-C or SIGTERM, so the caller is interrupted at once;
skipped programs are never run.  The judge runs in a second process by default
(fuzz/judge_process.py, tests/fuzz/test_judge_process.py); the tests of the helper thread's
own properties ask for the thread (``judge_in="thread"``)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from memspec.fuzz.pipeline import RunAhead
from memspec.program import parse
from memspec.records import Outcome, RunResult


def _programs(n: int):
    return [(f"p{i}", parse(f"a = mmap(0, {4096 * (i + 1)}, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"))
            for i in range(n)]


def _length(program) -> int:
    return program.calls[0].args[1].value


class Recorder:
    """A fake target: answers each program with its length, records on which thread it ran what."""

    def __init__(self, runs_elsewhere: bool) -> None:
        self.runs_elsewhere = runs_elsewhere
        self.started: dict[int, threading.Event] = {}
        self.threads: list[str] = []
        self.ran: list[int] = []

    def run(self, program, observe="end"):
        length = _length(program)
        self.threads.append(threading.current_thread().name)
        self.ran.append(length)
        self.started.setdefault(length, threading.Event()).set()
        return RunResult((Outcome(value=length),), ())


def _judge(program, run):
    return ("judged", _length(program), run.outcomes[0].value, threading.current_thread().name)


@pytest.mark.parametrize("judge_in", ["process", "thread"])
@pytest.mark.parametrize("elsewhere", [True, False])
def test_same_order_and_results_as_the_plain_loop(elsewhere, judge_in):
    got = {}
    for ahead in (True, False):
        t = Recorder(elsewhere)
        with RunAhead(t, _programs(6), judge=_judge, ahead=ahead and elsewhere, judge_in=judge_in) as ra:
            got[ahead] = [(tag, run.outcomes[0].value, j[:3]) for tag, _p, run, j in ra]
        assert t.ran == [4096 * (i + 1) for i in range(6)]
        # every run on the caller's thread, whatever the mode
        assert set(t.threads) == {threading.current_thread().name}
    assert got[True] == got[False] == [(f"p{i}", 4096 * (i + 1), ("judged", 4096 * (i + 1), 4096 * (i + 1)))
                                       for i in range(6)]


def test_program_k_is_judged_while_program_k_plus_1_runs():
    t = Recorder(True)
    seen = []

    def judge(program, run):
        # judging program k: program k + 1 starts on the target meanwhile (the first is judged
        # on the caller's thread, before anything runs beside it)
        k = _length(program) // 4096 - 1
        if 1 <= k < 4:
            seen.append(t.started.setdefault(4096 * (k + 2), threading.Event()).wait(5))
        return threading.current_thread().name

    with RunAhead(t, _programs(5), judge=judge, judge_in="thread") as ra:
        names = [j for _tag, _p, _run, j in ra]
    assert seen == [True, True, True]            # programs 1..3 (program 4 is the last: nothing after it)
    assert names[0] == threading.current_thread().name
    assert all(n == "memspec-judge" for n in names[1:])


def test_plain_loop_when_not_ahead():
    for kw in ({"ahead": False, "judge": _judge}, {}):       # asked for, or nothing to judge beside the run
        t = Recorder(True)
        with RunAhead(t, _programs(3), **kw) as ra:
            assert ra.ahead is False
            for i, _ in enumerate(ra):
                assert 4096 * (i + 2) not in t.started     # nothing runs before the caller asks for it


def test_skipped_programs_are_never_run_nor_judged():
    t = Recorder(True)
    judged = []
    with RunAhead(t, _programs(5), skip=lambda p: _length(p) in (8192, 16384),
                  judge=lambda p, r: judged.append(_length(p)) or _length(p), judge_in="thread") as ra:
        got = [(tag, run, j) for tag, _p, run, j in ra]
    assert [tag for tag, run, j in got if run is None and j is None] == ["p1", "p3"]
    assert t.ran == judged == [4096, 12288, 20480]


@pytest.mark.parametrize("judge_in", ["process", "thread"])
def test_errors_of_the_run_and_of_the_judge_reach_the_caller(judge_in):
    class Broken(Recorder):
        def run(self, program, observe="end"):
            raise RuntimeError("target exploded")
    with RunAhead(Broken(True), _programs(2), judge=_judge, judge_in=judge_in) as ra:
        with pytest.raises(RuntimeError, match="exploded"):
            list(ra)

    def bad_judge(program, run):
        if _length(program) == 8192:
            raise ValueError("judge exploded")
        return 1
    with RunAhead(Recorder(True), _programs(3), judge=bad_judge, judge_in=judge_in) as ra:
        it = iter(ra)
        next(it)
        with pytest.raises(ValueError, match="judge exploded"):
            next(it)


def test_the_judge_thread_blocks_the_stop_signals():
    masks = []

    def judge(program, run):
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return 0
    with RunAhead(Recorder(True), _programs(3), judge=judge, judge_in="thread") as ra:
        list(ra)
    assert signal.SIGINT not in masks[0] and signal.SIGTERM not in masks[0]      # the caller's thread
    assert all({signal.SIGINT, signal.SIGTERM} <= m for m in masks[1:]), masks   # the helper's


def test_the_judge_thread_is_born_with_the_stop_signals_blocked(monkeypatch):
    # blocked from its first instruction on, not once it runs: a Ctrl-C the kernel handed to the
    # helper in between would wake no one on the main thread
    from memspec.fuzz import pipeline
    at_birth = []
    work = pipeline._Judge._work

    def first_look(self):
        at_birth.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        work(self)
    monkeypatch.setattr(pipeline._Judge, "_work", first_look)
    with RunAhead(Recorder(True), _programs(3), judge=lambda program, run: 0, judge_in="thread") as ra:
        list(ra)
    assert at_birth and {signal.SIGINT, signal.SIGTERM} <= at_birth[0], at_birth
    caller = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.SIGINT not in caller and signal.SIGTERM not in caller      # the caller's mask is as it was


class _Stopped(Exception):
    pass


def test_a_stop_signal_interrupts_the_caller_at_once_while_a_judgement_is_slow():
    # SIGTERM sent to the process lands on the caller's thread (the helper blocks it), which was
    # waiting for the judge: it is interrupted at once, not when the judgement ends
    gate = threading.Event()

    def judge(program, run):
        if _length(program) == 8192:
            gate.wait(20)
        return 0

    def stop(signum, frame):
        raise _Stopped()
    old = signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        t0 = time.monotonic()
        with pytest.raises(_Stopped):
            with RunAhead(Recorder(True), _programs(4), judge=judge, judge_in="thread") as ra:
                timer.start()
                list(ra)
        assert time.monotonic() - t0 < 5
    finally:
        timer.cancel()
        gate.set()
        signal.signal(signal.SIGTERM, old)
