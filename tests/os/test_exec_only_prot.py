"""The exec-only disagreement of the confirming linux-agent soak (seed 2, issue #19): only a prot
argument of exactly PROT_EXEC is execute-only.  The directed program (suite program 58) catches a
model that decides on prot's READ/WRITE/EXEC bits alone (tests/os/broken_truncate_pkey.py); the
correct model passes it; the judge demands what Linux 6.18 was measured to do.  (The other two:
ftruncate and private copies, test_truncate_private.py; the harness's pipe, test_fileio.py and
tests/agent/test_pipe_harness.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge
from memspec.targets.model import ModelSession, ModelTarget

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "specs" / "suite" / "os"
W = 0x100008000000
PKU = {"kernel": "6.18.0", "exec_only": True}
NO_PKU = {"kernel": "6.18.0", "exec_only": False}


def _broken():
    spec = importlib.util.spec_from_file_location("broken_truncate_pkey", Path(__file__).with_name("broken_truncate_pkey.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Model(ModelTarget):
    """The reference model answering as a machine of these facts (PKU or not)."""

    def __init__(self, facts: dict):
        super().__init__()
        self.known = facts

    def session(self, layer: str = "os") -> ModelSession:
        return ModelSession(layer, self.known)


def failed(text: str, outcomes: list[Outcome], facts: dict) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", facts)
    return j.failure.clause if j.failure else None


def ok(v: int = 0) -> Outcome:
    return Outcome(value=v)


def err(name: str) -> Outcome:
    return Outcome(value=-1, errno=name)


SEGV = Outcome(signal="SIGSEGV")


@pytest.mark.parametrize("bug, prog, facts, clause", [
    ("exec-only-on-masked-prot", "58-exec-only-prot-bits.mst", PKU, "linux.x86.exec-implies-read"),
])
def test_the_directed_program_catches_the_broken_rule(bug, prog, facts, clause):
    program = parse((SUITE / prog).read_text())
    failure = execute(_broken().target(bug, facts), program, facts).failure
    assert failure is not None and failure.clause == clause, failure
    assert execute(_Model(facts), program, facts).failure is None


def test_without_pku_the_masked_prot_bug_changes_nothing():
    # every PROT_EXEC mapping reads without PKU: the bug has nothing to get wrong there
    program = parse((SUITE / "58-exec-only-prot-bits.mst").read_text())
    assert execute(_broken().target("exec-only-on-masked-prot", NO_PKU), program, NO_PKU).failure is None


@pytest.mark.parametrize("prot, readable", [
    ("PROT_EXEC", False), ("PROT_EXEC|PROT_GROWSDOWN", True), ("PROT_EXEC|PROT_SEM", True),
    ("PROT_EXEC|PROT_GROWSUP", True), ("0x14", True),
])
def test_only_exactly_prot_exec_is_execute_only_in_mmap(prot, readable):
    text = f"a = mmap({W:#x}, 0x1000, {prot}, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nx = load(a)\n"
    read, fault = [ok(W), ok(0)], [ok(W), SEGV]                                # measured on 6.18 with PKU
    assert failed(text, read if readable else fault, PKU) is None
    assert failed(text, fault if readable else read, PKU) is not None
    assert failed(text, read, NO_PKU) is None


def test_mprotect_clears_the_grows_bits_but_not_prot_sem():
    text = (f"c = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "e = mprotect(c, 0x1000, PROT_EXEC|PROT_SEM)\nx = load(c)\n"
            "f = mprotect(c, 0x1000, PROT_EXEC)\ny = load(c)\n")
    good = [ok(W), ok(0), ok(0), ok(0), SEGV]                                    # measured on 6.18 with PKU
    assert failed(text, good, PKU) is None
    assert failed(text, good[:2] + [SEGV] + good[3:], PKU) is not None
