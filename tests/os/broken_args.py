"""Broken os implementations that only arguments at their edges, or an unprivileged process meeting
what its privileges bypassed, show (issue #26, fourth round): the reference model with one rule or
one default changed, served in process as ``py:`` targets
(``py:tests/os/broken_args.py:target("shm-trunc-ignored")``).  Each is the kind of bug a mutant of the
model made (seed 3's survivors, docs/bug-finding.md) and ``memspec check`` at its default settings
did not catch before the generator drew the shape.  Fakes for testing the generator and the judge,
never targets of their own."""

from __future__ import annotations

from memspec.model.expect import errno
from memspec.model.mm import System
from memspec.model.os import files, pressure_events
from memspec.consts import O_FLAGS
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget


def _shm_open_keeps_size(sys, proc, mm, o, name, oflag, mode):
    files.apply_shm_open(sys, proc, mm, o, name, oflag & ~O_FLAGS["O_TRUNC"], mode)


class ShmTruncIgnored(System):
    """shm_open(O_TRUNC) of an existing object keeps its size and bytes (open(2): O_TRUNC truncates
    an existing regular file opened for writing to length 0; fs/namei.c do_open -> handle_truncate)."""

    rules = replaced(System.rules, "shm_open", apply=_shm_open_keeps_size)


class DefaultMemlockZero(System):
    """A process that never set RLIMIT_MEMLOCK starts with a soft limit of 0 instead of the default
    8 MiB (include/uapi/linux/resource.h MLOCK_LIMIT; kernel/fork.c copies init's limits): an
    unprivileged mlock is then EPERM (mm/mlock.c can_do_mlock) where it should lock."""

    def __init__(self, config):
        super().__init__(config)
        self.config.memlock_soft = 0
        for mm in self.procs.values():
            mm.memlock_soft = 0


def _shm_open_reads_exec_bit(sys, mm, name, oflag, mode):
    n = name.lstrip("/")
    oid = sys.shm_names.get(n)
    creat, excl = oflag & O_FLAGS["O_CREAT"], oflag & O_FLAGS["O_EXCL"]
    bad = files._shm_name(sys, name)[1]
    if bad is not None or oid is None or (creat and excl) or mm.dac_override:
        return files.expect_shm_open(sys, mm, name, oflag, mode)
    obj = sys.objects[oid]
    bits = obj.mode >> 6 if obj.uid == mm.uid else obj.mode
    acc = oflag & 3
    if (acc != 1 and not bits & 4) or (acc != 0 and not bits & 1):     # the write check reads x, not w
        return errno("posix.shm_open.eacces", "EACCES")
    return files._fd_expect(sys, "posix.shm_open.opens", mm)


class ShmWriteReadsExecBit(System):
    """shm_open's permission check for writing tests the execute bit instead of the write bit
    (fs/namei.c may_open -> inode_permission(MAY_WRITE) wants w): a mode like 0755 lets another user
    open for writing, 0666 refuses it."""

    rules = replaced(System.rules, "shm_open", expect=_shm_open_reads_exec_bit)


def _swappiness_from_minus_1(sys, mm, value):
    if value == -1:
        return pressure_events.expect_set_swappiness(sys, mm, 0)
    return pressure_events.expect_set_swappiness(sys, mm, value)


class SwappinessFromMinus1(System):
    """vm.swappiness accepts -1 (mm/vmscan.c: the sysctl's range is 0 .. 200, proc_dointvec_minmax
    with extra1 = SYSCTL_ZERO)."""

    rules = replaced(System.rules, "set_swappiness", expect=_swappiness_from_minus_1)


def _memfd_exec_bits(sys, mm, name, flags):
    if flags & 0x10 and flags & 0x7:
        return errno("linux.memfd_create.einval", "EINVAL")
    return files.expect_memfd_create(sys, mm, name, flags)


class MemfdExecWithOthers(System):
    """memfd_create refuses MFD_EXEC beside any of the three oldest flags, as if MFD_EXEC and
    MFD_NOEXEC_SEAL were tested with the wrong mask (mm/memfd.c: only MFD_EXEC|MFD_NOEXEC_SEAL together
    is EINVAL; MFD_CLOEXEC|MFD_EXEC creates the file)."""

    rules = replaced(System.rules, "memfd_create", expect=_memfd_exec_bits)


def _shm_name_buf_261(sys, mm, name, oflag, mode):
    if len(name.lstrip("/").encode()) == files.SHM_NAME_BUF:
        return errno("posix.shm_open.enametoolong", "ENAMETOOLONG")
    return files.expect_shm_open(sys, mm, name, oflag, mode)


class ShmNameBuf261(System):
    """glibc's buffer for the shm name taken one byte bigger: a name of exactly 260 bytes reaches the
    kernel (ENAMETOOLONG) instead of being refused by glibc (EINVAL; posix/shm-directory.c
    __shm_get_name, measured in model/os/files.py _shm_name)."""

    rules = replaced(System.rules, "shm_open", expect=_shm_name_buf_261)


BUGS = {"shm-trunc-ignored": ShmTruncIgnored, "default-memlock-zero": DefaultMemlockZero,
        "shm-write-reads-exec-bit": ShmWriteReadsExecBit, "swappiness-from-minus-1": SwappinessFromMinus1,
        "memfd-exec-with-others": MemfdExecWithOthers, "shm-name-buf-261": ShmNameBuf261}


def target(bug: str) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", BUGS[bug])
