"""The os layer's address spaces: VMAs, page tables, pages and memory objects, and the
POSIX memory calls on them, as the Linux x86-64 kernel implements them.

Every rule names its clause (``memspec clauses`` lists them with citations).
Where POSIX leaves a choice (the address mmap picks, whether a PROT_EXEC-only
page is readable, whether a fault got a huge page), the model computes the
allowed set and adopts what the target chose.  Where Linux differs from POSIX,
the model follows Linux and the clause records the difference.

Accesses go through the page-fault path of ``model.fault`` (the seed's nine
steps); memory pressure (reclaim, swap, the OOM killer, working sets, THP
collapse) lives in ``model.pressure``.

Worked example: ``a = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)``
then ``store(a, 1)`` -> SIGSEGV (clause ``posix.mmap.prot-enforced-write``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

from memspec.consts import MADV, MAP, MCL, MREMAP, MS, O_FLAGS, PAGE_SIZE, PROT, errno_name
from memspec.records import OK, Outcome

from . import fault
from .expect import Expect, errno, exactly
from .fault import R, W, X, Pte
from .intervals import IntervalMap
from .pages import ZERO_PAGE, FrameTable, MemObject, Page

PAGE_MASK = ~(PAGE_SIZE - 1)
TASK_SIZE = 0x7FFFFFFFF000          # x86-64, 4-level paging: 128 TiB - one page
DEFAULT_MMAP_BASE = 0x7F0000000000   # where the model's own top-down placement starts
MAP_TYPE = 0x0F
MAP_DROPPABLE = 0x08                 # Linux 6.11+
PROT_RWX = PROT["PROT_READ"] | PROT["PROT_WRITE"] | PROT["PROT_EXEC"]
GROWS = PROT["PROT_GROWSDOWN"] | PROT["PROT_GROWSUP"]
HPAGE = 2 << 20                      # a PMD-mapped transparent huge page
HPAGE_NR = HPAGE // PAGE_SIZE
LLONG_MAX = (1 << 63) - 1
NAME_MAX = 255
SHM_NAME_BUF = 260     # glibc posix/shm-directory.c: struct shmdir_name's room for the name
NOBODY = 65534
MAX_INSN = 15          # Intel SDM Vol. 2A §2.1: an instruction is at most 15 bytes long

U64 = (1 << 64) - 1
# Arguments the kernel receives as unsigned long: -1 arrives as 0xffff_ffff_ffff_ffff.
_UNSIGNED = {"addr", "length", "offset", "old_addr", "old_size", "new_size", "new_addr"}


def _registers(name: str, args: tuple) -> tuple:
    from memspec.calls import CALLS
    return tuple(a & U64 if isinstance(a, int) and p.name in _UNSIGNED else a
                 for p, a in zip(CALLS[name].params, args))


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & PAGE_MASK


@dataclass(frozen=True, slots=True)
class Vma:
    """One mapping (vm_area_struct): protection, sharing, the object behind it, its flags.

    ``obj`` names a memory object (shmem or file), or is ``None`` for private
    anonymous memory.  Address ``x`` maps page ``(x - origin) / PAGE_SIZE`` of the
    object (vm_pgoff), so splitting a VMA needs no arithmetic.  ``shared`` is
    MAP_SHARED.  ``clause`` is the clause whose call last set this range (blamed on mismatch).
    """

    prot: int
    shared: bool
    obj: int | None = None
    origin: int = 0
    exec_only: bool = False    # PROT_EXEC alone under PKU: an execute-only protection key
    clause: str = "posix.mmap.maps-range"
    locked: bool = False       # VM_LOCKED
    onfault: bool = False      # VM_LOCKONFAULT
    huge: bool | None = None   # MADV_HUGEPAGE (True) / MADV_NOHUGEPAGE (False)
    dontfork: bool = False     # MADV_DONTFORK
    policy: tuple[int, int] = (0, 0)   # NUMA (mode, nodemask) from mbind
    may_write: bool = True     # VM_MAYWRITE: a shared mapping of a read-only fd can never be made writable

    @property
    def perms(self) -> str:
        return (("r" if self.prot & R else "-") + ("w" if self.prot & W else "-")
                + ("x" if self.prot & X else "-") + ("s" if self.shared else "p"))

    def pgoff(self, page: int) -> int:
        return (page - self.origin) // PAGE_SIZE


@dataclass(slots=True)
class Fd:
    obj: int | None      # None: a pipe
    read: bool
    write: bool


@dataclass(slots=True)
class Config:
    """Machine facts the model needs; the defaults are Linux 6.x on x86-64."""

    mmap_min_addr: int = 4096
    task_size: int = TASK_SIZE
    mmap_base: int = DEFAULT_MMAP_BASE
    # ranges known to hold no mapping of the target's own (the linux target's
    # sandbox window): a hint there that the model sees free must be honoured.
    quiet_ranges: tuple[tuple[int, int], ...] = ()
    cap_sys_rawio: bool = True       # root: mmap below mmap_min_addr allowed
    privileged: bool = True          # CAP_IPC_LOCK: mlock ignores RLIMIT_MEMLOCK (root)
    memlock_soft: int = 8 << 20
    memlock_hard: int = 8 << 20
    base_vm: int = 0                 # bytes the target's process maps besides the program (total_vm)
    umask: int = 0o022
    ram_pages: int = 1 << 22
    swap_pages: int = 0
    swappiness: int = 60
    nodes: int = 1
    thp: str = "madvise"             # /sys/kernel/mm/transparent_hugepage/enabled
    thp_certain: bool = False        # a fault in an eligible range surely gets a huge page (the model alone)
    # PROT_EXEC alone is execute-only: the CPU has protection keys and the kernel enabled them
    # (cpuinfo ``pku`` and ``ospke``); without them x86 page tables cannot express exec-without-read.
    # A target that does not report it (an implementation of its own over the protocol) is taken
    # to make PROT_EXEC readable, as POSIX and x86 without protection keys do.
    exec_only: bool = False
    page_size: int = PAGE_SIZE       # the model knows 4 KiB pages only; any other size: every call unknown
    kernel: tuple[int, int] | None = None   # (major, minor) of the running kernel; None: recent (6.x)
    overcommit_memory: int = 0       # /proc/sys/vm/overcommit_memory: 0 guess, 1 always, 2 never
    overcommit_ratio: int = 50       # /proc/sys/vm/overcommit_ratio (mode 2's commit limit)
    max_map_count: int = 65530       # /proc/sys/vm/max_map_count
    base_maps: int = 0               # mappings the target's process has besides the program's
    rlimit_as: int = -1              # RLIMIT_AS soft limit in bytes, -1 unlimited
    rlimit_data: int = -1            # RLIMIT_DATA soft limit in bytes, -1 unlimited
    rlimit_nofile: int = -1          # RLIMIT_NOFILE soft limit, -1 unlimited
    cap_dac_override: bool = True    # root: file modes do not bind (CAP_DAC_OVERRIDE)
    cap_fowner: bool = True          # root: may unlink others' names in sticky /dev/shm (CAP_FOWNER)
    cap_setuid: bool = True          # may change user and group IDs (CAP_SETUID and CAP_SETGID)
    thp_defrag: str = "madvise"      # .../transparent_hugepage/defrag: whether a fault waits for a huge page

    @classmethod
    def from_facts(cls, facts: dict) -> "Config":
        """Build from a target's reported facts (``Target.facts()`` / protocol ``hello``)."""
        c = cls()
        for key, conv in (("mmap_min_addr", int), ("cap_sys_rawio", bool), ("privileged", bool),
                          ("memlock_soft", int), ("memlock_hard", int), ("base_vm", int), ("umask", int),
                          ("ram_pages", int), ("swap_pages", int), ("swappiness", int), ("nodes", int),
                          ("thp", str), ("thp_certain", bool), ("exec_only", bool), ("page_size", int),
                          ("overcommit_memory", int), ("overcommit_ratio", int), ("max_map_count", int),
                          ("base_maps", int), ("rlimit_as", int), ("rlimit_data", int), ("rlimit_nofile", int),
                          ("cap_dac_override", bool), ("cap_fowner", bool), ("cap_setuid", bool), ("thp_defrag", str),
                          ("task_size", int)):
            if key in facts:
                setattr(c, key, conv(facts[key]))
        if "exec_only" not in facts and "pku" in facts:
            c.exec_only = bool(facts["pku"])
        if "kernel" in facts:
            c.kernel = kernel_version(str(facts["kernel"]))
        if "quiet_ranges" in facts:
            c.quiet_ranges = tuple((int(a), int(b)) for a, b in facts["quiet_ranges"])
        return c


def _or_errno(ok: Expect, clause: str, name: str) -> Expect:
    """``ok``, or the call fails with ``name`` under ``clause`` (a limit the model cannot pin down)."""
    def allowed(o: Outcome) -> str | None:
        return None if o.errno == name else ok.judge(o)
    return Expect(ok.clause, ok.default, f"{ok.describe} or {name} ({clause})", predicate=allowed,
                  impl_defined=True, blame_by=ok.blame_by, covers=tuple(dict.fromkeys(ok.covers + (ok.clause, clause))))


def kernel_version(release: str) -> tuple[int, int] | None:
    """``uname -r`` (``6.18.44-fc``) as (major, minor); None if it does not start with numbers."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or "0")
    except (IndexError, ValueError):
        return None


# Calls' arguments that older kernels do not know, with the release that brought each
# (the man pages' "since Linux x.y"): before it the kernel rejects them as unknown.
SINCE = {
    "MAP_FIXED_NOREPLACE": (4, 17),    # mmap(2): MAP_FIXED_NOREPLACE (since Linux 4.17)
    "MAP_DROPPABLE": (6, 11),          # mmap(2): MAP_DROPPABLE (since Linux 6.11)
    "MADV_FREE": (4, 5),               # madvise(2): MADV_FREE (since Linux 4.5)
    "MADV_COLD": (5, 4),               # madvise(2): MADV_COLD (since Linux 5.4)
    "MADV_PAGEOUT": (5, 4),            # madvise(2): MADV_PAGEOUT (since Linux 5.4)
    "MREMAP_DONTUNMAP": (5, 7),        # mremap(2): MREMAP_DONTUNMAP (since Linux 5.7)
}


class Mm:
    """One process: its address space (mm_struct), page tables, TLB, files and counters."""

    def __init__(self, config: Config) -> None:
        self.vmas: IntervalMap[Vma] = IntervalMap()
        self.anon: dict[int, Page] = {}       # page address -> private (anon_vma) page
        self.pte: dict[int, Pte] = {}         # page address -> present PTE
        self.tlb: dict[int, Pte] = {}         # cached translations (filled on access, flushed on change)
        self.maybe: set[int] = set()          # pages whose PTE the model cannot know (fault-around, fork copy)
        self.huge: set[int] = set()           # 2 MiB bases mapped by a huge PMD
        self.thp_maybe: set[int] = set()      # 2 MiB bases where a fault may have got a huge page
        self.thp_split: set[int] = set()      # PMD split, pages maybe still one huge folio (deferred split)
        self.fds: dict[int, Fd] = {}
        self.pid = 1
        self.minflt = 0                       # faults the model is sure of
        self.minflt_maybe = 0                 # faults that may or may not have happened
        self.majflt = 0
        self.privileged = config.privileged
        self.dac_override = config.cap_dac_override
        self.fowner = config.cap_fowner
        self.can_setuid = config.cap_setuid
        self.uid = 0
        self.memlock_soft = config.memlock_soft
        self.mcl_future = 0                   # mlockall(MCL_FUTURE[|MCL_ONFAULT]) in force
        self.vtime = 0                        # this process's virtual time (Denning)
        self.last_ref: dict[int, int] = {}    # page -> virtual time of its last reference
        self.flushed: set[int] = set()        # pages whose translation munmap/mprotect removed or narrowed
        self.unlocked_at_fork: set[int] = set()   # pages locked in the parent, not here
        self.cow_faults = 0                   # write faults on pages shared copy-on-write

    def mapped_pages(self, start: int, end: int) -> Iterator[tuple[int, int, Vma]]:
        for s, e, v in self.vmas.overlapping(start, end):
            yield max(s, start), min(e, end), v

    def locked_vm(self) -> int:
        return sum(e - s for s, e, v in self.vmas.items() if v.locked)

    def total_vm(self) -> int:
        return sum(e - s for s, e, _ in self.vmas.items())


class System:
    """All processes, memory objects and frames; the os layer's whole state."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        main = Mm(self.config)
        self.procs: dict[str, Mm] = {"main": main}
        self.objects: dict[int, MemObject] = {}
        self.shm_names: dict[str, int] = {}
        self.frames = FrameTable(self.config.ram_pages, self.config.swap_pages, self.config.nodes)
        self.swappiness = self.config.swappiness
        self._next_obj = 1
        self._next_pid = 2
        self._pending_fork: Mm | None = None
        self._seq = 0
        self.lru: list[Page] = []             # resident evictable pages, oldest first (the clock's ring)
        self.clock_hand = 0
        self.pfn_seen: dict[int, Page] = {}   # target pfn -> model page (adopted from pfn_of)
        self.pfn_of_page: dict[int, tuple[Page, int]] = {}
        self.pfn_seen_zero = 0
        self.killed: list[str] = []
        self.last_fault: fault.PageFault | None = None
        self.locked_evictions: list[list[str]] = []   # evictions of locked pages (none may happen)
        self.stats: dict[str, int] = {k: 0 for k in (
            "faults_minor", "faults_major", "faults_invalid", "frames_allocated", "cow_copies", "swap_ins",
            "swap_outs", "writebacks", "evictions", "file_reads", "oom_kills", "thp_faults", "thp_collapses",
            "thp_splits", "tlb_flushes")}

    # -- bookkeeping ------------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def lru_add(self, page: Page) -> None:
        page.lru_seq = self.next_seq()
        page.referenced = True
        if page not in self.lru:
            self.lru.append(page)

    def lru_del(self, page: Page) -> None:
        try:
            self.lru.remove(page)
        except ValueError:
            pass

    def numa_node(self, mm: Mm, v: Vma, page: int) -> int:
        """Where a new page of ``v`` goes (mm/mempolicy.c): first touch (node 0, this model's
        only CPU node), the lowest node of a bind/preferred mask, or interleave by page offset."""
        from .pressure import policy_node
        return policy_node(self, v, page)

    # -- entry point -------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        if self.config.page_size != PAGE_SIZE:
            return Expect("memspec.host.page-size", OK, f"(pages of {self.config.page_size} bytes: not modelled)",
                          unknown=True)
        mm = self.procs.get(proc)
        if mm is None:
            return errno("memspec.proc.exited", "ESRCH")
        return getattr(self, "_expect_" + name)(mm, *_registers(name, args))

    def has(self, feature: str) -> bool:
        """Whether the running kernel knows ``feature`` (SINCE); an unknown version is recent."""
        k = self.config.kernel
        return k is None or k >= SINCE[feature]

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        """Adopt ``outcome`` (already judged allowed) as what happened."""
        mm = self.procs.get(proc)
        if mm is None or self.config.page_size != PAGE_SIZE:
            return
        getattr(self, "_apply_" + name)(proc, mm, outcome, *_registers(name, args))

    # -- mmap ------------------------------------------------------------------

    def _mmap_check(self, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Expect | None:
        c = self.config
        # arch/x86/kernel/sys_x86_64.c: the byte offset must be page aligned.
        if offset & ~PAGE_MASK:
            return errno("posix.mmap.einval-offset", "EINVAL")
        f = None
        if not flags & MAP["MAP_ANONYMOUS"]:
            # mm/mmap.c ksys_mmap_pgoff: fget(fd) before anything else.
            f = mm.fds.get(fd if fd < (1 << 63) else fd - (1 << 64))
            if f is None:
                return errno("posix.mmap.ebadf", "EBADF")
        if flags & MAP["MAP_HUGETLB"] or flags & MAP["MAP_GROWSDOWN"]:
            return Expect("linux.mmap.hugetlb-growsdown", OK, "not modelled", unknown=True)
        if flags & MAP["MAP_FIXED_NOREPLACE"] and not self.has("MAP_FIXED_NOREPLACE"):
            # before 4.17 the flag is an unknown bit: ignored, and the address only a hint
            return Expect("linux.mmap.fixed-noreplace-maps", OK, "MAP_FIXED_NOREPLACE before Linux 4.17: not modelled",
                          unknown=True)
        if length == 0:
            return errno("posix.mmap.einval-len0", "EINVAL")
        plen = page_align(length)
        if plen == 0 or plen > (1 << 64) - 1:
            return errno("linux.mmap.enomem-len-overflow", "ENOMEM")
        fixed = bool(flags & (MAP["MAP_FIXED"] | MAP["MAP_FIXED_NOREPLACE"]))
        if plen > c.task_size:
            return errno("linux.mmap.enomem-too-long", "ENOMEM")
        if fixed:
            if addr >= (1 << 64) - 4095:
                # mm/mmap.c __get_unmapped_area: a MAP_FIXED address passes through
                # get_area unchanged and IS_ERR_VALUE() reads the top 4095 values as -errno.
                return errno("linux.mmap.fixed-addr-is-err-value", errno_name((1 << 64) - addr))
            if addr > c.task_size - plen:
                return errno("linux.mmap.fixed-enomem-beyond-task-size", "ENOMEM")
            if addr & ~PAGE_MASK:
                return errno("posix.mmap.fixed-einval-unaligned", "EINVAL")
            if addr < c.mmap_min_addr and not (c.cap_sys_rawio and mm.privileged):
                return errno("linux.mmap.eperm-below-min-addr", "EPERM")
            if flags & MAP["MAP_FIXED_NOREPLACE"] and mm.vmas.any_overlap(addr, addr + plen):
                return errno("linux.mmap.fixed-noreplace-eexist", "EEXIST")
        if flags & MAP["MAP_LOCKED"] and not self._can_do_mlock(mm):
            return errno("linux.mlock.eperm-no-limit", "EPERM")
        mtype = flags & MAP_TYPE
        if f is not None:
            if f.obj is None:
                # mm/mmap.c do_mmap: a file without ->mmap (a pipe)
                if mtype in (MAP["MAP_SHARED"], MAP["MAP_SHARED_VALIDATE"], MAP["MAP_PRIVATE"]):
                    if not f.read:
                        return errno("posix.mmap.eacces-fd-mode", "EACCES")
                    return errno("posix.mmap.enodev", "ENODEV")
            # mm/mmap.c file_mmap_ok: offset + length beyond MAX_LFS_FILESIZE
            if offset > LLONG_MAX or plen > LLONG_MAX or offset > LLONG_MAX - plen:
                return errno("posix.mmap.eoverflow", "EOVERFLOW")
            if mtype in (MAP["MAP_SHARED"], MAP["MAP_SHARED_VALIDATE"]):
                legacy = 0xFFFFF & ~(MAP["MAP_SYNC"] | MAP["MAP_FIXED_NOREPLACE"]) | MAP["MAP_FIXED_NOREPLACE"]
                if mtype == MAP["MAP_SHARED_VALIDATE"] and flags & ~_LEGACY_MAP_MASK:
                    return errno("linux.mmap.eopnotsupp-validate", errno_name(95))   # EOPNOTSUPP
                del legacy
                if prot & W and not f.write:
                    return errno("posix.mmap.eacces-fd-mode", "EACCES")
            elif mtype != MAP["MAP_PRIVATE"]:
                return errno("posix.mmap.einval-type", "EINVAL")
            if not f.read:
                return errno("posix.mmap.eacces-fd-mode", "EACCES")
            return None
        if mtype not in (MAP["MAP_SHARED"], MAP["MAP_PRIVATE"]) and not (
                mtype == MAP_DROPPABLE and self.has("MAP_DROPPABLE")):
            # For anonymous memory MAP_SHARED_VALIDATE (3) falls to this default too.
            return errno("posix.mmap.einval-type", "EINVAL")
        return None

    def _expect_mmap(self, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Expect:
        bad = self._mmap_check(mm, addr, length, prot, flags, fd, offset)
        if bad is not None:
            return bad
        plen = page_align(length)
        if flags & (MAP["MAP_FIXED"] | MAP["MAP_FIXED_NOREPLACE"]):
            clause = ("linux.mmap.fixed-noreplace-maps" if flags & MAP["MAP_FIXED_NOREPLACE"]
                      else "posix.mmap.fixed-exact")
            placed = exactly(clause, Outcome(value=addr))
            c = self.config
            if flags & MAP["MAP_FIXED_NOREPLACE"] and c.quiet_ranges and not any(
                    qs <= addr and addr + plen <= qe for qs, qe in c.quiet_ranges):
                # outside the target's quiet ranges its own mappings (libraries, heap) may live
                placed = Expect(clause, Outcome(value=addr), f"{addr:#x}, or EEXIST over a mapping of the target's own",
                                (Outcome(value=addr), Outcome(value=-1, errno="EEXIST")), impl_defined=True)
            replaced = sum(e - s for s, e, _ in mm.mapped_pages(addr, addr + plen))
        else:
            placed = self._placement(mm, addr, plen, bool(flags & MAP["MAP_32BIT"]),
                                     "posix.mmap.maps-range" if not flags & MAP["MAP_ANONYMOUS"]
                                     else "posix.mmap.new-range-free")
            replaced = 0
        if placed.default.errno:
            return placed
        shared = flags & MAP_TYPE in (MAP["MAP_SHARED"], MAP["MAP_SHARED_VALIDATE"])
        anon = bool(flags & MAP["MAP_ANONYMOUS"])
        # mm/mmap.c mmap_region: may_expand_vm (RLIMIT_AS, RLIMIT_DATA), then the commit charge of
        # accountable_mapping (private writable) or of a new shmem object (shared anonymous)
        data = bool(prot & W) and not shared
        account = (data or (shared and anon)) and not (
            flags & MAP["MAP_NORESERVE"] and self.config.overcommit_memory != 2)
        return self._limits(mm, placed, plen - replaced, plen - replaced if data else 0, plen if account else 0,
                            count_maps=True)

    def _limits(self, mm: Mm, ok: Expect, grow: int, data_grow: int, charge: int, count_maps: bool = False) -> Expect:
        """The limits a call that adds ``grow`` bytes of address space (``charge`` of them committed)
        may run into, as ``ok`` widened or replaced by their errno.  Each limit is a host fact;
        where the target's own use of it is only approximately known (the harness's mappings, its
        heap, other processes' commitments), the model allows both answers near the limit."""
        c = self.config
        slack = 64 << 20          # the target process's own memory moves while it runs
        if count_maps and c.max_map_count - c.base_maps < 4096:
            # mm/mmap.c do_mmap: mm->map_count > sysctl_max_map_count -> ENOMEM
            n = c.base_maps + len(mm.vmas) + 64
            if n >= c.max_map_count:
                ok = _or_errno(ok, "linux.mmap.enomem-max-map-count", "ENOMEM")
        if c.rlimit_as >= 0 and grow > 0:
            # mm/mmap.c may_expand_vm: total_vm + npages > RLIMIT_AS
            if grow > c.rlimit_as:
                return errno("linux.mmap.enomem-rlimit-as", "ENOMEM")
            if c.base_vm + mm.total_vm() + grow + slack > c.rlimit_as:
                ok = _or_errno(ok, "linux.mmap.enomem-rlimit-as", "ENOMEM")
        if c.rlimit_data >= 0 and data_grow > 0:
            # mm/mmap.c may_expand_vm: data_vm (private writable) + npages > RLIMIT_DATA
            if data_grow > c.rlimit_data:
                return errno("linux.mmap.enomem-rlimit-data", "ENOMEM")
            ok = _or_errno(ok, "linux.mmap.enomem-rlimit-data", "ENOMEM")
        if charge > 0:
            pages = charge // PAGE_SIZE
            # mm/util.c __vm_enough_memory, by vm.overcommit_memory
            if c.overcommit_memory == 0 and pages > c.ram_pages + c.swap_pages:
                return errno("linux.mmap.enomem-overcommit", "ENOMEM")
            if c.overcommit_memory == 2:
                limit = c.ram_pages * c.overcommit_ratio // 100 + c.swap_pages
                if pages > limit:
                    return errno("linux.mmap.enomem-overcommit", "ENOMEM")
                # what the rest of the machine has committed is not known: either answer
                ok = _or_errno(ok, "linux.mmap.enomem-overcommit", "ENOMEM")
        return ok

    def _placement(self, mm: Mm, addr: int, plen: int, bit32: bool, clause: str) -> Expect:
        c = self.config
        hi = 0x80000000 if bit32 else c.task_size
        lo = c.mmap_min_addr
        # mm/mmap.c round_hint_to_min: a hint below mmap_min_addr is raised to it.
        hint = addr & PAGE_MASK
        if hint and hint < c.mmap_min_addr:
            hint = page_align(c.mmap_min_addr)
        if bit32:
            # arch/x86/kernel/sys_x86_64.c: MAP_32BIT goes to the legacy bottom-up search
            # before the hint is looked at, so the hint is ignored.
            hint = 0
        honour = bool(hint) and hint + plen <= c.task_size and not mm.vmas.any_overlap(hint, hint + plen) \
            and any(qs <= hint and hint + plen <= qe for qs, qe in c.quiet_ranges)
        default = self._pick(mm, hint, plen, lo, hi)
        if default is None:
            return errno("posix.mmap.enomem-no-room", "ENOMEM")
        if honour:
            return exactly("linux.mmap.hint-used-when-free", Outcome(value=hint))

        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None:
                return f"expected an address, observed {o.describe()}"
            a = o.value
            if a & ~PAGE_MASK:
                return f"address {a:#x} is not page aligned"
            if a < lo or a + plen > hi:
                return f"address {a:#x}+{plen:#x} is outside [{lo:#x}, {hi:#x})"
            if mm.vmas.any_overlap(a, a + plen):
                return f"[{a:#x}, {a + plen:#x}) overlaps an existing mapping"
            return None

        if bit32:
            clause = "linux.mmap.32bit-below-2g"
        return Expect(clause, Outcome(value=default), f"a free, page-aligned range of {plen:#x} bytes",
                      predicate=allowed, impl_defined=True)

    def _pick(self, mm: Mm, hint: int, plen: int, lo: int, hi: int) -> int | None:
        if hint and hint + plen <= hi and not mm.vmas.any_overlap(hint, hint + plen):
            return hint
        top = min(hi, self.config.mmap_base)
        for glo, ghi in mm.vmas.gaps(lo, top):
            if ghi - glo >= plen:
                return ghi - plen
        for glo, ghi in mm.vmas.gaps(lo, hi):
            if ghi - glo >= plen:
                return ghi - plen
        return None

    def _new_object(self, kind: str, size: int, name: str = "", mode: int = 0o600, uid: int = 0) -> MemObject:
        o = MemObject(self._next_obj, kind, size, name, mode, uid)
        self._next_obj += 1
        self.objects[o.id] = o
        return o

    def _apply_mmap(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int, flags: int,
                    fd: int, offset: int) -> None:
        if not o.ok or o.value is None:
            return
        start, end = o.value, o.value + page_align(length)
        shared = flags & MAP_TYPE in (MAP["MAP_SHARED"], MAP["MAP_SHARED_VALIDATE"])
        obj = None
        origin = 0      # anonymous private memory: pgoff follows the address, so VMAs merge
        may_write = True
        if not flags & MAP["MAP_ANONYMOUS"]:
            f = mm.fds[fd if fd < (1 << 63) else fd - (1 << 64)]
            obj = f.obj
            origin = start - offset
            may_write = f.write or not shared
        elif shared:
            obj = self._new_object("anon-shared", end - start).id
            origin = start
        self._unmap(mm, start, end)
        prot &= PROT_RWX
        locked = bool(flags & MAP["MAP_LOCKED"]) or bool(mm.mcl_future)
        vma = Vma(prot, shared, obj, origin, exec_only=self._exec_only(prot), clause=(
            "posix.mmap.fixed-exact" if flags & MAP["MAP_FIXED"] else "posix.mmap.maps-range"),
            locked=locked, onfault=bool(mm.mcl_future & MCL["MCL_ONFAULT"]), may_write=may_write,
            huge=None)
        mm.vmas.set(start, end, vma)
        # mm/mmap.c do_mmap -> mm_populate: MAP_POPULATE, and MAP_LOCKED / MCL_FUTURE without ONFAULT
        if flags & MAP["MAP_POPULATE"] or (locked and not vma.onfault):
            self._populate(mm, start, end)

    def _exec_only(self, prot: int) -> bool:
        """Whether a mapping of ``prot`` is execute-only.

        With PKU (fact ``exec_only``), mmap/mprotect with PROT_EXEC alone give the range the
        process's execute-only protection key, whose PKRU bits deny data access
        (arch/x86/mm/pkeys.c __arch_override_mprotect_pkey -> execute_only_pkey): clause
        linux.x86.exec-only-pkey.  Without PKU, protection_map[VM_EXEC] is PAGE_READONLY_EXEC
        (arch/x86/mm/pgprot.c): the page reads like PROT_READ|PROT_EXEC (clause
        linux.x86.exec-implies-read).  Any other prot moves the range back to the default key.
        Example: mmap(…PROT_EXEC…) then load(a): SIGSEGV with PKU, 0 without."""
        return prot == X and self.config.exec_only

    def _populate(self, mm: Mm, start: int, end: int) -> None:
        """mm/gup.c populate_vma_page_range: fault every page in; private writable mappings
        with a write fault (to break COW), others with a read fault; PROT_NONE is skipped and
        a page past the file's end stops nothing (errors are ignored).

        A page read from the file drops the mmap lock for the I/O (VM_FAULT_RETRY, not counted);
        __mm_populate then retakes it and faults again without FAULT_FLAG_TRIED, finding the page
        cached: so the kernel counts such a load as a minor fault, or (without the retry) a major
        one.  The model counts it as a fault that may be minor, never as a sure major fault."""
        majflt = mm.majflt
        for s, e, v in list(mm.mapped_pages(start, end)):
            if not v.prot & (R | W | X) or v.exec_only:
                continue
            kind = W if (v.prot & W and not v.shared) else R
            for page in range(s, e, PAGE_SIZE):
                hit = mm.vmas.find(page)
                if hit is None:
                    break
                fc = fault.do_page_fault(self, mm, hit[2], page, kind if kind != R or hit[2].prot & (R | W) else X)
                if fc is not None and fc.kind == "sigkill":
                    break
        if mm.majflt > majflt:
            mm.minflt_maybe += mm.majflt - majflt
            mm.majflt = majflt

    def _unmap(self, mm: Mm, start: int, end: int) -> None:
        self._split_huge(mm, start, end)
        for page in self._pages_in(mm, start, end):
            self._drop_page(mm, page)
        gone = {v.obj for _, _, v in mm.vmas.overlapping(start, end) if v.obj is not None}
        mm.vmas.remove(start, end)
        if gone:
            self._collect(gone)

    def _pages_in(self, mm: Mm, start: int, end: int) -> list[int]:
        """The pages of [start, end) that have any per-page state, in address order.
        Costs O(min(pages in the range, pages with state)): no union of every table per call
        (that union made each mmap/munmap/mprotect grow with the whole address space)."""
        stores = (mm.pte, mm.anon, mm.maybe, mm.last_ref)
        if (end - start) // PAGE_SIZE <= sum(len(x) for x in stores):
            return [p for p in range(start, end, PAGE_SIZE)
                    if p in mm.pte or p in mm.anon or p in mm.maybe or p in mm.last_ref]
        found: set[int] = set()
        for x in stores:
            found.update(p for p in x if start <= p < end)
        return sorted(found)

    def _drop_page(self, mm: Mm, page: int) -> None:
        """zap_pte_range for one page: remove the PTE, flush, and drop the anon reference."""
        if page in mm.pte:
            mm.flushed.add(page)
        fault.zap_pte(self, mm, page)
        mm.maybe.discard(page)
        mm.last_ref.pop(page, None)
        p = mm.anon.pop(page, None)
        if p is not None:
            p.mapcount -= 1
            if p.mapcount <= 0:
                self._free_page(p)

    def _free_page(self, p: Page) -> None:
        self.frames.free(p)
        self.frames.swap_free(p)
        self.lru_del(p)

    def _collect(self, objs: set[int]) -> None:
        for o in objs:
            obj = self.objects.get(o)
            if obj is None:
                continue
            if obj.opens > 0 or obj.linked:
                continue
            if any(v.obj == o for p in self.procs.values() for _, _, v in p.vmas.items()):
                continue
            for page in obj.pages.values():
                self._free_page(page)
            del self.objects[o]

    def _split_huge(self, mm: Mm, start: int, end: int) -> None:
        """A range edge inside a huge mapping splits it into 4 KiB PTEs (mm/huge_memory.c
        split_huge_pmd); the data stays (clause linux.thp.split-keeps-data)."""
        for base in list(mm.huge | mm.thp_maybe):
            if base < end and base + HPAGE > start and not (start <= base and base + HPAGE <= end):
                self._split_one(mm, base)

    def _split_one(self, mm: Mm, base: int) -> None:
        if base in mm.huge:
            self.stats["thp_splits"] += 1
        if base in mm.huge or base in mm.thp_maybe:
            mm.thp_split.add(base)
        mm.huge.discard(base)
        mm.thp_maybe.discard(base)

    # -- munmap ----------------------------------------------------------------

    def _expect_munmap(self, mm: Mm, addr: int, length: int) -> Expect:
        c = self.config
        # mm/vma.c do_vmi_munmap: alignment, then the range must lie below TASK_SIZE.
        if addr & ~PAGE_MASK:
            return errno("posix.munmap.einval-unaligned", "EINVAL")
        if addr > c.task_size or length > c.task_size - addr:
            return errno("posix.munmap.einval-outside", "EINVAL")
        if page_align(length) == 0:
            return errno("posix.munmap.einval-len0", "EINVAL")
        if not mm.vmas.any_overlap(addr, addr + page_align(length)):
            return exactly("posix.munmap.unmapped-ok", Outcome(value=0))
        return exactly("posix.munmap.removes-range", Outcome(value=0))

    def _apply_munmap(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
        if o.ok and o.value == 0:
            self._unmap(mm, addr, addr + page_align(length))

    # -- mprotect --------------------------------------------------------------

    def _expect_mprotect(self, mm: Mm, addr: int, length: int, prot: int) -> Expect:
        # mm/mprotect.c do_mprotect_pkey, in the kernel's order of checks.
        if prot & GROWS == GROWS:
            return errno("linux.mprotect.einval-grows-both", "EINVAL")
        if addr & ~PAGE_MASK:
            return errno("posix.mprotect.einval-unaligned", "EINVAL")
        if length == 0:
            return exactly("linux.mprotect.len0-ok", Outcome(value=0))
        end = addr + page_align(length)
        if end <= addr or end > (1 << 64) - 1 or page_align(length) == 0:
            return errno("linux.mprotect.enomem-wrap", "ENOMEM")
        if prot & ~(PROT_RWX | PROT["PROT_SEM"] | GROWS):
            return errno("posix.mprotect.einval-prot", "EINVAL")
        first = mm.vmas.overlapping(addr, end)
        if not first:
            return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
        if prot & PROT["PROT_GROWSDOWN"]:
            return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
        if first[0][0] > addr:
            return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
        if prot & PROT["PROT_GROWSUP"]:
            return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
        cursor = addr
        for s, e, v in first:
            if s > cursor:
                return errno("linux.mprotect.enomem-hole-partial", "ENOMEM")
            if prot & W and not v.may_write:
                # mm/mprotect.c: newflags & ~(oldflags >> 4) & VM_WRITE -> EACCES
                return errno("posix.mprotect.eacces-shared-readonly-fd", "EACCES")
            cursor = e
        if cursor < end:
            return errno("linux.mprotect.enomem-hole-partial", "ENOMEM")
        ok = exactly("posix.mprotect.sets-prot", Outcome(value=0))
        if prot & W:
            # mm/mprotect.c mprotect_fixup: private memory turning writable becomes data
            # (may_expand_vm) and is charged (security_vm_enough_memory_mm)
            gain = sum(e - s for s, e, v in mm.mapped_pages(addr, end) if not v.shared and not v.prot & W)
            if gain:
                return self._limits(mm, ok, 0, gain, gain)
        return ok

    def _apply_mprotect(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int) -> None:
        if o.errno not in (None, "ENOMEM", "EACCES") or length == 0 or addr & ~PAGE_MASK:
            return
        end = addr + page_align(length)
        if o.errno is not None:
            # Linux changes the VMAs before the first hole (or refused VMA), then fails (mprotect(2)
            # NOTES; POSIX allows "some of the pages may have been changed").
            if prot & ~(PROT_RWX | PROT["PROT_SEM"] | GROWS) or prot & GROWS:
                return
            if end <= addr or end > U64:
                return     # mm/mprotect.c: end <= start fails before touching anything
            runs = mm.vmas.overlapping(addr, end)
            if not runs or runs[0][0] > addr:
                return
            cursor = addr
            for s, e, _ in runs:
                cursor = e if s <= cursor else cursor
            # no hole and no refused VMA: a limit refused the first private VMA turning writable
            limit = o.errno == "ENOMEM" and cursor >= end and all(v.may_write or not prot & W for _, _, v in runs)
            cursor = addr
            stop = addr
            for s, e, v in runs:
                if s > cursor or (prot & W and not v.may_write) or (
                        limit and prot & W and not v.shared and not v.prot & W):
                    break
                cursor = e
                stop = min(e, end)
            end = stop
            clause = "linux.mprotect.enomem-hole-partial"
        else:
            clause = "posix.mprotect.sets-prot"
        if end <= addr:
            return
        self._split_huge(mm, addr, end)
        p = prot & PROT_RWX
        for s, e, v in list(mm.mapped_pages(addr, end)):
            mm.vmas.set(s, e, replace(v, prot=p, exec_only=self._exec_only(p), clause=clause))
            for page in self._pages_in(mm, s, e):
                t = mm.pte.get(page)
                if t is not None:
                    if not p & W:
                        if t.write:
                            mm.flushed.add(page)
                        t.write = False
                    else:
                        # mm/mprotect.c can_change_pte_writable: the kernel may make an exclusive
                        # page writable at once; the next store may or may not fault.
                        mm.maybe.add(page)
                fault.flush_tlb_page(mm, page)

    # -- memory accesses -------------------------------------------------------

    def _oom_predict(self, mm: Mm, v: Vma, page: int, kind: int, fc: fault.FaultClass) -> Outcome | None:
        """Would this fault need a frame that only the OOM killer can free, and kill us?"""
        from .pressure import can_reclaim, select_bad_process
        needs = fc.how in ("anon-new", "wp-copy", "swap-in", "cache-alloc", "file-read") or (
            fc.how == "cache-hit" and kind == W and not v.shared)
        if fc.how == "wp-copy" and page in mm.anon and mm.anon[page].mapcount <= 1:
            needs = False
        if not needs or self.frames.free_count() > 0 or can_reclaim(self):
            return None
        victim = select_bad_process(self)
        if victim is None or self.procs.get(victim) is mm:
            return Outcome(signal="SIGKILL")
        return None

    def _expect_load(self, mm: Mm, addr: int) -> Expect:
        return self._expect_access(mm, addr, R)

    def _expect_access(self, mm: Mm, addr: int, kind: int) -> Expect:
        page = addr & PAGE_MASK
        hit = mm.vmas.find(addr)
        v = hit[2] if hit else None
        t = fault.access_attempt(mm, v, page, kind)
        if t is None:
            fc = fault.classify(self, mm, v, addr, kind)
            if fc.kind == "sigsegv" and kind == X and v is not None and fault.vma_allows(v, R):
                # arch/x86/mm/fault.c access_error has no exec check for a page not present:
                # the fault is handled first (SIGBUS past a file's end), NX faults on the retry
                fc2 = fault.classify(self, mm, v, addr, R)
                if fc2.kind == "sigbus":
                    fc = fc2
            if fc.kind == "sigsegv":
                return self._segv_expect(v, kind, mm, page)
            if fc.kind == "sigbus":
                return exactly(fc.clause if kind == R else "seed.fault.step3-classify", Outcome(signal="SIGBUS"))
            assert v is not None
            killed = self._oom_predict(mm, v, page, kind, fc)
            if killed is not None:
                return exactly("linux.oom.kills-worst", killed)
        if v is None or not fault.vma_allows(v, kind):
            # only a stale TLB entry gets here (an implementation that skipped a flush)
            value = t.page.byte(addr & (PAGE_SIZE - 1)) if t is not None and kind == R else None
            return exactly("seed.fault.step8-tlb", Outcome(value=value))
        if kind == X:
            if (addr & (PAGE_SIZE - 1)) > PAGE_SIZE - MAX_INSN:
                nxt = mm.vmas.find(page + PAGE_SIZE)
                if nxt is None or not fault.vma_allows(nxt[2], X):
                    # the instruction at addr may run onto the next page, which cannot be fetched:
                    # whether it does depends on the bytes there
                    return Expect("linux.x86.fetch-crosses-page", OK, "ok, or SIGSEGV if the instruction crosses",
                                  (OK, Outcome(signal="SIGSEGV")), impl_defined=True)
            return exactly("posix.mmap.prot-exec", OK)
        if kind == W:
            return exactly(self._store_clause(mm, v, page, t), OK)
        value = t.page.byte(addr & (PAGE_SIZE - 1)) if t is not None else self._read(mm, v, addr)
        if not v.prot & (R | W):
            # PROT_EXEC alone on a CPU without PKU: the page table entry is readable
            return exactly("linux.x86.exec-implies-read", Outcome(value=value))
        clause = self._content_clause(mm, v, addr) if v.prot & R else "linux.x86.write-implies-read"
        if v.prot & (R | W) == R and clause == "linux.mmap.anon-zero-fill":
            clause = "posix.mmap.prot-read"
        if t is None and v.obj is not None and v.shared and page not in mm.maybe and clause in (
                "posix.mmap.shared-visible", "posix.mmap.file-contents") and \
                fault.classify(self, mm, v, addr, R).how == "cache-hit":
            clause = "seed.fault.step9-restart"
        if (page & ~(HPAGE - 1)) in mm.thp_split and clause == "posix.mmap.private-contents":
            clause = "linux.thp.split-keeps-data"
        lazy = mm.anon.get(page)
        if lazy is not None and lazy.lazyfree and value:
            # MADV_FREE: until the next write the kernel may have freed the page (reads 0)
            return Expect("linux.madvise.free-lazy", Outcome(value=value), f"{value} or 0",
                          (Outcome(value=value), Outcome(value=0)), impl_defined=True)
        return exactly(clause, Outcome(value=value))

    def _store_clause(self, mm: Mm, v: Vma | None, page: int, t: Pte | None) -> str:
        """Which step of the fault path a successful store rests on (all allow only 'ok')."""
        assert v is not None
        if page in mm.maybe or (page & ~(HPAGE - 1)) in mm.thp_maybe:
            return "posix.mmap.prot-write"
        if t is not None:
            return "seed.fault.step1-access"
        fc = fault.classify(self, mm, v, page, W)
        return {"anon-new": "seed.fault.step4-frame", "wp-copy": "seed.cow.copy-on-write",
                "wp-reuse": "seed.fault.step7-pte", "swap-in": "seed.fault.step6-load",
                "file-read": "seed.fault.major-file"}.get(fc.how, "posix.mmap.prot-write") \
            if not (v.obj is not None and not v.shared and fc.how == "wp-copy") else "posix.mmap.private-file-cow"

    def _segv_expect(self, v: Vma | None, kind: int, mm: Mm | None = None, page: int = 0) -> Expect:
        if mm is not None and page in mm.flushed and (v is None or kind == W):
            # the page had a translation that munmap/mprotect took away: a stale TLB entry would let this through
            return exactly("seed.fault.step8-tlb", Outcome(signal="SIGSEGV"))
        if v is None:
            # a fetch probe checks the #PF itself: at CR2 = the address, with the I/D bit
            return exactly("seed.fault.step2-pf-cr2" if kind == X else "posix.access.unmapped-sigsegv",
                           Outcome(signal="SIGSEGV"))
        if kind == X:
            return exactly("linux.x86.nx-enforced", Outcome(signal="SIGSEGV"))
        if v.prot == 0:
            return exactly("posix.mmap.prot-none-sigsegv", Outcome(signal="SIGSEGV"))
        if kind == W:
            return exactly("posix.mmap.prot-enforced-write", Outcome(signal="SIGSEGV"))
        # a read of PROT_EXEC-only memory under PKU (Vma.exec_only): the execute-only key's
        # PKRU bits deny it (SEGV_PKUERR); without PKU the read succeeds and never gets here
        return exactly("linux.x86.exec-only-pkey", Outcome(signal="SIGSEGV"))

    def _content_clause(self, mm: Mm, v: Vma, addr: int) -> str:
        """Which promise a loaded value rests on: sharing, files, copy-on-write, zero fill, or plain memory."""
        page = addr & PAGE_MASK
        if page in mm.anon:
            p = mm.anon[page]
            if p.mapcount > 1 or p.inherited:
                return "posix.fork.private-copy"
            if v.obj is not None:
                return "posix.mmap.private-file-cow"
            return "posix.mmap.private-contents"
        if v.obj is not None:
            obj = self.objects[v.obj]
            pgoff = v.pgoff(page)
            if obj.kind == "anon-shared":
                return "posix.mmap.shared-visible" if obj.pages.get(pgoff) is not None and \
                    obj.pages[pgoff].data is not None else "linux.mmap.anon-zero-fill"
            off_in_file = pgoff * PAGE_SIZE + (addr & (PAGE_SIZE - 1))
            if off_in_file >= obj.size:
                return "posix.mmap.partial-page-zero"
            if pgoff not in obj.pages and pgoff in obj.disk:
                return "seed.fault.step6-load"     # evicted, read back from the file
            return "posix.mmap.file-contents" if v.shared else "posix.mmap.private-file-reads-file"
        return "linux.mmap.anon-zero-fill"

    def _read(self, mm: Mm, v: Vma, addr: int) -> int:
        page, off = addr & PAGE_MASK, addr & (PAGE_SIZE - 1)
        p = mm.anon.get(page)
        if p is not None:
            return p.byte(off)
        if v.obj is not None:
            obj = self.objects[v.obj]
            pgoff = v.pgoff(page)
            cp = obj.pages.get(pgoff)
            if cp is not None:
                return cp.byte(off)
            d = obj.disk.get(pgoff)
            return d[off] if d is not None else 0
        return 0

    def _touch(self, mm: Mm, addr: int) -> None:
        mm.vtime += 1
        mm.last_ref[addr & PAGE_MASK] = mm.vtime

    def _access(self, proc: str, mm: Mm, o: Outcome, addr: int, kind: int) -> Pte | None:
        """Run the fault path for an access the target reported as done; returns the translation used."""
        if o.signal is not None and o.signal != "SIGKILL":
            hit = mm.vmas.find(addr)
            fault.do_page_fault(self, mm, hit[2] if hit else None, addr, kind)
            return None
        hit = mm.vmas.find(addr)
        if hit is None:
            return None
        v = hit[2]
        page = addr & PAGE_MASK
        self._thp_fault(mm, v, page)
        fc = fault.do_page_fault(self, mm, v, addr, kind)
        if fc is not None and fc.kind == "sigkill":
            return None
        if proc not in self.procs:
            return None
        if fc is not None and kind != W and v.obj is not None:
            self._fault_around(mm, v, page)
        self._touch(mm, addr)
        t = mm.tlb.get(page) or mm.pte.get(page)
        if t is not None:
            if page not in mm.tlb:
                mm.tlb[page] = Pte(t.page, t.write, fault.vma_allows(v, R), bool(v.prot & X))
            t = mm.tlb[page]
            if isinstance(t.page, Page):
                t.page.referenced = True
        return t

    def _fault_around(self, mm: Mm, v: Vma, page: int) -> None:
        """mm/memory.c do_fault_around: a read fault on a file or shmem page also maps the
        neighbours already in the page cache (a 64 KiB aligned window inside the VMA and the
        file), without faults of their own.  The model cannot know which the kernel maps,
        so their PTEs become unknown."""
        obj = self.objects[v.obj]
        lo = page & ~(PAGE_SIZE * fault_around_pages() - 1)
        for p in range(lo, lo + PAGE_SIZE * fault_around_pages(), PAGE_SIZE):
            if p == page or p in mm.pte or p in mm.anon:
                continue
            hit = mm.vmas.find(p)
            if hit is None or hit[2] is not v and hit[2] != v:
                continue
            cp = obj.pages.get(v.pgoff(p))
            if cp is not None and cp.pfn is not None and v.pgoff(p) < obj.npages():
                mm.maybe.add(p)

    def _thp_fault(self, mm: Mm, v: Vma, page: int) -> None:
        """mm/huge_memory.c do_huge_pmd_anonymous_page: a first fault in a 2 MiB aligned, eligible
        range may map a huge page (linux.thp.fault-huge).  Whether it does is the kernel's choice
        (no free huge page: fall back to 4 KiB), so the model marks the range ``thp_maybe``."""
        from .pressure import thp_eligible
        base = page & ~(HPAGE - 1)
        if base in mm.huge or base in mm.thp_maybe or not thp_eligible(self, mm, v, base):
            return
        if any(p in mm.pte or p in mm.anon for p in range(base, base + HPAGE, PAGE_SIZE)):
            return
        self.stats["thp_faults"] += 1
        if self.config.thp_certain:
            from .pressure import materialize_huge
            materialize_huge(self, mm, base)
        else:
            mm.thp_maybe.add(base)
            for p in range(base, base + HPAGE, PAGE_SIZE):
                if p != page:
                    mm.maybe.add(p)

    def _apply_load(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        self._access(proc, mm, o, addr, R)
        page = addr & PAGE_MASK
        p = mm.anon.get(page)
        if o.ok and o.value == 0 and p is not None and p.lazyfree and p.byte(addr & 4095):
            self._drop_page(mm, page)      # the kernel had freed the MADV_FREE page

    def _expect_store(self, mm: Mm, addr: int, value: int) -> Expect:
        return self._expect_access(mm, addr, W)

    def _apply_store(self, proc: str, mm: Mm, o: Outcome, addr: int, value: int) -> None:
        t = self._access(proc, mm, o, addr, W)
        if not o.ok or t is None:
            return
        pg = t.page
        if isinstance(pg, Page):
            pg.put(addr & (PAGE_SIZE - 1), value)
            pg.dirty = True
            pg.lazyfree = False

    def _expect_fetch(self, mm: Mm, addr: int) -> Expect:
        return self._expect_access(mm, addr, X)

    def _apply_fetch(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        # A target may run the fetch in a probe process (the linux target must: a jump into
        # the page cannot return): whether this process now maps the page is unknown.
        page = addr & PAGE_MASK
        if o.ok and page not in mm.pte and mm.vmas.find(addr) is not None:
            mm.maybe.add(page)

    # -- processes -------------------------------------------------------------

    def _expect_fork(self, mm: Mm) -> Expect:
        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None or o.value <= 0:
                return f"expected a process id, observed {o.describe()}"
            return None
        ok = Expect("posix.fork.copies-address-space", Outcome(value=self._next_pid), "a process id",
                    predicate=allowed, impl_defined=True)
        if self.config.overcommit_memory == 2 and any(v.prot & W and not v.shared for _, _, v in mm.vmas.items()):
            # kernel/fork.c dup_mmap charges every VM_ACCOUNT mapping: ENOMEM under strict overcommit
            return _or_errno(ok, "linux.mmap.enomem-overcommit", "ENOMEM")
        return ok

    def _apply_fork(self, proc: str, mm: Mm, o: Outcome) -> None:
        # The new process's name is bound by the caller through ``bind``.
        if not o.ok:
            return
        self._pending_fork = self.fork_mm(mm, o.value or self._next_pid)
        self._next_pid += 1

    def fork_mm(self, parent: Mm, pid: int) -> Mm:
        """kernel/fork.c dup_mmap: copy the VMAs (not MADV_DONTFORK ones, and without
        VM_LOCKED: mlock(2) 'memory locks are not inherited'), share private pages
        copy-on-write (both PTEs read-only), and share memory objects."""
        child = Mm(self.config)
        child.pid = pid
        child.privileged = parent.privileged
        child.dac_override = parent.dac_override
        child.fowner = parent.fowner
        child.can_setuid = parent.can_setuid
        child.uid = parent.uid
        child.memlock_soft = parent.memlock_soft
        for s, e, v in parent.vmas.items():
            if v.dontfork:
                continue
            child.vmas.set(s, e, replace(v, locked=False, onfault=False))
            if v.locked:
                child.unlocked_at_fork |= set(range(s, e, PAGE_SIZE))
            for page in self._pages_in(parent, s, e):
                p = parent.anon.get(page)
                if p is not None:
                    p.mapcount += 1
                    child.anon[page] = p
                    p.inherited = True
                t = parent.pte.get(page)
                if t is not None and t.page is ZERO_PAGE:
                    # mm/memory.c copy_page_range copies nothing for a VMA without an anon_vma,
                    # and a read fault mapping the zero page makes none: the child may or may
                    # not have this PTE (it reads zero either way)
                    fault.flush_tlb_page(parent, page)
                    child.maybe.add(page)
                elif t is not None:
                    if p is not None and t.page is p:
                        t.write = False
                        fault.flush_tlb_page(parent, page)
                        child.pte[page] = Pte(t.page, False)
                    else:
                        # page-cache PTEs are copied only when the VMA has an anon_vma
                        child.maybe.add(page)
                elif page in parent.maybe:
                    child.maybe.add(page)
        for base in parent.huge | parent.thp_maybe:
            child.thp_maybe.add(base)
        for fd, f in parent.fds.items():
            child.fds[fd] = Fd(f.obj, f.read, f.write)
            if f.obj is not None:
                self.objects[f.obj].opens += 1
        return child

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        """Give the address space made by the last fork() its program name."""
        if name == "fork" and result and self._pending_fork is not None:
            self.procs[result] = self._pending_fork
            self._pending_fork = None

    def _expect_exit(self, mm: Mm) -> Expect:
        return exactly("posix.exit.releases", OK)

    def _apply_exit(self, proc: str, mm: Mm, o: Outcome) -> None:
        self.release(proc)

    def release(self, proc: str) -> None:
        """exit_mmap and close of every fd: the process's pages and references go."""
        mm = self.procs[proc]
        gone = {v.obj for _, _, v in mm.vmas.items() if v.obj is not None}
        for s, e, _ in list(mm.vmas.items()):
            for page in self._pages_in(mm, s, e):
                self._drop_page(mm, page)
        mm.vmas = IntervalMap()
        for f in mm.fds.values():
            if f.obj is not None:
                self.objects[f.obj].opens -= 1
                gone.add(f.obj)
        mm.fds.clear()
        del self.procs[proc]
        self._collect(gone)

    # -- mremap -----------------------------------------------------------------

    def _expect_mremap(self, mm: Mm, addr: int, old_size: int, new_size: int, flags: int, new_addr: int) -> Expect:
        exp = self._mremap_expect(mm, addr, old_size, new_size, flags, new_addr)
        if flags & MREMAP["MREMAP_DONTUNMAP"] and not self.has("MREMAP_DONTUNMAP") and not exp.default.errno:
            return errno("linux.mremap.einval-flags", "EINVAL")
        grow = (page_align(new_size) & U64) - (page_align(old_size) & U64)
        hit = mm.vmas.find(addr)
        if exp.default.errno or exp.unknown or hit is None or grow <= 0:
            return exp
        # mm/mremap.c vma_to_resize: may_expand_vm, then the commit charge of a VM_ACCOUNT mapping
        v = hit[2]
        data = bool(v.prot & W) and not v.shared
        return self._limits(mm, exp, grow, grow if data else 0, grow if data else 0)

    def _mremap_expect(self, mm: Mm, addr: int, old_size: int, new_size: int, flags: int, new_addr: int) -> Expect:
        c = self.config
        MAYMOVE, FIXED, DONTUNMAP = MREMAP["MREMAP_MAYMOVE"], MREMAP["MREMAP_FIXED"], MREMAP["MREMAP_DONTUNMAP"]
        # mm/mremap.c check_mremap_params, in order
        if flags & ~(MAYMOVE | FIXED | DONTUNMAP):
            return errno("linux.mremap.einval-flags", "EINVAL")
        if addr & ~PAGE_MASK:
            return errno("linux.mremap.einval-unaligned", "EINVAL")
        old_len, new_len = page_align(old_size) & U64, page_align(new_size) & U64
        if new_len == 0:
            return errno("linux.mremap.einval-len0", "EINVAL")
        if new_len > c.task_size or new_addr > c.task_size - new_len:
            return errno("linux.mremap.einval-flags", "EINVAL")
        if flags & (FIXED | DONTUNMAP):
            if new_addr & ~PAGE_MASK:
                return errno("linux.mremap.einval-unaligned", "EINVAL")
            if not flags & MAYMOVE:
                return errno("linux.mremap.einval-flags", "EINVAL")
            if flags & DONTUNMAP and old_len != new_len:
                return errno("linux.mremap.einval-flags", "EINVAL")
            if flags & FIXED and new_addr < addr + old_len and addr < new_addr + new_len:
                return errno("linux.mremap.einval-overlap", "EINVAL")
        if old_len == 0:
            return Expect("linux.mremap.efault-unmapped", OK, "old_size 0 (shared duplicate): not modelled",
                          unknown=True)
        hit = self._vma_extent(mm, addr)
        if hit is None:
            return errno("linux.mremap.efault-unmapped", "EFAULT")
        s, e, v = hit
        if not flags & (FIXED | DONTUNMAP) and new_len <= old_len:
            # mm/mremap.c: a shrink unmaps [addr+new_len, addr+old_len) whatever is there
            if new_len == old_len:
                return exactly("linux.mremap.same-size-noop", Outcome(value=addr))
            return exactly("linux.mremap.shrink-in-place", Outcome(value=addr))
        if flags & FIXED and new_len < old_len:
            # mm/mremap.c mremap_to: the tail is unmapped first, then the rest must be one VMA
            old_len = new_len
        if old_len > e - addr:
            if flags & FIXED and old_len == new_len:
                return Expect("linux.mremap.efault-unmapped", OK, "a move of several VMAs: not modelled",
                              unknown=True)
            return errno("linux.mremap.efault-unmapped", "EFAULT")
        if v.locked and not mm.privileged and new_len > old_len and \
                mm.locked_vm() + new_len - old_len > mm.memlock_soft:
            return errno("linux.mremap.eagain-locked", "EAGAIN")
        if flags & FIXED:
            return exactly("linux.mremap.fixed-moves", Outcome(value=new_addr))
        if old_len == new_len and not flags & DONTUNMAP:
            return exactly("linux.mremap.same-size-noop", Outcome(value=addr))
        if new_len < old_len:
            return exactly("linux.mremap.shrink-in-place", Outcome(value=addr))
        room = not flags & DONTUNMAP and e == addr + old_len and addr + new_len <= c.task_size and \
            not mm.vmas.any_overlap(addr + old_len, addr + new_len)
        quiet = any(qs <= addr + old_len and addr + new_len <= qe for qs, qe in c.quiet_ranges)
        if room and (quiet or not c.quiet_ranges):
            return exactly("linux.mremap.grow-in-place", Outcome(value=addr))
        if room:
            # past a mapping the target placed itself may live memory the model does not see
            if not flags & MAYMOVE:
                return Expect("linux.mremap.grow-in-place", Outcome(value=addr), f"{addr:#x} or ENOMEM",
                              (Outcome(value=addr), Outcome(value=-1, errno="ENOMEM")), impl_defined=True)
            moved = self._placement(mm, 0, new_len, False, "linux.mremap.grow-in-place")
            return Expect("linux.mremap.grow-in-place", Outcome(value=addr), f"{addr:#x} or a free range",
                          predicate=lambda o: None if o.ok and o.value == addr else moved.judge(o), impl_defined=True)
        if not flags & MAYMOVE:
            return errno("linux.mremap.enomem-no-maymove", "ENOMEM")
        return self._placement(mm, 0, new_len, False, "linux.mremap.maymove-moves")

    def _vma_extent(self, mm: Mm, addr: int) -> tuple[int, int, Vma] | None:
        """The kernel's VMA around addr: adjacent ranges with equal attributes are one VMA
        (mm/vma.c vma_merge), whatever clause set them."""
        hit = mm.vmas.find(addr)
        if hit is None:
            return None
        s, e, v = hit
        key = replace(v, clause="")
        for s2, e2, w in mm.vmas.overlapping(e, U64):
            if s2 != e or replace(w, clause="") != key:
                break
            e = e2
        for s2, e2, w in reversed(mm.vmas.overlapping(0, s)):
            if e2 != s or replace(w, clause="") != key:
                break
            s = s2
        return s, e, v

    def _apply_mremap(self, proc: str, mm: Mm, o: Outcome, addr: int, old_size: int, new_size: int, flags: int,
                      new_addr: int) -> None:
        if not o.ok or o.value is None:
            return
        old_len, new_len = page_align(old_size), page_align(new_size)
        dest = o.value
        hit = mm.vmas.find(addr)
        if hit is None or old_len == 0:
            return
        v = hit[2]
        if dest == addr and not flags & MREMAP["MREMAP_FIXED"]:
            if new_len < old_len:
                self._unmap(mm, addr + new_len, addr + old_len)
            elif new_len > old_len:
                mm.vmas.set(addr + old_len, addr + new_len, v)
                if v.locked and not v.onfault:
                    self._populate(mm, addr + old_len, addr + new_len)
            return
        keep = min(old_len, new_len)
        self._split_huge(mm, addr, addr + old_len)
        delta = dest - addr
        moved_vmas = list(mm.mapped_pages(addr, addr + keep))
        moved = []
        for page in self._pages_in(mm, addr, addr + keep):
            moved.append((page, mm.anon.pop(page, None), mm.pte.pop(page, None), page in mm.maybe,
                          mm.last_ref.pop(page, None)))
            mm.maybe.discard(page)
            fault.flush_tlb_page(mm, page)
        gone: set[int] = set()
        self._unmap(mm, dest, dest + new_len)
        old_vmas = list(mm.mapped_pages(addr, addr + old_len))
        if not flags & MREMAP["MREMAP_DONTUNMAP"]:
            # the old range goes (its tail beyond the new length with its pages); its objects
            # are collected only after the moved VMAs exist
            for page in self._pages_in(mm, addr, addr + old_len):
                self._drop_page(mm, page)
            mm.vmas.remove(addr, addr + old_len)
            gone = {w.obj for _, _, w in old_vmas if w.obj is not None}
        for s, e, w in moved_vmas:
            mm.vmas.set(s + delta, e + delta, replace(w, origin=w.origin + delta, clause="linux.mremap.maymove-moves"))
        if new_len > keep:
            mm.vmas.set(dest + keep, dest + new_len, replace(v, origin=v.origin + delta))
        for page, a, t, maybe, ref in moved:
            if a is not None:
                mm.anon[page + delta] = a
            if t is not None:
                mm.pte[page + delta] = t
            if maybe:
                mm.maybe.add(page + delta)
            if ref is not None:
                mm.last_ref[page + delta] = ref
        self._collect(gone | {w.obj for _, _, w in moved_vmas if w.obj is not None})

    # -- madvise ----------------------------------------------------------------

    def _expect_madvise(self, mm: Mm, addr: int, length: int, advice: int) -> Expect:
        # mm/madvise.c do_madvise / madvise_walk_vmas
        if advice not in MADV.values():
            return errno("posix.madvise.einval-advice", "EINVAL")
        if any(advice == MADV[n] and not self.has(n) for n in ("MADV_FREE", "MADV_COLD", "MADV_PAGEOUT")):
            return errno("posix.madvise.einval-advice", "EINVAL")     # an advice this kernel does not know
        if addr & ~PAGE_MASK:
            return errno("posix.madvise.einval-unaligned", "EINVAL")
        plen = page_align(length) & U64
        if length and not plen:
            return errno("posix.madvise.einval-unaligned", "EINVAL")
        end = addr + plen
        if end > U64:
            return errno("posix.madvise.einval-unaligned", "EINVAL")
        if end == addr:
            return exactly("linux.madvise.len0-ok", Outcome(value=0))
        runs = mm.vmas.overlapping(addr, end)
        if not runs:
            return errno("posix.madvise.enomem-unmapped", "ENOMEM")
        for s, e, v in runs:
            if advice in (MADV["MADV_DONTNEED"], MADV["MADV_FREE"]) and v.locked:
                return errno("linux.madvise.einval-locked", "EINVAL")
            if advice in (MADV["MADV_PAGEOUT"], MADV["MADV_COLD"]) and v.locked:
                # mm/madvise.c can_madv_lru_vma: locked memory cannot be paged out
                return errno("posix.mlock.never-evicted", "EINVAL")
            if advice == MADV["MADV_FREE"] and v.obj is not None:
                return errno("linux.madvise.einval-free-file", "EINVAL")
            # mm/madvise.c madvise_remove: locked or without a file: EINVAL; not shared and
            # may-write (vma_is_shared_maywrite, PROT_NONE included): EACCES; then the file system
            # punches the hole (shmem and ext4 can)
            if advice == MADV["MADV_REMOVE"] and (v.locked or v.obj is None):
                return errno("linux.madvise.einval-remove-private", "EINVAL")
            if advice == MADV["MADV_REMOVE"] and not (v.shared and v.may_write):
                return errno("linux.madvise.eacces-remove-readonly", "EACCES")
        cursor = addr
        hole = False
        for s, e, _ in runs:
            if s > cursor:
                hole = True
            cursor = e
        if hole or cursor < end or runs[0][0] > addr:
            return errno("posix.madvise.enomem-unmapped", "ENOMEM")
        if advice == MADV["MADV_PAGEOUT"]:
            dirty = any(cp.dirty for _, _, cp in self._pageout_pages(mm, addr, end))
            return exactly("seed.fault.step5-evict" if dirty else "seed.pagecache.clean-dropped", Outcome(value=0))
        if advice == MADV["MADV_DONTNEED"] and any(mm.unlocked_at_fork & set(range(s, e, PAGE_SIZE))
                                                  for s, e, _ in runs):
            return exactly("linux.mlock.not-inherited", Outcome(value=0))
        clause = {MADV["MADV_DONTNEED"]: "linux.madvise.dontneed", MADV["MADV_REMOVE"]: "linux.madvise.remove",
                  MADV["MADV_FREE"]: "linux.madvise.free-lazy", MADV["MADV_DONTFORK"]: "linux.madvise.dontfork",
                  MADV["MADV_HUGEPAGE"]: "linux.thp.madvise-hugepage",
                  MADV["MADV_NOHUGEPAGE"]: "linux.thp.madvise-hugepage"}.get(advice, "posix.madvise.advice-ok")
        return exactly(clause, Outcome(value=0))

    def _apply_madvise(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, advice: int) -> None:
        if o.errno not in (None, "ENOMEM") or advice not in MADV.values():
            return
        end = addr + page_align(length)
        if end <= addr:
            return
        for s, e, v in list(mm.mapped_pages(addr, end)):
            if advice == MADV["MADV_DONTNEED"]:
                self._split_huge(mm, s, e)
                for page in self._pages_in(mm, s, e):
                    self._drop_page(mm, page)
                for base in list(mm.huge | mm.thp_maybe):
                    if s <= base and base + HPAGE <= e:
                        mm.huge.discard(base)
                        mm.thp_maybe.discard(base)
            elif advice == MADV["MADV_REMOVE"] and v.obj is not None:
                obj = self.objects[v.obj]
                for page in range(s, e, PAGE_SIZE):
                    self._punch(obj, v.pgoff(page))
            elif advice == MADV["MADV_FREE"]:
                for page in self._pages_in(mm, s, e):
                    p = mm.anon.get(page)
                    if p is not None and p.mapcount == 1 and p.pfn is not None:
                        p.lazyfree = True
            elif advice in (MADV["MADV_DONTFORK"], MADV["MADV_DOFORK"]):
                mm.vmas.set(s, e, replace(v, dontfork=advice == MADV["MADV_DONTFORK"]))
            elif advice in (MADV["MADV_HUGEPAGE"], MADV["MADV_NOHUGEPAGE"]):
                mm.vmas.set(s, e, replace(v, huge=advice == MADV["MADV_HUGEPAGE"]))
            elif advice == MADV["MADV_PAGEOUT"]:
                self._pageout(mm, s, e)
            elif advice == MADV["MADV_WILLNEED"] and v.obj is not None:
                obj = self.objects[v.obj]
                if obj.kind == "file":
                    for page in range(s, e, PAGE_SIZE):
                        pgoff = v.pgoff(page)
                        if pgoff < obj.npages() and pgoff not in obj.pages:
                            self._cache_read(obj, pgoff)

    def _pageout_pages(self, mm: Mm, start: int, end: int) -> list[tuple[int, MemObject, Page]]:
        """The file pages MADV_PAGEOUT may reclaim: page-cache pages of regular files in the
        range, mapped by this process alone (mm/madvise.c skips shared folios)."""
        out = []
        for s, e, v in mm.mapped_pages(start, end):
            if v.obj is None or self.objects[v.obj].kind != "file":
                continue
            obj = self.objects[v.obj]
            for page in range(s, e, PAGE_SIZE):
                if page in mm.anon:
                    continue
                cp = obj.pages.get(v.pgoff(page))
                if cp is None or cp.pfn is None:
                    continue
                if page in mm.maybe:
                    obj.uncertain.add(cp.pgoff)     # a PTE the kernel may have: may be paged out
                    continue
                t = mm.pte.get(page)
                if t is not None and t.page is cp and cp.mapcount <= 1:
                    out.append((page, obj, cp))
        return out

    def _pageout(self, mm: Mm, start: int, end: int) -> None:
        """MADV_PAGEOUT: reclaim the range's own file pages now (seed step 5: dirty ones are
        written back first).  The kernel may keep a page (writeback still running, a racing
        reference): the model evicts and marks the page uncertain until it is touched again."""
        from .pressure import evict
        for page, obj, cp in self._pageout_pages(mm, start, end):
            evict(self, cp)
            obj.uncertain.add(cp.pgoff)
            mm.maybe.add(page)
        if self.config.swap_pages > 0:
            self._pageout_swap(mm, start, end)

    def _pageout_swap(self, mm: Mm, start: int, end: int) -> None:
        """With a swap device (fact ``swap_pages``), MADV_PAGEOUT may also swap out anonymous and
        shmem pages this process alone maps (mm/madvise.c madvise_cold_or_pageout_pte_range ->
        reclaim_pages); without one they stay (mm/vmscan.c: no swap, no anon reclaim).  Whether it
        did is the kernel's: the page's presence, residency and frame become unknown, its data stays."""
        for s, e, v in mm.mapped_pages(start, end):
            for page in self._pages_in(mm, s, e):
                t = mm.pte.get(page)
                if t is None or not isinstance(t.page, Page) or t.page.mapcount > 1:
                    continue
                pg = t.page
                if pg.kind != "anon" and v.obj is not None:
                    self.objects[v.obj].uncertain.add(v.pgoff(page))
                fault.zap_pte(self, mm, page)
                mm.maybe.add(page)
                self.pfn_of_page.pop(id(pg), None)
                for pfn in [f for f, q in self.pfn_seen.items() if q is pg]:
                    del self.pfn_seen[pfn]

    def _cache_read(self, obj: MemObject, pgoff: int) -> Page | None:
        cp = Page("file", bytearray(obj.disk[pgoff]) if pgoff in obj.disk else None, obj=obj.id, pgoff=pgoff)
        if self.frames.alloc(cp, 0) is None:
            return None
        obj.pages[pgoff] = cp
        self.lru_add(cp)
        self.stats["file_reads"] += 1
        return cp

    def _punch(self, obj: MemObject, pgoff: int) -> None:
        """Remove one page of an object (truncate / hole punch): every PTE mapping it goes."""
        cp = obj.pages.pop(pgoff, None)
        obj.disk.pop(pgoff, None)
        if cp is None:
            return
        for mm in self.procs.values():
            for page, t in list(mm.pte.items()):
                if t.page is cp:
                    fault.zap_pte(self, mm, page)
            for page, t in list(mm.tlb.items()):
                if t.page is cp:
                    fault.flush_tlb_page(mm, page)
        self._free_page(cp)

    # -- msync -------------------------------------------------------------------

    def _expect_msync(self, mm: Mm, addr: int, length: int, flags: int) -> Expect:
        A, I, S = MS["MS_ASYNC"], MS["MS_INVALIDATE"], MS["MS_SYNC"]
        # mm/msync.c, in order
        if addr & ~PAGE_MASK:
            return errno("posix.msync.einval-unaligned", "EINVAL")
        if flags & ~(A | I | S):
            return errno("posix.msync.einval-flags", "EINVAL")
        if flags & A and flags & S:
            return errno("posix.msync.einval-flags", "EINVAL")
        end = addr + page_align(length)
        if end > U64 or (page_align(length) == 0 and length):
            return errno("posix.msync.enomem-unmapped", "ENOMEM")
        if end == addr:
            return exactly("posix.msync.writes-back", Outcome(value=0))
        start = addr
        unmapped = False
        while True:
            nxt = [r for r in mm.vmas.overlapping(start, U64)]
            if not nxt:
                return errno("posix.msync.enomem-unmapped", "ENOMEM")
            s, e, v = nxt[0]
            if start < s:
                if flags == A:
                    return errno("posix.msync.enomem-unmapped", "ENOMEM")
                start = s
                if start >= end:
                    return errno("posix.msync.enomem-unmapped", "ENOMEM")
                unmapped = True
            if flags & I and v.locked:
                return errno("posix.msync.ebusy-locked", "EBUSY")
            start = e
            if start >= end:
                break
        if unmapped:
            return errno("posix.msync.enomem-unmapped", "ENOMEM")
        return exactly("posix.msync.writes-back", Outcome(value=0))

    def _apply_msync(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, flags: int) -> None:
        if o.errno not in (None, "ENOMEM") or not flags & MS["MS_SYNC"]:
            return
        end = min(addr + page_align(length), U64)
        for s, e, v in list(mm.mapped_pages(addr, end)):
            if v.shared and v.obj is not None and self.objects[v.obj].kind == "file":
                obj = self.objects[v.obj]
                for page in range(s, e, PAGE_SIZE):
                    cp = obj.pages.get(v.pgoff(page))
                    if cp is not None and cp.dirty:
                        from .pressure import writeback
                        writeback(self, obj, cp)

    # -- mincore -------------------------------------------------------------------

    def _expect_mincore(self, mm: Mm, addr: int, length: int) -> Expect:
        # mm/mincore.c sys_mincore
        if addr & ~PAGE_MASK:
            return errno("posix.mincore.einval-unaligned", "EINVAL")
        plen = page_align(length)
        if addr + plen > self.config.task_size + PAGE_SIZE or (length and plen == 0):
            return errno("posix.mincore.enomem-unmapped", "ENOMEM")
        if plen == 0:
            return exactly("posix.mincore.residency", Outcome(value=0))
        cursor = addr
        for s, e, _ in mm.vmas.overlapping(addr, addr + plen):
            if s > cursor:
                return errno("posix.mincore.enomem-unmapped", "ENOMEM")
            cursor = e
        if cursor < addr + plen:
            return errno("posix.mincore.enomem-unmapped", "ENOMEM")
        sure, unsure = 0, 0
        for i, page in enumerate(range(addr, addr + plen, PAGE_SIZE)):
            r = self._resident(mm, page)
            if r is None:
                unsure |= 1 << i
            elif r:
                sure |= 1 << i
        clause = "posix.mincore.residency"
        if any(mm.vmas.find(p)[2].locked for p in range(addr, addr + plen, PAGE_SIZE)
               if mm.vmas.find(p) is not None and not mm.vmas.find(p)[2].onfault):
            clause = "posix.mlock.resident"
        if not unsure:
            return exactly(clause, Outcome(value=sure))

        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None:
                return f"expected a residency vector, observed {o.describe()}"
            if o.value & ~unsure != sure:
                return f"pages the model knows: expected {sure:#x} under mask {~unsure & ((1 << (plen // PAGE_SIZE)) - 1):#x}, observed {o.value:#x}"
            return None
        return Expect(clause, Outcome(value=sure | unsure), f"{sure:#x} (pages {unsure:#x} either way)",
                      predicate=allowed, impl_defined=True)

    def _resident(self, mm: Mm, page: int) -> bool | None:
        """mm/mincore.c: a present PTE is resident; else an anon page is not (unless in swap cache),
        and a file/shmem page is resident iff it is in the page cache.  None: the model cannot say."""
        hit = mm.vmas.find(page)
        v = hit[2]
        t = mm.pte.get(page)
        if t is not None:
            return True
        if page in mm.maybe:
            if v.obj is not None and v.pgoff(page) not in self.objects[v.obj].uncertain:
                cp = self.objects[v.obj].pages.get(v.pgoff(page))
                if cp is not None and cp.pfn is not None:
                    return True
            return None
        if v.obj is None:
            return False
        obj = self.objects[v.obj]
        if v.pgoff(page) in obj.uncertain:
            return None
        cp = obj.pages.get(v.pgoff(page))
        return cp is not None and cp.pfn is not None

    def _apply_mincore(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
        pass

    # -- mlock family ---------------------------------------------------------------

    def _can_do_mlock(self, mm: Mm) -> bool:
        # mm/mlock.c can_do_mlock: a nonzero RLIMIT_MEMLOCK or CAP_IPC_LOCK
        return mm.memlock_soft != 0 or mm.privileged

    def _lock_check(self, mm: Mm, addr: int, length: int) -> Expect | None:
        if not self._can_do_mlock(mm):
            return errno("linux.mlock.eperm-no-limit", "EPERM")
        plen = page_align(length + (addr & ~PAGE_MASK)) & U64
        start = addr & PAGE_MASK
        if not mm.privileged:
            locked = plen // PAGE_SIZE + mm.locked_vm() // PAGE_SIZE
            limit = mm.memlock_soft // PAGE_SIZE
            if locked > limit:
                locked -= sum(e - s for s, e, v in mm.mapped_pages(start, start + plen) if v.locked) // PAGE_SIZE
            if locked > limit:
                return errno("linux.mlock.enomem-rlimit", "ENOMEM")
        return self._range_check(mm, start, plen, "posix.mlock.einval-wrap", "posix.mlock.enomem-unmapped")

    def _range_check(self, mm: Mm, start: int, plen: int, wrap: str, hole: str) -> Expect | None:
        end = start + plen
        if end > U64:
            return errno(wrap, "EINVAL")
        if end == start:
            return None
        if mm.vmas.find(start) is None:
            return errno(hole, "ENOMEM")
        cursor = start
        for s, e, _ in mm.vmas.overlapping(start, end):
            if s > cursor:
                return errno(hole, "ENOMEM")
            cursor = e
        if cursor < end:
            return errno(hole, "ENOMEM")
        return None

    def _populate_fails(self, mm: Mm, start: int, end: int) -> int | None:
        """mm/gup.c __mm_populate without ignore_errors: the first page that cannot be faulted
        in (no access rights, or past a file's end) stops it; mlock then reports ENOMEM."""
        if end <= start:
            return None
        for s, e, v in mm.mapped_pages(start, end):
            if not v.prot & (R | W | X) or v.exec_only:
                return s      # (an execute-only protection key forbids GUP's read too)
            if v.obj is not None:
                obj = self.objects[v.obj]
                for page in range(s, e, PAGE_SIZE):
                    if v.pgoff(page) >= obj.npages():
                        return page
        return None

    def _expect_mlock(self, mm: Mm, addr: int, length: int) -> Expect:
        bad = self._lock_check(mm, addr, length)
        if bad is not None:
            return bad
        start = addr & PAGE_MASK
        return self._populate_expect(mm, start, start + page_align(length + (addr & ~PAGE_MASK)), "posix.mlock.locks")

    def _populate_expect(self, mm: Mm, start: int, end: int, ok: str) -> Expect:
        """mlock's answer after __mm_populate: ENOMEM at the first page that cannot be faulted
        in.  A PROT_EXEC-only range decides by the PKU fact: execute-only (GUP's read is denied
        by the key: ENOMEM, clause linux.x86.exec-only-pkey) or readable (success, clause
        linux.x86.exec-implies-read)."""
        stop = self._populate_fails(mm, start, end)
        if stop is not None:
            hit = mm.vmas.find(stop)
            return errno("linux.x86.exec-only-pkey" if hit is not None and hit[2].exec_only
                         else "linux.mlock.enomem-populate", "ENOMEM")
        if any(v.prot == X for _, _, v in mm.mapped_pages(start, end)):
            return exactly("linux.x86.exec-implies-read", Outcome(value=0))
        return exactly(ok, Outcome(value=0))

    def _expect_mlock2(self, mm: Mm, addr: int, length: int, flags: int) -> Expect:
        if flags & ~1:
            return errno("linux.mlock2.einval-flags", "EINVAL")
        bad = self._lock_check(mm, addr, length)
        if bad is not None:
            return bad
        start = addr & PAGE_MASK
        if flags:
            return exactly("linux.mlock2.onfault", Outcome(value=0))
        return self._populate_expect(mm, start, start + page_align(length + (addr & ~PAGE_MASK)), "posix.mlock.locks")

    def _set_locked(self, mm: Mm, o: Outcome, addr: int, length: int, lock: bool, onfault: bool) -> None:
        if o.errno not in (None, "ENOMEM"):
            return
        start = addr & PAGE_MASK
        end = start + page_align(length + (addr & ~PAGE_MASK))
        if end <= start or end > U64:
            return
        populate_end = end
        if o.errno == "ENOMEM" and lock and not onfault:
            stop = self._populate_fails(mm, start, end)
            chk = self._lock_check(mm, addr, length)
            if stop is not None and chk is None:
                for s, e, v in list(mm.mapped_pages(start, end)):
                    mm.vmas.set(s, e, replace(v, locked=True, onfault=False))
                self._populate(mm, start, stop)
                return
        if o.errno == "ENOMEM":
            if not mm.privileged and lock and self._lock_check(mm, addr, length) is not None and \
                    self._lock_check(mm, addr, length).clause == "linux.mlock.enomem-rlimit":
                return
            # applied up to the first hole
            cursor = start
            for s, e, _ in mm.vmas.overlapping(start, end):
                if s > cursor:
                    break
                cursor = e
            end = min(cursor, end)
            if mm.vmas.find(start) is None:
                return
        for s, e, v in list(mm.mapped_pages(start, end)):
            mm.vmas.set(s, e, replace(v, locked=lock, onfault=onfault and lock))
        if lock and not onfault and o.ok:
            # mm/mlock.c do_mlock: __mm_populate only after the flags went on without error
            self._populate(mm, start, end)

    def _apply_mlock(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
        self._set_locked(mm, o, addr, length, True, False)

    def _apply_mlock2(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, flags: int) -> None:
        if not flags & ~1:
            self._set_locked(mm, o, addr, length, True, bool(flags & 1))

    def _expect_munlock(self, mm: Mm, addr: int, length: int) -> Expect:
        plen = page_align(length + (addr & ~PAGE_MASK)) & U64
        return self._range_check(mm, addr & PAGE_MASK, plen, "posix.mlock.einval-wrap",
                                 "posix.mlock.enomem-unmapped") or exactly("posix.munlock.unlocks", Outcome(value=0))

    def _apply_munlock(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
        self._set_locked(mm, o, addr, length, False, False)

    def _expect_mlockall(self, mm: Mm, flags: int) -> Expect:
        C, F, OF = MCL["MCL_CURRENT"], MCL["MCL_FUTURE"], MCL["MCL_ONFAULT"]
        if not flags or flags & ~(C | F | OF) or flags == OF:
            return errno("posix.mlockall.einval-flags", "EINVAL")
        if not self._can_do_mlock(mm):
            return errno("linux.mlock.eperm-no-limit", "EPERM")
        if flags & C and not mm.privileged and mm.total_vm() + self.config.base_vm > mm.memlock_soft:
            return errno("linux.mlock.enomem-rlimit", "ENOMEM")
        return exactly("posix.mlockall.locks", Outcome(value=0))

    def _apply_mlockall(self, proc: str, mm: Mm, o: Outcome, flags: int) -> None:
        if not o.ok:
            return
        C, F, OF = MCL["MCL_CURRENT"], MCL["MCL_FUTURE"], MCL["MCL_ONFAULT"]
        mm.mcl_future = (F | (flags & OF)) if flags & F else 0
        if flags & C:
            for s, e, v in list(mm.vmas.items()):
                mm.vmas.set(s, e, replace(v, locked=True, onfault=bool(flags & OF)))
            if not flags & OF:
                for s, e, _ in list(mm.vmas.items()):
                    self._populate(mm, s, e)

    def _expect_munlockall(self, mm: Mm) -> Expect:
        return exactly("posix.munlockall.unlocks", Outcome(value=0))

    def _apply_munlockall(self, proc: str, mm: Mm, o: Outcome) -> None:
        mm.mcl_future = 0
        for s, e, v in list(mm.vmas.items()):
            if v.locked:
                mm.vmas.set(s, e, replace(v, locked=False, onfault=False))

    def _expect_set_memlock_limit(self, mm: Mm, soft: int) -> Expect:
        # kernel/sys.c do_prlimit: soft above hard is EINVAL; raising hard needs CAP_SYS_RESOURCE
        if soft & U64 > self.config.memlock_hard:
            return errno("posix.setrlimit.einval-soft-above-hard", "EINVAL")
        return exactly("posix.setrlimit.sets", Outcome(value=0))

    def _apply_set_memlock_limit(self, proc: str, mm: Mm, o: Outcome, soft: int) -> None:
        if o.ok:
            mm.memlock_soft = soft & U64

    def _expect_drop_privileges(self, mm: Mm) -> Expect:
        if not mm.can_setuid:
            # setgroups(2), setresuid(2): without CAP_SETGID / CAP_SETUID (an unprivileged caller,
            # or one that already dropped them) changing the groups fails with EPERM
            return errno("posix.setuid.eperm", "EPERM")
        return exactly("posix.setuid.drops-capabilities", Outcome(value=0))

    def _apply_drop_privileges(self, proc: str, mm: Mm, o: Outcome) -> None:
        if o.ok:
            mm.privileged = False
            mm.dac_override = False
            mm.fowner = False
            mm.can_setuid = False
            mm.uid = NOBODY

    # -- files: shm_open, memfd_create, open_file, pipe, ftruncate, close ---------------

    def _fd_expect(self, clause: str, mm: Mm | None = None) -> Expect:
        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None or o.value < 0:
                return f"expected a file descriptor, observed {o.describe()}"
            return None
        nxt = 3 + sum(len(m.fds) for m in self.procs.values()) + self._next_obj
        ok = Expect(clause, Outcome(value=nxt), "a file descriptor", predicate=allowed, impl_defined=True)
        limit = self.config.rlimit_nofile
        if mm is not None and limit >= 0 and len(mm.fds) + 64 >= limit:
            # fs/file.c alloc_fd: a descriptor at or above RLIMIT_NOFILE is EMFILE (the target's own
            # descriptors are not known exactly: near the limit either answer)
            return _or_errno(ok, "posix.open.emfile", "EMFILE")
        return ok

    def _shm_name(self, name: str) -> tuple[str, Expect | None]:
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

    def _may(self, mm: Mm, obj: MemObject, read: bool, write: bool) -> bool:
        if mm.dac_override:
            return True
        bits = obj.mode >> 6 if obj.uid == mm.uid else obj.mode
        return (not read or bool(bits & 4)) and (not write or bool(bits & 2))

    def _expect_shm_open(self, mm: Mm, name: str, oflag: int, mode: int) -> Expect:
        n, bad = self._shm_name(name)
        if bad is not None:
            return bad
        creat, excl = oflag & O_FLAGS["O_CREAT"], oflag & O_FLAGS["O_EXCL"]
        acc = oflag & 3
        if acc == 3:
            return errno("posix.shm_open.einval-name", "EINVAL")
        oid = self.shm_names.get(n)
        if oid is not None and creat and excl:
            return errno("posix.shm_open.eexist", "EEXIST")
        if oid is None and not creat:
            return errno("posix.shm_open.enoent", "ENOENT")
        if oid is not None and not self._may(mm, self.objects[oid], acc in (0, 2), acc in (1, 2)):
            return errno("posix.shm_open.eacces", "EACCES")
        if oid is None and not self._may_create(mm, acc, mode):
            return errno("posix.shm_open.eacces", "EACCES")
        return self._fd_expect("posix.shm_open.opens" if oid is not None else "posix.shm_open.creates", mm)

    def _may_create(self, mm: Mm, acc: int, mode: int) -> bool:
        # open(2) O_CREAT: the new file's permissions apply to later opens, not this one
        return True

    def _apply_shm_open(self, proc: str, mm: Mm, o: Outcome, name: str, oflag: int, mode: int) -> None:
        if not o.ok or o.value is None:
            return
        n = name.lstrip("/")
        oid = self.shm_names.get(n)
        if oid is None:
            obj = self._new_object("shm", 0, n, mode & 0o777 & ~self.config.umask, mm.uid)
            obj.linked = True
            self.shm_names[n] = obj.id
            oid = obj.id
        elif oflag & O_FLAGS["O_TRUNC"] and oflag & 3:
            self._truncate(self.objects[oid], 0)
        self._add_fd(mm, o.value, oid, oflag & 3)

    def _add_fd(self, mm: Mm, fd: int, oid: int | None, acc: int) -> None:
        old = mm.fds.pop(fd, None)
        if old is not None and old.obj is not None:
            self.objects[old.obj].opens -= 1
            self._collect({old.obj})
        mm.fds[fd] = Fd(oid, acc in (0, 2), acc in (1, 2))
        if oid is not None:
            self.objects[oid].opens += 1

    def _expect_shm_unlink(self, mm: Mm, name: str) -> Expect:
        n, bad = self._shm_name(name)
        if n in (".", ".."):
            return errno("posix.shm_unlink.enoent", "EISDIR")     # unlink of the directory itself
        if bad is not None:
            # glibc shm_unlink: "historically, shm_unlink returned ENOENT for invalid names"
            return errno("posix.shm_unlink.enoent", "ENOENT" if bad.default.errno == "EINVAL" else bad.default.errno)
        oid = self.shm_names.get(n)
        if oid is None:
            return errno("posix.shm_unlink.enoent", "ENOENT")
        if not mm.fowner and self.objects[oid].uid != mm.uid:
            # /dev/shm is sticky: only the owner may unlink (EPERM, which glibc reports as EACCES)
            return errno("posix.shm_unlink.eacces", "EACCES")
        return exactly("posix.shm_unlink.removes-name", Outcome(value=0))

    def _apply_shm_unlink(self, proc: str, mm: Mm, o: Outcome, name: str) -> None:
        if o.ok:
            oid = self.shm_names.pop(name.lstrip("/"), None)
            if oid is not None:
                self.objects[oid].linked = False
                self._collect({oid})

    def _expect_memfd_create(self, mm: Mm, name: str, flags: int) -> Expect:
        # mm/memfd.c: unknown flags, HUGETLB (not modelled) and names over 249 bytes are EINVAL
        if flags & ~0x1F or flags & 0x4 or len(name.encode()) > 249 or (flags & 0x8 and flags & 0x10):
            return errno("linux.memfd_create.einval", "EINVAL")
        return self._fd_expect("linux.memfd_create.creates", mm)

    def _apply_memfd_create(self, proc: str, mm: Mm, o: Outcome, name: str, flags: int) -> None:
        if o.ok and o.value is not None:
            obj = self._new_object("memfd", 0, name, 0o777, mm.uid)
            self._add_fd(mm, o.value, obj.id, 2)

    def _expect_open_file(self, mm: Mm, size: int, oflag: int) -> Expect:
        if size & U64 > LLONG_MAX or oflag & 3 == 3:
            return errno("posix.ftruncate.einval-length", "EINVAL")
        return self._fd_expect("posix.open.regular-file", mm)

    def _apply_open_file(self, proc: str, mm: Mm, o: Outcome, size: int, oflag: int) -> None:
        if o.ok and o.value is not None:
            obj = self._new_object("file", size, "", 0o600, mm.uid)
            self._add_fd(mm, o.value, obj.id, oflag & 3)

    def _expect_pipe(self, mm: Mm) -> Expect:
        return self._fd_expect("posix.pipe.creates", mm)

    def _apply_pipe(self, proc: str, mm: Mm, o: Outcome) -> None:
        if o.ok and o.value is not None:
            self._add_fd(mm, o.value, None, 0)

    def _expect_close(self, mm: Mm, fd: int) -> Expect:
        if fd not in mm.fds:
            return errno("posix.close.ebadf", "EBADF")
        return exactly("posix.close.keeps-mappings", Outcome(value=0))

    def _apply_close(self, proc: str, mm: Mm, o: Outcome, fd: int) -> None:
        if o.ok and fd in mm.fds:
            f = mm.fds.pop(fd)
            if f.obj is not None:
                self.objects[f.obj].opens -= 1
                self._collect({f.obj})

    def _expect_ftruncate(self, mm: Mm, fd: int, length: int) -> Expect:
        # fs/open.c do_sys_ftruncate: the length is checked before the descriptor
        if length < 0 or length > LLONG_MAX:
            return errno("posix.ftruncate.einval-length", "EINVAL")
        f = mm.fds.get(fd)
        if f is None:
            return errno("posix.ftruncate.ebadf", "EBADF")
        if f.obj is None or not f.write:
            return errno("posix.ftruncate.einval-not-writable", "EINVAL")
        return exactly("posix.ftruncate.sets-size", Outcome(value=0))

    def _apply_ftruncate(self, proc: str, mm: Mm, o: Outcome, fd: int, length: int) -> None:
        if o.ok and fd in mm.fds and mm.fds[fd].obj is not None:
            self._truncate(self.objects[mm.fds[fd].obj], length)

    def _truncate(self, obj: MemObject, size: int) -> None:
        """ftruncate: pages wholly past the new end are removed from every mapping (a later
        access is SIGBUS); the partial last page's tail is zeroed (POSIX: the extension reads as zero)."""
        old = obj.size
        keep = (size + PAGE_SIZE - 1) // PAGE_SIZE
        for pgoff in [p for p in set(obj.pages) | set(obj.disk) if p >= keep]:
            self._punch(obj, pgoff)
        edge = min(old, size)
        if edge % PAGE_SIZE:
            pgoff = edge // PAGE_SIZE
            cp = obj.pages.get(pgoff)
            if cp is not None and cp.data is not None:
                cp.data[edge % PAGE_SIZE:] = bytes(PAGE_SIZE - edge % PAGE_SIZE)
            d = obj.disk.get(pgoff)
            if d is not None:
                d[edge % PAGE_SIZE:] = bytes(PAGE_SIZE - edge % PAGE_SIZE)
        obj.size = size

    # -- observation calls ---------------------------------------------------------

    def _expect_pfn_of(self, mm: Mm, addr: int) -> Expect:
        from .pressure import pfn_expect
        return pfn_expect(self, mm, addr & U64)

    def _apply_pfn_of(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        from .pressure import pfn_adopt
        pfn_adopt(self, mm, addr & U64, o)

    def _expect_thp_mapped(self, mm: Mm, addr: int) -> Expect:
        base = (addr & U64) & ~(HPAGE - 1)
        if base in mm.huge:
            return exactly("linux.thp.fault-huge", Outcome(value=1))
        if base in mm.thp_maybe:
            return one_of_values("linux.thp.fault-huge", (1, 0))
        if base in mm.thp_split:
            # split_huge_pmd maps the huge folio by PTEs; the folio itself is split later (or never)
            return one_of_values("linux.thp.split-keeps-data", (1, 0))
        return exactly("linux.thp.not-eligible-small", Outcome(value=0))

    def _apply_thp_mapped(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        base = (addr & U64) & ~(HPAGE - 1)
        if base in mm.thp_maybe:
            mm.thp_maybe.discard(base)
            if o.value == 1:
                from .pressure import materialize_huge
                materialize_huge(self, mm, base)
            else:
                for p in range(base, base + HPAGE, PAGE_SIZE):
                    if p not in mm.pte:
                        mm.maybe.discard(p)

    def _expect_minflt(self, mm: Mm) -> Expect:
        lo = mm.minflt
        hi = mm.minflt + mm.minflt_maybe + (0 if self.config.thp_certain or not self._noisy() else 10 ** 9)

        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None:
                return f"expected a count, observed {o.describe()}"
            if o.value < lo:
                return f"at least {lo} minor faults must have happened, observed {o.value}"
            if o.value > hi:
                return f"at most {hi} minor faults, observed {o.value}"
            return None
        return Expect("seed.fault.cow-minor" if mm.cow_faults else "seed.fault.minor-counted", Outcome(value=lo),
                      f"between {lo} and {hi}",
                      predicate=allowed, impl_defined=True)

    def _noisy(self) -> bool:
        # a real process faults on its own (the interpreter, the harness): counts are lower bounds
        return bool(self.config.quiet_ranges)

    def _apply_minflt(self, proc: str, mm: Mm, o: Outcome) -> None:
        pass

    def _expect_majflt(self, mm: Mm) -> Expect:
        lo = mm.majflt

        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None:
                return f"expected a count, observed {o.describe()}"
            if o.value < lo:
                return f"at least {lo} major faults must have happened, observed {o.value}"
            if not self._noisy() and o.value != lo:
                return f"expected {lo} major faults, observed {o.value}"
            return None
        return Expect("seed.fault.major-counted", Outcome(value=lo), f"at least {lo}", predicate=allowed,
                      impl_defined=True)

    def _apply_majflt(self, proc: str, mm: Mm, o: Outcome) -> None:
        pass

    def _expect_get_node(self, mm: Mm, addr: int) -> Expect:
        from .pressure import node_expect
        return node_expect(self, mm, addr & U64)

    def _apply_get_node(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        pass

    def _expect_mbind(self, mm: Mm, addr: int, length: int, mode: int, nodemask: int) -> Expect:
        from .pressure import mbind_expect
        return mbind_expect(self, mm, addr, length, mode, nodemask)

    def _apply_mbind(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, mode: int, nodemask: int) -> None:
        if o.ok and page_align(length):
            end = addr + page_align(length)
            for s, e, v in list(mm.mapped_pages(addr, end)):
                mm.vmas.set(s, e, replace(v, policy=(mode, nodemask)))

    # -- pressure events (the model target only) -----------------------------------

    def _expect_memory_limit(self, mm: Mm, ram_pages: int, swap_pages: int) -> Expect:
        if ram_pages <= 0 or swap_pages < 0:
            return errno("memspec.pressure.event", "EINVAL")
        return exactly("memspec.pressure.event", Outcome(value=0))

    def _apply_memory_limit(self, proc: str, mm: Mm, o: Outcome, ram_pages: int, swap_pages: int) -> None:
        if o.ok:
            from .pressure import set_limits
            set_limits(self, ram_pages, swap_pages)

    def _expect_set_swappiness(self, mm: Mm, value: int) -> Expect:
        if not 0 <= value <= 200:
            return errno("linux.swap.swappiness-range", "EINVAL")
        return exactly("linux.swap.swappiness-range", Outcome(value=0))

    def _apply_set_swappiness(self, proc: str, mm: Mm, o: Outcome, value: int) -> None:
        if o.ok:
            self.swappiness = value

    def _expect_reclaim(self, mm: Mm, pages: int) -> Expect:
        from .pressure import is_locked, reclaim_plan
        n = len(reclaim_plan(self, max(pages, 0)))
        locked = any(p.pfn is not None and is_locked(self, p) for p in self.lru)

        def blame(o: Outcome) -> str:
            # more pages than the evictable ones: a locked page must have gone
            return "posix.mlock.never-evicted" if locked and o.value is not None and o.value > n \
                else "seed.swap.clock-second-chance"
        e = exactly("seed.swap.clock-second-chance", Outcome(value=n))
        return replace(e, blame_by=blame)

    def _apply_reclaim(self, proc: str, mm: Mm, o: Outcome, pages: int) -> None:
        from .pressure import reclaim
        reclaim(self, max(pages, 0))

    def _expect_tick(self, mm: Mm) -> Expect:
        return exactly("memspec.pressure.event", Outcome(value=0))

    def _apply_tick(self, proc: str, mm: Mm, o: Outcome) -> None:
        mm.vtime += 1

    def _expect_wss(self, mm: Mm, tau: int) -> Expect:
        from .pressure import working_set
        return exactly("seed.wss.denning", Outcome(value=len(working_set(mm, tau))))

    def _apply_wss(self, proc: str, mm: Mm, o: Outcome, tau: int) -> None:
        pass

    def _expect_oom(self, mm: Mm) -> Expect:
        from .pressure import oom_expect
        return oom_expect(self)

    def _apply_oom(self, proc: str, mm: Mm, o: Outcome) -> None:
        from .pressure import oom_kill_pid
        if o.ok and o.value is not None:
            oom_kill_pid(self, o.value)

    def _expect_khugepaged(self, mm: Mm) -> Expect:
        from .pressure import collapse_candidates
        return exactly("linux.thp.khugepaged-collapse", Outcome(value=len(collapse_candidates(self, mm))))

    def _apply_khugepaged(self, proc: str, mm: Mm, o: Outcome) -> None:
        from .pressure import collapse
        collapse(self, mm)

    # -- invariants ------------------------------------------------------------

    def invariants(self) -> list[tuple[str, str]]:
        """Broken invariants of the os layer's state: (clause, message) pairs."""
        from .invariants import check_all
        return check_all(self)

    # -- views -----------------------------------------------------------------

    def maps(self, proc: str) -> list[tuple[int, int, str]]:
        """The process's mappings as /proc/PID/maps would show them, merged where equal."""
        out: list[tuple[int, int, str]] = []
        for s, e, v in self.procs[proc].vmas.items():
            if out and out[-1][1] == s and out[-1][2] == v.perms:
                out[-1] = (out[-1][0], e, v.perms)
            else:
                out.append((s, e, v.perms))
        return out

    def blame(self, proc: str, addr: int) -> str:
        hit = self.procs[proc].vmas.find(addr)
        return hit[2].clause if hit else "posix.munmap.removes-range"

    def fault_report(self) -> dict[str, Any]:
        """The fault path's counters, for a report: faults by class, evictions, write-backs."""
        per_proc = {p: {"minflt": m.minflt, "minflt_maybe": m.minflt_maybe, "majflt": m.majflt}
                    for p, m in self.procs.items()}
        return {"stats": dict(self.stats), "procs": per_proc}


_LEGACY_MAP_MASK = (MAP["MAP_SHARED"] | MAP["MAP_PRIVATE"] | MAP["MAP_FIXED"] | MAP["MAP_ANONYMOUS"]
                    | MAP["MAP_DENYWRITE"] | MAP["MAP_EXECUTABLE"] | MAP["MAP_UNINITIALIZED"]
                    | MAP["MAP_GROWSDOWN"] | MAP["MAP_LOCKED"] | MAP["MAP_NORESERVE"] | MAP["MAP_POPULATE"]
                    | MAP["MAP_NONBLOCK"] | MAP["MAP_STACK"] | MAP["MAP_HUGETLB"] | MAP["MAP_32BIT"]
                    | MAP["MAP_FIXED_NOREPLACE"] | 0x3F000000)


def fault_around_pages() -> int:
    return 16


def one_of_values(clause: str, values: tuple[int, ...]) -> Expect:
    outs = tuple(Outcome(value=v) for v in values)
    return Expect(clause, outs[0], " or ".join(str(v) for v in values), outs, impl_defined=True)


def new_model(facts: dict) -> System:
    return System(Config.from_facts(facts))
