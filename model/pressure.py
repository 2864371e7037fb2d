"""Memory pressure: page reclaim with a clock, swap, swappiness, the OOM killer,
Denning working sets, transparent huge pages and NUMA placement.

Laws (each with its clause; citations in specs/clauses_os.py):

* ``seed.swap.clock-second-chance`` -- reclaim walks each LRU list as a clock: a page
  whose referenced bit is set loses the bit and is passed over once (its second
  chance); the first page found unreferenced is evicted.  Example: pages A (referenced)
  and B (not): ``reclaim(1)`` evicts B and clears A's bit; a second ``reclaim(1)`` evicts A.
* ``linux.swap.swappiness`` -- of n pages to reclaim, about n*swappiness/200 come from
  the anonymous (swap-backed) list and the rest from the file list (mm/vmscan.c
  get_scan_count: anon_prio = swappiness, file_prio = 200 - swappiness); when one list
  has nothing to give, the other gives the rest.
* ``seed.pagecache.clean-dropped`` / ``seed.fault.step5-evict`` -- a clean file page is
  dropped; a dirty one is written back first; anon and shmem pages go to swap
  (``swap_out``) and need a free slot.
* ``posix.mlock.never-evicted`` -- a page in a VM_LOCKED mapping is unevictable.
* ``linux.oom.kills-worst`` -- with RAM and swap exhausted, the OOM killer kills the
  process with the highest badness: resident pages + swap entries (mm/oom_kill.c
  oom_badness, oom_score_adj 0); among equals the most recently created one.
* ``seed.wss.denning`` -- W(t, τ) is the set of pages a process referenced in its last
  τ units of virtual time (each access is one unit; ``tick`` is one more).
* ``linux.thp.*`` -- a 2 MiB-aligned range of an eligible anonymous mapping may be
  mapped by one huge page; a partial mprotect/munmap splits it and keeps its data.
* ``linux.numa.*`` -- MPOL_BIND and MPOL_PREFERRED place new pages on the mask's lowest
  node, MPOL_INTERLEAVE round-robin by page offset, the default on the local node.
"""

from __future__ import annotations

from memspec.consts import PAGE_SIZE
from memspec.records import Outcome

from . import fault_runs, invariants
from .expect import Expect, errno, exactly
from .os.state import PROT_W, Mm, OsState, Pte, Vma, flush_tlb_page, policy_node, zap_pte
from .pages import ZERO_PAGE, MemObject, Page

HPAGE = 2 << 20
HPAGE_NR = HPAGE // PAGE_SIZE
FAULT_AROUND = 16        # mm/memory.c fault_around_bytes = 64 KiB
ZERO_PFN = 1 << 40       # the model's own stand-in frame number of the zero page


# --- unevictable, reclaimable --------------------------------------------------

def is_locked(sys: OsState, page: Page) -> bool:
    """Is ``page`` in a VM_LOCKED mapping of some process (mlock'd: unevictable)?"""
    for mm in sys.procs.values():
        if page.kind == "anon":
            for addr, p in mm.anon.items():
                if p is page:
                    hit = mm.vmas.find(addr)
                    if hit is not None and hit[2].locked:
                        return True
        else:
            for s, e, v in mm.vmas.items():
                if v.locked and v.obj == page.obj and s <= v.origin + page.pgoff * PAGE_SIZE < e:
                    return True
    return False


def evictable(sys: OsState, page: Page, protect: Page | None = None) -> bool:
    if page is protect or page.pfn is None or is_locked(sys, page):
        return False
    if page.kind in ("anon", "shmem") and not (page.kind == "anon" and page.lazyfree and not page.dirty):
        return len(sys.frames.swap_used) < sys.frames.swap_pages
    return True


def can_reclaim(sys: OsState) -> bool:
    return any(evictable(sys, p) for p in sys.lru)


def _is_anon_lru(page: Page) -> bool:
    return page.kind in ("anon", "shmem")     # shmem is swap-backed: on the anon LRU


def reclaim_plan(sys: OsState, n: int, protect: Page | None = None) -> list[Page]:
    """The pages ``reclaim(n)`` would evict, in order, without changing anything."""
    pages, _ = _plan(sys, n, protect)
    return pages


def _plan(sys: OsState, n: int, protect: Page | None) -> tuple[list[Page], list[Page]]:
    ref = {id(p): p.referenced for p in sys.lru}
    chosen: list[Page] = []
    cleared: list[Page] = []
    swap_left = sys.frames.swap_pages - len(sys.frames.swap_used)
    anon_share = (n * sys.swappiness + 100) // 200
    quotas = [("anon", anon_share), ("file", n - anon_share)]
    for rnd in range(2):
        for kind, quota in quotas:
            if rnd == 1:
                quota = n - len(chosen)
            ring = [p for p in sys.lru if (_is_anon_lru(p) == (kind == "anon")) and p not in chosen]
            got = 0
            for _ in range(2):      # two sweeps: the second finds the pages that lost their bit
                for p in ring:
                    if got >= quota or len(chosen) >= n:
                        break
                    if p in chosen or p is protect or p.pfn is None or is_locked(sys, p):
                        continue
                    needs_swap = _is_anon_lru(p) and not (p.kind == "anon" and p.lazyfree and not p.dirty)
                    if needs_swap and swap_left <= 0:
                        continue
                    if ref[id(p)]:
                        ref[id(p)] = False        # second chance
                        cleared.append(p)
                        continue
                    chosen.append(p)
                    got += 1
                    if needs_swap:
                        swap_left -= 1
        if len(chosen) >= n:
            break
    return chosen, cleared


def reclaim(sys: OsState, n: int, protect: Page | None = None) -> int:
    """kswapd / direct reclaim of up to ``n`` frames; returns how many were freed."""
    chosen, cleared = _plan(sys, n, protect)
    for p in cleared:
        p.referenced = False
    for p in chosen:
        evict(sys, p)
    return len(chosen)


def evict(sys: OsState, page: Page) -> None:
    """Seed step 5: unmap the victim everywhere (rmap walk, TLB flush), write it back if
    dirty (file) or swap it out (anon, shmem), and free its frame."""
    locked = invariants.maps_locked(sys, page)
    if locked:                   # never allowed: memspec.inv.locked-resident reports it
        sys.locked_evictions.append(locked)
    for mm in sys.procs.values():
        # a piece of a huge page is reclaimed after the huge page is split into 4 KiB pages
        # (mm/vmscan.c shrink_folio_list: split_folio_to_list; the data stays, linux.thp.split-keeps-data)
        for base in {a & ~(HPAGE - 1) for a, t in mm.pte.items() if t.page is page} & mm.huge:
            sys.split_one(mm, base)
        for addr, t in list(mm.pte.items()):
            if t.page is page:
                zap_pte(sys, mm, addr)
                sys.stats["tlb_flushes"] += 1
        for addr in [a for a, t in mm.tlb.items() if t.page is page]:
            flush_tlb_page(mm, addr)
    sys.stats["evictions"] += 1
    sys.lru_del(page)
    if page.kind == "file":
        obj = sys.objects[page.obj]
        if page.dirty:
            writeback(sys, obj, page)
        obj.pages.pop(page.pgoff, None)
        sys.frames.free(page)
        return
    if page.kind == "anon" and page.lazyfree and not page.dirty:
        # MADV_FREE: a clean lazily-freed page is discarded, not swapped (reads zero afterwards)
        for mm in sys.procs.values():
            for addr in [a for a, p in mm.anon.items() if p is page]:
                del mm.anon[addr]
        sys.frames.free(page)
        return
    sys.frames.swap_alloc(page)
    sys.frames.free(page)
    sys.stats["swap_outs"] += 1


def writeback(sys: OsState, obj: MemObject, page: Page) -> None:
    tail = obj.size % PAGE_SIZE
    if obj.kind == "file" and tail and page.pgoff == obj.size // PAGE_SIZE and page.data is not None and \
            sys.config.eof_zero_on_write is True:
        # the page straddling i_size is zeroed past it on every writepage, in the page cache
        # (fs/ext4/page-io.c ext4_bio_write_folio, fs/buffer.c __block_write_full_folio:
        # "it may be mmapped"): bytes stored there through a mapping read 0 from then on
        # (clause linux.writeback.zeroes-eof-tail; a disk file system, which the fact
        # eof_zero_on_write says the target's folder is; otherwise access.py allows 0 any time)
        page.data[tail:] = bytes(PAGE_SIZE - tail)
    obj.disk[page.pgoff] = bytearray(page.data) if page.data is not None else bytearray(PAGE_SIZE)
    page.dirty = False
    sys.stats["writebacks"] += 1


def set_limits(sys: OsState, ram: int, swap: int) -> None:
    sys.frames.ram_pages = ram
    sys.frames.swap_pages = swap
    while sys.frames.used() > ram:
        if reclaim(sys, sys.frames.used() - ram) == 0:
            if out_of_memory(sys) is None:
                break


# --- the OOM killer ----------------------------------------------------------------

def badness(sys: OsState, mm: Mm) -> int:
    """mm/oom_kill.c oom_badness: rss + swap entries (page tables left out)."""
    rss = sum(1 for t in mm.pte.values() if t.page is not ZERO_PAGE)
    swapped = sum(1 for p in mm.anon.values() if p.pfn is None and p.swap is not None)
    return rss + swapped


def select_bad_process(sys: OsState) -> str | None:
    best, best_pts = None, -1
    for name, mm in sys.procs.items():      # creation order; ties go to the later process
        pts = badness(sys, mm)
        if pts >= best_pts:
            best, best_pts = name, pts
    return best


def out_of_memory(sys: OsState) -> str | None:
    victim = select_bad_process(sys)
    if victim is not None:
        sys.killed.append(victim)
        sys.release(victim)
        sys.stats["oom_kills"] += 1
    return victim


def oom_expect(sys: OsState) -> Expect:
    pts = {n: badness(sys, mm) for n, mm in sys.procs.items()}
    top = max(pts.values())
    worst = [sys.procs[n].pid for n, p in pts.items() if p == top]
    default = Outcome(value=worst[-1])
    if len(worst) == 1:
        return exactly("linux.oom.kills-worst", default)
    return Expect("linux.oom.kills-worst", default, " or ".join(str(w) for w in worst),
                  tuple(Outcome(value=w) for w in worst), impl_defined=True)


def oom_kill_pid(sys: OsState, pid: int) -> None:
    for name, mm in list(sys.procs.items()):
        if mm.pid == pid:
            sys.killed.append(name)
            sys.release(name)
            sys.stats["oom_kills"] += 1
            return


# --- working sets ----------------------------------------------------------------

def working_set(mm: Mm, tau: int) -> set[int]:
    """Denning's W(t, τ): pages referenced in the virtual-time window (t - τ, t]."""
    t = mm.vtime
    return {p for p, last in mm.last_ref.items() if t - last < tau}


# --- transparent huge pages -----------------------------------------------------------

def thp_eligible(sys: OsState, mm: Mm, v: Vma, base: int) -> bool:
    """mm/huge_memory.c thp_vma_allowable_order: private anonymous memory, THP 'always' or
    'madvise' with MADV_HUGEPAGE, never MADV_NOHUGEPAGE, and the whole aligned 2 MiB inside
    one VMA with the same flags."""
    mode = sys.config.thp
    if v.obj is not None or v.shared or v.huge is False or mode == "never":
        return False
    if mode == "madvise" and not v.huge:
        return False
    hit = mm.vmas.find(base)
    if hit is None or hit[2] != v:
        return False
    cov = base
    for s, e, w in mm.vmas.overlapping(base, base + HPAGE):
        if s > cov or w != v:
            return False
        cov = e
    return cov >= base + HPAGE


def materialize_huge(sys: OsState, mm: Mm, base: int, read: bool | None = None) -> None:
    """The kernel gave this range a huge page: every 4 KiB piece is now present.

    After read faults only (``read``; by default: no piece of the range holds data yet) the
    kernel maps the huge zero page there (mm/huge_memory.c do_huge_pmd_anonymous_page with
    transparent_hugepage/use_zero_page), and the first write anywhere in the range replaces it
    with a new huge page (do_huge_pmd_wp_page -> do_huge_zero_wp_pmd): every piece's frame
    changes then, so their frames are any frame (``pfn_loose``; measured on 6.18: pfn_of of a
    read page before and after a store to its neighbour differ)."""
    hit = mm.vmas.find(base)
    if hit is None:
        return
    v = hit[2]
    if read is None:
        read = not any(p in mm.anon or (p in mm.pte and mm.pte[p].page is not ZERO_PAGE)
                       for p in range(base, base + HPAGE, PAGE_SIZE))
    if fault_runs.lean(sys, mm) and fault_runs.huge_run(sys, mm, v, base, read):
        mm.huge.add(base)       # every piece made in one pass (model.fault_runs)
        mm.thp_maybe.discard(base)
        return
    for p in range(base, base + HPAGE, PAGE_SIZE):
        if p in mm.anon:
            continue
        t = mm.pte.get(p)
        page = Page("anon", t.page.copy_data() if t is not None and isinstance(t.page, Page) else None)
        if sys.frames.alloc(page, 0) is None:
            return
        page.mapcount = 1
        mm.anon[p] = page
        if read:
            sys.pfn_loose[id(page)] = (page, "linux.thp.fault-huge")
        sys.lru_add(page)
        if t is not None:
            zap_pte(sys, mm, p)
        mm.pte[p] = Pte(page, bool(v.prot & PROT_W))
        mm.maybe.discard(p)
    mm.huge.add(base)
    mm.thp_maybe.discard(base)


def collapse_candidates(sys: OsState, mm: Mm) -> list[int]:
    out = []
    for s, e, v in mm.vmas.items():
        base = (s + HPAGE - 1) & ~(HPAGE - 1)
        while base + HPAGE <= e:
            if base not in mm.huge and thp_eligible(sys, mm, v, base):
                pages = [mm.anon.get(p) for p in range(base, base + HPAGE, PAGE_SIZE)]
                present = [p for p in pages if p is not None]
                if present and all(p.mapcount == 1 and p.pfn is not None for p in present):
                    out.append(base)
            base += HPAGE
    return out


def collapse(sys: OsState, mm: Mm) -> int:
    """khugepaged's collapse_huge_page: copy the range into one new huge page (new frames),
    free the old pages, map it with one PMD."""
    done = 0
    for base in collapse_candidates(sys, mm):
        v = mm.vmas.find(base)[2]
        for p in range(base, base + HPAGE, PAGE_SIZE):
            old = mm.anon.get(p)
            new = Page("anon", old.copy_data() if old is not None else None)
            if sys.frames.alloc(new, 0) is None:
                return done
            new.mapcount = 1
            if old is not None:
                sys.drop_page(mm, p)
            else:
                zap_pte(sys, mm, p)
            mm.anon[p] = new
            sys.lru_add(new)
            mm.pte[p] = Pte(new, bool(v.prot & PROT_W))
            mm.maybe.discard(p)
        mm.huge.add(base)
        mm.thp_maybe.discard(base)
        sys.stats["thp_collapses"] += 1
        done += 1
    return done


# --- NUMA -------------------------------------------------------------------------------

def node_expect(sys: OsState, mm: Mm, addr: int) -> Expect:
    page = addr & ~(PAGE_SIZE - 1)
    hit = mm.vmas.find(page)
    if hit is None:
        return errno("linux.numa.move-pages-status", "EFAULT")
    t = mm.pte.get(page)
    if t is None or t.page is ZERO_PAGE or page in mm.maybe:
        outs = (Outcome(value=-1, errno="ENOENT"), Outcome(value=-1, errno="EFAULT"))
        if page in mm.maybe or (page & ~(HPAGE - 1)) in mm.thp_maybe:
            return Expect("linux.numa.move-pages-status", outs[0], "a node or ENOENT", predicate=lambda o: None,
                          impl_defined=True)
        return Expect("linux.numa.move-pages-status", outs[0], "ENOENT or EFAULT (not present)", outs,
                      impl_defined=True)
    node = t.page.node if isinstance(t.page, Page) else 0
    clause = {2: "linux.numa.bind", 1: "linux.numa.preferred", 3: "linux.numa.interleave"}.get(
        hit[2].policy[0], "linux.numa.first-touch")
    return exactly(clause, Outcome(value=node))


def mbind_expect(sys: OsState, mm: Mm, addr: int, length: int, mode: int, nodemask: int) -> Expect:
    # mm/mempolicy.c kernel_mbind -> sanitize_mpol_flags, do_mbind, mpol_new, mpol_set_nodemask
    if mode < 0 or mode >= 7:
        return errno("linux.numa.mbind-einval", "EINVAL")
    if addr & (PAGE_SIZE - 1):
        return errno("linux.numa.mbind-einval", "EINVAL")
    plen = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if addr + plen > (1 << 64) - 1:
        return errno("linux.numa.mbind-einval", "EINVAL")
    if plen == 0:
        return exactly("linux.numa.mbind-sets-policy", Outcome(value=0))
    online = nodemask & ((1 << sys.config.nodes) - 1)
    if mode == 0:
        if nodemask:
            return errno("linux.numa.mbind-einval", "EINVAL")
    elif not nodemask:
        if mode not in (1, 4):
            return errno("linux.numa.mbind-einval", "EINVAL")
    elif mode == 4:
        return errno("linux.numa.mbind-einval", "EINVAL")
    elif mode in (1, 2, 3, 5, 6) and not online:
        return errno("linux.numa.mbind-einval", "EINVAL")
    if mode == 0:
        # mm/mempolicy.c queue_pages_range: MPOL_DEFAULT drops MPOL_MF_STRICT, so holes are not
        # reported; a range with no VMA at all still is (qp.first == NULL -> -EFAULT)
        if not mm.vmas.any_overlap(addr, addr + plen):
            return errno("linux.numa.mbind-efault-hole", "EFAULT")
        return exactly("linux.numa.mbind-sets-policy", Outcome(value=0))
    if not mm.vmas.covers(addr, addr + plen):
        return errno("linux.numa.mbind-efault-hole", "EFAULT")
    return exactly("linux.numa.mbind-sets-policy", Outcome(value=0))


# --- frame numbers ---------------------------------------------------------------------

def pfn_expect(sys: OsState, mm: Mm, addr: int) -> Expect:
    """/proc/PID/pagemap: the frame of a present page.  The model knows which pages are the
    same page (COW-shared, one page-cache page) and which are different; the frame numbers
    themselves are the target's: the first one seen for a page is adopted."""
    page = addr & ~(PAGE_SIZE - 1)
    t = mm.pte.get(page)
    if t is None:
        if page in mm.maybe or (page & ~(HPAGE - 1)) in mm.thp_maybe or mm.vmas.find(page) is None \
                and False:
            return Expect("linux.pagemap.pfn", Outcome(value=0), "0 or a frame", predicate=_any_pfn,
                          impl_defined=True)
        if page in mm.maybe or (page & ~(HPAGE - 1)) in mm.thp_maybe:
            return Expect("linux.pagemap.pfn", Outcome(value=0), "0 or a frame", predicate=_any_pfn,
                          impl_defined=True)
        return exactly("linux.pagemap.not-present", Outcome(value=0))
    pg = t.page
    if pg is ZERO_PAGE:
        if (page & ~(HPAGE - 1)) in mm.thp_maybe or (page & ~(HPAGE - 1)) in mm.huge:
            return Expect("linux.pagemap.pfn", Outcome(value=ZERO_PFN), "a frame", predicate=_some_pfn,
                          impl_defined=True)
        known = sys.pfn_seen_zero
        if known:
            return exactly("linux.mmap.zero-page-shared", Outcome(value=known))
        return Expect("linux.mmap.zero-page-shared", Outcome(value=ZERO_PFN), "the zero page's frame",
                      predicate=_some_pfn, impl_defined=True)
    assert isinstance(pg, Page)
    loose = loose_clause(sys, pg)
    if loose is not None:
        return Expect(loose, Outcome(value=pg.pfn or 1),
                      "a frame (the kernel may have replaced it: a huge page made by MADV_COLLAPSE, or by the "
                      "first write to the huge zero page)", predicate=_some_pfn, impl_defined=True)
    clause = ("seed.cow.shared-until-write" if pg.kind == "anon" and pg.mapcount > 1 else
              "seed.cow.copy-on-write" if pg.kind == "anon" and pg.inherited else
              "posix.mmap.shared-one-frame" if pg.kind != "anon" else "linux.pagemap.pfn")
    seen = sys.pfn_of_page.get(id(pg))
    if seen is not None and seen[0] is pg:
        return exactly(clause, Outcome(value=seen[1]))
    taken = {pfn for pfn, p in sys.pfn_seen.items() if p is not pg and _live(sys, p)}

    def allowed(o: Outcome) -> str | None:
        if not o.ok or o.value is None or o.value <= 0:
            return f"expected a frame number, observed {o.describe()}"
        if o.value in taken:
            return f"frame {o.value:#x} already holds a different page (seen earlier)"
        if o.value == sys.pfn_seen_zero:
            return f"frame {o.value:#x} is the zero page, but this page was written"
        return None
    return Expect(clause, Outcome(value=pg.pfn or 1), "a frame no other live page holds", predicate=allowed,
                  impl_defined=True)


def _live(sys: OsState, p: Page) -> bool:
    if p.pfn is None:
        return False
    for mm in sys.procs.values():
        for t in mm.pte.values():
            if t.page is p:
                return True
    return False


def _any_pfn(o: Outcome) -> str | None:
    return None if o.ok and o.value is not None and o.value >= 0 else f"expected a frame or 0, observed {o.describe()}"


def _some_pfn(o: Outcome) -> str | None:
    return None if o.ok and o.value is not None and o.value > 0 else f"expected a frame, observed {o.describe()}"


def forget_frame(sys: OsState, pg: Page) -> None:
    """The target may have moved ``pg`` to another frame: the next pfn_of adopts it afresh."""
    sys.pfn_of_page.pop(id(pg), None)
    for pfn in [f for f, q in sys.pfn_seen.items() if q is pg]:
        del sys.pfn_seen[pfn]


def pfn_adopt(sys: OsState, mm: Mm, addr: int, o: Outcome) -> None:
    page = addr & ~(PAGE_SIZE - 1)
    t = mm.pte.get(page)
    if t is None or not o.ok or not o.value:
        return
    if t.page is ZERO_PAGE:
        if (page & ~(HPAGE - 1)) not in mm.thp_maybe and (page & ~(HPAGE - 1)) not in mm.huge:
            sys.pfn_seen_zero = o.value
        return
    pg = t.page
    if loose_clause(sys, pg) is not None:
        return          # its frame is not known to be one (MADV_COLLAPSE): never adopted
    for pfn in [f for f, p in sys.pfn_seen.items() if p is pg or not _live(sys, p)]:
        del sys.pfn_seen[pfn]
    sys.pfn_seen[o.value] = pg
    sys.pfn_of_page[id(pg)] = (pg, o.value)


def loose_clause(sys: OsState, pg: Page) -> str | None:
    """The clause that lets ``pg``'s frame be any frame (``OsState.pfn_loose``), or None.  The entry
    is the page's own, not one of a page that had its id before."""
    hit = sys.pfn_loose.get(id(pg))
    return hit[1] if hit is not None and hit[0] is pg else None
