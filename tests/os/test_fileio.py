"""read, write, pread, pwrite, lseek (model/os/fileio.py): the file seen through the descriptor and
through mappings is one file; the errors come in the kernel's order; a kernel that does otherwise
is caught."""

from __future__ import annotations

from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x100008500000


def failed(text: str, outcomes: list[Outcome], facts: dict | None = None) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", facts or {"kernel": "6.18.0"})
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


# -- O_APPEND (posix.write.append-at-end; Linux pwrite appends too: linux.pwrite.append-at-end) --

APPEND = ("fd = open_file(0x10, O_RDWR|O_APPEND)\nlseek(fd, 2, SEEK_SET)\nwrite(fd, 0x61, 2)\n"
          "a = lseek(fd, 0, SEEK_CUR)\nb = pread(fd, 2)\nc = pread(fd, 0x10)\n"
          "pwrite(fd, 0, 0x62, 1)\nd = pread(fd, 0)\ne = pread(fd, 0x12)\nf = lseek(fd, 0, SEEK_CUR)\n"
          "g = pwrite(fd, -1, 0x63, 1)\n")
APPEND_OK = [ok(3), ok(2), ok(2), ok(0x12), ok(0), ok(0x61), ok(1), ok(0), ok(0x62), ok(0x12), err("EINVAL")]


def test_o_append_writes_at_the_end_and_linux_pwrite_ignores_its_offset():
    assert failed(APPEND, APPEND_OK) is None                                     # measured on 6.18
    # each answer of a kernel without the rule is caught by the call that looks (the writes
    # themselves return the count either way)
    # a write at the offset lseek set: the offset after it is 4, the byte at 2 is 'a'
    assert failed(APPEND, APPEND_OK[:3] + [ok(4)] + APPEND_OK[4:]) == "posix.lseek.sets-offset"
    assert failed(APPEND, APPEND_OK[:4] + [ok(0x61)] + APPEND_OK[5:]) == "posix.read.file-contents"
    # POSIX pwrite (at offset 0): byte 0 is 'b' and nothing was appended at 0x12
    assert failed(APPEND, APPEND_OK[:7] + [ok(0x62)] + APPEND_OK[8:]) == "posix.read.file-contents"
    assert failed(APPEND, APPEND_OK[:8] + [ok(256)] + APPEND_OK[9:]) == "posix.read.file-contents"
    # pwrite moved the file offset to the end of its bytes
    assert failed(APPEND, APPEND_OK[:9] + [ok(0x13)] + APPEND_OK[10:]) == "posix.lseek.sets-offset"
    # the offset argument is still checked
    assert failed(APPEND, APPEND_OK[:10] + [ok(1)]) == "posix.pread.einval-offset"


def test_the_writes_with_o_append_name_their_clauses():
    from memspec.model.mm import new_model
    m = new_model({})
    o = m.expect("main", "open_file", (0x10, 0o2002)).default
    m.apply("main", "open_file", (0x10, 0o2002), o)
    assert m.expect("main", "write", (o.value, 0x61, 1)).clause == "posix.write.append-at-end"
    assert m.expect("main", "pwrite", (o.value, 0, 0x61, 1)).clause == "linux.pwrite.append-at-end"


def test_o_append_is_shared_with_a_forked_child_and_shm_open_takes_it():
    text = ('fd = shm_open("/ap", O_CREAT|O_RDWR|O_APPEND, 0x180)\nftruncate(fd, 4)\n'
            "p = fork()\np: write(fd, 0x41, 1)\np: exit()\nwrite(fd, 0x42, 1)\n"
            "a = pread(fd, 4)\nb = pread(fd, 5)\nc = lseek(fd, 0, SEEK_CUR)\nshm_unlink(\"/ap\")\n")
    good = [ok(3), ok(0), ok(9), ok(1), DONE, ok(1), ok(0x41), ok(0x42), ok(6), ok(0)]
    assert failed(text, good) is None
    assert failed(text, good[:6] + [ok(0)] + good[7:]) is not None      # the child wrote at offset 0
    assert failed(text, good[:8] + [ok(2)] + good[9:]) is not None


def test_a_truncate_to_or_from_a_partial_page_may_leave_that_page_cached():
    # ext4 zeroes the block tail at the old end through the page cache (measured on 6.18: the
    # first load of page 1 is a minor fault); page 2 was never cached: its first load is major
    quiet = {"kernel": "6.18.0", "quiet_ranges": [[W, W + (1 << 36)]]}       # counts are lower bounds
    setup = ("fd = open_file(0x1001, O_RDWR)\nftruncate(fd, 0x3000)\n"
             f"d = mmap({W:#x}, 0x3000, PROT_READ, MAP_SHARED, fd, 0)\n")
    good = [ok(3), ok(0), ok(W), ok(0)]
    edge, far = setup + "load(d+0x1000)\na = majflt()\n", setup + "load(d+0x2000)\na = majflt()\n"
    for text in (edge, far):
        assert failed(text, good + [ok(1)], quiet) is None
    assert failed(edge, good + [ok(0)], quiet) is None                          # measured on 6.18
    assert failed(far, good + [ok(0)], quiet) == "seed.fault.major-counted"     # not every page is unsure


# -- RLIMIT_FSIZE (linux.write.efbig-fsize, linux.ftruncate.efbig-fsize) --------------------------

def test_rlimit_fsize_cuts_writes_short_then_refuses_them_and_bounds_growth():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "specs" / "suite" / "os" / "51-rlimit-fsize.mst").read_text()
    good = [ok(3), ok(4), ok(9), ok(0), ok(0x17FE), ok(2), err("EFBIG"), ok(0), err("EFBIG"), ok(1),
            err("EFBIG"), ok(0), ok(0), err("EFBIG"), err("EFBIG"), ok(1), DONE, ok(0x1800), ok(0), ok(0x47),
            ok(0), ok(10), err("EFBIG"), DONE, err("EFBIG"), ok(0), ok(1)]
    assert failed(text, good) is None                                            # measured on 6.18, both targets

    def swap(i: int, o: Outcome) -> str | None:
        return failed(text, good[:i] + [o] + good[i + 1:])
    # a kernel without the limit: the whole write, the write past it, ftruncate and open_file growing
    assert swap(5, ok(4)) == "linux.write.efbig-fsize"
    assert swap(6, ok(1)) == "linux.write.efbig-fsize"
    assert swap(8, ok(1)) == "linux.write.efbig-fsize"
    assert swap(10, ok(0)) == "linux.ftruncate.efbig-fsize"
    assert swap(13, ok(5)) == "linux.ftruncate.efbig-fsize"
    assert swap(14, ok(2)) == "linux.write.efbig-fsize"                         # memfd is limited too
    assert swap(22, ok(1)) == "linux.write.efbig-fsize"                         # a forked child inherits it
    # ... and one that refuses too much: a write of 0 bytes, shrinking, a write below the limit
    assert swap(7, err("EFBIG")) == "posix.write.file-contents"
    assert swap(11, err("EFBIG")) == "posix.ftruncate.sets-size"
    assert swap(9, err("EFBIG")) == "posix.write.file-contents"


def test_rlimit_fsize_from_the_facts_and_a_finite_hard_limit():
    text = ("fd = memfd_create(\"f\", 0)\na = pwrite(fd, 0xfff, 0x41, 2)\nb = pwrite(fd, 0x1000, 0x41, 1)\n"
            "c = set_fsize_limit(0x3000)\nd = set_fsize_limit(-1)\ne = set_fsize_limit(0x2000)\n"
            "g = pwrite(fd, 0x1000, 0x41, 1)\n")
    limited = {"kernel": "6.18.0", "rlimit_fsize": 0x1000, "rlimit_fsize_hard": 0x2000}
    good = [ok(3), ok(1), err("EFBIG"), err("EINVAL"), err("EINVAL"), ok(0), ok(1)]
    assert failed(text, good, limited) is None
    assert failed(text, good[:1] + [ok(2)] + good[2:], limited) == "linux.write.efbig-fsize"
    assert failed(text, good[:3] + [ok(0)] + good[4:], limited) == "posix.setrlimit.einval-soft-above-hard"
    assert failed(text, good[:4] + [ok(0)] + good[5:], limited) == "posix.setrlimit.einval-soft-above-hard"
    # unlimited (the facts' default): nothing is refused
    free = [ok(3), ok(2), ok(1), ok(0), ok(0), ok(0), ok(1)]
    assert failed(text, free) is None
    assert failed(text, free[:2] + [err("EFBIG")] + free[3:]) == "posix.write.file-contents"


def test_the_program_holds_only_the_pipes_read_end():
    # the targets close the write end: nothing the program did not get stays open, and a read is
    # end of file; a harness that kept the write end open at the next number would answer EINVAL
    # for ftruncate of it, and the model, which knows no such descriptor, says EBADF
    text = 'p = pipe()\nd = memfd_create("s", 0)\nx = read(p)\ne = ftruncate(p+1, 0x1000)\nf = ftruncate(p, 0)\n'
    assert failed(text, [ok(3), ok(4), ok(256), ok(0), err("EINVAL")]) is None     # measured, linux-agent
    assert failed(text, [ok(3), ok(5), ok(256), err("EBADF"), err("EINVAL")]) is None
    assert failed(text, [ok(3), ok(5), ok(256), err("EINVAL"), err("EINVAL")]) == "posix.ftruncate.ebadf"
    assert failed(text, [ok(3), ok(4), ok(7), ok(0), err("EINVAL")]) == "posix.read.pipe-eof"
