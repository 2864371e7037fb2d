"""The rules of the calls that make, change and remove mappings: mmap, munmap, mprotect, mremap.

Each rule names its clause (``memspec clauses`` lists them with citations): the checks run in
the kernel's order (mm/mmap.c do_mmap, mm/vma.c do_vmi_munmap, mm/mprotect.c
do_mprotect_pkey, mm/mremap.c), then the limits a growing address space may meet (RLIMIT_AS,
RLIMIT_DATA, the commit charge, vm.max_map_count).  Where the kernel picks (the address of a
mapping without MAP_FIXED), the rule allows any free, aligned range and adopts the target's.

Worked example: ``a = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`` allows
any free page-aligned range of two pages (``posix.mmap.new-range-free``); ``mprotect(a, 4096,
PROT_READ|PROT_WRITE)`` then splits the VMA in two (``posix.mprotect.sets-prot``).
"""

from __future__ import annotations

from dataclasses import replace

from memspec.consts import MAP, MCL, MREMAP, PAGE_SIZE, PROT, errno_name
from memspec.records import OK, Outcome

from .. import fault
from ..expect import Expect, errno, exactly, or_errno
from ..rules import Rule
from . import splits
from .limits import limits
from .sealing import sealed_in
from .state import (LLONG_MAX, PAGE_MASK, PROT_W, PROT_X, U64, Mm, OsState, can_do_mlock, exec_only as _exec_only,
                    new_vma, page_align, reprotected, stack_gap_below, vma_extent as _vma_extent)

MAP_TYPE = 0x0F
MAP_DROPPABLE = MAP["MAP_DROPPABLE"]   # Linux 6.11+
FOUR_G = 1 << 32
# arch/x86/include/asm/page_64_types.h DEFAULT_MAP_WINDOW: with 5-level paging (LA57) the user
# address space reaches 2^56, but mmap only places a mapping above 47 bits for a hint above this
DEFAULT_MAP_WINDOW = (1 << 47) - PAGE_SIZE
PROT_RWX = PROT["PROT_READ"] | PROT["PROT_WRITE"] | PROT["PROT_EXEC"]
GROWS = PROT["PROT_GROWSDOWN"] | PROT["PROT_GROWSUP"]
PROT_SEM, PROT_GROWSDOWN, PROT_GROWSUP, MCL_ONFAULT = (
    PROT["PROT_SEM"], PROT["PROT_GROWSDOWN"], PROT["PROT_GROWSUP"], MCL["MCL_ONFAULT"])
# the flags the mmap rules test, read once (a dict lookup each, a dozen and more in every mmap judged)
(MAP_SHARED, MAP_SHARED_VALIDATE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_LOCKED, MAP_HUGETLB,
 MAP_GROWSDOWN, MAP_32BIT, MAP_ABOVE4G, MAP_SYNC, MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK) = (MAP[n] for n in (
    "MAP_SHARED", "MAP_SHARED_VALIDATE", "MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED", "MAP_FIXED_NOREPLACE", "MAP_LOCKED",
    "MAP_HUGETLB", "MAP_GROWSDOWN", "MAP_32BIT", "MAP_ABOVE4G", "MAP_SYNC", "MAP_NORESERVE", "MAP_POPULATE", "MAP_NONBLOCK"))
ANON_PRIVATE = MAP_PRIVATE | MAP_ANONYMOUS
# include/linux/mman.h LEGACY_MAP_MASK: the flags MAP_SHARED_VALIDATE accepts (clause
# linux.mmap.eopnotsupp-validate).  It holds MAP_ABOVE4G and of the MAP_HUGE_* encodings only
# MAP_HUGE_2MB and MAP_HUGE_1GB; MAP_FIXED_NOREPLACE and MAP_SYNC are not in it (measured on
# Linux 6.18: MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE is EOPNOTSUPP, |MAP_HUGE_1GB maps).
_LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP["MAP_DENYWRITE"] | MAP["MAP_EXECUTABLE"]
                    | MAP["MAP_UNINITIALIZED"] | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK
                    | MAP["MAP_STACK"] | MAP_HUGETLB | MAP_32BIT | MAP_ABOVE4G | MAP["MAP_HUGE_2MB"] | MAP["MAP_HUGE_1GB"])


def _mmap_check(sys: OsState, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int,
                offset: int) -> Expect | None:
    c = sys.config
    # arch/x86/kernel/sys_x86_64.c: the byte offset must be page aligned.
    if offset & ~PAGE_MASK:
        return errno("posix.mmap.einval-offset", "EINVAL")
    f = None
    if not flags & MAP_ANONYMOUS:
        # mm/mmap.c ksys_mmap_pgoff: fget(fd) before anything else.
        f = mm.fds.get(fd if fd < (1 << 63) else fd - (1 << 64))
        if f is None:
            return errno("posix.mmap.ebadf", "EBADF")
    if flags & MAP_HUGETLB or flags & MAP_GROWSDOWN:
        return Expect("linux.mmap.hugetlb-growsdown", OK, "not modelled", unknown=True)
    if flags & MAP_FIXED_NOREPLACE and not sys.has("MAP_FIXED_NOREPLACE"):
        # before 4.17 the flag is an unknown bit: ignored, and the address only a hint
        return Expect("linux.mmap.fixed-noreplace-maps", OK, "MAP_FIXED_NOREPLACE before Linux 4.17: not modelled",
                      unknown=True)
    if length == 0:
        return errno("posix.mmap.einval-len0", "EINVAL")
    plen = page_align(length)
    if plen == 0 or plen > (1 << 64) - 1:
        return errno("linux.mmap.enomem-len-overflow", "ENOMEM")
    if not splits.own_mappings(sys) and len(mm.vmas) > c.max_map_count and \
            len(mm.vmas) - splits.merge_slack(mm) > c.max_map_count:
        # mm/mmap.c do_mmap: "Too many mappings?" (map_count > sysctl_max_map_count) is asked
        # right after the length and offset overflow checks, before __get_unmapped_area, the
        # MAP_LOCKED checks and the map type (found by fuzzing linux-agent: at the limit an
        # anonymous MAP_SHARED_VALIDATE is ENOMEM, not EINVAL).  Alone the model counts exactly
        # but for neighbours the kernel would have merged (splits.merge_slack); with mappings of
        # the target's own, or such neighbours, it is a choice (expect_mmap)
        return errno(MAP_COUNT, "ENOMEM")
    fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
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
        if flags & MAP_FIXED_NOREPLACE and mm.vmas.any_overlap(addr, addr + plen):
            return errno("linux.mmap.fixed-noreplace-eexist", "EEXIST")
    return None


def _mmap_check_late(sys: OsState, mm: Mm, prot: int, flags: int, fd: int, offset: int,
                     plen: int) -> Expect | None:
    """do_mmap's checks after __get_unmapped_area chose the address: MAP_LOCKED, the lock limit,
    then the map type and the file (mm/mmap.c do_mmap)."""
    f = None if flags & MAP_ANONYMOUS else mm.fds.get(fd if fd < (1 << 63) else fd - (1 << 64))
    if flags & MAP_LOCKED and not can_do_mlock(mm):
        return errno("linux.mlock.eperm-no-limit", "EPERM")
    if (flags & MAP_LOCKED or mm.mcl_future) and not mm.privileged and \
            plen // PAGE_SIZE + mm.locked_vm() // PAGE_SIZE > mm.memlock_soft // PAGE_SIZE:
        # mm/mmap.c do_mmap -> mlock_future_ok: a locked mapping beyond RLIMIT_MEMLOCK
        return errno("linux.mmap.eagain-memlock", "EAGAIN")
    mtype = flags & MAP_TYPE
    if f is not None:
        if f.obj is None:
            # mm/mmap.c do_mmap, in order, for a file without ->mmap (a pipe): MAP_SHARED with
            # PROT_WRITE needs FMODE_WRITE, every type FMODE_READ; then path_noexec (pipefs is a
            # noexec pseudo file system: VM_EXEC is EPERM); then no ->mmap: ENODEV
            if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE, MAP_PRIVATE):
                legacy = _LEGACY_MAP_MASK if sys.has("MAP_ABOVE4G") else _LEGACY_MAP_MASK & ~MAP_ABOVE4G
                if mtype == MAP_SHARED_VALIDATE and flags & ~legacy:
                    # case MAP_SHARED_VALIDATE's flag check comes first (a pipe has no FOP_MMAP_SYNC)
                    return errno("linux.mmap.eopnotsupp-validate", errno_name(95))   # EOPNOTSUPP
                if mtype != MAP_PRIVATE and prot & PROT_W and not f.write:
                    return errno("posix.mmap.eacces-fd-mode", "EACCES")
                if not f.read:
                    return errno("posix.mmap.eacces-fd-mode", "EACCES")
                if prot & PROT_X:
                    noexec = errno("linux.mmap.eperm-noexec", "EPERM")
                    # measured on 6.18; the release that made pipefs noexec is not pinned
                    return noexec if sys.has("pipefs-noexec") else or_errno(
                        errno("posix.mmap.enodev", "ENODEV"), "linux.mmap.eperm-noexec", "EPERM")
                return errno("posix.mmap.enodev", "ENODEV")
        # mm/mmap.c file_mmap_ok: offset + length beyond MAX_LFS_FILESIZE
        if offset > LLONG_MAX or plen > LLONG_MAX or offset > LLONG_MAX - plen:
            return errno("posix.mmap.eoverflow", "EOVERFLOW")
        if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE):
            # MAP_ABOVE4G joined LEGACY_MAP_MASK with the flag itself, in Linux 6.6: before, it is unknown
            legacy = _LEGACY_MAP_MASK if sys.has("MAP_ABOVE4G") else _LEGACY_MAP_MASK & ~MAP_ABOVE4G
            if mtype == MAP_SHARED_VALIDATE and flags & ~legacy:
                return errno("linux.mmap.eopnotsupp-validate", errno_name(95))   # EOPNOTSUPP
            if prot & PROT_W and not f.write:
                return errno("posix.mmap.eacces-fd-mode", "EACCES")
        elif mtype != MAP_PRIVATE:
            return errno("posix.mmap.einval-type", "EINVAL")
        if not f.read:
            return errno("posix.mmap.eacces-fd-mode", "EACCES")
        return None
    if mtype not in (MAP_SHARED, MAP_PRIVATE) and not (
            mtype == MAP_DROPPABLE and sys.has("MAP_DROPPABLE")):
        # For anonymous memory MAP_SHARED_VALIDATE (3) falls to this default too.
        return errno("posix.mmap.einval-type", "EINVAL")
    if mtype == MAP_DROPPABLE and flags & MAP_LOCKED:
        # mm/mmap.c do_mmap, case MAP_DROPPABLE: "a locked ... area makes no sense to be droppable"
        return errno("linux.mmap.droppable", "EINVAL")
    return None


MAP_COUNT = "linux.mmap.enomem-max-map-count"
# the clauses of do_mmap's checks that come before its map count (ksys_mmap_pgoff, the length)
_BEFORE_MAP_COUNT = {"posix.mmap.einval-offset", "posix.mmap.ebadf", "posix.mmap.einval-len0",
                     "linux.mmap.enomem-len-overflow", MAP_COUNT}


def expect_mmap(sys: OsState, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Expect:
    if flags == ANON_PRIVATE and not addr and not offset and not mm.mcl_future:
        e = _anon_private(sys, mm, length, prot)
        if e is not None:
            return e
    e = _expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)
    own = splits.own_mappings(sys)
    if own and not e.unknown and e.clause not in _BEFORE_MAP_COUNT and _map_count_near(sys, mm, 0):
        # mm/mmap.c do_mmap: map_count > sysctl_max_map_count -> ENOMEM, before every later check
        # (the address, MAP_LOCKED, the map type, the limits): near the limit, with the target's
        # own mappings counted only within 64, ENOMEM or whatever comes after
        return or_errno(e, MAP_COUNT, "ENOMEM")
    if not own and not e.unknown and e.clause not in _BEFORE_MAP_COUNT and len(mm.vmas) > sys.config.max_map_count:
        # alone, over the limit by the model's count but not once its neighbours that the kernel
        # would have merged are counted as one (splits.merge_slack): ENOMEM or what comes after
        return or_errno(e, MAP_COUNT, "ENOMEM")
    return e


def _anon_private(sys: OsState, mm: Mm, length: int, prot: int) -> Expect | None:
    """expect_mmap's answer to mmap(NULL, length, prot, MAP_PRIVATE|MAP_ANONYMOUS, fd, 0) without
    mlockall(MCL_FUTURE) in force, where only the placement and the limits decide it: no other
    question of _mmap_check or _mmap_check_late applies to such a mapping.  None where one might
    (a length of 0 or past the task size, the map count over or near the limit): asked there."""
    c = sys.config
    plen = (length + PAGE_SIZE - 1) & PAGE_MASK
    if not length or plen > c.task_size:
        return None
    n = len(mm.vmas)
    if n > c.max_map_count or (c.quiet_ranges or c.base_maps) and c.base_maps + n + 64 >= c.max_map_count:
        return None         # (_mmap_check's map count; _map_count_near as expect_mmap asks it)
    placed = _placement(sys, mm, 0, plen, False, "posix.mmap.new-range-free")
    if placed.default.errno:
        return placed
    data = plen if prot & PROT_W else 0        # private writable: data, and charged
    return limits(sys, mm, placed, plen, data, data)


def _expect_mmap(sys: OsState, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int,
                 offset: int) -> Expect:
    bad = _mmap_check(sys, mm, addr, length, prot, flags, fd, offset)
    if bad is not None:
        return bad
    plen = page_align(length)
    late = _mmap_check_late(sys, mm, prot, flags, fd, offset, plen)
    if late is not None:
        if not flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            # mm/mmap.c do_mmap: __get_unmapped_area (no room: ENOMEM) comes before MAP_LOCKED,
            # the lock limit, the map type and the file's checks (found by the os generator's
            # edge lengths: no map type and a length of TASK_SIZE is ENOMEM on 6.18)
            placed = _placement(sys, mm, addr, plen, bool(flags & MAP_32BIT), "posix.mmap.new-range-free",
                                above4g=bool(flags & MAP_ABOVE4G) and sys.has("MAP_ABOVE4G"))
            allowed = placed.allowed if placed.allowed is not None else (placed.default,)
            if placed.default.errno and placed.predicate is None and all(o.errno for o in allowed):
                return placed
        return late
    if flags & MAP_FIXED and sealed_in(mm, addr, addr + plen):
        # mm/vma.c __mmap_region -> vms_gather_munmap_vmas: the old mapping is sealed
        return errno("linux.mseal.eperm", "EPERM")
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        clause = ("linux.mmap.fixed-noreplace-maps" if flags & MAP_FIXED_NOREPLACE
                  else "posix.mmap.fixed-exact")
        placed = exactly(clause, Outcome(value=addr))
        c = sys.config
        if flags & MAP_FIXED_NOREPLACE and c.quiet_ranges and not any(
                qs <= addr and addr + plen <= qe for qs, qe in c.quiet_ranges):
            # outside the target's quiet ranges its own mappings (libraries, heap) may live
            placed = Expect(clause, Outcome(value=addr), f"{addr:#x}, or EEXIST over a mapping of the target's own",
                            (Outcome(value=addr), Outcome(value=-1, errno="EEXIST")), impl_defined=True)
        replaced = sum(e - s for s, e, _ in mm.mapped_pages(addr, addr + plen))
    else:
        above4g = bool(flags & MAP_ABOVE4G) and sys.has("MAP_ABOVE4G")
        placed = _placement(sys, mm, addr, plen, bool(flags & MAP_32BIT),
                            "posix.mmap.maps-range" if not flags & MAP_ANONYMOUS
                            else "posix.mmap.new-range-free", above4g=above4g)
        replaced = 0
    if placed.default.errno:
        return placed
    shared = flags & MAP_TYPE in (MAP_SHARED, MAP_SHARED_VALIDATE)
    anon = bool(flags & MAP_ANONYMOUS)
    # mm/mmap.c mmap_region: may_expand_vm (RLIMIT_AS, RLIMIT_DATA), then the commit charge of
    # accountable_mapping (private writable) or of a new shmem object (shared anonymous)
    data = bool(prot & PROT_W) and not shared
    account = (data or (shared and anon)) and not (
        flags & MAP_NORESERVE and sys.config.overcommit_memory != 2) and not (
        anon and flags & MAP_TYPE == MAP_DROPPABLE)          # MAP_DROPPABLE: VM_NORESERVE
    ok = limits(sys, mm, placed, plen - replaced, plen - replaced if data else 0, plen if account else 0)
    if not anon and flags & MAP_SYNC:
        # mm/mmap.c do_mmap: calc_vm_flag_bits turns MAP_SYNC into VM_SYNC for every mapping type
        # (MAP_SHARED drops the flag only from the EOPNOTSUPP check), and the file system's ->mmap
        # decides: ext4 and xfs refuse VM_SYNC without DAX (EOPNOTSUPP; measured on 6.18 ext4 for
        # MAP_SHARED and MAP_PRIVATE), shmem ignores it (memfd and shm_open map).  A file of
        # open_file lives on whatever file system the target's folder is on: either answer.
        f = mm.fds.get(fd if fd < (1 << 63) else fd - (1 << 64))
        if f is not None and f.obj is not None and sys.objects[f.obj].kind == "file":
            ok = or_errno(ok, "linux.mmap.sync-fs-dependent", errno_name(95))      # EOPNOTSUPP
    return ok


MAP_32BIT_BEGIN = 0x40000000     # arch/x86/kernel/sys_x86_64.c find_start_end
MAP_32BIT_RANDOM = 0x02000000    # randomize_page(begin, 0x02000000) under PF_RANDOMIZE
LSM_MMAP_MIN_ADDR = 0x10000     # security/Kconfig LSM_MMAP_MIN_ADDR default (x86)


def _placement(sys: OsState, mm: Mm, addr: int, plen: int, bit32: bool, clause: str,
               above4g: bool = False) -> Expect:
    c = sys.config
    hi = 0x80000000 if bit32 else c.task_size
    if hi > DEFAULT_MAP_WINDOW and addr <= DEFAULT_MAP_WINDOW:
        # arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area(_topdown): without a hint above
        # DEFAULT_MAP_WINDOW the search stays below it, also on a 5-level machine (linux.x86.mmap-47-bit-window)
        hi = DEFAULT_MAP_WINDOW
        clause = "linux.x86.mmap-47-bit-window"
    lo = c.mmap_min_addr
    if above4g and not bit32:
        # arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area(_topdown): MAP_ABOVE4G raises the
        # search's low limit to 4 GiB; MAP_32BIT takes the bottom-up path first (measured: it wins)
        lo = max(lo, FOUR_G)
        clause = "linux.mmap.above4g"
    # mm/mmap.c round_hint_to_min: a hint below mmap_min_addr is raised to it.
    hint = addr & PAGE_MASK
    if hint and hint < c.mmap_min_addr:
        hint = page_align(c.mmap_min_addr)
    hint_in = hint
    if bit32:
        # arch/x86/kernel/sys_x86_64.c: MAP_32BIT goes to the legacy bottom-up search
        # (arch_get_unmapped_area) before the top-down path looks at the hint; there a free hint
        # is used if end - len >= addr (end = 2 GiB), below find_start_end's 1 GiB too (measured
        # on 6.18: a hint of 0x2fff gave 0x10000).  Whether the target's own mappings (its
        # binary, below 2 GiB) leave it free the model cannot tell: the hint is allowed, not demanded.
        hint = 0
        # find_start_end: MAP_32BIT searches [0x40000000, 0x80000000) only ("Give it 1GB of
        # playground"), its start moved up by randomize_page(begin, 0x02000000) under
        # PF_RANDOMIZE: not the first GiB, and a mapping of nearly 1 GiB may not fit (found by
        # fuzzing linux-agent: ENOMEM for ~1 GiB where the model placed it low)
        lo = max(lo, MAP_32BIT_BEGIN)
    # arch/x86/kernel/sys_x86_64.c mmap_address_hint_valid: a hint
    # range may not cross DEFAULT_MAP_WINDOW (always true below a 47-bit task size)
    honour = bool(hint) and hint + plen <= c.task_size and not mm.vmas.any_overlap(hint, hint + plen) \
        and (hint > DEFAULT_MAP_WINDOW) == (hint + plen > DEFAULT_MAP_WINDOW) \
        and any(qs <= hint and hint + plen <= qe for qs, qe in c.quiet_ranges)
    # the hints the kernel may have used: the one rounded to the sysctl's vm.mmap_min_addr, or
    # to the LSM's floor (security/min_addr.c: mmap_min_addr is the larger of the sysctl and
    # CONFIG_LSM_MMAP_MIN_ADDR, 64 KiB by default, which /proc does not show; measured on 6.18)
    hints = _NO_HINTS if not hint_in else {h for h in (hint_in, max(hint_in, LSM_MMAP_MIN_ADDR) if hint_in else 0)
             if h and h + plen <= (0x80000000 if bit32 else c.task_size)
             and (h > DEFAULT_MAP_WINDOW) == (h + plen > DEFAULT_MAP_WINDOW)}
    if honour and stack_gap_below(mm, hint + plen):
        # arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area_topdown uses a hint only when
        # addr + len <= vm_start_gap(next VMA): below a VM_GROWSDOWN mapping stack_guard_gap
        # (256 pages by default, a boot parameter) stays free (clause linux.mmap.hint-stack-guard-gap)
        honour = False
        clause = "linux.mmap.hint-stack-guard-gap"
    default = _pick(sys, mm, hint, plen, lo, hi)
    if default is None:
        return errno("linux.mmap.32bit-below-2g" if bit32 else "posix.mmap.enomem-no-room", "ENOMEM")
    if honour:
        return exactly("linux.mmap.hint-used-when-free", Outcome(value=hint))
    # MAP_32BIT: whether there is room may depend on where the randomized start fell
    maybe_full = bit32 and _pick(sys, mm, 0, plen, lo + MAP_32BIT_RANDOM - PAGE_SIZE, hi) is None
    if bit32:
        clause = "linux.mmap.32bit-below-2g"
    # the answer is a function of these and of the VMAs its predicate reads when it judges: the
    # last one serves again (a loop mapping the same length into the same hole asks the same)
    key = (default, plen, lo, hi, clause, maybe_full, hints)
    if mm.last_placement[0] == key:
        return mm.last_placement[1]

    def allowed(o: Outcome) -> str | None:
        if maybe_full and o.errno == "ENOMEM":
            return None
        if o.errno is not None or o.signal is not None or o.value is None:     # (not o.ok)
            return f"expected an address, observed {o.describe()}"
        a = o.value
        if a & ~PAGE_MASK:
            return f"address {a:#x} is not page aligned"
        if a in hints and not mm.vmas.any_overlap(a, a + plen):
            # a free hint is returned before the search whose low limit MAP_ABOVE4G raises
            # (arch_get_unmapped_area_topdown: "requesting a specific address"; measured on 6.18:
            # a hint below 4 GiB is used); found by the model's own check
            return None
        if a < lo or a + plen > hi:
            return f"address {a:#x}+{plen:#x} is outside [{lo:#x}, {hi:#x})"
        if mm.vmas.any_overlap(a, a + plen):
            return f"[{a:#x}, {a + plen:#x}) overlaps an existing mapping"
        return None

    placed = Expect(clause, Outcome(value=default), f"a free, page-aligned range of {plen:#x} bytes",
                    predicate=allowed, impl_defined=True)
    mm.last_placement = (key, placed)
    return placed


_NO_HINTS: frozenset[int] = frozenset()
def _pick(sys: OsState, mm: Mm, hint: int, plen: int, lo: int, hi: int) -> int | None:
    if hint and hint + plen <= hi and not mm.vmas.any_overlap(hint, hint + plen):
        return hint
    top = min(hi, sys.config.mmap_base)
    a = mm.vmas.fit_below(lo, top, plen)        # the first gap from the top that holds it
    return a if a is not None else mm.vmas.fit_below(lo, hi, plen)


def apply_mmap(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int, flags: int,
               fd: int, offset: int) -> None:
    if o.errno is not None or o.signal is not None or o.value is None:
        return
    start = o.value
    end = start + ((length + PAGE_SIZE - 1) & PAGE_MASK)
    shared = flags & MAP_TYPE in (MAP_SHARED, MAP_SHARED_VALIDATE)
    obj = None
    origin = 0      # anonymous private memory: pgoff follows the address, so VMAs merge
    may_write = True
    if not flags & MAP_ANONYMOUS:
        f = mm.fds[fd if fd < (1 << 63) else fd - (1 << 64)]
        obj = f.obj
        origin = start - offset
        may_write = f.write or not shared
    elif shared:
        obj = sys.new_object("anon-shared", end - start).id
        origin = start
    sys.unmap(mm, start, end)
    exec_only = _exec_only(sys, prot)      # before the mask: do_mmap compares the prot it was given
    prot &= PROT_RWX
    locked = bool(flags & MAP_LOCKED or mm.mcl_future)
    # MAP_DROPPABLE (anonymous only): VM_DROPPABLE | VM_WIPEONFORK | VM_DONTDUMP (clause linux.mmap.droppable)
    droppable = obj is None and flags & MAP_TYPE == MAP_DROPPABLE
    vma = new_vma(prot, shared, obj, origin, exec_only, (
        "posix.mmap.fixed-exact" if flags & MAP_FIXED else "posix.mmap.maps-range"),
        locked and not droppable, bool(mm.mcl_future & MCL_ONFAULT), may_write, droppable,
        flags & MAP_GROWSDOWN != 0)
    mm.vmas.set(start, end, vma)
    # mm/mmap.c do_mmap -> mm_populate: MAP_POPULATE (not with MAP_NONBLOCK: clause
    # linux.mmap.populate-nonblock), and MAP_LOCKED / MCL_FUTURE without ONFAULT
    populate = flags & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE
    # (MCL_FUTURE still populates a MAP_DROPPABLE mapping, which stays unlocked: measured on 6.18).
    # After mlockall(MCL_FUTURE|MCL_ONFAULT) the VMA has VM_LOCKONFAULT and mm/gup.c
    # populate_vma_page_range returns at once: MAP_POPULATE populates nothing (measured on 6.18,
    # as mincore shows: posix.mincore.residency; found by the soak)
    if (populate or locked) and not vma.onfault:
        fault.populate(sys, mm, start, end)


def expect_munmap(sys: OsState, mm: Mm, addr: int, length: int) -> Expect:
    c = sys.config
    # mm/vma.c do_vmi_munmap: alignment, then the range must lie below TASK_SIZE.
    if addr & ~PAGE_MASK:
        return errno("posix.munmap.einval-unaligned", "EINVAL")
    if addr > c.task_size or length > c.task_size - addr:
        return errno("posix.munmap.einval-outside", "EINVAL")
    end = addr + ((length + PAGE_SIZE - 1) & PAGE_MASK)
    if end == addr:
        return errno("posix.munmap.einval-len0", "EINVAL")
    hits = mm.vmas.overlapping(addr, end)
    if not hits:
        return _UNMAPPED_OK
    for _, _, v in hits:        # sealing.sealed_in
        if v.sealed:
            # mm/vma.c vms_gather_munmap_vmas: a sealed VMA in the range: EPERM, nothing unmapped
            return errno("linux.mseal.eperm", "EPERM")
    if hits[0][0] < addr and end < hits[0][1] and _map_count_near(sys, mm, 0):
        # mm/vma.c vms_gather_munmap_vmas: a hole inside one VMA splits it in three; with
        # map_count >= vm.max_map_count that is ENOMEM and nothing is unmapped
        return or_errno(_REMOVES_RANGE, "linux.munmap.enomem-max-map-count", "ENOMEM")
    return _REMOVES_RANGE


# the answers of munmap and mprotect that do not depend on the state (an Expect is a frozen value)
_UNMAPPED_OK = exactly("posix.munmap.unmapped-ok", Outcome(value=0))
_REMOVES_RANGE = exactly("posix.munmap.removes-range", Outcome(value=0))
_SETS_PROT = exactly("posix.mprotect.sets-prot", Outcome(value=0))
_LEN0_OK = exactly("linux.mprotect.len0-ok", Outcome(value=0))


def _map_count_near(sys: OsState, mm: Mm, extra: int) -> bool:
    """Whether map_count + ``extra`` may reach vm.max_map_count: the model counts its VMAs, the
    target's own mappings are the fact ``base_maps`` (probed once, and the harness's mappings
    move while it runs: give or take 64).  map_pages (model.os.bulk) reaches the default limit."""
    c = sys.config
    return c.base_maps + len(mm.vmas) + 64 + extra >= c.max_map_count


def apply_munmap(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
    if o.value == 0 and o.errno is None and o.signal is None:
        sys.unmap(mm, addr, addr + ((length + PAGE_SIZE - 1) & PAGE_MASK))


def expect_mprotect(sys: OsState, mm: Mm, addr: int, length: int, prot: int) -> Expect:
    # mm/mprotect.c do_mprotect_pkey, in the kernel's order of checks.
    if prot & GROWS == GROWS:
        return errno("linux.mprotect.einval-grows-both", "EINVAL")
    if addr & ~PAGE_MASK:
        return errno("posix.mprotect.einval-unaligned", "EINVAL")
    if length == 0:
        return _LEN0_OK
    plen = (length + PAGE_SIZE - 1) & PAGE_MASK
    end = addr + plen
    if end <= addr or end > (1 << 64) - 1 or plen == 0:
        return errno("linux.mprotect.enomem-wrap", "ENOMEM")
    if prot & ~(PROT_RWX | PROT_SEM | GROWS):
        return errno("posix.mprotect.einval-prot", "EINVAL")
    first = mm.vmas.overlapping(addr, end)
    if not first:
        return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
    if prot & PROT_GROWSDOWN:
        return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
    if first[0][0] > addr:
        return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
    if prot & PROT_GROWSUP:
        return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
    # mm/vma.c split_vma (from mprotect_fixup -> vma_modify_flags): map_count >= vm.max_map_count
    # refuses a split with ENOMEM, the VMAs before it already changed (model/os/splits.py)
    lim = stop = None
    if first[0][0] < addr or first[-1][1] > end:     # else the range holds whole VMAs: no split
        changes = _mprotect_changes(sys, prot)
        lim = splits.limit(sys, mm, addr, end, changes)
        stop = splits.refused_at(sys, mm, addr, end, changes) if lim == "refused" else None
    cursor = addr
    for s, e, v in first:
        if s > cursor:
            return split_first(stop, lim, cursor, errno("linux.mprotect.enomem-hole-partial", "ENOMEM"))
        if prot & PROT_W and not v.may_write:
            # mm/mprotect.c: newflags & ~(oldflags >> 4) & VM_WRITE -> EACCES
            return split_first(stop, lim, max(s, addr), errno("posix.mprotect.eacces-shared-readonly-fd", "EACCES"))
        if v.sealed:
            # a sealed VMA: EPERM, even for its own protection (measured on 6.18); the VMAs
            # before it in the range are already changed
            return split_first(stop, lim, max(s, addr), errno("linux.mseal.eperm", "EPERM"))
        cursor = e
    if cursor < end:
        return split_first(stop, lim, cursor, errno("linux.mprotect.enomem-hole-partial", "ENOMEM"))
    ok = _SETS_PROT if lim is None else split_first(stop, lim, end, _SETS_PROT)
    if prot & PROT_W and stop is None:
        # mm/mprotect.c mprotect_fixup: private memory turning writable becomes data
        # (may_expand_vm) and is charged (security_vm_enough_memory_mm)
        gain = sum(min(e, end) - max(s, addr) for s, e, v in first if not v.shared and not v.prot & PROT_W)
        if gain:
            return limits(sys, mm, ok, 0, gain, gain)
    return ok


_mprotect_changes = splits.mprotect_changes


def split_first(stop: int | None, lim: str | None, at: int, other: Expect) -> Expect:
    """mprotect's answer ``other`` (found at ``at``) after the splits before it: ENOMEM where a split
    was refused before ``at`` (``stop``), or either where one may be (``lim``, splits.limit)."""
    if stop is not None and stop < at:
        return errno(splits.MPROTECT, "ENOMEM")
    return or_errno(other, splits.MPROTECT, "ENOMEM") if lim == "maybe" else other


def apply_mprotect(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int) -> None:
    if o.errno not in (None, "ENOMEM", "EACCES", "EPERM") or length == 0 or addr & ~PAGE_MASK:
        return
    end = addr + ((length + PAGE_SIZE - 1) & PAGE_MASK)
    if o.errno is not None:
        # Linux changes the VMAs before the first hole (or refused VMA), then fails (mprotect(2)
        # NOTES; POSIX allows "some of the pages may have been changed").
        if prot & ~(PROT_RWX | PROT_SEM | GROWS) or prot & GROWS:
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
        limit = o.errno == "ENOMEM" and cursor >= end and all(v.may_write or not prot & PROT_W for _, _, v in runs)
        refused = None
        if o.errno == "ENOMEM" and splits.limit(sys, mm, addr, end, _mprotect_changes(sys, prot)):
            # a split refused at vm.max_map_count (clause linux.mprotect.enomem-max-map-count)
            refused = splits.refused_at(sys, mm, addr, end, _mprotect_changes(sys, prot), failed=True)
            limit = limit and refused is None
        cursor = addr
        stop = addr
        for s, e, v in runs:
            if s > cursor or (prot & PROT_W and not v.may_write) or v.sealed or (
                    limit and prot & PROT_W and not v.shared and not v.prot & PROT_W):
                break
            cursor = e
            stop = min(e, end)
        end = stop if refused is None else min(stop, refused)
        clause = "linux.mprotect.enomem-hole-partial" if refused is None else splits.MPROTECT
    else:
        clause = "posix.mprotect.sets-prot"
    if end <= addr:
        return
    if mm.huge or mm.thp_maybe:
        sys.split_huge(mm, addr, end)
    p = prot & PROT_RWX
    xo = _exec_only(sys, prot & ~GROWS)
    paged = mm.pte or mm.anon or mm.maybe or mm.last_ref      # (pages_in: none without per-page state)
    for s, e, v in mm.vmas.overlapping(addr, end):      # Mm.mapped_pages: each VMA clipped to the range
        if s < addr:
            s = addr
        if e > end:
            e = end
        mm.vmas.set(s, e, reprotected(v, p, xo, clause))
        if not paged:
            continue
        for page in sys.pages_in(mm, s, e):
            t = mm.pte.get(page)
            if t is not None:
                if not p & PROT_W:
                    if t.write:
                        mm.flushed.add(page)
                    t.write = False
                else:
                    # mm/mprotect.c can_change_pte_writable: the kernel may make an exclusive
                    # page writable at once; the next store may or may not fault.
                    mm.maybe.add(page)
            fault.flush_tlb_page(mm, page)


def expect_mremap(sys: OsState, mm: Mm, old_addr: int, old_size: int, new_size: int, flags: int,
                  new_addr: int) -> Expect:
    addr = old_addr        # mm/mremap.c names it addr
    exp = _mremap_expect(sys, mm, addr, old_size, new_size, flags, new_addr)
    if flags & MREMAP["MREMAP_DONTUNMAP"] and not sys.has("MREMAP_DONTUNMAP") and not exp.default.errno:
        return errno("linux.mremap.einval-flags", "EINVAL")
    MAYMOVE, FIXED, DONTUNMAP = MREMAP["MREMAP_MAYMOVE"], MREMAP["MREMAP_FIXED"], MREMAP["MREMAP_DONTUNMAP"]
    if exp.default.errno != "EINVAL" and not exp.unknown and flags & (MAYMOVE | FIXED | DONTUNMAP) and \
            _map_count_near(sys, mm, 5 if flags & (FIXED | DONTUNMAP) else 3):
        # mm/mremap.c check_mremap_params: map_count + 2 >= max_map_count - 3 with a new address
        # (FIXED, DONTUNMAP); prep_move_vma: map_count >= max_map_count - 3 before a move
        exp = or_errno(exp, "linux.mremap.enomem-max-map-count", "ENOMEM")
    grow = (page_align(new_size) & U64) - (page_align(old_size) & U64)
    hit = mm.vmas.find(addr)
    if exp.default.errno or exp.unknown or hit is None or grow <= 0:
        return exp
    # mm/mremap.c vma_to_resize: may_expand_vm, then the commit charge of a VM_ACCOUNT mapping
    v = hit[2]
    data = bool(v.prot & PROT_W) and not v.shared
    return limits(sys, mm, exp, grow, grow if data else 0, grow if data else 0)


def _mremap_expect(sys: OsState, mm: Mm, addr: int, old_size: int, new_size: int, flags: int, new_addr: int) -> Expect:
    c = sys.config
    MAYMOVE, FIXED, DONTUNMAP = MREMAP["MREMAP_MAYMOVE"], MREMAP["MREMAP_FIXED"], MREMAP["MREMAP_DONTUNMAP"]
    # mm/mremap.c check_mremap_params, in order
    if flags & ~(MAYMOVE | FIXED | DONTUNMAP):
        return errno("linux.mremap.einval-flags", "EINVAL")
    if addr & ~PAGE_MASK:
        return errno("linux.mremap.einval-unaligned", "EINVAL")
    old_len, new_len = page_align(old_size) & U64, page_align(new_size) & U64
    if new_len == 0:
        return errno("linux.mremap.einval-len0", "EINVAL")
    if new_len > c.task_size:
        return errno("linux.mremap.einval-flags", "EINVAL")
    if flags & (FIXED | DONTUNMAP):
        # mm/mremap.c check_mremap_params: new_addr is looked at only when it is implied
        if new_addr > c.task_size - new_len:
            return errno("linux.mremap.einval-flags", "EINVAL")
        if new_addr & ~PAGE_MASK:
            return errno("linux.mremap.einval-unaligned", "EINVAL")
        if not flags & MAYMOVE:
            return errno("linux.mremap.einval-flags", "EINVAL")
        if flags & DONTUNMAP and old_len != new_len:
            return errno("linux.mremap.einval-flags", "EINVAL")
        if new_addr < addr + old_len and addr < new_addr + new_len:
            # vrm_overlaps (mremap_to before 6.16): with MREMAP_DONTUNMAP too, whose new_addr
            # is only a hint (measured on 6.18: new_addr 0 over an old range at 0x2000 is EINVAL;
            # found by the soak)
            return errno("linux.mremap.einval-overlap", "EINVAL")
    if old_len == 0:
        return Expect("linux.mremap.efault-unmapped", OK, "old_size 0 (shared duplicate): not modelled",
                      unknown=True)
    hit = _vma_extent(sys, mm, addr)
    if hit is None:
        return errno("linux.mremap.efault-unmapped", "EFAULT")
    s, e, v = hit
    if v.sealed or (flags & FIXED and sealed_in(mm, new_addr, new_addr + new_len)):
        # a sealed VMA cannot be resized or moved, nor unmapped as the destination (measured on 6.18)
        return errno("linux.mseal.eperm", "EPERM")
    if not flags & (FIXED | DONTUNMAP) and new_len <= old_len:
        # mm/mremap.c: a shrink unmaps [addr+new_len, addr+old_len) whatever is there; a sealed
        # VMA there refuses it (vms_gather_munmap_vmas: EPERM; measured on 6.18, found by the soak)
        if new_len < old_len and sealed_in(mm, addr + new_len, addr + old_len):
            return errno("linux.mseal.eperm", "EPERM")
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
        moved = _placement(sys, mm, 0, new_len, False, "linux.mremap.grow-in-place")
        return Expect("linux.mremap.grow-in-place", Outcome(value=addr), f"{addr:#x} or a free range",
                      predicate=lambda o: None if o.ok and o.value == addr else moved.judge(o), impl_defined=True)
    if not flags & MAYMOVE:
        return errno("linux.mremap.enomem-no-maymove", "ENOMEM")
    return _placement(sys, mm, 0, new_len, False, "linux.mremap.maymove-moves")


def apply_mremap(sys: OsState, proc: str, mm: Mm, o: Outcome, old_addr: int, old_size: int, new_size: int,
                 flags: int, new_addr: int) -> None:
    addr = old_addr
    if o.errno == "EPERM":
        _partial_multi_move(sys, proc, mm, old_addr, old_size, new_size, flags, new_addr)
    if not o.ok or o.value is None:
        return
    old_len, new_len = page_align(old_size), page_align(new_size)
    dest = o.value
    hit = mm.vmas.find(addr)
    if hit is None:
        return
    v = hit[2]
    if old_len == 0:
        # old_size 0 of a shared mapping (the answer is unknown, see _mremap_expect): when it
        # worked the kernel made a second mapping of the same pages at dest (mm/mremap.c,
        # the "duplicate shm area" case): keep the state coherent with what it reported
        if v.obj is not None and v.shared and dest != addr:
            sys.unmap(mm, dest, dest + new_len)
            mm.vmas.set(dest, dest + new_len, replace(v, origin=dest - v.pgoff(addr & PAGE_MASK) * PAGE_SIZE))
        return
    if dest == addr and not flags & MREMAP["MREMAP_FIXED"]:
        if new_len < old_len:
            sys.unmap(mm, addr + new_len, addr + old_len)
        elif new_len > old_len:
            mm.vmas.set(addr + old_len, addr + new_len, v)
            if v.locked and not v.onfault:
                fault.populate(sys, mm, addr + old_len, addr + new_len)
        return
    keep = min(old_len, new_len)
    sys.split_huge(mm, addr, addr + old_len)
    delta = dest - addr
    moved_vmas = list(mm.mapped_pages(addr, addr + keep))
    moved = []
    for page in sys.pages_in(mm, addr, addr + keep):
        moved.append((page, mm.anon.pop(page, None), mm.pte.pop(page, None), page in mm.maybe,
                      mm.last_ref.pop(page, None)))
        mm.maybe.discard(page)
        fault.flush_tlb_page(mm, page)
    # mm/mremap.c move_page_tables: guard markers move with the page tables
    guards = {p for p in mm.guard if addr <= p < addr + keep}
    mm.guard -= guards
    gone: set[int] = set()
    covered = sum(e - s for s, e, _ in moved_vmas)
    if flags & MREMAP["MREMAP_FIXED"] and not flags & MREMAP["MREMAP_DONTUNMAP"] and old_len == new_len \
            and covered < keep:
        # a MREMAP_FIXED move of several VMAs with gaps (Linux 6.17+; the answer is unknown, see
        # _mremap_expect): each VMA moves on its own, replacing only its part of the new range;
        # what the gaps face there stays (measured on 6.18; found by the soak)
        for s, e, _ in moved_vmas:
            sys.unmap(mm, s + delta, e + delta)
    else:
        sys.unmap(mm, dest, dest + new_len)
    old_vmas = list(mm.mapped_pages(addr, addr + old_len))
    if not flags & MREMAP["MREMAP_DONTUNMAP"]:
        # the old range goes (its tail beyond the new length with its pages); its objects
        # are collected only after the moved VMAs exist
        for page in sys.pages_in(mm, addr, addr + old_len):
            sys.drop_page(mm, page)
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
    mm.guard |= {p + delta for p in guards}
    sys.collect(gone | {w.obj for _, _, w in moved_vmas if w.obj is not None})
    if new_len > keep and v.locked and not v.onfault:
        # mm/mremap.c: a locked mapping that grew is populated past its old length, moved or not
        # (mm_populate(new_addr + old_len, new_len - old_len); measured on 6.18: a page of the
        # grown part of a moved MAP_LOCKED mapping has a frame at once)
        fault.populate(sys, mm, dest + keep, dest + new_len)


def _partial_multi_move(sys: OsState, proc: str, mm: Mm, addr: int, old_size: int, new_size: int, flags: int,
                        new_addr: int) -> None:
    """A MREMAP_FIXED move of several VMAs (Linux 6.17+; its answer is unknown) that met a sealed
    VMA: the VMAs before it were already moved, each on its own, when EPERM came (measured on
    6.18; found by the soak).  The state follows: that prefix moves to the new address."""
    MAYMOVE, FIXED, DONTUNMAP = MREMAP["MREMAP_MAYMOVE"], MREMAP["MREMAP_FIXED"], MREMAP["MREMAP_DONTUNMAP"]
    old_len = page_align(old_size) & U64
    if flags & (MAYMOVE | FIXED | DONTUNMAP) != MAYMOVE | FIXED or old_len != page_align(new_size) & U64 \
            or addr & ~PAGE_MASK or new_addr & ~PAGE_MASK or not old_len or not sys.has("mremap-multi-vma"):
        return
    pieces = list(mm.vmas.overlapping(addr, addr + old_len))
    first_sealed = next((max(s, addr) for s, _, v in pieces if v.sealed), None)
    if first_sealed is None or first_sealed <= addr or len(pieces) < 2:
        return
    apply_mremap(sys, proc, mm, Outcome(value=new_addr), addr, first_sealed - addr, first_sealed - addr,
                 flags, new_addr)


RULES = {
    "mmap": Rule(expect_mmap, apply_mmap),
    "munmap": Rule(expect_munmap, apply_munmap),
    "mprotect": Rule(expect_mprotect, apply_mprotect),
    "mremap": Rule(expect_mremap, apply_mremap),
}
