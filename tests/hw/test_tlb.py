"""The TLB as an allowed-outcome model (Intel SDM Vol. 3A §4.10)."""

from __future__ import annotations

import pytest

from .helpers import TREE, allowed, model_after, pf, value

from memspec.records import Outcome

MAPPED = TREE + "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)\nmov_cr3(0x200000)\naccess(0x405000, ACC_READ, 3)\n"
CHANGED = MAPPED + "set_pte(0x203000, 5, 0x310000, PTE_P|PTE_RW|PTE_US)\n"


def test_before_invalidation_old_and_new_are_both_allowed():
    m = model_after(CHANGED)
    exp = m.expect("main", "access", (0x405000, 0, 3, 0))
    assert exp.clause == "sdm.tlb.stale-before-invalidation" and exp.impl_defined
    assert exp.judge(value(0x300000)) is None and exp.judge(value(0x310000)) is None
    assert exp.judge(value(0x320000)) is not None
    assert exp.default == value(0x300000)          # the model's own TLB keeps what it cached


def test_after_invlpg_only_the_new_one():
    m = model_after(CHANGED + "invlpg(0x405ff8)\n")
    exp = m.expect("main", "access", (0x405000, 0, 3, 0))
    assert exp.clause == "sdm.tlb.invlpg"
    assert exp.judge(value(0x310000)) is None and exp.judge(value(0x300000)) is not None


def test_cr3_write_drops_non_global_but_global_may_survive():
    m = model_after(CHANGED + "mov_cr3(0x200000)\n")
    assert allowed(m, "access(0x405000, ACC_READ, 3)", value(0x300000)) is not None
    glob = ("boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE|CR4_PGE, EFER_LME|EFER_LMA|EFER_NXE)\n" + TREE +
            "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US|PTE_G)\nmov_cr3(0x200000)\n"
            "access(0x405000, ACC_READ, 3)\nset_pte(0x203000, 5, 0x310000, PTE_P|PTE_RW|PTE_US|PTE_G)\n"
            "mov_cr3(0x200000)\n")
    m = model_after(glob)
    assert allowed(m, "access(0x405000, ACC_READ, 3)", value(0x300000)) is None
    assert allowed(m, "access(0x405000, ACC_READ, 3)", value(0x310000)) is None
    m = model_after(glob + "mov_cr4(CR4_PAE)\n")                           # toggling PGE drops globals too
    assert allowed(m, "access(0x405000, ACC_READ, 3)", value(0x300000)) is not None


def test_page_fault_invalidates_the_faulting_page():
    text = (TREE + "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_US)\nmov_cr3(0x200000)\n"
            "access(0x405000, ACC_READ, 3)\nset_pte(0x203000, 5, 0x300000, PTE_US)\n")
    m = model_after(text)
    assert allowed(m, "access(0x405000, ACC_READ, 3)", value(0x300000)) is None      # stale still allowed
    m = model_after(text + "access(0x405000, ACC_WRITE, 3)\n")
    exp = m.expect("main", "access", (0x405000, 0, 3, 0))
    assert exp.judge(value(0x300000)) is not None
    assert exp.blame(value(0x300000)) == "sdm.tlb.pf-invalidates"


def test_rights_upgrade_may_fault_spuriously_until_invalidated():
    text = (TREE + "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_US)\nmov_cr3(0x200000)\n"
            "access(0x405000, ACC_READ, 3)\nset_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)\n")
    m = model_after(text)
    assert allowed(m, "access(0x405000, ACC_WRITE, 3)", pf(0x405000, 7)) is None
    assert allowed(m, "access(0x405000, ACC_WRITE, 3)", value(0x300000)) is None
    m = model_after(text + "invlpg(0x405000)\n")
    assert allowed(m, "access(0x405000, ACC_WRITE, 3)", pf(0x405000, 7)) is not None


def test_pcid_no_flush_keeps_translations_of_that_pcid():
    base = (TREE + "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)\nmov_cr3(0x200000)\n"
            "mov_cr4(CR4_PAE|CR4_PCIDE)\nmov_cr3(0x200001)\naccess(0x405000, ACC_READ, 0)\n"
            "set_pte(0x203000, 5, 0x310000, PTE_P|PTE_RW|PTE_US)\nmov_cr3(0x200002)\n")
    m = model_after(base + "mov_cr3(0x8000000000200001)\n")
    assert allowed(m, "access(0x405000, ACC_READ, 0)", value(0x300000)) is None
    m = model_after(base + "mov_cr3(0x200001)\n")
    assert allowed(m, "access(0x405000, ACC_READ, 0)", value(0x300000)) is not None
    m = model_after(base + "mov_cr3(0x8000000000200001)\ninvpcid(INVPCID_SINGLE, 1)\n")
    assert allowed(m, "access(0x405000, ACC_READ, 0)", value(0x300000)) is not None
    # INVPCID of another PCID leaves this one alone
    m = model_after(base + "mov_cr3(0x8000000000200001)\ninvpcid(INVPCID_SINGLE, 2)\n")
    assert allowed(m, "access(0x405000, ACC_READ, 0)", value(0x300000)) is None


def test_accessed_and_dirty_bits():
    m = model_after(MAPPED)
    assert allowed(m, "read_pte(0x203000, 5)", Outcome(value=0x300027)) is None       # A, not D
    assert allowed(m, "read_pte(0x203000, 5)", Outcome(value=0x300067)) is not None
    m = model_after(MAPPED + "access(0x405000, ACC_WRITE, 3)\n")
    assert allowed(m, "read_pte(0x203000, 5)", Outcome(value=0x300067)) is None
    # a faulting walk may or may not set A in the entries it used
    m = model_after(TREE + "mov_cr3(0x200000)\naccess(0x405000, ACC_READ, 0)\n")
    for v in (0x201007, 0x201027):
        assert allowed(m, "read_pte(0x200000, 0)", Outcome(value=v)) is None


def test_invariant_no_stale_translation_after_invalidation():
    m = model_after(MAPPED)
    assert m.invariants() == []
    entry = m.tlb.entries[0]
    m.history.invalidate("page+g", 0, 0x405000, "sdm.tlb.invlpg")      # an invalidation the TLB ignored
    broken = m.invariants()
    assert broken and broken[0][0] == "sdm.tlb.invlpg" and entry in m.tlb.entries


# PCID 1 caches 0x405000 -> 0x300000 under root 0x200000; a switch without flushing to PCID 2 (root
# 0x204000, sharing the lower tables) where the leaf changes to 0x310000
AWAY = (TREE + "set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)\nset_pte(0x204000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)\n"
        "mov_cr3(0x200000)\nmov_cr4(CR4_PAE|CR4_PCIDE)\nmov_cr3(0x200001)\naccess(0x405000, ACC_READ, 0)\n"
        "mov_cr3(0x8000000000204002)\nset_pte(0x203000, 5, 0x310000, PTE_P|PTE_RW|PTE_US)\n")
BACK = "mov_cr3(0x8000000000200001)\n"


@pytest.mark.parametrize("between, after", [
    ("", ""),
    ("invpcid(INVPCID_SINGLE, 2)\n", ""),                 # another PCID's
    ("invpcid(INVPCID_ADDR, 2, 0x405000)\n", ""),
    ("invlpg(0x405000)\n", ""),                            # INVLPG acts in the current PCID (2) only
], ids=["nothing", "invpcid-single-other", "invpcid-addr-other", "invlpg-under-other"])
def test_a_pcid_translation_survives_a_noflush_switch_away_and_back(between, after):
    # SDM Vol. 3A §4.10.1, §4.10.4.1: nothing invalidated PCID 1's translation: the old frame and the
    # new one are both allowed (a TLB that keeps it and one that refetches), nothing else
    m = model_after(AWAY + between + BACK + after)
    exp = m.expect("main", "access", (0x405000, 0, 0, 0))
    assert exp.clause == "sdm.tlb.stale-before-invalidation" and exp.impl_defined
    assert exp.judge(value(0x300000)) is None and exp.judge(value(0x310000)) is None
    assert exp.judge(value(0x320000)) is not None


@pytest.mark.parametrize("text, blamed", [
    (AWAY + "invpcid(INVPCID_SINGLE, 1)\n" + BACK, None),
    (AWAY + "invpcid(INVPCID_ADDR, 1, 0x405000)\n" + BACK, "sdm.invpcid.addr"),
    (AWAY + "invpcid(INVPCID_ALL, 0)\n" + BACK, None),
    (AWAY + "invpcid(INVPCID_ALL_GLOBAL, 0)\n" + BACK, None),
    (AWAY + BACK + "invlpg(0x405000)\n", "sdm.tlb.invlpg"),      # in PCID 1's context
    (AWAY + "mov_cr3(0x200001)\n", None),                         # a flushing load of PCID 1
    (AWAY + BACK + "mov_cr4(CR4_PAE)\n", None),                   # CR4.PCIDE cleared
], ids=["invpcid-single", "invpcid-addr", "invpcid-all", "invpcid-all-global", "invlpg", "cr3-flush", "pcide-off"])
def test_an_invalidation_of_pcid_1_still_removes_it(text, blamed):
    # a TLB that keeps the old frame after any of these is refused; only the new frame is allowed
    m = model_after(text)
    exp = m.expect("main", "access", (0x405000, 0, 0, 0))
    assert exp.judge(value(0x310000)) is None
    assert exp.judge(value(0x300000)) is not None
    if blamed:      # a flush of a whole PCID is not named yet (stale_walks prunes below the last flush)
        assert exp.blame(value(0x300000)) == blamed
