"""The VMA flags of the advice no program reads back (MADV_NORMAL, RANDOM, SEQUENTIAL, DONTDUMP,
DODUMP, MERGEABLE, UNMERGEABLE) still split the VMA (mm/madvise.c madvise_update_vma), so an
mremap of a range across the split is EFAULT, and at vm.max_map_count the split is refused.
The model keeps them (Vma.readahead, dontdump, mergeable); before, it kept none and expected
the mremap to move (a false alarm on linux-agent found by check --programs 400 --seed 34)."""

from __future__ import annotations

import pytest

from memspec.consts import MADV
from memspec.model.mm import Config, System
from memspec.records import Outcome

from ..conftest import ON_LINUX, os_program_failure

A = 0x100000000000
P = 4096
MOVE_DONTUNMAP = 1 | 4
PROGRAM = f"""a = mmap({A:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
store(a+0x1000, 7)
madvise(a, 0x1000, MADV_RANDOM)
m = mremap(a, 0x2000, 0x2000, MREMAP_MAYMOVE|MREMAP_DONTUNMAP, 0)
madvise(a, 0x1000, MADV_NORMAL)
n = mremap(a, 0x2000, 0x3000, MREMAP_MAYMOVE, 0)
x = load(n+0x1000)
"""


def _two_pages(advice: str, **facts) -> System:
    s = System(Config.from_facts(facts))
    s.apply("main", "mmap", (A, 2 * P, 3, 0x32, -1, 0), Outcome(value=A))
    s.apply("main", "madvise", (A, P, MADV[advice]), Outcome(value=0))
    return s


@pytest.mark.parametrize("advice", ["MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_DONTDUMP", "MADV_MERGEABLE"])
def test_the_flag_splits_the_vma_and_mremap_across_it_is_efault(advice):
    s = _two_pages(advice)
    e = s.expect("main", "mremap", (A, 2 * P, 2 * P, MOVE_DONTUNMAP, 0))
    assert e.allowed == (Outcome(value=-1, errno="EFAULT"),), e


@pytest.mark.parametrize("advice, undo", [("MADV_RANDOM", "MADV_NORMAL"), ("MADV_SEQUENTIAL", "MADV_NORMAL"),
                                          ("MADV_DONTDUMP", "MADV_DODUMP"), ("MADV_MERGEABLE", "MADV_UNMERGEABLE")])
def test_undoing_it_makes_one_vma_again(advice, undo):
    s = _two_pages(advice)
    s.apply("main", "madvise", (A, P, MADV[undo]), Outcome(value=0))
    e = s.expect("main", "mremap", (A, 2 * P, 2 * P, MOVE_DONTUNMAP, 0))
    assert e.default.errno is None, e


def test_shared_memory_is_never_marked_mergeable():
    s = System(Config())
    s.apply("main", "mmap", (A, 2 * P, 3, 0x31, -1, 0), Outcome(value=A))
    s.apply("main", "madvise", (A, P, MADV["MADV_MERGEABLE"]), Outcome(value=0))
    assert len(s.procs["main"].vmas) == 1          # mm/ksm.c vma_ksm_compatible: no VM_SHARED


def test_at_the_limit_the_split_is_refused_exactly_and_no_change_needs_none():
    s = System(Config.from_facts({"max_map_count": 1}))
    s.apply("main", "mmap", (A, 3 * P, 3, 0x32, -1, 0), Outcome(value=A))
    e = s.expect("main", "madvise", (A + P, P, MADV["MADV_RANDOM"]))
    assert e.allowed == (Outcome(value=-1, errno="EAGAIN"),), e
    # MADV_NORMAL on memory with no read-ahead flag changes nothing: no split, 0
    assert s.expect("main", "madvise", (A + P, P, MADV["MADV_NORMAL"])).allowed == (Outcome(value=0),)


def test_the_program_passes_on_the_model():
    assert os_program_failure(PROGRAM) is None


@ON_LINUX
def test_the_program_passes_on_the_kernel():
    f = os_program_failure(PROGRAM, on="linux")
    assert f is None, f
