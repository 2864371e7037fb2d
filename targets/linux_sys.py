"""The x86-64 Linux ABI as the linux target uses it: the C library handle (prototypes set once
per process, before any fork), system call numbers, flag values and capability bits.

These are the numbers the target's child passes to syscall(2) itself, the values of the
kernel's uapi headers for x86-64 (arch/x86/entry/syscalls/syscall_64.tbl,
include/uapi/linux/mman.h, sched.h, mount.h, capability.h).
"""

from __future__ import annotations

import ctypes

from memspec.consts import PAGE_SIZE

SYS_mmap, SYS_mprotect, SYS_munmap = 9, 10, 11
SYS_close, SYS_mremap, SYS_msync, SYS_mincore, SYS_madvise = 3, 25, 26, 27, 28
SYS_ftruncate, SYS_mlock, SYS_munlock, SYS_mlockall, SYS_munlockall = 77, 149, 150, 151, 152
SYS_mbind, SYS_move_pages, SYS_memfd_create, SYS_mlock2 = 237, 279, 319, 325
MREMAP_FIXED, MREMAP_DONTUNMAP = 2, 4
KPF_THP = 22
NOBODY = 65534
EFAULT = 14
U64 = (1 << 64) - 1
USER_TOP = 1 << 47
TASK_SIZE = USER_TOP - PAGE_SIZE
PAGE_MASK = ~(PAGE_SIZE - 1)
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 1 << 18
PROT_EXEC, MAP_PRIVATE_ANON, MAP_FIXED_NOREPLACE = 0x4, 0x22, 0x100000
CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_SETGID, CAP_SETUID, CAP_IPC_LOCK, CAP_SYS_RAWIO, CAP_SYS_ADMIN = 1, 3, 6, 7, 14, 17, 21

_LIBC: list[ctypes.CDLL] = []


def c_library() -> ctypes.CDLL:
    """The C library with the prototypes the child uses; made once per process (the target makes
    it before forking, so each program's child inherits it ready)."""
    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.write.restype = ctypes.c_ssize_t
        libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
        libc.read.restype = ctypes.c_ssize_t
        libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
        libc.shm_open.restype = ctypes.c_int
        libc.shm_open.argtypes = (ctypes.c_char_p, ctypes.c_int, ctypes.c_uint)
        libc.shm_unlink.restype = ctypes.c_int
        libc.shm_unlink.argtypes = (ctypes.c_char_p,)
        libc.unshare.argtypes = (ctypes.c_int,)
        libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
        _LIBC.append(libc)
    return _LIBC[0]


def has_cap(bit: int) -> bool:
    """Whether this process has capability ``bit`` in its effective set (/proc/self/status CapEff)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return False
