"""A state machine's counterexample goes through the findings pipeline the programs take
(confirmed, shrunk by the same minimiser, saved), so its reproducer is as short as a random
program's (issue #26: a 6-call trigger was reported in 14 calls); one that does not fail again
as a program is saved as the machine found it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from memspec.commands.check import CheckOptions, Checker
from memspec.program import load, parse
from memspec.records import Check, Verdict

HERE = Path(__file__).resolve().parents[1] / "os"
W = 0x100000000000


def _broken(name: str):
    spec = importlib.util.spec_from_file_location("broken_shapes_t", HERE / "broken_shapes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.target(name)


PADDED = (f"a = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
          f"b = mmap({W + 0x100000:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
          "x = load(b)\nmprotect(b, 0x1000, PROT_NONE)\nstore(a+0x1000, 7)\n"
          "store(a, 1)\np2 = fork()\nmprotect(a, 0x1000, PROT_READ|PROT_WRITE)\nstore(a, 2)\n"
          "p2: y = load(a)\nz = load(a+0x1000)\n")


def test_the_machines_counterexample_is_shrunk_like_a_programs(tmp_path):
    t = _broken("mprotect-makes-cow-writable")
    c = Checker(CheckOptions(targets=[], layer="os", out=str(tmp_path), quiet=True))
    prog = parse(PADDED)
    check = Check("posix.fork.private-copy", Verdict.FAIL, 9, "1", "2")
    finding = c._machine_finding(t, {}, "os", prog, check)
    saved = load(finding.path)
    assert saved.meta("found_by") == "state machine"
    # the padding (the second mapping, its load and mprotect, the store beside) is gone
    assert len(saved.calls) < len(prog.calls) and len(saved.calls) <= 6, finding.path
    assert finding.check.verdict is Verdict.FAIL


def test_a_counterexample_that_does_not_fail_as_a_program_is_saved_as_found(tmp_path):
    from memspec.targets.model import ModelTarget
    c = Checker(CheckOptions(targets=[], layer="os", out=str(tmp_path), quiet=True))
    prog = parse(PADDED)
    check = Check("posix.fork.private-copy", Verdict.FAIL, 9, "1", "2")
    finding = c._machine_finding(ModelTarget(), {}, "os", prog, check)
    assert len(load(finding.path).calls) == len(prog.calls) and finding.check is check
