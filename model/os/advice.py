"""The rules of the calls that advise on, write back and inspect a range: madvise, msync, mincore.

madvise follows mm/madvise.c (the advice a kernel knows by its version, the checks per VMA,
then the whole range); its effects -- dropping pages, punching holes, lazy freeing, paging
out, reading ahead, the fork and huge-page flags -- use the shared mechanics of
``model.os.state`` and reclaim (``model.pressure``).  msync follows mm/msync.c, mincore
mm/mincore.c; a page whose residency the model cannot know may read either way.

Worked example: after ``store(a, 1)`` in private anonymous memory, ``madvise(a, 4096,
MADV_DONTNEED)`` is 0 (``linux.madvise.dontneed``) and the next ``load(a)`` reads 0 from a
fresh zero page.
"""

from __future__ import annotations

from dataclasses import replace

from memspec.consts import MADV, MS, PAGE_SIZE
from memspec.records import OK, Outcome

from .. import fault, fault_runs, pressure
from ..expect import Expect, errno, exactly, or_errno
from ..pages import MemObject, Page
from ..pte import READ, WRITE
from ..rules import Rule
from . import splits
from .sealing import refuses_advice
from .state import HPAGE, PAGE_MASK, PROT_R, PROT_W, U64, Mm, OsState, Vma, page_align, vma_extent


M = MADV
# advice whose only effect is a VMA flag no program reads (madvise_vma_behavior ->
# madvise_update_vma; ksm_madvise refuses nothing): DONTDUMP, DODUMP, MERGEABLE, UNMERGEABLE
# (clause linux.madvise.flags-only).  The flag still splits the VMA (and mremap of a range over
# two VMAs is EFAULT), so the model keeps it: Vma.readahead, dontdump, mergeable.
_FLAGS_ONLY = {M["MADV_DONTDUMP"], M["MADV_DODUMP"], M["MADV_MERGEABLE"], M["MADV_UNMERGEABLE"]}


def ksm_compatible(v: Vma) -> bool:
    """mm/ksm.c vma_ksm_compatible: KSM never marks shared memory (VM_SHARED, VM_MAYSHARE: every
    MAP_SHARED mapping) or MAP_DROPPABLE memory (VM_DROPPABLE) mergeable; ksm_madvise then
    returns 0 without a flag."""
    return not v.shared and not v.droppable


# the new values of the flags madvise_update_vma sets, per advice (mm/madvise.c
# madvise_vma_behavior; mm/ksm.c ksm_madvise)
_NEW_FLAGS = {
    M["MADV_NORMAL"]: lambda v: {"readahead": 0},
    M["MADV_RANDOM"]: lambda v: {"readahead": 1},
    M["MADV_SEQUENTIAL"]: lambda v: {"readahead": 2},
    M["MADV_DONTDUMP"]: lambda v: {"dontdump": True},
    M["MADV_DODUMP"]: lambda v: {"dontdump": False},
    M["MADV_MERGEABLE"]: lambda v: {"mergeable": True} if ksm_compatible(v) else {},
    M["MADV_UNMERGEABLE"]: lambda v: {"mergeable": False},
}


def _flag_change(advice: int):
    new = _NEW_FLAGS[advice]
    return lambda v: any(getattr(v, k) != x for k, x in new(v).items())


# the advice madvise_update_vma applies by changing the VMA's flags (a split when the range
# starts or ends inside a VMA), with whether it changes a VMA's flags
_SPLIT_CHANGES = {
    M["MADV_DONTFORK"]: lambda v: not v.dontfork, M["MADV_DOFORK"]: lambda v: v.dontfork,
    M["MADV_WIPEONFORK"]: lambda v: not v.wipeonfork, M["MADV_KEEPONFORK"]: lambda v: v.wipeonfork,
    M["MADV_HUGEPAGE"]: lambda v: v.huge is not True, M["MADV_NOHUGEPAGE"]: lambda v: v.huge is not False,
    **{a: _flag_change(a) for a in _NEW_FLAGS},
}
_POPULATE = {M["MADV_POPULATE_READ"], M["MADV_POPULATE_WRITE"]}
_MEMORY_FAILURE = {M["MADV_HWPOISON"], M["MADV_SOFT_OFFLINE"]}
_COLLAPSE_ERRNOS = ("EAGAIN", "EINVAL", "ENOMEM", "EBUSY")    # mm/madvise.c madvise_collapse_errno


def _range(addr: int, length: int) -> tuple[int, int] | Expect:
    """mm/madvise.c check_input_range: (start, end), or EINVAL."""
    if addr & ~PAGE_MASK:
        return errno("posix.madvise.einval-unaligned", "EINVAL")
    plen = page_align(length) & U64
    if length and not plen:
        return errno("posix.madvise.einval-unaligned", "EINVAL")
    if addr + plen > U64:
        return errno("posix.madvise.einval-unaligned", "EINVAL")
    return addr, addr + plen


def _vma_error(sys: OsState, mm: Mm, s: int, e: int, v: Vma, advice: int) -> Expect | None:
    """mm/madvise.c madvise_vma_behavior: the error one VMA's part [s, e) of the range gives."""
    if refuses_advice(v, advice):
        return errno("linux.mseal.eperm", "EPERM")                  # can_madvise_modify
    if advice in (M["MADV_DONTNEED"], M["MADV_FREE"]) and v.locked:
        return errno("linux.madvise.einval-locked", "EINVAL")     # madvise_dontneed_free_valid_vma
    if advice in (M["MADV_PAGEOUT"], M["MADV_COLD"]) and v.locked:
        # mm/madvise.c can_madv_lru_vma: locked memory cannot be paged out
        return errno("posix.mlock.never-evicted", "EINVAL")
    if advice == M["MADV_FREE"] and v.obj is not None:
        return errno("linux.madvise.einval-free-file", "EINVAL")
    # mm/madvise.c madvise_remove: locked or without a file: EINVAL; not shared and may-write
    # (vma_is_shared_maywrite, PROT_NONE included): EACCES; then the file system punches the hole
    if advice == M["MADV_REMOVE"] and (v.locked or v.obj is None):
        return errno("linux.madvise.einval-remove-private", "EINVAL")
    if advice == M["MADV_REMOVE"] and not (v.shared and v.may_write):
        return errno("linux.madvise.eacces-remove-readonly", "EACCES")
    if advice == M["MADV_WIPEONFORK"] and v.obj is not None:
        # "MADV_WIPEONFORK is only supported on anonymous memory": a file or shared VMA
        return errno("linux.madvise.einval-wipeonfork", "EINVAL")
    if advice in (M["MADV_KEEPONFORK"], M["MADV_DODUMP"]) and v.droppable:
        # measured on Linux 6.18: MAP_DROPPABLE memory stays wiped on fork and out of core dumps
        return errno("linux.madvise.einval-droppable", "EINVAL")
    if advice == M["MADV_GUARD_INSTALL"] and v.locked:
        # mm/madvise.c is_valid_guard_vma(allow_locked=false): it would zap locked pages
        return errno("linux.madvise.einval-guard-locked", "EINVAL")
    if advice == M["MADV_COLLAPSE"]:
        vs, ve, _ = vma_extent(sys, mm, s)      # (a VMA is mapped at s: found above)
        # mm/huge_memory.c __thp_vma_allowable_orders (not in a fault): a VMA that cannot hold
        # one PMD-aligned 2 MiB block (at its end), or VM_NOHUGEPAGE, cannot collapse
        if ((ve - HPAGE) & ~(HPAGE - 1)) < vs or ve - vs < HPAGE or v.huge is False:
            return errno("linux.madvise.collapse-einval", "EINVAL")
    return None


def _walk(sys: OsState, mm: Mm, start: int, end: int, advice: int) -> tuple[Expect | None, list]:
    """mm/madvise.c madvise_walk_vmas: the runs advised, in order, and the error: the first
    VMA's error ends the walk (the runs before it are already advised); a gap is ENOMEM at the
    end, after the VMAs behind it were advised."""
    runs = mm.vmas.overlapping(start, end)
    done = []
    for s, e, v in runs:
        bad = _vma_error(sys, mm, max(s, start), min(e, end), v, advice)
        if bad is not None:
            return bad, done
        done.append((max(s, start), min(e, end), v))
    cursor = start
    hole = not runs
    for s, e, _ in runs:
        if s > cursor:
            hole = True
        cursor = e
    if hole or cursor < end:
        return errno("posix.madvise.enomem-unmapped", "ENOMEM"), done
    return None, done


def _populate_walk(sys: OsState, mm: Mm, start: int, end: int, write: bool) -> tuple[Expect | None, int]:
    """mm/madvise.c madvise_populate -> mm/gup.c faultin_page_range: page by page, the first that
    fails ends it (the pages before it are populated).  Returns the error and where it stopped."""
    page = start
    while page < end:
        hit = mm.vmas.find(page)
        if hit is None:
            return errno("linux.madvise.populate-enomem", "ENOMEM"), page   # no VMA
        s, e, v = hit
        # mm/gup.c check_vma_flags: POPULATE_WRITE needs VM_WRITE, POPULATE_READ VM_READ (an
        # execute-only key forbids the read too): EFAULT, which madvise_populate makes EINVAL
        if not (v.prot & PROT_W if write else v.prot & PROT_R) or (v.exec_only and not write):
            return errno("linux.madvise.populate-einval", "EINVAL"), page
        for p in range(page, min(e, end), PAGE_SIZE):
            if p in mm.guard or (v.obj is not None and v.pgoff(p) >= sys.objects[v.obj].npages()):
                # a fault that would be SIGSEGV (guard marker) or SIGBUS (past the file's end)
                return errno("linux.madvise.populate-efault", "EFAULT"), p
        page = min(e, end)
    return None, end


def expect_madvise(sys: OsState, mm: Mm, addr: int, length: int, advice: int) -> Expect:
    # mm/madvise.c do_madvise: madvise_behavior_valid, check_input_range, a zero length, then
    # madvise_do_behavior (memory failure, populate, or the walk over the VMAs)
    if not sys.knows_advice(advice):
        return errno("posix.madvise.einval-advice", "EINVAL")     # unknown to this kernel
    rng = _range(addr, length)
    if isinstance(rng, Expect):
        return rng
    start, end = rng
    if not length:
        return exactly("linux.madvise.len0-ok", Outcome(value=0))
    if advice in _MEMORY_FAILURE:
        # mm/madvise.c madvise_inject_error
        if not mm.sys_admin:
            return errno("linux.madvise.eperm-hwpoison", "EPERM")
        return Expect("linux.madvise.hwpoison-privileged", OK, "poisoning a frame: not modelled", unknown=True)
    if advice in _POPULATE:
        bad, _ = _populate_walk(sys, mm, start, end, advice == M["MADV_POPULATE_WRITE"])
        return bad or exactly("linux.madvise.populate", Outcome(value=0))
    bad, runs = _walk(sys, mm, start, end, advice)
    if advice in _SPLIT_CHANGES:
        # mm/madvise.c madvise_vma_behavior -> madvise_update_vma -> vma_modify_flags -> split_vma:
        # at vm.max_map_count a split is ENOMEM, which madvise_vma_behavior turns into EAGAIN;
        # the VMAs before it are already advised (model/os/splits.py)
        changes = _SPLIT_CHANGES[advice]
        lim = splits.limit(sys, mm, start, end, changes)
        at = runs[-1][1] if runs else start        # where the walk's own error (if any) arises
        if lim == "refused" and (bad is None or splits.refused_at(sys, mm, start, end, changes) < at):
            return errno(splits.MADVISE, "EAGAIN")
        if lim is not None:
            return or_errno(bad or _advised(sys, mm, start, end, advice, runs), splits.MADVISE, "EAGAIN")
    if advice == M["MADV_COLLAPSE"] and runs and (bad is None or bad.clause == "posix.madvise.enomem-unmapped"):
        return _collapse_walk(sys, mm, runs, bad)
    if bad is not None:
        return bad
    return _advised(sys, mm, start, end, advice, runs)


def _collapse_walk(sys: OsState, mm: Mm, runs: list, gap: Expect | None) -> Expect:
    """MADV_COLLAPSE VMA by VMA (mm/madvise.c madvise_vma_behavior calls madvise_collapse with
    each VMA's part of the range, and madvise_walk_vmas returns the first error at once): a VMA
    whose part holds no whole huge-page block fails there (EINVAL on 6.18), before the ENOMEM a
    gap leaves for the end (measured on 6.18: an unmapped first page, then less than a block of a
    mapping: EINVAL).  Each VMA's answer is _expect_collapse's."""
    outs: list[Outcome] = []
    clause = "linux.madvise.collapse"
    for run in runs:
        e = _expect_collapse(sys, mm, [run])
        allowed = e.allowed if e.allowed is not None else (e.default,)
        errs = [o for o in allowed if o.errno]
        if not errs:
            continue
        if len(errs) == len(allowed):         # this VMA surely fails: the walk ends with it
            if not outs:
                return e
            outs.extend(errs)
            break
        outs.extend(errs)                     # it may fail here, or go on
        clause = e.clause
    else:
        outs.append(gap.default if gap is not None else Outcome(value=0))
        if len(outs) == 1:
            return gap if gap is not None else _expect_collapse(sys, mm, runs[:1])
    uniq = tuple(dict.fromkeys(outs))
    return Expect(clause, uniq[-1], " or ".join(o.describe() for o in uniq), uniq, impl_defined=True)


def _advised(sys: OsState, mm: Mm, start: int, end: int, advice: int, runs: list) -> Expect:
    """madvise's answer once the walk went through without an error."""
    if advice == M["MADV_PAGEOUT"]:
        dirty = any(cp.dirty for _, _, cp in _pageout_pages(sys, mm, start, end))
        return exactly("seed.fault.step5-evict" if dirty else "seed.pagecache.clean-dropped", Outcome(value=0))
    if advice == M["MADV_DONTNEED"] and any(mm.unlocked_at_fork & set(range(s, e, PAGE_SIZE))
                                            for s, e, _ in runs):
        return exactly("linux.mlock.not-inherited", Outcome(value=0))
    if advice == M["MADV_COLLAPSE"]:
        return _expect_collapse(sys, mm, runs)
    clause = {M["MADV_DONTNEED"]: "linux.madvise.dontneed", M["MADV_REMOVE"]: "linux.madvise.remove",
              M["MADV_FREE"]: "linux.madvise.free-lazy", M["MADV_DONTFORK"]: "linux.madvise.dontfork",
              M["MADV_HUGEPAGE"]: "linux.thp.madvise-hugepage",
              M["MADV_NOHUGEPAGE"]: "linux.thp.madvise-hugepage",
              M["MADV_DONTNEED_LOCKED"]: "linux.madvise.dontneed-locked",
              M["MADV_WIPEONFORK"]: "linux.madvise.wipeonfork", M["MADV_KEEPONFORK"]: "linux.madvise.wipeonfork",
              M["MADV_GUARD_INSTALL"]: "linux.madvise.guard-install",
              M["MADV_GUARD_REMOVE"]: "linux.madvise.guard-remove"}.get(advice, "posix.madvise.advice-ok")
    if advice in _FLAGS_ONLY:
        clause = "linux.madvise.flags-only"
    return exactly(clause, Outcome(value=0))


def _expect_collapse(sys: OsState, mm: Mm, runs: list) -> Expect:
    """MADV_COLLAPSE over VMAs that can hold a huge page: no PMD-aligned 2 MiB block inside the
    range is 0; otherwise success depends on what the kernel finds (pages on per-CPU LRU
    caches: EAGAIN, a huge page it cannot allocate: ENOMEM, an empty page table: EINVAL, a
    charge it cannot make: EBUSY) -- a choice, with the contents kept either way."""
    start, end = runs[0][0], runs[-1][1]
    hstart, hend = page_align_huge(start), end & ~(HPAGE - 1)
    if hstart > hend:
        # Linux 6.18 mm/khugepaged.c madvise_collapse: thps == (hend - hstart) >> HPAGE_PMD_SHIFT
        # with hend < hstart compares with a huge unsigned count: the last failure, EINVAL
        # (measured); later trees return 0 for a range without a whole block
        if sys.config.kernel is not None and sys.config.kernel <= (6, 18):
            return errno("linux.madvise.collapse-einval", "EINVAL")
        return Expect("linux.madvise.collapse", Outcome(value=-1, errno="EINVAL"),
                      "EINVAL (Linux 6.18 and before) or 0 (later trees)",
                      (Outcome(value=-1, errno="EINVAL"), Outcome(value=0)), impl_defined=True)
    if hstart == hend:
        return exactly("linux.madvise.collapse", Outcome(value=0))
    outs = (Outcome(value=0),) + tuple(Outcome(value=-1, errno=n) for n in _COLLAPSE_ERRNOS)
    return Expect("linux.madvise.collapse", outs[0], "0, or EAGAIN/EINVAL/ENOMEM/EBUSY by what the kernel finds",
                  outs, impl_defined=True)


def page_align_huge(a: int) -> int:
    return (a + HPAGE - 1) & ~(HPAGE - 1)


def apply_madvise(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, advice: int) -> None:
    if not sys.knows_advice(advice) or advice in _MEMORY_FAILURE:
        return
    rng = _range(addr, length)
    if isinstance(rng, Expect) or not length:
        return
    start, end = rng
    if advice in _POPULATE:
        _, stop = _populate_walk(sys, mm, start, end, advice == M["MADV_POPULATE_WRITE"])
        _populate(sys, mm, start, stop, WRITE if advice == M["MADV_POPULATE_WRITE"] else READ)
        return
    # the runs advised before the walk ended (all of them on success or ENOMEM)
    _, runs = _walk(sys, mm, start, end, advice)
    if o.errno == "EAGAIN" and advice in _SPLIT_CHANGES and splits.limit(sys, mm, start, end, _SPLIT_CHANGES[advice]):
        # a split refused at vm.max_map_count: only the VMAs before it were advised
        stop = splits.refused_at(sys, mm, start, end, _SPLIT_CHANGES[advice], failed=True)
        runs = [r for r in runs if stop is None or r[1] <= stop]
    for s, e, v in runs:
        if advice in (M["MADV_DONTNEED"], M["MADV_DONTNEED_LOCKED"], M["MADV_GUARD_INSTALL"]):
            # zap_vma_range: the range's pages go (guard markers stay)
            sys.split_huge(mm, s, e)
            for page in sys.pages_in(mm, s, e):
                sys.drop_page(mm, page)
            for base in list(mm.huge | mm.thp_maybe):
                if s <= base and base + HPAGE <= e:
                    mm.huge.discard(base)
                    mm.thp_maybe.discard(base)
            if advice == M["MADV_GUARD_INSTALL"]:
                mm.guard |= set(range(s, e, PAGE_SIZE))
        elif advice == M["MADV_GUARD_REMOVE"]:
            mm.guard -= set(range(s, e, PAGE_SIZE))
        elif advice == M["MADV_REMOVE"] and v.obj is not None:
            obj = sys.objects[v.obj]
            for page in range(s, e, PAGE_SIZE):
                sys.punch(obj, v.pgoff(page))
        elif advice == M["MADV_FREE"]:
            for page in sys.pages_in(mm, s, e):
                p = mm.anon.get(page)
                if p is not None and p.mapcount == 1 and p.pfn is not None:
                    p.lazyfree = True
        elif advice in (M["MADV_DONTFORK"], M["MADV_DOFORK"]):
            mm.vmas.set(s, e, replace(v, dontfork=advice == M["MADV_DONTFORK"]))
        elif advice in (M["MADV_WIPEONFORK"], M["MADV_KEEPONFORK"]):
            mm.vmas.set(s, e, replace(v, wipeonfork=advice == M["MADV_WIPEONFORK"]))
        elif advice in (M["MADV_HUGEPAGE"], M["MADV_NOHUGEPAGE"]):
            mm.vmas.set(s, e, replace(v, huge=advice == M["MADV_HUGEPAGE"]))
        elif advice in _NEW_FLAGS:
            new = _NEW_FLAGS[advice](v)
            if any(getattr(v, k) != x for k, x in new.items()):
                mm.vmas.set(s, e, replace(v, **new))
        elif advice == M["MADV_PAGEOUT"]:
            _pageout(sys, mm, s, e)
        elif advice == M["MADV_COLLAPSE"]:
            # contents stay; whether a block is now one huge page, and which of its pages are
            # present, is the kernel's (linux.madvise.collapse)
            for base in range(page_align_huge(s), e - HPAGE + 1, HPAGE):
                mm.thp_maybe.add(base)
                for page in range(base, base + HPAGE, PAGE_SIZE):
                    t = mm.pte.get(page)
                    if t is None:
                        mm.maybe.add(page)
                    elif isinstance(t.page, Page):
                        # mm/khugepaged.c collapse_huge_page copies the block's pages into a new
                        # huge folio (MADV_COLLAPSE ignores max_ptes_shared: a page shared with
                        # a fork's child is copied for this process only), so its frame is new
                        # (measured on 6.18: pfn_of before and after differ)
                        pg = t.page
                        sys.pfn_loose[id(pg)] = (pg, "linux.madvise.collapse")
                        pressure.forget_frame(sys, pg)
        elif advice == M["MADV_WILLNEED"] and v.obj is not None:
            obj = sys.objects[v.obj]
            if obj.kind == "file":
                for page in range(s, e, PAGE_SIZE):
                    pgoff = v.pgoff(page)
                    if pgoff < obj.npages() and pgoff not in obj.pages:
                        _cache_read(sys, obj, pgoff)


def _populate(sys: OsState, mm: Mm, start: int, end: int, kind: int) -> None:
    """Fault [start, end) in with ``kind`` faults, as GUP does for MADV_POPULATE_(READ|WRITE);
    a page read from a file may be counted minor after a retry (as ``fault.populate`` says)."""
    majflt = mm.majflt
    runs = fault_runs.lean(sys, mm)
    page = start
    while page < end:
        hit = mm.vmas.find(page)
        if hit is None:
            break
        if runs:        # a run of fresh private pages in one pass (model.fault_runs), then one page
            page = fault_runs.anon_run(sys, mm, hit[2], page, min(end, hit[1]), kind)
            if page >= min(end, hit[1]):
                continue
        fc = fault.do_page_fault(sys, mm, hit[2], page, kind)
        if fc is not None and fc.kind == "sigkill":
            break
        page += PAGE_SIZE
    if mm.majflt > majflt:
        mm.minflt_maybe += mm.majflt - majflt
        mm.majflt = majflt


def _pageout_pages(sys: OsState, mm: Mm, start: int, end: int) -> list[tuple[int, MemObject, Page]]:
    """The file pages MADV_PAGEOUT may reclaim: page-cache pages of regular files in the
    range, mapped by this process alone (mm/madvise.c skips shared folios)."""
    out = []
    for s, e, v in mm.mapped_pages(start, end):
        if v.obj is None or sys.objects[v.obj].kind != "file":
            continue
        obj = sys.objects[v.obj]
        for page in range(s, e, PAGE_SIZE):
            if page in mm.anon:
                continue
            cp = obj.pages.get(v.pgoff(page))
            if cp is None or cp.pfn is None:
                continue
            t = mm.pte.get(page)
            if t is not None and t.page is cp and cp.mapcount <= 1:
                # mapped here alone, even where the model is unsure of the PTE (``maybe``, e.g. after
                # mprotect): with the PTE the kernel reclaims the page, without it the page was never
                # this call's -- either way no PTE is left, and _pageout leaves its residency uncertain
                out.append((page, obj, cp))
            elif page in mm.maybe:
                obj.uncertain.add(cp.pgoff)     # a PTE the kernel may have: may be paged out
    return out


def _pageout(sys: OsState, mm: Mm, start: int, end: int) -> None:
    """MADV_PAGEOUT: reclaim the range's own file pages now (seed step 5: dirty ones are
    written back first).  The kernel may keep a page (writeback still running, a racing
    reference): the model evicts and marks the page uncertain until it is touched again."""
    for page, obj, cp in _pageout_pages(sys, mm, start, end):
        pressure.evict(sys, cp)
        obj.uncertain.add(cp.pgoff)
        mm.maybe.add(page)
    if sys.config.swap_pages > 0:
        _pageout_swap(sys, mm, start, end)
    else:
        # a shmem page never written (read-faulted: all zero) is clean: reclaim may drop it from
        # the page cache with no swap device (mm/vmscan.c shrink_folio_list: a clean folio is not
        # written out, __remove_mapping frees it); it reads zero again, its residency is the kernel's
        _pageout_swap(sys, mm, start, end, clean_shmem_only=True)


def _pageout_swap(sys: OsState, mm: Mm, start: int, end: int, clean_shmem_only: bool = False) -> None:
    """With a swap device (fact ``swap_pages``), MADV_PAGEOUT may also swap out anonymous and
    shmem pages this process alone maps (mm/madvise.c madvise_cold_or_pageout_pte_range ->
    reclaim_pages); without one they stay (mm/vmscan.c: no swap, no anon reclaim), but for a clean
    page after MADV_FREE, which reclaim discards.  Whether it
    did is the kernel's: the page's presence, residency and frame become unknown, its data stays."""
    for s, e, v in mm.mapped_pages(start, end):
        for page in sys.pages_in(mm, s, e):
            t = mm.pte.get(page)
            if t is None or not isinstance(t.page, Page) or t.page.mapcount > 1:
                continue
            pg = t.page
            # an anonymous page after MADV_FREE (not written since) is clean: reclaim discards it
            # with no swap device too (mm/vmscan.c shrink_folio_list: an anon folio that is not
            # swap-backed is freed); its bytes then read 0 (linux.madvise.free-lazy)
            lazy = pg.kind == "anon" and pg.lazyfree
            if clean_shmem_only and not lazy and (pg.kind == "anon" or pg.data is not None or pg.dirty
                                                  or v.obj is None or sys.objects[v.obj].kind == "file"):
                continue
            if pg.kind != "anon" and v.obj is not None:
                sys.objects[v.obj].uncertain.add(v.pgoff(page))
            fault.zap_pte(sys, mm, page)
            mm.maybe.add(page)
            pressure.forget_frame(sys, pg)


def _cache_read(sys: OsState, obj: MemObject, pgoff: int) -> Page | None:
    cp = Page("file", bytearray(obj.disk[pgoff]) if pgoff in obj.disk else None, obj=obj.id, pgoff=pgoff)
    if sys.frames.alloc(cp, 0) is None:
        return None
    obj.pages[pgoff] = cp
    sys.lru_add(cp)
    sys.stats["file_reads"] += 1
    return cp


def expect_msync(sys: OsState, mm: Mm, addr: int, length: int, flags: int) -> Expect:
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


def apply_msync(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, flags: int) -> None:
    if o.errno not in (None, "ENOMEM") or not flags & MS["MS_SYNC"]:
        return
    end = min(addr + page_align(length), U64)
    for s, e, v in list(mm.mapped_pages(addr, end)):
        if v.shared and v.obj is not None and sys.objects[v.obj].kind == "file":
            obj = sys.objects[v.obj]
            for page in range(s, e, PAGE_SIZE):
                cp = obj.pages.get(v.pgoff(page))
                if cp is not None and cp.dirty:
                    pressure.writeback(sys, obj, cp)


def expect_mincore(sys: OsState, mm: Mm, addr: int, length: int) -> Expect:
    # mm/mincore.c sys_mincore
    if addr & ~PAGE_MASK:
        return errno("posix.mincore.einval-unaligned", "EINVAL")
    plen = page_align(length)
    if addr + plen > sys.config.task_size + PAGE_SIZE or (length and plen == 0):
        return errno("posix.mincore.enomem-unmapped", "ENOMEM")
    if plen == 0:
        return exactly("posix.mincore.residency", Outcome(value=0))
    if not mm.vmas.covers(addr, addr + plen):
        return errno("posix.mincore.enomem-unmapped", "ENOMEM")
    sure, unsure, locked = 0, 0, False
    for s, e, v in mm.mapped_pages(addr, addr + plen):      # (the range is covered: its VMAs tile it)
        here, maybe = _residency(sys, mm, v, s, e)
        sure |= here << (s - addr) // PAGE_SIZE
        unsure |= maybe << (s - addr) // PAGE_SIZE
        locked = locked or (v.locked and not v.onfault)
    clause = "posix.mlock.resident" if locked else "posix.mincore.residency"
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


def _reveals(sys: OsState, mm: Mm, v: Vma) -> bool:
    """mm/mincore.c can_do_mincore: page-cache residency is shown only for anonymous memory and
    for files the caller owns (or has CAP_FOWNER for) or could open for writing; for any other
    file mapping every page reads resident (clause posix.mincore.residency).  memfd and shared
    anonymous memory are shmem inodes of mode 0777."""
    if v.obj is None:
        return True
    obj = sys.objects[v.obj]
    if obj.kind in ("anon-shared", "memfd") or obj.uid == mm.uid or mm.fowner or mm.dac_override:
        return True
    return bool(obj.mode & 0o002)


def _residency(sys: OsState, mm: Mm, v: Vma, s: int, e: int) -> tuple[int, int]:
    """mincore's vector over [s, e) of the VMA ``v``, bit 0 for ``s``: the pages surely resident,
    and those the model cannot say of (``_resident``, page by page; private anonymous memory
    that reveals its pages in one loop: guard marker 0, present PTE 1, unknown PTE either, else 0)."""
    sure, unsure = 0, 0
    if v.obj is None:
        pte, maybe, guard = mm.pte, mm.maybe, mm.guard
        for i, page in enumerate(range(s, e, PAGE_SIZE)):
            if page in guard:
                continue
            if page in pte:
                sure |= 1 << i
            elif page in maybe:
                unsure |= 1 << i
        return sure, unsure
    for i, page in enumerate(range(s, e, PAGE_SIZE)):
        r = _resident(sys, mm, v, page)
        if r is None:
            unsure |= 1 << i
        elif r:
            sure |= 1 << i
    return sure, unsure


def _resident(sys: OsState, mm: Mm, v: Vma, page: int) -> bool | None:
    """mm/mincore.c: a present PTE is resident; else an anon page is not (unless in swap cache),
    and a file/shmem page is resident iff it is in the page cache.  None: the model cannot say.
    ``v``: the VMA at ``page``."""
    if not _reveals(sys, mm, v):
        return True
    if page in mm.guard:
        # a guard marker (clause linux.madvise.guard-install): anonymous memory reads 0; a file
        # page in the cache reads 1 (both measured on Linux 6.18); one not in the cache: either
        if v.obj is None:
            return False
        cp = sys.objects[v.obj].pages.get(v.pgoff(page))
        return True if cp is not None and cp.pfn is not None else None
    t = mm.pte.get(page)
    if t is not None:
        return True
    if page in mm.maybe:
        if v.obj is not None and v.pgoff(page) not in sys.objects[v.obj].uncertain:
            cp = sys.objects[v.obj].pages.get(v.pgoff(page))
            if cp is not None and cp.pfn is not None:
                return True
        return None
    if v.obj is None:
        return False
    obj = sys.objects[v.obj]
    if v.pgoff(page) in obj.uncertain:
        return None
    cp = obj.pages.get(v.pgoff(page))
    return cp is not None and cp.pfn is not None


RULES = {
    "madvise": Rule(expect_madvise, apply_madvise),
    "msync": Rule(expect_msync, apply_msync),
    "mincore": Rule(expect_mincore),
}
