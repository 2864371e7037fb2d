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
from memspec.records import Outcome

from .. import fault, pressure
from ..expect import Expect, errno, exactly
from ..pages import MemObject, Page
from ..rules import Rule
from .state import HPAGE, PAGE_MASK, U64, Mm, OsState, page_align


def expect_madvise(sys: OsState, mm: Mm, addr: int, length: int, advice: int) -> Expect:
    # mm/madvise.c do_madvise / madvise_walk_vmas
    if advice not in MADV.values():
        return errno("posix.madvise.einval-advice", "EINVAL")
    if any(advice == MADV[n] and not sys.has(n) for n in ("MADV_FREE", "MADV_COLD", "MADV_PAGEOUT")):
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
        dirty = any(cp.dirty for _, _, cp in _pageout_pages(sys, mm, addr, end))
        return exactly("seed.fault.step5-evict" if dirty else "seed.pagecache.clean-dropped", Outcome(value=0))
    if advice == MADV["MADV_DONTNEED"] and any(mm.unlocked_at_fork & set(range(s, e, PAGE_SIZE))
                                              for s, e, _ in runs):
        return exactly("linux.mlock.not-inherited", Outcome(value=0))
    clause = {MADV["MADV_DONTNEED"]: "linux.madvise.dontneed", MADV["MADV_REMOVE"]: "linux.madvise.remove",
              MADV["MADV_FREE"]: "linux.madvise.free-lazy", MADV["MADV_DONTFORK"]: "linux.madvise.dontfork",
              MADV["MADV_HUGEPAGE"]: "linux.thp.madvise-hugepage",
              MADV["MADV_NOHUGEPAGE"]: "linux.thp.madvise-hugepage"}.get(advice, "posix.madvise.advice-ok")
    return exactly(clause, Outcome(value=0))


def apply_madvise(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, advice: int) -> None:
    if o.errno not in (None, "ENOMEM") or advice not in MADV.values():
        return
    end = addr + page_align(length)
    if end <= addr:
        return
    for s, e, v in list(mm.mapped_pages(addr, end)):
        if advice == MADV["MADV_DONTNEED"]:
            sys.split_huge(mm, s, e)
            for page in sys.pages_in(mm, s, e):
                sys.drop_page(mm, page)
            for base in list(mm.huge | mm.thp_maybe):
                if s <= base and base + HPAGE <= e:
                    mm.huge.discard(base)
                    mm.thp_maybe.discard(base)
        elif advice == MADV["MADV_REMOVE"] and v.obj is not None:
            obj = sys.objects[v.obj]
            for page in range(s, e, PAGE_SIZE):
                sys.punch(obj, v.pgoff(page))
        elif advice == MADV["MADV_FREE"]:
            for page in sys.pages_in(mm, s, e):
                p = mm.anon.get(page)
                if p is not None and p.mapcount == 1 and p.pfn is not None:
                    p.lazyfree = True
        elif advice in (MADV["MADV_DONTFORK"], MADV["MADV_DOFORK"]):
            mm.vmas.set(s, e, replace(v, dontfork=advice == MADV["MADV_DONTFORK"]))
        elif advice in (MADV["MADV_HUGEPAGE"], MADV["MADV_NOHUGEPAGE"]):
            mm.vmas.set(s, e, replace(v, huge=advice == MADV["MADV_HUGEPAGE"]))
        elif advice == MADV["MADV_PAGEOUT"]:
            _pageout(sys, mm, s, e)
        elif advice == MADV["MADV_WILLNEED"] and v.obj is not None:
            obj = sys.objects[v.obj]
            if obj.kind == "file":
                for page in range(s, e, PAGE_SIZE):
                    pgoff = v.pgoff(page)
                    if pgoff < obj.npages() and pgoff not in obj.pages:
                        _cache_read(sys, obj, pgoff)


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
            if page in mm.maybe:
                obj.uncertain.add(cp.pgoff)     # a PTE the kernel may have: may be paged out
                continue
            t = mm.pte.get(page)
            if t is not None and t.page is cp and cp.mapcount <= 1:
                out.append((page, obj, cp))
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


def _pageout_swap(sys: OsState, mm: Mm, start: int, end: int) -> None:
    """With a swap device (fact ``swap_pages``), MADV_PAGEOUT may also swap out anonymous and
    shmem pages this process alone maps (mm/madvise.c madvise_cold_or_pageout_pte_range ->
    reclaim_pages); without one they stay (mm/vmscan.c: no swap, no anon reclaim).  Whether it
    did is the kernel's: the page's presence, residency and frame become unknown, its data stays."""
    for s, e, v in mm.mapped_pages(start, end):
        for page in sys.pages_in(mm, s, e):
            t = mm.pte.get(page)
            if t is None or not isinstance(t.page, Page) or t.page.mapcount > 1:
                continue
            pg = t.page
            if pg.kind != "anon" and v.obj is not None:
                sys.objects[v.obj].uncertain.add(v.pgoff(page))
            fault.zap_pte(sys, mm, page)
            mm.maybe.add(page)
            sys.pfn_of_page.pop(id(pg), None)
            for pfn in [f for f, q in sys.pfn_seen.items() if q is pg]:
                del sys.pfn_seen[pfn]


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
    cursor = addr
    for s, e, _ in mm.vmas.overlapping(addr, addr + plen):
        if s > cursor:
            return errno("posix.mincore.enomem-unmapped", "ENOMEM")
        cursor = e
    if cursor < addr + plen:
        return errno("posix.mincore.enomem-unmapped", "ENOMEM")
    sure, unsure = 0, 0
    for i, page in enumerate(range(addr, addr + plen, PAGE_SIZE)):
        r = _resident(sys, mm, page)
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


def _resident(sys: OsState, mm: Mm, page: int) -> bool | None:
    """mm/mincore.c: a present PTE is resident; else an anon page is not (unless in swap cache),
    and a file/shmem page is resident iff it is in the page cache.  None: the model cannot say."""
    hit = mm.vmas.find(page)
    v = hit[2]
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
