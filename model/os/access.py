"""The rules of the memory accesses: load, store, fetch.

An access the translation allows hits (seed step 1); any other runs the fault path of
``model.fault`` (steps 2-9), and the rule names the step or promise the outcome rests on: a
value read from a private copy, a shared object, a file or a zero page; SIGSEGV for no
mapping or no permission (x86-64: write implies read, NX, an execute-only protection key);
SIGBUS past a file's end; SIGKILL when only the OOM killer could find the frame.

Worked example: after ``a = mmap(…PROT_READ…MAP_PRIVATE|MAP_ANONYMOUS…)``, ``load(a)`` is 0
(``posix.mmap.prot-read``, a minor fault mapping the zero page) and ``store(a, 1)`` is
SIGSEGV (``posix.mmap.prot-enforced-write``).
"""

from __future__ import annotations

from memspec.consts import PAGE_SIZE
from memspec.records import OK, Outcome

from .. import fault, pressure
from ..expect import Expect, exactly
from ..pages import Page
from ..rules import Rule
from ..pte import EXEC, READ, WRITE
from .state import HPAGE, PAGE_MASK, PROT_R, PROT_W, PROT_X, Mm, OsState, Pte, Vma

MAX_INSN = 15          # Intel SDM Vol. 2A §2.1: an instruction is at most 15 bytes long
FAULT_AROUND = 16      # mm/memory.c fault_around_bytes = 64 KiB: pages mapped around a file read fault


def _oom_predict(sys: OsState, mm: Mm, v: Vma, page: int, kind: int, fc: fault.FaultClass) -> Outcome | None:
    """Would this fault need a frame that only the OOM killer can free, and kill us?"""
    needs = fc.how in ("anon-new", "wp-copy", "swap-in", "cache-alloc", "file-read") or (
        fc.how == "cache-hit" and kind == WRITE and not v.shared)
    if fc.how == "wp-copy" and page in mm.anon and mm.anon[page].mapcount <= 1:
        needs = False
    if not needs or sys.frames.free_count() > 0 or pressure.can_reclaim(sys):
        return None
    victim = pressure.select_bad_process(sys)
    if victim is None or sys.procs.get(victim) is mm:
        return Outcome(signal="SIGKILL")
    return None


def expect_load(sys: OsState, mm: Mm, addr: int) -> Expect:
    return _expect_access(sys, mm, addr, READ)


def _stack_above(sys: OsState, mm: Mm, page: int) -> tuple[int, int, Vma] | None:
    """The MAP_GROWSDOWN mapping a fault at ``page`` (mapped by nothing) may grow down to it:
    the next mapping above, if it grows down (arch/x86/mm/fault.c do_user_addr_fault ->
    mm/memory.c lock_mm_and_find_vma -> mm/mmap.c expand_stack_locked)."""
    if page < sys.config.mmap_min_addr:
        return None          # expand_downwards: an address below mmap_min_addr is refused
    nxt = mm.vmas.next_after(page)
    return nxt if nxt is not None and nxt[2].growsdown else None


def _grow_stack(sys: OsState, mm: Mm, addr: int) -> tuple[int, int, Vma] | None:
    """An access below a MAP_GROWSDOWN mapping that the target reported as done: the mapping
    grew down to the page (expand_downwards: vm_start = the page, vm_pgoff moved with it)."""
    stack = _stack_above(sys, mm, addr & PAGE_MASK)
    if stack is None:
        return None
    s, e, v = stack
    mm.vmas.set(addr & PAGE_MASK, e, v)
    return mm.vmas.find(addr)


def _expect_access(sys: OsState, mm: Mm, addr: int, kind: int) -> Expect:
    page = addr & PAGE_MASK
    hit = mm.vmas.find(addr)
    v = hit[2] if hit else None
    if v is None and page not in mm.flushed and _stack_above(sys, mm, page) is not None:
        # mm/mmap.c expand_downwards / acct_stack_growth: the fault grows the stack mapping down to
        # the page, unless the stack guard gap to the mapping below (stack_guard_gap, a boot
        # parameter), RLIMIT_STACK, RLIMIT_AS, the lock limit or overcommit refuse it (SIGSEGV)
        return Expect("linux.mmap.growsdown-expands", Outcome(signal="SIGSEGV"),
                      "the mapping grows down to the page and the access is made there, or SIGSEGV",
                      unknown=True)
    if v is not None and page in mm.guard:
        # mm/memory.c handle_pte_marker: a guard marker (MADV_GUARD_INSTALL) faults SIGSEGV
        return exactly("linux.madvise.guard-install", Outcome(signal="SIGSEGV"))
    t = fault.access_attempt(mm, v, page, kind)
    if t is None:
        fc = fault.classify(sys, mm, v, addr, kind)
        if fc.kind == "sigsegv" and kind == EXEC and v is not None and fault.vma_allows(v, READ):
            # arch/x86/mm/fault.c access_error has no exec check for a page not present:
            # the fault is handled first (SIGBUS past a file's end), NX faults on the retry
            fc2 = fault.classify(sys, mm, v, addr, READ)
            if fc2.kind == "sigbus":
                fc = fc2
        if fc.kind == "sigsegv":
            return _segv_expect(sys, v, kind, mm, page)
        if fc.kind == "sigbus":
            return exactly(fc.clause if kind == READ else "seed.fault.step3-classify", Outcome(signal="SIGBUS"))
        assert v is not None
        killed = _oom_predict(sys, mm, v, page, kind, fc)
        if killed is not None:
            return exactly("linux.oom.kills-worst", killed)
    if v is None or not fault.vma_allows(v, kind):
        # only a stale TLB entry gets here (an implementation that skipped a flush)
        value = t.page.byte(addr & (PAGE_SIZE - 1)) if t is not None and kind == READ else None
        return exactly("seed.fault.step8-tlb", Outcome(value=value))
    if kind == EXEC:
        if (addr & (PAGE_SIZE - 1)) > PAGE_SIZE - MAX_INSN:
            nxt = mm.vmas.find(page + PAGE_SIZE)
            if nxt is None or not fault.vma_allows(nxt[2], EXEC):
                # the instruction at addr may run onto the next page, which cannot be fetched:
                # whether it does depends on the bytes there
                return Expect("linux.x86.fetch-crosses-page", OK, "ok, or SIGSEGV if the instruction crosses",
                              (OK, Outcome(signal="SIGSEGV")), impl_defined=True)
        return exactly("posix.mmap.prot-exec", OK)
    if kind == WRITE:
        return exactly(_store_clause(sys, mm, v, page, t), OK)
    value = t.page.byte(addr & (PAGE_SIZE - 1)) if t is not None else _read(sys, mm, v, addr)
    if not v.prot & (PROT_R | PROT_W):
        # PROT_EXEC alone on a CPU without PKU: the page table entry is readable
        return exactly("linux.x86.exec-implies-read", Outcome(value=value))
    clause = _content_clause(sys, mm, v, addr) if v.prot & PROT_R else "linux.x86.write-implies-read"
    if v.prot & (PROT_R | PROT_W) == PROT_R and clause == "linux.mmap.anon-zero-fill":
        clause = "posix.mmap.prot-read"
    if t is None and v.obj is not None and v.shared and page not in mm.maybe and clause in (
            "posix.mmap.shared-visible", "posix.mmap.file-contents") and \
            fault.classify(sys, mm, v, addr, READ).how == "cache-hit":
        clause = "seed.fault.step9-restart"
    if (page & ~(HPAGE - 1)) in mm.thp_split and clause == "posix.mmap.private-contents":
        clause = "linux.thp.split-keeps-data"
    if value and page not in mm.anon and _past_eof_in_cache(sys, v, addr):
        # bytes stored past the end of a disk file, in the page that straddles it: any writeback
        # of that page zeroes them (msync(MS_SYNC), fsync, the flusher or reclaim, whenever they
        # run), so a load reads them or 0
        return Expect(WRITEBACK_TAIL, Outcome(value=value), f"{value} or 0",
                      (Outcome(value=value), Outcome(value=0)), impl_defined=True)
    lazy = mm.anon.get(page)
    if lazy is not None and lazy.lazyfree and value:
        # MADV_FREE: until the next write the kernel may have freed the page (reads 0)
        return Expect("linux.madvise.free-lazy", Outcome(value=value), f"{value} or 0",
                      (Outcome(value=value), Outcome(value=0)), impl_defined=True)
    return exactly(clause, Outcome(value=value))


def _store_clause(sys: OsState, mm: Mm, v: Vma | None, page: int, t: Pte | None) -> str:
    """Which step of the fault path a successful store rests on (all allow only 'ok')."""
    assert v is not None
    if page in mm.maybe or (page & ~(HPAGE - 1)) in mm.thp_maybe:
        return "posix.mmap.prot-write"
    if t is not None:
        return "seed.fault.step1-access"
    fc = fault.classify(sys, mm, v, page, WRITE)
    return {"anon-new": "seed.fault.step4-frame", "wp-copy": "seed.cow.copy-on-write",
            "wp-reuse": "seed.fault.step7-pte", "swap-in": "seed.fault.step6-load",
            "file-read": "seed.fault.major-file"}.get(fc.how, "posix.mmap.prot-write") \
        if not (v.obj is not None and not v.shared and fc.how == "wp-copy") else "posix.mmap.private-file-cow"


def _segv_expect(sys: OsState, v: Vma | None, kind: int, mm: Mm | None = None, page: int = 0) -> Expect:
    if mm is not None and page in mm.flushed and (v is None or kind == WRITE):
        # the page had a translation that munmap/mprotect took away: a stale TLB entry would let this through
        return exactly("seed.fault.step8-tlb", Outcome(signal="SIGSEGV"))
    if v is None:
        # a fetch probe checks the #PF itself: at CR2 = the address, with the I/D bit
        return exactly("seed.fault.step2-pf-cr2" if kind == EXEC else "posix.access.unmapped-sigsegv",
                       Outcome(signal="SIGSEGV"))
    if kind == EXEC:
        return exactly("linux.x86.nx-enforced", Outcome(signal="SIGSEGV"))
    if v.prot == 0:
        return exactly("posix.mmap.prot-none-sigsegv", Outcome(signal="SIGSEGV"))
    if kind == WRITE:
        return exactly("posix.mmap.prot-enforced-write", Outcome(signal="SIGSEGV"))
    # a read of PROT_EXEC-only memory under PKU (Vma.exec_only): the execute-only key's
    # PKRU bits deny it (SEGV_PKUERR); without PKU the read succeeds and never gets here
    return exactly("linux.x86.exec-only-pkey", Outcome(signal="SIGSEGV"))


def _content_clause(sys: OsState, mm: Mm, v: Vma, addr: int) -> str:
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
        obj = sys.objects[v.obj]
        pgoff = v.pgoff(page)
        if obj.kind == "anon-shared":
            return "posix.mmap.shared-visible" if obj.pages.get(pgoff) is not None and \
                obj.pages[pgoff].data is not None else "linux.mmap.anon-zero-fill"
        off_in_file = pgoff * PAGE_SIZE + (addr & (PAGE_SIZE - 1))
        if off_in_file >= obj.size:
            # a byte stored there and zeroed by a writeback rests on the writeback's rule
            wb = obj.kind == "file" and pgoff in obj.disk and obj.pages.get(pgoff) is not None and \
                not obj.pages[pgoff].dirty
            return WRITEBACK_TAIL if wb else "posix.mmap.partial-page-zero"
        if pgoff not in obj.pages and pgoff in obj.disk:
            return "seed.fault.step6-load"     # evicted, read back from the file
        return "posix.mmap.file-contents" if v.shared else "posix.mmap.private-file-reads-file"
    return "linux.mmap.anon-zero-fill"


WRITEBACK_TAIL = "linux.writeback.zeroes-eof-tail"


def _past_eof_in_cache(sys: OsState, v: Vma, addr: int) -> bool:
    """Whether ``addr`` maps a byte past the end of a regular file (open_file), in the page that
    straddles the end: a byte that writeback zeroes (the page cache page, not a private copy)."""
    if v.obj is None:
        return False
    obj = sys.objects[v.obj]
    tail = obj.size % PAGE_SIZE
    return obj.kind == "file" and bool(tail) and v.pgoff(addr & PAGE_MASK) == obj.size // PAGE_SIZE and \
        (addr & (PAGE_SIZE - 1)) >= tail


def _read(sys: OsState, mm: Mm, v: Vma, addr: int) -> int:
    page, off = addr & PAGE_MASK, addr & (PAGE_SIZE - 1)
    p = mm.anon.get(page)
    if p is not None:
        return p.byte(off)
    if v.obj is not None:
        obj = sys.objects[v.obj]
        pgoff = v.pgoff(page)
        cp = obj.pages.get(pgoff)
        if cp is not None:
            return cp.byte(off)
        d = obj.disk.get(pgoff)
        return d[off] if d is not None else 0
    return 0


def _touch(sys: OsState, mm: Mm, addr: int) -> None:
    mm.vtime += 1
    mm.last_ref[addr & PAGE_MASK] = mm.vtime


def _access(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, kind: int) -> Pte | None:
    """Run the fault path for an access the target reported as done; returns the translation used."""
    if o.signal is not None and o.signal != "SIGKILL":
        hit = mm.vmas.find(addr)
        if hit is not None and addr & PAGE_MASK in mm.guard:
            return None         # a guard marker stays; nothing is faulted in
        fault.do_page_fault(sys, mm, hit[2] if hit else None, addr, kind)
        return None
    hit = mm.vmas.find(addr) or _grow_stack(sys, mm, addr)
    if hit is None:
        return None
    v = hit[2]
    page = addr & PAGE_MASK
    _thp_fault(sys, mm, v, page, kind)
    fc = fault.do_page_fault(sys, mm, v, addr, kind)
    if fc is not None and fc.kind == "sigkill":
        return None
    if proc not in sys.procs:
        return None
    if fc is not None and kind != WRITE and v.obj is not None:
        _fault_around(sys, mm, v, page)
    _touch(sys, mm, addr)
    t = mm.tlb.get(page) or mm.pte.get(page)
    if t is not None:
        if page not in mm.tlb:
            mm.tlb[page] = Pte(t.page, t.write, fault.vma_allows(v, READ), bool(v.prot & PROT_X))
        t = mm.tlb[page]
        if isinstance(t.page, Page):
            t.page.referenced = True
    return t


def _fault_around(sys: OsState, mm: Mm, v: Vma, page: int) -> None:
    """mm/memory.c do_fault_around: a read fault on a file or shmem page also maps the
    neighbours already in the page cache (a 64 KiB aligned window inside the VMA and the
    file), without faults of their own.  The model cannot know which the kernel maps,
    so their PTEs become unknown."""
    obj = sys.objects[v.obj]
    lo = page & ~(PAGE_SIZE * FAULT_AROUND - 1)
    for p in range(lo, lo + PAGE_SIZE * FAULT_AROUND, PAGE_SIZE):
        if p == page or p in mm.pte or p in mm.anon or p in mm.guard:
            continue
        hit = mm.vmas.find(p)
        if hit is None or hit[2] is not v and hit[2] != v:
            continue
        cp = obj.pages.get(v.pgoff(p))
        cached = (cp is not None and cp.pfn is not None) or v.pgoff(p) in obj.uncertain   # may be cached
        if cached and v.pgoff(p) < obj.npages():
            mm.maybe.add(p)


def _thp_fault(sys: OsState, mm: Mm, v: Vma, page: int, kind: int) -> None:
    """mm/huge_memory.c do_huge_pmd_anonymous_page: a first fault in a 2 MiB aligned, eligible
    range may map a huge page (linux.thp.fault-huge).  Whether it does is the kernel's choice
    (no free huge page: fall back to 4 KiB), so the model marks the range ``thp_maybe``."""
    base = page & ~(HPAGE - 1)
    if base in mm.huge or base in mm.thp_maybe or not pressure.thp_eligible(sys, mm, v, base):
        return
    if any(p in mm.pte or p in mm.anon or p in mm.guard for p in range(base, base + HPAGE, PAGE_SIZE)):
        return
    sys.stats["thp_faults"] += 1
    if sys.config.thp_certain:
        pressure.materialize_huge(sys, mm, base, read=kind != WRITE)
    else:
        mm.thp_maybe.add(base)
        for p in range(base, base + HPAGE, PAGE_SIZE):
            if p != page:
                mm.maybe.add(p)


def apply_load(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
    hit = mm.vmas.find(addr)
    page = addr & PAGE_MASK
    if o.ok and o.value == 0 and hit is not None and page not in mm.anon and _past_eof_in_cache(sys, hit[2], addr):
        # a writeback zeroed the page past the end of the file: all of it, in the cache and on disk
        obj = sys.objects[hit[2].obj]
        cp, tail = obj.pages.get(obj.size // PAGE_SIZE), obj.size % PAGE_SIZE
        if cp is not None and cp.data is not None and cp.data[addr & (PAGE_SIZE - 1)]:
            cp.data[tail:] = bytes(PAGE_SIZE - tail)
            d = obj.disk.get(obj.size // PAGE_SIZE)
            if d is not None:
                d[tail:] = bytes(PAGE_SIZE - tail)
    p = mm.anon.get(page)
    if o.ok and o.value == 0 and p is not None and p.lazyfree and p.byte(addr & 4095):
        # the kernel had freed the MADV_FREE page: the load faulted the zero page in (resident
        # again: mincore counts the zero page's PTE)
        sys.drop_page(mm, page)
    _access(sys, proc, mm, o, addr, READ)


def expect_store(sys: OsState, mm: Mm, addr: int, value: int) -> Expect:
    return _expect_access(sys, mm, addr, WRITE)


def apply_store(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, value: int) -> None:
    t = _access(sys, proc, mm, o, addr, WRITE)
    if not o.ok or t is None:
        return
    pg = t.page
    if isinstance(pg, Page):
        pg.put(addr & (PAGE_SIZE - 1), value)
        pg.dirty = True
        pg.lazyfree = False


def expect_fetch(sys: OsState, mm: Mm, addr: int) -> Expect:
    return _expect_access(sys, mm, addr, EXEC)


def apply_fetch(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
    # A target may run the fetch in a probe process (the linux target must: a jump into
    # the page cannot return): whether this process now maps the page is unknown.
    page = addr & PAGE_MASK
    hit = mm.vmas.find(addr) or (_grow_stack(sys, mm, addr) if o.ok else None)
    if hit is None or page in mm.pte:
        return
    if o.ok:
        mm.maybe.add(page)
        return
    v = hit[2]
    if o.signal == "SIGSEGV" and v.prot & (PROT_R | PROT_W) and not v.prot & PROT_X and page not in mm.guard:
        # arch/x86/mm/fault.c access_error: a fetch from a page not present is checked as a read
        # (only a present page's NX faults), so the read fault maps the page, and the retried
        # fetch then faults on NX (linux.x86.nx-enforced).  In this process or in the probe's: the
        # PTE, and a page of a shared object, may now exist (measured on 6.18: mincore of shared
        # anonymous memory reads 1 after the fetch; found by the soak)
        mm.maybe.add(page)
        if v.obj is not None:
            sys.objects[v.obj].uncertain.add(v.pgoff(page))


RULES = {
    "load": Rule(expect_load, apply_load),
    "store": Rule(expect_store, apply_store),
    "fetch": Rule(expect_fetch, apply_fetch),
}
