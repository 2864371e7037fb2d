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
from memspec.model.fault import Pte
from memspec.model.mm import MAP, PAGE_MASK, System, page_align
from memspec.model.pages import Page
from memspec.records import Outcome
from memspec.targets.model import ModelSession
from memspec.targets.serve import serve


class MprotectMissesLastPage(System):
    def _apply_mprotect(self, proc, mm, o, addr, length, prot):
        if o.ok and length > 4096:
            length = page_align(length) - 4096
        super()._apply_mprotect(proc, mm, o, addr, length, prot)


class MunmapLeavesPage(System):
    def _apply_munmap(self, proc, mm, o, addr, length):
        if o.ok and page_align(length) > 4096:
            length = page_align(length) - 4096
        super()._apply_munmap(proc, mm, o, addr, length)


class Len0WrongErrno(System):
    def _expect_mmap(self, mm, addr, length, prot, flags, fd, offset):
        if length == 0 and flags & MAP["MAP_ANONYMOUS"]:
            return errno("posix.mmap.einval-len0", "ENOMEM")
        return super()._expect_mmap(mm, addr, length, prot, flags, fd, offset)


class FixedDoesNotReplace(System):
    def _expect_mmap(self, mm, addr, length, prot, flags, fd, offset):
        exp = super()._expect_mmap(mm, addr, length, prot, flags, fd, offset)
        if flags & MAP["MAP_FIXED"] and exp.default.ok and mm.vmas.any_overlap(addr, addr + page_align(length)):
            return replace(exp, default=Outcome(value=-1, errno="EEXIST"))
        return exp


class SharedNotShared(System):
    def _apply_fork(self, proc, mm, o):
        super()._apply_fork(proc, mm, o)
        child = self._pending_fork
        for s, e, v in list(child.vmas.items()):
            if v.obj is not None and self.objects[v.obj].kind == "anon-shared":
                # the child gets a private copy instead of the shared object
                old = self.objects[v.obj]
                new = self._new_object("anon-shared", old.size)
                for pgoff, page in old.pages.items():
                    cp = Page("shmem", page.copy_data(), obj=new.id, pgoff=pgoff)
                    if self.frames.alloc(cp) is not None:
                        new.pages[pgoff] = cp
                child.vmas.set(s, e, replace(v, obj=new.id))
                for a in [a for a in child.pte if s <= a < e]:
                    del child.pte[a]
                child.maybe -= {a for a in child.maybe if s <= a < e}


class CowSharesWrittenPage(System):
    """The Dirty-COW outcome: a private write after fork lands in the page the other process
    still maps (the write fault skips the copy and makes the shared page writable)."""

    def _apply_store(self, proc, mm, o, addr, value):
        page = addr & PAGE_MASK
        shared = mm.anon.get(page)
        if o.ok and shared is not None and shared.mapcount > 1 and shared.pfn is not None:
            shared.put(addr & 4095, value)
            mm.pte[page] = Pte(shared, True)
            mm.tlb.pop(page, None)
            return
        super()._apply_store(proc, mm, o, addr, value)


class MunmapStaleTlb(System):
    """munmap forgets the TLB shootdown: the old translation keeps answering."""

    def _apply_munmap(self, proc, mm, o, addr, length):
        keep = {p: t for p, t in mm.tlb.items() if addr <= p < addr + page_align(length)}
        super()._apply_munmap(proc, mm, o, addr, length)
        mm.tlb.update(keep)


class MlockedPageSwapped(System):
    """Reclaim ignores VM_LOCKED: mlock'd pages are swapped out like any other."""

    def _apply_reclaim(self, proc, mm, o, pages):
        from memspec.model import pressure
        real = pressure.is_locked
        pressure.is_locked = lambda sys, page: False
        try:
            super()._apply_reclaim(proc, mm, o, pages)
        finally:
            pressure.is_locked = real

    def _expect_reclaim(self, mm, pages):
        from memspec.model import pressure
        real = pressure.is_locked
        pressure.is_locked = lambda sys, page: False
        try:
            return super()._expect_reclaim(mm, pages)
        finally:
            pressure.is_locked = real


class OomKillsNotWorst(System):
    """The OOM killer takes the first process it finds, not the one with the highest badness."""

    def _expect_oom(self, mm):
        first = next(iter(self.procs.values()))
        return exactly("linux.oom.kills-worst", Outcome(value=first.pid))


class ThpSplitLosesData(System):
    """Splitting a huge mapping (partial mprotect/munmap) forgets the contents of its pieces."""

    def _split_one(self, mm, base):
        if base in mm.huge:
            for p in range(base, base + (2 << 20), 4096):
                page = mm.anon.get(p)
                if page is not None:
                    page.data = None
        super()._split_one(mm, base)


class MlockWrongErrno(System):
    """Over RLIMIT_MEMLOCK the unprivileged mlock fails with EPERM instead of ENOMEM."""

    def _expect_mlock(self, mm, addr, length):
        e = super()._expect_mlock(mm, addr, length)
        if e.clause == "linux.mlock.enomem-rlimit":
            return errno("linux.mlock.enomem-rlimit", "EPERM")
        return e


class FetchIgnoresNx(System):
    def _expect_fetch(self, mm, addr):
        hit = mm.vmas.find(addr)
        if hit is not None and hit[2].prot:   # any accessible page executes
            return _ok("posix.mmap.prot-exec")
        return super()._expect_fetch(mm, addr)


class NoreplaceReplaces(System):
    def _expect_mmap(self, mm, addr, length, prot, flags, fd, offset):
        if flags & MAP["MAP_FIXED_NOREPLACE"]:
            flags = (flags & ~MAP["MAP_FIXED_NOREPLACE"]) | MAP["MAP_FIXED"]
        return super()._expect_mmap(mm, addr, length, prot, flags, fd, offset)


class ProtNoneReadable(System):
    def _expect_load(self, mm, addr):
        hit = mm.vmas.find(addr)
        if hit is not None and hit[2].prot == 0:
            from memspec.model.expect import exactly
            return exactly("posix.mmap.prot-none-sigsegv", Outcome(value=0))
        return super()._expect_load(mm, addr)


def _ok(clause):
    from memspec.model.expect import exactly
    return exactly(clause, Outcome())


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
