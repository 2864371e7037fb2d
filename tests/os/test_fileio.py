"""read, write, pread, pwrite, lseek (model/os/fileio.py): the file seen through the descriptor and
through mappings is one file; the errors come in the kernel's order; a kernel that does otherwise
is caught."""

from __future__ import annotations

from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x100008500000


def failed(text: str, outcomes: list[Outcome]) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", {"kernel": "6.18.0"})
    return j.failure.clause if j.failure else None


def ok(v: int = 0) -> Outcome:
    return Outcome(value=v)


def err(name: str) -> Outcome:
    return Outcome(value=-1, errno=name)


DONE = Outcome()
MAPPED = (f'fd = memfd_create("io", 0)\nftruncate(fd, 0x2000)\n'
          f"s = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
          f"p = mmap({W + 0x10000:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE, fd, 0)\n")
MAPPED_OK = [ok(3), ok(0), ok(W), ok(W + 0x10000)]


def test_a_store_through_a_shared_mapping_is_what_pread_returns():
    text = MAPPED + "store(s, 0x11)\na = pread(fd, 0)\nb = pread(fd, 0x1000)\n"
    assert failed(text, MAPPED_OK + [DONE, ok(0x11), ok(0)]) is None
    assert failed(text, MAPPED_OK + [DONE, ok(0), ok(0)]) == "posix.read.file-contents"


def test_a_pwrite_is_what_mappings_load_until_a_private_copy():
    text = MAPPED + ("pwrite(fd, 0x1000, 0x22, 2)\nb = load(s+0x1001)\nc = load(p+0x1000)\n"
                     "store(p+0x1000, 0x33)\npwrite(fd, 0x1000, 0x44, 1)\nd = load(p+0x1000)\ne = load(s+0x1000)\n")
    good = MAPPED_OK + [ok(2), ok(0x22), ok(0x22), DONE, ok(1), ok(0x33), ok(0x44)]
    assert failed(text, good) is None
    assert failed(text, good[:5] + [ok(0)] + good[6:]) is not None            # the shared mapping missed it
    assert failed(text, good[:9] + [ok(0x44)] + good[10:]) is not None        # the private copy changed


def test_writes_past_the_end_extend_and_read_stops_at_the_end():
    text = MAPPED + ("lseek(fd, 0x1fff, SEEK_SET)\nwrite(fd, 0x55, 3)\nn = lseek(fd, 0, SEEK_END)\n"
                     "z = pread(fd, 0x2001)\neo = pread(fd, 0x2002)\nl = load(s+0x1fff)\n")
    good = MAPPED_OK + [ok(0x1FFF), ok(3), ok(0x2002), ok(0x55), ok(256), ok(0x55)]
    assert failed(text, good) is None
    assert failed(text, good[:6] + [ok(0x2000)] + good[7:]) == "posix.lseek.sets-offset"
    assert failed(text, good[:8] + [ok(0)] + good[9:]) == "posix.read.file-contents"


def test_read_advances_the_offset_a_forked_child_shares():
    text = MAPPED + ("store(s, 7)\nx = read(fd)\ny = read(fd)\nk = fork()\nk: lseek(fd, 5, SEEK_SET)\nk: exit()\n"
                     "q = lseek(fd, 0, SEEK_CUR)\n")
    good = MAPPED_OK + [DONE, ok(7), ok(0), ok(99), ok(5), DONE, ok(5)]
    assert failed(text, good) is None
    assert failed(text, good[:6] + [ok(7)] + good[7:]) == "posix.read.file-contents"   # no advance
    assert failed(text, good[:10] + [ok(2)]) == "posix.lseek.sets-offset"              # the child's own offset


def test_errors_in_the_kernels_order():
    text = ("fd = memfd_create(\"io\", 0)\ne1 = pread(fd, -1)\ne2 = pread(200, -1)\ne3 = lseek(fd, -1, SEEK_SET)\n"
            "r = pipe()\ne4 = pread(r, 0)\ne5 = write(r, 1, 1)\ne6 = lseek(r, 0, 9)\ne7 = lseek(r, 0, SEEK_SET)\n"
            "e8 = lseek(fd, 0, SEEK_DATA)\n")
    good = [ok(3), err("EINVAL"), err("EINVAL"), err("EINVAL"), ok(4), err("ESPIPE"), err("EBADF"), err("EINVAL"),
            err("ESPIPE"), err("ENXIO")]
    assert failed(text, good) is None
    assert failed(text, good[:2] + [err("EBADF")] + good[3:]) == "posix.pread.einval-offset"   # offset first
    assert failed(text, good[:7] + [err("ESPIPE")] + good[8:]) == "posix.lseek.einval"        # whence first
    assert failed(text, good[:9] + [ok(0)]) == "linux.lseek.enxio"


def test_data_and_holes_are_the_file_systems_choice_inside_the_file():
    text = 'fd = memfd_create("io", 0)\nftruncate(fd, 0x3000)\nh = lseek(fd, 0x1000, SEEK_HOLE)\n'
    assert failed(text, [ok(3), ok(0), ok(0x1000)]) is None
    assert failed(text, [ok(3), ok(0), ok(0x3000)]) is None
    assert failed(text, [ok(3), ok(0), ok(0x4000)]) == "linux.lseek.data-hole"


def test_a_descriptor_is_an_unsigned_int_and_access_mode_3_opens():
    text = ('fd = memfd_create("io", 0)\ne = ftruncate(fd+0x100000000, 0x1000)\n'
            "c = open_file(0x2000, O_RDWR|O_WRONLY)\nr = pread(c, 0)\nt = ftruncate(c, 0)\n")
    good = [ok(3), ok(0), ok(4), err("EBADF"), err("EINVAL")]
    assert failed(text, good) is None                                          # measured on 6.18
    assert failed(text, good[:1] + [err("EBADF")] + good[2:]) == "posix.ftruncate.sets-size"
    assert failed(text, good[:2] + [err("EINVAL")] + good[3:]) is not None     # the open must succeed
    assert failed(text, good[:3] + [ok(0)] + good[4:]) == "posix.read.ebadf"   # neither read nor write
