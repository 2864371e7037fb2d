"""ftruncate that shrinks a file drops a MAP_PRIVATE mapping's private copies of the pages past the
new end (soak seed 2, issue #19: the model kept them and read the copy where Linux 6.18 raised
SIGBUS; mm/truncate.c truncate_pagecache unmaps with even_cows).  The directed program (suite
program 57) catches a model that keeps the copies (tests/os/broken_truncate_pkey.py); the correct
model passes it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "specs" / "suite" / "os" / "57-truncate-private-copies.mst"
W = 0x100008000000
FACTS = {"kernel": "6.18.0"}


def _broken():
    spec = importlib.util.spec_from_file_location("broken_truncate_pkey", Path(__file__).with_name("broken_truncate_pkey.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def failed(text: str, outcomes: list[Outcome], facts: dict) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", facts)
    return j.failure.clause if j.failure else None


def ok(v: int = 0) -> Outcome:
    return Outcome(value=v)


DONE = Outcome()
BUS = Outcome(signal="SIGBUS")


def test_the_directed_program_catches_a_truncate_that_keeps_private_copies():
    program = parse(PROGRAM.read_text())
    failure = execute(_broken().target("truncate-keeps-private-copies", FACTS), program, FACTS).failure
    assert failure is not None and failure.clause == "posix.mmap.sigbus-beyond-eof", failure
    assert execute(ModelTarget(), program, FACTS).failure is None


def test_shrinking_a_file_drops_private_copies_past_the_end_only():
    text = ('a = memfd_create("t", 0)\nftruncate(a, 0x3000)\n'
            f"b = mmap({W:#x}, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE, a, 0)\n"
            "store(b+200, 1)\nstore(b+0x2000, 2)\nftruncate(a, 100)\nx = load(b+0x2000)\nz = load(b+200)\n"
            "ftruncate(a, 0x3000)\nw = load(b+0x2000)\n")
    good = [ok(3), ok(0), ok(W), DONE, DONE, ok(0), BUS, ok(1), ok(0), ok(0)]          # measured on 6.18
    assert failed(text, good, FACTS) is None
    assert failed(text, good[:6] + [ok(2)] + good[7:], FACTS) == "posix.mmap.sigbus-beyond-eof"
    assert failed(text, good[:7] + [ok(0)] + good[8:], FACTS) is not None        # the partial page's copy stays
    assert failed(text, good[:9] + [ok(2)], FACTS) is not None                   # gone for good: the file's hole


def test_growing_a_file_keeps_the_private_copies():
    text = ('a = memfd_create("t", 0)\nftruncate(a, 0x2000)\n'
            f"b = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE, a, 0)\n"
            "store(b+0x1000, 2)\nftruncate(a, 0x3000)\nx = load(b+0x1000)\n")
    assert failed(text, [ok(3), ok(0), ok(W), DONE, ok(0), ok(2)], FACTS) is None
    assert failed(text, [ok(3), ok(0), ok(W), DONE, ok(0), ok(0)], FACTS) is not None
