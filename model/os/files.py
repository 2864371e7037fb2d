"""The rules of the calls on files and shared memory objects: shm_open, shm_unlink,
memfd_create, open_file, pipe, close, ftruncate.

A memory object (``model.pages.MemObject``) lives while a mapping, a descriptor or a name
holds it (``OsState.collect``).  Names follow glibc's shm_open/shm_unlink
(posix/shm-directory.c), permissions open(2) and the sticky /dev/shm, sizes ftruncate(2)
(fs/open.c): pages wholly past a new end leave every mapping, and a later access there is
SIGBUS.

Worked example: ``fd = shm_open("/x", O_RDWR|O_CREAT, 0600)`` is a descriptor
(``posix.shm_open.creates``); ``shm_open("/x", O_RDWR|O_CREAT|O_EXCL, 0600)`` again is
EEXIST (``posix.shm_open.eexist``).
"""

from __future__ import annotations

from memspec.consts import O_FLAGS, PAGE_SIZE
from memspec.records import Outcome

from ..expect import Expect, errno, exactly, or_errno
from ..pages import MemObject
from ..rules import Rule
from .state import LLONG_MAX, U64, Fd, Mm, OsState

NAME_MAX = 255
SHM_NAME_BUF = 260     # glibc posix/shm-directory.c: struct shmdir_name's room for the name


def _fd_expect(sys: OsState, clause: str, mm: Mm | None = None) -> Expect:
    def allowed(o: Outcome) -> str | None:
        if not o.ok or o.value is None or o.value < 0:
            return f"expected a file descriptor, observed {o.describe()}"
        return None
    nxt = 3 + sum(len(m.fds) for m in sys.procs.values()) + sys.next_obj
    ok = Expect(clause, Outcome(value=nxt), "a file descriptor", predicate=allowed, impl_defined=True)
    limit = sys.config.rlimit_nofile
    if mm is not None and limit >= 0 and len(mm.fds) + 64 >= limit:
        # fs/file.c alloc_fd: a descriptor at or above RLIMIT_NOFILE is EMFILE (the target's own
        # descriptors are not known exactly: near the limit either answer)
        return or_errno(ok, "posix.open.emfile", "EMFILE")
    return ok


def _shm_name(sys: OsState, name: str) -> tuple[str, Expect | None]:
    # glibc shm_open/shm_unlink (posix/shm-directory.c __shm_get_name): leading slashes go;
    # an empty name or one with another '/' is EINVAL; longer than NAME_MAX is ENAMETOOLONG
    n = name.lstrip("/")
    if not n or "/" in n or n in (".", ".."):
        return n, errno("posix.shm_open.einval-name", "EINVAL")
    size = len(n.encode("utf-8", "surrogateescape"))   # the kernel counts bytes, not characters
    if size >= SHM_NAME_BUF:
        # glibc copies "/dev/shm/" + name into a fixed buffer first: a name that does not
        # fit never reaches the kernel (measured: 260 bytes and more give EINVAL here)
        return n, errno("glibc.shm_open.einval-name-too-long", "EINVAL")
    if size > NAME_MAX:
        return n, errno("posix.shm_open.enametoolong", "ENAMETOOLONG")
    return n, None


def _may(sys: OsState, mm: Mm, obj: MemObject, read: bool, write: bool) -> bool:
    if mm.dac_override:
        return True
    bits = obj.mode >> 6 if obj.uid == mm.uid else obj.mode
    return (not read or bool(bits & 4)) and (not write or bool(bits & 2))


def expect_shm_open(sys: OsState, mm: Mm, name: str, oflag: int, mode: int) -> Expect:
    n, bad = _shm_name(sys, name)
    if bad is not None:
        return bad
    creat, excl = oflag & O_FLAGS["O_CREAT"], oflag & O_FLAGS["O_EXCL"]
    # access mode 3 (O_RDWR|O_WRONLY) opens on Linux, checked for read and write permission, with a
    # descriptor that can do neither (fs/open.c ACC_MODE, OPEN_FMODE; glibc passes it on; measured on 6.18)
    acc = oflag & 3
    oid = sys.shm_names.get(n)
    if oid is not None and creat and excl:
        return errno("posix.shm_open.eexist", "EEXIST")
    if oid is None and not creat:
        return errno("posix.shm_open.enoent", "ENOENT")
    # O_TRUNC asks for write permission whatever the access mode (fs/open.c build_open_flags:
    # acc_mode |= MAY_WRITE), and truncates an O_RDONLY open too (linux.shm_open.trunc-rdonly)
    trunc = bool(oflag & O_FLAGS["O_TRUNC"])
    if oid is not None and not _may(sys, mm, sys.objects[oid], acc != 1, acc != 0 or trunc):
        return errno("posix.shm_open.eacces", "EACCES")
    if oid is None and not _may_create(sys, mm, acc, mode):
        return errno("posix.shm_open.eacces", "EACCES")
    if oid is not None and trunc and acc == 0:
        return _fd_expect(sys, "linux.shm_open.trunc-rdonly", mm)
    return _fd_expect(sys, "posix.shm_open.opens" if oid is not None else "posix.shm_open.creates", mm)


def _may_create(sys: OsState, mm: Mm, acc: int, mode: int) -> bool:
    # open(2) O_CREAT: the new file's permissions apply to later opens, not this one
    return True


def apply_shm_open(sys: OsState, proc: str, mm: Mm, o: Outcome, name: str, oflag: int, mode: int) -> None:
    if not o.ok or o.value is None:
        return
    n = name.lstrip("/")
    oid = sys.shm_names.get(n)
    if oid is None:
        obj = sys.new_object("shm", 0, n, mode & 0o777 & ~sys.config.umask, mm.uid)
        obj.linked = True
        sys.shm_names[n] = obj.id
        oid = obj.id
    elif oflag & O_FLAGS["O_TRUNC"]:
        # linux.shm_open.trunc-rdonly: fs/namei.c do_open truncates for O_TRUNC whatever the
        # access mode, once may_open granted write permission
        _truncate(sys, sys.objects[oid], 0)
    _add_fd(sys, mm, o.value, oid, oflag & 3, bool(oflag & O_FLAGS["O_APPEND"]))


def _add_fd(sys: OsState, mm: Mm, fd: int, oid: int | None, acc: int, append: bool = False) -> None:
    old = mm.fds.pop(fd, None)
    if old is not None and old.obj is not None:
        sys.objects[old.obj].opens -= 1
        sys.collect({old.obj})
    mm.fds[fd] = Fd(oid, acc in (0, 2), acc in (1, 2), append=append)
    if oid is not None:
        sys.objects[oid].opens += 1


def expect_shm_unlink(sys: OsState, mm: Mm, name: str) -> Expect:
    n, bad = _shm_name(sys, name)
    if n in (".", ".."):
        return errno("posix.shm_unlink.enoent", "EISDIR")     # unlink of the directory itself
    if bad is not None:
        # glibc shm_unlink: "historically, shm_unlink returned ENOENT for invalid names"
        return errno("posix.shm_unlink.enoent", "ENOENT" if bad.default.errno == "EINVAL" else bad.default.errno)
    oid = sys.shm_names.get(n)
    if oid is None:
        return errno("posix.shm_unlink.enoent", "ENOENT")
    if not mm.fowner and sys.objects[oid].uid != mm.uid:
        # /dev/shm is sticky: only the owner may unlink (EPERM, which glibc reports as EACCES)
        return errno("posix.shm_unlink.eacces", "EACCES")
    return exactly("posix.shm_unlink.removes-name", Outcome(value=0))


def apply_shm_unlink(sys: OsState, proc: str, mm: Mm, o: Outcome, name: str) -> None:
    if o.ok:
        oid = sys.shm_names.pop(name.lstrip("/"), None)
        if oid is not None:
            sys.objects[oid].linked = False
            sys.collect({oid})


def expect_memfd_create(sys: OsState, mm: Mm, name: str, flags: int) -> Expect:
    # mm/memfd.c: unknown flags, HUGETLB (not modelled) and names over 249 bytes are EINVAL
    if flags & ~0x1F or flags & 0x4 or len(name.encode()) > 249 or (flags & 0x8 and flags & 0x10):
        return errno("linux.memfd_create.einval", "EINVAL")
    return _fd_expect(sys, "linux.memfd_create.creates", mm)


def apply_memfd_create(sys: OsState, proc: str, mm: Mm, o: Outcome, name: str, flags: int) -> None:
    if o.ok and o.value is not None:
        obj = sys.new_object("memfd", 0, name, 0o777, mm.uid)
        _add_fd(sys, mm, o.value, obj.id, 2)


def expect_open_file(sys: OsState, mm: Mm, size: int, oflag: int) -> Expect:
    # (access mode 3, O_RDWR|O_WRONLY, opens on Linux: a descriptor that can neither read nor write,
    # fs/open.c OPEN_FMODE; measured on 6.18)
    if size & U64 > LLONG_MAX:
        return errno("posix.ftruncate.einval-length", "EINVAL")
    if _past_fsize(mm, 0, size & U64):
        # the harness sizes the new file with ftruncate in the program's process
        return errno("linux.ftruncate.efbig-fsize", "EFBIG")
    return _fd_expect(sys, "posix.open.regular-file", mm)


def apply_open_file(sys: OsState, proc: str, mm: Mm, o: Outcome, size: int, oflag: int) -> None:
    if o.ok and o.value is not None:
        obj = sys.new_object("file", size, "", 0o600, mm.uid)
        _add_fd(sys, mm, o.value, obj.id, oflag & 3, bool(oflag & O_FLAGS["O_APPEND"]))


def expect_pipe(sys: OsState, mm: Mm) -> Expect:
    return _fd_expect(sys, "posix.pipe.creates", mm)


def apply_pipe(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    if o.ok and o.value is not None:
        _add_fd(sys, mm, o.value, None, 0)


def expect_close(sys: OsState, mm: Mm, fd: int) -> Expect:
    if fd not in mm.fds:
        return errno("posix.close.ebadf", "EBADF")
    return exactly("posix.close.keeps-mappings", Outcome(value=0))


def apply_close(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int) -> None:
    if o.ok and fd in mm.fds:
        f = mm.fds.pop(fd)
        if f.obj is not None:
            sys.objects[f.obj].opens -= 1
            sys.collect({f.obj})


def expect_ftruncate(sys: OsState, mm: Mm, fd: int, length: int) -> Expect:
    # fs/open.c do_sys_ftruncate: the length is checked before the descriptor
    if length < 0 or length > LLONG_MAX:
        return errno("posix.ftruncate.einval-length", "EINVAL")
    f = mm.fds.get(fd)
    if f is None:
        return errno("posix.ftruncate.ebadf", "EBADF")
    if f.obj is None or not f.write:
        return errno("posix.ftruncate.einval-not-writable", "EINVAL")
    if _past_fsize(mm, sys.objects[f.obj].size, length):
        return errno("linux.ftruncate.efbig-fsize", "EFBIG")
    return exactly("posix.ftruncate.sets-size", Outcome(value=0))


def _past_fsize(mm: Mm, old: int, new: int) -> bool:
    """fs/attr.c inode_newsize_ok: growing a file past RLIMIT_FSIZE is EFBIG (and SIGXFSZ, which
    the harness ignores); shrinking is never refused by it (linux.ftruncate.efbig-fsize)."""
    return mm.fsize_soft >= 0 and new > old and new > mm.fsize_soft


def apply_ftruncate(sys: OsState, proc: str, mm: Mm, o: Outcome, fd: int, length: int) -> None:
    if o.ok and fd in mm.fds and mm.fds[fd].obj is not None:
        _truncate(sys, sys.objects[mm.fds[fd].obj], length)


def _truncate(sys: OsState, obj: MemObject, size: int) -> None:
    """ftruncate: pages wholly past the new end are removed from every mapping (a later
    access is SIGBUS); the partial last page's tail is zeroed (POSIX: the extension reads as zero)."""
    old = obj.size
    keep = (size + PAGE_SIZE - 1) // PAGE_SIZE
    if size < old:
        _drop_private_copies(sys, obj, keep)
    for pgoff in [p for p in set(obj.pages) | set(obj.disk) if p >= keep]:
        sys.punch(obj, pgoff)
    edge = min(old, size)
    if edge % PAGE_SIZE:
        pgoff = edge // PAGE_SIZE
        cp = obj.pages.get(pgoff)
        if cp is not None and cp.data is not None:
            cp.data[edge % PAGE_SIZE:] = bytes(PAGE_SIZE - edge % PAGE_SIZE)
        d = obj.disk.get(pgoff)
        if d is not None:
            d[edge % PAGE_SIZE:] = bytes(PAGE_SIZE - edge % PAGE_SIZE)
        if obj.kind == "file" and cp is None and old != size:
            # a disk file system zeroes the tail of the block at the edge through the page cache,
            # creating the folio even over a hole (fs/ext4/inode.c ext4_setattr, ext4_truncate ->
            # ext4_block_truncate_page -> __filemap_get_folio(FGP_CREAT); measured on 6.18 ext4):
            # the next fault there may find it and be minor (seed.fault.major-counted)
            obj.uncertain.add(pgoff)
    obj.size = size


def _drop_private_copies(sys: OsState, obj: MemObject, keep: int) -> None:
    """Shrinking a file takes the private copies of the pages wholly past the new end out of every
    MAP_PRIVATE mapping of it too, not only the page-cache pages: mm/truncate.c truncate_pagecache
    and mm/shmem.c shmem_setattr call unmap_mapping_range(mapping, holebegin, 0, even_cows=1)
    (a hole punch, fallocate/MADV_REMOVE, passes even_cows=0 and keeps them).  A later access
    there is SIGBUS like any page past the end (posix.mmap.sigbus-beyond-eof; clause
    posix.ftruncate.sets-size; measured on 6.18, memfd; found by the soak)."""
    for mm in sys.procs.values():
        for s, e, v in list(mm.vmas.items()):
            if v.obj != obj.id or v.shared:
                continue
            start = max(s, v.origin + keep * PAGE_SIZE)
            for page in sys.pages_in(mm, start, e) if start < e else ():
                if page in mm.anon:
                    sys.drop_page(mm, page)


RULES = {
    "shm_open": Rule(expect_shm_open, apply_shm_open),
    "shm_unlink": Rule(expect_shm_unlink, apply_shm_unlink),
    "memfd_create": Rule(expect_memfd_create, apply_memfd_create),
    "open_file": Rule(expect_open_file, apply_open_file),
    "pipe": Rule(expect_pipe, apply_pipe),
    "close": Rule(expect_close, apply_close),
    "ftruncate": Rule(expect_ftruncate, apply_ftruncate),
}
