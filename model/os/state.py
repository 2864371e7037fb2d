"""The os layer's state and the mechanics every family of calls shares.

What a process is (``Mm``: VMAs, page tables, TLB, files, counters), what the machine is
(``Config``, the facts a target reports), and ``OsState``: every process, memory object and
frame, with the operations the rules of several calls and the fault path, reclaim and the
invariants all rest on -- unmap a range (zap_pte_range), drop and free a page, the LRU,
split a huge mapping, release a process (exit_mmap), punch a page out of an object.  The
rules of the calls themselves live in one module per family (``model.os.mappings``,
``model.os.access``, ...); ``model.mm.System`` composes them.

This module imports nothing of the fault path, pressure or the rules, so each of those
imports it at the top level: state <- invariants <- pressure <- fault <- rules <- mm.

Worked example: ``mmap`` of two pages then ``munmap`` of the first is ``OsState.unmap`` of
[a, a + 4096): its PTE goes (with a TLB flush, ``zap_pte``), the private page's mapcount
drops to 0 and its frame is freed (``free_page``), and the VMA tree keeps [a + 4096, a + 8192).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from memspec.consts import PROT, PAGE_SIZE

from ..intervals import IntervalMap
from ..pages import FrameTable, MemObject, Page
from .footprint import PTE, TLB, ObjectRefs, PageTable, VmaTree
from ..walk import PageFault

PAGE_MASK = ~(PAGE_SIZE - 1)
TASK_SIZE = 0x7FFFFFFFF000          # x86-64, 4-level paging: 128 TiB - one page
DEFAULT_MMAP_BASE = 0x7F0000000000   # where the model's own top-down placement starts
HPAGE = 2 << 20                      # a PMD-mapped transparent huge page
HPAGE_NR = HPAGE // PAGE_SIZE
LLONG_MAX = (1 << 63) - 1

U64 = (1 << 64) - 1


# What a VMA's protection holds: mmap's PROT bits.  (The kind of an access is another thing:
# model.pte's READ, WRITE, EXEC, one vocabulary with the hw layer.)
PROT_R, PROT_W, PROT_X = PROT["PROT_READ"], PROT["PROT_WRITE"], PROT["PROT_EXEC"]


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
    wipeonfork: bool = False   # VM_WIPEONFORK (MADV_WIPEONFORK, MAP_DROPPABLE): a child gets the range empty
    droppable: bool = False    # VM_DROPPABLE (MAP_DROPPABLE, Linux 6.11+)
    sealed: bool = False       # VM_SEALED (mseal, Linux 6.10+): no unmap, move, protection change or discard
    growsdown: bool = False    # VM_GROWSDOWN (MAP_GROWSDOWN): a fault just below grows it down (a stack)
    readahead: int = 0         # 0, VM_RAND_READ (1: MADV_RANDOM), VM_SEQ_READ (2: MADV_SEQUENTIAL)
    dontdump: bool = False     # VM_DONTDUMP (MADV_DONTDUMP, MAP_DROPPABLE)
    mergeable: bool = False    # VM_MERGEABLE (MADV_MERGEABLE on memory KSM may merge)

    @property
    def perms(self) -> str:
        return (("r" if self.prot & PROT_R else "-") + ("w" if self.prot & PROT_W else "-")
                + ("x" if self.prot & PROT_X else "-") + ("s" if self.shared else "p"))

    def pgoff(self, page: int) -> int:
        return (page - self.origin) // PAGE_SIZE


# A Vma is a frozen value, so one made for a question asked before serves again: making or replacing
# one (a dataclass of 20 fields) cost 3-4 us, most of what the apply of an mmap or mprotect did.
_VMAS: dict[tuple, Vma] = {}
VMAS_KEPT = 4096     # distinct questions remembered (then forgotten all at once)


def vma_with(v: Vma, **fields: Any) -> Vma:
    """``dataclasses.replace(v, **fields)``, made once per distinct question.  Callers pass each
    field with one type (a bool never as 0 or 1), as equal questions get one Vma."""
    key = (v, *fields.items())
    w = _VMAS.get(key)
    if w is None:
        if len(_VMAS) >= VMAS_KEPT:
            _VMAS.clear()
        w = _VMAS[key] = replace(v, **fields)
    return w


# mprotect's question of a VMA, found by the VMA's identity before its value (a Vma's hash is worked
# out from its 20 fields on every lookup): the VMA asked about -> (it, the answer); each kept alive
# here, so an id names one VMA
_REPROTECTED: dict[tuple, tuple[Vma, Vma]] = {}


def reprotected(v: Vma, prot: int, exec_only: bool, clause: str) -> Vma:
    """``vma_with(v, prot=prot, exec_only=exec_only, clause=clause)``: the same Vma."""
    key = (id(v), prot, exec_only, clause)
    hit = _REPROTECTED.get(key)
    if hit is not None and hit[0] is v:
        return hit[1]
    w = vma_with(v, prot=prot, exec_only=exec_only, clause=clause)
    if len(_REPROTECTED) >= VMAS_KEPT:
        _REPROTECTED.clear()
    _REPROTECTED[key] = (v, w)
    return w


def new_vma(*key: Any) -> Vma:
    """The VMA mmap makes, one per distinct (prot, shared, obj, origin, exec_only, clause, locked,
    onfault, may_write, droppable, growsdown), as ``vma_with``."""
    v = _VMAS.get(key)      # (a key of another shape than vma_with's: no Vma first)
    if v is None:
        prot, shared, obj, origin, exec_only, clause, locked, onfault, may_write, droppable, growsdown = key
        if len(_VMAS) >= VMAS_KEPT:
            _VMAS.clear()
        v = _VMAS[key] = Vma(prot, shared, obj, origin, exec_only=exec_only, clause=clause, locked=locked,
                             onfault=onfault, may_write=may_write, huge=None, droppable=droppable,
                             wipeonfork=droppable, dontdump=droppable, growsdown=growsdown)
    return v


@dataclass(slots=True)
class Fd:
    obj: int | None      # None: a pipe
    read: bool
    write: bool
    # the file offset of the open file description (read, write, lseek): one list shared by the
    # descriptors fork copies, as the kernel shares the struct file
    pos: list[int] = field(default_factory=lambda: [0])
    # O_APPEND (a flag of the open file description, shared as the offset is): every write goes
    # to the end of the file (posix.write.append-at-end; Linux pwrite too: linux.pwrite.append-at-end)
    append: bool = False


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
    rlimit_fsize: int = -1           # RLIMIT_FSIZE soft limit in bytes, -1 unlimited
    rlimit_fsize_hard: int = -1      # RLIMIT_FSIZE hard limit in bytes, -1 unlimited
    cap_dac_override: bool = True    # root: file modes do not bind (CAP_DAC_OVERRIDE)
    cap_fowner: bool = True          # root: may unlink others' names in sticky /dev/shm (CAP_FOWNER)
    cap_setuid: bool = True          # may change user and group IDs (CAP_SETUID and CAP_SETGID)
    thp_defrag: str = "madvise"      # .../transparent_hugepage/defrag: whether a fault waits for a huge page
    # the advice values this kernel accepts (madvise(addr, 0, advice) is 0, not EINVAL: mm/madvise.c
    # madvise_behavior_valid, which leaves out what the kernel's configuration compiled out -- KSM,
    # THP, MEMORY_FAILURE); None: not probed, decided by the release (ADVICE_SINCE)
    madv_known: tuple[int, ...] | None = None
    cap_sys_admin: bool = True       # root: MADV_HWPOISON / MADV_SOFT_OFFLINE are allowed (CAP_SYS_ADMIN)
    # a write() that extends a regular file zeroes the old end-of-file block's tail in the page cache
    # (bytes stored there through a mapping are lost; ext4 since c7fc0366c656, upstream in late 2024,
    # 6.12 or 6.13 -- not pinned here -- and backported to 6.6 stable): probed by the linux targets on their files' folder; None: decided by the release
    eof_zero_on_write: bool | None = None

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
                          ("rlimit_fsize", int), ("rlimit_fsize_hard", int),
                          ("cap_dac_override", bool), ("cap_fowner", bool), ("cap_setuid", bool), ("thp_defrag", str), ("cap_sys_admin", bool),
                          ("task_size", int), ("eof_zero_on_write", bool)):
            if key in facts:
                setattr(c, key, conv(facts[key]))
        if "exec_only" not in facts and "pku" in facts:
            c.exec_only = bool(facts["pku"])
        if "kernel" in facts:
            c.kernel = kernel_version(str(facts["kernel"]))
        if "madv_known" in facts and facts["madv_known"] is not None:
            c.madv_known = tuple(int(a) for a in facts["madv_known"])
        if "quiet_ranges" in facts:
            c.quiet_ranges = tuple((int(a), int(b)) for a, b in facts["quiet_ranges"])
        return c


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
    "mseal": (6, 10),                  # mseal(2) (since Linux 6.10)
    "MAP_ABOVE4G": (6, 6),             # arch/x86/include/uapi/asm/mman.h MAP_ABOVE4G (Linux 6.6, shadow stacks)
    # not a flag: pipefs mounted noexec (path_noexec true for a pipe, so mmap with PROT_EXEC is
    # EPERM before ENODEV): measured on 6.18, the release that brought it not pinned; before
    # 6.18 the model allows both answers
    "pipefs-noexec": (6, 18),
    # mm/mremap.c: a MREMAP_FIXED move of several VMAs, one by one (Linux 6.17); before, a range
    # over several VMAs is EFAULT and a sealed one refuses the whole call up front
    "mremap-multi-vma": (6, 17),
}

# madvise advice by the release that brought it (madvise(2): "since Linux x.y"; the
# MADV_GUARD_* pair: Linux 6.13, mm/madvise.c madvise_guard_install).  Used when the target
# did not probe which advice its kernel accepts (fact ``madv_known``): a configuration that
# compiled KSM, THP or MEMORY_FAILURE out then reads as one that has them.
ADVICE_SINCE = {
    0: (2, 0), 1: (2, 0), 2: (2, 0), 3: (2, 0), 4: (2, 0), 8: (4, 5), 9: (2, 6), 10: (2, 6), 11: (2, 6),
    12: (2, 6), 13: (2, 6), 14: (2, 6), 15: (2, 6), 16: (3, 4), 17: (3, 4), 18: (4, 14), 19: (4, 14),
    20: (5, 4), 21: (5, 4), 22: (5, 14), 23: (5, 14), 24: (5, 18), 25: (6, 1), 100: (2, 6), 101: (2, 6),
    102: (6, 13), 103: (6, 13),
}


class Mm:
    """One process: its address space (mm_struct), page tables, TLB, files and counters."""

    def __init__(self, config: Config) -> None:
        # the footprint since the last invariant check: the tables below record what changes (model.os.footprint)
        self.touched: set[int] = set()                    # page addresses whose PTE, TLB entry or private page changed
        self.touched_pages: set[Page] = set()             # pages that gained or lost a mapping here
        self.touched_ranges: list[tuple[int, int]] = []   # ranges whose VMAs changed
        self.touched_objs: set[int] = set()               # objects mapped or named there before or after
        self.vmas: IntervalMap[Vma] = VmaTree(self.touched_ranges, self.touched_objs)
        self.anon: dict[int, Page] = PageTable(self.touched, self.touched_pages)   # address -> private (anon_vma) page
        self.pte: dict[int, Pte] = PageTable(self.touched, self.touched_pages, PTE)  # address -> present PTE
        # cached translations (filled on access, flushed on change)
        self.tlb: dict[int, Pte] = PageTable(self.touched, self.touched_pages, TLB)
        self.maybe: set[int] = set()          # pages whose PTE the model cannot know (fault-around, fork copy)
        self.huge: set[int] = set()           # 2 MiB bases mapped by a huge PMD
        self.thp_maybe: set[int] = set()      # 2 MiB bases where a fault may have got a huge page
        self.thp_split: set[int] = set()      # PMD split, pages maybe still one huge folio (deferred split)
        self.fds: dict[int, Fd] = ObjectRefs(self.touched_objs)
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
        self.fsize_soft = config.rlimit_fsize      # RLIMIT_FSIZE of this process, -1 unlimited
        self.mcl_future = 0                   # mlockall(MCL_FUTURE[|MCL_ONFAULT]) in force
        self.vtime = 0                        # this process's virtual time (Denning)
        self.last_ref: dict[int, int] = {}    # page -> virtual time of its last reference
        self.flushed: set[int] = set()        # pages whose translation munmap/mprotect removed or narrowed
        self.unlocked_at_fork: set[int] = set()   # pages locked in the parent, not here
        self.guard: set[int] = set()          # pages with a guard marker (MADV_GUARD_INSTALL): accesses SIGSEGV
        self.sys_admin = config.cap_sys_admin  # CAP_SYS_ADMIN (drop_privileges clears it)
        self.cow_faults = 0                   # write faults on pages shared copy-on-write
        self.last_placement: tuple = ((), None)   # mappings._placement's last question and answer

    def mapped_pages(self, start: int, end: int) -> Iterator[tuple[int, int, Vma]]:
        for s, e, v in self.vmas.overlapping(start, end):
            yield max(s, start), min(e, end), v

    def locked_vm(self) -> int:
        return sum(e - s for s, e, v in self.vmas.items() if v.locked)

    def total_vm(self) -> int:
        return sum(e - s for s, e, _ in self.vmas.items())


@dataclass(slots=True)
class Pte:
    """A present page-table entry (or a TLB entry cached from one): the page it maps and its
    R/W bit; U/S is always user here.  ``read``/``exec`` matter for TLB entries, which the
    hardware uses without looking at the VMA."""

    page: Any            # a Page or ZERO_PAGE (Any, not object: mypyc cannot build a dataclass field of type object)
    write: bool
    read: bool = True
    exec: bool = False


def flush_tlb_page(mm: Mm, page_addr: int) -> None:
    """Seed step 8 (seed.fault.step8-tlb): INVLPG -- drop any cached translation of the page."""
    mm.tlb.pop(page_addr, None)


def zap_pte(sys: OsState, mm: Mm, page_addr: int) -> None:
    """Remove a PTE (munmap, MADV_DONTNEED, reclaim) and flush its TLB entry."""
    old = mm.pte.pop(page_addr, None)
    if old is not None and isinstance(old.page, Page) and old.page.kind != "anon":
        old.page.mapcount -= 1
    flush_tlb_page(mm, page_addr)


class OsState:
    """All processes, memory objects and frames; the os layer's whole state, and the mechanics
    the rules share.  ``model.mm.System`` adds the rule tables and the judge's entry points."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        main = Mm(self.config)
        self.procs: dict[str, Mm] = {"main": main}
        self.touched_objs: set[int] = set()   # objects made, freed or named since the last invariant check
        self.objects: dict[int, MemObject] = ObjectRefs(self.touched_objs, by_key=True)
        self.shm_names: dict[str, int] = ObjectRefs(self.touched_objs)
        self.checked_procs: dict[str, int] | None = None   # the processes at the last check (None: none yet)
        self.frames = FrameTable(self.config.ram_pages, self.config.swap_pages, self.config.nodes)
        self.swappiness = self.config.swappiness
        self.next_obj = 1
        self.next_pid = 2
        self.pending_fork: Mm | None = None   # made by the last fork(), until ``bind`` names it
        self.seq = 0
        self.lru: list[Page] = []             # resident evictable pages, oldest first (the clock's ring)
        self.on_lru: set[int] = set()         # id() of each page on ``lru``: its membership without a scan
        self.clock_hand = 0
        self.pfn_seen: dict[int, Page] = {}   # target pfn -> model page (adopted from pfn_of)
        self.pfn_of_page: dict[int, tuple[Page, int]] = {}
        self.pfn_seen_zero = 0
        # pages whose frame the kernel may replace unseen (MADV_COLLAPSE's copy into a new huge
        # page; the huge zero page replaced at the first write): any frame, never adopted
        # (id of the Page object -> the page and the clause that allows it: the page is kept, so its id
        # names no other page while the entry lasts; pressure.loose_clause reads it)
        self.pfn_loose: dict[int, tuple[Page, str]] = {}
        self.killed: list[str] = []
        self.last_fault: PageFault | None = None
        self.locked_evictions: list[list[str]] = []   # evictions of locked pages (none may happen)
        self.stats: dict[str, int] = {k: 0 for k in (
            "faults_minor", "faults_major", "faults_invalid", "frames_allocated", "cow_copies", "swap_ins",
            "swap_outs", "writebacks", "evictions", "file_reads", "oom_kills", "thp_faults", "thp_collapses",
            "thp_splits", "tlb_flushes")}

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def lru_add(self, page: Page) -> None:
        page.lru_seq = self.next_seq()
        page.referenced = True
        key = id(page)      # (a page on the list is alive: its id names it alone)
        if key not in self.on_lru:
            self.on_lru.add(key)
            self.lru.append(page)

    def lru_del(self, page: Page) -> None:
        key = id(page)
        if key in self.on_lru:
            self.on_lru.discard(key)
            self.lru.remove(page)

    def knows_advice(self, advice: int) -> bool:
        """Whether the running kernel accepts this madvise advice: the probed set (fact
        ``madv_known``), else the release (ADVICE_SINCE; an unknown release is recent)."""
        if self.config.madv_known is not None:
            return advice in self.config.madv_known
        since = ADVICE_SINCE.get(advice)
        k = self.config.kernel
        return since is not None and (k is None or k >= since)

    def has(self, feature: str) -> bool:
        """Whether the running kernel knows ``feature`` (SINCE); an unknown version is recent."""
        k = self.config.kernel
        return k is None or k >= SINCE[feature]

    def new_object(self, kind: str, size: int, name: str = "", mode: int = 0o600, uid: int = 0) -> MemObject:
        o = MemObject(self.next_obj, kind, size, name, mode, uid)
        self.next_obj += 1
        self.objects[o.id] = o
        return o

    def unmap(self, mm: Mm, start: int, end: int) -> None:
        if mm.huge or mm.thp_maybe:
            self.split_huge(mm, start, end)
        if mm.pte or mm.anon or mm.maybe or mm.last_ref:        # (pages_in: none without per-page state)
            for page in self.pages_in(mm, start, end):
                self.drop_page(mm, page)
        hits = mm.vmas.remove(start, end)
        if mm.guard:
            # mm/memory.c zap_nonpresent_ptes: unmapping (ZAP_FLAG_DROP_MARKER) drops guard markers
            mm.guard -= {p for p in mm.guard if start <= p < end}
        gone = None         # the objects unmapped here (built only for one)
        for _, _, v in hits:
            if v.obj is not None:
                if gone is None:
                    gone = set()
                gone.add(v.obj)
        if gone:
            self.collect(gone)

    def pages_in(self, mm: Mm, start: int, end: int) -> list[int]:
        """The pages of [start, end) that have any per-page state, in address order.
        Costs O(min(pages in the range, pages with state)): no union of every table per call
        (that union made each mmap/munmap/mprotect grow with the whole address space)."""
        if not (mm.pte or mm.anon or mm.maybe or mm.last_ref):
            return []
        held = len(mm.pte) + len(mm.anon) + len(mm.maybe) + len(mm.last_ref)
        stores = (mm.pte, mm.anon, mm.maybe, mm.last_ref)
        if (end - start) // PAGE_SIZE <= held:
            return [p for p in range(start, end, PAGE_SIZE)
                    if p in mm.pte or p in mm.anon or p in mm.maybe or p in mm.last_ref]
        found: set[int] = set()
        for x in stores:
            found.update(p for p in x if start <= p < end)
        return sorted(found)

    def drop_page(self, mm: Mm, page: int) -> None:
        """zap_pte_range for one page: remove the PTE, flush, and drop the anon reference."""
        if page in mm.pte:
            mm.flushed.add(page)
        zap_pte(self, mm, page)
        mm.maybe.discard(page)
        mm.last_ref.pop(page, None)
        p = mm.anon.pop(page, None)
        if p is not None:
            p.mapcount -= 1
            if p.mapcount <= 0:
                self.free_page(p)

    def free_page(self, p: Page) -> None:
        self.frames.free(p)
        self.frames.swap_free(p)
        self.lru_del(p)

    def collect(self, objs: set[int]) -> None:
        for o in objs:
            obj = self.objects.get(o)
            if obj is None:
                continue
            if obj.opens > 0 or obj.linked:
                continue
            if any(v.obj == o for p in self.procs.values() for _, _, v in p.vmas.items()):
                continue
            for page in obj.pages.values():
                self.free_page(page)
            del self.objects[o]

    def split_huge(self, mm: Mm, start: int, end: int) -> None:
        """A range edge inside a huge mapping splits it into 4 KiB PTEs (mm/huge_memory.c
        split_huge_pmd); the data stays (clause linux.thp.split-keeps-data)."""
        for base in list(mm.huge | mm.thp_maybe):
            if base < end and base + HPAGE > start and not (start <= base and base + HPAGE <= end):
                self.split_one(mm, base)

    def split_one(self, mm: Mm, base: int) -> None:
        if base in mm.huge:
            self.stats["thp_splits"] += 1
        if base in mm.huge or base in mm.thp_maybe:
            mm.thp_split.add(base)
        mm.huge.discard(base)
        mm.thp_maybe.discard(base)

    def release(self, proc: str) -> None:
        """exit_mmap and close of every fd: the process's pages and references go."""
        mm = self.procs[proc]
        gone = {v.obj for _, _, v in mm.vmas.items() if v.obj is not None}
        for s, e, _ in list(mm.vmas.items()):
            for page in self.pages_in(mm, s, e):
                self.drop_page(mm, page)
        mm.vmas = IntervalMap()
        for f in mm.fds.values():
            if f.obj is not None:
                self.objects[f.obj].opens -= 1
                gone.add(f.obj)
        mm.fds.clear()
        del self.procs[proc]
        self.collect(gone)

    def punch(self, obj: MemObject, pgoff: int) -> None:
        """Remove one page of an object (truncate / hole punch): every PTE mapping it goes."""
        cp = obj.pages.pop(pgoff, None)
        obj.disk.pop(pgoff, None)
        if cp is None:
            return
        for mm in self.procs.values():
            for page, t in list(mm.pte.items()):
                if t.page is cp:
                    zap_pte(self, mm, page)
            for page, t in list(mm.tlb.items()):
                if t.page is cp:
                    flush_tlb_page(mm, page)
        self.free_page(cp)


def exec_only(sys: OsState, prot: int) -> bool:
    """Whether a mapping of ``prot`` is execute-only.

    With PKU (fact ``exec_only``), mmap/mprotect with PROT_EXEC alone give the range the
    process's execute-only protection key, whose PKRU bits deny data access
    (arch/x86/mm/pkeys.c __arch_override_mprotect_pkey -> execute_only_pkey): clause
    linux.x86.exec-only-pkey.  Without PKU, protection_map[VM_EXEC] is PAGE_READONLY_EXEC
    (arch/x86/mm/pgprot.c): the page reads like PROT_READ|PROT_EXEC (clause
    linux.x86.exec-implies-read).  Any other prot moves the range back to the default key.
    The test is on the prot the caller passed, not its PROT_READ/WRITE/EXEC bits: mm/mmap.c
    do_mmap asks ``prot == PROT_EXEC`` of the raw argument, so PROT_EXEC|PROT_GROWSDOWN,
    |PROT_SEM or any bit the kernel ignores maps a readable range (measured on 6.18 with PKU;
    found by the soak); mm/mprotect.c do_mprotect_pkey strips PROT_GROWSDOWN/GROWSUP first
    but passes PROT_SEM on to arch_override_mprotect_pkey, so mprotect(…PROT_EXEC|PROT_SEM)
    is readable too.  ``prot``: mmap's argument, or mprotect's without the GROWS bits.
    Example: mmap(…PROT_EXEC…) then load(a): SIGSEGV with PKU, 0 without."""
    return prot == PROT_X and sys.config.exec_only


STACK_GUARD_GAP = 256 * PAGE_SIZE     # mm/mmap.c stack_guard_gap (the stack_guard_gap= boot parameter)


def stack_gap_below(mm: Mm, end: int) -> bool:
    """Does a range ending at ``end`` reach into the guard gap below a MAP_GROWSDOWN mapping
    (include/linux/mm.h vm_start_gap)?  The gap is a boot parameter, so any mapping that grows
    down within the default gap, or further, counts."""
    nxt = mm.vmas.next_after(end - 1)
    return nxt is not None and nxt[2].growsdown and nxt[0] - end < STACK_GUARD_GAP


def vma_extent(sys: OsState, mm: Mm, addr: int) -> tuple[int, int, Vma] | None:
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


def can_do_mlock(mm: Mm) -> bool:
    # mm/mlock.c can_do_mlock: a nonzero RLIMIT_MEMLOCK or CAP_IPC_LOCK
    return mm.memlock_soft != 0 or mm.privileged


def policy_node(sys: OsState, v: Vma, page: int) -> int:
    """The NUMA node ``v``'s memory policy gives a new page at ``page`` (mm/mempolicy.c): the
    first node of a bound or preferred mask (linux.numa.bind, linux.numa.preferred), the next of
    an interleaved one by the page's offset in the mapping (linux.numa.interleave), else node 0,
    where the model's one CPU runs (linux.numa.first-touch)."""
    mode, mask = v.policy
    nodes = [n for n in range(sys.config.nodes) if mask >> n & 1]
    if mode in (1, 2) and nodes:          # MPOL_PREFERRED, MPOL_BIND
        return nodes[0]
    if mode == 3 and nodes:               # MPOL_INTERLEAVE: by page offset in the mapping
        return nodes[((page - v.origin) // PAGE_SIZE) % len(nodes)]
    return 0
