"""Deliberately broken os-layer implementations, served over the protocol.

Run as ``python tests/broken/broken_server.py BUG``.  Each BUG is a small change to
the reference model that a real kernel could plausibly get wrong; the tests check
that ``memspec check --target cmd:...`` catches every one with a small program.
These are fakes for testing the harness, never a target of their own.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from memspec.model.mm import MAP, PAGE_MASK, System, page_align
from memspec.model.expect import errno
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
            if v.obj is not None:   # the child gets a private copy instead of the shared object
                new = self._next_obj
                self._next_obj += 1
                self.objects[new] = {k: bytearray(b) for k, b in self.objects[v.obj].items()}
                child.vmas.set(s, e, replace(v, obj=new))


class CowSharesWrittenPage(System):
    """The Dirty-COW outcome: a private write after fork lands in the other process too."""

    def _apply_store(self, proc, mm, o, addr, value):
        super()._apply_store(proc, mm, o, addr, value)
        page = addr & PAGE_MASK
        if o.ok and page in mm.inherited:
            for other in self.procs.values():
                if other is not mm and page in other.inherited:
                    other.private.setdefault(page, bytearray(4096))[addr & 4095] = value & 0xFF


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
