"""The fault path's nine steps, each on its own (model/fault.py)."""

from __future__ import annotations

from memspec.model import fault
from memspec.model.fault import EXEC, READ, WRITE
from memspec.model.pte import ErrCode

PF_P, PF_W, PF_U, PF_I = ErrCode.P, ErrCode.W, ErrCode.U, ErrCode.ID
from memspec.model.mm import new_model
from memspec.model.pages import ZERO_PAGE
from memspec.records import OK, Outcome

A = 0x100000000000
RW, ANON_PRIV, ANON_SHARED = 3, 0x22, 0x21


def run(sys, *calls):
    """Run calls on the model, adopting its own default outcomes; returns the outcomes."""
    out = []
    for proc, name, args in calls:
        exp = sys.expect(proc, name, args)
        o = exp.default
        sys.apply(proc, name, args, o)
        sys.bind(proc, name, "p2" if name == "fork" else None, o)
        out.append(o)
    return out


def mapped(**cfg):
    s = new_model(cfg)
    run(s, ("main", "mmap", (A, 0x4000, RW, ANON_PRIV, -1, 0)))
    return s, s.procs["main"]


def test_step1_access_attempt_hits_only_a_permitting_translation():
    s, mm = mapped()
    v = mm.vmas.find(A)[2]
    assert fault.access_attempt(mm, v, A, READ) is None          # nothing mapped yet: faults
    run(s, ("main", "store", (A, 1)))
    assert fault.access_attempt(mm, v, A, WRITE) is not None      # now a hit


def test_step2_error_code_and_cr2():
    s, mm = mapped()
    f = fault.raise_fault(mm, A + 5, READ)
    assert (f.cr2, f.errcode, f.clause) == (A + 5, PF_U, "seed.fault.step2-pf-cr2")
    assert fault.raise_fault(mm, A, EXEC).errcode == PF_U | PF_I
    run(s, ("main", "load", (A,)))                             # maps the zero page read-only
    assert fault.raise_fault(mm, A, WRITE).errcode == PF_U | PF_W | PF_P


def test_step3_classify_minor_major_invalid():
    s, mm = mapped()
    v = mm.vmas.find(A)[2]
    assert fault.classify(s, mm, None, A - 0x1000, READ).kind == "sigsegv"
    assert fault.classify(s, mm, v, A, READ).how == "anon-zero"
    assert fault.classify(s, mm, v, A, WRITE).how == "anon-new"
    fd = run(s, ("main", "memfd_create", ("f", 0)))[0].value
    run(s, ("main", "ftruncate", (fd, 0x1000)), ("main", "mmap", (A + 0x10000, 0x2000, RW, 0x01, fd, 0)))
    fv = mm.vmas.find(A + 0x10000)[2]
    assert fault.classify(s, mm, fv, A + 0x11000, READ).kind == "sigbus"
    ff = run(s, ("main", "open_file", (0x1000, 2)))[0].value
    run(s, ("main", "mmap", (A + 0x20000, 0x1000, RW, 0x01, ff, 0)))
    assert fault.classify(s, mm, mm.vmas.find(A + 0x20000)[2], A + 0x20000, READ).kind == "major"


def test_steps4_to_6_frame_selection_eviction_writeback_and_load():
    s = new_model({})
    ff = run(s, ("main", "open_file", (0x2000, 2)))[0].value
    run(s, ("main", "mmap", (A, 0x2000, RW, 0x01, ff, 0)), ("main", "store", (A, 7)),
        ("main", "memory_limit", (1, 0)))
    # RAM is one frame, held by the dirty file page: the next fault evicts it with a write-back
    assert s.stats["writebacks"] == 0
    run(s, ("main", "load", (A + 0x1000,)))
    assert s.stats["evictions"] == 1 and s.stats["writebacks"] == 1
    obj = next(iter(s.objects.values()))
    assert obj.disk[0][0] == 7
    # step 6: the page comes back from the file by a major fault, with its contents
    before = s.procs["main"].majflt
    assert run(s, ("main", "load", (A,)))[0] == Outcome(value=7)
    assert s.procs["main"].majflt == before + 1


def test_step7_pte_bits_zero_page_read_only_then_private_writable():
    s, mm = mapped()
    run(s, ("main", "load", (A,)))
    assert mm.pte[A].page is ZERO_PAGE and not mm.pte[A].write
    run(s, ("main", "store", (A, 1)))
    assert mm.pte[A].page is not ZERO_PAGE and mm.pte[A].write


def test_step8_tlb_flushed_on_munmap_and_mprotect():
    s, mm = mapped()
    run(s, ("main", "store", (A, 1)), ("main", "store", (A + 0x1000, 1)))
    assert A in mm.tlb and A + 0x1000 in mm.tlb
    run(s, ("main", "munmap", (A, 0x1000)), ("main", "mprotect", (A + 0x1000, 0x1000, 1)))
    assert A not in mm.tlb and A + 0x1000 not in mm.tlb
    assert s.expect("main", "store", (A + 0x1000, 2)).default == Outcome(signal="SIGSEGV")
    assert s.expect("main", "load", (A,)).clause == "seed.fault.step8-tlb"


def test_step9_restart_completes_and_counts_once():
    s, mm = mapped()
    v = mm.vmas.find(A)[2]
    fc = fault.do_page_fault(s, mm, v, A, WRITE)
    assert fc is not None and fc.kind == "minor"
    assert fault.do_page_fault(s, mm, v, A, WRITE) is None        # restarted access hits
    assert mm.minflt == 1


def test_cow_write_copies_for_the_writer_only():
    s, mm = mapped()
    run(s, ("main", "store", (A, 1)), ("main", "fork", ()))
    child = s.procs["p2"]
    assert mm.anon[A] is child.anon[A] and mm.anon[A].mapcount == 2
    run(s, ("p2", "store", (A, 2)))
    assert mm.anon[A] is not child.anon[A]
    assert run(s, ("main", "load", (A,)))[0] == Outcome(value=1)
    assert s.stats["cow_copies"] == 1
    assert s.expect("main", "store", (A, 3)).clause == "seed.fault.step7-pte"   # reuse, no copy


def test_fault_report_counts_by_class():
    s, mm = mapped()
    run(s, ("main", "load", (A,)), ("main", "store", (A, 1)), ("main", "load", (A - 0x1000,)))
    rep = s.fault_report()
    assert rep["stats"]["faults_minor"] == 2 and rep["stats"]["faults_invalid"] == 1
    assert rep["stats"]["fault_anon-zero"] == 1 and rep["procs"]["main"]["minflt"] == 2


def test_minflt_is_a_lower_bound_on_a_noisy_target():
    s = new_model({"quiet_ranges": [[A, A + (1 << 30)]]})
    run(s, ("main", "mmap", (A, 0x2000, RW, ANON_PRIV, -1, 0)), ("main", "store", (A, 1)))
    e = s.expect("main", "minflt", ())
    assert e.judge(Outcome(value=500)) is None
    assert e.judge(Outcome(value=0)) is not None
    assert OK.ok


def _seen(s, proc, addr, pfn):
    """pfn_of(addr) in proc reported ``pfn``: judged, then adopted; returns the verdict (None = allowed)."""
    exp = s.expect(proc, "pfn_of", (addr,))
    bad = exp.judge(Outcome(value=pfn))
    if bad is None:
        s.apply(proc, "pfn_of", (addr,), Outcome(value=pfn))
    return bad


def test_a_page_once_shared_may_be_copied_again_on_its_last_owners_write():
    # mm/memory.c wp_can_reuse_anon_folio: after the child copied, the parent's write reuses its
    # frame unless a passing reference (another CPU's LRU batch) makes the kernel copy; both happen
    s, mm = mapped()
    run(s, ("main", "store", (A, 1)), ("main", "fork", ()))
    assert _seen(s, "main", A, 0x500) is None and _seen(s, "p2", A, 0x500) is None
    run(s, ("p2", "store", (A, 2)))
    assert _seen(s, "p2", A, 0x600) is None
    assert _seen(s, "main", A, 0x501) is not None       # not written since: still the shared frame
    assert _seen(s, "main", A, 0x500) is None
    run(s, ("main", "store", (A, 3)))
    for pfn, ok in ((0x500, True), (0x700, True), (0x600, False)):   # reused, copied, the child's
        exp = s.expect("main", "pfn_of", (A,))
        assert (exp.judge(Outcome(value=pfn)) is None) is ok, hex(pfn)
    assert _seen(s, "main", A, 0x700) is None           # adopted: from now on that frame
    assert _seen(s, "main", A, 0x500) is not None


def test_a_page_never_shared_keeps_its_frame_on_write():
    s, mm = mapped()
    run(s, ("main", "store", (A, 1)))
    assert _seen(s, "main", A, 0x500) is None
    run(s, ("main", "mprotect", (A, 0x1000, 1)), ("main", "mprotect", (A, 0x1000, RW)), ("main", "store", (A, 2)))
    assert _seen(s, "main", A, 0x501) is not None
