"""Broken implementations of the file calls' newer rules (O_APPEND, RLIMIT_FSIZE), served as
targets: the reference model with one rule changed.  memspec judges each against the directed
program of its rule and must fail it; the correct model passes the same programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from memspec.fuzz.differential import execute
from memspec.model.mm import System
from memspec.model.os import fileio, files
from memspec.model.rules import replaced
from memspec.program import parse
from memspec.targets.model import ModelSession, ModelTarget

SUITE = Path(__file__).resolve().parents[2] / "specs" / "suite" / "os"


def _no_append(fn):
    """``fn`` run with every descriptor's O_APPEND flag hidden (a kernel that ignores it)."""
    def run(sys, mm, *a):
        saved = {fd: f.append for fd, f in mm.fds.items()}
        for f in mm.fds.values():
            f.append = False
        try:
            return fn(sys, mm, *a)
        finally:
            for fd, v in saved.items():
                if fd in mm.fds:
                    mm.fds[fd].append = v
    return run


def _no_append_apply(fn):
    def run(sys, proc, mm, o, *a):
        return _no_append(lambda s, m, *b: fn(s, proc, m, o, *b))(sys, mm, *a)
    return run


def _no_fsize(fn):
    def run(sys, mm, *a):
        saved, mm.fsize_soft = mm.fsize_soft, -1
        try:
            return fn(sys, mm, *a)
        finally:
            mm.fsize_soft = saved
    return run


BROKEN = {
    # write at the file offset, as without O_APPEND
    "write-ignores-append": (replaced(System.rules, "write", expect=_no_append(fileio.expect_write),
                                      apply=_no_append_apply(fileio.apply_write)), "48-o-append.mst",
                             "posix.lseek.sets-offset"),
    # pwrite at its offset (what POSIX asks, not what Linux does)
    "pwrite-posix": (replaced(System.rules, "pwrite", expect=_no_append(fileio.expect_pwrite),
                              apply=_no_append_apply(fileio.apply_pwrite)), "48-o-append.mst",
                     "posix.read.file-contents"),
    # no file-size limit on writes, or on ftruncate
    "write-ignores-fsize": (replaced(System.rules, "pwrite", expect=_no_fsize(fileio.expect_pwrite)),
                            "51-rlimit-fsize.mst", "linux.write.efbig-fsize"),
    "ftruncate-ignores-fsize": (replaced(System.rules, "ftruncate", expect=_no_fsize(files.expect_ftruncate)),
                                "51-rlimit-fsize.mst", "linux.ftruncate.efbig-fsize"),
}


class _Session(ModelSession):
    def __init__(self, rules):
        self.system = type("Broken", (System,), {"rules": rules})()


class _Broken(ModelTarget):
    layers = ("os",)

    def __init__(self, rules):
        super().__init__()
        self.rules = rules
        self.name = "broken-fileio"

    def session(self, layer: str = "os") -> _Session:
        return _Session(self.rules)


@pytest.mark.parametrize("bug", sorted(BROKEN))
def test_the_directed_program_catches_the_broken_rule(bug):
    rules, prog, clause = BROKEN[bug]
    program = parse((SUITE / prog).read_text())
    failure = execute(_Broken(rules), program, {}).failure
    assert failure is not None and failure.clause == clause
    assert execute(_Broken(System.rules), program, {}).failure is None
