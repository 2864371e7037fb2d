"""fuzz/judge_process.JudgeProcess: the judge in a second process gives the judgement the judge gives
here (finished runs and runs forwarded as they go, on every layer), hands back what the judge raised,
holds none of the parent's descriptors (a target's pipe held there would never see its end), is
never a hang when it dies, and ends with its parent's close or interrupt; targets.base.Stepwise
reads an in-process target's run as it goes, with the run's own result."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from memspec.fuzz.judge_process import JudgeDied, JudgeProcess
from memspec.fuzz.layers import random_programs
from memspec.fuzz.pipeline import RunAhead
from memspec.program import parse
from memspec.records import Outcome, RunResult, RunStatus
from memspec.specs.judge import judge
from memspec.targets.base import Stepwise, run_to_end
from memspec.targets.model import ModelTarget

from ..conftest import missing_peer


def _chunked(run: RunResult, size: int) -> Stepwise:
    """A finished run read back as an in-process target's stream gives it: ``size`` calls a step."""
    out: list[Outcome] = []
    seen: list = []

    def steps():
        for k in range(0, len(run.outcomes), size):
            out.extend(run.outcomes[k:k + size])
            seen.extend((i, o) for i, o in run.observations if k <= i < k + size)
            yield
        return run
    return Stepwise(steps(), out, seen)


def _model_runs(layer: str, n: int, seed: int):
    t = ModelTarget()
    facts = t.facts()
    for _, p in random_programs(layer, n, seed, t.calls, facts):
        yield p, t.run(p, observe="each" if seed % 2 else "end"), facts


@pytest.mark.parametrize("layer", ["os", "hw", "phys", "virt"])
def test_the_same_judgement_as_here_finished_or_forwarded(layer):
    cases = list(_model_runs(layer, 25, 3))
    with JudgeProcess(lambda p, r: judge(p, r, "model", cases[0][2])) as jp:
        for p, run, facts in cases:
            here = judge(p, run, "model", facts)
            jp.submit(p, run)
            assert jp.result() == here
            for size in (1, 7, 1000):
                assert jp.judge_stream(p, _chunked(run, size), batch=5) == here
            # the stream made after the job is sent; batches growing from 8 to the default
            assert jp.judge_stream(p, lambda: _chunked(run, 3)) == here


def test_a_stream_that_does_not_start_raises_here_and_the_process_goes_on():
    cases = list(_model_runs("os", 4, 5))
    with JudgeProcess(lambda p, r: judge(p, r, "model", cases[0][2])) as jp:
        def broken():
            raise OSError("no target process")
        for p, run, facts in cases:
            with pytest.raises(OSError, match="no target process"):
                jp.judge_stream(p, broken)
            assert jp.judge_stream(p, lambda: _chunked(run, 2)) == judge(p, run, "model", facts)
            jp.submit(p, run)
            assert jp.result() == judge(p, run, "model", facts)


def test_a_failing_judgement_and_a_run_that_ended_early_cross_too():
    t = ModelTarget()
    facts = t.facts()
    p, run = next((p, t.run(p)) for _, p in random_programs("os", 50, 1, t.calls, facts) if len(p.calls) > 3)
    # the target stopped at call 3, then lied at call 2: the judgement fails and says the run crashed
    lied = RunResult((run.outcomes[0], Outcome(errno="ENOMEM") if run.outcomes[1].errno is None else Outcome(value=7)),
                     (), RunStatus.CRASH, "killed")
    here = judge(p, lied, "model", facts)
    assert here.failure is not None and here.status is RunStatus.CRASH
    with JudgeProcess(lambda p, r: judge(p, r, "model", facts)) as jp:
        jp.submit(p, lied)
        assert jp.result() == here
        assert jp.judge_stream(p, _chunked(lied, 1)) == here
        assert jp.judge_stream(p, _chunked(run, 2)) == judge(p, run, "model", facts)    # and it goes on


def test_what_the_judge_raises_is_raised_here_and_the_process_goes_on():
    def bad(p, r):
        if len(r.outcomes) == 2:
            raise ValueError("judge exploded")
        if len(r.outcomes) == 3:
            return threading.Lock()         # a judgement that cannot cross processes
        return len(r.outcomes)
    p = next(p for _, p in random_programs("os", 5, 0, None, {}))
    with JudgeProcess(bad) as jp:
        for n, expect in ((2, ValueError), (3, RuntimeError)):
            jp.submit(p, RunResult((Outcome(),) * n))
            with pytest.raises(expect):
                jp.result()
        jp.submit(p, RunResult((Outcome(),) * 5))
        assert jp.result() == 5


class _Node:
    def __init__(self) -> None:
        self.me = self          # a cycle: only the collector frees it


def test_the_collector_waits_for_the_end_of_a_job_and_then_frees_its_cycles():
    """A judgement's own objects are not walked by the collector while it runs; the cycles a job
    left are gone by the next job (the process does not grow job after job)."""
    import gc

    def judge_(p, r):
        made = [_Node() for _ in range(20_000)]          # garbage in cycles once this returns
        live = sum(1 for o in gc.get_objects() if type(o) is _Node)
        return (gc.isenabled(), live - len(made))
    p = next(p for _, p in random_programs("os", 5, 0, None, {}))
    with JudgeProcess(judge_) as jp:
        for _ in range(5):
            jp.submit(p, RunResult((Outcome(),)))
            enabled, left_over = jp.result()
            assert not enabled                  # no collection inside a job
            assert left_over == 0               # the last job's 20,000 cycles were collected
    assert gc.isenabled()                       # this process keeps its collector


def test_a_judge_process_that_dies_is_an_error_not_a_hang():
    p = next(p for _, p in random_programs("os", 5, 0, None, {}))
    with JudgeProcess(lambda p, r: os._exit(9)) as jp:
        jp.submit(p, RunResult(()))
        t0 = time.monotonic()
        with pytest.raises(JudgeDied):
            jp.result()
        assert time.monotonic() - t0 < 10


def test_the_process_holds_none_of_the_parents_descriptors():
    # a pipe made before the judge process: once this side closes its write end, the reader sees
    # the end -- the judge process does not hold a copy that would keep it open
    r, w = os.pipe()
    try:
        with JudgeProcess(lambda p, run: sorted(int(f) for f in os.listdir("/proc/self/fd"))) as jp:
            p = next(p for _, p in random_programs("os", 5, 0, None, {}))
            jp.submit(p, RunResult(()))
            theirs = jp.result()
            assert w not in theirs and r not in theirs
            os.close(w)
            w = -1
            assert os.read(r, 1) == b""
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_close_ends_the_process_and_ctrl_c_reaches_the_parent_at_once():
    gate = 20.0

    def slow(p, r):
        time.sleep(gate)
        return 0
    jp = JudgeProcess(slow)
    pid = jp.pid
    p = next(p for _, p in random_programs("os", 5, 0, None, {}))
    jp.submit(p, RunResult(()))
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            jp.result()
        assert time.monotonic() - t0 < 5
    finally:
        timer.cancel()
        jp.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_run_ahead_judges_in_another_process_with_the_plain_loops_results():
    t = ModelTarget()
    facts = t.facts()
    programs = list(random_programs("os", 12, 5, t.calls, facts))

    def where(p, r):
        return os.getpid(), judge(p, r, "model", facts)
    got = {}
    for ahead in (True, False):
        with RunAhead(t, programs, judge=where, ahead=ahead) as ra:
            got[ahead] = [(tag, run, j) for tag, _p, run, j in ra]
    assert [(tag, run, j[1]) for tag, run, j in got[True]] == [(tag, run, j[1]) for tag, run, j in got[False]]
    pids = [j[0] for _, _, j in got[True]]
    assert pids[0] == os.getpid() and all(pid != os.getpid() for pid in pids[1:])


def test_stepwise_reads_a_run_as_it_goes_and_ends_with_its_result():
    t = ModelTarget()
    p, run = next((p, t.run(p, observe="each")) for _, p in random_programs("os", 30, 2, t.calls, {})
                  if len(p.calls) >= 6)
    s = _chunked(run, 2)
    assert s.outcome(0) == run.outcomes[0] and len(s.outcomes) == 2
    assert s.observation(1) == run.observation_after(1)     # needs call 2's outcome, or the end
    assert s.outcome(len(run.outcomes)) is None and s.finish() is run
    steps = _chunked(run, 3)._steps
    assert run_to_end(steps) is run


@pytest.mark.parametrize("name", ["qemu", "kvm"])
def test_in_process_targets_stream_what_they_run(name):
    from memspec.errors import TargetError
    from memspec.targets.registry import make_target
    try:
        t = make_target(name)
    except (TargetError, ImportError, OSError) as e:
        missing_peer(name, f"the {name} target could not start here: {e}")
    try:
        facts = t.facts()
        progs = [p for _, p in random_programs("hw", 15, 4, t.calls, facts)]
        # and one long enough for many chunks (a stream's KVM_RUN holds a few hundred calls)
        steps = ["set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW)", "set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW)",
                 "set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW)", "mov_cr3(0x200000)"]
        for i in range(400):
            steps += [f"set_pte(0x203000, 5, {0x300000 + 0x1000 * (i % 8):#x}, PTE_P|PTE_RW)", "invlpg(0x405008)",
                      f"v{i} = access(0x405008, ACC_READ, 0)"]
        progs.append(parse("\n".join(steps) + "\n"))
        with JudgeProcess(lambda p, r: judge(p, r, t.name, facts)) as jp:
            for p in progs:
                run = t.run(p)
                s = t.stream(p)
                if len(p.calls) > 1:
                    s.outcome(0)
                assert s.finish() == run
                assert jp.judge_stream(p, t.stream(p), batch=3) == judge(p, run, t.name, facts)
    finally:
        t.close()


def test_a_judgement_crosses_without_the_runs_own_outcomes_and_gets_them_back():
    import pickle
    t = ModelTarget()
    facts = t.facts()
    for _, p in random_programs("os", 10, 8, t.calls, facts):
        run = t.run(p)
        j = judge(p, run, "model", facts)
        light = j.detached(run.outcomes)
        if run.outcomes:
            assert len(pickle.dumps(light)) < len(pickle.dumps(j))
        back = pickle.loads(pickle.dumps(light)).attach(pickle.loads(pickle.dumps(run.outcomes)))
        assert back == j


class _Counting:
    """A fake target: program k answers k; ``bad`` ones crash; records what ran, in order."""

    runs_elsewhere = False

    def __init__(self, bad=()):
        self.ran: list[int] = []
        self.bad = set(bad)

    def run(self, program, observe="end"):
        k = len(self.ran)
        self.ran.append(k)
        if k in self.bad:
            return RunResult((), (), RunStatus.CRASH, "died")
        return RunResult((Outcome(value=k),))


def _few(n):
    p = next(p for _, p in random_programs("os", 5, 0, None, {}))
    return [(f"p{k}", p) for k in range(n)]


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_run_ahead_runs_up_to_depth_programs_beyond_the_one_judged_in_order(depth):
    t = _Counting()
    seen = []
    with RunAhead(t, _few(12), judge=lambda p, r: r.outcomes[0].value * 10, depth=depth) as ra:
        for k, (tag, _p, run, j) in enumerate(ra):
            seen.append((tag, j))
            assert len(t.ran) == min(12, k + 1 + depth)       # never more, and the queue kept full
    assert seen == [(f"p{k}", k * 10) for k in range(12)]


def test_running_ahead_stops_at_a_run_that_did_not_end_cleanly():
    # a caller that stops a dead target after it sees a crash must not have paid for the runs after it
    t = _Counting(bad={2})
    with RunAhead(t, _few(10), judge=lambda p, r: r.status, depth=6) as ra:
        for tag, _p, run, j in ra:
            if j is RunStatus.CRASH:
                assert t.ran == [0, 1, 2]
                break
    assert t.ran == [0, 1, 2]


def test_many_queued_jobs_with_large_judgements_do_not_deadlock():
    # answers larger than the pipe, asked for before any is read: the parent takes them while it sends
    big = 3 << 20
    p = next(p for _, p in random_programs("os", 5, 0, None, {}))
    with JudgeProcess(lambda p, r: (r.outcomes[0].value, b"x" * big)) as jp:
        for k in range(6):
            jp.submit(p, RunResult((Outcome(value=k),) + (Outcome(value=1),) * 50_000))
        got = [jp.result() for _ in range(6)]
    assert [k for k, _ in got] == list(range(6)) and all(len(b) == big for _, b in got)
