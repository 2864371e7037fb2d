"""What every layer's state machine shares: rules a target cannot run are removed, and a broken law
of the model is named in the failure.

* ``needs(*calls)`` marks a rule with the calls it makes (``any_of=True``: it draws among them, so
  one is enough); ``remove_unrunnable`` deletes, once the class is built, every rule the target
  cannot run -- a precondition or an early ``return`` would leave Hypothesis drawing steps that do
  nothing.
* ``law_invariants`` adds one ``@invariant`` per law, named after it, so a failure says which law
  broke: a law is the clauses of the model's ``invariants()`` that belong to it; the model's
  ``invariants()`` is taken once per step and shared by the laws.
* ``SwarmRules`` chooses each step's rule with one draw: the rules an example may run are drawn
  once, when it starts (swarm testing, as Hypothesis does it: a share of the rules switched off for
  the whole example), and a step draws a rule, and one more only if that one is switched off or
  not valid now.
  Hypothesis' own choice asks a rule's switch afresh each time it picks it, and picks again when the
  rule is off or invalid (an empty bundle, a failed precondition): about ten choices a step on the
  os machine, against one or two.  ``use_swarm_rules`` installs it on a machine; ``weight(n)`` marks a rule
  chosen as often as ``n`` rules.
* ``law_of`` names the law of the model's state (``model/invariants.CHECKS``: one function per law)
  behind a clause, for a machine that checks all of them at once (the os machine: over each step's
  footprint, which one check of every law takes at a time).
"""

from __future__ import annotations

from itertools import product
from typing import Any, Callable, Iterable

import hypothesis.strategies as st
from hypothesis.errors import InvalidArgument, InvalidDefinition
from hypothesis.stateful import Bundle, invariant
from hypothesis.strategies import SearchStrategy

from memspec.program import Call
from memspec.records import Check, Outcome

from .step import Stepper, judge_outcome


def needs(*calls: str, any_of: bool = False) -> Callable[[Any], Any]:
    """Mark a rule with the calls it makes: all of them (default), or ``any_of`` them."""
    def mark(f: Any) -> Any:
        f._machine_needs = (frozenset(calls), any_of)
        return f
    return mark


def weight(n: int) -> Callable[[Any], Any]:
    """Mark a rule to be chosen (by ``SwarmRules``) as often as ``n`` rules would be."""
    def mark(f: Any) -> Any:
        f._machine_weight = n
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


class Choose(SearchStrategy):
    """One of ``elements``, drawn as ``st.sampled_from`` draws it (one integer: the index; nothing
    when there is one element) and labelled as it is, so the same choices give the same values and
    the same spans; ``SwarmRules`` takes it with ``pick``, without the strategy layer a
    ``data.draw`` adds around every argument."""

    def __init__(self, elements: Iterable[Any]) -> None:
        super().__init__()
        self.elements = tuple(elements)
        if not self.elements:
            raise InvalidArgument("nothing to choose from")
        self.top = len(self.elements) - 1

    def pick(self, data: Any) -> Any:
        return self.elements[data.draw_integer(0, self.top)] if self.top else self.elements[0]

    def calc_label(self) -> int:
        return st.sampled_from(list(self.elements)).label

    def do_draw(self, data: Any) -> Any:
        return self.pick(data)

    def __repr__(self) -> str:
        return f"Choose({len(self.elements)} values)"


class Ints(SearchStrategy):
    """An integer from ``lo`` to ``hi``, drawn and labelled as ``st.integers(lo, hi)`` (the bounds and
    their neighbours more likely over a range wider than 127), with ``pick`` as ``Choose``'s."""

    def __init__(self, lo: int, hi: int) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi
        self.weights = {lo: 2 / 128, lo + 1: 1 / 128, hi - 1: 1 / 128, hi: 2 / 128} if hi - lo > 127 else None

    def pick(self, data: Any) -> int:
        return data.draw_integer(self.lo, self.hi, weights=self.weights) if self.weights else \
            data.draw_integer(self.lo, self.hi)

    def calc_label(self) -> int:
        return st.integers(self.lo, self.hi).label

    def do_draw(self, data: Any) -> int:
        return self.pick(data)

    def __repr__(self) -> str:
        return f"Ints({self.lo}, {self.hi})"


def grid(*values: Iterable[Any]) -> Choose:
    """Several arguments of a rule in one draw: a combination of ``values`` (one iterable per
    argument), each combination as likely, as if each were drawn by itself.  A draw is most of a
    step's cost in Hypothesis, and a rule drew four to seven of them."""
    return Choose(product(*values))


RUNNER_LABEL = st.runner().label     # the (empty) span of the machine a Bundle's draw asks for


class _Plan:
    """What ``SwarmRules`` works out once per machine class: the rules in their places (a rule of
    weight n takes n), their names, and how each rule's arguments are drawn."""

    def __init__(self, cls: type, rules: list[Any]) -> None:
        self.rules = rules
        self.names = [r.function.__name__ for r in rules]
        self.requires = [(frozenset(b.name for b in r.bundles), tuple(r.preconditions)) for r in rules]
        self.places = [i for i, r in enumerate(rules)
                       for _ in range(getattr(getattr(cls, r.function.__name__, None), "_machine_weight", 1))]
        self.arguments = {id(r): tuple((k, self._drawer(s)) for k, s in r.arguments_strategies.items())
                          for r in rules}

    @staticmethod
    def _drawer(s: Any) -> Callable[[Any, Any], Any]:
        """How one argument is drawn, given the machine and the data: a ``Choose`` or ``Ints`` by its
        ``pick``, a plain bundle as ``Bundle`` draws a reference (the index among its values, newest
        first); each with the spans Hypothesis' own draw makes (its mutations copy a span's choices
        to another span of the same label: the same mapping, the same range in two steps), so the
        same choices give the same steps and spans as ``data.draw``; anything else by ``data.draw``."""
        label = s.label
        if isinstance(s, (Choose, Ints)):
            pick = s.pick

            def drawn(machine: Any, data: Any) -> Any:
                data.start_span(label)
                try:
                    return pick(data)
                finally:
                    data.stop_span()
            return drawn
        if isinstance(s, Bundle) and s.draw_references and not s.consume and not s._transformations:
            name = s.name

            def reference(machine: Any, data: Any) -> Any:
                data.start_span(label)
                try:
                    data.start_span(RUNNER_LABEL)
                    data.stop_span()
                    values = machine.bundle(name)
                    return values[-1 - data.draw_integer(0, len(values) - 1)]
                finally:
                    data.stop_span()
            return reference
        return lambda machine, data: data.draw(s)


class SwarmRules(SearchStrategy):
    """Each step's rule and its arguments, for one example of ``machine``: the rules the example may
    run are drawn when it starts -- a probability (0 to 254/255) and then one switch per rule, off
    with that probability (all on when every switch is off) -- and each step draws a rule, and if it
    is off or not valid now (a bundle empty, a precondition false) one more among those that are on
    and valid (any valid one when none is); a rule marked ``weight(n)`` counts as ``n`` rules in both.
    Shrinking takes the switches towards on, as Hypothesis' own does."""

    def __init__(self, machine: Any) -> None:
        super().__init__()
        self.machine = machine
        cls = type(machine)
        plan = vars(cls).get("_machine_plan")
        if plan is None or plan.rules is not machine.rules:
            plan = _Plan(cls, machine.rules)
            cls._machine_plan = plan
        self.plan = plan
        self.rules = plan.rules
        self.places = [plan.rules[i] for i in plan.places]
        self.enabled: frozenset[str] | None = None     # the names of the rules switched on
        self._on: list[bool] = []              # per rule: switched on

    def _switch_on(self, data: Any) -> frozenset[str]:
        p_off = data.draw_integer(0, 254) / 255
        names = self.plan.names
        return frozenset(n for n in names if not data.draw_boolean(p_off)) or frozenset(names)

    def _valid(self, rule: Any) -> bool:
        m = self.machine
        return all(m.bundle(b.name) for b in rule.bundles) and all(p(m) for p in rule.preconditions)

    def _valid_now(self) -> list[bool]:
        """Per rule: valid now (its bundles not empty, its preconditions true)."""
        m = self.machine
        filled = {name for name, values in m.bundles.items() if values}
        return [needs <= filled and (not pre or all(p(m) for p in pre)) for needs, pre in self.plan.requires]

    def do_draw(self, data: Any) -> tuple[Any, dict[str, Any]]:
        if self.enabled is None:
            self.enabled = self._switch_on(data)
            self._on = [n in self.enabled for n in self.plan.names]
        rule = self._pick(data)
        m = self.machine
        return rule, {k: draw(m, data) for k, draw in self.plan.arguments[id(rule)]}

    def _pick(self, data: Any) -> Any:
        """The rule at a drawn place of the list of every rule (a rule of weight n takes n places)
        if it is switched on and valid -- so that a draw names the same rule whenever that rule can
        run, and Hypothesis' mutations, which copy a step's choices to another step, repeat the
        step -- else one drawn among the places of the rules that are (any valid one when none is)."""
        plan, on = self.plan, self._on
        i = plan.places[data.draw_integer(0, len(plan.places) - 1)]
        if on and on[i] and self._valid(plan.rules[i]):
            return plan.rules[i]
        valid = self._valid_now()
        ok = [j for j in plan.places if on and on[j] and valid[j]] or [j for j in plan.places if valid[j]]
        if not ok:
            raise InvalidDefinition(f"no rule of {type(self.machine).__name__} can run now")
        return plan.rules[ok[data.draw_integer(0, len(ok) - 1)] if len(ok) > 1 else ok[0]]


def use_swarm_rules(machine: Any) -> bool:
    """Make ``machine`` (a ``RuleBasedStateMachine`` just built) choose its steps with ``SwarmRules``;
    False if this Hypothesis has no rule strategy to replace (its own choice then stays)."""
    if not hasattr(machine, "_rules_strategy"):
        return False
    machine._rules_strategy = SwarmRules(machine)
    return True


class QuietStepper(Stepper):
    """``Stepper`` for a state machine, which reads a step's checks only when one fails: a call is
    judged with ``judge_outcome`` (what ``judge_call`` does without making the passing ``Check``s:
    the outcome described, one check per clause it covers); the same outcome, state and failure."""

    def judged(self, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome, index: int) -> Check | None:
        return judge_outcome(self.model, proc, call, args, observed, index)[1]


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


__all__ = ["needs", "weight", "runnable", "remove_unrunnable", "Choose", "Ints", "grid", "SwarmRules",
           "use_swarm_rules", "QuietStepper", "law_of", "law_invariants"]
