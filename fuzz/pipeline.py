"""Judging beside the run: program k is judged while program k+1 runs on the target.

A target whose programs run in another process (``Target.runs_elsewhere``: the kernel's
child, a malloc library's child, a protocol server, an emulator) spends its run time
waiting on that process, so the harness can judge the previous program meanwhile, on the
other core: a stream of programs then takes max(run, judge) instead of their sum.  An
in-process target (the model, unicorn, KVM) holds the interpreter while it runs, and its
programs are run and judged one after the other as before.

Which thread does what.  Everything that touches the target -- ``target.run``, and so every
fork, pipe, wait and process-group registration (targets/children.py) -- stays on the
caller's (main) thread, as in the plain loop; only the judge, pure model code that starts
no process, runs on a helper thread.  That is what makes an interrupt safe:

* a child is never forked from a helper thread, so it never inherits a lock (the import
  lock of a module being imported, a stream's buffer lock) that another thread held at the
  fork and that no thread of the child will ever release;
* Ctrl-C and SIGTERM are blocked on the helper thread from its birth, so the kernel
  delivers them to the main thread, which is interrupted in whatever it waits on (the
  target's pipe, a wait for the judge) at once, instead of after the run the signal happened
  to land beside;
* every child is registered by the thread that forked it before that thread does anything
  else, so the exit's ``kill_all`` ends all of them; nothing forks after it.

(Overlap was made opt-in twice because the Ctrl-C test of ``memspec check`` on linux timed
out in full CI runs with it on.  The cause was most likely elsewhere: a run started as a
background job of a shell without job control inherits SIGINT ignored, Python then installs
no handler, and the interrupt is lost whatever the mode (reproduced so; docs/performance.md
has the evidence); the command line now installs its SIGINT handler itself.)

Order and results are those of the plain loop: each program's run is the same call to
``target.run`` in the same order, and each judgement the same call to ``judge``; only when
the judging happens changes.  A caller that uses the target between two programs (to
confirm or shrink a failure) does so on the main thread while the helper is idle: the next
judgement is handed over only when the caller asks for the next program.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections import deque
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from memspec.program import Program
from memspec.records import RunStatus

T = TypeVar("T")
J = TypeVar("J")

# signals the helper thread never takes: the main thread must see them (see the module doc)
_MAIN_ONLY = {signal.SIGINT, signal.SIGTERM}


class _Judge:
    """The helper thread: judges one (program, run) at a time and hands the judgement back."""

    def __init__(self, judge: Callable[[Program, Any], Any]) -> None:
        self._judge = judge
        self._jobs: queue.SimpleQueue[tuple[Program, Any] | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="memspec-judge", daemon=True)
        # a thread starts with its creator's signal mask: blocked here, the helper is born with the
        # stop signals blocked (blocking them in _work would leave a window after its start in
        # which the kernel may hand it a Ctrl-C, and the main thread would not be woken)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_ONLY)
        try:
            self.thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._result, self._error = self._judge(*job), None
            except BaseException as e:      # noqa: BLE001 -- handed to the caller by result()
                self._result, self._error = None, e
            self._done.set()

    def submit(self, program: Program, run: Any) -> None:
        self._done.clear()
        self._jobs.put((program, run))

    def result(self) -> Any:
        while not self._done.wait(0.25):    # the main thread takes Ctrl-C here too
            if not self.thread.is_alive():
                raise RuntimeError("the judge thread ended")
        if self._error is not None:
            raise self._error
        return self._result

    def stop(self) -> None:
        self._jobs.put(None)


class RunAhead(Generic[T]):
    """Iterate ``(tag, program, run, judgement)``: ``run`` and ``judgement`` are None for a program
    ``skip`` says not to run; ``judgement`` is ``judge(program, run)``, or None without ``judge``.

    With ``ahead`` and a ``judge``, program k+1 runs on the target (on this thread) while program
    k is judged in a second process (``judge_in="process"``, fuzz/judge_process.py: any target) or
    on a helper thread (``judge_in="thread"``: worth it only beside a target that runs programs
    in another process), or here (``judge_in="here"``: a target that can ``start`` a program in
    its own process and read its run later, ``finish()``).  The default (``judge_in=None``) is
    ``here`` where the target can -- its program runs in its own process while this one judges,
    and nothing crosses to a second process of ours -- and the second process elsewhere.  ``ahead``
    defaults to whether that pays: always but for the thread, for the thread on
    ``target.runs_elsewhere``.  Without, each
    program is run, then judged, when the caller asks for it: the plain loop.  Leaving early or
    by an exception (an interrupt) abandons the judgement in progress; no run is ever left in
    flight, since runs happen on the caller's thread."""

    def __init__(self, target: Any, programs: Iterable[tuple[T, Program]],
                 skip: Callable[[Program], bool] = lambda p: False, observe: str = "end",
                 ahead: bool | None = None, judge: Callable[[Program, Any], Any] | None = None,
                 judge_in: str | None = None, depth: int = 1) -> None:
        can_start = callable(getattr(target, "start", None))
        if judge_in is None:        # the target runs the next program in its own process meanwhile, or ours does
            judge_in = "here" if can_start else "process"
        if judge_in not in ("process", "thread", "here"):
            raise ValueError(f"judge_in is 'process', 'thread' or 'here', not {judge_in!r}")
        if judge_in == "here" and not can_start:
            raise ValueError(f"judge_in='here' needs a target that can start a program ({type(target).__name__} cannot)")
        if depth < 1:
            raise ValueError(f"depth is at least 1, not {depth}")
        self.judge_in = judge_in
        # programs run beyond the one whose judgement the caller waits for (the judge's process
        # takes them in order; the helper thread one at a time)
        self.depth = depth if judge_in == "process" else 1
        self.target = target
        self._programs = iter(programs)
        self._skip = skip
        self._observe = observe
        self._judge_fn = judge
        if ahead is None:
            # a judge in a second process runs beside any target's run; a helper thread only beside a
            # run that happens in another process (the interpreter lock is the run's otherwise)
            ahead = judge_in != "thread" or bool(getattr(target, "runs_elsewhere", False))
        self.ahead = ahead and judge is not None
        self._helper: Any = None             # a _Judge (thread) or a JudgeProcess

    def _next(self) -> tuple[T, Program, Any] | None:
        """The next program and its run (None where ``skip`` says not to run it)."""
        item = self._following()
        if item is None:
            return None
        tag, program = item
        return tag, program, None if self._skip(program) else self.target.run(program, observe=self._observe)

    def _judged(self, program: Program, run: Any) -> Any:
        return None if self._judge_fn is None or run is None else self._judge_fn(program, run)

    def __iter__(self) -> Iterator[tuple[T, Program, Any, Any]]:
        if not self.ahead:                   # the plain loop: run, judge, hand over, then the next
            while (item := self._next()) is not None:
                tag, program, run = item
                yield tag, program, run, self._judged(program, run)
            return
        if self.judge_in == "process":
            yield from self._queued()
            return
        if self.judge_in == "here":
            yield from self._here()
            return
        pending = self._next()
        first = True
        while pending is not None:
            tag, program, run = pending
            if run is None:
                pending = self._next()
                yield tag, program, None, None
                continue
            if first:
                # the first judgement on this thread: the judge's lazy imports and caches are made
                # here, not on the helper while a child is forked
                first = False
                judgement = self._judged(program, run)
                pending = self._next()
                yield tag, program, run, judgement
                continue
            if self._helper is None:
                self._helper = self._start_helper()
            self._helper.submit(program, run)
            pending = self._next()           # the next program runs while this one is judged
            yield tag, program, run, self._helper.result()

    def _queued(self) -> Iterator[tuple[T, Program, Any, Any]]:
        """The loop with the judge's process: up to ``depth`` programs run beyond the one the caller
        waits for, their runs queued to the judge in order; the caller gets each judgement in
        program order.  Programs vary: one whose judging is long sits beside several short runs,
        so the two sides meet max(run, judge) over the stream, not program by program.  Running
        ahead stops at a run that did not end cleanly (a crash, a hang, garbage), until the caller
        has taken every program before it: a caller that stops a dead target after N such runs
        must not have paid for more of them."""
        inflight: deque[tuple[T, Program, Any, Any]] = deque()
        first, more, hold = True, True, False
        while True:
            while more and not hold and len(inflight) <= self.depth:
                item = self._next()
                if item is None:
                    more = False
                    break
                tag, program, run = item
                judgement: Any = _ASKED
                if run is None:
                    judgement = None
                elif first:
                    # the first judgement here: the judge's lazy imports and caches are made before
                    # its process is forked, which then starts with them
                    first = False
                    judgement = self._judged(program, run)
                else:
                    if self._helper is None:
                        self._helper = self._start_helper()
                    self._helper.submit(program, run)
                inflight.append((tag, program, run, judgement))
                hold = run is not None and not _clean(run)
            if not inflight:
                return
            tag, program, run, judgement = inflight.popleft()
            if judgement is _ASKED:
                judgement = self._helper.result()
            if not inflight:
                hold = False
            yield tag, program, run, judgement

    def _here(self) -> Iterator[tuple[T, Program, Any, Any]]:
        """The loop that judges here: the next programs (up to ``HERE_AHEAD``) are started on the
        target -- their requests sent, run one after the other in the target's process -- while
        program k is judged on this thread; then k+1's run is read to its end and program k handed
        over.  The target reads any run still in flight to its end before it is asked anything
        else (a failure's re-runs: ``AgentTarget._settle``).  After a run that did not end cleanly
        nothing more is started until the caller has taken it (the one started before it was
        known may run)."""
        flight: deque[tuple[T, Program, Any]] = deque()
        current = self._next()
        while current is not None:
            tag, program, run = current
            clean = run is None or _clean(run)
            while clean and len(flight) < HERE_AHEAD:
                upcoming = self._following()
                if upcoming is None:
                    break
                t2, p2 = upcoming
                flight.append((t2, p2, None if self._skip(p2) else self.target.start(p2, observe=self._observe)))
            try:
                judgement = self._judged(program, run)
            except BaseException:
                for _t, _p, started in flight:      # nothing left running when the error leaves
                    if started is not None:
                        self.target.abandon(started)
                raise
            if flight:
                t2, p2, started = flight.popleft()
                following: Any = (t2, p2, None if started is None else started.finish())
            else:
                following = None if clean else _LATER      # after an unclean run: once it is handed over
            yield tag, program, run, judgement
            current = self._next() if following is _LATER else following

    def _following(self) -> tuple[T, Program] | None:
        """The next program, not run."""
        for tag, program in self._programs:
            return tag, program
        return None

    def _start_helper(self) -> Any:
        if self.judge_in == "thread":
            return _Judge(self._judge_fn)    # type: ignore[arg-type]
        from .judge_process import JudgeProcess
        return JudgeProcess(self._judge_fn)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop: no program after this one runs; the helper (thread or process) ends."""
        self._programs = iter(())
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.stop()

    def __enter__(self) -> "RunAhead[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# programs check and compare run beyond the one being judged (their programs are a fixed list; the
# fuzz loop's next input depends on the judgements, so it keeps 1): a program whose judging is long
# sits beside the runs of several short ones
RUN_AHEAD = 8

# a judgement asked of the judge's process, not yet taken
_ASKED = object()

# the next program of the loop that judges here, to be run once the caller has taken this one
_LATER = object()

# programs the loop that judges here keeps started on the target: the one that runs while a
# judgement is made, and one queued behind it, so the target is never idle waiting to be asked
HERE_AHEAD = 2


def _clean(run: Any) -> bool:
    """Did the run end cleanly?  (A run of several targets: each of them; a run that raised: no.)"""
    if isinstance(run, dict):
        return all(_clean(r) for r in run.values())
    return getattr(run, "status", None) is RunStatus.OK


__all__ = ["RUN_AHEAD", "RunAhead"]
