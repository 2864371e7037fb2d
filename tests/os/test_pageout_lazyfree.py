"""MADV_PAGEOUT of an anonymous page after MADV_FREE: the page is clean, so reclaim discards it
even with no swap device (mm/vmscan.c shrink_folio_list frees an anon folio that is not
swap-backed); it is then not resident and reads 0.  The model used to keep every anonymous page
resident without swap, a false alarm on Linux 6.18 found by `memspec check --target linux`."""

from __future__ import annotations

from memspec.model.mm import Config, System
from memspec.records import Outcome

from ..conftest import ON_LINUX, os_program_failure

B = 0x100001010000
PROGRAM = f"""b = mmap({B:#x}, 0x4000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
store(b+0x3000, 5)
store(b+0x2000, 6)
madvise(b+0x3000, 0x1000, MADV_FREE)
madvise(b, 0x4000, MADV_PAGEOUT)
d = mincore(b, 0x4000)
x = load(b+0x3000)
y = load(b+0x2000)
"""


def test_without_swap_pageout_may_drop_a_freed_page_and_keeps_the_others():
    s = System(Config.from_facts({"swap_pages": 0}))
    s.apply("main", "mmap", (B, 0x4000, 3, 0x22, -1, 0), Outcome(value=B))
    s.apply("main", "store", (B + 0x3000, 5), Outcome())
    s.apply("main", "store", (B + 0x2000, 6), Outcome())
    s.apply("main", "madvise", (B + 0x3000, 0x1000, 8), Outcome(value=0))
    s.apply("main", "madvise", (B, 0x4000, 21), Outcome(value=0))
    e = s.expect("main", "mincore", (B, 0x4000))
    # page 2 (written, not freed) stays resident; page 3 (freed, clean) may be gone
    assert e.judge(Outcome(value=0b0100)) is None and e.judge(Outcome(value=0b1100)) is None
    assert e.judge(Outcome(value=0b1000)) is not None
    assert s.expect("main", "load", (B + 0x2000,)).allowed == (Outcome(value=6),)
    x = s.expect("main", "load", (B + 0x3000,))
    assert x.judge(Outcome(value=0)) is None and x.judge(Outcome(value=5)) is None


def test_the_program_passes_on_the_model():
    assert os_program_failure(PROGRAM) is None


@ON_LINUX
def test_the_program_passes_on_the_kernel():
    f = os_program_failure(PROGRAM, on="linux")
    assert f is None, f


def test_a_freed_page_read_back_as_0_is_the_zero_page_and_resident():
    # found on linux-agent (check --programs 400 --seed 47): after MADV_FREE and MADV_PAGEOUT a
    # load reads 0 and faults in the zero page, which mincore counts as resident
    s = System(Config.from_facts({"swap_pages": 0}))
    s.apply("main", "mmap", (B, 0x5000, 2, 0x22, 0, 0), Outcome(value=B))
    s.apply("main", "store", (B + 0x4fff, 1), Outcome())
    s.apply("main", "madvise", (B, 0x5000, 8), Outcome(value=0))
    s.apply("main", "madvise", (B, 0x5000, 21), Outcome(value=0))
    s.apply("main", "load", (B + 0x4fff,), Outcome(value=0))
    e = s.expect("main", "mincore", (B, 0x5000))
    assert e.judge(Outcome(value=0b10000)) is None, e
    assert s.expect("main", "load", (B + 0x4fff,)).allowed == (Outcome(value=0),)
