"""The os state machine chooses each step's rule with one draw (``machine_rules.SwarmRules``): the
rules an example may run are switched on once per example, and a step picks among those that are
valid now.  A rule with an empty bundle or a false precondition is never run, every rule is run
over enough examples, some examples run only some of the rules, and an example whose switched-on
rules are all invalid still runs a valid one (it is not thrown away); a rule marked ``weight(n)`` is
chosen about as often as n rules."""

from __future__ import annotations

import collections

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from memspec.specs import machine_os
from memspec.specs.machine_rules import SwarmRules, use_swarm_rules, weight
from memspec.targets.model import ModelTarget

SETTINGS = settings(max_examples=200, stateful_step_count=20, deadline=None, database=None, derandomize=True,
                    phases=[Phase.generate], suppress_health_check=list(HealthCheck))


def _toy():
    """A machine recording the rules each example ran; ``use`` needs a bundle that only ``make`` fills,
    ``gated`` a precondition that never holds."""
    runs: list[collections.Counter] = []

    class Toy(RuleBasedStateMachine):
        things = Bundle("things")

        def __init__(self) -> None:
            super().__init__()
            self.swarm = use_swarm_rules(self)
            self.ran: collections.Counter = collections.Counter()
            runs.append(self.ran)

        @rule(target=things, x=st.integers(0, 3))
        def make(self, x: int) -> int:
            self.ran["make"] += 1
            return x

        @rule(t=things)
        def use(self, t: int) -> None:
            self.ran["use"] += 1
            assert self.ran["make"] > 0, "a rule ran with its bundle empty"

        @precondition(lambda self: False)
        @rule()
        def gated(self) -> None:
            raise AssertionError("a rule ran with its precondition false")

        @weight(4)
        @rule()
        def a(self) -> None:
            self.ran["a"] += 1

        @rule()
        def b(self) -> None:
            self.ran["b"] += 1

    return Toy, runs


def test_the_os_machine_chooses_its_rules_with_swarm_rules() -> None:
    # if a Hypothesis upgrade took away the rule strategy this replaces, this says so (the machine
    # would still run, with Hypothesis' own, costlier choice)
    m = machine_os.machine(ModelTarget(), {})()
    try:
        assert m.swarm and isinstance(m._rules_strategy, SwarmRules)
        places = [r.function.__name__ for r in m._rules_strategy.places]
        assert places.count("pressure") == machine_os.PRESSURE_WEIGHT and places.count("fork") == machine_os.FORK_WEIGHT
    finally:
        m.teardown()


def test_an_invalid_rule_never_runs_and_every_valid_rule_does() -> None:
    toy, runs = _toy()
    run_state_machine_as_test(toy, settings=SETTINGS)      # gated and use-before-make would fail it
    total = sum(runs, collections.Counter())
    assert {"make", "use", "a", "b"} <= set(total)


def test_a_weighted_rule_is_chosen_more_often() -> None:
    toy, runs = _toy()
    run_state_machine_as_test(toy, settings=SETTINGS)
    total = sum(runs, collections.Counter())
    assert total["a"] > 2 * total["b"], total


def test_some_examples_run_only_some_rules() -> None:
    toy, runs = _toy()
    run_state_machine_as_test(toy, settings=SETTINGS)
    full = [r for r in runs if sum(r.values()) >= 20]
    assert full and any(len(r) < 4 for r in full) and any(len(r) == 4 for r in full)


def test_when_every_switched_on_rule_is_invalid_a_valid_one_runs() -> None:
    toy, _ = _toy()
    s = SwarmRules(toy())

    class Data:
        """Enough of ConjectureData: every switch off but the one of ``use`` (whose bundle is empty)."""

        switches = iter(r.function.__name__ for r in s.rules)

        def draw_integer(self, lo: int, hi: int) -> int:
            return 0

        def draw_boolean(self, p: float) -> bool:
            return next(self.switches) != "use"

        def draw(self, strategy):
            return 0

    rule, _ = s.do_draw(Data())
    assert s.enabled == {"use"}
    assert rule.function.__name__ in {"make", "a", "b"}
