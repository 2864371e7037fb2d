"""Host facts of the linux target: what the machine under the kernel is, probed, never assumed.

``host_facts()`` is what the os model reads (model.mm.Config.from_facts); the probes that
fork (execute-only pages, a private /dev/shm, 5-level paging) run once per process.
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Any

from memspec.consts import PAGE_SIZE

from .linux_sys import (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_IPC_LOCK, CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN,
                        CAP_SYS_RAWIO, CLONE_NEWNS, EFAULT, MAP_FIXED_NOREPLACE, MAP_PRIVATE_ANON, MS_NODEV,
                        MS_NOSUID, MS_PRIVATE, MS_REC, PROT_EXEC, SYS_madvise, SYS_mmap, SYS_munmap, c_library,
                        has_cap)

SHM_PRIVATE: list[bool] = []     # set once by LinuxTarget (probed); every program's child reads it


def private_dev_shm(libc: ctypes.CDLL) -> bool:
    """In this process: a mount namespace of its own, every mount in it made private (nothing
    propagates back to the machine), and a fresh tmpfs on /dev/shm, sticky and world-writable
    like the real one.  Then shm_open sees the program's names exactly, and no other process's.
    Needs CAP_SYS_ADMIN; False (nothing changed outside this process) when it cannot be done."""
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    return libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=1777") == 0


def _in_child(probe: Any, failed: int = 99) -> int:
    """Run ``probe()`` in a forked process (so that its mappings, keys and namespaces stay
    there); its return value is the exit code, ``failed`` if it raised."""
    pid = os.fork()
    if pid == 0:
        code = failed
        try:
            code = probe()
        except BaseException:  # noqa: BLE001 -- a probe that fails reports ``failed``
            code = failed
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _probe_shm_private() -> int:
    libc = c_library()
    if not private_dev_shm(libc):
        return 1
    fd = libc.shm_open(b"/memspec-probe", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    return 0 if fd >= 0 and os.listdir("/dev/shm") == ["memspec-probe"] else 1


def _probe_exec_only() -> int:
    """0: a PROT_EXEC-only page is readable; 1: reading it faults (execute-only, PKU); 2: unknown.
    The kernel reads the page for write(2): EFAULT is what a user load would turn into SIGSEGV."""
    libc = c_library()
    addr = libc.syscall(ctypes.c_long(SYS_mmap), ctypes.c_long(0), ctypes.c_long(PAGE_SIZE), ctypes.c_long(PROT_EXEC),
                        ctypes.c_long(MAP_PRIVATE_ANON), ctypes.c_long(-1), ctypes.c_long(0))
    if addr == -1:
        return 2
    r, w = os.pipe()
    ctypes.set_errno(0)
    n = libc.write(w, ctypes.c_void_p(addr), 1)
    if n == 1:
        return 0
    return 1 if ctypes.get_errno() == EFAULT else 2


def _probe_five_level() -> int:
    """0 when an address above 47 bits can be mapped (5-level paging, LA57), else 1."""
    libc = c_library()
    want = 1 << 47
    addr = libc.syscall(ctypes.c_long(SYS_mmap), ctypes.c_long(want), ctypes.c_long(PAGE_SIZE), ctypes.c_long(0),
                        ctypes.c_long(MAP_PRIVATE_ANON | MAP_FIXED_NOREPLACE), ctypes.c_long(-1), ctypes.c_long(0))
    return 0 if addr == want else 1


def _probe_advice() -> list[int]:
    """The madvise advice this kernel accepts: mm/madvise.c do_madvise refuses an advice it does
    not know (madvise_behavior_valid: the release, and KSM / THP / MEMORY_FAILURE compiled in)
    with EINVAL before anything else, and returns 0 for a zero length without touching memory."""
    libc = c_library()
    addr = libc.syscall(ctypes.c_long(SYS_mmap), ctypes.c_long(0), ctypes.c_long(PAGE_SIZE), ctypes.c_long(0),
                        ctypes.c_long(MAP_PRIVATE_ANON), ctypes.c_long(-1), ctypes.c_long(0))
    known = [a for a in list(range(0, 64)) + list(range(100, 112))
             if libc.syscall(ctypes.c_long(SYS_madvise), ctypes.c_long(addr), ctypes.c_long(0), ctypes.c_long(a)) == 0]
    libc.syscall(ctypes.c_long(SYS_munmap), ctypes.c_long(addr), ctypes.c_long(PAGE_SIZE))
    return known


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _cpu_flags() -> set[str]:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _meminfo(key: str) -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _bracketed(text: str, default: str) -> str:
    try:
        return text.split("[")[1].split("]")[0]
    except IndexError:
        return default


def _rlimit(which: int) -> int:
    """The soft limit, with RLIM_INFINITY as -1 (JSON has no unsigned 64-bit)."""
    soft = resource.getrlimit(which)[0]
    return -1 if soft == resource.RLIM_INFINITY else soft


_PROBED: dict[str, Any] = {}


def _probe_eof_zero_on_write() -> bool | None:
    """Whether a write() that begins past the end of a regular file zeroes the old end-of-file
    block's tail, where a store through a shared mapping left bytes (ext4 since late 2024 and its
    stable backports; tmpfs keeps them): tried on a file in the folder where the targets make the
    program's files.  None when it cannot be tried."""
    import tempfile
    try:
        fd, path = tempfile.mkstemp(prefix="memspec-eof-")
    except OSError:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    try:
        os.unlink(path)
        os.write(fd, bytes(0x100))
        a = libc.mmap(None, PAGE_SIZE, 3, 1, fd, 0)          # PROT_READ|PROT_WRITE, MAP_SHARED
        if a is None or a == ctypes.c_void_p(-1).value:
            return None
        try:
            ctypes.c_ubyte.from_address(a + 0x200).value = 0x41     # past the end, inside the page
            os.pwrite(fd, b"\x42", 0x300)
            return ctypes.c_ubyte.from_address(a + 0x200).value == 0
        finally:
            libc.munmap(a, PAGE_SIZE)
    except OSError:
        return None
    finally:
        os.close(fd)


def host_facts() -> dict[str, Any]:
    """The machine's facts that the os model reads (model.mm.Config.from_facts); probes that
    fork run once per process."""
    if not _PROBED:
        flags = _cpu_flags()
        pku = "pku" in flags and "ospke" in flags
        x = _in_child(_probe_exec_only, 2)
        _PROBED["pku"] = pku
        _PROBED["exec_only"] = pku if x not in (0, 1) else x == 1
        _PROBED["shm_private"] = _in_child(_probe_shm_private, 1) == 0
        _PROBED["madv_known"] = _probe_advice()
        _PROBED["eof_zero_on_write"] = _probe_eof_zero_on_write()
        _PROBED["task_size"] = ((1 << 56) if _in_child(_probe_five_level, 1) == 0 else (1 << 47)) - PAGE_SIZE
    f = dict(_PROBED)
    f["mmap_min_addr"] = int(_read("/proc/sys/vm/mmap_min_addr", "4096"))
    f["max_map_count"] = int(_read("/proc/sys/vm/max_map_count", "65530"))
    f["base_maps"] = len(_read("/proc/self/maps").splitlines())
    f["overcommit_memory"] = int(_read("/proc/sys/vm/overcommit_memory", "0"))
    f["overcommit_ratio"] = int(_read("/proc/sys/vm/overcommit_ratio", "50"))
    f["swappiness"] = int(_read("/proc/sys/vm/swappiness", "60"))
    f["ram_pages"] = max(_meminfo("MemTotal") // PAGE_SIZE, 1)
    f["swap_pages"] = _meminfo("SwapTotal") // PAGE_SIZE
    f["thp"] = _bracketed(_read("/sys/kernel/mm/transparent_hugepage/enabled"), "never")
    f["thp_defrag"] = _bracketed(_read("/sys/kernel/mm/transparent_hugepage/defrag"), "never")
    try:
        nodes = len([n for n in os.listdir("/sys/devices/system/node") if n.startswith("node")])
    except OSError:
        nodes = 1
    f["nodes"] = max(nodes, 1)
    f["page_size"] = os.sysconf("SC_PAGE_SIZE")
    f["kernel"] = f["impl_version"] = os.uname().release
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    f["memlock_soft"], f["memlock_hard"] = soft, hard
    f["rlimit_as"] = _rlimit(resource.RLIMIT_AS)
    f["rlimit_data"] = _rlimit(resource.RLIMIT_DATA)
    f["rlimit_nofile"] = _rlimit(resource.RLIMIT_NOFILE)
    f["rlimit_fsize"] = _rlimit(resource.RLIMIT_FSIZE)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    f["rlimit_fsize_hard"] = -1 if hard == resource.RLIM_INFINITY else hard
    f["cap_sys_rawio"] = has_cap(CAP_SYS_RAWIO)
    f["privileged"] = has_cap(CAP_IPC_LOCK)
    f["cap_dac_override"] = has_cap(CAP_DAC_OVERRIDE)
    f["cap_fowner"] = has_cap(CAP_FOWNER)
    f["cap_setuid"] = has_cap(CAP_SETUID) and has_cap(CAP_SETGID)
    f["pagemap_pfns"] = has_cap(CAP_SYS_ADMIN)
    f["cap_sys_admin"] = has_cap(CAP_SYS_ADMIN)
    return f
