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
from concurrent.futures import Future, ThreadPoolExecutor
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


class RunAhead(Generic[T]):
    """Iterate ``(tag, program, run)``: ``run`` is None for a program ``skip`` says not to run.

    With ``ahead`` (default: ``target.runs_elsewhere``) the next runnable program is on the
    target while the caller handles the current one; ``close()`` (or leaving a ``with``)
    waits for a run in flight and stops."""

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
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="memspec-run-ahead") if self.ahead else None

    def _run(self, program: Program) -> RunResult:
        with self._lock:
            return self._raw.run(program, observe=self._observe)

    def _next(self) -> tuple[T, Program, Future[RunResult] | RunResult | None] | None:
        for tag, program in self._programs:
            if self._skip(program):
                return tag, program, None
            if self._pool is None:
                return tag, program, self._run(program)
            return tag, program, self._pool.submit(self._run, program)
        return None

    def __iter__(self) -> Iterator[tuple[T, Program, RunResult | None]]:
        if self._pool is None:               # the plain loop: run, hand over, then the next
            while (item := self._next()) is not None:
                yield item                   # type: ignore[misc]
            return
        pending = self._next()
        while pending is not None:
            tag, program, run = pending
            result = run.result() if isinstance(run, Future) else run
            pending = self._next()           # the next program starts before this one is judged
            yield tag, program, result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "RunAhead[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
