"""The os state machine: several processes, files (and their descriptor path), mseal, pressure events,
invariants after every step; it catches a broken pwrite and a broken mseal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from memspec.program import Program, format_program, parse
from memspec.records import Mapping, Observation
from memspec.model.mm import new_model
from memspec.specs.compare_os import compare, fault_stats
from memspec.specs.failures import ConformanceFailure
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


def _broken(name: str):
    spec = importlib.util.spec_from_file_location(f"broken_{name}", Path(__file__).resolve().parent / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("bug, clauses", [
    ("pwrite-at-page-start", {"posix.read.file-contents", "posix.mmap.shared-visible", "posix.mmap.file-contents",
                              "posix.mmap.private-file-reads-file"}),
    ("mseal-first-page", {"linux.mseal.eperm"}),
])
def test_machine_catches_a_broken_descriptor_path_or_seal(bug, clauses):
    # the rules fd_io / map_fd / read_back reach the pwrite bug, mseal and the rules of the calls it
    # forbids the seal bug (tests/os/broken_fd_seal.py); generation only, no shrinking, for speed; derandomized, so the
    # examples are the same on every run
    t = _broken("broken_fd_seal").target(bug)
    with pytest.raises(ConformanceFailure) as e:
        run_state_machine_as_test(machine(t, {}), settings=settings(
            max_examples=300, stateful_step_count=30, deadline=None, database=None, phases=[Phase.generate],
            derandomize=True,
            suppress_health_check=list(HealthCheck)))
    assert e.value.clause in clauses, e.value.clause


def test_machine_has_rules_for_the_descriptor_path_and_mseal():
    rules = {n for n, v in vars(machine(ModelTarget(), {})).items() if hasattr(v, "hypothesis_stateful_rule")}
    assert {"make_file", "map_fd", "fd_io", "mseal", "map_fixed_over", "read_back"} <= rules


class _Recording(ModelTarget):
    """The model, recording every call the machine sends it."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def session(self, layer: str = "os"):
        s = super().session(layer)
        call, sent = s.call, self.sent

        def record(c, args):
            sent.append(c)
            return call(c, args)
        s.call = record
        return s


def test_machine_programs_are_program_text_every_target_reads():
    # a number drawn as a bool (Int(False)) prints as "False", which the agent cannot read
    t = _Recording()
    run_state_machine_as_test(machine(t, {}), settings=settings(
        max_examples=40, stateful_step_count=30, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
    assert {c.name for c in t.sent} >= {"mseal", "pwrite", "load"}
    text = format_program(Program(tuple(t.sent)))
    assert "False" not in text and "True" not in text
    assert parse(text).calls == tuple(t.sent)
