"""mmap's address search (mm/mmap.c do_mmap -> __get_unmapped_area: no room is ENOMEM) comes
before do_mmap's later checks: MAP_LOCKED without the right to lock, the lock limit, the map
type and the descriptor's mode.  The model asked the map type first (EINVAL where 6.18 gives
ENOMEM), found by the os generator's edge lengths."""

from __future__ import annotations

from memspec.model.mm import Config, System
from memspec.records import Outcome

from ..conftest import ON_LINUX, os_program_failure

TASK = 0x7ffffffff000
PROGRAM = f"""a = mmap(0x100000010000, {TASK:#x}, 0, MAP_ANONYMOUS, 0, 0)
b = mmap(0x100000010000, 0x1000, 0, MAP_ANONYMOUS, 0, 0)
fd = open_file(0x1000, O_RDONLY)
c = mmap(NULL, {TASK:#x}, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)
d = mmap(NULL, 0x1000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)
"""


def test_no_room_comes_before_the_map_type_and_the_fd_mode():
    s = System(Config())
    s.apply("main", "mmap", (0x100000000000, 0x1000, 3, 0x32, -1, 0), Outcome(value=0x100000000000))
    no_room = s.expect("main", "mmap", (0x100000010000, TASK, 0, 0x20, 0, 0))
    assert no_room.allowed == (Outcome(value=-1, errno="ENOMEM"),) and no_room.clause == "posix.mmap.enomem-no-room"
    # with room, the map type is checked
    assert s.expect("main", "mmap", (0x100000010000, 0x1000, 0, 0x20, 0, 0)).allowed == (
        Outcome(value=-1, errno="EINVAL"),)


def test_the_program_passes_on_the_model():
    assert os_program_failure(PROGRAM) is None


@ON_LINUX
def test_the_program_passes_on_the_kernel():
    f = os_program_failure(PROGRAM, on="linux")
    assert f is None, f
