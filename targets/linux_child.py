"""The linux target's child: the process that runs a program with real system calls.

It makes the calls with ``syscall(2)`` through ctypes (so glibc's wrappers judge nothing),
probes accesses without crashing (targets/linux.py's docstring says how), forks a servant
per process prefix -- from whichever process the program's fork names, each with a socket of
its own to the main process (``Runner``), so a grandchild is called directly and outlives its
parent -- and answers observations from /proc/self/maps and getrusage.

Why this module is about 1000 lines: one ``do_<call>`` method per os call of the call
table (about 45), each a few lines of staging around one system call; they share the child's
state (descriptors, the dontfork ranges, its servants), so they stay in one class.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import pickle
import resource
import shutil
import signal
import socket
import tempfile
import time
from typing import Any, Iterator

from memspec.consts import MAP, MAP_PAGES_MAX, PAGE_SIZE, SANDBOX_WINDOW, errno_name
from memspec.program import Program, bind_result, eval_args
from memspec.records import Mapping, Observation, Outcome

from .children import describe_status
from .linux_facts import SHM_PRIVATE, private_dev_shm
from .linux_sys import (CAP_SYS_ADMIN, KPF_THP, MREMAP_DONTUNMAP, MREMAP_FIXED, NOBODY, PAGE_MASK, SYS_close,
                        SYS_ftruncate, SYS_madvise, SYS_mbind, SYS_memfd_create, SYS_mincore, SYS_mlock, SYS_mlock2,
                        SYS_mlockall, SYS_mmap, SYS_move_pages, SYS_mprotect, SYS_mremap, SYS_msync, SYS_munlock,
                        SYS_munlockall, SYS_munmap, TASK_SIZE, U64, USER_TOP, c_library, has_cap)

WINDOW = SANDBOX_WINDOW


def _high(fd: int) -> int:
    """Move a descriptor of the harness's own above the ones a program uses: the kernel hands
    out the lowest free number, so a pipe made after the program closed its fd 7 would be 7,
    and the program's next mmap(…, 7, …) would map the harness's pipe."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    floor = 1000 if soft == resource.RLIM_INFINITY or soft > 1100 else max(soft // 2, 3)
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD, floor)
    except OSError:
        return fd
    os.close(fd)
    return new


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    return _high(r), _high(w)


def _align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & PAGE_MASK


MAP_PAGES_HEADROOM = 4096     # mappings left free for the interpreter when map_pages is staged


def _map_count() -> int:
    with open("/proc/self/maps", "rb") as f:
        return sum(1 for _ in f)


def _max_map_count() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65530


class Refused(Exception):
    """The call would touch memory the program does not own."""


def parse_maps(text: str) -> tuple[Mapping, ...]:
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 2:
            continue
        lo, hi = parts[0].split("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1]))
    return tuple(out)


def _read_maps() -> tuple[Mapping, ...]:
    with open("/proc/self/maps") as f:
        return parse_maps(f.read())


class _Ranges:
    """A small set of page ranges (what the program has mapped itself)."""

    def __init__(self) -> None:
        self.r: list[tuple[int, int]] = []

    def add(self, s: int, e: int) -> None:
        self.remove(s, e)
        self.r.append((s, e))
        self.r.sort()

    def remove(self, s: int, e: int) -> None:
        out = []
        for a, b in self.r:
            if b <= s or a >= e:
                out.append((a, b))
                continue
            if a < s:
                out.append((a, s))
            if b > e:
                out.append((e, b))
        self.r = out

    def uncovered(self, s: int, e: int) -> Iterator[tuple[int, int]]:
        """Parts of [s, e) not in the set."""
        cur = s
        for a, b in self.r:
            if b <= cur:
                continue
            if a >= e:
                break
            if a > cur:
                yield cur, a
            cur = max(cur, b)
        if cur < e:
            yield cur, e


class _Kernel:
    """System calls and access probes, inside the child."""

    def __init__(self, shm_names: bool = True) -> None:
        libc = c_library()
        self.libc = libc
        self.pr, self.pw = _pipe()
        self.owned = _Ranges()
        self.owned.add(*WINDOW)
        self.fds: set[int] = set()          # descriptors the program made
        self.dontfork = _Ranges()           # MADV_DONTFORK ranges (absent in forked probes)
        self.shm_prefix = f"ms{os.getpid()}x{int(time.time() * 1000) % 100000}-"
        self.shm_made: set[str] = set()
        self.shm_private = self.shm_names = False
        if shm_names:
            self.use_shm_names()
        # made on the first open_file only (most programs have none): the name is fixed now, so
        # that every process of the program uses, and the cleanup removes, the same folder
        self.tmpdir = os.path.join(tempfile.gettempdir(), f"memspec-{os.getpid()}-{os.urandom(6).hex()}")
        self.nfiles = 0
        self.start_process()
        self.handler = False        # the fetch probe's handler: installed before the first probe

    def start_process(self) -> None:
        """Per process: its own pagemap (opened while privileged) and fault-count baseline."""
        try:
            self.pagemap = _high(os.open("/proc/self/pagemap", os.O_RDONLY))
        except OSError:
            self.pagemap = -1
        # fs/proc/task_mmu.c pagemap_read: frame numbers only for an opener with CAP_SYS_ADMIN
        # (the program's first process has the capabilities of the harness that forked it)
        self.pagemap_pfns = has_cap(CAP_SYS_ADMIN) if not PARENT_CAPS else PARENT_CAPS.pop()
        self.start_counting()

    def use_shm_names(self) -> None:
        """Before the program's first call, when it may name shared memory objects.  With a
        private /dev/shm (a mount namespace of the program's own), names reach glibc and the
        kernel exactly as the program wrote them; else they get this run's prefix.  (A program
        without shm_open or shm_unlink needs neither: the namespace costs its process's exit a
        mount's teardown.)"""
        self.shm_names = True
        want = bool(SHM_PRIVATE and SHM_PRIVATE[0])
        self.shm_private = want and private_dev_shm(self.libc)
        if want and not self.shm_private:
            raise RuntimeError("a private /dev/shm was probed to work but cannot be made now")

    def start_counting(self) -> None:
        """The fault-count baseline: the faults the program's calls make are counted from here."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.flt0 = (ru.ru_minflt, ru.ru_majflt)

    def sys(self, nr: int, *args: int) -> Outcome:
        ctypes.set_errno(0)
        r = self.libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a if a < (1 << 63) else a - (1 << 64)) for a in args])
        if r == -1:
            return Outcome(value=-1, errno=errno_name(ctypes.get_errno()))
        return Outcome(value=r if r >= 0 else r + (1 << 64))

    def check_safe(self, s: int, e: int) -> None:
        """Refuse unless every page of [s, e) is ours or not mapped at all."""
        s &= PAGE_MASK
        e = min(_align(e), 1 << 64)
        gaps = list(self.owned.uncovered(s, e))
        if not gaps:
            return
        for m in _read_maps():
            for a, b in gaps:
                if m.start < b and m.end > a:
                    raise Refused(f"[{a:#x}, {b:#x}) overlaps {m.start:#x}-{m.end:#x} {m.perms}, "
                                  "which the program did not map")

    def do(self, name: str, args: tuple[Any, ...]) -> Outcome:
        # Addresses and lengths reach the kernel as unsigned long (-1 is the top address).
        if name in ("load", "store", "fetch", "munmap", "mprotect", "mremap", "madvise", "mseal", "msync", "mincore",
                    "mlock", "mlock2", "munlock", "pfn_of", "thp_mapped", "get_node", "mbind"):
            args = (args[0] & U64,) + tuple(args[1:])
        return getattr(self, "do_" + name)(*args)

    # -- the rest of the os layer --------------------------------------------------

    def do_mremap(self, addr: int, old_size: int, new_size: int, flags: int, new_addr: int) -> Outcome:
        old_size &= U64
        new_size &= U64
        new_addr &= U64
        if old_size and addr < USER_TOP:
            self.check_safe(addr, min(addr + old_size, USER_TOP))
        if flags & MREMAP_FIXED and new_size and new_addr < USER_TOP:
            self.check_safe(new_addr, min(new_addr + new_size, USER_TOP))
        dontfork = bool(old_size) and list(self.dontfork.uncovered(addr, addr + _align(old_size))) != [
            (addr, addr + _align(old_size))]
        o = self.sys(SYS_mremap, addr, old_size, new_size, flags, new_addr)
        if o.ok and o.value is not None:
            if dontfork:
                # the moved (or grown) VMA keeps VM_DONTCOPY: no forked probe reaches its new range
                self.dontfork.add(o.value, o.value + _align(new_size))
            if not flags & MREMAP_DONTUNMAP and o.value != addr:
                self.owned.remove(addr, addr + _align(old_size))
            self.owned.add(o.value, o.value + _align(new_size))
            self.owned.add(*WINDOW)
        return o

    def _range_safe(self, addr: int, length: int) -> None:
        if addr & ~PAGE_MASK:
            return
        end = addr + _align(length & U64)
        if end > addr and addr < USER_TOP:
            self.check_safe(addr, min(end, USER_TOP))

    def do_madvise(self, addr: int, length: int, advice: int) -> Outcome:
        self._range_safe(addr, length)
        if advice in (100, 101) and length and has_cap(CAP_SYS_ADMIN):
            # MADV_HWPOISON, MADV_SOFT_OFFLINE: mm/madvise.c madvise_inject_error: with CAP_SYS_ADMIN the kernel really poisons (or
            # offlines) the frames behind the range, which the machine then never uses again
            raise Refused("MADV_HWPOISON and MADV_SOFT_OFFLINE with CAP_SYS_ADMIN take frames out of the machine")
        o = self.sys(SYS_madvise, addr, length, advice)
        if advice in (10, 11) and not addr & ~PAGE_MASK:      # MADV_DONTFORK, MADV_DOFORK
            end = addr + _align(length & U64)
            if advice == 10:
                self.dontfork.add(addr, end)
            else:
                self.dontfork.remove(addr, end)
        return o

    def _probe_ok(self, addr: int) -> None:
        if not self.handler:
            _install_fault_handler(self.libc)
            self.handler = True
        # probes run in a forked process, where MADV_DONTFORK memory does not exist
        if any(True for _ in self.dontfork.uncovered(addr, addr + 1)):
            return
        raise Refused(f"{addr:#x} is MADV_DONTFORK memory, which a forked probe cannot reach")

    def do_mseal(self, addr: int, length: int, flags: int) -> Outcome:
        # mm/mseal.c do_mseal fails these before touching anything: no safety check needed
        plen = _align(length & U64)
        if not (flags or addr & ~PAGE_MASK or (length and not plen) or addr + plen > U64):
            self._range_safe(addr, length)
        return self.sys(462, addr, length, flags)      # x86-64 __NR_mseal (Linux 6.10)

    def do_msync(self, addr: int, length: int, flags: int) -> Outcome:
        self._range_safe(addr, length)
        return self.sys(SYS_msync, addr, length, flags)

    def _lock_range_safe(self, addr: int, length: int) -> None:
        """Calls whose result depends on every page of the range (mlock family, mincore, mbind):
        the model can only speak for ranges the program owns or that are free."""
        start = addr & PAGE_MASK
        end = _align(addr + (length & U64))
        if end > start and start < USER_TOP:
            self.check_safe(start, min(end, USER_TOP))

    def do_mincore(self, addr: int, length: int) -> Outcome:
        length &= U64
        if not addr & ~PAGE_MASK:
            self._lock_range_safe(addr, length)
        npages = (length + PAGE_SIZE - 1) // PAGE_SIZE if length else 0
        # the kernel writes the vector chunk by chunk, also for a mapped prefix before a hole:
        # give it room for the mapped prefix of the range (and one more page)
        room = npages
        if npages > 4096:
            cur = addr
            for m in sorted(_read_maps(), key=lambda m: m.start):
                if m.start <= cur < m.end:
                    cur = m.end
            room = min(npages, (cur - addr) // PAGE_SIZE + 1) if cur > addr else 1
        vec = (ctypes.c_ubyte * max(room, 1))()
        o = self.sys(SYS_mincore, addr, length, ctypes.addressof(vec))
        if not o.ok:
            return o
        return Outcome(value=sum(1 << i for i in range(min(room, npages)) if vec[i] & 1))

    def do_mlock(self, addr: int, length: int) -> Outcome:
        self._lock_range_safe(addr, length)
        return self.sys(SYS_mlock, addr, length & U64)

    def do_mlock2(self, addr: int, length: int, flags: int) -> Outcome:
        self._lock_range_safe(addr, length)
        return self.sys(SYS_mlock2, addr, length & U64, flags)

    def do_munlock(self, addr: int, length: int) -> Outcome:
        self._lock_range_safe(addr, length)
        return self.sys(SYS_munlock, addr, length & U64)

    def do_mlockall(self, flags: int) -> Outcome:
        return self.sys(SYS_mlockall, flags)

    def do_munlockall(self) -> Outcome:
        return self.sys(SYS_munlockall)

    def do_set_memlock_limit(self, soft: int) -> Outcome:
        hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft & U64 if soft >= 0 else resource.RLIM_INFINITY, hard))
        except ValueError:
            return Outcome(value=-1, errno="EINVAL")
        except OSError as e:
            return Outcome(value=-1, errno=errno_name(e.errno or 0))
        return Outcome(value=0)

    def do_set_fsize_limit(self, soft: int) -> Outcome:
        # (SIGXFSZ, sent with EFBIG past the limit, is ignored: CPython ignores it at start-up,
        # and the child makes sure; by default it would kill the process)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft & U64 if soft >= 0 else resource.RLIM_INFINITY, hard))
        except ValueError:
            return Outcome(value=-1, errno="EINVAL")
        except OSError as e:
            return Outcome(value=-1, errno=errno_name(e.errno or 0))
        return Outcome(value=0)

    def do_drop_privileges(self) -> Outcome:
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
        except OSError as e:
            return Outcome(value=-1, errno=errno_name(e.errno or 0))
        return Outcome(value=0)

    def _shm_name(self, name: str) -> bytes:
        if self.shm_private:
            return name.encode("utf-8", "surrogateescape")
        # Names live in one system-wide namespace: give this run's objects a prefix of their
        # own, leaving names the C library rejects as they are (so the errno is the library's).
        n = name.lstrip("/")
        if not n or "/" in n or n in (".", "..") or len(n) > 255:
            return name.encode()
        if len(self.shm_prefix) + len(n) > 255:
            import hashlib
            n = hashlib.sha1(n.encode()).hexdigest()
        return ("/" + self.shm_prefix + n).encode()

    def do_shm_open(self, name: str, oflag: int, mode: int) -> Outcome:
        real = self._shm_name(name)
        ctypes.set_errno(0)
        fd = self.libc.shm_open(real, oflag, mode)
        if fd < 0:
            return Outcome(value=-1, errno=errno_name(ctypes.get_errno()))
        os.set_inheritable(fd, True)
        self.fds.add(fd)
        self.shm_made.add(real.decode())
        return Outcome(value=fd)

    def do_shm_unlink(self, name: str) -> Outcome:
        ctypes.set_errno(0)
        if self.libc.shm_unlink(self._shm_name(name)) < 0:
            return Outcome(value=-1, errno=errno_name(ctypes.get_errno()))
        return Outcome(value=0)

    def do_memfd_create(self, name: str, flags: int) -> Outcome:
        buf = ctypes.create_string_buffer(name.encode())
        o = self.sys(SYS_memfd_create, ctypes.addressof(buf), flags & ~1)
        if o.ok and o.value is not None:
            self.fds.add(o.value)
        return o

    def do_open_file(self, size: int, oflag: int) -> Outcome:
        self.nfiles += 1
        path = os.path.join(self.tmpdir, f"f{os.getpid()}-{self.nfiles}")
        try:
            if not os.path.isdir(self.tmpdir):
                os.mkdir(self.tmpdir, 0o700)
                os.chmod(self.tmpdir, 0o1777)    # a process that dropped its privileges may make files too
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.ftruncate(fd, size)
            os.close(fd)
            fd = os.open(path, oflag & (3 | os.O_APPEND))   # the access mode and O_APPEND
        except (OSError, OverflowError, ValueError) as e:
            return Outcome(value=-1, errno=errno_name(getattr(e, "errno", None) or 22))
        self.fds.add(fd)
        return Outcome(value=fd)

    def do_pipe(self) -> Outcome:
        # The program holds only the read end (pipe() returns one descriptor), so the write end is
        # closed at once: a descriptor the program never got, kept open, would be a number the model
        # does not know (ftruncate of it: EINVAL, the model says EBADF; found by the soak), and a
        # read of the pipe would block.  With no writer left, read is end of file (fs/pipe.c pipe_read).
        try:
            r, w = os.pipe()
        except OSError as e:
            return Outcome(value=-1, errno=errno_name(e.errno or 0))
        os.close(w)
        self.fds.add(r)
        return Outcome(value=r)

    def _fd_safe(self, fd: int) -> None:
        fd &= 0xFFFFFFFF          # the kernel reads a descriptor as unsigned int: 0x100000000 is 0
        if fd in self.fds or fd > 1 << 20:
            return
        try:
            os.fstat(fd)
        except OSError:
            return      # not open: the call fails with EBADF and touches nothing
        raise Refused(f"descriptor {fd} belongs to the harness, not the program")

    def do_ftruncate(self, fd: int, length: int) -> Outcome:
        self._fd_safe(fd)
        return self.sys(SYS_ftruncate, fd, length)

    # read, write, pread, pwrite, lseek: one byte read (256: nothing read, end of file), count
    # bytes of one value written (x86-64 system calls 0, 1, 17, 18, 8)
    def _read_one(self, fd: int, nr: int, *pos: int) -> Outcome:
        self._fd_safe(fd)
        buf = ctypes.create_string_buffer(1)
        o = self.sys(nr, fd, ctypes.addressof(buf), 1, *pos)
        if not o.ok:
            return o
        return Outcome(value=buf.raw[0] if o.value == 1 else 256)

    def do_read(self, fd: int) -> Outcome:
        return self._read_one(fd, 0)

    def do_pread(self, fd: int, offset: int) -> Outcome:
        return self._read_one(fd, 17, offset)

    def _write(self, fd: int, nr: int, value: int, count: int, *pos: int) -> Outcome:
        self._fd_safe(fd)
        count &= U64
        if count > 1 << 20:
            raise Refused("writes of more than 1 MiB are not staged")
        buf = ctypes.create_string_buffer(bytes([value & 0xFF]) * max(count, 1))
        return self.sys(nr, fd, ctypes.addressof(buf), count, *pos)

    def do_write(self, fd: int, value: int, count: int) -> Outcome:
        return self._write(fd, 1, value, count)

    def do_pwrite(self, fd: int, offset: int, value: int, count: int) -> Outcome:
        return self._write(fd, 18, value, count, offset)

    def do_lseek(self, fd: int, offset: int, whence: int) -> Outcome:
        self._fd_safe(fd)
        return self.sys(8, fd, offset, whence)

    def do_close(self, fd: int) -> Outcome:
        self._fd_safe(fd)
        o = self.sys(SYS_close, fd)
        if o.ok:
            self.fds.discard(fd)
        return o

    def _pagemap(self, addr: int) -> int:
        if self.pagemap < 0:
            raise Refused("/proc/self/pagemap is not readable here")
        if not self.pagemap_pfns:
            raise Refused("/proc/self/pagemap shows frame numbers only to CAP_SYS_ADMIN, which this process lacks")
        e = int.from_bytes(os.pread(self.pagemap, 8, (addr >> 12) * 8), "little")
        return e & ((1 << 55) - 1) if e >> 63 else 0

    def do_pfn_of(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)     # the model can speak only for the program's own pages
        return Outcome(value=self._pagemap(addr))

    def do_thp_mapped(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)     # the model can speak only for the program's own pages
        pfn = self._pagemap(addr)
        if not pfn:
            return Outcome(value=0)
        try:
            with open("/proc/kpageflags", "rb") as f:
                f.seek(pfn * 8)
                flags = int.from_bytes(f.read(8), "little")
        except OSError:
            raise Refused("/proc/kpageflags is not readable here") from None
        return Outcome(value=1 if flags >> KPF_THP & 1 else 0)

    def faults(self) -> list[int]:
        """[minor, major] faults of this process since the program began in it (getrusage)."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return [ru.ru_minflt - self.flt0[0], ru.ru_majflt - self.flt0[1]]

    def do_minflt(self) -> Outcome:
        return Outcome(value=resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.flt0[0])

    def do_majflt(self) -> Outcome:
        return Outcome(value=resource.getrusage(resource.RUSAGE_SELF).ru_majflt - self.flt0[1])

    def do_get_node(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)     # the model can speak only for the program's own pages
        page = ctypes.c_uint64(addr)
        status = ctypes.c_int(-999)
        o = self.sys(SYS_move_pages, 0, 1, ctypes.addressof(page), 0, ctypes.addressof(status), 0)
        if not o.ok:
            return o
        if status.value < 0:
            return Outcome(value=-1, errno=errno_name(-status.value))
        return Outcome(value=status.value)

    def do_mbind(self, addr: int, length: int, mode: int, nodemask: int) -> Outcome:
        if not addr & ~PAGE_MASK:
            self._lock_range_safe(addr, length)
        mask = ctypes.c_uint64(nodemask & U64)
        return self.sys(SYS_mbind, addr, length & U64, mode, ctypes.addressof(mask), 64, 0)

    def do_map_pages(self, addr: int, n: int, prot: int) -> Outcome:
        """n one-page private anonymous mappings, every other page from addr, with MAP_FIXED_NOREPLACE,
        stopping at the first mmap that fails: the count mapped, with that mmap's errno (model.os.bulk)."""
        addr &= U64
        if n < 0 or n > MAP_PAGES_MAX or addr + 2 * n * PAGE_SIZE > 1 << 64:
            return Outcome(value=-1, errno="EINVAL")
        if n and not (WINDOW[0] <= addr and addr + 2 * n * PAGE_SIZE <= WINDOW[1]):
            raise Refused("map_pages is staged inside the sandbox window only")
        if n > MAP_PAGES_HEADROOM and _map_count() + n > _max_map_count() - MAP_PAGES_HEADROOM:
            # at vm.max_map_count this interpreter cannot map memory of its own any more (a new
            # obmalloc arena, a thread stack): its next allocation dies with MemoryError, a crash
            # the program did not cause.  The C agent (linux-agent) stages it.
            raise Refused("map_pages that would reach vm.max_map_count: the Python harness needs mappings of "
                          "its own to go on (the linux-agent target runs it)")
        # one prototype for the loop: 65,000 calls through it take under a second
        mmap = _SYSCALL6(("syscall", self.libc))
        flags = MAP["MAP_PRIVATE"] | MAP["MAP_ANONYMOUS"] | MAP["MAP_FIXED_NOREPLACE"]
        k = 0
        ctypes.set_errno(0)
        while k < n:
            if mmap(SYS_mmap, addr + 2 * k * PAGE_SIZE, PAGE_SIZE, prot & U64, flags, -1, 0) == -1:
                return Outcome(value=k, errno=errno_name(ctypes.get_errno()))
            if self.dontfork.r:
                self.dontfork.remove(addr + 2 * k * PAGE_SIZE, addr + (2 * k + 1) * PAGE_SIZE)
            k += 1
        return Outcome(value=n)

    def cleanup(self) -> None:
        """Remove this run's shared memory names (made by any of its processes) and files."""
        if self.shm_private or not self.shm_names:
            names: list[str] = []      # the private tmpfs goes with the program's last process
        else:
            names = self._shared_names()
        for n in names:
            self.libc.shm_unlink(("/" + n).encode())
        if os.path.isdir(self.tmpdir):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _shared_names(self) -> list[str]:
        try:
            names = [n for n in os.listdir("/dev/shm") if n.startswith(self.shm_prefix)]
        except OSError:
            names = [n.lstrip("/") for n in self.shm_made]
        return names

    def do_mmap(self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Outcome:
        addr &= U64
        if not flags & MAP["MAP_ANONYMOUS"]:
            self._fd_safe(fd)       # the harness's descriptors (0, 1, 2, its pipes) are not the program's
        if flags & (MAP["MAP_FIXED"]) and length > 0 and addr < USER_TOP:
            self.check_safe(addr, min(addr + length, USER_TOP))
        o = self.sys(SYS_mmap, addr, length, prot, flags, fd, offset)
        if o.ok and o.value is not None:
            self.dontfork.remove(o.value, o.value + _align(length))
            self.owned.add(o.value, o.value + _align(length))
        return o

    def do_munmap(self, addr: int, length: int) -> Outcome:
        # mm/vma.c do_vmi_munmap fails these before touching anything: no safety check needed.
        harmless = addr & ~PAGE_MASK or addr > TASK_SIZE or length > TASK_SIZE - addr or _align(length) == 0
        if not harmless:
            self.check_safe(addr, addr + length)
        o = self.sys(SYS_munmap, addr, length)
        if o.ok:
            self.dontfork.remove(addr, addr + _align(length))
            self.owned.remove(addr, addr + _align(length))
            self.owned.add(*WINDOW) if addr < WINDOW[1] and addr + length > WINDOW[0] else None
        return o

    def do_mprotect(self, addr: int, length: int, prot: int) -> Outcome:
        # mm/mprotect.c do_mprotect_pkey fails these before touching anything.
        harmless = (addr & ~PAGE_MASK or length == 0 or addr + _align(length) > U64
                    or prot & ~0x0300000F or prot & 0x03000000 == 0x03000000)
        if not harmless and addr < USER_TOP:
            self.check_safe(addr, min(addr + length, USER_TOP))
        return self.sys(SYS_mprotect, addr, length, prot)

    def do_load(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)
        n = self.libc.write(self.pw, ctypes.c_void_p(addr), 1)
        if n != 1:
            return Outcome(signal=self.probe_signal(addr, None), detail=(("errno", errno_name(ctypes.get_errno())),))
        return Outcome(value=os.read(self.pr, 1)[0])

    def do_store(self, addr: int, value: int) -> Outcome:
        self.check_safe(addr, addr + 1)
        os.write(self.pw, bytes([value & 0xFF]))
        n = self.libc.read(self.pr, ctypes.c_void_p(addr), 1)
        if n != 1:
            os.read(self.pr, 1)
            return Outcome(signal=self.probe_signal(addr, value), detail=(("errno", errno_name(ctypes.get_errno())),))
        return Outcome()

    def probe_signal(self, addr: int, value: int | None) -> str:
        """The kernel refused to copy (EFAULT): which signal would a user-mode access get?
        A grandchild makes the real access with the fault handler installed; SIGBUS (a page
        past the end of a file) and SIGSEGV differ only there."""
        self._probe_ok(addr)
        _PROBE_MODE.value = 1
        pid = os.fork()
        if pid == 0:
            try:
                signal.alarm(1)
                if value is None:
                    ctypes.string_at(addr, 1)
                else:
                    ctypes.memset(addr, value & 0xFF, 1)
            finally:
                os._exit(12)
        _PROBE_MODE.value = 0
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return {31: "SIGBUS"}.get(code, "SIGSEGV")

    def do_fetch(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)
        self._probe_ok(addr)
        # Everything the probe needs exists before the fork: a callback made in the
        # grandchild would allocate a libffi trampoline page, which the kernel may
        # place right at the address under test.
        _FETCH_TARGET.value = addr
        jump = _JUMP_T(addr)
        pid = os.fork()
        if pid == 0:
            try:
                signal.alarm(1)
                jump()
            finally:
                os._exit(12)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 10:
            return Outcome(signal="SIGSEGV")
        if code == 13:
            return Outcome(signal="SIGBUS")
        return Outcome(detail=(("after_fetch", code),))


# syscall(2) with six arguments (map_pages' loop): nr, then unsigned long arguments, fd as long
_SYSCALL6 = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                             ctypes.c_ulong, ctypes.c_long, ctypes.c_ulong, use_errno=True)

# x86-64 ucontext_t: uc_flags, uc_link, uc_stack (24 bytes), then mcontext gregs.
_GREGS = 40
_REG_RIP, _REG_ERR, _REG_TRAPNO = 16, 19, 20
_FETCH_TARGET = ctypes.c_uint64(0)
_PROBE_MODE = ctypes.c_int(0)   # 0: a fetch probe; 1: a load/store probe (exit 30 SIGSEGV, 31 SIGBUS)
_JUMP_T = ctypes.CFUNCTYPE(None)
_HANDLER_T = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _on_fault(sig: int, info: int, uc: int) -> None:
    """Runs in the probe's grandchild only: exit 10 iff the instruction fetch itself faulted
    (a #PF with the I/D bit at the target address), 11 for any later fault."""
    if _PROBE_MODE.value == 1:
        os._exit(31 if sig == signal.SIGBUS else 30)

    def greg(i: int) -> int:
        return ctypes.c_uint64.from_address(uc + _GREGS + 8 * i).value
    fetch_fault = (sig == signal.SIGSEGV and greg(_REG_TRAPNO) == 14 and greg(_REG_RIP) == _FETCH_TARGET.value
                   and greg(_REG_ERR) & 0x10)
    # SIGBUS at the target itself: the fetch reached a file page past the end of the file
    fetch_bus = sig == signal.SIGBUS and greg(_REG_RIP) == _FETCH_TARGET.value
    os._exit(10 if fetch_fault else 13 if fetch_bus else 11)


class _Sigaction(ctypes.Structure):
    _fields_ = [("handler", _HANDLER_T), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]


_HANDLER = _HANDLER_T(_on_fault)


def _install_fault_handler(libc: ctypes.CDLL) -> None:
    """Install the fetch probe's handler in the runner; forked probes inherit it."""
    sa = _Sigaction()
    sa.handler = _HANDLER
    sa.flags = 4   # SA_SIGINFO
    for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP):
        libc.sigaction(int(s), ctypes.byref(sa), None)


# ---------------------------------------------------------------------------
# The runner: the process that executes a program, with its forked processes.

class _Channel:
    """One process of the program as the main process reaches it: a socket pair of its own
    (requests as JSON lines, a fork's socket for the new process passed with SCM_RIGHTS), so
    that every process, a grandchild too, answers main directly and stays reachable when the
    process that forked it exits (Linux reparents an orphan; it keeps running)."""

    def __init__(self, name: str, pid: int, sock: socket.socket, direct: bool) -> None:
        self.name, self.pid, self.sock, self.direct = name, pid, sock, direct
        self.f = sock.makefile("rb")

    def ask(self, req: dict[str, Any], fd: int = -1) -> dict[str, Any]:
        data = (json.dumps(req) + "\n").encode()
        if fd >= 0:
            socket.send_fds(self.sock, [data], [fd])
        else:
            self.sock.sendall(data)
        line = self.f.readline()
        if not line:
            raise RuntimeError(f"process {self.name} died: {self.wait()}")
        return json.loads(line)

    def wait(self) -> str:
        """Until the process has exited (its end of the socket closed: exit_files, after exit_mm);
        reap it if it is main's child (forked by main, or an orphan main adopted as subreaper)."""
        try:
            while self.f.read(1 << 16):
                pass
        except OSError:
            pass
        how = "ended"
        try:
            how = describe_status(os.waitpid(self.pid, 0)[1])
        except ChildProcessError:
            pass        # its own parent, still alive, reaps it
        return how

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def _socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return (socket.socket(fileno=_high(a.detach())), socket.socket(fileno=_high(b.detach())))


PR_SET_CHILD_SUBREAPER = 36


class Runner:
    """Runs calls in the main process and dispatches prefixed ones to the program's other
    processes: every one of them, however deep its fork, has its channel to main, kept in
    ``servants`` by name (main forks its own children; a fork in process P is asked of P with
    the socket the new process will serve on).  An exit of a process leaves its children
    running and reachable, as on Linux (and in the model, model/os/processes.py apply_exit)."""

    def __init__(self, shm_names: bool = True) -> None:
        self.k = _Kernel(shm_names)
        self.servants: dict[str, _Channel] = {}
        self.up: socket.socket | None = None    # in a forked process: its channel to main
        # orphans (a grandchild whose parent exited) are reparented to main, which reaps them
        self.k.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def call(self, proc: str, name: str, args: tuple[Any, ...], result: str | None) -> Outcome:
        if proc != "main":
            return self._remote(proc, name, args, result or "p?")
        if name == "fork":
            return self._fork(result or "p?")
        return self.k.do(name, args)

    def _fork(self, child_name: str) -> Outcome:
        try:
            mine, theirs = _socketpair()
        except OSError as e:
            return Outcome(value=-1, errno=errno_name(e.errno or 0))
        pid = self._fork_serving(theirs.detach())
        if pid < 0:
            mine.close()
            return Outcome(value=-1, errno=errno_name(-pid))
        self.servants[child_name] = _Channel(child_name, pid, mine, True)
        return Outcome(value=pid)

    def _fork_serving(self, fd: int) -> int:
        """Fork a process that serves requests on ``fd`` (closed here); its pid, or -errno."""
        try:
            pid = os.fork()
        except OSError as e:
            os.close(fd)
            return -(e.errno or 0)
        if pid == 0:
            for ch in self.servants.values():
                ch.close()
            self.servants = {}
            if self.up is not None:
                self.up.close()
            if self.k.pagemap >= 0:
                os.close(self.k.pagemap)
            self.k.start_process()
            self.k.dontfork = _Ranges()     # those ranges do not exist in the child
            self.up = socket.socket(fileno=fd)
            try:
                _serve_requests(self)
            finally:
                os._exit(0)
        os.close(fd)
        return pid

    def _remote(self, proc: str, name: str, args: tuple[Any, ...], child_name: str) -> Outcome:
        ch = self.servants.get(proc)
        if ch is None:
            return Outcome(value=-1, errno="ESRCH")
        req = {"name": name, "args": list(args)}
        if name == "fork":
            try:
                mine, theirs = _socketpair()
            except OSError as e:
                return Outcome(value=-1, errno=errno_name(e.errno or 0))
            try:
                msg = ch.ask(req, theirs.fileno())
            finally:
                theirs.close()
            o = Outcome.from_json(msg)
            if o.ok and o.value:
                self.servants[child_name] = _Channel(child_name, o.value, mine, False)
            else:
                mine.close()
            return o
        msg = ch.ask(req)
        if "refused" in msg:
            raise Refused(msg["refused"])
        if name == "exit":
            ch.wait()
            ch.close()
            del self.servants[proc]
        return Outcome.from_json(msg)

    def end(self) -> None:
        """The end of the program: end its other processes, in the order they were forked (a
        parent before its children, which main then adopts and reaps)."""
        for ch in list(self.servants.values()):
            try:
                ch.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            ch.wait()
            ch.close()
        self.servants = {}

    def observe_wire(self) -> tuple[list[list[Any]], dict[str, Any]]:
        """What ``observe`` gives, as the batch child writes it: each process's map as a list
        of [start, end, perms], the main process's as the text of its /proc/self/maps."""
        with open("/proc/self/maps") as f:
            maps: list[list[Any]] = [["main", f.read()]]
        faults = {"main": self.k.faults()}
        for name, ch in self.servants.items():
            msg = ch.ask({"observe": 1})
            maps.append([name, msg["maps"]])
            faults[name] = msg.get("faults", [0, 0])
        return maps, {"faults": faults}

    def observe(self) -> Observation:
        maps = [("main", _read_maps())]
        faults = {"main": self.k.faults()}
        for name, ch in self.servants.items():
            msg = ch.ask({"observe": 1})
            maps.append((name, tuple(Mapping(*m) for m in msg["maps"])))
            faults[name] = msg.get("faults", [0, 0])
        return Observation(tuple(maps), (("faults", faults),))


def _requests(sock: socket.socket) -> Iterator[tuple[dict[str, Any], list[int]]]:
    """A forked process's requests from main, each with the descriptors passed with it."""
    buf = b""
    fds: list[int] = []
    while True:
        while b"\n" not in buf:
            data, got, _, _ = socket.recv_fds(sock, 1 << 16, 4)
            fds += got
            if not data:
                return
            buf += data
        line, buf = buf.split(b"\n", 1)
        yield json.loads(line), fds
        fds = []


def _serve_requests(runner: Runner) -> None:
    """A forked process's loop: run requests in this process, answer each."""
    sock = runner.up
    assert sock is not None
    for req, fds in _requests(sock):
        # a child this process forked that has exited since (main waited for its end)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if "observe" in req:
            reply: dict[str, Any] = {"maps": [[m.start, m.end, m.perms] for m in _read_maps()],
                                     "faults": runner.k.faults()}
        elif req["name"] == "exit":
            sock.sendall(b"{}\n")
            os._exit(0)
        elif req["name"] == "fork":
            for fd in fds[1:]:
                os.close(fd)
            pid = runner._fork_serving(fds[0]) if fds else -22
            reply = (Outcome(value=pid) if pid > 0 else Outcome(value=-1, errno=errno_name(-pid))).to_json()
        else:
            for fd in fds:
                os.close(fd)
            try:
                reply = runner.call("main", req["name"], tuple(req["args"]), None).to_json()
            except Refused as e:
                reply = {"refused": str(e)}
        sock.sendall((json.dumps(reply) + "\n").encode())


def child_batch(program: Program, observe: str, wfd: int) -> None:
    """The program's process: run it all, one JSON line per outcome, then the observations."""
    runner = Runner()
    try:
        run_calls(runner, program, observe, wfd)
    finally:
        runner.end()
        runner.k.cleanup()


# whether the harness, which forks a program's first process, has CAP_SYS_ADMIN (set in the
# warm child before its Runner starts: the first process has the harness's capabilities)
PARENT_CAPS: list[bool] = []

# the calls that name a shared memory object in /dev/shm
SHM_NAME_CALLS = frozenset({"shm_open", "shm_unlink"})


def _read_exactly(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            return b""
        out += chunk
    return out


def warm_child(rfd: int, wfd: int, caps: bool | None = None, known: tuple[Program, str] | None = None) -> None:
    """A program's process forked before its program is known (``linux._WarmChild``): set up
    the process, then read the program (an 8-byte length and a pickle of ``(program, observe)``)
    and run it as ``child_batch`` does.  The request pipe closed first: exit, running nothing.
    ``known``: the program was known when the process was forked (no request pipe)."""
    rfd = _high(rfd) if rfd >= 0 else rfd
    wfd = _high(wfd)
    if caps is not None:
        PARENT_CAPS[:] = [caps]
    runner = Runner(shm_names=False)
    try:
        if known is None:
            head = _read_exactly(rfd, 8)
            data = _read_exactly(rfd, int.from_bytes(head, "little")) if head else b""
            os.close(rfd)
            if not data:
                return
            program, observe = pickle.loads(data)
        else:
            program, observe = known
        if any(c.name in SHM_NAME_CALLS for c in program.calls):
            runner.k.use_shm_names()
        runner.k.start_counting()
        run_calls(runner, program, observe, wfd)
    finally:
        runner.end()
        runner.k.cleanup()


def run_calls(runner: "Runner", program: Program, observe: str, wfd: int) -> None:
    env: dict[str, int] = {}
    out = os.fdopen(wfd, "w", buffering=1)
    for i, c in enumerate(program.calls):
        args = eval_args(c, env)
        try:
            o = runner.call(c.proc or "main", c.name, args, c.result)
        except Refused as e:
            out.write(json.dumps({"refused": str(e), "index": i}) + "\n")
            return
        bind_result(env, c, o.value)
        out.write(json.dumps({"o": o.to_json()}) + "\n")
        if observe == "each" or (observe == "end" and i == len(program.calls) - 1):
            # the main process's map as the kernel wrote it (parse_maps reads it in the harness)
            maps, extra = runner.observe_wire()
            out.write(json.dumps({"obs": maps, "extra": extra, "index": i}) + "\n")
    out.write('{"done": 1}\n')
    out.flush()
