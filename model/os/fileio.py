"""The rules of the calls that read and write a file through its descriptor: read, write, pread,
pwrite, lseek.

fs/read_write.c: ksys_read/ksys_write (the descriptor's file offset, which fork shares), then
ksys_pread64/ksys_pwrite64 (a negative offset is EINVAL before the descriptor is looked up; a
pipe has no FMODE_PREAD/PWRITE: ESPIPE), vfs_read/vfs_write (a descriptor not open for the
access: EBADF), rw_verify_area (pos + count past LLONG_MAX: EINVAL), and ksys_lseek /
generic_file_llseek_size / shmem_file_llseek.  The bytes are the page cache's: the same pages a
shared mapping maps (``model.pages.MemObject.pages``), so a store through a mapping is what read
returns and a write is what a later load sees (clauses posix.read.file-contents,
posix.write.file-contents).  Program text reads one byte per call: its value, or 256 when the
kernel read nothing (end of file).

O_APPEND (a flag of the open file description): write(2) puts the file offset at the end of the
file before each write, in the same step (posix.write.append-at-end; mm/filemap.c
generic_write_checks -> generic_write_checks_count: IOCB_APPEND sets ki_pos to i_size), and
leaves it after the bytes written.  Linux does the same for pwrite(2), whose offset is then
ignored, though POSIX says pwrite writes at its offset whatever O_APPEND says (pwrite(2) BUGS;
clause linux.pwrite.append-at-end); pwrite still leaves the file offset alone (ksys_pwrite64
writes through a copy of the offset).  rw_verify_area checks the offset the caller passed.

RLIMIT_FSIZE (fact ``rlimit_fsize``, call ``set_fsize_limit``): mm/filemap.c
generic_write_check_limits, after rw_verify_area: a write starting at or past the limit fails
with EFBIG and the kernel sends SIGXFSZ (which the harness ignores: by default it would kill the
process); one that crosses it is cut short at the limit (clause linux.write.efbig-fsize).  A
pipe is not checked; a write of 0 bytes returns before the check.

Worked example: ``fd = memfd_create("m", 0)``, ``pwrite(fd, 4096, 7, 1)`` is 1 and makes the
file 4097 bytes long; ``pread(fd, 0)`` then reads 0 (a hole) and ``pread(fd, 4097)`` reads 256.
"""

from __future__ import annotations

from memspec.consts import PAGE_SIZE, SEEK
from memspec.records import OK, Outcome

from .. import fault
from ..expect import Expect, errno, exactly
from ..pages import MemObject, Page
from ..rules import Rule
from .state import LLONG_MAX, U64, Fd, Mm, OsState

EOF_BYTE = 256                 # what program text reads when read/pread return 0
MAX_COUNT = 1 << 20            # larger writes: not modelled (the target refuses them)
FILE_LIMIT = 1 << 40           # regular files past 1 TiB meet the file system's s_maxbytes (not probed)


def _signed(n: int) -> int:
    return n - (1 << 64) if n > LLONG_MAX else n


def _byte(obj: MemObject, off: int) -> int:
    """The file's byte at ``off`` (inside i_size): the page cache's, else the disk's, else a hole (0)."""
    pgoff, o = divmod(off, PAGE_SIZE)
    cp = obj.pages.get(pgoff)
    if cp is not None:
        return cp.byte(o)
    d = obj.disk.get(pgoff)
    return d[o] if d is not None else 0


def _fd(mm: Mm, fd: int) -> Fd | None:
    return mm.fds.get(fd)


def _read_check(mm: Mm, fd: int, positional: bool, pos: int = 0) -> Expect | Fd:
    if positional and pos < 0:
        return errno("posix.pread.einval-offset", "EINVAL")      # ksys_pread64: before fdget
    f = _fd(mm, fd)
    if f is None:
        return errno("posix.read.ebadf", "EBADF")
    if positional and f.obj is None:
        return errno("posix.pread.espipe", "ESPIPE")             # a pipe: no FMODE_PREAD
    if not f.read:
        return errno("posix.read.ebadf", "EBADF")                # vfs_read: !FMODE_READ
    return f


def _expect_read_at(sys: OsState, f: Fd, pos: int) -> Expect:
    if pos > LLONG_MAX - 1:
        return errno("posix.pread.einval-offset", "EINVAL")      # rw_verify_area: pos + 1 overflows
    obj = sys.objects[f.obj]
    if pos >= obj.size:
        return exactly("posix.read.file-contents", Outcome(value=EOF_BYTE))
    return exactly("posix.read.file-contents", Outcome(value=_byte(obj, pos)))


def expect_pread(sys: OsState, mm: Mm, fd: int, offset: int) -> Expect:
    pos = _signed(offset)
    f = _read_check(mm, fd, True, pos)
    return f if isinstance(f, Expect) else _expect_read_at(sys, f, pos)


def expect_read(sys: OsState, mm: Mm, fd: int) -> Expect:
    f = _read_check(mm, fd, False)
    if isinstance(f, Expect):
        return f
    if f.obj is None:
        # the program's pipe: pipe() gives it the read end only, and the target closes the write end
        # (no descriptor the program does not hold stays open), so the pipe is empty with no writer:
        # end of file (posix.read.pipe-eof; fs/pipe.c pipe_read: !pipe->writers returns 0)
        return exactly("posix.read.pipe-eof", Outcome(value=EOF_BYTE))
    return _expect_read_at(sys, f, f.pos[0])


def _cache_page(sys: OsState, mm: Mm, obj: MemObject, pgoff: int) -> Page | None:
    """The page-cache page of ``pgoff``, read in (a file) or allocated (shmem) if absent, swapped in
    if out: mm/filemap.c filemap_read / generic_perform_write, mm/shmem.c shmem_get_folio."""
    cp = obj.pages.get(pgoff)
    if cp is None:
        cp = Page(obj.kind if obj.kind == "file" else "shmem", obj=obj.id, pgoff=pgoff, lru_seq=sys.next_seq())
        if obj.kind == "file" and pgoff in obj.disk:
            cp.data = bytearray(obj.disk[pgoff])
        if not fault.alloc_frame(sys, mm, cp, 0):
            return None
        obj.pages[pgoff] = cp
        sys.lru_add(cp)
        if obj.kind == "file":
            sys.stats["file_reads"] += 1
    elif cp.pfn is None:
        if not fault.alloc_frame(sys, mm, cp, 0):
            return None
        sys.frames.swap_free(cp)
        sys.lru_add(cp)
    obj.uncertain.discard(pgoff)
    return cp


def _apply_read_at(sys: OsState, mm: Mm, f: Fd, pos: int) -> int:
    """A read of one byte at ``pos`` happened: the page is now in the page cache (a file's
    neighbours maybe too: readahead); returns the bytes read."""
    obj = sys.objects[f.obj]
    if pos >= obj.size or pos < 0:
        return 0
    pgoff = pos // PAGE_SIZE
    cp = obj.pages.get(pgoff)
    if obj.kind == "file":
        _cache_page(sys, mm, obj, pgoff)
        # mm/readahead.c: the read may bring in its neighbours as well
        obj.uncertain |= {p for p in range(max(0, pgoff - 32), min(obj.npages(), pgoff + 32))
                          if p not in obj.pages}
    elif cp is not None and cp.pfn is None:
        _cache_page(sys, mm, obj, pgoff)       # shmem: a swapped page comes back; a hole stays a hole
    return 1


def apply_pread(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int, offset: int) -> None:
    f = _fd(mm, fd)
    if o.ok and f is not None and f.obj is not None:
        _apply_read_at(sys, mm, f, _signed(offset))


def apply_read(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int) -> None:
    f = _fd(mm, fd)
    if o.ok and f is not None and f.obj is not None:
        f.pos[0] += _apply_read_at(sys, mm, f, f.pos[0])


def _write_check(sys: OsState, mm: Mm, fd: int, positional: bool, pos: int, count: int) -> Expect | Fd:
    if positional and pos < 0:
        return errno("posix.pread.einval-offset", "EINVAL")      # ksys_pwrite64: before fdget
    f = _fd(mm, fd)
    if f is None:
        return errno("posix.write.ebadf", "EBADF")
    if positional and f.obj is None:
        return errno("posix.pread.espipe", "ESPIPE")             # a pipe: no FMODE_PWRITE
    if not f.write:
        return errno("posix.write.ebadf", "EBADF")               # vfs_write: !FMODE_WRITE
    if count > LLONG_MAX or pos > LLONG_MAX - count:
        return errno("posix.pread.einval-offset", "EINVAL")      # rw_verify_area
    obj = sys.objects[f.obj]
    if count > MAX_COUNT or (obj.kind == "file" and pos + count > FILE_LIMIT):
        return Expect("linux.write.not-modelled", OK, "a write beyond 1 MiB, or a regular file past 1 TiB: "
                      "not modelled", unknown=True)
    return f


def _write_pos(sys: OsState, f: Fd, pos: int, count: int = 1) -> int:
    """Where a write starts: the file's end with O_APPEND (generic_write_checks_count,
    posix.write.append-at-end / linux.pwrite.append-at-end), else ``pos``.  A write of 0
    bytes returns before IOCB_APPEND moves the position."""
    return sys.objects[f.obj].size if f.append and f.obj is not None and count else pos


def _write_clause(f: Fd, positional: bool) -> str:
    if not f.append:
        return "posix.write.file-contents"
    return "linux.pwrite.append-at-end" if positional else "posix.write.append-at-end"


def _expect_write(sys: OsState, mm: Mm, fd: int, positional: bool, pos: int, count: int) -> Expect:
    """rw_verify_area judges the offset the caller gave (pwrite's, or the file offset); with
    O_APPEND the bytes then go to the end of the file, whose limits are checked there."""
    f = _write_check(sys, mm, fd, positional, pos, count)
    if isinstance(f, Expect):
        return f
    at = _write_pos(sys, f, pos, count)
    if at != pos:
        end = _write_check(sys, mm, fd, positional, at, count)
        if isinstance(end, Expect):
            return end
    lim = mm.fsize_soft
    if lim >= 0 and count and f.obj is not None:
        # mm/filemap.c generic_write_check_limits (linux.write.efbig-fsize)
        if at >= lim:
            return errno("linux.write.efbig-fsize", "EFBIG")
        if count > lim - at:
            return exactly("linux.write.efbig-fsize", Outcome(value=lim - at))
    return exactly(_write_clause(f, positional), Outcome(value=count))


def expect_pwrite(sys: OsState, mm: Mm, fd: int, offset: int, value: int, count: int) -> Expect:
    return _expect_write(sys, mm, fd, True, _signed(offset), count & U64)


def expect_write(sys: OsState, mm: Mm, fd: int, value: int, count: int) -> Expect:
    f = _fd(mm, fd)
    return _expect_write(sys, mm, fd, False, f.pos[0] if f is not None else 0, count & U64)


def _apply_write_at(sys: OsState, mm: Mm, f: Fd, pos: int, value: int, count: int) -> None:
    """mm/filemap.c generic_perform_write (shmem_write_begin): the bytes go into page-cache pages,
    which are dirty; i_size grows to the end of the write."""
    obj = sys.objects[f.obj]
    if obj.kind == "file" and pos > obj.size and obj.size % PAGE_SIZE and eof_zero_on_write(sys):
        _zero_eof_tail(obj, obj.size, pos)
    off = pos
    while off < pos + count:
        pgoff, o = divmod(off, PAGE_SIZE)
        n = min(PAGE_SIZE - o, pos + count - off)
        cp = _cache_page(sys, mm, obj, pgoff)
        if cp is not None:
            if cp.data is None:
                cp.data = bytearray(PAGE_SIZE)
            cp.data[o:o + n] = bytes([value & 0xFF]) * n
            cp.dirty = True
        off += n
    obj.size = max(obj.size, pos + count)


def eof_zero_on_write(sys: OsState) -> bool:
    """Whether a write() past the end of a regular file zeroes the old end-of-file block's tail
    (clause linux.write.zeroes-old-eof-tail): the fact ``eof_zero_on_write`` (probed by the linux
    targets on the folder their files live in), else by the release: 6.13 and later (the change reached
    mainline in late 2024, 6.12 or 6.13, and 6.6 stable; the earliest is not pinned here)."""
    c = sys.config
    if c.eof_zero_on_write is not None:
        return c.eof_zero_on_write
    return c.kernel is None or c.kernel >= (6, 13)


def _zero_eof_tail(obj: MemObject, old: int, pos: int) -> None:
    """fs/ext4/inode.c ext4_da_do_write_end (and ext4_write_end): when a write begins past i_size,
    ext4_zero_partial_blocks(handle, inode, old_size, pos - old_size) zeroes [old_size, pos) in the
    partial block at the old end, through the page cache (Brian Foster, "ext4: partial zero eof
    block on unaligned inode size extension"): bytes a program stored past the end through a shared
    mapping are zero afterwards (found by fuzzing linux-agent; measured on 6.18 ext4).  4 KiB
    blocks, the block is the page.  tmpfs (memfd, shm) does not: shmem_write_end only sets i_size."""
    pgoff, o = divmod(old, PAGE_SIZE)
    end = min(pos - pgoff * PAGE_SIZE, PAGE_SIZE)
    cp = obj.pages.get(pgoff)
    if cp is not None and cp.data is not None:
        cp.data[o:end] = bytes(end - o)
    d = obj.disk.get(pgoff)
    if d is not None:
        d[o:end] = bytes(end - o)


def apply_pwrite(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int, offset: int, value: int, count: int) -> None:
    f = _fd(mm, fd)
    if o.ok and o.value and f is not None and f.obj is not None:
        _apply_write_at(sys, mm, f, _write_pos(sys, f, _signed(offset)), value, o.value)


def apply_write(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int, value: int, count: int) -> None:
    f = _fd(mm, fd)
    if o.ok and o.value and f is not None and f.obj is not None:
        pos = _write_pos(sys, f, f.pos[0])
        _apply_write_at(sys, mm, f, pos, value, o.value)
        f.pos[0] = pos + o.value


def expect_lseek(sys: OsState, mm: Mm, fd: int, offset: int, whence: int) -> Expect:
    # fs/read_write.c ksys_lseek: the descriptor, then whence beyond SEEK_MAX, then vfs_llseek
    f = _fd(mm, fd)
    if f is None:
        return errno("posix.lseek.ebadf", "EBADF")
    if whence & U64 > SEEK["SEEK_HOLE"]:
        return errno("posix.lseek.einval", "EINVAL")
    if f.obj is None:
        return errno("posix.pread.espipe", "ESPIPE")             # a pipe: no FMODE_LSEEK
    obj = sys.objects[f.obj]
    off = _signed(offset & U64)
    if whence in (SEEK["SEEK_DATA"], SEEK["SEEK_HOLE"]):
        # generic_file_llseek_size / shmem_file_llseek: at or past the end (or negative): ENXIO;
        # else where the next data or hole is, which depends on the file system's allocation
        if off < 0 or off >= obj.size:
            return errno("linux.lseek.enxio", "ENXIO")
        lo, hi, size = off, obj.size, obj.size

        def allowed(o: Outcome) -> str | None:
            if o.ok and o.value is not None and lo <= o.value <= hi:
                return None
            if o.errno == "ENXIO" and whence == SEEK["SEEK_DATA"]:
                return None      # only holes from there to the end
            return f"expected an offset in [{lo:#x}, {size:#x}], observed {o.describe()}"
        return Expect("linux.lseek.data-hole", Outcome(value=size if whence == SEEK["SEEK_HOLE"] else lo),
                      f"an offset in [{lo:#x}, {size:#x}]", predicate=allowed, impl_defined=True)
    new = {SEEK["SEEK_SET"]: off, SEEK["SEEK_CUR"]: f.pos[0] + off, SEEK["SEEK_END"]: obj.size + off}[whence]
    if whence == SEEK["SEEK_CUR"] and off == 0:
        return exactly("posix.lseek.sets-offset", Outcome(value=f.pos[0]))
    if new < 0 or new > LLONG_MAX:
        return errno("posix.lseek.einval", "EINVAL")             # vfs_setpos
    if obj.kind == "file" and new > FILE_LIMIT:
        return Expect("posix.lseek.sets-offset", Outcome(value=new), f"{new:#x}, or EINVAL past the file "
                      "system's s_maxbytes", (Outcome(value=new), Outcome(value=-1, errno="EINVAL")),
                      impl_defined=True)
    return exactly("posix.lseek.sets-offset", Outcome(value=new))


def apply_lseek(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int, offset: int, whence: int) -> None:
    f = _fd(mm, fd)
    if o.ok and o.value is not None and f is not None and f.obj is not None:
        f.pos[0] = o.value


def expect_set_fsize_limit(sys: OsState, mm: Mm, soft: int) -> Expect:
    # kernel/sys.c do_prlimit: soft above hard is EINVAL (RLIM_INFINITY is above any finite hard)
    hard = sys.config.rlimit_fsize_hard
    if hard >= 0 and (_signed(soft) < 0 or soft & U64 > hard):
        return errno("posix.setrlimit.einval-soft-above-hard", "EINVAL")
    return exactly("posix.setrlimit.sets", Outcome(value=0))


def apply_set_fsize_limit(sys: OsState, proc: str, mm: Mm, o: Outcome, soft: int) -> None:
    if o.ok:
        mm.fsize_soft = -1 if _signed(soft) < 0 else soft & U64


RULES = {
    "set_fsize_limit": Rule(expect_set_fsize_limit, apply_set_fsize_limit),
    "read": Rule(expect_read, apply_read),
    "write": Rule(expect_write, apply_write),
    "pread": Rule(expect_pread, apply_pread),
    "pwrite": Rule(expect_pwrite, apply_pwrite),
    "lseek": Rule(expect_lseek, apply_lseek),
}
