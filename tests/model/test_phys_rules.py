"""The phys model's rules table (model/rules.py, model/phys.py): each allocator module owns the
rules of its calls, and their composition covers exactly the phys calls of the call table, each
rule taking its call's parameters -- a rule missing, given twice, or taking the wrong parameters is
an error when the model is imported, not when a program first uses the call."""

from __future__ import annotations

import pytest

from memspec.calls import layer_calls
from memspec.model import buddy, dma, gc, heap, numa, phys, slab, vmalloc
from memspec.model.rules import Rule, compose
from memspec.model.expect import exactly
from memspec.records import Outcome

OWNERS = (buddy, slab, vmalloc, dma, numa, heap, gc)
# (module, the rules it owns): each allocator's, and phys_boot's, which model/phys.py owns itself
OWNED = [(m.__name__, m.RULES) for m in OWNERS] + [(phys.__name__, phys.BOOT_RULES)]


def test_the_composed_table_covers_exactly_the_phys_calls():
    assert set(phys.RULES) == {c.name for c in layer_calls("phys")}
    assert phys.PhysModel.RULES is phys.RULES


def test_each_allocator_owns_the_rules_it_exports():
    seen: set[str] = set()
    for owner, rules in OWNED:
        for name, rule in rules.items():
            assert rule.expect.__module__ == owner, (name, rule.expect.__module__)
            assert rule.apply is None or rule.apply.__module__ == owner, (name, rule.apply.__module__)
            assert phys.RULES[name] is rule
        assert not seen & set(rules)
        seen |= set(rules)
    assert seen == set(phys.RULES)


def test_a_rule_given_by_two_allocators_fails():
    other = {"buddy_free": Rule(lambda m, pfn: exactly("linux.buddy.free", Outcome(value=0)))}
    with pytest.raises(ValueError, match="two rules for 'buddy_free'"):
        compose("phys", phys.BOOT_RULES, buddy.RULES, other, slab.RULES, vmalloc.RULES, dma.RULES, numa.RULES, heap.RULES, gc.RULES,
                lead=(1, 2))


def test_a_missing_rule_fails():
    with pytest.raises(ValueError, match=r"no rule for \['gc_addr', 'gc_collect'"):
        compose("phys", phys.BOOT_RULES, buddy.RULES, slab.RULES, vmalloc.RULES, dma.RULES, numa.RULES, heap.RULES,
                lead=(1, 2))


def test_a_rule_without_a_call_fails():
    extra = {"buddy_defrag": Rule(lambda m: exactly("linux.buddy.coalesce", Outcome(value=0)))}
    with pytest.raises(ValueError, match=r"no call for \['buddy_defrag'\]"):
        compose("phys", *(rules for _, rules in OWNED), extra, lead=(1, 2))


def test_a_rule_with_other_parameters_than_its_call_fails():
    swapped = dict(heap.RULES)
    swapped["calloc"] = Rule(lambda m, size, nmemb: exactly("c11.calloc.zeroed", Outcome(value=0)))
    with pytest.raises(ValueError, match=r"the rule for 'calloc' \(<lambda>\) does not take the call's parameters"):
        compose("phys", phys.BOOT_RULES, buddy.RULES, slab.RULES, vmalloc.RULES, dma.RULES, numa.RULES, swapped,
                gc.RULES, lead=(1, 2))
    applied = dict(heap.RULES)
    applied["free"] = Rule(heap.expect_free, lambda m, ptr: None)     # apply takes the outcome too
    with pytest.raises(ValueError, match="the rule for 'free'"):
        compose("phys", phys.BOOT_RULES, buddy.RULES, slab.RULES, vmalloc.RULES, dma.RULES, numa.RULES, applied,
                gc.RULES, lead=(1, 2))


def test_the_model_looks_its_rules_up_in_its_table():
    """A model class with one entry replaced runs that entry (how the tests' broken models are made)."""
    class Refuses(phys.PhysModel):
        RULES = {**phys.RULES, "nr_free_pages": Rule(lambda m, node=-1: exactly("x", Outcome(value=-7)))}
    assert Refuses().expect("main", "nr_free_pages", (-1,)).default.value == -7
    assert phys.PhysModel().expect("main", "nr_free_pages", (-1,)).default.value == 16383


def test_the_invariants_are_checked_in_their_named_order():
    m = phys.PhysModel()
    assert list(m.INVARIANTS) == ["no_frame_owned_twice", "buddy_blocks_aligned_and_coalesced",
                                  "free_plus_used_is_total", "slab_counts_consistent", "live_heap_blocks_disjoint",
                                  "gc_sound_and_complete", "bind_never_off_node"]
    assert m.invariants() == []
    m.frames.violations.append(("memspec.phys.frame-one-owner", "seeded"))
    m.gc.roots.add(99)          # a root that names no object: the GC law is broken too
    assert m.invariants() == [("memspec.phys.frame-one-owner", "seeded")]
    assert m.invariants() == [("jones.gc.sound", "root 99 was freed")]
