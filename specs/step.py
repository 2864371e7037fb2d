"""One judged step: expect -> judge -> apply -> invariants, as the judge and every state machine
take it.

``judge_call`` is the step on an outcome already observed (the judge replays a whole run through
it); ``Stepper`` runs the call on a live session first (the state machines), turns a refusal by
the target's harness into an ``unsupported`` step that the run goes on past, a dead target into a
``memspec.target.alive`` failure, and a disagreement into a ``ConformanceFailure`` carrying the
program so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from memspec.errors import SessionFailed
from memspec.program import Call, Program, bind_result, eval_args, format_call
from memspec.records import Check, Outcome, RunStatus, Verdict

from memspec.model.expect import Expect

from .catalogue import CATALOGUE, get as clause
from .failures import ConformanceFailure


def judge_call(model: Any, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome,
               index: int) -> list[Check]:
    """Judge ``observed`` as the outcome of ``call`` and, if the model allows it, adopt it.

    Returns the checks made: a single ``FAIL`` (blamed on the clause the observation broke; the
    model is left as it was) or the passing check of the call's clause and of every other clause
    the same check held the target to."""
    exp, bad = judge_outcome(model, proc, call, args, observed, index)
    if bad is not None:
        return [bad]
    seen = observed.describe()
    verdict = verdict_of(exp)
    checks = [Check(exp.clause, verdict, index, exp.describe, seen)]
    if exp.covers:
        checks += [Check(other, verdict, index, exp.describe, seen) for other in exp.covers if other != exp.clause]
    return checks


def judge_outcome(model: Any, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome,
                  index: int) -> tuple[Expect, Check | None]:
    """``judge_call``'s work without its passing checks: (the model's ``Expect``, the failing check or
    None).  Allowed, the outcome is adopted (``apply``, ``bind``); the passing checks are the
    ``Expect``'s clause and its ``covers``, each with ``verdict_of(exp)`` (every clause named is
    catalogued: looked up here)."""
    name = call.name
    exp = model.expect(proc, name, args)
    if exp.clause not in CATALOGUE:
        clause(exp.clause)   # every rule names a catalogued clause: a KeyError if not
    why = exp.judge(observed)
    if why is not None:
        return exp, Check(clause(exp.blame(observed)).id, Verdict.FAIL, index, exp.describe, observed.describe(), why)
    for other in exp.covers:
        if other not in CATALOGUE:
            clause(other)
    model.apply(proc, name, args, observed)
    model.bind(proc, name, call.result, observed)
    return exp, None


def verdict_of(exp: Expect) -> Verdict:
    """The verdict of an outcome ``exp`` allows."""
    return Verdict.UNKNOWN if exp.unknown else Verdict.IMPL_DEFINED if exp.impl_defined else Verdict.PASS


def invariant_failure(model: Any, index: int, full: bool = True) -> Check | None:
    """The first of the model's own invariants broken now, as a failing check.

    ``full``: every invariant recounted over the whole state (at checkpoints and at the end of a
    program); otherwise, after a step, each over the footprint of the steps since the last check,
    where the model offers that (``incremental_invariants``), else the full recount."""
    bad = model.invariants() if full or not getattr(type(model), "incremental_invariants", False) \
        else model.invariants(full=False)
    return invariant_check(bad, index)


def invariant_check(bad: list[tuple[str, str]], index: int) -> Check | None:
    """The first of ``bad`` (a model's broken invariants: clause, message) as a failing check."""
    for cid, msg in bad:
        return Check(cid, Verdict.FAIL, index, "the invariant holds", msg, "model invariant broken", at="invariant")
    return None


@dataclass
class Stepper:
    """A state machine's live session and the program it has run so far.

    ``step(call)`` runs one call on the target and judges it; it returns the outcome, or ``None``
    when the target's harness refused the step (counted in ``unsupported`` under the clause the
    step would have exercised, left out of the program: nothing happened on the target, so the
    model does not adopt it either)."""

    model: Any
    session: Any
    note: Callable[[str], None] = lambda msg: None
    unsupported: dict[str, int] = field(default_factory=dict)
    invariants: bool = False
    failure: type[ConformanceFailure] = ConformanceFailure
    calls: list[Call] = field(default_factory=list)
    env: dict[str, int] = field(default_factory=dict)

    def program(self, extra: tuple[Call, ...] = ()) -> Program:
        return Program(tuple(self.calls) + extra)

    def step(self, call: Call, args: tuple[int | str, ...] | None = None) -> Outcome | None:
        proc = call.proc or "main"
        args = eval_args(call, self.env) if args is None else args
        try:
            observed = self.session.call(call, args)
        except SessionFailed as e:
            if e.status is RunStatus.REFUSED:
                cid = self.model.expect(proc, call.name, args).clause
                self.unsupported[cid] = self.unsupported.get(cid, 0) + 1
                self.note(f"unsupported (refused by the target): {format_call(call)}: {e.message}")
                return None
            raise self.failure("memspec.target.alive", self.program((call,)), len(self.calls), "an answer",
                               e.message, e.status.value) from None
        self.calls.append(call)
        index = len(self.calls) - 1
        bad = self.judged(proc, call, args, observed, index)
        if bad is None and self.invariants:
            bad = invariant_failure(self.model, index, full=False)
        if bad is not None:
            raise self.failure(bad.clause, self.program(), index, bad.expected, bad.observed, bad.note)
        bind_result(self.env, call, observed.value)
        return observed

    def judged(self, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome, index: int) -> Check | None:
        """The call's outcome judged (and adopted by the model if allowed): the failing check, or None."""
        checks = judge_call(self.model, proc, call, args, observed, index)
        return checks[0] if checks[0].verdict is Verdict.FAIL else None

    def observe(self) -> Any:
        """The target's observation of its state (its memory maps), or None when its harness
        refused to give one; a target that crashes or hangs while observed is a failure of
        ``memspec.target.alive`` at the last call, as it is in a call."""
        try:
            return self.session.observe()
        except SessionFailed as e:
            if e.status is RunStatus.REFUSED:
                self.note(f"unsupported (refused by the target): observing its state: {e.message}")
                return None
            raise self.failure("memspec.target.alive", self.program(), max(len(self.calls) - 1, 0),
                               "its memory maps", e.message, e.status.value) from None

    def check_invariants(self, full: bool = False) -> None:
        """The model's invariants after the last step (a state machine's ``@invariant``): over the
        steps' footprint, or (``full``, at the end of a run) recounted over the whole state."""
        index = max(len(self.calls) - 1, 0)
        bad = invariant_failure(self.model, index, full)
        if bad is not None:
            raise self.failure(bad.clause, self.program(), index, bad.expected, bad.observed, bad.note)


__all__ = ["judge_call", "judge_outcome", "verdict_of", "invariant_failure", "invariant_check", "Stepper"]
