"""What the model allows for one call: an ``Expect`` names its clause and judges an outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from memspec.records import Outcome


class LayerModel:
    """What every layer's model offers the judge (duck-typed; this class documents it).

    ``expect(proc, name, args)`` -> ``Expect``: what the clause allows for this call now.
    ``apply(proc, name, args, outcome)``: adopt an allowed outcome as what happened.
    ``bind(proc, name, result, outcome)``: a named result was bound (e.g. fork's process).
    ``invariants()`` -> list of (clause ID, message) for every invariant broken now.
    """


@dataclass(frozen=True, slots=True, init=False)
class Expect:
    """The allowed outcomes of one call under one clause.

    ``allowed`` is either an exact tuple of outcomes or a predicate returning
    ``None`` when the outcome is allowed and a reason string when it is not.
    ``default`` is the outcome the model itself takes when it runs alone.
    ``impl_defined`` marks a choice the standard leaves to the implementation.
    """

    clause: str
    default: Outcome
    describe: str
    allowed: tuple[Outcome, ...] | None = None
    predicate: Callable[[Outcome], str | None] | None = None
    impl_defined: bool = False
    unknown: bool = False   # the model cannot decide: never a failure
    # when several clauses guard one call (a malloc result must be aligned *and*
    # disjoint from live blocks), the clause the observation broke; ``clause``
    # otherwise.  ``blame(observed)`` is only asked after ``judge`` refused it.
    blame_by: Callable[[Outcome], str] | None = None
    # every clause such a multi-clause check holds the outcome to (reported as exercised when it passes)
    covers: tuple[str, ...] = ()

    # made once per judged call or more: the slots are set through their descriptors (as
    # ``memspec.records.Outcome``), about a third of the frozen dataclass's __init__; frozen, equal and
    # hashed by value as before
    def __init__(self, clause: str, default: Outcome, describe: str, allowed: tuple[Outcome, ...] | None = None,
                 predicate: Callable[[Outcome], str | None] | None = None, impl_defined: bool = False,
                 unknown: bool = False, blame_by: Callable[[Outcome], str] | None = None,
                 covers: tuple[str, ...] = ()) -> None:
        _clause(self, clause)
        _default(self, default)
        _describe(self, describe)
        _allowed(self, allowed)
        _predicate(self, predicate)
        _impl_defined(self, impl_defined)
        _unknown(self, unknown)
        _blame_by(self, blame_by)
        _covers(self, covers)

    def blame(self, observed: Outcome) -> str:
        """The clause to report for a refused ``observed``."""
        return self.blame_by(observed) if self.blame_by is not None else self.clause

    def judge(self, observed: Outcome) -> str | None:
        """``None`` if ``observed`` is allowed, else why not."""
        if self.unknown:
            return None
        if self.predicate is not None:
            return self.predicate(observed)
        allowed = self.allowed if self.allowed is not None else (self.default,)
        for a in allowed:
            # an equal outcome (often the very object: a target's OK) is the same one, extra detail and all
            if observed is a or observed == a or _same(observed, a):
                return None
        return f"expected {self.describe}, observed {observed.describe()}"


_clause, _default, _describe, _allowed, _predicate, _impl_defined, _unknown, _blame_by, _covers = (
    Expect.__dict__[f].__set__ for f in ("clause", "default", "describe", "allowed", "predicate", "impl_defined",
                                         "unknown", "blame_by", "covers"))


def _same(observed: Outcome, expected: Outcome) -> bool:
    """Equal value, errno and signal; and every detail the expectation names (e.g. a
    page fault's error code) equal in the observation.  Extra observed detail is ignored."""
    if (observed.value, observed.errno, observed.signal) != (expected.value, expected.errno, expected.signal):
        return False
    if expected.detail:
        got = dict(observed.detail)
        return all(got.get(k) == v for k, v in expected.detail)
    return True


def exactly(clause: str, outcome: Outcome) -> Expect:
    return Expect(clause, outcome, outcome.describe(), (outcome,))


def errno(clause: str, name: str) -> Expect:
    return exactly(clause, Outcome(value=-1, errno=name))


def one_of(clause: str, outcomes: tuple[Outcome, ...], default: Outcome | None = None) -> Expect:
    return Expect(clause, default or outcomes[0], " or ".join(o.describe() for o in outcomes),
                  outcomes, impl_defined=True)


def or_errno(ok: Expect, clause: str, name: str) -> Expect:
    """``ok``, or the call fails with ``name`` under ``clause`` (a limit the model cannot pin down)."""
    def allowed(o: Outcome) -> str | None:
        return None if o.errno == name else ok.judge(o)
    return Expect(ok.clause, ok.default, f"{ok.describe} or {name} ({clause})", predicate=allowed,
                  impl_defined=True, blame_by=ok.blame_by, covers=tuple(dict.fromkeys(ok.covers + (ok.clause, clause))))
