"""A locked mapping that mremap grows is populated past its old length, whether it grew in
place or moved (mm/mremap.c: mm_populate(new_addr + old_len, new_len - old_len) when VM_LOCKED).
The model populated only in place; a moved one's new pages read as not present, a false alarm
on linux-agent found by check --programs 400 --seed 52."""

from __future__ import annotations

from memspec.model.mm import Config, System
from memspec.records import Outcome

from ..conftest import ON_LINUX, os_program_failure

C = 0x10000000d000
PROGRAM = f"""c = mmap({C:#x}, 0x2000, PROT_WRITE, MAP_PRIVATE|MAP_LOCKED|MAP_ANONYMOUS, 0, 0)
d = mremap(c, 0x1000, 0x3000, MREMAP_MAYMOVE, 0)
i = pfn_of(d+0x1000)
r = mincore(d, 0x3000)
"""


def test_the_grown_part_of_a_moved_locked_mapping_is_present():
    s = System(Config())
    s.apply("main", "mmap", (C, 0x2000, 2, 0x2022, 0, 0), Outcome(value=C))
    d = 0x100000100000
    s.apply("main", "mremap", (C, 0x1000, 0x3000, 1, 0), Outcome(value=d))
    assert s.expect("main", "pfn_of", (d + 0x1000,)).judge(Outcome(value=0)) is not None
    assert s.expect("main", "mincore", (d, 0x3000)).allowed == (Outcome(value=0b111),)


def test_the_program_passes_on_the_model():
    assert os_program_failure(PROGRAM) is None


@ON_LINUX
def test_the_program_passes_on_the_kernel():
    f = os_program_failure(PROGRAM, on="linux")
    assert f is None, f
