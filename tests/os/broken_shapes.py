"""Broken os implementations that only programs of a particular shape show (issue #26): the
reference model with one mechanic changed, served in process as ``py:`` targets
(``py:tests/os/broken_shapes.py:target("cow-copies-first-byte")``).  Fakes for testing the
generator and the judge, never targets of their own."""

from __future__ import annotations

from memspec.model import pressure
from memspec.model.expect import exactly
from memspec.model.fault import Pte
from memspec.model.mm import PAGE_MASK, System, page_align
from memspec.model.os import access, locking, mappings
from memspec.model.rules import replaced
from memspec.records import Outcome
from memspec.targets.model import OsModelTarget

PAGE = 4096


def _cow_copies_first_byte(sys, proc, mm, o, addr, value):
    before = sys.stats["cow_copies"]
    access.apply_store(sys, proc, mm, o, addr, value)
    page = mm.anon.get(addr & PAGE_MASK)
    if sys.stats["cow_copies"] > before and page is not None and page.data is not None:
        first, mine = page.data[0], page.data[addr & (PAGE - 1)]
        page.data[:] = bytes(PAGE)
        page.data[0], page.data[addr & (PAGE - 1)] = first, mine


class CowCopiesFirstByte(System):
    """A write fault on a copy-on-write page copies only the page's first byte (and the byte written)."""

    rules = replaced(System.rules, "store", apply=_cow_copies_first_byte)


def _mprotect_makes_cow_writable(sys, proc, mm, o, addr, length, prot):
    mappings.apply_mprotect(sys, proc, mm, o, addr, length, prot)
    if not o.ok or not prot & 2:
        return
    for p in range(addr & PAGE_MASK, addr + page_align(length), PAGE):
        page = mm.anon.get(p)
        hit = mm.vmas.find(p)
        if page is not None and page.mapcount > 1 and p in mm.pte and hit is not None and not hit[2].shared:
            mm.pte[p] = Pte(page, True)
            mm.tlb.pop(p, None)


class MprotectMakesCowWritable(System):
    """mprotect(PROT_WRITE) of a private page still shared after fork makes its PTE writable without
    breaking the copy: the next store lands in the page the other process maps."""

    rules = replaced(System.rules, "mprotect", apply=_mprotect_makes_cow_writable)


def _mlock_limit_ignores_offset(sys, mm, addr, length):
    return locking.expect_mlock(sys, mm, addr & PAGE_MASK, length)


class MlockLimitIgnoresOffset(System):
    """mlock counts the pages of ``length`` against RLIMIT_MEMLOCK (and populates them) from the start's
    page, forgetting the start's offset in it: mlock(a+7, 4096) locks two pages but counts one."""

    rules = replaced(System.rules, "mlock", expect=_mlock_limit_ignores_offset)


def _oom_kills_the_faulting_process(sys, mm, addr, value):
    e = access.expect_store(sys, mm, addr, value)
    if e.default.ok and (addr & PAGE_MASK) not in mm.pte and mm.vmas.find(addr) is not None \
            and sys.frames.free_count() == 0 and not pressure.can_reclaim(sys):
        return exactly("seed.fault.step4-frame", Outcome(signal="SIGKILL"))
    return e


class OomKillsTheFaultingProcess(System):
    """A store that needs a frame when none is free and nothing can be reclaimed kills the process that
    faulted, not the one the OOM killer's badness picks (the bigger one)."""

    rules = replaced(System.rules, "store", expect=_oom_kills_the_faulting_process)


BUGS = {"cow-copies-first-byte": CowCopiesFirstByte, "mprotect-makes-cow-writable": MprotectMakesCowWritable,
        "mlock-limit-ignores-offset": MlockLimitIgnoresOffset,
        "oom-kills-the-faulting-process": OomKillsTheFaultingProcess}


def target(bug: str) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", BUGS[bug])
