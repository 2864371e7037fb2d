"""The hw state machine keeps what its rules refer back to in Hypothesis bundles (issue 21).

Mapped leaves are bundle entries: a leaf mapped by one step is changed, invalidated and accessed
again by later steps, so a TLB bug that shows only on that shape (INVLPG that keeps the old
translation) is caught, and Hypothesis shrinks the failure to the steps on that one leaf.  No rule
runs without making a call (a page goes only where a slot is free), and a rule whose call or fact
the target lacks is not in the machine at all.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import Bundle, run_state_machine_as_test

import pytest

from memspec.calls import CALLS
from memspec.program import eval_args
from memspec.specs import machine_hw
from memspec.specs.failures import ConformanceFailure
from memspec.targets.model import ModelTarget

from .broken_hw import BrokenTarget, KeepsAfterInvlpg

HW_CALLS = frozenset(c.name for c in CALLS.values() if c.layer == "hw")


def _rules(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if hasattr(v, "hypothesis_stateful_rule")}


def _settings(n: int, steps: int = 25, shrink: bool = True) -> settings:
    # without shrinking where only the catch matters: shrinking a failing machine takes minutes
    return settings(max_examples=n, stateful_step_count=steps, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), print_blob=False,
                    phases=tuple(Phase) if shrink else (Phase.explicit, Phase.generate))


# what a translation kept after INVLPG breaks: the INVLPG's clause, or the A/D bits the stale walk
# sets or fails to set in the entry the leaf has now
STALE = {"sdm.tlb.invlpg", "sdm.ad.no-dirty-on-read", "sdm.ad.dirty-on-write"}


def test_a_leaf_changed_with_invlpg_and_accessed_again_catches_a_tlb_that_keeps_it() -> None:
    """The whole machine, list-based before the bundles, caught this walker in 4 of 16 seeded runs of 100
    examples, the bundle one in 3 of 16.  Here the machine keeps only the rules of the story (map a leaf,
    access it, change it with or without INVLPG, INVLPG it), so that the catch does not depend on which
    of the other rules Hypothesis' swarm testing turns on: 7 of 10 seeded runs of 30 examples."""
    M = machine_hw.machine(BrokenTarget(KeepsAfterInvlpg), {})
    for name in _rules(M) - {"map_page", "access", "change_leaf", "invlpg"}:
        delattr(M, name)
    with pytest.raises(ConformanceFailure) as e:
        run_state_machine_as_test(M, settings=_settings(200, shrink=False))
    f = e.value
    assert f.clause in STALE, f
    # the program has the story of one leaf: accessed, its entry rewritten, INVLPG, then the failing call
    calls = [(c.name, eval_args(c, {})) for c in f.program.calls]

    def story(k: int, page: int) -> bool:
        before = [j for j, (n, a) in enumerate(calls[:k]) if n == "access" and a[0] >> 12 == page]
        return bool(before) and any(n == "set_pte" for n, _ in calls[before[0]:k])
    assert any(n == "invlpg" and story(k, a[0] >> 12) for k, (n, a) in enumerate(calls[:f.index])), f
    # the correct model passes the same program
    assert not _judge_fails(f.program)


def _judge_fails(program) -> bool:
    from memspec.specs.judge import judge
    return judge(program, ModelTarget().run(program), "model").failure is not None


def _all_hw(facts: dict | None = None) -> ModelTarget:
    t = ModelTarget()
    t.calls = HW_CALLS
    if facts is not None:
        t.facts = lambda: dict(facts)
    return t


def test_every_rule_that_runs_makes_a_call() -> None:
    """No rule is a silent no-op: each rule the machine ran put at least one call in the program."""
    M = machine_hw.machine(_all_hw(), {})
    ran: dict[str, int] = {}
    idle: list[str] = []
    for name in _rules(M):
        r = vars(M)[name].hypothesis_stateful_rule

        def counted(self, *a, _f=r.function, _name=name, **kw):
            n = len(self.calls)
            out = _f(self, *a, **kw)
            ran[_name] = ran.get(_name, 0) + 1
            if len(self.calls) == n:
                idle.append(_name)
            return out
        r.function = counted
    run_state_machine_as_test(M, settings=_settings(40, 30))
    assert not idle, idle
    # the run reached the bundle rules at every level, and the rules on earlier leaves
    assert {"map_page", "change_leaf", "unmap_leaf", "access", "access_elsewhere", "invlpg", "read_back",
            "seg_access"} <= set(ran), sorted(ran)


def test_leaves_are_a_bundle_the_rules_on_earlier_leaves_draw_from() -> None:
    M = machine_hw.machine(_all_hw(), {})
    assert isinstance(M.leaves, Bundle)
    for name in ("change_leaf", "access", "invlpg", "read_back", "invpcid", "unmap_leaf"):
        leaf = vars(M)[name].hypothesis_stateful_rule.arguments["leaf"]
        assert isinstance(leaf, Bundle) and leaf.name == "leaves", name
        assert leaf.consume == (name == "unmap_leaf"), name
    # the only precondition left: a page size with a free slot (not a list of leaves)
    assert {n for n in _rules(M) if vars(M)[n].hypothesis_stateful_rule.preconditions} == {"map_page"}


def test_a_large_page_goes_only_to_a_free_slot_and_unmapping_frees_it() -> None:
    """With every PDPT slot holding a 1 GiB page no page of any size has a place, and map_page's
    precondition says so (it does not run as a no-op); unmapping one of them frees its slot."""
    M = machine_hw.machine(_all_hw(), {})
    m = M()
    try:
        for i4 in machine_hw.PML4_SLOTS:
            m._pdpt(i4)                                  # the PDPT, made as map_page makes it
            for i3 in range(3):
                assert (i4, i3) in m._free("1g")
                m.pdpte[(i4, i3)] = machine_hw.LARGE     # what map_page records for a 1 GiB page
        assert m._sizes() == [] and not m._free("2m") and not m._free("4k")
        precondition = vars(M)["map_page"].hypothesis_stateful_rule.preconditions[0]
        assert not precondition(m)
        leaf = machine_hw.Leaf(1 << 39 | 2 << 30 | 0x300000, m.pml4e[1], 2)
        vars(M)["unmap_leaf"].hypothesis_stateful_rule.function(m, leaf=leaf, invalidate=True)
        assert m._free("1g") == [(1, 2)] and (1, 2, 0) in m._free("2m") and precondition(m)
        assert [c.name for c in m.calls[-2:]] == ["set_pte", "invlpg"]
    finally:
        m.teardown()


@pytest.mark.parametrize("facts, without, gone", [
    ({"pcid": True, "invpcid": False}, set(), {"invpcid"}),
    ({"pcid": False}, set(), {"invpcid"}),
    ({}, {"invpcid"}, {"invpcid"}),
    ({}, {"seg_access"}, {"seg_switch_mode", "seg_write_desc", "seg_load", "seg_access"}),
])
def test_a_rule_the_target_cannot_run_is_not_in_the_machine(facts, without, gone) -> None:
    t = _all_hw(facts)
    t.calls = HW_CALLS - without
    rules = _rules(machine_hw.machine(t, facts))
    assert not gone & rules, gone & rules
    full = _rules(machine_hw.machine(_all_hw(), {}))
    assert full - rules == gone          # and nothing else went
