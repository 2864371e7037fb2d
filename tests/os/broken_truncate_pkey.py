"""Broken os implementations of the two model rules the seed-2 soak corrected (issue #19): the
reference model with ftruncate keeping a MAP_PRIVATE mapping's private copies past the new end, or
with the execute-only protection key decided on prot's PROT_READ/WRITE/EXEC bits alone (the
model's behaviour before the fix), served as ``py:`` targets
(``py:tests/os/broken_truncate_pkey.py:target("truncate-keeps-private-copies")``).  Fakes for
testing the judge, never targets of their own."""

from __future__ import annotations

from memspec.model.mm import System
from memspec.model.os import files, mappings
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget

RWX = 7


def _truncate_keeping_private_copies(sys, proc, mm, o, fd, length):
    """ftruncate removes the page-cache pages past the new end from every mapping, but a private
    mapping keeps its copies of them (as a hole punch would): a load there reads the copy."""
    saved = files._drop_private_copies
    files._drop_private_copies = lambda *a: None
    try:
        files.apply_ftruncate(sys, proc, mm, o, fd, length)
    finally:
        files._drop_private_copies = saved


class TruncateKeepsPrivateCopies(System):
    rules = replaced(System.rules, "ftruncate", apply=_truncate_keeping_private_copies)


def _mmap_masked(sys, proc, mm, o, addr, length, prot, flags, fd, offset):
    """mmap decides execute-only on prot & (READ|WRITE|EXEC): PROT_EXEC|PROT_SEM is execute-only."""
    mappings.apply_mmap(sys, proc, mm, o, addr, length, prot & RWX, flags, fd, offset)


def _mprotect_masked(sys, proc, mm, o, addr, length, prot):
    mappings.apply_mprotect(sys, proc, mm, o, addr, length, prot & RWX if o.ok else prot)


class ExecOnlyOnMaskedProt(System):
    rules = replaced(replaced(System.rules, "mmap", apply=_mmap_masked), "mprotect", apply=_mprotect_masked)


BUGS = {"truncate-keeps-private-copies": TruncateKeepsPrivateCopies, "exec-only-on-masked-prot": ExecOnlyOnMaskedProt}


def target(bug: str, facts: dict | None = None) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", BUGS[bug], facts)
