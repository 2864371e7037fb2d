"""MADV_PAGEOUT of a shmem page with no swap device: a page never written (read-faulted, all
zero) is clean and reclaim may drop it from the page cache (mm/vmscan.c shrink_folio_list), so its
residency is the kernel's; a written page cannot go anywhere and stays resident.  (Found by fuzzing
the linux target: mincore read 0 where the model demanded 1.)"""

from __future__ import annotations

from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x10000a000000
HEAD = f"""fd = shm_open("/mc", O_CREAT|O_RDWR, 0)
ftruncate(fd, 0x1000)
s = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)
"""


def failed(text: str, outcomes: list[Outcome]) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", {"kernel": "6.18.0", "swap_pages": 0})
    return j.failure.clause if j.failure else None


def test_a_clean_shmem_page_may_be_dropped_without_swap():
    text = HEAD + "x = load(s)\nmadvise(s, 0x1000, MADV_PAGEOUT)\nm = mincore(s, 0x1000)\ny = load(s)\n"
    start = [Outcome(value=3), Outcome(value=0), Outcome(value=W), Outcome(value=0), Outcome(value=0)]
    assert failed(text, start + [Outcome(value=0), Outcome(value=0)]) is None
    assert failed(text, start + [Outcome(value=1), Outcome(value=0)]) is None
    # its data is still all zero either way
    assert failed(text, start + [Outcome(value=0), Outcome(value=7)]) is not None


def test_a_written_shmem_page_stays_resident_without_swap():
    text = HEAD + "store(s, 7)\nmadvise(s, 0x1000, MADV_PAGEOUT)\nm = mincore(s, 0x1000)\n"
    start = [Outcome(value=3), Outcome(value=0), Outcome(value=W), Outcome(), Outcome(value=0)]
    assert failed(text, start + [Outcome(value=1)]) is None
    assert failed(text, start + [Outcome(value=0)]) == "posix.mincore.residency"


def test_with_swap_a_written_shmem_page_may_go_too():
    # the other value of the fact: with a swap device MADV_PAGEOUT may swap the written page out
    text = HEAD + "store(s, 7)\nmadvise(s, 0x1000, MADV_PAGEOUT)\nm = mincore(s, 0x1000)\nx = load(s)\n"
    start = [Outcome(value=3), Outcome(value=0), Outcome(value=W), Outcome(), Outcome(value=0)]
    facts = {"kernel": "6.18.0", "swap_pages": 1 << 18}
    for resident in (0, 1):
        j = judge(parse(text), RunResult(tuple(start + [Outcome(value=resident), Outcome(value=7)]), ()), "t", facts)
        assert j.failure is None, j.failure
    j = judge(parse(text), RunResult(tuple(start + [Outcome(value=0), Outcome(value=0)]), ()), "t", facts)
    assert j.failure is not None          # its data comes back from swap
