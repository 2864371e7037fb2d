"""Judging while the target runs: the next program runs on the target while this one is judged.

A target whose programs run in another process (``Target.runs_elsewhere``: the kernel's
child, a malloc library's child, a protocol server, an emulator) spends its run time
waiting on that process, so the harness can judge the previous program meanwhile, on the
other core: a stream of programs then takes max(run, judge) instead of their sum.  An
in-process target (the model, unicorn, KVM) holds the interpreter while it runs, and its
programs run one after the other as before.

Order and results are those of the plain loop: each program's run is the same call to
``target.run``, made one program early.  The target is used by one thread at a time: a
caller that needs it between two programs (to confirm or shrink a failure) takes
``RunAhead.target``, which waits for the run in flight first.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from memspec.program import Program
from memspec.records import RunResult

T = TypeVar("T")


class _Held:
    """The target, for use between runs: every method call waits for the run in flight."""

    def __init__(self, target: Any, lock: threading.Lock) -> None:
        self._target = target
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        lock = self._lock

        def held(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return value(*args, **kwargs)
        return held


class _InFlight:
    """One program's run on a daemon thread: an interrupted harness never waits for it (the
    target's processes are ended at exit, targets/children.py), a finished one hands its result
    or its exception over."""

    def __init__(self, run: Callable[[], RunResult]) -> None:
        self._run = run
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="memspec-run-ahead", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            self._result = self._run()
        except BaseException as e:      # noqa: BLE001 -- handed to the caller by result()
            self._error = e
        finally:
            self._done.set()

    def result(self) -> RunResult:
        self._done.wait()               # a signal (Ctrl-C, SIGTERM) interrupts the wait
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class RunAhead(Generic[T]):
    """Iterate ``(tag, program, run)``: ``run`` is None for a program ``skip`` says not to run.

    With ``ahead`` (default: ``target.runs_elsewhere``) the next runnable program is on the
    target while the caller handles the current one.  Leaving a ``with`` normally waits for a
    run in flight; leaving it by an exception (an interrupt) does not: the run is abandoned
    with its thread, and memspec's exit ends the target's processes."""

    def __init__(self, target: Any, programs: Iterable[tuple[T, Program]],
                 skip: Callable[[Program], bool] = lambda p: False, observe: str = "end",
                 ahead: bool | None = None) -> None:
        self._raw = target
        self._lock = threading.Lock()
        self.target = _Held(target, self._lock)
        self._programs = iter(programs)
        self._skip = skip
        self._observe = observe
        self.ahead = bool(getattr(target, "runs_elsewhere", False)) if ahead is None else ahead
        self._inflight: _InFlight | None = None

    def _run(self, program: Program) -> RunResult:
        with self._lock:
            return self._raw.run(program, observe=self._observe)

    def _next(self) -> tuple[T, Program, _InFlight | RunResult | None] | None:
        for tag, program in self._programs:
            if self._skip(program):
                return tag, program, None
            if not self.ahead:
                return tag, program, self._run(program)
            self._inflight = _InFlight(lambda: self._run(program))
            return tag, program, self._inflight
        return None

    def __iter__(self) -> Iterator[tuple[T, Program, RunResult | None]]:
        if not self.ahead:                   # the plain loop: run, hand over, then the next
            while (item := self._next()) is not None:
                yield item                   # type: ignore[misc]
            return
        pending = self._next()
        while pending is not None:
            tag, program, run = pending
            result = run.result() if isinstance(run, _InFlight) else run
            pending = self._next()           # the next program starts before this one is judged
            yield tag, program, result

    def close(self, wait: bool = True) -> None:
        """Stop; with ``wait``, after the run in flight has ended."""
        inflight, self._inflight = self._inflight, None
        self._programs = iter(())
        if wait and inflight is not None:
            inflight.thread.join()

    def __enter__(self) -> "RunAhead[T]":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(wait=exc_type is None)
