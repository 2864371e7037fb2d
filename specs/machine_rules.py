"""What every layer's state machine shares: rules a target cannot run are removed, and a broken law
of the model is named in the failure.

* ``needs(*calls)`` marks a rule with the calls it makes (``any_of=True``: it draws among them, so
  one is enough); ``remove_unrunnable`` deletes, once the class is built, every rule the target
  cannot run -- a precondition or an early ``return`` would leave Hypothesis drawing steps that do
  nothing.
* ``law_invariants`` adds one ``@invariant`` per law, named after it, so a failure says which law
  broke: a law is the clauses of the model's ``invariants()`` that belong to it; the model's
  ``invariants()`` is taken once per step and shared by the laws.
* ``law_of`` names the law of the model's state (``model/invariants.CHECKS``: one function per law)
  behind a clause, for a machine that checks all of them at once (the os machine: over each step's
  footprint, which one check of every law takes at a time).
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis.stateful import invariant


def needs(*calls: str, any_of: bool = False) -> Callable[[Any], Any]:
    """Mark a rule with the calls it makes: all of them (default), or ``any_of`` them."""
    def mark(f: Any) -> Any:
        f._machine_needs = (frozenset(calls), any_of)
        return f
    return mark


def runnable(calls: frozenset[str] | None, *names: str) -> list[str]:
    """The ``names`` a target with ``calls`` (None: all) can run, in order."""
    return [n for n in names if calls is None or n in calls]


def remove_unrunnable(cls: type, calls: frozenset[str] | None, also: tuple[str, ...] = ()) -> list[str]:
    """Delete from ``cls`` the rules the target cannot run (and the rules named in ``also``, which
    need a machine fact the target lacks); returns the names removed."""
    gone = []
    for attr, value in list(vars(cls).items()):
        mark = getattr(value, "_machine_needs", None)
        if attr in also:
            gone.append(attr)
        elif mark is not None and calls is not None:
            names, any_of = mark
            if not ((names & calls) if any_of else names <= calls):
                gone.append(attr)
    for attr in gone:
        delattr(cls, attr)
    return gone


def _fail(machine: Any, bad: list[tuple[str, str]]) -> None:
    if bad:
        cid, msg = bad[0]
        stepper = machine.stepper
        index = max(len(stepper.calls) - 1, 0)
        raise stepper.failure(cid, stepper.program(), index, "the invariant holds", msg, "model invariant broken")


def law_of(model: Any, clause: str, checks: tuple[Callable[..., list[tuple[str, str]]], ...]) -> str:
    """The name of the law (the first check of the model's state in ``checks``) that reports ``clause``
    on ``model`` now, recounted over the whole state: a failure found by one check of all the laws
    says which law broke."""
    for check in checks:
        if any(cid == clause for cid, _ in check(model)):
            return check.__name__
    return "no single law (the footprint check only)"


def law_invariants(cls: type, laws: dict[str, Callable[[str], bool]]) -> None:
    """One named invariant per law: the broken invariants of ``model.invariants()`` whose clause the
    law's predicate accepts.  A clause no law accepts is reported by the last law."""
    names = list(laws)

    def broken(self: Any) -> list[tuple[str, str]]:
        key = (id(self.stepper), len(self.stepper.calls))
        cache = getattr(self, "_laws_cache", None)
        if cache is None or cache[0] != key:
            cache = (key, list(self.model.invariants()))
            self._laws_cache = cache
        return cache[1]

    for i, name in enumerate(names):
        def inv(self: Any, i: int = i) -> None:
            mine = laws[names[i]]
            last = i == len(names) - 1
            _fail(self, [(cid, msg) for cid, msg in broken(self)
                         if mine(cid) or last and not any(laws[n](cid) for n in names)])
        inv.__name__ = inv.__qualname__ = name
        setattr(cls, name, invariant()(inv))


__all__ = ["needs", "runnable", "remove_unrunnable", "law_of", "law_invariants"]
