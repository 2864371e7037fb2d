"""fuzz/pipeline.RunAhead: the next program runs while this one is judged, with the plain loop's
order and results, the target used by one thread at a time, and skipped programs never run."""

from __future__ import annotations

import threading

import pytest

from memspec.fuzz.pipeline import RunAhead
from memspec.program import parse
from memspec.records import Outcome, RunResult


def _programs(n: int):
    return [(f"p{i}", parse(f"a = mmap(0, {4096 * (i + 1)}, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"))
            for i in range(n)]


class Recorder:
    """A fake target: answers each program with its length, records who ran what, and fails
    the test if two runs are ever in flight at once."""

    def __init__(self, runs_elsewhere: bool, gate: dict[int, threading.Event] | None = None) -> None:
        self.runs_elsewhere = runs_elsewhere
        self.started: dict[int, threading.Event] = {}
        self.threads: list[str] = []
        self.ran: list[int] = []
        self.inside = 0
        self.overlapped = False
        self.gate = gate or {}
        self._mu = threading.Lock()

    def run(self, program, observe="end"):
        length = program.calls[0].args[1].value
        with self._mu:
            self.inside += 1
            self.overlapped |= self.inside > 1
        self.started.setdefault(length, threading.Event()).set()
        if length in self.gate:
            self.gate[length].wait(5)
        self.threads.append(threading.current_thread().name)
        self.ran.append(length)
        with self._mu:
            self.inside -= 1
        return RunResult((Outcome(value=length),), ())

    def facts(self):
        return {"answer": 42}


@pytest.mark.parametrize("elsewhere", [True, False])
def test_same_order_and_results_as_the_plain_loop(elsewhere):
    t = Recorder(elsewhere)
    progs = _programs(6)
    with RunAhead(t, progs) as ra:
        got = [(tag, run.outcomes[0].value) for tag, _p, run in ra]
    assert got == [(f"p{i}", 4096 * (i + 1)) for i in range(6)]
    assert t.ran == [4096 * (i + 1) for i in range(6)]
    assert not t.overlapped
    # in-process targets run in the caller's thread; the others in the run-ahead thread
    assert all(name.startswith("memspec-run-ahead") == elsewhere for name in t.threads)


def test_the_next_program_runs_while_this_one_is_handled():
    t = Recorder(True)
    progs = _programs(4)
    with RunAhead(t, progs) as ra:
        for i, (_tag, _p, _run) in enumerate(ra):
            if i + 1 < len(progs):
                # still handling program i: program i + 1 is already on the target
                assert t.started.setdefault(4096 * (i + 2), threading.Event()).wait(5), f"program {i + 1} did not start"


def test_plain_loop_when_not_ahead():
    t = Recorder(True)
    progs = _programs(3)
    with RunAhead(t, progs, ahead=False) as ra:
        for i, _ in enumerate(ra):
            # nothing runs before the caller asks for it
            assert 4096 * (i + 2) not in t.started


def test_skipped_programs_are_never_run():
    t = Recorder(True)
    progs = _programs(5)
    skip = {"p1", "p3"}
    with RunAhead(t, progs, skip=lambda p: p.calls[0].args[1].value in (8192, 16384)) as ra:
        got = [(tag, run) for tag, _p, run in ra]
    assert [tag for tag, run in got if run is None] == sorted(skip)
    assert t.ran == [4096, 12288, 20480]


def test_the_held_target_waits_for_the_run_in_flight():
    gate = {8192: threading.Event()}
    t = Recorder(True, gate)
    progs = _programs(3)
    with RunAhead(t, progs) as ra:
        it = iter(ra)
        next(it)                       # program 0 judged; program 1 is on the target and held by the gate
        assert t.started.setdefault(8192, threading.Event()).wait(5)
        done = threading.Event()

        def rerun():
            ra.target.run(progs[0][1])     # e.g. confirming program 0's failure
            done.set()
        th = threading.Thread(target=rerun)
        th.start()
        assert not done.wait(0.2), "the held target ran beside the run in flight"
        gate[8192].set()
        assert done.wait(5)
        th.join()
        assert ra.target.facts() == {"answer": 42}
        list(it)
    assert not t.overlapped
    assert t.ran == [4096, 8192, 4096, 12288]


def test_leaving_early_waits_for_the_run_in_flight():
    gate = {8192: threading.Event()}
    t = Recorder(True, gate)
    ra = RunAhead(t, _programs(4))
    for _ in ra:
        break                          # program 1 is in flight
    threading.Timer(0.1, gate[8192].set).start()
    ra.close()
    assert t.ran == [4096, 8192]       # finished, and nothing after it started


def test_an_error_in_the_run_reaches_the_caller():
    class Broken(Recorder):
        def run(self, program, observe="end"):
            raise RuntimeError("target exploded")
    with RunAhead(Broken(True), _programs(2)) as ra:
        with pytest.raises(RuntimeError, match="exploded"):
            list(ra)


def test_leaving_by_an_interrupt_does_not_wait_for_the_run_in_flight():
    gate = {8192: threading.Event()}
    t = Recorder(True, gate)
    with pytest.raises(KeyboardInterrupt):
        with RunAhead(t, _programs(4)) as ra:
            for _ in ra:
                assert t.started.setdefault(8192, threading.Event()).wait(5)
                inflight = ra._inflight
                raise KeyboardInterrupt          # program 1 is still held by the gate
    # the harness went on (to write its partial report) with the run still in flight
    assert inflight is not None and inflight.thread.is_alive() and inflight.thread.daemon
    gate[8192].set()
    inflight.thread.join(5)
    assert t.ran == [4096, 8192]                 # and nothing after it was started
