"""The virt codec, state machine and directed suite on the reference model: programs are well formed,
round-trip through text, and raise no false alarm; a target without EPT or KPTI gets none of them."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from memspec.specs.directed import suite_programs
from memspec.fuzz.codec_virt import decode, encode
from memspec.program import format_program, parse
from memspec.specs.judge import judge
from memspec.specs.machine_virt import machine
from memspec.targets.model import ModelTarget


def test_suite_programs_pass_on_the_model():
    t = ModelTarget()
    progs = list(suite_programs("virt"))
    assert len(progs) >= 10
    for name, p in progs:
        j = judge(p, t.run(p), "model")
        assert j.passed, (name, j.failure)


def test_codec_programs_round_trip_and_pass_on_the_model():
    t = ModelTarget()
    rng = random.Random(11)
    names = set()
    for _ in range(40):
        p = decode(bytes(rng.randrange(256) for _ in range(200)))
        assert p.calls and decode(encode(p)) == p and parse(format_program(p)) == p
        names |= {c.name for c in p.calls}
        j = judge(p, t.run(p), "model")
        assert j.passed, (format_program(p), j.failure)
    assert {"set_epte", "set_npte", "vm_access", "invept", "kpti_boot", "syscall_enter", "user_access"} <= names


def test_codec_respects_the_targets_calls():
    npt_only = frozenset({"vm_boot", "vm_enter", "set_npte", "read_epte", "set_gpte", "read_gpte", "vm_cr3",
                          "vm_access", "invept"})
    rng = random.Random(5)
    for _ in range(30):
        p = decode(bytes(rng.randrange(256) for _ in range(200)), npt_only)
        assert {c.name for c in p.calls} <= npt_only
        assert all("VM_EPT" not in format_program(p.with_calls([c])) for c in p.calls)


def test_state_machine_passes_on_the_model():
    cfg = settings(max_examples=6, stateful_step_count=20, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    run_state_machine_as_test(machine(ModelTarget(), {}), settings=cfg)
