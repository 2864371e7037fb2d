"""Faults in runs: a range faulted in page after page, done a run of like pages at a time.

``model.fault.populate`` (mm/gup.c populate_vma_page_range: mlock, MAP_POPULATE, MAP_LOCKED,
mlockall, mremap of a locked range), MADV_POPULATE_(READ|WRITE) and a huge page made of 512
base pages (``model.pressure.materialize_huge``) each run the fault path once a page.  Where the
pages of a range all get the same treatment the run here does them in one loop and leaves exactly
the state the page-by-page path leaves: the same frames in the same order, the same LRU order and
sequence numbers, the same counters and fault statistics, the same PTEs, private pages and
footprint records (``model.os.footprint``), the same last #PF.

A run is a stretch of one private anonymous VMA whose pages have no PTE, no private page, no TLB
entry and no guard marker (seed.fault.step3-classify: each is then "anon-new" for a write fault,
"anon-zero" for a read or fetch), with a free frame for each new page (seed.fault.step4-frame: no
reclaim, no OOM kill).  Anything else -- a page with state of its own, a page-cache mapping, a
fault the VMA does not allow, the frames running out, a model whose LRU, sequence or tables are
not the plain ones (a subclass) -- is left to the page-by-page path, which the caller runs from
where the run stopped.

Worked example: ``mlock(a, 64 KiB)`` of fresh writable private memory allocates 16 frames, adds
16 pages to the LRU (two sequence numbers each, as ``load_page`` and ``lru_add`` take them) and
maps them writable, counting 16 certain minor faults, in one pass.
"""

from __future__ import annotations

from memspec.consts import PAGE_SIZE

from .os.footprint import PageTable
from .os.state import HPAGE, PROT_R, PROT_W, PROT_X, Mm, OsState, Pte, Vma, policy_node
from .pages import ZERO_PAGE, FrameTable, Page
from .pte import EXEC, WRITE, ErrCode
from .walk import PageFault

_U, _W, _ID = int(ErrCode.U), int(ErrCode.W), int(ErrCode.ID)
_PF_CLAUSE = "seed.fault.step2-pf-cr2"
_HUGE_CLAUSE = "linux.thp.fault-huge"


def lean(sys: OsState, mm: Mm) -> bool:
    """Whether a run may stand for the page-by-page path here: the state's own LRU, sequence and
    frame table, and page tables that are the footprint's (a model overriding any of them, or a
    page table replaced behind the footprint's back, takes the plain path)."""
    cls = type(sys)
    return (cls.lru_add is OsState.lru_add and cls.next_seq is OsState.next_seq
            and type(sys.frames) is FrameTable and type(mm.anon) is PageTable
            and type(mm.pte) is PageTable and type(mm.tlb) is PageTable)


def free_frames(sys: OsState) -> int:
    """The frames ``FrameTable.alloc`` hands out before it finds RAM full (then the fault path
    reclaims, or the OOM killer runs)."""
    return sys.frames.ram_pages - len(sys.frames.owner)


def _allows(v: Vma, kind: int) -> bool:
    """model.fault.vma_allows."""
    if kind == EXEC:
        return bool(v.prot & PROT_X)
    if kind == WRITE:
        return bool(v.prot & PROT_W)
    return bool(v.prot & (PROT_R | PROT_W)) or (bool(v.prot & PROT_X) and not v.exec_only)


def fresh_end(mm: Mm, start: int, end: int) -> int:
    """The end of the stretch from ``start`` (up to ``end``) of pages without a PTE, a private
    page, a TLB entry or a guard marker."""
    pte, anon, tlb, guard = mm.pte, mm.anon, mm.tlb, mm.guard
    if not (pte or anon or tlb or guard):
        return end
    p = start
    while p < end and p not in pte and p not in anon and p not in tlb and p not in guard:
        p += PAGE_SIZE
    return p


def anon_run(sys: OsState, mm: Mm, v: Vma, start: int, end: int, kind: int) -> int:
    """Fault in the fresh pages of the private anonymous VMA ``v`` from ``start`` as
    ``do_page_fault(sys, mm, v, page, kind)`` does one page at a time; the address where the run
    stopped (``start`` when it did nothing: the caller's page-by-page path goes on from there)."""
    if v.obj is not None or not _allows(v, kind):
        return start
    if kind == WRITE:       # a frame for each new page, else reclaim (the page-by-page path)
        end = min(end, start + free_frames(sys) * PAGE_SIZE)
    stop = fresh_end(mm, start, end)
    if stop <= start:
        return start
    pages = range(start, stop, PAGE_SIZE)
    _count(sys, mm, pages, "fault_anon-new" if kind == WRITE else "fault_anon-zero")
    if kind == WRITE:
        _anon_new(sys, mm, v, pages)
    else:
        _anon_zero(mm, pages)
    last = stop - PAGE_SIZE
    sys.last_fault = PageFault(_U | (_W if kind == WRITE else 0) | (_ID if kind == EXEC else 0), last, _PF_CLAUSE)
    return stop


def _count(sys: OsState, mm: Mm, pages: range, how: str) -> None:
    """Steps 2-3's counters for a run of minor faults: a page the model could not know the PTE of
    (``mm.maybe``) counts as a fault that may have happened; ``maybe`` and ``flushed`` forget them."""
    n = len(pages)
    maybe = mm.maybe
    unsure = sum(1 for p in pages if p in maybe) if maybe else 0
    stats = sys.stats
    stats["faults_minor"] += n
    stats[how] = stats.get(how, 0) + n
    mm.minflt += n - unsure
    mm.minflt_maybe += unsure
    if unsure:
        maybe.difference_update(pages)
    if mm.flushed:
        mm.flushed.difference_update(pages)


def _frames(sys: OsState, n: int) -> list[int]:
    """The frames ``n`` calls of ``FrameTable.alloc`` would hand out, in order, taken."""
    frames = sys.frames
    free = frames._free
    k = min(n, len(free))
    pfns = free[len(free) - k:][::-1]
    del free[len(free) - k:]
    nxt = frames._next
    pfns.extend(range(nxt, nxt + n - k))
    frames._next = nxt + n - k
    return pfns


def _nodes(sys: OsState, v: Vma, pages: range) -> list[int] | int:
    """The node of each new page (model.os.state.policy_node, modulo the frame table's nodes):
    one for the whole run but under MPOL_INTERLEAVE, which places each page by its offset."""
    count = sys.frames.nodes
    if v.policy[0] == 3:
        return [policy_node(sys, v, p) % count for p in pages]
    return policy_node(sys, v, pages[0]) % count


def _anon_new(sys: OsState, mm: Mm, v: Vma, pages: range) -> None:
    """load_page's "anon-new" then set_pte for each page: a new page (a sequence number), its
    frame (frames_allocated), mapcount 1, the private page, the LRU (another sequence number,
    referenced), a writable PTE (flush_tlb_page: nothing cached, nothing to drop)."""
    n = len(pages)
    pfns = _frames(sys, n)
    node = _nodes(sys, v, pages)
    seq = sys.seq
    if isinstance(node, int):
        new = [Page("anon", None, pfn, 1, False, True, None, None, 0, node, seq + 2 * i + 2, False, False, 1, 1)
               for i, pfn in enumerate(pfns)]
    else:
        new = [Page("anon", None, pfn, 1, False, True, None, None, 0, nd, seq + 2 * i + 2, False, False, 1, 1)
               for i, (pfn, nd) in enumerate(zip(pfns, node))]
    sys.seq = seq + 2 * n
    frames = sys.frames
    frames.owner.update(zip(pfns, new))
    frames.touched.update(new)
    sys.stats["frames_allocated"] += n
    _map(mm, pages, new, [Pte(p, True) for p in new])
    sys.on_lru.update(map(id, new))
    sys.lru.extend(new)


def _anon_zero(mm: Mm, pages: range) -> None:
    """load_page's "anon-zero" then set_pte: the zero page mapped read-only at each page."""
    pte = mm.pte
    dict.update(pte, [(p, Pte(ZERO_PAGE, False)) for p in pages])
    pte.addrs.update(pages)


def _map(mm: Mm, pages: range | list[int], new: list[Page], ptes: list[Pte]) -> None:
    """``mm.anon[p] = page`` then ``mm.pte[p] = pte`` for each, as the footprint's tables record
    them: for fresh addresses and new pages whose ``refs`` and ``ptes`` already count these."""
    anon, pte = mm.anon, mm.pte
    dict.update(anon, zip(pages, new))
    anon.pages.update(new)
    anon.addrs.update(pages)
    dict.update(pte, zip(pages, ptes))
    pte.pages.update(new)
    pte.addrs.update(pages)


def huge_run(sys: OsState, mm: Mm, v: Vma, base: int, read: bool) -> bool:
    """materialize_huge's loop over the 2 MiB at ``base`` in one pass, where every page without a private
    page also has no PTE and a frame is free for each: a new page a piece (no sequence number of
    its own, node 0), mapcount 1, loose frames after read faults, the LRU, a PTE writable with the
    VMA.  False (nothing done) where that does not hold: the caller's loop runs instead."""
    anon = mm.anon
    pages = [p for p in range(base, base + HPAGE, PAGE_SIZE) if p not in anon]
    if not _unmapped(mm, pages) or len(pages) > free_frames(sys):
        return False
    n = len(pages)
    pfns = _frames(sys, n)
    seq = sys.seq
    new = [Page("anon", None, pfn, 1, False, True, None, None, 0, 0, seq + i + 1, False, False, 1, 1)
           for i, pfn in enumerate(pfns)]
    sys.seq = seq + n
    frames = sys.frames
    frames.owner.update(zip(pfns, new))
    frames.touched.update(new)
    if read:
        sys.pfn_loose.update((id(p), (p, _HUGE_CLAUSE)) for p in new)
    write = bool(v.prot & PROT_W)
    _map(mm, pages, new, [Pte(p, write) for p in new])
    sys.on_lru.update(map(id, new))
    sys.lru.extend(new)
    if mm.maybe:
        mm.maybe.difference_update(pages)
    return True


def _unmapped(mm: Mm, pages: list[int]) -> bool:
    """No PTE at any of ``pages`` (a zero page or a page-cache page mapped there would be copied and
    zapped: the page-by-page loop's work)."""
    pte = mm.pte
    return not any(p in pte for p in pages)
