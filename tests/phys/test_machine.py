"""The phys state machines: pass on the model and on glibc, and find a broken allocator."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from memspec.specs.failures import ConformanceFailure
from memspec.specs.machine_phys import machine
from memspec.targets.libc import LibcTarget
from memspec.targets.model import ModelTarget

_spec = importlib.util.spec_from_file_location("broken_phys", os.path.join(os.path.dirname(__file__), "broken_phys.py"))
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]

SLAB = frozenset({"kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free", "kmem_cache_shrink"})
GC = frozenset({"gc_new", "gc_ref", "gc_root", "gc_unroot", "gc_collect", "gc_pause", "gc_live", "gc_get"})
NUMA = frozenset({"set_mempolicy", "migrate_thread", "numa_touch", "numa_stat"})
CFG = settings(max_examples=25, stateful_step_count=30, deadline=None, database=None,
               suppress_health_check=list(HealthCheck), print_blob=False)


@pytest.mark.parametrize("target", [ModelTarget(), LibcTarget()], ids=["model", "libc"])
def test_machine_passes(target):
    run_state_machine_as_test(machine(target), settings=CFG)


def test_machine_rules_follow_the_targets_calls():
    m = machine(LibcTarget())()
    try:
        assert m.session is not None
        # heap rules only: a buddy rule's precondition is false for libc
        from hypothesis.stateful import RuleBasedStateMachine  # noqa: F401
    finally:
        m.teardown()


@pytest.mark.parametrize("target,clause", [
    (broken.NaiveHeapTarget("misaligned"), "c11.malloc.aligned-max-align-t"),
    (broken.broken_target(broken.SlabTwice, SLAB), "bonwick.slab.object-once"),
    (broken.broken_target(broken.GcMissesRoot, GC), "jones.gc.sound"),
    (broken.broken_target(broken.BindSpills, NUMA), "numa.bind.no-spill"),
], ids=lambda x: getattr(x, "name", x))
@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_machine_finds_the_bug(target, clause):
    """Rules drawn from the calls a broken allocator implements find its bug, and Hypothesis shrinks it."""
    with pytest.raises(ConformanceFailure) as e:
        run_state_machine_as_test(machine(target, {}), settings=settings(CFG, max_examples=1000, derandomize=True,
                                                                         stateful_step_count=8))
    assert e.value.clause == clause
    assert len(e.value.program) <= 6     # Hypothesis shrank it


@pytest.mark.parametrize("allocator", sorted(__import__("memspec.calls_phys", fromlist=["ALLOCATORS"]).ALLOCATORS))
def test_one_machine_per_allocator_on_the_model(allocator):
    from memspec.calls_phys import ALLOCATORS
    from memspec.fuzz.codec_phys import decode
    M = machine(ModelTarget(), {}, allocator)
    run_state_machine_as_test(M, settings=settings(CFG, max_examples=8, stateful_step_count=15))
    # and a codec per allocator: programs from its calls only
    assert {c.name for c in decode(bytes(range(200)), ALLOCATORS[allocator]).calls} <= ALLOCATORS[allocator]


def test_machine_calls_are_canonical_program_text():
    """Every call the machine makes carries all its arguments (a protocol peer needs them)."""
    from memspec.calls import CALLS
    from memspec.program import format_program, parse
    M = machine(ModelTarget(), {})
    m = M()
    try:
        m.do("kmem_cache_create", __import__("memspec.program", fromlist=["Int"]).Int(64), result=True)
        p = m.prog()
        assert all(len(c.args) == len(CALLS[c.name].params) for c in p.calls)
        assert parse(format_program(p)).calls == p.calls
    finally:
        m.teardown()
