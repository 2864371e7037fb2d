"""Reclaim of one 4 KiB piece of a huge page khugepaged made: the huge page is split first
(mm/vmscan.c shrink_folio_list splits a large folio before reclaiming its pieces) and every piece
keeps its bytes.  The model used to zap the one piece under a PMD it still called huge, and
broke its own invariant (``memspec.inv.pte-matches-vma``: a huge mapping with a missing piece),
a false alarm of the model target found by the survivor readers of issue #26."""

from __future__ import annotations

from ..conftest import os_program_failure

PROGRAM = """# memspec-program: 1
memory_limit(4096, 1024)
a = mmap(0x100011400000, 0x200000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
store(a+0x3000, 9)
store(a+0x1ff000, 7)
madvise(a, 0x200000, MADV_HUGEPAGE)
c = khugepaged()
r = reclaim(1)
x = load(a+0x3000)
y = load(a+0x4000)
z = load(a+0x1ff000)
"""


def test_a_reclaimed_piece_of_a_huge_page_splits_it_and_keeps_every_byte() -> None:
    assert os_program_failure(PROGRAM) is None


def test_a_lost_byte_after_the_split_is_still_caught() -> None:
    from memspec.fuzz.differential import execute
    from memspec.program import parse
    from memspec.records import Outcome, RunResult
    from memspec.specs.judge import judge
    from memspec.targets.model import ModelTarget
    program = parse(PROGRAM)
    run = ModelTarget().run(program)
    assert execute(ModelTarget(), program, {}).failure is None
    outs = list(run.outcomes)
    outs[-1] = Outcome(value=0)
    f = judge(program, RunResult(tuple(outs), run.observations), "loses-a-byte", {}).failure
    assert f is not None and f.index == len(outs) - 1, f
