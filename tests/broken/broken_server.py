"""Deliberately broken os-layer implementations, served over the protocol.

Run as ``python tests/broken/broken_server.py BUG``.  Each BUG is a small change to
the reference model that a real kernel could plausibly get wrong; the tests check
that ``memspec check --target cmd:...`` catches every one with a small program.
These are fakes for testing the harness, never a target of their own.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from memspec.model.expect import errno, exactly
from memspec.model import pressure
from memspec.model.fault import Pte
from memspec.model.mm import MAP, PAGE_MASK, System, page_align
from memspec.model.os import access, locking, mappings, pressure_events, processes
from memspec.model.rules import replaced
from memspec.model.pages import Page
from memspec.records import Outcome
from memspec.targets.model import ModelSession
from memspec.targets.serve import serve

# Each bug is the reference model with one rule of its table replaced (``System.rules``), or one
# shared mechanic of the state overridden.


def _mprotect_misses_last_page(sys, proc, mm, o, addr, length, prot):
    if o.ok and length > 4096:
        length = page_align(length) - 4096
    mappings.apply_mprotect(sys, proc, mm, o, addr, length, prot)


class MprotectMissesLastPage(System):
    rules = replaced(System.rules, "mprotect", apply=_mprotect_misses_last_page)


def _munmap_leaves_page(sys, proc, mm, o, addr, length):
    if o.ok and page_align(length) > 4096:
        length = page_align(length) - 4096
    mappings.apply_munmap(sys, proc, mm, o, addr, length)


class MunmapLeavesPage(System):
    rules = replaced(System.rules, "munmap", apply=_munmap_leaves_page)


def _len0_wrong_errno(sys, mm, addr, length, prot, flags, fd, offset):
    if length == 0 and flags & MAP["MAP_ANONYMOUS"]:
        return errno("posix.mmap.einval-len0", "ENOMEM")
    return mappings.expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)


class Len0WrongErrno(System):
    rules = replaced(System.rules, "mmap", expect=_len0_wrong_errno)


def _fixed_does_not_replace(sys, mm, addr, length, prot, flags, fd, offset):
    exp = mappings.expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)
    if flags & MAP["MAP_FIXED"] and exp.default.ok and mm.vmas.any_overlap(addr, addr + page_align(length)):
        return replace(exp, default=Outcome(value=-1, errno="EEXIST"))
    return exp


class FixedDoesNotReplace(System):
    rules = replaced(System.rules, "mmap", expect=_fixed_does_not_replace)


def _shared_not_shared(sys, proc, mm, o):
    processes.apply_fork(sys, proc, mm, o)
    child = sys.pending_fork
    for s, e, v in list(child.vmas.items()):
        if v.obj is not None and sys.objects[v.obj].kind == "anon-shared":
            # the child gets a private copy instead of the shared object
            old = sys.objects[v.obj]
            new = sys.new_object("anon-shared", old.size)
            for pgoff, page in old.pages.items():
                cp = Page("shmem", page.copy_data(), obj=new.id, pgoff=pgoff)
                if sys.frames.alloc(cp) is not None:
                    new.pages[pgoff] = cp
            child.vmas.set(s, e, replace(v, obj=new.id))
            for a in [a for a in child.pte if s <= a < e]:
                del child.pte[a]
            child.maybe -= {a for a in child.maybe if s <= a < e}


class SharedNotShared(System):
    rules = replaced(System.rules, "fork", apply=_shared_not_shared)


def _cow_shares_written_page(sys, proc, mm, o, addr, value):
    page = addr & PAGE_MASK
    shared = mm.anon.get(page)
    if o.ok and shared is not None and shared.mapcount > 1 and shared.pfn is not None:
        shared.put(addr & 4095, value)
        mm.pte[page] = Pte(shared, True)
        mm.tlb.pop(page, None)
        return
    access.apply_store(sys, proc, mm, o, addr, value)


class CowSharesWrittenPage(System):
    """The Dirty-COW outcome: a private write after fork lands in the page the other process
    still maps (the write fault skips the copy and makes the shared page writable)."""

    rules = replaced(System.rules, "store", apply=_cow_shares_written_page)


def _munmap_stale_tlb(sys, proc, mm, o, addr, length):
    keep = {p: t for p, t in mm.tlb.items() if addr <= p < addr + page_align(length)}
    mappings.apply_munmap(sys, proc, mm, o, addr, length)
    mm.tlb.update(keep)


class MunmapStaleTlb(System):
    """munmap forgets the TLB shootdown: the old translation keeps answering."""

    rules = replaced(System.rules, "munmap", apply=_munmap_stale_tlb)


def _ignoring_locks(f):
    """``f`` run with reclaim blind to VM_LOCKED."""
    def run(*args):
        real = pressure.is_locked
        pressure.is_locked = lambda sys, page: False
        try:
            return f(*args)
        finally:
            pressure.is_locked = real
    return run


class MlockedPageSwapped(System):
    """Reclaim ignores VM_LOCKED: mlock'd pages are swapped out like any other."""

    rules = replaced(System.rules, "reclaim", expect=_ignoring_locks(pressure_events.expect_reclaim),
                     apply=_ignoring_locks(pressure_events.apply_reclaim))


def _oom_kills_not_worst(sys, mm):
    first = next(iter(sys.procs.values()))
    return exactly("linux.oom.kills-worst", Outcome(value=first.pid))


class OomKillsNotWorst(System):
    """The OOM killer takes the first process it finds, not the one with the highest badness."""

    rules = replaced(System.rules, "oom", expect=_oom_kills_not_worst)


class ThpSplitLosesData(System):
    """Splitting a huge mapping (partial mprotect/munmap) forgets the contents of its pieces."""

    def split_one(self, mm, base):
        if base in mm.huge:
            for p in range(base, base + (2 << 20), 4096):
                page = mm.anon.get(p)
                if page is not None:
                    page.data = None
        super().split_one(mm, base)


def _mlock_wrong_errno(sys, mm, addr, length):
    e = locking.expect_mlock(sys, mm, addr, length)
    if e.clause == "linux.mlock.enomem-rlimit":
        return errno("linux.mlock.enomem-rlimit", "EPERM")
    return e


class MlockWrongErrno(System):
    """Over RLIMIT_MEMLOCK the unprivileged mlock fails with EPERM instead of ENOMEM."""

    rules = replaced(System.rules, "mlock", expect=_mlock_wrong_errno)


def _fetch_ignores_nx(sys, mm, addr):
    hit = mm.vmas.find(addr)
    if hit is not None and hit[2].prot:   # any accessible page executes
        return exactly("posix.mmap.prot-exec", Outcome())
    return access.expect_fetch(sys, mm, addr)


class FetchIgnoresNx(System):
    rules = replaced(System.rules, "fetch", expect=_fetch_ignores_nx)


def _noreplace_replaces(sys, mm, addr, length, prot, flags, fd, offset):
    if flags & MAP["MAP_FIXED_NOREPLACE"]:
        flags = (flags & ~MAP["MAP_FIXED_NOREPLACE"]) | MAP["MAP_FIXED"]
    return mappings.expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)


class NoreplaceReplaces(System):
    rules = replaced(System.rules, "mmap", expect=_noreplace_replaces)


def _prot_none_readable(sys, mm, addr):
    hit = mm.vmas.find(addr)
    if hit is not None and hit[2].prot == 0:
        return exactly("posix.mmap.prot-none-sigsegv", Outcome(value=0))
    return access.expect_load(sys, mm, addr)


class ProtNoneReadable(System):
    rules = replaced(System.rules, "load", expect=_prot_none_readable)


BUGS = {
    "mprotect-misses-last-page": MprotectMissesLastPage,
    "munmap-leaves-page": MunmapLeavesPage,
    "len0-wrong-errno": Len0WrongErrno,
    "fixed-does-not-replace": FixedDoesNotReplace,
    "shared-not-shared": SharedNotShared,
    "cow-shares-written-page": CowSharesWrittenPage,
    "fetch-ignores-nx": FetchIgnoresNx,
    "noreplace-replaces": NoreplaceReplaces,
    "prot-none-readable": ProtNoneReadable,
    "munmap-stale-tlb": MunmapStaleTlb,
    "mlocked-page-swapped": MlockedPageSwapped,
    "oom-kills-not-worst": OomKillsNotWorst,
    "thp-split-loses-data": ThpSplitLosesData,
    "mlock-wrong-errno": MlockWrongErrno,
}


class _BrokenSession(ModelSession):
    def __init__(self, cls):
        self.system = cls()


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in BUGS:
        print(f"usage: broken_server.py {{{','.join(BUGS)}}}", file=sys.stderr)
        return 2
    cls = BUGS[sys.argv[1]]
    return serve(sys.stdin.buffer, sys.stdout.buffer, lambda layer: _BrokenSession(cls), name=f"broken:{sys.argv[1]}")


if __name__ == "__main__":
    sys.exit(main())
