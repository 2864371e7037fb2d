"""Writeback zeroes a file's last page past its end (clause linux.writeback.zeroes-eof-tail):
bytes stored there through a mapping read back until the page is written back, 0 after;
msync(MS_SYNC) surely writes it back.  Exact where the fact eof_zero_on_write says the target's
files live on a disk file system, the stored value or 0 elsewhere (the flusher may run at any
time; tmpfs never zeroes).  Suite program 60 passes on the model, and an implementation whose
writeback keeps the bytes is caught by it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from memspec.fuzz.differential import execute
from memspec.model.mm import Config, System
from memspec.model.rules import replaced
from memspec.program import load, parse
from memspec.records import Outcome
from memspec.targets.model import OsModelTarget

SUITE = Path(__file__).resolve().parents[2] / "specs" / "suite" / "os" / "60-writeback-eof-tail.mst"
DISK = {"eof_zero_on_write": True}
P = 4096
A = 0x100100000000
RW, SHARED, FIXED = 3, 0x01, 0x10


def _kept(fn):
    """``fn`` run as if the folder were tmpfs: a writeback that keeps the bytes past the end."""
    def call(sys, *args):
        saved = sys.config
        sys.config = dataclasses.replace(saved, eof_zero_on_write=False)
        try:
            return fn(sys, *args)
        finally:
            sys.config = saved
    return call


class WritebackKeepsTail(System):
    rules = replaced(System.rules, "msync", apply=_kept(System.rules["msync"].apply))


def _system(facts) -> tuple[System, int]:
    s = System(Config.from_facts(facts))
    fd = s.expect("main", "open_file", (0x1800, 2)).default.value
    s.apply("main", "open_file", (0x1800, 2), Outcome(value=fd))
    s.apply("main", "mmap", (A, 2 * P, RW, SHARED | FIXED, fd, 0), Outcome(value=A))
    s.apply("main", "store", (A + 0x1900, 5), Outcome())
    return s, fd


def test_a_load_past_the_end_is_the_value_or_0_until_a_sure_writeback():
    for facts in ({}, DISK, {"eof_zero_on_write": False}):
        s, _ = _system(facts)
        e = s.expect("main", "load", (A + 0x1900,))
        assert e.clause == "linux.writeback.zeroes-eof-tail"
        assert e.judge(Outcome(value=5)) is None and e.judge(Outcome(value=0)) is None
        assert e.judge(Outcome(value=6)) is not None
        # a byte before the end is the file's: exact
        assert s.expect("main", "load", (A + 0x17ff,)).allowed == (Outcome(value=0),)


def test_msync_on_a_disk_file_system_zeroes_the_tail():
    s, _ = _system(DISK)
    s.apply("main", "msync", (A, 2 * P, 4), Outcome(value=0))
    e = s.expect("main", "load", (A + 0x1900,))
    assert e.allowed == (Outcome(value=0),) and e.clause == "linux.writeback.zeroes-eof-tail"
    # unknown file system: still a choice, and a 0 seen is adopted for the whole tail
    t, _ = _system({})
    t.apply("main", "store", (A + 0x1a00, 6), Outcome())
    t.apply("main", "msync", (A, 2 * P, 4), Outcome(value=0))
    assert t.expect("main", "load", (A + 0x1900,)).judge(Outcome(value=5)) is None
    t.apply("main", "load", (A + 0x1900,), Outcome(value=0))
    assert t.expect("main", "load", (A + 0x1a00,)).allowed == (Outcome(value=0),)


def test_the_suite_program_passes_and_catches_a_writeback_that_keeps_the_tail():
    prog = load(str(SUITE))
    ref = OsModelTarget("broken-os:reference", System, DISK)
    assert execute(ref, prog, ref.facts()).failure is None
    bad = OsModelTarget("broken-os:writeback-keeps-tail", WritebackKeepsTail, DISK)
    j = execute(bad, prog, bad.facts())
    assert j.failure is not None and j.failure.clause == "linux.writeback.zeroes-eof-tail", j.failure
    # on an unknown file system keeping the bytes is allowed
    ref0 = OsModelTarget("broken-os:writeback-keeps-tail", WritebackKeepsTail, {})
    assert execute(ref0, parse(SUITE.read_text()), ref0.facts()).failure is None
