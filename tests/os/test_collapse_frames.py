"""MADV_COLLAPSE copies a block's pages into a new huge page (mm/khugepaged.c
collapse_huge_page), so their frame numbers change -- in the calling process only, even for a
page a fork's child still shares (MADV_COLLAPSE ignores khugepaged's max_ptes_shared).  The
model then allows any frame for those pages and adopts none; before, it demanded the old frame
(a false alarm on Linux 6.18 found by `memspec check --target linux`).  Likewise a huge page
mapped after read faults only, which is the huge zero page until the first write replaces it."""

from __future__ import annotations

from memspec.model.mm import Config, System
from memspec.records import Outcome

from ..conftest import ON_LINUX_ROOT, os_program_failure

B = 0x100400800000
HUGE = 0x200000
PROGRAM = f"""b = mmap({B:#x}, 0x200000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
store(b, 7)
store(b+0x1000, 8)
i = pfn_of(b)
c = fork()
c: j = pfn_of(b)
madvise(b, 0x200000, MADV_COLLAPSE)
m = pfn_of(b)
c: k = pfn_of(b)
x = load(b+0x1000)
c: y = load(b)
store(b, 9)
c: z = load(b)
"""


def _collapsed() -> System:
    s = System(Config())
    s.apply("main", "mmap", (B, HUGE, 3, 0x32, -1, 0), Outcome(value=B))
    s.apply("main", "store", (B, 7), Outcome())
    s.apply("main", "pfn_of", (B,), Outcome(value=0x1234))
    assert s.expect("main", "pfn_of", (B,)).allowed == (Outcome(value=0x1234),)
    s.apply("main", "madvise", (B, HUGE, 25), Outcome(value=0))
    return s


def test_after_a_collapse_a_page_may_have_any_frame_but_must_have_one():
    s = _collapsed()
    e = s.expect("main", "pfn_of", (B,))
    assert e.clause == "linux.madvise.collapse"
    assert e.judge(Outcome(value=0x1234)) is None and e.judge(Outcome(value=0x202600)) is None
    assert e.judge(Outcome(value=0)) is not None                  # the page is present
    s.apply("main", "pfn_of", (B,), Outcome(value=0x202600))      # not adopted: it may move again
    assert s.expect("main", "pfn_of", (B,)).judge(Outcome(value=0x300000)) is None
    # the old frame is free for another page now
    s.apply("main", "mmap", (B + HUGE, 0x1000, 3, 0x32, -1, 0), Outcome(value=B + HUGE))
    s.apply("main", "store", (B + HUGE, 1), Outcome())
    assert s.expect("main", "pfn_of", (B + HUGE,)).judge(Outcome(value=0x1234)) is None


def test_the_fork_program_passes_on_the_model():
    assert os_program_failure(PROGRAM) is None


@ON_LINUX_ROOT
def test_the_fork_program_passes_on_the_kernel():
    f = os_program_failure(PROGRAM, on="linux")
    assert f is None, f


HUGE_ZERO = f"""a = mmap({B:#x}, 0x400000, PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, 0, 0)
madvise(a, 0x400000, MADV_HUGEPAGE)
load(a+0x200000)
b = thp_mapped(a+0x200000)
c = pfn_of(a+0x200000)
store(a+0x201000, 0)
h = pfn_of(a+0x200000)
"""


def test_a_huge_page_after_read_faults_may_be_the_huge_zero_page_replaced_at_the_first_write():
    # the kernel maps the huge zero page at a read fault and a new huge page at the first write
    # (do_huge_zero_wp_pmd): every piece's frame changes (a false alarm on linux-agent, found by check)
    s = System(Config())
    s.apply("main", "mmap", (B, 2 * HUGE, 2, 0x22, 0, 0), Outcome(value=B))
    s.apply("main", "madvise", (B, 2 * HUGE, 14), Outcome(value=0))
    s.apply("main", "load", (B + HUGE,), Outcome(value=0))
    s.apply("main", "thp_mapped", (B + HUGE,), Outcome(value=1))
    s.apply("main", "pfn_of", (B + HUGE,), Outcome(value=0x21ac00))
    s.apply("main", "store", (B + HUGE + 0x1000, 0), Outcome())
    e = s.expect("main", "pfn_of", (B + HUGE,))
    assert e.clause == "linux.thp.fault-huge"
    assert e.judge(Outcome(value=0x1f8c00)) is None and e.judge(Outcome(value=0)) is not None
    # after a write fault first the huge page is a real one: its frames are judged as before
    t = System(Config())
    t.apply("main", "mmap", (B, 2 * HUGE, 3, 0x22, 0, 0), Outcome(value=B))
    t.apply("main", "madvise", (B, 2 * HUGE, 14), Outcome(value=0))
    t.apply("main", "store", (B + HUGE, 1), Outcome())
    t.apply("main", "thp_mapped", (B + HUGE,), Outcome(value=1))
    t.apply("main", "pfn_of", (B + HUGE + 0x1000,), Outcome(value=0x300001))
    t.apply("main", "store", (B + HUGE + 0x1000, 2), Outcome())
    assert t.expect("main", "pfn_of", (B + HUGE + 0x1000,)).allowed == (Outcome(value=0x300001),)
    assert os_program_failure(HUGE_ZERO) is None


@ON_LINUX_ROOT
def test_the_huge_zero_program_passes_on_the_kernel():
    f = os_program_failure(HUGE_ZERO, on="linux")
    assert f is None, f


def test_collapse_is_asked_vma_by_vma_and_its_error_comes_before_a_gaps():
    # measured on 6.18: an unmapped first page, then less than a block of a mapping: EINVAL (the
    # VMA's error ends the walk; the gap's ENOMEM would only come at the end)
    s = System(Config.from_facts({"kernel": "6.18.0"}))
    s.apply("main", "mmap", (B, 2 * HUGE + 0x1000, 0, 0x22, 0, 0), Outcome(value=B))
    s.apply("main", "munmap", (B, 0x1000), Outcome(value=0))
    e = s.expect("main", "madvise", (B, 0x2000, 25))
    assert e.allowed == (Outcome(value=-1, errno="EINVAL"),), e
    # a gap and then a whole block: the block may collapse (0 becomes the gap's ENOMEM) or fail
    e = s.expect("main", "madvise", (B, 2 * HUGE, 25))
    assert e.judge(Outcome(value=-1, errno="ENOMEM")) is None and e.judge(Outcome(value=0)) is not None
    # two VMAs, the first without a whole block: EINVAL there, whatever the second holds
    t = System(Config.from_facts({"kernel": "6.18.0"}))
    t.apply("main", "mmap", (B, 0x3000, 3, 0x32, -1, 0), Outcome(value=B))
    t.apply("main", "mmap", (B + 0x3000, 3 * HUGE, 1, 0x32, -1, 0), Outcome(value=B + 0x3000))
    e = t.expect("main", "madvise", (B + 0x1000, 3 * HUGE, 25))
    assert e.allowed == (Outcome(value=-1, errno="EINVAL"),), e
