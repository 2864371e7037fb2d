"""The os state machine: several processes, files, pressure events, invariants after every step."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from memspec.records import Mapping, Observation
from memspec.model.mm import new_model
from memspec.specs.compare_os import compare, fault_stats
from memspec.specs.machine_os import machine
from memspec.targets.model import ModelTarget


def test_machine_on_the_model_keeps_every_invariant():
    t = ModelTarget()
    run_state_machine_as_test(machine(t, {}), settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))


def test_checkpoint_fault_counts_are_lower_bounds():
    s = new_model({})
    for name, args in (("mmap", (0x100000000000, 0x2000, 3, 0x22, -1, 0)), ("store", (0x100000000000, 1)),
                       ("store", (0x100000001000, 1))):
        o = s.expect("main", name, args).default
        s.apply("main", name, args, o)
    maps = (("main", (Mapping(0x100000000000, 0x100000002000, "rw-p"),)),)
    fault_stats(reset=True)
    assert compare(s, Observation(maps, (("faults", {"main": [900, 0]}),)), 2) is None
    bad = compare(s, Observation(maps, (("faults", {"main": [1, 0]}),)), 2)
    assert bad is not None and bad.clause == "seed.fault.minor-counted"
    assert fault_stats()["faults_minor"] >= 2
