"""What every target provides: run a program (in one go), or a step-by-step session."""

from __future__ import annotations

import abc
import contextlib
import signal
import threading
from typing import Any, Generator, Iterator

from memspec.calls import gated_calls, layer_calls
from memspec.errors import SessionFailed
from memspec.program import Call, Program, bind_result, eval_args
from memspec.records import Observation, Outcome, RunResult, RunStatus
from memspec.streams import RunReader

__all__ = ["Session", "SessionFailed", "Stepwise", "Target", "negotiate", "run_to_end"]


class Session(abc.ABC):
    """A live target, one call at a time (state machines drive this)."""

    @abc.abstractmethod
    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome: ...

    @abc.abstractmethod
    def observe(self) -> Observation: ...

    def close(self) -> None:
        pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Target(abc.ABC):
    name: str = "?"
    layers: tuple[str, ...] = ("os",)
    # the calls this target implements (None: every call of its layers); programs for it
    # are generated from these only, and the rest is reported as not applicable
    calls: frozenset[str] | None = None
    # optional parts of a layer this target implements (``CallSpec.capability``, e.g.
    # "segmentation"): calls needing a capability a target does not declare are taken out
    # of its ``calls``, so programs using them are not applicable to it (never passed)
    capabilities: frozenset[str] = frozenset()
    timeout: float = 10.0
    # the program runs in this process (the model, a py: target): ``run`` interrupts it after
    # ``timeout`` seconds (SIGALRM, main thread only) and reports a hang, as an out-of-process
    # target's harness does; None: decided where the target is loaded (pyload: not runs_elsewhere)
    time_limited_in_process: bool | None = None
    # the program runs in another process (a child, a server, an emulator): while it runs the
    # harness only waits, so it may judge the previous program meanwhile (fuzz/pipeline.py)
    runs_elsewhere: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.calls = negotiate(cls.layers, cls.calls, cls.capabilities)

    def __init__(self, timeout: float = 10.0, **options: Any) -> None:
        """Every target takes ``timeout`` (seconds per program); others ignore unknown options."""
        self.timeout = timeout

    def facts(self) -> dict[str, Any]:
        """Machine facts the model needs to judge this target (see specs.judge.config_from_facts)."""
        return {}

    def unsupported(self) -> list[str]:
        """Optional features this target lacks (found by probing); listed in reports, never passed."""
        return []

    @abc.abstractmethod
    def session(self, layer: str = "os") -> Session: ...

    def run(self, program: Program, observe: str = "end") -> RunResult:
        """Run a whole program; observe state after the last call ("end") or after every call ("each")."""
        outcomes: list[Outcome] = []
        observations: list[tuple[int, Observation]] = []
        env: dict[str, int] = {}
        limit = self.timeout if self.time_limited_in_process else None
        try:
            with _time_limit(limit), self.session(program.layer) as s:
                for i, c in enumerate(program.calls):
                    o = s.call(c, eval_args(c, env))
                    outcomes.append(o)
                    bind_result(env, c, o.value)
                    if observe == "each" or (observe == "end" and i == len(program.calls) - 1):
                        observations.append((i, s.observe()))
        except SessionFailed as e:
            return RunResult(tuple(outcomes), tuple(observations), e.status, e.message)
        except _Overtime:
            return RunResult(tuple(outcomes), tuple(observations), RunStatus.HANG,
                             f"no answer within {limit:g} s (call {len(outcomes)} of the program was interrupted)")
        return RunResult(tuple(outcomes), tuple(observations))

    def close(self) -> None:
        pass




# A run of an in-process target, step by step: a generator that appends each call's outcome to the
# list it was given, yields now and then (after a chunk of calls), and returns the RunResult.
Steps = Generator[None, None, RunResult]


def run_to_end(steps: Steps) -> RunResult:
    """The whole run of ``steps`` in one go (a target's ``run``)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


class Stepwise(RunReader):
    """A run of an in-process target read as it goes (the same reading as ``AgentStream``'s:
    ``memspec.streams.RunReader``): ``outcome(i)`` runs the program until call i has its outcome.
    The judge reads it call by call, and ``JudgeProcess.judge_stream`` forwards it a batch at a
    time to a judge in another process, which judges the first calls while this process runs
    the rest.  ``steps`` appends to ``outcomes`` (and, if it reports checkpoints as it goes, to
    ``observations``); checkpoints only its result holds are taken at the end."""

    def __init__(self, steps: Steps, outcomes: list[Outcome],
                 observations: list[tuple[int, Observation]] | None = None) -> None:
        super().__init__(outcomes, observations)
        self._steps = steps

    def _more(self) -> None:
        try:
            next(self._steps)
        except StopIteration as stop:
            self.result = stop.value
            have = len(self.observations)
            if have < len(self.result.observations):
                self.observations.extend(self.result.observations[have:])


class _Overtime(BaseException):
    """The time limit of an in-process program ran out (a BaseException: a target's own
    ``except Exception`` does not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after ``seconds`` with ``_Overtime`` (a real-time timer, SIGALRM);
    nothing off the main thread, where no signal handler runs, or without a limit."""
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_alarm(signum: int, frame: Any) -> None:
        raise _Overtime()

    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def negotiate(layers: tuple[str, ...], calls: frozenset[str] | None,
              capabilities: frozenset[str]) -> frozenset[str] | None:
    """The calls a target with these layers, declared calls (None: all of its layers') and
    capabilities may be given: without the calls of capabilities it lacks.  A layer with
    optional parts always gets an explicit set (generators read None as the core calls)."""
    specs = [c for layer in layers for c in layer_calls(layer)]
    if calls is None and not any(c.capability for c in specs):
        return None
    mine = frozenset(c.name for c in specs) if calls is None else calls
    return mine - gated_calls(capabilities)
