"""vm.max_map_count at a split (model/os/splits.py): mprotect, mlock, munlock and madvise that
must split a VMA are refused at the limit, with the VMAs before the refused split already
changed; exact when the model runs alone, a choice near the limit on a target with mappings of
its own; suite program 59 passes on the model, and an implementation that ignores the limit on
splits is caught (tests/os/broken_split_limit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from memspec.consts import MADV, SANDBOX_WINDOW
from memspec.fuzz.differential import execute
from memspec.model.mm import Config, System
from memspec.program import load, parse
from memspec.records import Outcome
from memspec.targets.model import ModelTarget

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import broken_split_limit  # noqa: E402

SUITE = HERE.parents[1] / "specs" / "suite" / "os" / "59-max-map-count-splits.mst"
A = 0x100100000000
P = 4096
RW, R = 3, 1
ANON = 0x22


def system(max_maps: int, vmas: int, **facts) -> System:
    """A process of ``vmas`` separate three-page mappings (the first at A), alone, with the limit ``max_maps``."""
    s = System(Config.from_facts({"max_map_count": max_maps, **facts}))
    for k in range(vmas):
        s.apply("main", "mmap", (A + k * 0x10 * P, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A + k * 0x10 * P))
    return s


def test_alone_at_the_limit_a_split_is_enomem_and_nothing_changes():
    s = system(4, 4)
    e = s.expect("main", "mprotect", (A + P, P, R))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),) and e.clause == "linux.mprotect.enomem-max-map-count"
    s.apply("main", "mprotect", (A + P, P, R), e.default)
    assert s.maps("main")[0] == (A, A + 3 * P, "rw-p")
    # the whole VMA needs no split
    assert s.expect("main", "mprotect", (A, 3 * P, R)).allowed == (Outcome(value=0),)
    # the same protection changes nothing, so nothing is split (mprotect_fixup: newflags == oldflags)
    assert s.expect("main", "mprotect", (A + P, P, RW)).allowed == (Outcome(value=0),)


def test_one_below_the_limit_the_head_split_is_made_and_the_tail_split_refused():
    s = system(5, 4)
    e = s.expect("main", "mprotect", (A + P, P, R))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),)
    # a range that needs the head split only goes through
    assert s.expect("main", "mprotect", (A + P, 2 * P, R)).allowed == (Outcome(value=0),)


def test_the_vmas_before_the_refused_split_are_changed():
    # [A, A+3P) whole, then the hole-free neighbour [A+3P, A+6P) needs a tail split
    s = System(Config.from_facts({"max_map_count": 2}))
    s.apply("main", "mmap", (A, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A))
    s.apply("main", "mmap", (A + 3 * P, 3 * P, 0, ANON | 0x10, -1, 0), Outcome(value=A + 3 * P))
    e = s.expect("main", "mprotect", (A, 4 * P, R))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),)
    s.apply("main", "mprotect", (A, 4 * P, R), e.default)
    assert [m[2] for m in s.maps("main")] == ["r--p", "---p"]


def test_mlock_munlock_and_madvise_are_refused_alike():
    s = system(4, 4)
    assert s.expect("main", "mlock", (A + P, P)).allowed == (Outcome(value=-1, errno="ENOMEM"),)
    assert s.expect("main", "mlock2", (A + P, P, 1)).allowed == (Outcome(value=-1, errno="ENOMEM"),)
    e = s.expect("main", "madvise", (A + P, P, MADV["MADV_DONTFORK"]))
    assert e.allowed == (Outcome(value=-1, errno="EAGAIN"),) and e.clause == "linux.madvise.eagain-max-map-count"
    # munlock of memory that is not locked changes nothing: no split
    assert s.expect("main", "munlock", (A + P, P)).allowed == (Outcome(value=0),)
    # advice that changes no flag (MADV_WILLNEED) never splits
    assert s.expect("main", "madvise", (A + P, P, MADV["MADV_WILLNEED"])).allowed == (Outcome(value=0),)


def test_mseal_is_refused_at_the_split_and_seals_the_vmas_before_it():
    s = system(4, 4)
    e = s.expect("main", "mseal", (A + P, P, 0))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),) and e.clause == "linux.mseal.enomem-max-map-count"
    s.apply("main", "mseal", (A + P, P, 0), e.default)
    assert s.expect("main", "munmap", (A, 3 * P)).allowed == (Outcome(value=0),)     # nothing sealed
    # the whole VMA needs no split and is sealed
    assert s.expect("main", "mseal", (A, 3 * P, 0)).allowed == (Outcome(value=0),)
    s.apply("main", "mseal", (A, 3 * P, 0), Outcome(value=0))
    # a VMA already sealed needs no split: sealing part of it again is 0
    assert s.expect("main", "mseal", (A + P, P, 0)).allowed == (Outcome(value=0),)
    # a range over the sealed VMA and the head of the next: the first is skipped, the next's tail
    # split is refused, nothing more is sealed
    t = System(Config.from_facts({"max_map_count": 2}))
    t.apply("main", "mmap", (A, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A))
    t.apply("main", "mmap", (A + 3 * P, 3 * P, R, ANON | 0x10, -1, 0), Outcome(value=A + 3 * P))
    t.apply("main", "mseal", (A, 3 * P, 0), Outcome(value=0))
    e = t.expect("main", "mseal", (A, 4 * P, 0))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),)
    t.apply("main", "mseal", (A, 4 * P, 0), e.default)
    assert t.expect("main", "munmap", (A + 3 * P, 3 * P)).allowed == (Outcome(value=0),)
    # two unsealed VMAs: the first is sealed whole before the second's split is refused
    u = System(Config.from_facts({"max_map_count": 2}))
    u.apply("main", "mmap", (A, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A))
    u.apply("main", "mmap", (A + 3 * P, 3 * P, R, ANON | 0x10, -1, 0), Outcome(value=A + 3 * P))
    e = u.expect("main", "mseal", (A, 4 * P, 0))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),)
    u.apply("main", "mseal", (A, 4 * P, 0), e.default)
    assert u.expect("main", "munmap", (A, 3 * P)).allowed == (Outcome(value=-1, errno="EPERM"),)
    assert u.expect("main", "munmap", (A + 3 * P, 3 * P)).allowed == (Outcome(value=0),)


def test_neighbours_the_kernel_would_merge_make_the_count_a_choice_alone():
    # two touching private anonymous mappings of the same protection are one VMA in the kernel
    # (mm/vma.c vma_merge_new_range); the model keeps two, so alone at the limit its count is high
    s = System(Config.from_facts({"max_map_count": 2}))
    s.apply("main", "mmap", (A, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A))
    s.apply("main", "mmap", (A + 3 * P, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A + 3 * P))
    assert broken_split_limit.merge_slack(s, "main") == 1
    e = s.expect("main", "mprotect", (A + P, P, R))
    assert e.judge(Outcome(value=0)) is None and e.judge(Outcome(value=-1, errno="ENOMEM")) is None
    # a third mapping apart from them: the model counts 3 > 2, the kernel 2: both allowed
    s.apply("main", "mmap", (A + 0x10 * P, P, RW, ANON | 0x10, -1, 0), Outcome(value=A + 0x10 * P))
    e = s.expect("main", "mmap", (A + 0x20 * P, P, RW, ANON | 0x10, -1, 0))
    assert e.judge(Outcome(value=A + 0x20 * P)) is None and e.judge(Outcome(value=-1, errno="ENOMEM")) is None
    # mappings that differ (protection) never merge: the count stays exact
    t = System(Config.from_facts({"max_map_count": 2}))
    t.apply("main", "mmap", (A, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A))
    t.apply("main", "mmap", (A + 3 * P, 3 * P, R, ANON | 0x10, -1, 0), Outcome(value=A + 3 * P))
    assert broken_split_limit.merge_slack(t, "main") == 0
    assert t.expect("main", "mprotect", (A + P, P, R)).allowed == (Outcome(value=-1, errno="ENOMEM"),)
    # an mprotect and its undoing: the kernel merges the three pieces back, the model keeps them
    u = System(Config.from_facts({"max_map_count": 4}))
    u.apply("main", "mmap", (A, 3 * P, RW, ANON | 0x10, -1, 0), Outcome(value=A))
    u.apply("main", "mprotect", (A + P, P, R), Outcome(value=0))
    u.apply("main", "mprotect", (A + P, P, RW), Outcome(value=0))
    assert broken_split_limit.merge_slack(u, "main") == 2


def test_on_a_target_with_mappings_of_its_own_it_is_a_choice_near_the_limit_only():
    band = {"quiet_ranges": [list(SANDBOX_WINDOW)], "base_maps": 100}
    near = system(140, 4, **band).expect("main", "mprotect", (A + P, P, R))
    assert near.judge(Outcome(value=0)) is None and near.judge(Outcome(value=-1, errno="ENOMEM")) is None
    far = system(65530, 4, **band).expect("main", "mprotect", (A + P, P, R))
    assert far.judge(Outcome(value=-1, errno="ENOMEM")) is not None


def test_the_suite_program_passes_on_the_model():
    j = execute(ModelTarget(), load(str(SUITE)), {})
    assert j.failure is None, j.failure


SMALL = {"max_map_count": 300}
PROG = f"""a = mmap({A:#x}, 0x4000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
n = map_pages(0x100200000000, 400, PROT_READ)
e1 = mprotect(a+0x1000, 0x1000, PROT_READ)
store(a+0x1000, 8)
"""


@pytest.mark.parametrize("call, clause", [
    ("", "linux.mprotect.enomem-max-map-count"),
    ("e0 = mlock(a+0x1000, 0x1000)\n", "linux.mlock.enomem-max-map-count"),
    ("e0 = madvise(a+0x1000, 0x1000, MADV_WIPEONFORK)\n", "linux.madvise.eagain-max-map-count"),
    ("e0 = mseal(a+0x1000, 0x1000, 0)\n", "linux.mseal.enomem-max-map-count"),
])
def test_an_implementation_that_ignores_the_limit_on_splits_is_caught(call, clause):
    lines = PROG.splitlines(keepends=True)
    prog = parse("".join(lines[:2]) + call + "".join(lines[2:]))
    ref = broken_split_limit.target("reference", **SMALL)
    assert execute(ref, prog, ref.facts()).failure is None
    t = broken_split_limit.target("splits-ignore-limit", **SMALL)
    j = execute(t, prog, t.facts())
    assert j.failure is not None and j.failure.clause == clause, j.failure
    assert j.failure.index == 2


def test_the_broken_implementation_is_caught_by_the_suite_program():
    t = broken_split_limit.target("splits-ignore-limit")
    j = execute(t, load(str(SUITE)), t.facts())
    assert j.failure is not None and j.failure.clause == "linux.mprotect.enomem-max-map-count", j.failure
