"""The os layer's generator: a well-typed multi-process program of the os layer's calls:
mmap (anonymous and of files), munmap, mprotect, mremap, madvise, msync, mincore, the
mlock family, mseal, files and shared memory (and their bytes through the descriptor: read,
write, pread, pwrite, lseek), accesses, fork/exit, observations (frames, fault counts) and -- for
targets that implement them -- memory-pressure events.  Every value of the 6.x uapi groups
(MADV_*, MAP_*, MREMAP_*, MLOCK_*, MCL_*, MS_*, SEEK_*) the model has a rule for is drawn,
invalid combinations too; the version-gated ones (mseal, MAP_DROPPABLE, MAP_ABOVE4G,
MADV_GUARD_*) are judged by the kernel-version fact, so they are safe on any kernel.

Scenarios (several calls in one step) reach shapes single calls rarely make: a fork with changes
on both sides (``fork_scenario``), one file written and read through its descriptor and through
its mappings in turn (``file_scenario``), a sealed range met by every call mseal forbids
(``seal_scenario``), mremap beside a neighbour (``grow_scenario``), state set before a fork and met
in the child (``inherit_scenario``) or set in a child and met in the grandchild it forks, with exits
in either order (``nested_scenario``; not for a target whose ``nested_fork`` fact is false), advice over memory with bytes on it (``advice_scenario``) and a
2 MiB-aligned range faulted, split and collapsed under thp_mapped, pfn_of and mincore
(``thp_scenario``).  Swarm testing covers the values as well as the calls: in VOCAB_SWARM_PERCENT of
the programs each vocabulary (advice, protections, MAP_/MREMAP_/MS_/MCL_ flags, whence) is a random
subset, so one value is met many times; EDGE_PERCENT of the ranges sit at the exact limits of the
address space (ending at TASK_SIZE -- the target's ``task_size`` fact -- or at 2^64, or a length
whose page alignment wraps), and names sit at their length limits.  After a change of a range (done or refused) the range is read back page by
page, with the page before and after it, in every process that maps it (``read_back``).

Addresses come mostly from earlier results (``a+0x1000``) and from the sandbox
window (where hints are honoured and MAP_FIXED is safe on every target); sizes
sit near page boundaries; flags come from the combinations the clauses name.

Every decision is drawn from a ``Chooser`` (``specs/choose.py``): fuzzer bytes drive it in the
codec (``fuzz/codec_os.py``), Hypothesis draws in the state machine (``specs/machine_os.py``),
so both generate from the one set of vocabularies below.

Why this module is over 800 lines: it is the layer's one generator (docs/architecture.md), and its
steps and scenarios all read and extend one ``OsGen``'s record of the program so far (mappings and
who maps them, descriptors and their mappings, bytes written, processes); split across modules they
would share that state through a back door rather than through the class.
"""

from __future__ import annotations

from typing import Any

from memspec.consts import MAP_PAGES_MAX, SANDBOX_WINDOW
from memspec.program import Call, Flags, Int, Program, Ref, Str

from .choose import Chooser, swarm
from .gen_os_scenarios import COMMIT_NEEDS, COMMIT_SCENARIO_WEIGHT, commit_limit, commit_scenario

PAGE = 4096
LLONG_MAX = (1 << 63) - 1
MAX_CALLS = 28
SWARM_PERCENT = 50          # programs that draw from a random subset of the calls (swarm testing)
READBACK_PERCENT = 45       # changes of a range followed by loads of every page in and beside it
READBACK_PAGES = 8          # a longer range is read back at its edges only
READBACK_LOADS = 24         # loads of one read-back, at most (over every process that maps the range)
SPREAD_PERCENT = 60         # stores that go to one of BYTE_OFFSETS of a page rather than where the address fell
RECALL_PERCENT = 40         # loads of a byte some process stored earlier (in any process)
BYTE_OFFSETS = (0, 1, 7, 0x800, PAGE - 1)   # bytes of a page whose loss a one-byte copy or a zeroed tail shows
FORK_SCENARIO_WEIGHT = 6    # of STEPS: a fork scenario (``OsGen.fork_scenario``), drawn like any step
FILE_SCENARIO_WEIGHT = 5    # of STEPS: one file through its descriptor and its mappings (``OsGen.file_scenario``)
SEAL_SCENARIO_WEIGHT = 4    # of STEPS: a sealed range and the calls mseal forbids (``OsGen.seal_scenario``)
LOCK_SCENARIO_WEIGHT = 3    # of STEPS: an unprivileged process at its memlock limit (``OsGen.lock_scenario``)
PRESSURE_SCENARIO_WEIGHT = 7  # of STEPS: memory driven to exhaustion and back (``OsGen.pressure_scenario``)
FORK_PAGES = 3              # pages of the mapping a fork scenario makes
MAP_PAGES_LIMIT_PERCENT = 2  # map_pages steps that map until vm.max_map_count refuses (costly: ~65,000 VMAs)
APPEND_PERCENT = 30         # files opened with O_APPEND (open_file, shm_open; the file scenario's too)
VOCAB_SWARM_PERCENT = 35    # programs whose advice, flag, protection and whence vocabularies are each a random subset
EDGE_PERCENT = 5            # ranges that end exactly at TASK_SIZE or at 2^64, or whose length wraps when page-aligned
SEEK_CUR_PERCENT = 50       # writes and pwrites followed by lseek(fd, 0, SEEK_CUR): did the offset move as it should
GROW_SCENARIO_WEIGHT = 4    # of STEPS: a mapping grown, shrunk or moved by mremap beside a neighbour (``OsGen.grow_scenario``)
ADVICE_SCENARIO_WEIGHT = 4  # of STEPS: advice of the program's vocabulary over a mapping with bytes on it (``OsGen.advice_scenario``)
INHERIT_SCENARIO_WEIGHT = 4  # of STEPS: state set before a fork and met in the child (``OsGen.inherit_scenario``)
THP_SCENARIO_WEIGHT = 3     # of STEPS: a 2 MiB-aligned range faulted page by page and observed (``OsGen.thp_scenario``)
UNPRIV_SCENARIO_WEIGHT = 4  # of STEPS: a child that gave up its privileges meets what they bypassed (``OsGen.unpriv_scenario``)
NESTED_SCENARIO_WEIGHT = 3  # of STEPS: a fork from a forked child, met in the grandchild (``OsGen.nested_scenario``)
ARG_EDGE_PERCENT = 12       # scalar arguments with a documented range drawn at its edges: min-1, min, max, max+1 (``edge``)
EDGE_PROGRAM_PERCENT = 15   # programs that draw such arguments at their edges most of the time (EDGE_PROGRAM_ARG_PERCENT)
EDGE_PROGRAM_ARG_PERCENT = 70
PIPE_MMAP_PERCENT = 5       # mmaps of a pipe (no ->mmap: ENODEV; MAP_SHARED|PROT_WRITE on the read end: EACCES)
HPAGE = 1 << 21
MEMLOCK_DEFAULT = 8 << 20
TASK_SIZE = 0x7FFFFFFFF000  # x86-64 with 4-level paging; the target's ``task_size`` fact when it declares one
THP_BASE = SANDBOX_WINDOW[0] + (1 << 34)   # where the THP scenarios map (2 MiB-aligned, far from the other steps)

# what one step does, by weight ("file": make a descriptor of a file that can be mapped;
# "*-scenario": several calls in one step, see the methods of the same name)
STEPS = [(24, "mmap"), (8, "munmap"), (10, "mprotect"), (16, "load"), (16, "store"), (3, "fetch"),
         (4, "fork"), (2, "exit"), (4, "file"), (5, "mremap"), (10, "madvise"), (2, "msync"),
         (3, "mincore"), (3, "mlock"), (2, "munlock"), (2, "mlockall"), (1, "munlockall"),
         (2, "ftruncate"), (1, "close"), (2, "shm_unlink"), (2, "pfn_of"), (2, "minflt"), (1, "majflt"),
         (1, "thp_mapped"), (1, "get_node"), (2, "mbind"), (1, "drop_privileges"),
         (1, "set_memlock_limit"), (2, "set_fsize_limit"), (3, "map_pages"), (2, "memory_limit"), (2, "set_swappiness"), (2, "reclaim"),
         (1, "tick"), (1, "wss"), (1, "oom"), (1, "khugepaged"), (FORK_SCENARIO_WEIGHT, "fork-scenario"),
         (3, "pread"), (3, "pwrite"), (2, "read"), (2, "write"), (2, "lseek"), (3, "mseal"),
         (FILE_SCENARIO_WEIGHT, "file-scenario"), (SEAL_SCENARIO_WEIGHT, "seal-scenario"),
         (LOCK_SCENARIO_WEIGHT, "lock-scenario"), (PRESSURE_SCENARIO_WEIGHT, "pressure-scenario"),
         (GROW_SCENARIO_WEIGHT, "grow-scenario"), (THP_SCENARIO_WEIGHT, "thp-scenario"),
         (ADVICE_SCENARIO_WEIGHT, "advice-scenario"), (INHERIT_SCENARIO_WEIGHT, "inherit-scenario"),
         (UNPRIV_SCENARIO_WEIGHT, "unpriv-scenario"), (COMMIT_SCENARIO_WEIGHT, "commit-scenario"),
         (NESTED_SCENARIO_WEIGHT, "nested-scenario")]
# what a pressure scenario does between its stores, by weight
PRESSURE_OPS = [(70, "store"), (12, "load"), (10, "reclaim"), (8, "tick"), (8, "madvise"), (8, "mlock"), (6, "munmap"),
                (6, "oom"), (6, "mincore"), (6, "exit"), (6, "memory_limit")]
# what an unprivileged process does at its memlock limit, by weight
LOCK_OPS = [(30, "mlock"), (14, "mlock2"), (14, "munlock"), (10, "mlockall"), (8, "munlockall"), (10, "mmap"),
            (8, "mremap"), (6, "set_memlock_limit")]
# what the middle process of a nested fork scenario sets up before it forks, by weight (1 to 3 of them)
NESTED_SETUP = [(25, "drop"), (14, "memlock"), (10, "mlock"), (10, "dontfork"), (10, "wipeonfork"), (16, "write"),
                (15, "map")]
# what changes a mapping on one side of a fork scenario, by weight
FORK_CHANGES = [(40, "store"), (20, "mprotect"), (12, "madvise"), (8, "munmap"), (20, "load")]
# what a file scenario does to its file, by weight (each step names the calls it needs in FILE_NEEDS)
FILE_OPS = [(20, "store"), (20, "pwrite"), (14, "pread"), (14, "load"), (8, "write-read"), (6, "lseek"),
            (6, "msync"), (6, "ftruncate"), (4, "fork"), (4, "madvise"), (3, "close"), (5, "fsize")]
FILE_NEEDS = {"store": ("store",), "pwrite": ("pwrite",), "pread": ("pread",), "load": ("load",),
              "write-read": ("lseek", "write", "read"), "lseek": ("lseek",), "msync": ("msync",),
              "ftruncate": ("ftruncate",), "fork": ("fork",), "madvise": ("madvise",), "close": ("close",),
              "fsize": ("set_fsize_limit", "pwrite", "pread")}
# map_pages' count: a few pages mostly (each its own VMA, holes between), none, one past MAP_PAGES_MAX
MAP_PAGES_COUNTS = [(30, 1), (30, 2), (20, 3), (12, 5), (4, 0), (6, MAP_PAGES_MAX + 1)]
# what meets the pages map_pages made (and the holes between them), by weight
MAP_PAGES_OPS = [(20, "munmap"), (20, "mprotect"), (12, "madvise"), (10, "mlock"), (12, "mremap"), (14, "mmap-fixed"),
                 (12, "map_pages")]
# RLIMIT_FSIZE soft limits set_fsize_limit draws as a step of its own (-1: RLIM_INFINITY)
FSIZE_LIMITS = [0, 1, PAGE - 1, PAGE, 0x1800, 4 * PAGE, 1 << 40, -1]
# what meets a sealed range, by weight: the calls mseal forbids, and some it allows
SEAL_OPS = [(14, "munmap"), (14, "mprotect"), (14, "mremap"), (10, "mmap-fixed"), (16, "madvise"), (4, "mseal"),
            (10, "store"), (6, "fork"), (4, "mlock")]

PROTS = [("PROT_READ", "PROT_WRITE"), ("PROT_READ",), ("PROT_NONE",), ("PROT_WRITE",), ("PROT_EXEC",),
          ("PROT_READ", "PROT_EXEC"), ("PROT_READ", "PROT_WRITE", "PROT_EXEC")]
# mapping types (model/os/mappings.py expect_mmap: MAP_TYPE; MAP_DROPPABLE since 6.11, anonymous only)
MAP_TYPES = [(60, ("MAP_PRIVATE",)), (30, ("MAP_SHARED",)), (4, ()), (3, ("MAP_SHARED_VALIDATE",)),
             (3, ("MAP_32BIT", "MAP_PRIVATE")), (4, ("MAP_DROPPABLE",)), (1, ("MAP_DROPPABLE", "MAP_LOCKED"))]
# the other flags the model has a rule for: placement, population, locking, flags LEGACY_MAP_MASK
# lets through or MAP_SHARED_VALIDATE refuses (MAP_SYNC, MAP_FIXED_NOREPLACE, MAP_HUGE_64KB), flags
# ignored (MAP_HUGE_* without MAP_HUGETLB, MAP_STACK, MAP_DENYWRITE, ...).  MAP_HUGETLB and
# MAP_GROWSDOWN are left out: the model judges them unknown (docs/os-audit.md, mmap rows 3, 26, 28).
MAP_EXTRA = [(62, ()), (12, ("MAP_FIXED",)), (8, ("MAP_FIXED_NOREPLACE",)), (4, ("MAP_POPULATE",)),
             (3, ("MAP_NORESERVE",)), (3, ("MAP_LOCKED",)), (2, ("MAP_POPULATE", "MAP_NONBLOCK")), (1, ("MAP_NONBLOCK",)),
             (2, ("MAP_ABOVE4G",)), (1, ("MAP_ABOVE4G", "MAP_32BIT")), (1, ("MAP_STACK",)), (1, ("MAP_SYNC",)),
             (1, ("MAP_UNINITIALIZED",)), (1, ("MAP_DENYWRITE", "MAP_EXECUTABLE")), (1, ("MAP_FILE",)),
             (1, ("MAP_HUGE_2MB",)), (1, ("MAP_HUGE_1GB",)), (1, ("MAP_HUGE_64KB",))]

MREMAP_FLAGS = [(40, ()), (40, ("MREMAP_MAYMOVE",)), (8, ("MREMAP_MAYMOVE", "MREMAP_FIXED")),
                (6, ("MREMAP_MAYMOVE", "MREMAP_DONTUNMAP")), (6, ("MREMAP_FIXED",)), (4, ("MREMAP_DONTUNMAP",)),
                (2, ("MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP")), (2, ("MREMAP_FIXED", "MREMAP_DONTUNMAP"))]
MREMAP_UNKNOWN = 8          # a bit mremap does not know: EINVAL
# every advice of the uapi the model has a rule for (model/os/advice.py), the common ones more
# often; MADV_HWPOISON and MADV_SOFT_OFFLINE only over length 0 (``OsGen.madvise_args``: with
# CAP_SYS_ADMIN the kernel would take the frames out of the machine, and the linux target refuses)
ADVICE = ["MADV_DONTNEED", "MADV_DONTNEED", "MADV_FREE", "MADV_REMOVE", "MADV_WILLNEED", "MADV_DONTFORK",
          "MADV_DOFORK", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_NORMAL", "MADV_FREE", "MADV_RANDOM",
          "MADV_SEQUENTIAL", "MADV_MERGEABLE", "MADV_UNMERGEABLE", "MADV_DONTDUMP", "MADV_DODUMP",
          "MADV_WIPEONFORK", "MADV_KEEPONFORK", "MADV_COLD", "MADV_PAGEOUT", "MADV_POPULATE_READ",
          "MADV_POPULATE_WRITE", "MADV_DONTNEED_LOCKED", "MADV_COLLAPSE", "MADV_GUARD_INSTALL",
          "MADV_GUARD_REMOVE", "MADV_GUARD_INSTALL", "MADV_WIPEONFORK", "MADV_PAGEOUT"]
INJECT_ADVICE = ("MADV_HWPOISON", "MADV_SOFT_OFFLINE")
# the advice a sealed range refuses (model/os/sealing.py DISCARD) and some it allows
DISCARD_ADVICE = ["MADV_DONTNEED", "MADV_FREE", "MADV_DONTNEED_LOCKED", "MADV_REMOVE", "MADV_DONTFORK",
                  "MADV_WIPEONFORK", "MADV_GUARD_INSTALL", "MADV_COLD", "MADV_WILLNEED", "MADV_PAGEOUT"]
MS_FLAGS = [Flags(("MS_SYNC",)), Flags(("MS_ASYNC",)), Flags(("MS_INVALIDATE",)), Flags(("MS_SYNC", "MS_ASYNC")),
            Flags(("MS_SYNC", "MS_INVALIDATE")), Flags(("MS_ASYNC", "MS_INVALIDATE")), Int(0), Int(8)]
MCL_FLAGS = [Flags(("MCL_FUTURE",)), Flags(("MCL_FUTURE", "MCL_ONFAULT")), Flags(("MCL_ONFAULT",)), Int(0),
             Flags(("MCL_CURRENT",)), Flags(("MCL_CURRENT", "MCL_ONFAULT")), Flags(("MCL_CURRENT", "MCL_FUTURE")),
             Flags(("MCL_CURRENT", "MCL_FUTURE", "MCL_ONFAULT")), Int(8)]
MLOCK_FLAGS = [Int(0), Flags(("MLOCK_ONFAULT",)), Int(2)]
# shm names at NAME_MAX and one past it, and at glibc's buffer of 260 (model/os/files.py _shm_name:
# 259 bytes is ENAMETOOLONG from the kernel, 260 EINVAL from glibc)
SHM_LONG_NAMES = ["/" + "n" * 255, "/" + "n" * 256, "/" + "n" * 250, "/" + "n" * 259, "/" + "n" * 260,
                  "/" + "n" * 261]
# shm modes: owner only, world-readable, read-only, world-writable (an unprivileged process may then
# page it out: mm/madvise.c can_do_file_pageout), and others' bits with execute and without write or
# the reverse (rwx, r-x, --x, -w-, -wx), so a permission check that reads the wrong bit shows
SHM_MODES = [0o600, 0o644, 0o400, 0o666, 0o777, 0o755, 0o711, 0o622, 0o733, 0o700]
# memfd_create's flags: none, MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL, MFD_EXEC, both of those
# (EINVAL), with CLOEXEC, every known bit but HUGETLB, the first unknown bit (EINVAL).  Not
# MFD_HUGETLB (4): Linux 6.18 creates the file where the model answers EINVAL (reported)
MEMFD_FLAGS = [0, 0, 1, 2, 3, 0x8, 0x10, 0x18, 0x11, 0x9, 0x1B, 0x20, 0x100]
# lseek's whence: every value the model knows (include/uapi/linux/fs.h) and one past SEEK_MAX
WHENCE = [Flags(("SEEK_SET",)), Flags(("SEEK_CUR",)), Flags(("SEEK_END",)), Flags(("SEEK_DATA",)),
          Flags(("SEEK_HOLE",)), Int(5)]


def prot(r: Chooser) -> Flags:
    """A protection the clauses name (``PROTS``)."""
    return Flags(r.choice(PROTS))


def advice(r: Chooser) -> str:
    return r.choice(ADVICE)


def _hex(v: int) -> Int:
    return Int(v, hex=abs(v) >= 4096)


def _ref(name: str, off: int) -> Ref:
    return Ref(name, off) if off else Ref(name)


def pattern(at: Int | Ref, salt: int = 0) -> int:
    """The byte a store writes at ``at``: derived from the address as the program spells it (the
    mapping's name and offset, or the number) and from ``salt`` (which side of a fork writes it), never
    zero and different for neighbouring bytes and pages, so a copy that lost or zeroed other bytes
    of a page, or took them from the wrong page or process, reads back differently."""
    if isinstance(at, Ref):
        key = sum(ord(ch) * 31 ** i for i, ch in enumerate(at.name)) * 0x3B + at.offset
    else:
        key = at.value
    return (key * 7 + (key >> 12) * 0x1D + salt * 0x55) % 255 + 1


class OsGen:
    def __init__(self, r: Chooser, calls: frozenset[str] | None, facts: dict[str, Any] | None = None):
        self.r = r
        self.allowed = calls
        self.task_size = int((facts or {}).get("task_size") or TASK_SIZE)
        # RLIMIT_MEMLOCK's soft limit a process starts with (the target's ``memlock_soft`` fact; Linux's
        # default 8 MiB, include/uapi/linux/resource.h MLOCK_LIMIT); negative: RLIM_INFINITY
        declared = (facts or {}).get("memlock_soft")
        self.memlock = MEMLOCK_DEFAULT if declared is None else int(declared)
        self.facts = dict(facts or {})
        # whether any process may fork (a grandchild), not only main: yes unless the target's
        # ``nested_fork`` fact says no (the protocol's fork copies the calling process, whichever it is)
        self.nested = bool(self.facts.get("nested_fork", True))
        self.n_thp = 0
        self.calls: list[Call] = []
        # (name, pages, placed in the window) of mmaps; around a mapping the kernel placed
        # outside the window lives the runtime's own memory, so stay inside those
        self.bases: list[tuple[str, int, bool]] = []
        self.procs: list[str] = []
        self.n_names = 0
        self.n_procs = 1
        self.fds: list[str] = []            # named descriptors of files that can be mapped
        self.fd_procs: dict[str, set] = {}  # descriptor -> processes that have it (None: main)
        self.dropped: set[str] = set()      # processes that gave up their privileges
        self.written: list[Int | Ref] = []  # bytes some process stored (loads come back to them)
        self.base_procs: dict[str, set] = {}   # mapping -> processes that map it (None: main)
        self.base_file: dict[str, tuple[str, int]] = {}   # mapping of a file -> (descriptor, first page of the file)
        self.pipes: list[str] = []          # read ends of pipes (no file offset, no page cache)
        self.n_scenarios = 0
        steps = [(w, n) for w, n in STEPS if self.ok(n) or (n == "file" and self.ok("memfd_create"))
                 or (n == "fork-scenario" and self.ok("fork"))
                 or (n == "file-scenario" and all(self.ok(c) for c in ("mmap", "ftruncate", "load", "store")))
                 or (n == "seal-scenario" and all(self.ok(c) for c in ("mmap", "mseal")))
                 or (n == "pressure-scenario" and all(self.ok(c) for c in ("memory_limit", "mmap", "store", "load")))
                 or (n == "lock-scenario" and all(self.ok(c) for c in ("fork", "mmap", "mlock", "drop_privileges",
                                                                       "set_memlock_limit", "mincore")))
                 or (n == "inherit-scenario" and all(self.ok(c) for c in ("mmap", "fork", "load", "store", "madvise")))
                 or (n == "advice-scenario" and all(self.ok(c) for c in ("mmap", "madvise", "load", "store")))
                 or (n == "grow-scenario" and all(self.ok(c) for c in ("mmap", "mremap", "load", "store")))
                 or (n == "thp-scenario" and all(self.ok(c) for c in ("mmap", "madvise", "load", "store",
                                                                      "thp_mapped")))
                 or (n == "unpriv-scenario" and all(self.ok(c) for c in ("fork", "drop_privileges", "mmap")))
                 or (n == "nested-scenario" and all(self.ok(c) for c in ("mmap", "fork", "exit", "load", "store")))
                 or (n == "commit-scenario" and COMMIT_SCENARIO_WEIGHT > 0 and all(self.ok(c) for c in COMMIT_NEEDS)
                     and commit_limit(self.facts) is not None)]
        steps = [(w, n) for w, n in steps if n != "nested-scenario" or self.nested]
        self.steps = swarm(r, steps, SWARM_PERCENT, keep=lambda step: step[1] in ("mmap", "fork"))
        # Swarm over the values too, not only over the calls: one advice among 30, one flag among 18 is
        # drawn about once in 200 programs, and rarely where it matters (MADV_COLLAPSE over a mapped
        # range); a program that draws from a few values uses each of them again and again.
        v = VOCAB_SWARM_PERCENT
        self.advice = swarm(r, ADVICE, v)
        self.prots = swarm(r, PROTS, v, keep=lambda p: p == ("PROT_READ", "PROT_WRITE"))
        self.map_extra = swarm(r, MAP_EXTRA, v, keep=lambda e: e[1] == ())
        self.mremap_flags = swarm(r, MREMAP_FLAGS, v)
        self.ms_flags = swarm(r, MS_FLAGS, v)
        self.mcl_flags = swarm(r, MCL_FLAGS, v)
        self.whence = swarm(r, WHENCE, v)
        # edges as a swarm too: in some programs nearly every ranged argument sits at an edge of its range
        self.arg_edge = EDGE_PROGRAM_ARG_PERCENT if r.chance(EDGE_PROGRAM_PERCENT) else ARG_EDGE_PERCENT

    def ok(self, name: str) -> bool:
        return self.allowed is None or name in self.allowed

    def window_addr(self) -> int:
        return SANDBOX_WINDOW[0] + PAGE * self.r.integer(0, 63)

    def name(self) -> str:
        self.n_names += 1
        return "abcdefghijklmnopqrstuvwxyz"[(self.n_names - 1) % 26] + ("" if self.n_names <= 26 else str(self.n_names))

    def addr_arg(self) -> Int | Ref:
        return self.addr_and_room()[0]

    def addr_and_room(self) -> tuple[Int | Ref, int | None]:
        """An address, and how many pages from it stay inside memory the program may touch."""
        r = self.r
        if self.bases and r.chance(80):
            base, pages, in_window = r.choice(self.bases)
            page = r.integer(-1, pages) if in_window else r.integer(0, pages - 1)
            off = page * PAGE
            if r.chance(15):
                off += r.choice([1, 7, 2048, PAGE - 1])
            return (Ref(base, off) if off else Ref(base)), (None if in_window else pages - page)
        return _hex(self.window_addr() + (r.choice([0, 1, 100]) if r.chance(10) else 0)), None

    def range_arg(self) -> tuple[Int | Ref, Int, int | None]:
        """An address, a length, and the room (as ``addr_and_room``); EDGE_PERCENT of the time a range at
        an exact limit (``edge_range``), never read back (room 0)."""
        if self.r.chance(EDGE_PERCENT):
            addr, length = self.edge_range()
            return addr, length, 0
        addr, room = self.addr_and_room()
        return addr, self.length(room), room

    def edge_range(self) -> tuple[Int, Int]:
        """A range at an exact limit of the address space: ending exactly at TASK_SIZE (or one byte or
        page past it), starting at it, ending exactly at 2^64 (the end wraps to 0), or a window address
        with a length whose page alignment wraps to 0 or whose end passes 2^64.  Nothing of the
        program's or the runtime's lives there (the linux targets refuse a range over memory the
        program did not map), so a bound checked with < for <= shows as a call that should fail
        and did not, or the reverse."""
        r = self.r
        top = self.task_size
        n = r.choice([1, 1, 2, 3])
        kind = r.weighted([(35, "task-end"), (10, "task-past"), (15, "task-start"), (20, "u64-end"), (20, "wrap")])
        if kind == "task-end":
            return _hex(top - n * PAGE), _hex(n * PAGE - r.choice([0, 0, 1, PAGE - 1]))
        if kind == "task-past":
            return _hex(top - n * PAGE), _hex(n * PAGE + r.choice([1, PAGE]))
        if kind == "task-start":
            return _hex(top + r.choice([0, 0, PAGE])), _hex(n * PAGE)
        if kind == "u64-end":
            return _hex((1 << 64) - n * PAGE), _hex(n * PAGE - r.choice([0, 0, 1]))
        return _hex(self.window_addr()), _hex(r.choice([(1 << 64) - 1, (1 << 64) - PAGE + 1, (1 << 64) - PAGE,
                                                         (1 << 64) - SANDBOX_WINDOW[0]]))

    def edge(self, lo: int, hi: int) -> int:
        """One edge of an argument's documented range [lo, hi]: lo - 1, lo, hi or hi + 1 (a bound checked
        with < for <=, or off by one, shows at one of the four)."""
        return self.r.choice([lo - 1, lo, hi, hi + 1])

    def edgy(self) -> bool:
        """Whether this ranged argument is drawn at an edge of its range (``edge``): ARG_EDGE_PERCENT of
        the time, EDGE_PROGRAM_ARG_PERCENT in EDGE_PROGRAM_PERCENT of the programs."""
        return self.r.chance(self.arg_edge)

    def shm_oflag(self) -> tuple[str, ...]:
        """shm_open's flags: create (exclusively), open for reading or writing, O_TRUNC on an open for
        writing, O_APPEND (APPEND_PERCENT).  Not O_RDONLY|O_TRUNC: Linux 6.18 truncates there (fs/namei.c
        build_open_flags asks for MAY_WRITE and do_open truncates) where the model keeps the size
        (reported, left out until the model says which)."""
        r = self.r
        oflag = r.choice([("O_CREAT", "O_RDWR"), ("O_CREAT", "O_EXCL", "O_RDWR"), ("O_RDWR",), ("O_RDONLY",),
                          ("O_CREAT", "O_RDONLY"), ("O_RDWR", "O_TRUNC"), ("O_CREAT", "O_RDWR", "O_TRUNC"),
                          ("O_WRONLY",), ("O_WRONLY", "O_TRUNC")])
        if r.chance(APPEND_PERCENT):
            oflag += ("O_APPEND",)
        return oflag

    def length(self, room: int | None = None) -> Int:
        r = self.r
        if room is not None:
            return _hex(PAGE * r.integer(1, max(room, 1)) - (r.choice([0, 0, 0, 1, 100])))
        kind = r.weighted([(80, "pages"), (6, "zero"), (8, "odd"), (3, "huge"), (3, "big")])
        if kind == "pages":
            return _hex(PAGE * r.integer(1, 8))
        if kind == "zero":
            return Int(0)
        if kind == "odd":
            return _hex(PAGE * r.integer(0, 4) + r.choice([1, 100, PAGE - 1]))
        if kind == "huge":
            # (2^64 - 1 and 2^64 - PAGE + 1 wrap to 0 when page-aligned.  Not TASK_SIZE itself: an mmap of
            # that length finds no room, which Linux answers ENOMEM before it looks at the map type and
            # the model after it -- mm/mmap.c do_mmap, __get_unmapped_area before the MAP_TYPE switch --
            # reported, left out until the model says which)
            return _hex(r.choice([1 << 47, (1 << 64) - PAGE, 1 << 63, (1 << 64) - 1, (1 << 64) - PAGE + 1,
                                  self.task_size + PAGE]))
        return _hex(r.choice([1 << 21, 1 << 22]))

    def proc_prefix(self) -> str | None:
        if self.procs and self.r.chance(25):
            return self.r.choice(self.procs)
        return None

    def step(self) -> None:
        r = self.r
        what = r.weighted(self.steps)
        proc = self.proc_prefix()
        if self.more(what, proc):
            return
        if what == "fork-scenario":
            self.fork_scenario()
            return
        if what == "file-scenario":
            self.file_scenario()
            return
        if what == "seal-scenario":
            self.seal_scenario()
            return
        if what == "lock-scenario":
            self.lock_scenario()
            return
        if what == "pressure-scenario":
            self.pressure_scenario()
            return
        if what == "grow-scenario":
            self.grow_scenario()
            return
        if what == "advice-scenario":
            self.advice_scenario()
            return
        if what == "inherit-scenario":
            self.inherit_scenario()
            return
        if what == "thp-scenario":
            self.thp_scenario()
            return
        if what == "unpriv-scenario":
            self.unpriv_scenario()
            return
        if what == "nested-scenario":
            self.nested_scenario()
            return
        if what == "commit-scenario":
            commit_scenario(self, self.facts)
            return
        if what == "mmap":
            hint = r.weighted([(20, "null"), (55, "window"), (15, "near"), (10, "odd"), (3, "edge")])
            if hint == "null":
                addr: Int | Ref | Flags = Flags(("NULL",))
            elif hint == "window":
                addr = _hex(self.window_addr())
            elif hint == "near":
                addr, room = self.addr_and_room()
                if room is not None:
                    addr = _hex(self.window_addr())
            elif hint == "odd":
                addr = _hex(self.window_addr() + r.choice([1, 100, 2048]))
            length = self.length()
            if hint == "edge":
                # a mapping ending exactly at TASK_SIZE, or one page past it (ENOMEM with MAP_FIXED; a hint
                # that does not fit is not honoured)
                n = r.integer(1, 3)
                addr, length = _hex(self.task_size - n * PAGE), _hex(n * PAGE + r.choice([0, 0, 0, PAGE]))
            prot = Flags(r.choice(self.prots))
            mtype = r.weighted(MAP_TYPES)
            extra = r.weighted(self.map_extra)
            if extra and hint == "null" or ("MAP_ABOVE4G" in extra and isinstance(addr, Ref)):
                # (a hint below 4 GiB with MAP_ABOVE4G -- an earlier result that failed, -1 + k -- is
                # not drawn: the model's placement and linux.mmap.above4g disagree there, reported)
                addr = _hex(self.window_addr())
            fd: Int | Ref = Int(-1)
            mine = self.fds_of(proc)
            pipes = [f for f in self.pipes if proc in self.fd_procs.get(f, ())]
            if pipes and r.chance(PIPE_MMAP_PERCENT):
                # a pipe has no ->mmap (ENODEV), unless a check before it refuses first (mm/mmap.c do_mmap)
                mine = pipes
            if mine and r.chance(35):
                fd = Ref(r.choice(mine))
                flags = Flags((mtype or ("MAP_SHARED",)) + extra)
                offset = Int(0) if r.chance(80) else _hex(r.choice([PAGE, 2 * PAGE, 1, (1 << 63) - PAGE]))
            else:
                flags = Flags(mtype + extra + ("MAP_ANONYMOUS",)) if not r.chance(3) else Flags(mtype or ("MAP_PRIVATE",))
                offset = Int(0) if r.chance(92) else _hex(r.choice([1, PAGE, 100]))
            res = self.name()
            self.calls.append(Call("mmap", (addr, length, prot, flags, fd, offset), res, proc))
            pages = max(1, min(16, (length.value + PAGE - 1) // PAGE)) if length.value < (1 << 30) else 1
            self.bases.append((res, pages, not (hint == "null" and not extra) and "MAP_32BIT" not in mtype + extra
                               and hint != "edge"))
            self.base_procs[res] = {proc}
            if isinstance(fd, Ref) and isinstance(offset, Int) and offset.value in (0, PAGE, 2 * PAGE):
                self.base_file[res] = (fd.name, offset.value // PAGE)
        elif what == "munmap":
            addr, length, room = self.range_arg()
            self.calls.append(Call("munmap", (addr, length), None, proc))
            self.read_back(addr, length, room, proc)
        elif what == "mprotect":
            prot = Flags(r.choice(self.prots)) if r.chance(93) else r.choice(
                [Flags(("PROT_GROWSDOWN", "PROT_READ")), Flags(("PROT_GROWSDOWN", "PROT_GROWSUP")), _hex(0x10), Flags(("PROT_SEM", "PROT_READ"))])
            addr, length, room = self.range_arg()
            self.calls.append(Call("mprotect", (addr, length, prot), None, proc))
            self.read_back(addr, length, room, proc)
        elif what == "load":
            at = r.choice(self.written) if self.written and r.chance(RECALL_PERCENT) else self.addr_arg()
            self.calls.append(Call("load", (at,), None, proc))
        elif what == "store":
            addr, room = self.addr_and_room()
            at = self.spread(addr)
            self.store(at, proc)
            if self.procs:
                # a write after a fork: the page and its neighbours, in every process that maps them
                self.read_back(at, Int(1), room, proc)
        elif what == "fetch":
            self.calls.append(Call("fetch", (self.addr_arg(),), None, proc))
        elif what == "fork":
            if len(self.procs) < 2:
                self.n_procs += 1
                name = f"p{self.n_procs}"
                self.calls.append(Call("fork", (), name, None))
                self.forked(name)
        elif what == "exit":
            if self.procs:
                p = r.choice(self.procs)
                self.procs.remove(p)
                self.calls.append(Call("exit", (), None, p))


    def spread(self, at: Int | Ref) -> Int | Ref:
        """``at``, or (SPREAD_PERCENT) one of ``BYTE_OFFSETS`` in its page: stores land on more than the
        first byte of a page."""
        if not self.r.chance(SPREAD_PERCENT):
            return at
        off = self.r.choice(BYTE_OFFSETS)
        if isinstance(at, Ref):
            o = (at.offset & ~(PAGE - 1)) + off
            return Ref(at.name, o) if o else Ref(at.name)
        return _hex((at.value & ~(PAGE - 1)) + off)

    def store(self, at: Int | Ref, proc: str | None, salt: int = 0) -> None:
        """A store of the address-derived ``pattern`` (not a byte a later load could expect by chance)."""
        self.calls.append(Call("store", (at, _hex(pattern(at, salt))), None, proc))
        if at not in self.written:
            self.written.append(at)

    def fork_scenario(self) -> None:
        """Fork-centred: a writable mapping (private or shared) with distinct bytes on its pages, a fork,
        then changes of protection and contents on both sides (stores, mprotect, madvise, munmap of one
        page), then loads of every byte stored, on the other side first.  7 to 20 calls."""
        r = self.r
        if len(self.procs) >= 2 or not all(self.ok(c) for c in ("mmap", "fork", "load", "store")):
            return
        c = self.calls.append
        base = self.name()
        shared = r.chance(30)
        flags = ("MAP_SHARED" if shared else "MAP_PRIVATE", "MAP_ANONYMOUS")
        c(Call("mmap", (Flags(("NULL",)), _hex(FORK_PAGES * PAGE), Flags(("PROT_READ", "PROT_WRITE")), Flags(flags),
                        Int(-1), Int(0)), base, None))
        self.bases.append((base, FORK_PAGES, False))
        self.base_procs[base] = {None}
        spots = []
        for page in range(FORK_PAGES):
            for off in (r.choice(BYTE_OFFSETS), r.choice(BYTE_OFFSETS)):
                at = Ref(base, page * PAGE + off) if page * PAGE + off else Ref(base)
                if at not in spots:
                    spots.append(at)
        for at in spots:
            if r.chance(75):
                self.store(at, None)
        self.n_procs += 1
        child = f"p{self.n_procs}"
        c(Call("fork", (), child, None))
        self.forked(child)
        sides: list[str | None] = [None, child]
        for _ in range(r.integer(2, 5)):
            side = r.choice(sides)
            page = r.integer(0, FORK_PAGES - 1)
            what = r.weighted([(w, n) for w, n in FORK_CHANGES if self.ok(n)])
            at = r.choice(spots)
            if what == "store":
                self.store(at, side, salt=sides.index(side) + 1)
            elif what == "load":
                c(Call("load", (at,), None, side))
            elif what == "mprotect":
                prot = r.choice(PROTS[:3])
                c(Call("mprotect", (Ref(base, page * PAGE) if page else Ref(base), _hex(PAGE * r.integer(1, FORK_PAGES - page)),
                                    Flags(prot)), None, side))
                mine = [a for a in spots if a.offset // PAGE == page]
                if "PROT_WRITE" in prot and mine and r.chance(50):
                    # a write through the new protection: the copy must still break
                    self.store(r.choice(mine), side, salt=sides.index(side) + 1)
            elif what == "madvise":
                c(Call("madvise", (Ref(base, page * PAGE) if page else Ref(base), _hex(PAGE),
                                   Flags((r.choice(["MADV_DONTNEED", "MADV_FREE", "MADV_DONTFORK"]),))), None, side))
            else:
                c(Call("munmap", (Ref(base, page * PAGE) if page else Ref(base), _hex(PAGE)), None, side))
        first = r.choice(sides)
        for side in (first, sides[1 - sides.index(first)]):
            for at in spots:
                c(Call("load", (at,), None, side))

    def scenario_addr(self) -> Int:
        """A window address of its own for a scenario's mapping (past where the single steps map),
        so that the hint is honoured and the pages beside the mapping are free."""
        self.n_scenarios += 1
        return _hex(SANDBOX_WINDOW[0] + PAGE * (4096 + 16 * self.n_scenarios))

    def map_in_window(self, pages: int, prot: tuple[str, ...], flags: tuple[str, ...], fd: Int | Ref,
                      proc: str | None = None) -> str:
        base = self.name()
        self.calls.append(Call("mmap", (self.scenario_addr(), _hex(pages * PAGE), Flags(prot), Flags(flags), fd, Int(0)),
                               base, proc))
        self.bases.append((base, pages, True))
        self.base_procs[base] = {proc}
        if isinstance(fd, Ref):
            self.base_file[base] = (fd.name, 0)
        return base

    def file_scenario(self) -> None:
        """One file through both of its paths: made (memfd_create, shm_open or open_file), sized with
        ftruncate, mapped shared (or private; sometimes a page past its end) in the window, then 3 to 8
        of FILE_OPS -- stores through the mapping and pwrite/write through the descriptor (distinct
        bytes per page and byte), pread and loads of what the other path wrote, lseek with every
        whence, msync, ftruncate smaller or larger (read back at once), a fork (then both sides act),
        madvise -- and at the end every byte written is read back through the descriptor and through
        the mapping in every process that maps it."""
        r = self.r
        c = self.calls.append
        makers = [k for k in ("memfd_create", "shm_open", "open_file") if self.ok(k)]
        if not makers:
            return
        kind = r.choice(makers)
        fd = self.name()
        pages = r.integer(1, 4)
        append = ("O_APPEND",) if kind != "memfd_create" and r.chance(APPEND_PERCENT) else ()
        if kind == "memfd_create":
            c(Call("memfd_create", (Str("s"), Int(0)), fd, None))
        elif kind == "shm_open":
            c(Call("shm_open", (Str(r.choice(["/s0", "/s1"])), Flags(("O_CREAT", "O_RDWR") + append), _hex(0x180)),
                   fd, None))
        else:
            c(Call("open_file", (_hex(pages * PAGE if r.chance(50) else 0), Flags(("O_RDWR",) + append)), fd, None))
        self.fd_procs[fd] = {None}
        self.fds.append(fd)
        c(Call("ftruncate", (Ref(fd), _hex(pages * PAGE)), None, None))
        size = pages * PAGE     # the file's length as the scenario last set it
        span = pages + (1 if r.chance(25) else 0)
        base = self.map_in_window(span, ("PROT_READ", "PROT_WRITE"), ("MAP_SHARED" if r.chance(80) else "MAP_PRIVATE",),
                                  Ref(fd))
        sides: list[str | None] = [None]
        spots: list[int] = []

        def at(off: int) -> Ref:
            return Ref(base, off) if off else Ref(base)

        ops = [(w, n) for w, n in FILE_OPS if all(self.ok(x) for x in FILE_NEEDS[n])]
        for _ in range(r.integer(3, 8)):
            what = r.weighted(ops)
            side = r.choice(sides)
            salt = sides.index(side)
            off = PAGE * r.integer(0, span - 1) + r.choice(BYTE_OFFSETS)
            if what in ("pread", "load") and spots and r.chance(75):
                off = r.choice(spots)
            if what == "store":
                self.store(at(off), side, salt)
                spots.append(off)
            elif what == "pwrite":
                c(Call("pwrite", (Ref(fd), _hex(off), self.fd_value(Ref(fd), off, salt), Int(1)), self.name(), side))
                spots.append(off)
            elif what == "pread":
                c(Call("pread", (Ref(fd), _hex(off)), self.name(), side))
            elif what == "load":
                c(Call("load", (at(off),), None, side))
            elif what == "write-read":
                c(Call("lseek", (Ref(fd), _hex(off), Flags(("SEEK_SET",))), self.name(), side))
                c(Call("write", (Ref(fd), self.fd_value(Ref(fd), off, salt + 3), Int(1)), self.name(), side))
                c(Call("lseek", (Ref(fd), Int(-1), Flags(("SEEK_CUR",))), self.name(), side))
                c(Call("read", (Ref(fd),), self.name(), side))
                spots.append(off)
            elif what == "lseek":
                c(Call("lseek", (Ref(fd), _hex(off) if r.chance(80) else Int(-1), r.choice(self.whence)), self.name(), side))
            elif what == "msync":
                c(Call("msync", (Ref(base), _hex(span * PAGE), r.choice(MS_FLAGS[:3])), None, side))
            elif what == "ftruncate":
                size = PAGE * r.integer(0, span) + r.choice([0, 0, 100])
                c(Call("ftruncate", (Ref(fd), _hex(size)), None, side))
                self.read_back(Ref(base), _hex(span * PAGE), None, side, always=True)
            elif what == "fsize":
                # RLIMIT_FSIZE at or near where the file ends: a pwrite across it is cut short at the
                # limit, one at it is EFBIG (with O_APPEND both go to the end of the file instead)
                lim = PAGE * r.integer(0, span) + r.choice([0, 1, 2048, PAGE - 1])
                c(Call("set_fsize_limit", (_hex(lim),), None, side))
                if self.ok("ftruncate") and r.chance(40):
                    # a length that does not grow the file is never refused, past the limit or not
                    c(Call("ftruncate", (Ref(fd), _hex(size)), None, side))
                c(Call("pwrite", (Ref(fd), _hex(max(lim - 1, 0)), self.fd_value(Ref(fd), lim, salt + 5), Int(3)),
                       self.name(), side))
                c(Call("pwrite", (Ref(fd), _hex(lim), self.fd_value(Ref(fd), lim, salt + 6), Int(1)), self.name(), side))
                for o in (max(lim - 1, 0), lim):
                    c(Call("pread", (Ref(fd), _hex(o)), self.name(), side))
                    if o < span * PAGE:
                        c(Call("load", (at(o),), None, side))
            elif what == "close":
                # one side lets go of the descriptor: the file stays open in the other and mapped in both
                c(Call("close", (Ref(fd),), None, side))
                self.fd_procs[fd].discard(side)
            elif what == "fork":
                if len(sides) == 1 and len(self.procs) < 2:
                    self.n_procs += 1
                    child = f"p{self.n_procs}"
                    c(Call("fork", (), child, None))
                    self.forked(child)
                    sides.append(child)
            else:
                c(Call("madvise", (at(off & ~(PAGE - 1)), _hex(PAGE),
                                   Flags((r.choice(["MADV_DONTNEED", "MADV_REMOVE", "MADV_PAGEOUT", "MADV_COLD",
                                                    "MADV_WILLNEED", "MADV_POPULATE_WRITE"]),))), None, side))
        for off in list(dict.fromkeys(spots))[:6]:
            if self.ok("pread"):
                c(Call("pread", (Ref(fd), _hex(off)), self.name(), r.choice(sides)))
            for side in sides:
                c(Call("load", (at(off),), None, side))

    def seal_scenario(self) -> None:
        """A mapping in the window (private, read-only, shared or of a file), bytes stored on its pages,
        mseal of part of it, all of it, a range with a hole beside it or with bad arguments, then 2 to
        5 of SEAL_OPS on ranges that touch the sealed pages: munmap, mprotect, mremap of it and onto
        it, mmap MAP_FIXED over it, madvise (the discarding advice too), mseal again, stores, a fork
        (the child keeps the seal and tries), mlock -- and every page of it and beside it read back in
        every process that maps it."""
        r = self.r
        c = self.calls.append
        pages = r.integer(2, 4)
        kind = r.weighted([(55, "private"), (20, "readonly"), (12, "shared"), (13, "file")])
        files = self.fds_of(None)
        prot = ("PROT_READ",) if kind == "readonly" else ("PROT_READ", "PROT_WRITE")
        if kind == "file" and files:
            fd: Int | Ref = Ref(r.choice(files))
            flags: tuple[str, ...] = ("MAP_SHARED",)
        else:
            fd = Int(-1)
            flags = ("MAP_SHARED" if kind == "shared" else "MAP_PRIVATE", "MAP_ANONYMOUS")
        base = self.map_in_window(pages, prot, flags, fd)

        def at(page: int, off: int = 0) -> Ref:
            return Ref(base, page * PAGE + off) if page * PAGE + off else Ref(base)

        if "PROT_WRITE" in prot and self.ok("store"):
            for page in range(pages):
                if r.chance(70):
                    self.store(at(page, r.choice(BYTE_OFFSETS)), None)
        how = r.weighted([(55, "part"), (20, "all"), (8, "hole"), (5, "flags"), (4, "unaligned"), (4, "zero"),
                          (4, "before")])
        first = r.integer(0, pages - 1) if how in ("part", "hole") else 0
        n = {"part": r.integer(1, pages - first), "hole": pages - first + 1, "zero": 0}.get(how, pages)
        addr = {"unaligned": at(first, 1), "before": at(-1)}.get(how, at(first))
        c(Call("mseal", (addr, _hex(n * PAGE), Int(1) if how == "flags" else Int(0)), None, None))
        sides: list[str | None] = [None]
        ops = [(w, o) for w, o in SEAL_OPS if self.ok(o.split("-")[0])]
        for _ in range(r.integer(2, 5)):
            what = r.weighted(ops) if ops else "store"
            side = r.choice(sides)
            lo = r.integer(max(first - 1, 0), min(first + max(n, 1) - 1, pages - 1))
            cnt = r.integer(1, pages - lo)
            length = _hex(cnt * PAGE)
            if what == "munmap":
                c(Call("munmap", (at(lo), length), None, side))
            elif what == "mprotect":
                c(Call("mprotect", (at(lo), length, Flags(r.choice([prot, ("PROT_READ",), ("PROT_NONE",)]))), None, side))
            elif what == "mremap":
                res = self.name()
                move = r.weighted([(25, "shrink"), (20, "grow"), (20, "away"), (35, "onto")])
                if move == "shrink":
                    c(Call("mremap", (at(lo), length, _hex(PAGE), Int(0), Int(0)), res, side))
                elif move == "grow":
                    c(Call("mremap", (at(lo), length, _hex((cnt + 1) * PAGE), Flags(("MREMAP_MAYMOVE",)), Int(0)), res, side))
                else:
                    other = self.scenario_addr()
                    src, dst = (at(lo), other) if move == "away" else (other, at(lo))
                    if move == "onto":
                        c(Call("mmap", (other, length, Flags(("PROT_READ",)), Flags(("MAP_PRIVATE", "MAP_ANONYMOUS")),
                                        Int(-1), Int(0)), self.name(), side))
                    c(Call("mremap", (src, length, length, Flags(("MREMAP_MAYMOVE", "MREMAP_FIXED")), dst), res, side))
                    self.bases.append((res, cnt, True))
                    self.base_procs[res] = {side}
                    if move == "away":
                        # where the pages went (all, none, or those before the first sealed VMA)
                        self.read_back(other, length, None, side, always=True)
            elif what == "mmap-fixed":
                c(Call("mmap", (at(lo), length, Flags(("PROT_READ",)), Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")),
                                Int(-1), Int(0)), self.name(), side))
            elif what == "madvise":
                c(Call("madvise", (at(lo), length, Flags((r.choice(DISCARD_ADVICE),))), None, side))
            elif what == "mseal":
                c(Call("mseal", (at(lo), length, Int(0)), None, side))
            elif what == "store":
                self.store(at(lo, r.choice(BYTE_OFFSETS)), side, sides.index(side))
            elif what == "mlock":
                c(Call("mlock", (at(lo), length), None, side))
            elif len(sides) == 1 and len(self.procs) < 2:
                self.n_procs += 1
                child = f"p{self.n_procs}"
                c(Call("fork", (), child, None))
                self.forked(child)
                sides.append(child)
        self.read_back(Ref(base), _hex(pages * PAGE), None, None, always=True)

    def lock_scenario(self) -> None:
        """An unprivileged process at its RLIMIT_MEMLOCK: a mapping in the window (sometimes with a
        PROT_NONE page, which populate cannot fault in), a fork, the child
        lowers its limit to a few pages (sometimes not whole ones) and gives up CAP_IPC_LOCK, then 2 to
        6 of LOCK_OPS whose ranges start inside a page and end beside a page boundary (so one byte more
        or less is one page more or less against the limit), each followed by mincore of the mapping
        (what was locked was populated), and the mapping read back."""
        r = self.r
        c = self.calls.append
        if len(self.procs) >= 2:
            return
        pages = r.integer(2, 5)
        base = self.map_in_window(pages, ("PROT_READ", "PROT_WRITE"),
                                  ("MAP_SHARED" if r.chance(25) else "MAP_PRIVATE", "MAP_ANONYMOUS"), Int(-1))
        if self.ok("mprotect") and r.chance(35):
            # a page populate cannot fault in: a lock whose range reaches it (by one byte) is ENOMEM
            hole = r.integer(1, pages - 1)
            c(Call("mprotect", (Ref(base, hole * PAGE), _hex(PAGE), Flags(("PROT_NONE",))), None, None))
        self.n_procs += 1
        child = f"p{self.n_procs}"
        c(Call("fork", (), child, None))
        self.forked(child)
        limit = PAGE * r.integer(0, pages) + r.choice([0, 0, 1, PAGE - 1])
        c(Call("set_memlock_limit", (_hex(limit),), None, child))
        c(Call("drop_privileges", (), None, child))
        self.dropped.add(child)

        def at(off: int) -> Ref:
            return Ref(base, off) if off else Ref(base)

        ops = [(w, o) for w, o in LOCK_OPS if self.ok(o)]
        for _ in range(r.integer(2, 6)):
            what = r.weighted(ops) if ops else "mlock"
            off = PAGE * r.integer(0, pages - 1) + r.choice([0, 0, 1, 7, PAGE - 1])
            length = _hex(max(0, PAGE * r.integer(0, pages - off // PAGE) + r.choice([0, 0, 1, -1, 100])))
            if what in ("mlock", "munlock"):
                c(Call(what, (at(off), length), None, child))
            elif what == "mlock2":
                c(Call("mlock2", (at(off), length, r.choice(MLOCK_FLAGS[:2])), None, child))
            elif what == "mlockall":
                # not MCL_FUTURE: the native agent (linux-agent, qemu-user, uml) grew its heap at a
                # checkpoint, which MCL_FUTURE under this small limit refuses (the agent died); it now
                # reserves its heap at start, so this can be lifted once qemu-user and uml agree again.
                # The mlockall step draws MCL_FUTURE anywhere else
                c(Call("mlockall", (r.choice(MCL_FLAGS[2:6]),), None, child))
            elif what == "munlockall":
                c(Call("munlockall", (), None, child))
            elif what == "mmap":
                # with MAP_LOCKED a new mapping is locked too, and counted against the limit
                c(Call("mmap", (self.scenario_addr(), length if length.value else _hex(PAGE), Flags(("PROT_READ", "PROT_WRITE")),
                                Flags(("MAP_PRIVATE", "MAP_ANONYMOUS") + (("MAP_LOCKED",) if r.chance(30) else ())),
                                Int(-1), Int(0)), self.name(), child))
            elif what == "mremap":
                c(Call("mremap", (at(off & ~(PAGE - 1)), _hex(PAGE), _hex(PAGE * r.integer(1, 3)), Flags(("MREMAP_MAYMOVE",)),
                                  Int(0)), self.name(), child))
            else:
                c(Call("set_memlock_limit", (_hex(PAGE * r.integer(0, pages + 1) + r.choice([0, 1])),), None, child))
            c(Call("mincore", (Ref(base), _hex(pages * PAGE)), self.name(), child))
        self.read_back(Ref(base), _hex(pages * PAGE), None, child, always=True)

    def unpriv_scenario(self) -> None:
        """A child that gave up its privileges (drop_privileges: CAP_IPC_LOCK, CAP_DAC_OVERRIDE,
        CAP_SYS_ADMIN gone) meets what they bypassed, 2 to 5 of: mlock, mlock2 or a MAP_LOCKED mmap under
        the RLIMIT_MEMLOCK it started with (never set in the program: the target's ``memlock_soft`` fact),
        of one page, of exactly the limit and of a page more; a shm object main made with a mode of
        SHM_MODES (execute bits with or without write), opened by the child for reading, writing or
        truncating (O_TRUNC by main half the time: under umask 022 the child may not write), then mapped
        shared and writable and read back; an mmap of a pipe; the memory
        failure advice (EPERM).  The other scenarios set the limit or open the object before dropping."""
        r = self.r
        c = self.calls.append
        if len(self.procs) >= 2:
            return
        shm = None
        if self.ok("shm_open") and r.chance(50):
            shm = self.name()
            name = "/u" + str(r.integer(0, 1))
            c(Call("shm_open", (Str(name), Flags(("O_CREAT", "O_RDWR")), _hex(r.choice(SHM_MODES))), shm, None))
            self.fd_procs[shm] = {None}
            self.fds.append(shm)
            if self.ok("ftruncate"):
                c(Call("ftruncate", (Ref(shm), _hex(2 * PAGE)), None, None))
        self.n_procs += 1
        child = f"p{self.n_procs}"
        c(Call("fork", (), child, None))
        self.forked(child)
        c(Call("drop_privileges", (), None, child))
        self.dropped.add(child)
        ops = [(30, "lock"), (8, "pipe"), (6, "poison")] + ([(30, "shm")] if shm else [])
        for _ in range(r.integer(2, 5)):
            what = r.weighted(ops)
            if what == "lock" and self.memlock > 0 and self.memlock <= 64 << 20:
                pages = r.choice([1, self.memlock // PAGE, self.memlock // PAGE + 1])
                self.n_scenarios += pages // 16     # the scenario slots after this one stay free
                how = r.weighted([(w, o) for w, o in ((50, "mlock"), (25, "mlock2"), (25, "mmap-locked"))
                                  if self.ok(o.split("-")[0])] or [(1, "none")])
                if how == "mmap-locked":
                    c(Call("mmap", (self.scenario_addr(), _hex(pages * PAGE), Flags(("PROT_READ", "PROT_WRITE")),
                                    Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_LOCKED")), Int(-1), Int(0)),
                           self.name(), child))
                elif how != "none":
                    base = self.map_in_window(pages, ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS"),
                                              Int(-1), child)
                    args = (Ref(base), _hex(pages * PAGE)) + ((r.choice(MLOCK_FLAGS[:2]),) if how == "mlock2" else ())
                    c(Call(how, args, None, child))
                    if self.ok("mincore"):
                        c(Call("mincore", (Ref(base), _hex(min(pages, 4) * PAGE)), self.name(), child))
                    if self.ok("munlock") and r.chance(50):
                        c(Call("munlock", (Ref(base), _hex(pages * PAGE)), None, child))
            elif what == "shm" and shm is not None:
                fd = self.name()
                oflag = r.choice([("O_RDWR", "O_TRUNC"), ("O_WRONLY", "O_TRUNC")]) if r.chance(50) else self.shm_oflag()
                # O_TRUNC by the owner half the time: under the umask (022) the child may not write the
                # object, so its O_TRUNC is EACCES
                who = None if "O_TRUNC" in oflag and r.chance(50) else child
                c(Call("shm_open", (Str(name), Flags(oflag), _hex(0o600)), fd, who))
                self.fd_procs[fd] = {who}
                self.fds.append(fd)
                m = self.name()
                c(Call("mmap", (Flags(("NULL",)), _hex(PAGE), Flags(r.choice([("PROT_READ", "PROT_WRITE"), ("PROT_READ",)])),
                                Flags(("MAP_SHARED",)), Ref(fd), Int(0)), m, who))
                if self.ok("load"):
                    c(Call("load", (Ref(m),), None, who))
                if self.ok("pread"):
                    c(Call("pread", (Ref(shm), Int(0)), self.name(), None))
            elif what == "pipe" and self.ok("pipe"):
                fd = self.name()
                c(Call("pipe", (), fd, child))
                self.fd_procs[fd] = {child}
                self.pipes.append(fd)
                c(Call("mmap", (Flags(("NULL",)), _hex(PAGE), Flags(r.choice(self.prots)),
                                Flags((r.choice(["MAP_SHARED", "MAP_PRIVATE"]),)), Ref(fd), Int(0)), self.name(), child))
            elif what == "poison" and self.ok("madvise"):
                base = self.map_in_window(1, ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS"), Int(-1), child)
                c(Call("madvise", (Ref(base), _hex(PAGE), Flags((r.choice(INJECT_ADVICE),))), None, child))

    def nested_scenario(self) -> None:
        """A fork from a forked child (kernel/fork.c copy_process in whichever process calls it: the
        grandchild gets its parent's credentials, rlimits, address space and descriptors, not main's).
        Main maps 2 to 4 pages with bytes on them (private, or shared a quarter of the time) and, some of
        the time, makes a shm object of a mode of SHM_MODES; it forks the middle process, which does 1 to
        3 of NESTED_SETUP -- drop_privileges, a lower RLIMIT_MEMLOCK, mlock of a page, MADV_DONTFORK or
        MADV_WIPEONFORK of a page, a store, a mapping of its own with a byte on it -- then forks the
        grandchild, which meets each: loads of every byte (SIGSEGV where the VMA was not copied, zero where
        it was wiped, the middle's bytes elsewhere), mlock and mincore under the inherited limit,
        drop_privileges again (EPERM once dropped), MADV_HWPOISON (EPERM without CAP_SYS_ADMIN), the shm
        object opened by another user, a store on the locked page.  Then a store in the grandchild read in
        the middle, and the two exit in either order (a grandchild whose parent exited first goes on, an
        orphan, and is read again), or stay."""
        r = self.r
        c = self.calls.append
        if len(self.procs) >= 2:
            return
        base, pages, shared, spots = self._stored_mapping()
        shm = None
        if self.ok("shm_open") and r.chance(35):
            shm = self.name()
            name = "/g" + str(r.integer(0, 1))
            c(Call("shm_open", (Str(name), Flags(("O_CREAT", "O_RDWR")), _hex(r.choice(SHM_MODES))), shm, None))
            self.fd_procs[shm] = {None}
            self.fds.append(shm)
            if self.ok("ftruncate"):
                c(Call("ftruncate", (Ref(shm), _hex(PAGE)), None, None))
        mid = self.fork_from(None)
        needs = {"drop": ("drop_privileges",), "memlock": ("set_memlock_limit",), "mlock": ("mlock",),
                 "dontfork": ("madvise",), "wipeonfork": ("madvise",), "write": (), "map": ()}
        setups = [(w, k) for w, k in NESTED_SETUP if all(self.ok(x) for x in needs[k])]
        chosen = list(dict.fromkeys(r.weighted(setups) for _ in range(r.integer(1, 3))))
        page = r.integer(0, pages - 1)
        own = None
        for k in chosen:
            if k == "drop":
                c(Call("drop_privileges", (), None, mid))
                self.dropped.add(mid)
            elif k == "memlock":
                c(Call("set_memlock_limit", (_hex(PAGE * r.integer(0, pages - 1) + r.choice([0, 0, 1])),), None, mid))
            elif k == "mlock":
                c(Call("mlock", (_ref(base, page * PAGE), _hex(PAGE)), None, mid))
            elif k in ("dontfork", "wipeonfork"):
                adv = "MADV_DONTFORK" if k == "dontfork" else "MADV_WIPEONFORK"
                c(Call("madvise", (_ref(base, page * PAGE), _hex(PAGE), Flags((adv,))), None, mid))
            elif k == "write":
                self.store(r.choice(spots), mid, 1)
            else:
                own = self.map_in_window(1, ("PROT_READ", "PROT_WRITE"),
                                         (r.choice(["MAP_SHARED", "MAP_PRIVATE"]), "MAP_ANONYMOUS"), Int(-1), mid)
                own_at = _ref(own, r.choice(BYTE_OFFSETS))
                self.store(own_at, mid, 2)
        grand = self.fork_from(mid)
        for at in spots:
            c(Call("load", (at,), None, grand))
        if own is not None:
            c(Call("load", (own_at,), None, grand))
        if ("drop" in chosen or "memlock" in chosen) and self.ok("mlock"):
            # under the inherited RLIMIT_MEMLOCK, without CAP_IPC_LOCK once dropped (linux.mlock.enomem-rlimit)
            n = r.integer(1, pages)
            c(Call("mlock", (Ref(base), _hex(n * PAGE - r.choice([0, 0, 1]))), None, grand))
            if self.ok("mincore"):
                c(Call("mincore", (Ref(base), _hex(pages * PAGE)), self.name(), grand))
        if "drop" in chosen:
            if r.chance(60):
                c(Call("drop_privileges", (), None, grand))       # no CAP_SETUID left: EPERM
            if self.ok("madvise") and r.chance(50):
                c(Call("madvise", (Ref(base), _hex(PAGE), Flags((r.choice(INJECT_ADVICE),))), None, grand))
            if shm is not None:
                fd = self.name()
                c(Call("shm_open", (Str(name), Flags(r.choice([("O_RDWR",), ("O_RDONLY",), ("O_WRONLY", "O_TRUNC")])),
                                    _hex(0o600)), fd, grand))
                self.fd_procs[fd] = {grand}
                self.fds.append(fd)
                m = self.name()
                c(Call("mmap", (Flags(("NULL",)), _hex(PAGE), Flags(("PROT_READ",)), Flags(("MAP_SHARED",)), Ref(fd),
                                Int(0)), m, grand))
                c(Call("load", (Ref(m),), None, grand))
        if "mlock" in chosen:
            self.store(spots[page], grand, 3)      # the grandchild's copy is not locked: a store copies it
        at = r.choice(spots)
        self.store(at, grand, 4)
        c(Call("load", (at,), None, mid))
        order = r.weighted([(40, "grand-first"), (40, "mid-first"), (20, "stay")])
        if order == "grand-first":
            self.exited(grand)
            for at in spots:
                c(Call("load", (at,), None, mid))
            if r.chance(50):
                self.exited(mid)
        elif order == "mid-first":
            self.exited(mid)
            for at in spots:
                c(Call("load", (at,), None, grand))     # the orphan goes on, its memory its own
            if r.chance(50):
                self.exited(grand)
        if r.chance(50):
            for at in spots:
                c(Call("load", (at,), None, None))

    def pressure_scenario(self) -> None:
        """Memory driven to exhaustion (targets that model pressure: memory_limit): a machine of a few
        frames and little or no swap, a mapping of about as many pages (private or shared), sometimes a
        fork first (copy-on-write: both sides need frames), then stores of distinct bytes to page after
        page, in runs on one side then the other -- reclaim, swap and at the end the OOM killer -- with
        reclaim, tick, MADV_PAGEOUT/COLD, mlock, munmap, an explicit oom, an exit and the machine shrunk
        under the pages in use between them; then every byte stored read back on every side (a process
        the OOM killer took answers ESRCH), and mincore."""
        r = self.r
        c = self.calls.append
        ram, swap = r.integer(4, 10), r.choice([0, 0, 0, 2, 4])
        pages = max(2, min(16, ram + swap + r.integer(-1, 3)))
        c(Call("memory_limit", (Int(ram), Int(swap)), None, None))
        base = self.map_in_window(pages, ("PROT_READ", "PROT_WRITE"),
                                  ("MAP_SHARED" if r.chance(25) else "MAP_PRIVATE", "MAP_ANONYMOUS"), Int(-1))
        sides: list[str | None] = [None]
        spots: list[Ref] = []

        def at(page: int) -> Ref:
            off = page * PAGE + r.choice(BYTE_OFFSETS)
            return Ref(base, off) if off else Ref(base)

        if self.ok("fork") and len(self.procs) < 2 and r.chance(70):
            for page in range(r.integer(0, pages)):
                spot = at(page)
                self.store(spot, None)
                spots.append(spot)
            self.n_procs += 1
            child = f"p{self.n_procs}"
            c(Call("fork", (), child, None))
            self.forked(child)
            sides.append(child)
        ops = [(w, o) for w, o in PRESSURE_OPS if self.ok(o)]
        page = 0
        side: str | None = None
        run = 0
        for _ in range(r.integer(pages + 2, 2 * pages + 4)):
            what = r.weighted(ops)
            if run <= 0 or side not in sides:
                # runs of calls on one side: one process grows while the other waits, then the other
                # faults with no frame left (the OOM killer picks the bigger one, not the faulting one);
                # the first run is long enough to fill the machine
                side, run = r.choice(sides), r.integer(2, pages) if side is None and page == 0 else r.integer(1, 4)
            run -= 1
            if what == "store":
                spot = at(page % pages)
                self.store(spot, side, sides.index(side))
                spots.append(spot)
                page += 1
            elif what == "load" and spots:
                c(Call("load", (r.choice(spots),), None, side))
            elif what == "reclaim":
                c(Call("reclaim", (Int(r.integer(1, 4)),), self.name(), None))
            elif what == "tick":
                c(Call("tick", (), None, side))
            elif what == "madvise":
                lo = r.integer(0, pages - 1)
                c(Call("madvise", (Ref(base, lo * PAGE) if lo else Ref(base), _hex(PAGE * r.integer(1, pages - lo)),
                                   Flags((r.choice(["MADV_PAGEOUT", "MADV_COLD", "MADV_DONTNEED", "MADV_FREE"]),))),
                       None, side))
            elif what == "mlock":
                lo = r.integer(0, pages - 1)
                c(Call("mlock", (Ref(base, lo * PAGE) if lo else Ref(base), _hex(PAGE * r.integer(1, min(3, pages - lo)))),
                       None, side))
            elif what == "munmap":
                lo = r.integer(0, pages - 1)
                c(Call("munmap", (Ref(base, lo * PAGE) if lo else Ref(base), _hex(PAGE)), None, side))
            elif what == "oom":
                c(Call("oom", (), self.name(), None))
            elif what == "memory_limit":
                # the machine shrinks under the pages in use: reclaim what it can, then the OOM killer
                ram = max(1, ram - r.integer(1, 3))
                c(Call("memory_limit", (Int(ram), Int(swap)), None, None))
            elif what == "mincore":
                c(Call("mincore", (Ref(base), _hex(pages * PAGE)), self.name(), side))
            elif what == "exit" and side is not None and side in self.procs:
                c(Call("exit", (), None, side))
                self.procs.remove(side)
                sides.remove(side)
        for side in sides:
            for spot in list(dict.fromkeys(spots))[:12]:
                c(Call("load", (spot,), None, side))
            if self.ok("mincore"):
                c(Call("mincore", (Ref(base), _hex(pages * PAGE)), self.name(), side))

    def grow_scenario(self) -> None:
        """mremap beside a neighbour: a mapping A of 1 to 4 pages with bytes on its pages, a neighbour B
        0 to 2 pages after it (same protection and kind -- one VMA with A when adjacent -- or another),
        then mremap of A growing into the gap exactly, one page too far (in place: ENOMEM; with
        MREMAP_MAYMOVE it moves), shrinking, over A and B together (EFAULT when they are two VMAs),
        or B moved with MREMAP_FIXED onto A's tail; then the result, A and B read back by name and by
        number, and mincore over the whole span (what moved took its pages, what stayed kept them)."""
        r = self.r
        c = self.calls.append
        n, gap = r.integer(1, 4), r.choice([0, 1, 1, 2])
        at = self.scenario_addr()
        kind = r.weighted([(50, ("MAP_PRIVATE", "MAP_ANONYMOUS")), (25, ("MAP_SHARED", "MAP_ANONYMOUS")),
                           (25, ("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_NORESERVE"))])
        a = self.name()
        rw = ("PROT_READ", "PROT_WRITE")
        c(Call("mmap", (at, _hex(n * PAGE), Flags(rw), Flags(kind + ("MAP_FIXED_NOREPLACE",)), Int(-1), Int(0)), a, None))
        self.bases.append((a, n, True))
        self.base_procs[a] = {None}
        b = self.name()
        m = r.integer(1, 2)
        b_prot = rw if r.chance(60) else ("PROT_READ",)
        b_kind = kind if r.chance(70) else ("MAP_SHARED" if "MAP_PRIVATE" in kind else "MAP_PRIVATE", "MAP_ANONYMOUS")
        c(Call("mmap", (_hex(at.value + (n + gap) * PAGE), _hex(m * PAGE), Flags(b_prot),
                        Flags(b_kind + ("MAP_FIXED_NOREPLACE",)), Int(-1), Int(0)), b, None))
        self.bases.append((b, m, True))
        self.base_procs[b] = {None}
        for page in range(n):
            if r.chance(80):
                self.store(_ref(a, page * PAGE + r.choice(BYTE_OFFSETS)), None)
        if "PROT_WRITE" in b_prot and r.chance(60):
            self.store(_ref(b, r.choice(BYTE_OFFSETS)), None)
        move = r.weighted([(30, "fit"), (25, "past"), (10, "shrink"), (15, "both"), (10, "onto"), (10, "dontunmap")])
        res = self.name()
        may = Flags(("MREMAP_MAYMOVE",))
        if move == "fit":
            c(Call("mremap", (Ref(a), _hex(n * PAGE), _hex((n + gap) * PAGE if gap else (n + 1) * PAGE),
                              may if r.chance(50) else Int(0), Int(0)), res, None))
        elif move == "past":
            c(Call("mremap", (Ref(a), _hex(n * PAGE), _hex((n + gap + 1) * PAGE), may if r.chance(50) else Int(0),
                              Int(0)), res, None))
        elif move == "shrink":
            c(Call("mremap", (Ref(a), _hex(n * PAGE), _hex(r.integer(1, n) * PAGE - r.choice([0, 0, 1])), Int(0), Int(0)),
                   res, None))
        elif move == "both":
            c(Call("mremap", (Ref(a), _hex((n + gap + m) * PAGE), _hex((n + gap + m + 1) * PAGE), may, Int(0)), res, None))
        elif move == "onto":
            c(Call("mremap", (Ref(b), _hex(m * PAGE), _hex(m * PAGE), Flags(("MREMAP_MAYMOVE", "MREMAP_FIXED")),
                              _hex(at.value + (n - 1) * PAGE)), res, None))
        else:
            c(Call("mremap", (Ref(a), _hex(n * PAGE), _hex(n * PAGE), Flags(("MREMAP_MAYMOVE", "MREMAP_DONTUNMAP")),
                              Int(0)), res, None))
        self.bases.append((res, n + gap + 1, False))
        self.base_procs[res] = {None}
        span = _hex((n + gap + m + 1) * PAGE)
        for w in list(self.written):
            if isinstance(w, Ref) and w.name in (a, b):
                c(Call("load", (_ref(res, w.offset),), None, None))
                if r.chance(30):
                    break
        self.read_back(at, span, None, None, always=True)
        if self.ok("mincore"):
            c(Call("mincore", (at, span), self.name(), None))
        if self.ok("store") and r.chance(50):
            # the result is writable where it came from A: a store through it, read back through A's pages
            self.store(_ref(res, r.choice(BYTE_OFFSETS)), None, 3)

    def _stored_mapping(self) -> tuple[str, int, bool, list[Any]]:
        """The start of the inherit and nested scenarios: a mapping of 2-4 pages in the window, shared
        a quarter of the time, a byte stored on each page at one of BYTE_OFFSETS: (its name, pages,
        shared, the addresses stored at)."""
        r = self.r
        pages = r.integer(2, 4)
        shared = r.chance(25)
        base = self.map_in_window(pages, ("PROT_READ", "PROT_WRITE"),
                                  ("MAP_SHARED" if shared else "MAP_PRIVATE", "MAP_ANONYMOUS"), Int(-1))
        spots = []
        for page in range(pages):
            at = _ref(base, page * PAGE + r.choice(BYTE_OFFSETS))
            self.store(at, None)
            spots.append(at)
        return base, pages, shared, spots

    def inherit_scenario(self) -> None:
        """What a fork copies and what it does not (kernel/fork.c copy_process, dup_mmap): a mapping with
        bytes on its pages, then in the parent 1 to 3 of -- MADV_DONTFORK, MADV_WIPEONFORK or
        MADV_GUARD_INSTALL on one page, mlock of one page, RLIMIT_MEMLOCK or RLIMIT_FSIZE lowered, a
        write through a descriptor (the offset the child shares) -- then the fork, and the child meets
        each: loads of every page (SIGSEGV where the VMA was not copied, zero where it was wiped, the
        parent's bytes elsewhere), an mlock past the inherited limit once unprivileged, a pwrite at the
        inherited file-size limit, lseek(SEEK_CUR) and a write on the shared offset, read in the parent."""
        r = self.r
        c = self.calls.append
        if len(self.procs) >= 2:
            return
        base, pages, shared, spots = self._stored_mapping()
        kinds = [k for k in ("dontfork", "wipeonfork", "guard", "mlock", "memlock", "fsize", "offset", "readonly",
                             "readonly")
                 if k not in ("memlock",) or all(self.ok(x) for x in ("set_memlock_limit", "drop_privileges", "mlock"))]
        kinds = [k for k in kinds if k not in ("fsize", "offset") or (self.fds_of(None) and self.ok("pwrite"))]
        chosen = list(dict.fromkeys(r.choice(kinds) for _ in range(r.integer(1, 3))))
        page = r.integer(0, pages - 1)
        fd = Ref(r.choice(self.fds_of(None))) if self.fds_of(None) else None
        lim = 0
        for k in chosen:
            if k in ("dontfork", "wipeonfork", "guard"):
                adv = {"dontfork": "MADV_DONTFORK", "wipeonfork": "MADV_WIPEONFORK", "guard": "MADV_GUARD_INSTALL"}[k]
                c(Call("madvise", (_ref(base, page * PAGE), _hex(PAGE), Flags((adv,))), None, None))
            elif k == "mlock" and self.ok("mlock"):
                c(Call("mlock", (_ref(base, page * PAGE), _hex(PAGE)), None, None))
            elif k == "readonly" and self.ok("mprotect"):
                c(Call("mprotect", (_ref(base, page * PAGE), _hex(PAGE), Flags(("PROT_READ",))), None, None))
            elif k == "memlock":
                lim = PAGE * r.integer(0, pages - 1) + r.choice([0, 0, 1])
                c(Call("set_memlock_limit", (_hex(lim),), None, None))
            elif k == "fsize" and fd is not None:
                c(Call("set_fsize_limit", (_hex(PAGE * r.integer(0, 2) + r.choice([0, 1, 2048])),), None, None))
            elif k == "offset" and fd is not None:
                c(Call("pwrite", (fd, _hex(0), self.fd_value(fd, 0, 2), Int(1)), self.name(), None))
                if self.ok("lseek"):
                    c(Call("lseek", (fd, _hex(r.choice([1, 7, PAGE])), Flags(("SEEK_SET",))), self.name(), None))
        self.n_procs += 1
        child = f"p{self.n_procs}"
        c(Call("fork", (), child, None))
        self.forked(child)
        for at in spots:
            c(Call("load", (at,), None, child))
        for k in chosen:
            if k == "memlock":
                c(Call("drop_privileges", (), None, child))
                self.dropped.add(child)
                n = r.integer(1, pages)
                c(Call("mlock", (Ref(base), _hex(n * PAGE - r.choice([0, 0, 1]))), None, child))
                if self.ok("mincore"):
                    c(Call("mincore", (Ref(base), _hex(pages * PAGE)), self.name(), child))
            elif k == "fsize" and fd is not None:
                for off in (0, 1, PAGE, PAGE + 2048, 2 * PAGE):
                    if r.chance(40):
                        c(Call("pwrite", (fd, _hex(off), self.fd_value(fd, off, 4), Int(2)), self.name(), child))
            elif k == "offset" and fd is not None and self.ok("lseek"):
                c(Call("lseek", (fd, Int(0), Flags(("SEEK_CUR",))), self.name(), child))
                if self.ok("write"):
                    c(Call("write", (fd, self.fd_value(fd, None, 6), Int(1)), self.name(), child))
                    c(Call("lseek", (fd, Int(0), Flags(("SEEK_CUR",))), self.name(), None))
            elif k == "mlock" and self.ok("munlock"):
                # the child's copy is not locked: a store there copies the page, the parent's stays
                self.store(spots[page], child, 1)
            elif k == "readonly" and self.ok("mprotect"):
                # made writable again on one side: the page is still shared copy-on-write, so a store
                # there must copy it (mm/mprotect.c keeps the PTE read-only; the next write faults)
                side = r.choice([None, child])
                c(Call("mprotect", (_ref(base, page * PAGE), _hex(PAGE), Flags(("PROT_READ", "PROT_WRITE"))), None, side))
                self.store(spots[page], side, 3 if side is None else 1)
        if r.chance(50):
            self.store(r.choice(spots), None, 2)
        for at in spots:
            c(Call("load", (at,), None, None))
            c(Call("load", (at,), None, child))

    def advice_scenario(self) -> None:
        """Advice over memory that has something to lose: a mapping in the window (private or shared
        anonymous, or shared or private of a file of the program), bytes stored on its pages, then 2 to
        4 madvise calls with advice of the program's vocabulary (``self.advice``: in a swarm program a
        few values, each met again and again) over all of it, one page, a range starting inside a page
        or reaching past its end, each followed by mincore and the range read back -- sometimes a fork
        first, so the advice meets shared pages and the other side reads them too."""
        r = self.r
        c = self.calls.append
        pages = r.integer(2, 5)
        files = self.fds_of(None)
        kind = r.weighted([(40, "private"), (25, "shared"), (35, "file")])
        if kind == "file" and files:
            fd: Int | Ref = Ref(r.choice(files))
            flags: tuple[str, ...] = ("MAP_SHARED" if r.chance(70) else "MAP_PRIVATE",)
        else:
            fd = Int(-1)
            flags = ("MAP_SHARED" if kind == "shared" else "MAP_PRIVATE", "MAP_ANONYMOUS")
        base = self.map_in_window(pages, ("PROT_READ", "PROT_WRITE"), flags, fd)
        for page in range(pages):
            if r.chance(75):
                self.store(_ref(base, page * PAGE + r.choice(BYTE_OFFSETS)), None)
        sides: list[str | None] = [None]
        if self.ok("fork") and len(self.procs) < 2 and r.chance(50):
            self.n_procs += 1
            child = f"p{self.n_procs}"
            c(Call("fork", (), child, None))
            self.forked(child)
            sides.append(child)
        for _ in range(r.integer(2, 4)):
            side = r.choice(sides)
            lo = r.integer(0, pages - 1)
            how = r.weighted([(35, "all"), (30, "page"), (15, "inside"), (10, "past"), (10, "rest")])
            off, n = {"all": (0, pages * PAGE), "page": (lo * PAGE, PAGE), "inside": (lo * PAGE + r.choice([1, 7, 2048]), PAGE),
                      "past": (lo * PAGE, (pages - lo + 1) * PAGE), "rest": (lo * PAGE, (pages - lo) * PAGE - 1)}[how]
            adv = Flags((r.choice(self.advice),))
            c(Call("madvise", (_ref(base, off), _hex(n), adv), None, side))
            if self.ok("mincore") and r.chance(60):
                c(Call("mincore", (Ref(base), _hex(pages * PAGE)), self.name(), side))
            if r.chance(40) and self.ok("store"):
                self.store(_ref(base, lo * PAGE + r.choice(BYTE_OFFSETS)), side, sides.index(side))
            self.read_back(_ref(base, off & ~(PAGE - 1)), _hex(PAGE * ((n + (off & (PAGE - 1)) + PAGE - 1) // PAGE)),
                           None, side, always=True)

    def thp_scenario(self) -> None:
        """A 2 MiB-aligned private anonymous range of one or two huge pages (sometimes a page more or
        less, so no whole block fits), MADV_HUGEPAGE or MADV_NOHUGEPAGE on it or on part of it (the VMA
        splits), faulted page by page by stores and loads, and observed by thp_mapped, pfn_of of two
        pages of one block (a huge page: consecutive frames), mincore of the block; then a change that
        splits the huge page (munmap or mprotect of one page, MADV_DONTNEED of part) or MADV_COLLAPSE
        or khugepaged, and everything observed and read back again (model/pressure.py thp_eligible,
        model/os/access.py _thp_fault, mm/huge_memory.c)."""
        r = self.r
        c = self.calls.append
        self.n_thp += 1
        blocks = r.choice([1, 1, 2])
        at = THP_BASE + self.n_thp * 4 * HPAGE
        length = blocks * HPAGE + r.choice([0, 0, 0, PAGE, -PAGE])
        base = self.name()
        c(Call("mmap", (_hex(at), _hex(length), Flags(("PROT_READ", "PROT_WRITE")),
                        Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED_NOREPLACE")), Int(-1), Int(0)), base, None))
        self.bases.append((base, 16, True))
        self.base_procs[base] = {None}

        def ref(off: int) -> Ref:
            return _ref(base, off)

        adv = r.weighted([(60, "MADV_HUGEPAGE"), (15, "MADV_NOHUGEPAGE"), (25, None)])
        if adv:
            part = r.chance(20)
            c(Call("madvise", (ref(PAGE if part else 0), _hex(length - (PAGE if part else 0)), Flags((adv,))), None, None))

        collapsed = []

        def observe(off: int) -> None:
            c(Call("thp_mapped", (ref(off),), self.name(), None))
            if self.ok("pfn_of") and r.chance(70):
                other = ref(off + PAGE * r.choice([1, 17, 511]))
                if not collapsed:
                    # (not after MADV_COLLAPSE: Linux 6.18 copies the present pages into a new huge page
                    # -- new frames, measured -- where the model keeps their frames; reported, left out
                    # until the model allows it)
                    c(Call("pfn_of", (ref(off),), self.name(), None))
                    c(Call("pfn_of", (other,), self.name(), None))
            if self.ok("mincore") and r.chance(60):
                c(Call("mincore", (ref(off), _hex(HPAGE)), self.name(), None))
            if self.ok("minflt") and r.chance(30):
                c(Call("minflt", (), self.name(), None))

        spots = []
        for _ in range(r.integer(1, 3)):
            block = r.integer(0, blocks - 1) * HPAGE
            off = block + PAGE * r.choice([0, 1, 255, 511]) + r.choice(BYTE_OFFSETS)
            if off >= length:
                continue
            if r.chance(75):
                self.store(ref(off), None)
                spots.append(ref(off))
            else:
                c(Call("load", (ref(off),), None, None))
            observe(block)
        cut = PAGE * r.choice([0, 1, 256, 511])
        for _ in range(r.integer(1, 2)):
            what = r.weighted([(20, "munmap"), (20, "mprotect"), (20, "dontneed"), (15, "collapse"), (10, "khugepaged"),
                               (10, "fork"), (5, "none")])
            if what == "munmap":
                c(Call("munmap", (ref(cut), _hex(PAGE)), None, None))
            elif what == "mprotect":
                c(Call("mprotect", (ref(cut), _hex(PAGE), Flags(("PROT_READ",))), None, None))
            elif what == "dontneed":
                c(Call("madvise", (ref(cut), _hex(PAGE * r.choice([1, 16])), Flags(("MADV_DONTNEED",))), None, None))
            elif what == "collapse":
                c(Call("madvise", (ref(0), _hex(length), Flags(("MADV_COLLAPSE",))), None, None))
                collapsed.append(True)
            elif what == "khugepaged" and self.ok("khugepaged"):
                c(Call("khugepaged", (), self.name(), None))
            elif what == "fork" and self.ok("fork") and len(self.procs) < 2:
                self.n_procs += 1
                child = f"p{self.n_procs}"
                c(Call("fork", (), child, None))
                self.forked(child)
                if spots:
                    self.store(r.choice(spots), child, 1)
            if r.chance(50):
                observe(0)
        if r.chance(40):
            # a block split (or never huge) collapsed again: by khugepaged, or by MADV_COLLAPSE
            if self.ok("khugepaged") and r.chance(50):
                c(Call("khugepaged", (), self.name(), None))
            else:
                c(Call("madvise", (ref(0), _hex(length), Flags(("MADV_COLLAPSE",))), None, None))
                collapsed.append(True)
        observe(0)
        for spot in spots:
            for p in self.mappers(spot, None):
                c(Call("load", (spot,), None, p))
        self.read_back(ref(cut), _hex(PAGE), None, None, always=True)

    def read_back(self, addr: Int | Ref | Flags, length: Int, room: int | None, proc: str | None,
                  always: bool = False) -> None:
        """After a change of [addr, addr+length) (done or refused; READBACK_PERCENT of the time, or
        ``always``): loads of the page before it, its first and last byte, every page between (up to
        READBACK_PAGES; a byte some process stored there, else one of BYTE_OFFSETS), the bytes stored on
        those pages and the page after it -- in the process that made the change, then in every other
        process that maps the range: what a change could have damaged in and beside the range, and
        in the processes that share it.  Not around a mapping the kernel placed outside the sandbox
        window (``room``: the runtime's own memory is beside it)."""
        r = self.r
        if room is not None or not self.ok("load") or not 0 < length.value <= 64 * PAGE or isinstance(addr, Flags) \
                or not (always or r.chance(READBACK_PERCENT)):
            return
        spots: list[Int | Ref] = []
        n = length.value
        deltas = [-PAGE, 0, n - 1, n + PAGE - 1]
        key = self._key(addr)
        inner = range((key & ~(PAGE - 1)) + PAGE, (key + n - 1) & ~(PAGE - 1), PAGE)   # pages between the edges
        for delta in deltas[:3] + ([p - key + r.choice(BYTE_OFFSETS) for p in inner]
                                   if len(inner) <= READBACK_PAGES else []) + deltas[3:]:
            at = self._at(addr, delta)
            if at is not None and at not in spots:
                spots.append(at)
        lo, hi = key - PAGE, key + n + PAGE
        for w in self.written:
            if len(spots) >= READBACK_LOADS // 2:
                break
            if w not in spots and self._same_base(w, addr) and lo <= self._key(w) < hi:
                spots.append(w)
        budget = READBACK_LOADS
        for p in self.mappers(addr, proc):
            for at in spots[:budget]:
                self.calls.append(Call("load", (at,), None, p))
            budget -= len(spots)
            if budget <= 0:
                break

    @staticmethod
    def _key(at: Int | Ref) -> int:
        return at.offset if isinstance(at, Ref) else at.value

    @staticmethod
    def _same_base(a: Int | Ref, b: Int | Ref) -> bool:
        return (a.name == b.name) if isinstance(a, Ref) and isinstance(b, Ref) else isinstance(a, Int) and isinstance(b, Int)

    @staticmethod
    def _at(addr: Int | Ref, delta: int) -> Int | Ref | None:
        """``addr + delta`` as program text, or None outside the sandbox window."""
        if isinstance(addr, Ref):
            return Ref(addr.name, addr.offset + delta) if addr.offset + delta else Ref(addr.name)
        if SANDBOX_WINDOW[0] <= addr.value + delta < SANDBOX_WINDOW[1]:
            return _hex(addr.value + delta)
        return None

    def mappers(self, addr: Int | Ref, proc: str | None) -> list[str | None]:
        """``proc`` first, then the other live processes that map ``addr``'s mapping (for a number:
        any other live process)."""
        live = [None] + self.procs
        if isinstance(addr, Ref):
            others = [p for p in live if p in self.base_procs.get(addr.name, ()) and p != proc]
        else:
            others = [p for p in live if p != proc]
        return [proc] + others

    def forked(self, child: str, parent: str | None = None) -> None:
        """``child`` was forked from ``parent`` (None: main): it has the parent's descriptors and
        mappings, and its credentials (a child of a process that dropped its privileges has none)."""
        self.procs.append(child)
        for owners in list(self.fd_procs.values()) + list(self.base_procs.values()):
            if parent in owners:
                owners.add(child)
        if parent in self.dropped:
            self.dropped.add(child)

    def fork_from(self, parent: str | None) -> str:
        """``child = fork()`` in ``parent`` (None: main); the child's name."""
        self.n_procs += 1
        child = f"p{self.n_procs}"
        self.calls.append(Call("fork", (), child, parent))
        self.forked(child, parent)
        return child

    def exited(self, proc: str) -> None:
        self.calls.append(Call("exit", (), None, proc))
        self.procs.remove(proc)

    def read_back_file(self, fd: str, proc: str | None, at: int | None = None) -> None:
        """After the file behind ``fd`` changed (a write through the descriptor, ftruncate): read
        back through its mappings -- the byte at file offset ``at`` (else every page of the mapping)
        in every process that maps it; READBACK_PERCENT of the time."""
        if not self.ok("load") or not self.r.chance(READBACK_PERCENT):
            return
        for base, (f, first) in list(self.base_file.items())[-2:]:
            if f != fd:
                continue
            pages = next((n for b, n, w in self.bases if b == base and w), None)
            if pages is None:
                continue        # placed by the kernel outside the window: not beside it
            if at is None:
                self.read_back(Ref(base), _hex(pages * PAGE), None, proc, always=True)
            elif 0 <= at - first * PAGE < pages * PAGE:
                off = at - first * PAGE
                for p in self.mappers(Ref(base), proc):
                    self.calls.append(Call("load", (Ref(base, off) if off else Ref(base),), None, p))

    def madvise_args(self, room: int | None, proc: str | None) -> tuple[Int, Int | Flags]:
        """A length and an advice: any of ADVICE, sometimes a number no kernel knows, and the memory
        failure advice over a zero length (or in a process that gave up CAP_SYS_ADMIN: EPERM)."""
        r = self.r
        if r.chance(5):
            return (self.length(room) if proc in self.dropped else Int(0)), Flags((r.choice(INJECT_ADVICE),))
        length = self.length(room)
        if r.chance(8):
            return length, Int(r.choice([99, 26, 104]))
        return length, Flags((r.choice(self.advice),))

    def fd_arg(self, proc: str | None, pipes: bool = True) -> Int | Ref:
        """A descriptor ``proc`` has (a file that can be mapped; with ``pipes`` sometimes a pipe), made
        first when there is none (a step of its own); rarely one that is not open."""
        mine = self.fds_of(proc)
        if not mine and (self.ok("memfd_create") or self.ok("open_file") or self.ok("shm_open")) and self.r.chance(70):
            self.more("file", proc)
            mine = self.fds_of(proc)
        pipes_here = [f for f in self.pipes if proc in self.fd_procs.get(f, ())] if pipes else []
        if pipes_here and self.r.chance(8):
            return Ref(self.r.choice(pipes_here))
        if mine and self.r.chance(94):
            return Ref(self.r.choice(mine))
        return Int(self.r.choice([-1, 9999]))

    def file_offset(self) -> Int:
        """An offset in a file: near its first pages and at BYTE_OFFSETS of them mostly; negative,
        far beyond the end, or where pos + 1 overflows sometimes."""
        r = self.r
        kind = r.weighted([(88, "near"), (4, "negative"), (4, "far"), (4, "llong")])
        if kind == "near":
            return _hex(PAGE * r.integer(0, 4) + r.choice(BYTE_OFFSETS))
        if kind == "negative":
            return Int(r.choice([-1, -PAGE]))
        if kind == "far":
            return _hex(1 << 32)
        return _hex(self.edge(0, LLONG_MAX) if r.chance(50) else LLONG_MAX)   # -1, 0, LLONG_MAX (pos + 1 overflows), 2^63

    def fd_value(self, fd: Int | Ref, off: int | None, salt: int = 0) -> Int:
        """The byte a write through the descriptor puts at file offset ``off``: the address-derived
        pattern of (descriptor, offset), so a byte read back from the wrong place shows."""
        return _hex(pattern(Ref(fd.name, off) if isinstance(fd, Ref) and off is not None and off >= 0 else Int(off or 0), salt))

    def count(self) -> Int:
        return Int(self.r.weighted([(80, 1), (8, 3), (5, 0), (4, PAGE + 1), (3, 2 * PAGE)]), hex=False)

    def fd_io(self, what: str, proc: str | None) -> None:
        """read, write, pread, pwrite, lseek on a descriptor of the program (the fd path of a file);
        a write is read back through the descriptor and through the file's mappings."""
        r = self.r
        c = self.calls.append
        fd = self.fd_arg(proc, pipes=what != "read")
        if what == "pread":
            c(Call("pread", (fd, self.file_offset()), self.name(), proc))
        elif what == "pwrite":
            off = self.file_offset()
            c(Call("pwrite", (fd, off, self.fd_value(fd, off.value), self.count()), self.name(), proc))
            self.seek_cur(fd, proc)     # pwrite leaves the offset where it was
            if isinstance(fd, Ref) and off.value >= 0 and r.chance(60):
                if self.ok("pread"):
                    c(Call("pread", (fd, off), self.name(), proc))
                self.read_back_file(fd.name, proc, off.value)
        elif what == "lseek":
            whence = r.choice(self.whence)
            off = self.file_offset() if r.chance(70) else Int(r.choice([0, 0, 1, -1]))
            c(Call("lseek", (fd, off, whence), self.name(), proc))
        else:
            off = None
            if isinstance(fd, Ref) and self.ok("lseek") and r.chance(60):
                off = PAGE * r.integer(0, 3) + r.choice(BYTE_OFFSETS)
                if self.edgy():
                    off = self.edge(0, LLONG_MAX)     # a read or write at the largest offset: EINVAL
                c(Call("lseek", (fd, _hex(off), Flags(("SEEK_SET",))), self.name(), proc))
            if what == "write":
                c(Call("write", (fd, self.fd_value(fd, off, 3), self.count()), self.name(), proc))
                self.seek_cur(fd, proc)     # write moves it past the bytes written (to the end with O_APPEND)
                if off is not None and r.chance(50):
                    if self.ok("read"):
                        c(Call("lseek", (fd, _hex(off), Flags(("SEEK_SET",))), self.name(), proc))
                        c(Call("read", (fd,), self.name(), proc))
                    self.read_back_file(fd.name, proc, off)
            else:
                c(Call("read", (fd,), self.name(), proc))
                if self.ok("lseek") and r.chance(40):
                    c(Call("lseek", (fd, Int(0), Flags(("SEEK_CUR",))), self.name(), proc))

    def seek_cur(self, fd: Int | Ref, proc: str | None) -> None:
        """lseek(fd, 0, SEEK_CUR) after a write or pwrite (SEEK_CUR_PERCENT): the offset the call left,
        which nothing else in a program reads (a write that forgets to advance it reads back fine)."""
        if isinstance(fd, Ref) and self.ok("lseek") and self.r.chance(SEEK_CUR_PERCENT):
            self.calls.append(Call("lseek", (fd, Int(0), Flags(("SEEK_CUR",))), self.name(), proc))

    def fsize_limit(self, proc: str | None) -> None:
        """set_fsize_limit (RLIMIT_FSIZE, for the rest of ``proc``'s life), and -- when ``proc`` has a
        descriptor -- a write that starts just below the limit (cut short at it) and one at it (EFBIG),
        each read back through the descriptor: the bytes below the limit written, none past it."""
        r = self.r
        c = self.calls.append
        lim = r.choice(FSIZE_LIMITS)
        c(Call("set_fsize_limit", (_hex(lim),), None, proc))
        mine = self.fds_of(proc)
        if not mine and 0 < lim < 1 << 40 and r.chance(60):
            self.more("file", proc)         # a file to meet the limit with (a step of its own)
            mine = self.fds_of(proc)
        if lim <= 0 or lim >= 1 << 40 or not mine or not self.ok("pwrite") or not r.chance(70):
            return
        fd = Ref(r.choice(mine))
        for at, n in ((max(lim - 2, 0), 4), (lim, 1)):
            c(Call("pwrite", (fd, _hex(at), self.fd_value(fd, at, 5), Int(n)), self.name(), proc))
        if self.ok("pread"):
            for at in (lim - 1, lim, lim + 1):
                c(Call("pread", (fd, _hex(at)), self.name(), proc))
        if self.ok("ftruncate") and r.chance(40):
            c(Call("ftruncate", (fd, _hex(lim + r.choice([1, 0, -1]))), None, proc))

    def map_pages(self, proc: str | None) -> None:
        """map_pages: a few one-page mappings with a hole after each (each a VMA of its own; EEXIST on a
        page already mapped, EINVAL past MAP_PAGES_MAX), then calls over the pages and the holes between
        them (munmap, mprotect, madvise, mlock, mremap, MAP_FIXED, map_pages again), each read back.
        MAP_PAGES_LIMIT_PERCENT of the time it maps until vm.max_map_count refuses, meets the limit with
        mmap, a splitting munmap and mremap, then unmaps the pages again (the recovery)."""
        r = self.r
        c = self.calls.append
        if r.chance(MAP_PAGES_LIMIT_PERCENT) and self.ok("munmap"):
            self.map_count_limit(proc)
            return
        if self.bases and r.chance(25):
            addr, room = self.addr_and_room()       # over an earlier mapping: EEXIST, or fills its holes
            if room is not None:
                addr = _hex(self.window_addr())
        else:
            addr = self.scenario_addr() if r.chance(60) else _hex(self.window_addr())
        n = r.weighted(MAP_PAGES_COUNTS)
        prot = Flags(r.choice(PROTS))
        c(Call("map_pages", (addr, Int(n), prot), self.name(), proc))
        span = _hex(max(1, min(n, 8) * 2 - 1) * PAGE)
        self.read_back(addr, span, None, proc, always=True)
        for _ in range(r.integer(0, 3)):
            what = r.weighted([(w, o) for w, o in MAP_PAGES_OPS if self.ok(o.split("-")[0])] or [(1, "none")])
            lo = r.integer(0, max(0, span.value // PAGE - 1))
            at = self._at(addr, lo * PAGE)
            if at is None:
                break
            length = _hex(PAGE * r.integer(1, max(1, span.value // PAGE - lo + 1)))
            if what == "munmap":
                c(Call("munmap", (at, length), None, proc))
            elif what == "mprotect":
                c(Call("mprotect", (at, length, Flags(r.choice(PROTS))), None, proc))
            elif what == "madvise":
                c(Call("madvise", (at, length, Flags((r.choice(["MADV_DONTNEED", "MADV_WILLNEED", "MADV_FREE",
                                                                "MADV_POPULATE_WRITE", "MADV_GUARD_INSTALL"]),))),
                       None, proc))
            elif what == "mlock":
                c(Call("mlock", (at, length), None, proc))
            elif what == "mremap":
                res = self.name()
                c(Call("mremap", (at, _hex(PAGE), _hex(PAGE * r.integer(1, 3)), Flags(("MREMAP_MAYMOVE",)), Int(0)),
                       res, proc))
            elif what == "mmap-fixed":
                c(Call("mmap", (at, length, Flags(r.choice(PROTS)), Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")),
                                Int(-1), Int(0)), self.name(), proc))
            elif what == "map_pages":
                c(Call("map_pages", (at, Int(r.integer(1, 3)), Flags(r.choice(PROTS))), self.name(), proc))
            else:
                break
            self.read_back(addr, span, None, proc, always=True)
        if "PROT_WRITE" in prot.names and self.ok("store") and r.chance(60):
            self.store(self._at(addr, r.choice(BYTE_OFFSETS)) or addr, proc)

    def map_count_limit(self, proc: str | None) -> None:
        """map_pages until vm.max_map_count refuses (ENOMEM; mm/mmap.c do_mmap), then at the limit: a new
        mapping, a munmap that would split a mapping in three, an mremap move, a MAP_FIXED over part of a
        mapping -- each refused with nothing changed, read back -- then the pages unmapped and room again."""
        r = self.r
        c = self.calls.append
        mine = self.map_in_window(3, ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS"), Int(-1), proc)
        self.store(Ref(mine, PAGE + r.choice(BYTE_OFFSETS)), proc)
        far = _hex(SANDBOX_WINDOW[0] + (1 << 32))
        c(Call("map_pages", (far, Int(MAP_PAGES_MAX), Flags(("PROT_READ",))), self.name(), proc))
        for what in r.choice([("mmap", "munmap"), ("munmap", "mremap"), ("mremap", "mmap-fixed"), ("mmap-fixed",),
                              ("mprotect", "munmap")]):
            if what == "mmap":
                c(Call("mmap", (self.scenario_addr(), _hex(PAGE), Flags(("PROT_READ",)),
                                Flags(("MAP_PRIVATE", "MAP_ANONYMOUS")), Int(-1), Int(0)), self.name(), proc))
            elif what == "munmap":
                c(Call("munmap", (Ref(mine, PAGE), _hex(PAGE)), None, proc))
            elif what == "mprotect":
                c(Call("mprotect", (Ref(mine, PAGE), _hex(PAGE), Flags(("PROT_READ",))), None, proc))
            elif what == "mremap":
                c(Call("mremap", (Ref(mine), _hex(3 * PAGE), _hex(3 * PAGE), Flags(("MREMAP_MAYMOVE", "MREMAP_FIXED")),
                                  self.scenario_addr()), self.name(), proc))
            else:
                c(Call("mmap", (Ref(mine, PAGE), _hex(PAGE), Flags(("PROT_READ",)),
                                Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")), Int(-1), Int(0)), self.name(), proc))
            self.read_back(Ref(mine), _hex(3 * PAGE), None, proc, always=True)
        c(Call("munmap", (far, _hex(2 * MAP_PAGES_MAX * PAGE)), None, proc))
        c(Call("munmap", (Ref(mine, PAGE), _hex(PAGE)), None, proc))
        self.read_back(Ref(mine), _hex(3 * PAGE), None, proc, always=True)

    def fds_of(self, proc: str | None) -> list[str]:
        """Descriptors open in ``proc``: a number means something else in another process."""
        return [f for f in self.fds if proc in self.fd_procs.get(f, ())]

    def more(self, what: str, proc: str | None) -> bool:
        """The calls beyond the original slice; True when ``what`` was handled here."""
        r = self.r
        c = self.calls.append
        if what == "file":
            kind = r.weighted([(5, "memfd"), (3, "file"), (3, "shm"), (1, "pipe")])
            fd = self.name()
            if kind == "memfd" and self.ok("memfd_create"):
                c(Call("memfd_create", (Str(r.choice(["f", "g", "x" * 250, "x" * 249])), _hex(r.choice(MEMFD_FLAGS))), fd, proc))
            elif kind == "file" and self.ok("open_file"):
                mode = (r.choice(["O_RDWR", "O_RDWR", "O_RDONLY", "O_WRONLY"]),)
                c(Call("open_file", (_hex(PAGE * r.integer(0, 4) + r.choice([0, 0, 1, 2048])),
                                     Flags(mode + (("O_APPEND",) if r.chance(APPEND_PERCENT) else ()))), fd, proc))
            elif kind == "shm" and self.ok("shm_open"):
                oflag = self.shm_oflag()
                c(Call("shm_open", (Str(r.choice(["/c0", "/c1", "c2", "/", "/a/b"] + SHM_LONG_NAMES)), Flags(oflag),
                                    _hex(r.choice(SHM_MODES))), fd, proc))
            elif self.ok("pipe"):
                c(Call("pipe", (), fd, proc))
            else:
                return True
            self.fd_procs[fd] = {proc}
            if kind == "pipe":
                self.pipes.append(fd)
            else:
                self.fds.append(fd)
                if self.ok("ftruncate") and r.chance(70):
                    c(Call("ftruncate", (Ref(fd), _hex(PAGE * r.integer(0, 4) + r.choice([0, 0, 100]))), None, proc))
            return True
        if what in ("read", "write", "pread", "pwrite", "lseek"):
            self.fd_io(what, proc)
            return True
        if what == "mseal":
            addr, length, room = self.range_arg()
            c(Call("mseal", (addr, length, Int(0) if r.chance(90) else Int(r.choice([1, 2]))), None, proc))
            self.read_back(addr, length, room, proc)
            return True
        if what == "ftruncate":
            mine = self.fds_of(proc)
            fd = Ref(r.choice(mine)) if mine and r.chance(85) else Int(r.choice([-1, 9999]))
            c(Call("ftruncate", (fd, _hex(PAGE * r.integer(0, 4) + r.choice([0, 0, 1, 2048])) if r.chance(95) else Int(-1)),
                   None, proc))
            if isinstance(fd, Ref):
                self.read_back_file(fd.name, proc)
            return True
        if what == "close":
            mine = self.fds_of(proc)
            fd = Ref(r.choice(mine)) if mine and r.chance(85) else Int(9999)
            c(Call("close", (fd,), None, proc))
            return True
        if what == "shm_unlink":
            # (a name too long is ENAMETOOLONG from the kernel, or ENOENT from glibc past its buffer)
            c(Call("shm_unlink", (Str(r.choice(["/c0", "/c1", "c2", "/nope", "/a/b", "/u0"] + SHM_LONG_NAMES)),), None, proc))
            return True
        if what == "mremap":
            addr, room = self.addr_and_room()
            flags = r.weighted(self.mremap_flags)
            new_addr = _hex(self.window_addr()) if "MREMAP_FIXED" in flags else Int(0)
            old = self.length(room)
            if r.chance(EDGE_PERCENT):
                # the old range at an exact limit of the address space (never read back)
                (addr, old), room = self.edge_range(), 0
            new = _hex(PAGE * r.integer(1, 8)) if r.chance(90) else Int(0)
            if "MREMAP_FIXED" in flags and r.chance(4 * EDGE_PERCENT):
                # a destination ending exactly at TASK_SIZE, or one page past it
                new_addr = _hex(self.task_size - new.value + r.choice([0, 0, PAGE]))
            res = self.name()
            fl: Int | Flags = Flags(flags) if flags else Int(0)
            if r.chance(6):
                fl = Int(MREMAP_UNKNOWN | (1 if "MREMAP_MAYMOVE" in flags or r.chance(50) else 0))
            c(Call("mremap", (addr, old, new, fl, new_addr), res, proc))
            self.read_back(addr, old, room, proc)
            if r.chance(40) and (self.ok("mincore") or self.ok("pfn_of")):
                # the moved pages keep their frames and stay resident: a page table not moved shows here
                if self.ok("mincore"):
                    c(Call("mincore", (Ref(res), new), self.name(), proc))
                if self.ok("pfn_of"):
                    c(Call("pfn_of", (Ref(res),), self.name(), proc))
            self.bases.append((res, max(1, new.value // PAGE), "MREMAP_FIXED" in flags))
            self.base_procs[res] = {proc}
            if "MREMAP_FIXED" in flags:
                # the destination, by its number: moved pages, or (refused, or a prefix moved) what was there
                self.read_back(new_addr, new, None, proc)
            return True
        if what == "madvise":
            addr, room = self.addr_and_room()
            length, adv = self.madvise_args(room, proc)
            if r.chance(EDGE_PERCENT):
                (addr, length), room = self.edge_range(), 0
            c(Call("madvise", (addr, length, adv), None, proc))
            if adv == Flags(("MADV_GUARD_INSTALL",)) and room is None and 0 < length.value <= 8 * PAGE \
                    and all(self.ok(n) for n in ("munmap", "mmap")) and r.chance(50):
                # the markers go with the mapping: a new mapping there reads zeros, not SIGSEGV
                c(Call("munmap", (addr, length), None, proc))
                c(Call("mmap", (addr, length, Flags(("PROT_READ", "PROT_WRITE")),
                                Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")), Int(-1), Int(0)), self.name(), proc))
                self.read_back(addr, length, room, proc, always=True)
                return True
            self.read_back(addr, length, room, proc)
            return True
        if what == "msync":
            addr, length, room = self.range_arg()
            c(Call("msync", (addr, length, r.choice(self.ms_flags)), None, proc))
            self.read_back(addr, length, room, proc)
            return True
        if what == "mincore":
            addr, length, room = self.range_arg()
            c(Call("mincore", (addr, length), self.name(), proc))
            return True
        if what == "mlock":
            addr, length, room = self.range_arg()
            if r.chance(60):
                c(Call("mlock", (addr, length), None, proc))
            else:
                c(Call("mlock2", (addr, length, r.choice(MLOCK_FLAGS)), None, proc))
            return True
        if what == "munlock":
            addr, length, room = self.range_arg()
            c(Call("munlock", (addr, length), None, proc))
            return True
        if what == "mlockall":
            c(Call("mlockall", (r.choice(self.mcl_flags),), None, proc))
            return True
        if what == "munlockall":
            c(Call("munlockall", (), None, proc))
            return True
        if what in ("pfn_of", "thp_mapped", "get_node"):
            c(Call(what, (self.addr_arg(),), self.name(), proc))
            return True
        if what in ("minflt", "majflt"):
            c(Call(what, (), self.name(), proc))
            return True
        if what == "mbind":
            addr, length, room = self.range_arg()
            mode: Flags | Int = Flags((r.choice(["MPOL_DEFAULT", "MPOL_BIND", "MPOL_PREFERRED", "MPOL_INTERLEAVE",
                                                 "MPOL_LOCAL"]),))
            if r.chance(25):
                mode = Int(r.choice([5, 6, 7]))      # MPOL_PREFERRED_MANY, MPOL_WEIGHTED_INTERLEAVE, past MPOL_MAX
            elif self.edgy():
                mode = Int(self.edge(0, 6))          # MPOL_DEFAULT .. MPOL_WEIGHTED_INTERLEAVE (MPOL_MAX - 1)
            c(Call("mbind", (addr, length, mode, Int(r.choice([0, 1, 1, 2, 2, 3]))), None, proc))
            return True
        if what == "drop_privileges":
            if proc is not None and proc not in self.dropped:
                self.dropped.add(proc)
                c(Call("drop_privileges", (), None, proc))
            return True
        if what == "set_fsize_limit":
            self.fsize_limit(proc)
            return True
        if what == "map_pages":
            self.map_pages(proc)
            return True
        if what == "set_memlock_limit":
            c(Call("set_memlock_limit", (_hex(r.choice([0, PAGE, 4 * PAGE, 8 << 20, 1 << 40]) if not self.edgy()
                                              else self.edge(PAGE, 4 * PAGE)),), None, proc))
            return True
        if what == "memory_limit":
            c(Call("memory_limit", (Int(r.integer(4, 40)), Int(r.choice([0, 0, 4, 16, 64]))), None, None))
            return True
        if what == "set_swappiness":
            c(Call("set_swappiness", (Int(self.edge(0, 200) if self.edgy() else r.choice([0, 60, 100, 200])),),
                   None, None))
            return True
        if what == "reclaim":
            c(Call("reclaim", (Int(r.integer(1, 8)),), self.name(), None))
            return True
        if what == "tick":
            c(Call("tick", (), None, proc))
            return True
        if what == "wss":
            c(Call("wss", (Int(r.integer(1, 10)),), self.name(), proc))
            return True
        if what == "oom":
            c(Call("oom", (), self.name(), None))
            return True
        if what == "khugepaged":
            c(Call("khugepaged", (), self.name(), proc))
            return True
        return False


def program(r: Chooser, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """A program of the os layer's calls in ``calls`` (all when None), every decision drawn from ``r``."""
    b = OsGen(r, calls, facts)
    n = r.integer(1, MAX_CALLS)
    while len(b.calls) < n and not r.exhausted:
        b.step()
    return Program(tuple(b.calls))
