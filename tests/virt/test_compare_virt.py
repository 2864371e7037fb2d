"""The virt checkpoint comparison (specs/compare_virt.py): EPT, NPT and guest entries in host memory,
A/D bits included, judged at checkpoints; a target whose state is wrong there is caught."""

from __future__ import annotations

import importlib.util
import os

import pytest

from memspec.program import parse
from memspec.records import Observation, RunResult, Verdict
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

_spec = importlib.util.spec_from_file_location("broken_virt", os.path.join(os.path.dirname(__file__), "broken_virt.py"))
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]

EPT = """set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)
set_epte(0x201000, 0, 0x202000, EPT_R|EPT_W|EPT_X)
set_epte(0x202000, 0, 0x203000, EPT_R|EPT_W|EPT_X)
set_epte(0x203000, 16, 0x410000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 17, 0x411000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 18, 0x412000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 19, 0x413000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
set_epte(0x203000, 256, 0x500000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
"""
GUEST = """set_gpte(0x10000, 0, 0x11000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x11000, 0, 0x12000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x12000, 0, 0x13000, PTE_P|PTE_RW|PTE_US)
set_gpte(0x13000, 5, 0x100000, PTE_P|PTE_RW|PTE_US)
"""
LEAF_EPTE = 0x203000 + 8 * 256          # hpa of the EPT PTE that maps gpa 0x100000
GUEST_PTE = 0x413000 + 8 * 5            # hpa of the guest PTE for gva 0x5000 (gpa 0x13028)


def program(ad: bool, accesses: str = "v = vm_access(0x5008, ACC_READ, 3)\n"):
    eptp = "EPTP_WB|EPTP_WL4|EPTP_AD" if ad else "EPTP_WB|EPTP_WL4"
    return parse(EPT + f"vm_boot(0, VM_EPT, 0x200000, {eptp}, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)\n"
                 + GUEST + accesses)


def with_entry(run: RunResult, hpa: int, change) -> RunResult:
    """The same run, its last checkpoint showing ``change(value)`` at ``hpa``."""
    i, obs = run.observations[-1]
    entries = dict(dict(obs.extra)["entries"])
    entries[hpa] = change(entries[hpa])
    return RunResult(run.outcomes, run.observations[:-1] + ((i, Observation(extra=(("entries", tuple(sorted(entries.items()))),))),))


def checkpoint_failure(p, run):
    j = judge(p, run, "t")
    f = j.failure
    assert f is not None and f.at == "checkpoint", (f, [c.clause for c in j.checks][-3:])
    return f


def test_the_model_target_passes_its_own_checkpoints() -> None:
    for ad in (False, True):
        p = program(ad, "v = vm_access(0x5008, ACC_READ, 3)\nw = vm_access(0x5008, ACC_WRITE, 3)\n")
        run = ModelTarget().run(p, observe="each")
        j = judge(p, run, "model")
        assert j.failure is None
        assert sum(1 for c in j.checks if c.at == "checkpoint" and c.verdict is Verdict.PASS) == len(p.calls)


def test_ept_accessed_flag_missing_where_eptp6_requires_it() -> None:
    p = program(True)
    run = ModelTarget().run(p)
    entries = dict(dict(run.observations[-1][1].extra)["entries"])
    assert entries[LEAF_EPTE] & 0x300 == 0x100           # EPT A set by the read, D not
    f = checkpoint_failure(p, with_entry(run, LEAF_EPTE, lambda v: v & ~0x100))
    assert f.clause == "sdm.ept.ad.readback" and "0x100" in f.note


def test_ept_accessed_flag_set_without_eptp6() -> None:
    p = program(False)
    run = ModelTarget().run(p)
    assert judge(p, run, "t").failure is None
    f = checkpoint_failure(p, with_entry(run, LEAF_EPTE, lambda v: v | 0x100))
    assert f.clause == "sdm.ept.ad.readback"


def test_guest_pte_dirty_without_a_write() -> None:
    p = program(False)
    run = ModelTarget().run(p)
    assert dict(dict(run.observations[-1][1].extra)["entries"])[GUEST_PTE] & 0x60 == 0x20
    f = checkpoint_failure(p, with_entry(run, GUEST_PTE, lambda v: v | 0x40))
    assert f.clause == "sdm.ept.guest-ad" and "guest paging entry" in f.expected


def test_a_bit_other_than_a_d_changed() -> None:
    p = program(True)
    run = ModelTarget().run(p)
    assert checkpoint_failure(p, with_entry(run, LEAF_EPTE, lambda v: v | 0x40)).clause == "sdm.ept.ad.only-a-d"
    assert checkpoint_failure(p, with_entry(run, GUEST_PTE, lambda v: v | 0x100)).clause == "sdm.ad.only-a-d"


def test_accessed_flags_either_way_after_an_exit() -> None:
    """An access that exits (here: the guest PTE's page is EPT not-present after the upper levels were
    used) leaves the A flags of the entries it read either way: both answers pass."""
    p = program(True, "set_epte(0x203000, 19, 0, 0)\nv = vm_access(0x5008, ACC_READ, 3)\n")
    run = ModelTarget().run(p)
    assert run.outcomes[-1].signal == "EPT_VIOLATION"
    root = 0x200000
    for change in (lambda v: v | 0x100, lambda v: v & ~0x100):
        assert judge(p, with_entry(run, root, change), "t").failure is None


def test_a_target_that_shows_nothing_counts_no_checkpoint() -> None:
    p = program(True)
    run = ModelTarget().run(p)
    blank = RunResult(run.outcomes, ((len(p.calls) - 1, Observation()),))
    j = judge(p, blank, "t")
    assert j.failure is None and not [c for c in j.checks if c.at == "checkpoint"]


@pytest.mark.parametrize("bug, clause", [("guest-d-on-read", "sdm.ept.guest-ad"), ("ept-a-missing", "sdm.ept.ad.readback")])
def test_broken_targets_caught_at_the_checkpoint(bug, clause) -> None:
    p = program(True)
    bad = broken.BrokenVirtTarget(bug).run(p, observe="each")
    f = judge(p, bad, bug).failure
    assert f is not None and f.clause == clause and f.at == "checkpoint" and f.index == len(p.calls) - 1
    good = ModelTarget().run(p, observe="each")
    assert judge(p, good, "model").failure is None
