"""State machines: rules a target cannot run are removed, and a broken law is named (the hw and virt
machines: one invariant per law; the os machine: one check of every law, the failure naming the law --
tests/specs/test_machine_os_checks.py)."""

from __future__ import annotations

import pytest

from memspec.calls import CALLS
from memspec.specs import machine_hw, machine_os, machine_phys, machine_virt
from memspec.specs.failures import ConformanceFailure
from memspec.specs.machine_rules import law_invariants
from memspec.specs.step import Stepper
from memspec.targets.model import ModelTarget


def _target(layer: str, without: set[str] = frozenset(), facts: dict | None = None) -> ModelTarget:
    t = ModelTarget()
    t.calls = frozenset(c.name for c in CALLS.values() if c.layer == layer) - set(without)
    if facts is not None:
        t.facts = lambda: dict(facts)
    return t


def _rules(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if hasattr(v, "hypothesis_stateful_rule")
            or hasattr(v, "hypothesis_stateful_initialize_rule")}


def _invariants(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if hasattr(v, "hypothesis_stateful_invariant")}


PRESSURE = {"memory_limit", "reclaim", "oom", "tick", "wss", "khugepaged", "set_swappiness"}


def test_an_os_rule_whose_calls_the_target_lacks_is_removed_not_a_no_op() -> None:
    full = machine_os.machine(ModelTarget(), {})
    linux_like = machine_os.machine(_target("os", PRESSURE), {})
    assert "pressure" in _rules(full) and "pressure" not in _rules(linux_like)
    assert _rules(full) - _rules(linux_like) == {"pressure"}
    no_fork = machine_os.machine(_target("os", {"fork"}), {})
    assert not {"fork", "exit"} & _rules(no_fork)


def test_hw_segmentation_and_invpcid_rules_need_the_capability_and_the_facts() -> None:
    seg = {"seg_switch_mode", "seg_write_desc", "seg_load", "seg_access"}
    with_seg = machine_hw.machine(_target("hw"), {})
    assert seg <= _rules(with_seg) and "invpcid" in _rules(with_seg)
    core = machine_hw.machine(_target("hw", {c.name for c in CALLS.values() if c.capability}), {})
    assert not seg & _rules(core)
    no_pcid = machine_hw.machine(_target("hw", facts={"pcid": False}), {"pcid": False})
    assert "invpcid" not in _rules(no_pcid)


def test_virt_rules_of_a_half_the_target_lacks_are_removed() -> None:
    kpti = {c for c in CALLS if CALLS[c].layer == "virt" and (
        c.startswith("kpti") or "syscall" in c or c in ("user_access", "kernel_access", "context_switch"))}
    no_kpti = machine_virt.machine(_target("virt", kpti), {})
    assert "kpti_boot" not in _rules(no_kpti) and "guest_access" in _rules(no_kpti)
    no_guest = machine_virt.machine(_target("virt", {"vm_boot"}), {})
    assert not set(machine_virt.TWO_D_RULES) & _rules(no_guest) and "kpti_boot" in _rules(no_guest)


def test_phys_rules_follow_the_allocators_the_target_has() -> None:
    from memspec.calls_phys import ALLOCATORS
    heap = machine_phys.machine(_target("phys", {c for c in CALLS if CALLS[c].layer == "phys"} - ALLOCATORS["heap"]))
    assert "malloc" in _rules(heap) and "buddy_alloc" not in _rules(heap)


def test_one_named_invariant_per_law() -> None:
    # the os machine: one invariant (each costs Hypothesis as much again every step) running both checks
    os_machine = machine_os.machine(ModelTarget(), {})
    assert _invariants(os_machine) == {"checked_after_step"}
    assert callable(os_machine.model_state_consistent) and callable(os_machine.memory_maps_agree)
    assert set(machine_hw.LAWS) <= _invariants(machine_hw.machine(_target("hw"), {}))
    assert set(machine_virt.LAWS) <= _invariants(machine_virt.machine(ModelTarget(), {}))


class _Machine:
    """Enough of a state machine for the law invariants: a model and a stepper."""

    def __init__(self, broken: list[tuple[str, str]]):
        self.model = type("M", (), {"invariants": lambda _self: list(broken)})()
        self.stepper = Stepper(self.model, session=None)


def test_a_broken_law_fails_its_own_invariant_and_no_other() -> None:
    class M(_Machine):
        pass
    law_invariants(M, machine_virt.LAWS)
    m = M([("linux.pti.pcid-distinct", "the kernel and user sets share a PCID")])
    for name in machine_virt.LAWS:
        if name == "kernel_and_user_pcids_distinct":
            with pytest.raises(ConformanceFailure) as e:
                getattr(m, name)()
            assert e.value.clause == "linux.pti.pcid-distinct"
        else:
            getattr(m, name)()          # the other laws hold
    # a clause no law names is not lost: the last law reports it
    m = M([("memspec.phys.frame-one-owner", "broken")])
    with pytest.raises(ConformanceFailure):
        getattr(m, list(machine_virt.LAWS)[-1])()
