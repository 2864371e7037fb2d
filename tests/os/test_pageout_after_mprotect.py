"""MADV_PAGEOUT of a clean file page this process alone maps, after an mprotect left the model
unsure of its PTE (``maybe``): Linux 6.18 reclaims it (mincore 0, no frame in pagemap), and the
model must allow that as well as the page kept (a kernel that never had the PTE leaves it in the
page cache).  The model used to insist the page stayed resident at its old frame: a false alarm
on the real kernel (mm/madvise.c madvise_cold_or_pageout_pte_range reclaims a folio mapped once)."""

from __future__ import annotations


from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

from ..conftest import ON_LINUX_ROOT, os_program_failure

PROGRAM = """# memspec-program: 1
fd = open_file(0x1000, O_RDWR)
p = mmap(0x100017000000, 0x1000, PROT_READ, MAP_SHARED, fd, 0)
x = load(p)
mprotect(p, 0x1000, PROT_READ|PROT_WRITE)
madvise(p, 0x1000, MADV_PAGEOUT)
c = mincore(p, 0x1000)
f = pfn_of(p)
y = load(p)
"""
MINCORE, PFN_OF = 5, 6


def _judged_with(mincore: int, pfn: int | None):
    """The model's own run with the residency and frame answers replaced (as a kernel answers)."""
    program = parse(PROGRAM)
    run = ModelTarget().run(program)
    outs = list(run.outcomes)
    outs[MINCORE] = Outcome(value=mincore)
    if pfn is not None:
        outs[PFN_OF] = Outcome(value=pfn)
    return judge(program, RunResult(tuple(outs), run.observations), "kernel-like", {})


def test_the_page_reclaimed_is_allowed() -> None:
    j = _judged_with(mincore=0, pfn=0)
    assert j.failure is None, j.failure


def test_the_page_kept_is_allowed_too() -> None:
    assert execute(ModelTarget(), parse(PROGRAM), {}).failure is None
    j = _judged_with(mincore=1, pfn=None)
    assert j.failure is None, j.failure


def test_a_page_that_is_reclaimed_but_reads_other_bytes_is_still_caught() -> None:
    program = parse(PROGRAM)
    run = ModelTarget().run(program)
    outs = list(run.outcomes)
    outs[-1] = Outcome(value=0x5a)          # the file byte is 0: a reclaim must not change it
    j = judge(program, RunResult(tuple(outs), run.observations), "kernel-like", {})
    assert j.failure is not None and j.failure.clause == "posix.mmap.file-contents", j.failure


@ON_LINUX_ROOT
def test_linux_agrees() -> None:
    assert os_program_failure(PROGRAM, on="linux") is None
