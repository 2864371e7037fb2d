"""Failures the fuzzer found on the unmutated os model (docs/bug-finding.md), each kept as a
regression test: the program, and a check that the rule it exposed still catches what it is for."""

from __future__ import annotations

from memspec.fuzz.differential import execute
from memspec.model import invariants, pressure
from memspec.model.mm import new_model
from memspec.program import eval_args, parse
from memspec.targets.registry import make_target

W = 0x100005000000
L = 0x10000003F000

# `memspec fuzz --target model --layer os --seed 0`: the first finding, memspec.inv.locked-resident.
# The locked VMA never mapped the page (mlock of PROT_NONE fails with ENOMEM after setting
# VM_LOCKED; populate does not fault PROT_NONE in), so the folio is not mlocked and the kernel may
# page it out through the other, unlocked mapping.  The invariant counted the VMA's cover.
PAGEOUT_PAST_A_FAILED_MLOCK = (
    "fd = open_file(0x3000, O_RDWR)\n"
    f"a = mmap({W:#x}, 0x3000, PROT_WRITE, MAP_SHARED, fd, 0)\n"
    "store(a+0x2000, 0)\n"
    f"m = mmap({L:#x}, 0x3000, 0, MAP_SHARED, fd, 0)\n"
    "mlock(m+0x2000, 0x1000)\n"
    "e = madvise(a+0x2000, 0x1000, MADV_PAGEOUT)\n")


def test_pageout_of_a_page_a_locked_vma_never_faulted_in_is_no_invariant_failure():
    model = make_target("model")
    j = execute(model, parse(PAGEOUT_PAST_A_FAILED_MLOCK), model.facts())
    assert j.failure is None, j.failure


def _shared_file_page(prot_locked: str) -> tuple:
    """A file page mapped at ``a`` and, locked, at ``m``; returns (system, page)."""
    sys_ = new_model({})
    text = ("fd = open_file(0x1000, O_RDWR)\n"
            f"a = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\nstore(a, 1)\n"
            f"m = mmap({L:#x}, 0x1000, {prot_locked}, MAP_SHARED, fd, 0)\nmlock(m, 0x1000)\n")
    env: dict = {}
    for c in parse(text).calls:
        args = eval_args(c, env)
        o = sys_.expect("main", c.name, args).default
        sys_.apply("main", c.name, args, o)
        sys_.bind("main", c.name, c.result, o)
        if c.result and o.value is not None:
            env[c.result] = o.value
    page = sys_.procs["main"].pte[W].page
    return sys_, page


def test_a_page_the_locked_mapping_maps_is_still_caught_when_evicted():
    sys_, page = _shared_file_page("PROT_READ")
    assert invariants.maps_locked(sys_, page) == [f"main@{L:#x}"]
    pressure.evict(sys_, page)                  # what a broken reclaim would do
    assert [c for c, _ in sys_.invariants()] == ["memspec.inv.locked-resident"]


def test_a_locked_vma_without_a_pte_to_the_page_does_not_hold_it():
    sys_, page = _shared_file_page("PROT_NONE")
    assert sys_.procs["main"].vmas.find(L)[2].locked       # VM_LOCKED went on before populate failed
    assert invariants.maps_locked(sys_, page) == []
    pressure.evict(sys_, page)
    assert sys_.invariants() == []
