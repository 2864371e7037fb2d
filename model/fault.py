"""The page-fault path as the seed's nine steps, each a named, testable function.

``do_page_fault`` runs them in order, as mm/memory.c and arch/x86/mm/fault.c do:

1. ``access_attempt``   -- the TLB, then the page table, are consulted (seed.fault.step1-access);
2. ``raise_fault``      -- a miss or a permission failure is a #PF with CR2 = the address
                           and an error code (P, W/R, U/S, I/D) (seed.fault.step2-pf-cr2);
3. ``classify``         -- minor (the page is in memory: zero fill, COW, page cache hit),
                           major (read from swap or the file), or invalid (SIGSEGV: no
                           mapping or no permission; SIGBUS: beyond the file's end)
                           (seed.fault.step3-classify);
4. ``alloc_frame``      -- a free frame, else the replacement policy's victim
                           (seed.fault.step4-frame, model.pressure.reclaim);
5. eviction             -- a dirty victim is written back (file) or swapped out (anon,
                           shmem) before its frame is reused (seed.fault.step5-evict);
6. ``load_page``        -- zero fill, COW copy, swap-in or file read into the frame
                           (seed.fault.step6-load);
7. ``set_pte``          -- present, R/W (read-only for COW and the zero page), U/S = user
                           (seed.fault.step7-pte);
8. ``flush_tlb_page``   -- any stale translation of the address is dropped (seed.fault.step8-tlb);
9. restart              -- the access runs again and now hits (seed.fault.step9-restart).

Faults are values: ``classify`` returns a ``FaultClass``; nothing here raises.
Worked example: ``a = mmap(…PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS…)``,
``load(a)`` is a minor fault mapping the zero page read-only; ``store(a, 1)`` is a
second minor fault (write-protect: ``do_wp_page`` copies into a fresh frame).
"""

from __future__ import annotations

from dataclasses import dataclass

from memspec.consts import PAGE_SIZE

from . import fault_runs, pressure
from .os.state import PAGE_MASK, PROT_R, PROT_W, PROT_X, Mm, OsState, Pte, Vma, flush_tlb_page, zap_pte
from .pages import ZERO_PAGE, Page
from .pte import EXEC, READ, WRITE, ErrCode
from .walk import PageFault      # one #PF record for the os and hw layers (error code, CR2, clause)

# The page-table entry and the two TLB operations belong to the state every part shares
# (model.os.state); they are the fault path's own vocabulary too, so they are named here.
__all__ = ["EXEC", "FaultClass", "PageFault", "Pte", "READ", "WRITE", "access_attempt", "alloc_frame", "classify",
           "do_page_fault", "flush_tlb_page", "load_page", "populate", "raise_fault", "set_pte", "vma_allows",
           "zap_pte"]


@dataclass(frozen=True, slots=True)
class FaultClass:
    """Step 3's verdict on a fault."""

    kind: str            # "minor", "major", "sigsegv", "sigbus"
    how: str             # "anon-zero", "anon-new", "wp-copy", "wp-reuse", "cache-hit", "cache-alloc",
                         # "file-read", "swap-in", "maperr", "accerr", "beyond-eof", "oom"
    clause: str


def vma_allows(v: Vma, kind: int) -> bool:
    """What the VMA's protection lets through on x86-64 (NX; write implies read; PKU exec-only)."""
    if kind == EXEC:
        return bool(v.prot & PROT_X)
    if kind == WRITE:
        return bool(v.prot & PROT_W)
    return bool(v.prot & (PROT_R | PROT_W)) or (bool(v.prot & PROT_X) and not v.exec_only)


# --- step 1 -----------------------------------------------------------------

def access_attempt(mm: Mm, v: Vma | None, page: int, kind: int) -> Pte | None:
    """Step 1: the translation the hardware would use now -- a TLB entry, else the PTE --
    if it permits this access; ``None`` means the access faults."""
    t = mm.tlb.get(page)
    if t is not None and (t.write if kind == WRITE else t.exec if kind == EXEC else t.read):
        return t       # a TLB hit: the walk (and so the VMA) is not consulted
    if v is None or not vma_allows(v, kind):
        return None
    t = mm.pte.get(page)
    if t is None or (kind == WRITE and not t.write):
        return None
    return t


# --- step 2 -----------------------------------------------------------------

def raise_fault(mm: Mm, addr: int, kind: int) -> PageFault:
    """Step 2: #PF with CR2 = addr; P set if a translation was present (a protection fault)."""
    page = addr & PAGE_MASK
    err = _U | (_W if kind == WRITE else 0) | (_ID if kind == EXEC else 0)
    if page in mm.pte:
        err |= _P
    return PageFault(err, addr, "seed.fault.step2-pf-cr2")


# --- step 3 -----------------------------------------------------------------

def classify(sys: OsState, mm: Mm, v: Vma | None, addr: int, kind: int) -> FaultClass:
    """Step 3: minor, major or invalid."""
    page = addr & PAGE_MASK
    if v is None:
        return _MAPERR
    if not vma_allows(v, kind):
        return _ACCERR
    if v.obj is not None:
        obj = sys.objects[v.obj]
        pgoff = v.pgoff(page)
        if pgoff >= obj.npages():
            # mm/filemap.c filemap_fault / mm/shmem.c: a page wholly past i_size is SIGBUS.
            return _BEYOND_EOF
    anon = mm.anon.get(page)
    if anon is not None:
        if anon.pfn is None:
            return _SWAP_IN
        if kind == WRITE:
            return _WP_COPY if anon.mapcount > 1 else _WP_REUSE
        return _MAP_PRESENT
    if v.obj is None:
        if kind == WRITE:
            return _ANON_NEW
        if page in mm.pte and mm.pte[page].page is ZERO_PAGE:
            return _ANON_NEW
        return _ANON_ZERO
    obj = sys.objects[v.obj]
    pgoff = v.pgoff(page)
    cached = obj.pages.get(pgoff)
    if cached is not None and cached.pfn is None:
        return _SWAP_IN
    if cached is None and obj.kind == "file":
        return _FILE_READ
    if not v.shared and kind == WRITE:
        return _PRIVATE_FILE_COW
    return _CACHE_HIT if cached is not None else _CACHE_ALLOC


# --- steps 4 and 5 ------------------------------------------------------------

def alloc_frame(sys: OsState, mm: Mm, page: Page, node: int) -> bool:
    """Step 4: a free frame for ``page``; when none is free, reclaim (step 5) and retry.
    False when nothing can be reclaimed (the OOM killer's case)."""
    if sys.frames.alloc(page, node) is not None:
        sys.stats["frames_allocated"] += 1
        return True
    if pressure.reclaim(sys, 1, protect=page) and sys.frames.alloc(page, node) is not None:
        sys.stats["frames_allocated"] += 1
        return True
    # RAM and swap exhausted: mm/oom_kill.c out_of_memory kills the worst process
    while sys.procs:
        victim = pressure.out_of_memory(sys)
        if victim is None or mm not in sys.procs.values():
            return False
        if sys.frames.alloc(page, node) is not None:
            sys.stats["frames_allocated"] += 1
            return True
    return False


# step 2's error code bits and step 3's verdicts, made once: an IntFlag's ``|`` is a Python call, and a
# FaultClass a frozen value (the same one serves every fault of its class)
_P, _W, _U, _ID = int(ErrCode.P), int(ErrCode.W), int(ErrCode.U), int(ErrCode.ID)
_MAPERR = FaultClass("sigsegv", "maperr", "posix.access.unmapped-sigsegv")
_ACCERR = FaultClass("sigsegv", "accerr", "seed.fault.step3-classify")
_BEYOND_EOF = FaultClass("sigbus", "beyond-eof", "posix.mmap.sigbus-beyond-eof")
_SWAP_IN = FaultClass("major", "swap-in", "seed.fault.step6-load")
_WP_COPY, _WP_REUSE = (FaultClass("minor", how, "seed.fault.cow-minor") for how in ("wp-copy", "wp-reuse"))
_MAP_PRESENT = FaultClass("minor", "map-present", "seed.fault.step3-classify")
_ANON_NEW = FaultClass("minor", "anon-new", "seed.fault.step3-classify")
_ANON_ZERO = FaultClass("minor", "anon-zero", "seed.fault.step3-classify")
_FILE_READ = FaultClass("major", "file-read", "seed.fault.major-file")
_PRIVATE_FILE_COW = FaultClass("minor", "wp-copy", "posix.mmap.private-file-cow")
_CACHE_HIT, _CACHE_ALLOC = (FaultClass("minor", how, "seed.fault.step3-classify") for how in ("cache-hit", "cache-alloc"))


# --- step 6 -----------------------------------------------------------------

def load_page(sys: OsState, mm: Mm, v: Vma, page_addr: int, fc: FaultClass, kind: int) -> object | None:
    """Step 6: make the page's contents present in a frame; returns the page to map
    (``None`` when no frame could be had)."""
    node = pressure.policy_node(sys, v, page_addr)
    if fc.how == "anon-zero":
        return ZERO_PAGE
    if fc.how == "anon-new":
        p = Page("anon", lru_seq=sys.next_seq())
        if not alloc_frame(sys, mm, p, node):
            return None
        p.mapcount = 1
        mm.anon[page_addr] = p
        sys.lru_add(p)
        return p
    if fc.how in ("wp-copy", "wp-reuse", "map-present", "swap-in") and page_addr in mm.anon:
        old = mm.anon[page_addr]
        if fc.how == "swap-in":
            if not alloc_frame(sys, mm, old, node):
                return None
            sys.frames.swap_free(old)
            sys.lru_add(old)
            sys.stats["swap_ins"] += 1
            if kind != WRITE or old.mapcount == 1:
                return old
        if kind == WRITE and old.mapcount > 1:
            new = Page("anon", old.copy_data(), lru_seq=sys.next_seq())
            if not alloc_frame(sys, mm, new, node):
                return None
            old.mapcount -= 1
            new.mapcount = 1
            mm.anon[page_addr] = new
            sys.lru_add(new)
            sys.stats["cow_copies"] += 1
            return new
        if kind == WRITE and old.inherited:
            # mm/memory.c wp_can_reuse_anon_folio: a page once COW-shared is reused only while no
            # other reference is held; a passing one (a per-CPU LRU batch of another CPU, which
            # lru_add_drain does not drain) makes the kernel copy instead.  The model keeps the
            # page; its frame is any frame no other live page holds (seed.cow.copy-on-write)
            pressure.forget_frame(sys, old)
        return old
    # page cache (shmem or file)
    obj = sys.objects[v.obj]
    pgoff = v.pgoff(page_addr)
    cp = obj.pages.get(pgoff)
    if cp is None:
        cp = Page(obj.kind if obj.kind == "file" else "shmem", obj=obj.id, pgoff=pgoff, lru_seq=sys.next_seq())
        if obj.kind == "file" and pgoff in obj.disk:
            cp.data = bytearray(obj.disk[pgoff])
        if obj.kind == "file":
            sys.stats["file_reads"] += 1
            # mm/readahead.c: a read from the file may bring in its neighbours as well
            obj.uncertain |= {p for p in range(obj.npages()) if p not in obj.pages and p != pgoff}
        if not alloc_frame(sys, mm, cp, node):
            return None
        obj.pages[pgoff] = cp
        sys.lru_add(cp)
    elif cp.pfn is None:
        if not alloc_frame(sys, mm, cp, node):
            return None
        sys.frames.swap_free(cp)
        sys.lru_add(cp)
        sys.stats["swap_ins"] += 1
    if not v.shared and kind == WRITE:
        new = Page("anon", cp.copy_data(), lru_seq=sys.next_seq())
        if not alloc_frame(sys, mm, new, node):
            return None
        new.mapcount = 1
        mm.anon[page_addr] = new
        sys.lru_add(new)
        sys.stats["cow_copies"] += 1
        return new
    return cp


# --- steps 7 and 8 ------------------------------------------------------------

def set_pte(sys: OsState, mm: Mm, v: Vma, page_addr: int, page: object, kind: int) -> None:
    """Step 7: install a present PTE.  Writable only where a write may go straight to the
    page: never the zero page, never a page still shared copy-on-write, never a page-cache
    page under a private mapping."""
    old = mm.pte.get(page_addr)
    if old is not None and old.page is not page:
        zap_pte(sys, mm, page_addr)
    write = bool(v.prot & PROT_W) and page is not ZERO_PAGE and (
        v.shared or (isinstance(page, Page) and page.kind == "anon" and page.mapcount == 1))
    if old is None or old.page is not page:
        if isinstance(page, Page) and page.kind != "anon":
            page.mapcount += 1
    mm.pte[page_addr] = Pte(page, write)
    mm.maybe.discard(page_addr)
    mm.flushed.discard(page_addr)


# --- the whole path -------------------------------------------------------------

def do_page_fault(sys: OsState, mm: Mm, v: Vma | None, addr: int, kind: int) -> FaultClass | None:
    """Run steps 1-9 for one access; ``None`` when the access hit without a fault.
    Counts the fault (minor or major) against ``mm`` (getrusage ru_minflt / ru_majflt)."""
    page_addr = addr & PAGE_MASK
    if access_attempt(mm, v, page_addr, kind) is not None:          # step 1
        return None
    pf = raise_fault(mm, addr, kind)                                 # step 2
    sys.last_fault = pf
    fc = classify(sys, mm, v, addr, kind)                            # step 3
    if fc.kind in ("sigsegv", "sigbus"):
        sys.stats["faults_invalid"] += 1
        return fc
    assert v is not None
    certain = page_addr not in mm.maybe
    if fc.how in ("wp-copy", "wp-reuse") and page_addr in mm.anon and mm.anon[page_addr].inherited:
        mm.cow_faults += 1
    if v.obj is not None and v.pgoff(page_addr) in sys.objects[v.obj].uncertain:
        sys.objects[v.obj].uncertain.discard(v.pgoff(page_addr))
        certain = False
    loaded = load_page(sys, mm, v, page_addr, fc, kind)              # steps 4, 5, 6
    if loaded is None:
        return FaultClass("sigkill", "oom", "linux.oom.kills-worst")
    set_pte(sys, mm, v, page_addr, loaded, kind)                     # step 7
    flush_tlb_page(mm, page_addr)                                    # step 8
    if fc.kind == "major" and not certain:
        mm.minflt_maybe += 1          # the target may have kept the page: minor or major
        sys.stats["faults_major"] += 1
    elif fc.kind == "major":
        mm.majflt += 1
        sys.stats["faults_major"] += 1
    else:
        sys.stats["faults_minor"] += 1
        if certain:
            mm.minflt += 1
        else:
            mm.minflt_maybe += 1
    sys.stats["fault_" + fc.how] = sys.stats.get("fault_" + fc.how, 0) + 1
    # step 9: restart -- the access now hits (a second fault here would be a model bug)
    t = access_attempt(mm, v, page_addr, kind)
    if t is None and kind == WRITE:
        # a read-only translation after a write fault can only be a COW page: resolve again
        return do_page_fault(sys, mm, v, addr, kind)
    return fc


# --- a range at once -------------------------------------------------------------

def populate(sys: OsState, mm: Mm, start: int, end: int) -> None:
    """mm/gup.c populate_vma_page_range: fault every page in; private writable mappings
    with a write fault (to break COW), others with a read fault; PROT_NONE is skipped and
    a page past the file's end stops nothing (errors are ignored).

    A page read from the file drops the mmap lock for the I/O (VM_FAULT_RETRY, not counted);
    __mm_populate then retakes it and faults again without FAULT_FLAG_TRIED, finding the page
    cached: so the kernel counts such a load as a minor fault, or (without the retry) a major
    one.  The model counts it as a fault that may be minor, never as a sure major fault."""
    majflt = mm.majflt
    runs = fault_runs.lean(sys, mm)
    for s, e, v in list(mm.mapped_pages(start, end)):
        if not v.prot & (PROT_R | PROT_W | PROT_X) or v.exec_only:
            continue
        kind = WRITE if (v.prot & PROT_W and not v.shared) else READ
        page, run = s, runs and v.obj is None
        while page < e:
            if run:         # a run of fresh private pages in one pass (model.fault_runs), then one page
                page = fault_runs.anon_run(sys, mm, v, page, e, kind if kind != READ or v.prot & (PROT_R | PROT_W) else EXEC)
                if page >= e:
                    break
            if not _populate_one(sys, mm, page, kind):
                break
            page += PAGE_SIZE
    if mm.majflt > majflt:
        mm.minflt_maybe += mm.majflt - majflt
        mm.majflt = majflt


def _populate_one(sys: OsState, mm: Mm, page: int, kind: int) -> bool:
    """One page of ``populate`` through the whole fault path; False where populate stops in this
    VMA (the page is no longer mapped, or the process was killed)."""
    hit = mm.vmas.find(page)
    if hit is None:
        return False
    if page in mm.guard:
        return True      # a guard marker: the fault fails, and populate ignores errors
    fc = do_page_fault(sys, mm, hit[2], page, kind if kind != READ or hit[2].prot & (PROT_R | PROT_W) else EXEC)
    return fc is None or fc.kind != "sigkill"
