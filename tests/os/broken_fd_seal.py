"""Broken os implementations of the calls the os generator and state machine reach since issue #19:
the reference model with the bytes of pwrite or the extent of mseal changed, served in process as
``py:`` targets (``py:tests/os/broken_fd_seal.py:target("pwrite-at-page-start")``).  Fakes for
testing the generator, the state machine and the judge, never targets of their own."""

from __future__ import annotations

from dataclasses import replace

from memspec.model.mm import System
from memspec.model.os import fileio, sealing
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget

PAGE = 4096


def _pwrite_at_page_start(sys, proc, mm, o, fd, offset, value, count):
    """pwrite puts its bytes at the start of the offset's page, not at the offset (the file's size
    still grows to offset + count)."""
    fileio.apply_pwrite(sys, proc, mm, o, fd, offset - offset % PAGE, value, count)
    f = mm.fds.get(fd)
    if o.ok and o.value and f is not None and f.obj is not None:
        obj = sys.objects[f.obj]
        obj.size = max(obj.size, offset + o.value)


class PwriteAtPageStart(System):
    """pwrite(fd, off, v, n) writes its n bytes at off rounded down to a page."""

    rules = replaced(System.rules, "pwrite", apply=_pwrite_at_page_start)


def _mseal_first_page(sys, proc, mm, o, addr, length, flags):
    """mseal seals only the first page of the range it was given."""
    if not o.ok or o.value != 0 or not length:
        return
    hit = mm.vmas.find(addr)
    if hit is not None:
        s, e, v = hit
        mm.vmas.set(addr, min(e, addr + PAGE), replace(v, sealed=True))


class MsealFirstPage(System):
    """mseal(addr, len, 0) answers 0 but seals [addr, addr + 4096) only: the rest can be unmapped,
    moved or protected."""

    rules = replaced(System.rules, "mseal", apply=_mseal_first_page)


BUGS = {"pwrite-at-page-start": PwriteAtPageStart, "mseal-first-page": MsealFirstPage}
assert sealing.RULES["mseal"] is not None      # the rule the second bug replaces


def target(bug: str) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", BUGS[bug])
