"""pbt_model_share: state-machine steps per second of the os-layer machine on the model vs a trivial machine.

Numerator: memspec's os-layer Hypothesis state machine (``specs.machine_os``) on
the ``model`` target, as ``memspec check`` builds it: the model judges every call;
after every step the model's laws run over what the step touched; every
``machine_os.OBSERVE_EVERY`` calls and at the end of each run the memory maps are
compared and the laws recounted over the whole state.
Denominator: a trivial machine with three rules (push, pop, clear on a list) and
one invariant.  Both run through ``run_state_machine_as_test`` with the same
settings; a step is one rule execution (an ``@initialize`` rule's too, as the os
machine's first mapping and first file), counted by an extra invariant, which
Hypothesis runs after every step, and once after set-up, but not while an
``@initialize`` rule is still to run (``steps_per_second`` makes up for both).
"""

from __future__ import annotations

import time

from memspec.commands.bench import Pair

NAME = "pbt_model_share"
GOAL = 0.75
UNIT = "steps/s"
NUMERATOR = ("state-machine steps/s of memspec's os-layer machine on the model (every call judged, the invariants over "
             "every step's footprint, memory maps and a whole recount at checkpoints and at the end)")
DENOMINATOR = "steps/s of a trivial 3-rule Hypothesis machine"


def _counting(base):
    from hypothesis.stateful import invariant

    class Counting(base):
        checks = 0
        examples = 0

        def __init__(self) -> None:
            super().__init__()
            type(self).examples += 1

        @invariant()
        def zz_count_steps(self) -> None:
            type(self).checks += 1

    Counting.__name__ = base.__name__
    return Counting


def trivial_machine():
    import hypothesis.strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

    class Trivial(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.items: list[int] = []

        @rule(x=st.integers(0, 255))
        def push(self, x: int) -> None:
            self.items.append(x)

        @rule()
        def pop(self) -> None:
            if self.items:
                self.items.pop()

        @rule()
        def clear(self) -> None:
            self.items.clear()

        @invariant()
        def bounded(self) -> None:
            assert len(self.items) >= 0

    return Trivial


def steps_per_second(cls, examples: int, steps: int) -> float:
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test
    cls.checks = cls.examples = 0
    s = settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                 phases=[Phase.generate], suppress_health_check=list(HealthCheck), derandomize=True)
    t0 = time.perf_counter()
    run_state_machine_as_test(cls, settings=s)
    dt = time.perf_counter() - t0
    # the extra invariant is skipped while an @initialize rule is still to run: after set-up and
    # after every initialize rule but the last, so it counts (1 + rules - initializers) per example
    # when there are initializers, 1 + rules otherwise
    uncounted = len(cls.setup_state().initializers) - 1
    return (cls.checks + cls.examples * uncounted) / dt


def setup(quick: bool) -> Pair:
    from memspec.specs.machine_os import machine
    from memspec.targets.model import ModelTarget
    os_machine = _counting(machine(ModelTarget()))
    trivial = _counting(trivial_machine())
    examples, steps = (6, 25) if quick else (20, 50)
    return Pair(lambda: steps_per_second(os_machine, examples, steps),
                lambda: steps_per_second(trivial, examples, steps),
                note=f"{examples} examples of up to {steps} steps, derandomised (the same draws each repeat)")
