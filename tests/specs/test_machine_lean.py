"""The os state machine's lean step gives what the plain one gives.

* ``Choose`` and ``Ints`` draw as ``st.sampled_from`` and ``st.integers`` draw, and give the same
  values for the same choices; ``SwarmRules`` draws a bundle's reference as ``Bundle`` does.  Replayed
  through Hypothesis' own strategies (every argument a ``data.draw``), the choices of a run give
  the same steps, the same calls, the same model state and the same spans (labels and places:
  what Hypothesis' mutations copy between steps).
* ``QuietStepper`` (a call judged without making its passing checks) gives the outcomes and the
  failures of ``Stepper`` on the same runs, broken targets included.
* The maps of a checkpoint equal exactly (``machine_os._same_maps``) are maps ``compare_maps``
  finds nothing in (a difference goes on to it).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from random import Random

import hypothesis.strategies as st
import pytest
from hypothesis.control import BuildContext
from hypothesis.internal.conjecture.data import ConjectureData
from hypothesis.internal.conjecture.utils import calc_label_from_cls
from hypothesis.stateful import MultipleResults, VarReference

from memspec.records import Mapping, Observation
from memspec.specs import machine_os
from memspec.specs.compare_maps import compare_maps
from memspec.specs.failures import ConformanceFailure
from memspec.specs.machine_rules import Choose, Ints, QuietStepper, SwarmRules, grid
from memspec.specs.step import Stepper
from memspec.targets.model import ModelTarget

ROOT = Path(__file__).resolve().parents[2]
STEPS = 40


def _load(path: Path):
    name = "_lean_" + path.parent.name + "_" + path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        sys.modules[name] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return sys.modules[name]


def _broken_targets() -> list:
    server = _load(ROOT / "tests" / "broken" / "broken_server.py")
    from memspec.targets.model import OsModelTarget
    out = [OsModelTarget(f"broken:{bug}", cls) for bug, cls in sorted(server.BUGS.items())]
    for stem, bug in (("broken_fd_seal", "mseal-first-page"), ("broken_reach", "fork-forgets-fsize")):
        out.append(_load(ROOT / "tests" / "os" / f"{stem}.py").target(bug))
    return out


# -- one argument -----------------------------------------------------------------------------

def _recorded(strategy, seed: int):
    data = ConjectureData(random=Random(seed))
    value = data.draw(strategy)
    return value, list(data.choices)


def _replayed(strategy, choices):
    return ConjectureData.for_choices(choices).draw(strategy)


@pytest.mark.parametrize("mine, theirs", [
    (Choose(["a", "b", "c", "d", "e"]), st.sampled_from(["a", "b", "c", "d", "e"])),
    (Choose([7]), st.sampled_from([7])),
    (grid(range(1, 7), (False, True), ["hint", "fixed"]), st.sampled_from([(p, s, h) for p in range(1, 7)
                                                                          for s in (False, True)
                                                                          for h in ("hint", "fixed")])),
    (Ints(0, 63), st.integers(0, 63)),
    (Ints(-4096, 6 * 4096), st.integers(-4096, 6 * 4096)),
])
def test_an_argument_is_what_hypothesis_own_strategy_gives_for_the_same_choices(mine, theirs) -> None:
    for seed in range(100):
        value, choices = _recorded(mine, seed)
        assert _replayed(theirs, choices) == value
        assert _recorded(theirs, seed) == (value, choices)      # drawn alike too (the same weights)
        value, choices = _recorded(theirs, seed)
        assert _replayed(mine, choices) == value


# -- whole runs -------------------------------------------------------------------------------

class _PlainSwarm(SwarmRules):
    """``SwarmRules`` drawing every argument as Hypothesis does: a ``data.draw`` of the strategy the
    lean one stands for (``st.sampled_from``, ``st.integers``, the ``Bundle`` itself)."""

    def __init__(self, machine) -> None:
        super().__init__(machine)
        plain = {}
        for rule in self.plan.rules:
            plain[id(rule)] = tuple((k, self._plain(s)) for k, s in rule.arguments_strategies.items())
        self.plan = _PlanView(self.plan, plain)

    def calc_label(self) -> int:
        return calc_label_from_cls(SwarmRules)      # the step's span labelled as the lean one's

    @staticmethod
    def _plain(s):
        if isinstance(s, Choose):
            s = st.sampled_from(list(s.elements))
        elif isinstance(s, Ints):
            s = st.integers(s.lo, s.hi)
        return lambda machine, data: data.draw(s)


class _PlanView:
    def __init__(self, plan, arguments) -> None:
        self.__dict__.update(vars(plan))
        self.arguments = arguments


def _draw_step(machine, data):
    """A step's rule and arguments as ``run_state_machine`` draws them: an initialize rule still to
    run first (Hypothesis' own choice among them), else the machine's rule strategy."""
    if machine._initialize_rules_to_run:
        with BuildContext(data, wrapped_test=_draw_step):
            rule, args = data.draw(st.one_of([st.tuples(st.just(r), st.fixed_dictionaries(r.arguments))
                                              for r in machine._initialize_rules_to_run]))
        machine._initialize_rules_to_run.remove(rule)
        return rule, args
    return data.draw(machine._rules_strategy)


def _take(machine, rule, args):
    """Run ``rule`` with ``args`` (references resolved) as ``run_state_machine`` does; (arguments as
    printed, the value returned)."""
    shown = {k: v.name if isinstance(v, VarReference) else v for k, v in args.items()}
    args = {k: machine.names_to_values[v.name] if isinstance(v, VarReference) else v for k, v in args.items()}
    result = rule.function(machine, **args)
    if rule.targets:
        values = result.values if isinstance(result, MultipleResults) else [result]
        machine._add_results_to_targets(rule.targets, values)
    return shown, None if isinstance(result, MultipleResults) else result


def _run(machine, data, steps: int = STEPS) -> list:
    """Steps of ``machine`` drawn from ``data`` as ``run_state_machine`` takes them, each followed by
    the invariant (not while an initialize rule is still to run): (rule, its arguments as printed,
    the value returned); ends at the first failure, which it records."""
    data.hypothesis_runner = machine
    out = []
    try:
        for _ in range(steps):
            rule, args = _draw_step(machine, data)
            out.append((rule.function.__name__, *_take(machine, rule, args)))
            if not machine._initialize_rules_to_run:
                machine.checked_after_step()
        machine.teardown()
    except ConformanceFailure as e:
        out.append(("failure", e.clause, e.index, e.expected, e.observed))
        machine.session.close()
    return out


def _state(machine) -> tuple:
    m = machine.model
    return tuple((p, tuple(m.maps(p))) for p in sorted(m.procs)), tuple(machine.calls)


def _spans(data) -> list:
    """(label, first choice, end) of every span of a finished run."""
    data.freeze()
    return [(sp.label, sp.start, sp.end) for sp in data.spans]


def _lean_and_plain(cls, seed: int) -> tuple:
    """A run of ``cls``'s machine drawn at random (``seed``), and the same choices replayed through
    Hypothesis' own strategies: (steps, state, spans) of each."""
    lean = cls()
    data = ConjectureData(random=Random(seed))
    a = _run(lean, data)
    plain = cls()
    plain._rules_strategy = _PlainSwarm(plain)
    again = ConjectureData.for_choices(list(data.choices))
    b = _run(plain, again)
    return (a, _state(lean), _spans(data)), (b, _state(plain), _spans(again))


def test_the_same_choices_give_the_same_steps_calls_state_and_spans_through_hypothesis_own_strategies() -> None:
    cls = machine_os.machine(ModelTarget(), {})
    for seed in range(40):
        lean, plain = _lean_and_plain(cls, seed)
        assert lean == plain, seed


def test_broken_targets_fail_alike_through_hypothesis_own_strategies() -> None:
    failures = 0
    for target in _broken_targets()[::3]:
        cls = machine_os.machine(target, {})
        for seed in range(6):
            lean, plain = _lean_and_plain(cls, seed)
            assert lean == plain, (target.name, seed)
            failures += lean[0][-1][0] == "failure"
    assert failures > 0


def _with_stepper(cls, stepper: type):
    class Machine(cls):
        def __init__(self) -> None:
            super().__init__()
            old = self.stepper
            self.stepper = stepper(self.model, self.session, old.note, old.unsupported)
            self.calls, self.env = self.stepper.calls, self.stepper.env
    return Machine


def test_quiet_stepper_gives_the_outcomes_and_failures_of_the_plain_one() -> None:
    failures = 0
    for target in _broken_targets():
        cls = machine_os.machine(target, {})
        for seed in range(4):
            data = ConjectureData(random=Random(seed))
            quiet = _with_stepper(cls, QuietStepper)()
            assert isinstance(quiet.stepper, QuietStepper)
            a = _run(quiet, data)
            plain = _with_stepper(cls, Stepper)()
            assert type(plain.stepper) is Stepper
            b = _run(plain, ConjectureData.for_choices(list(data.choices)))
            assert (a, _state(quiet)) == (b, _state(plain)), (target.name, seed)
            failures += a[-1][0] == "failure"
    assert failures > 0


# -- the checkpoint's maps ----------------------------------------------------------------------

def _observation(model, rng: Random) -> Observation:
    """The model's maps, changed at random half the time (a range moved, its permissions changed,
    one dropped, one added inside or outside the model's windows)."""
    maps = []
    for p in model.procs:
        ms = [Mapping(s, e, perms) for s, e, perms in model.maps(p)]
        if ms and rng.random() < 0.5:
            i = rng.randrange(len(ms))
            m = ms[i]
            how = rng.choice(["perms", "end", "drop", "extra-far", "extra-near"])
            if how == "perms":
                ms[i] = Mapping(m.start, m.end, "rwxp" if m.perms != "rwxp" else "r--p")
            elif how == "end":
                ms[i] = Mapping(m.start, m.end + 0x1000, m.perms)
            elif how == "drop":
                del ms[i]
            elif how == "extra-far":
                ms.append(Mapping(0x7f0000000000, 0x7f0000001000, "r--p"))
            else:
                ms.insert(i, Mapping(m.start - 0x1000, m.start, m.perms))
        maps.append((p, tuple(ms)))
    return Observation(tuple(maps))


def test_maps_equal_exactly_are_maps_compare_maps_accepts() -> None:
    cls = machine_os.machine(ModelTarget(), {})
    rng = Random(0)
    seen = {True: 0, False: 0}
    for seed in range(30):
        m = cls()
        data = ConjectureData(random=Random(seed))
        data.hypothesis_runner = m
        for _ in range(STEPS):
            _take(m, *_draw_step(m, data))
            obs = _observation(m.model, rng)
            same = machine_os._same_maps(m.model, obs)
            if same:
                assert compare_maps(m.model, obs, 0) is None
            seen[same] += 1
        m.session.close()
    assert seen[True] and seen[False]
