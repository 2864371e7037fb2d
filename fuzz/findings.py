"""One findings pipeline: a failing judgement -> localise -> signature -> confirm -> shrink -> save
-> replay line.  ``memspec check``, ``memspec fuzz``, the pytest plugin (through check) and the
state machines' flaky results all go through it, so a finding is the same thing everywhere:
one file per distinct failure, minimal, with the header that says what it shows and the one
command that replays it.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

from memspec.atomic import write_text
from memspec.errors import ProgramError
from memspec.program import Program, format_program, load
from memspec.records import Check, Judgement, Verdict

from .differential import Signature, confirm, execute, localise, shrink_failure


def safe_name(name: str) -> str:
    """A file-name part from a target's or clause's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


def replay_command(path: str, target: str) -> str:
    return f"memspec replay {shlex.quote(path)} --target {shlex.quote(target)}"


@dataclass
class Finding:
    signature: Signature
    program: Program          # the minimal program, with its header
    check: Check              # its failure, as judged on that program
    judgement: Judgement      # the judgement of that program (its context explains the failure)
    path: str                 # where it is saved
    replay: str               # one command that replays it
    origin: str               # what found it ("suite/os/03-…", "random #12", "state machine", "fuzz")
    count: int = 1            # programs that failed with this signature


class Findings:
    """The findings of one target in one run, saved under ``folder/<target>/<clause>.mst``."""

    def __init__(self, target: Any, facts: dict[str, Any], folder: str, layer: str, seed: int = 0,
                 confirm: int = 3, shrink_budget: int = 200, invariants: bool = True) -> None:
        self.target, self.facts, self.folder = target, facts, folder
        self.layer, self.seed = layer, seed
        self.confirm, self.shrink_budget, self.invariants = confirm, shrink_budget, invariants
        self.by_signature: dict[Signature, Finding] = {}
        self.known: set[Signature] = set()     # found by an earlier run (files already in the folder)

    @property
    def dir(self) -> str:
        return os.path.join(self.folder, safe_name(self.target.name))

    def load_known(self) -> None:
        """Signatures saved by earlier runs into the same folder (a fuzzer reports each once)."""
        if not os.path.isdir(self.dir):
            return
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".mst"):
                continue
            try:
                p = load(os.path.join(self.dir, name))
            except (ProgramError, OSError):
                continue
            if p.meta("target") == self.target.name and p.meta("clause"):
                self.known.add(Signature(p.meta("clause") or "", p.meta("verdict") or "", p.meta("call") or ""))

    def consider(self, program: Program, j: Judgement, origin: str) -> tuple[str, Finding | None]:
        """A judged program (its judgement already ``localise``d): ``("pass", None)``;
        ``("seen", finding)`` when its failure's signature is a finding of this run already (counted)
        -- ``("seen", None)`` for one of an earlier run's; ``("flaky", None)`` when re-runs did not
        fail the same way (nothing saved); else ``("new", finding)``, confirmed, shrunk and saved."""
        f = j.failure
        if f is None:
            return "pass", None
        sig = Signature.of(program, f)
        if sig in self.by_signature:
            self.by_signature[sig].count += 1
            return "seen", self.by_signature[sig]
        if sig in self.known:
            return "seen", None
        if f.verdict is Verdict.FAIL and not confirm(self.target, program, self.facts, sig, self.confirm):
            self.known.add(sig)
            return "flaky", None
        # every try of a hang costs a whole time limit: shrink those on a small budget
        budget = self.shrink_budget if f.verdict is not Verdict.HANG else min(self.shrink_budget, 4)
        small = shrink_failure(self.target, program, self.facts, sig, budget)
        j2 = localise(self.target, small, self.facts, execute(self.target, small, self.facts, self.invariants),
                      invariants=self.invariants)
        if j2.failure is not None:
            program, j, f = small, j2, j2.failure
        return "new", self.record(program, f, j, origin, sig)

    def record(self, program: Program, f: Check, j: Judgement, origin: str,
               sig: Signature | None = None) -> Finding:
        """Save ``program`` as the finding of failure ``f`` (already confirmed, or flaky by the
        caller's account) and return it."""
        sig = sig or Signature.of(program, f)
        path = self._path(f.clause)
        replay = replay_command(path, self.target.name)
        header = {"memspec-program": "1", "target": self.target.name, "layer": self.layer, "seed": self.seed,
                  "clause": f.clause, "verdict": f.verdict.value, "call": sig.call, "found_by": origin,
                  "expected": _one_line(f.expected), "observed": _one_line(f.observed), "replay": replay}
        saved = Program(program.calls, ()).with_header(**header)
        write_text(path, format_program(saved))
        finding = Finding(sig, saved, f, j, path, replay, origin)
        self.by_signature[sig] = finding
        return finding

    def _path(self, clause: str) -> str:
        path = os.path.join(self.dir, f"{safe_name(clause)}.mst")
        n = 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.dir, f"{safe_name(clause)}-{n}.mst")
        return path


__all__ = ["Finding", "Findings", "replay_command", "safe_name"]
