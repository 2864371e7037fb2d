"""The results of a run, as plain data that report writers read (and nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClauseStats:
    exercised: int = 0
    counts: dict[str, int] = field(default_factory=dict)   # verdict value -> count

    def add(self, verdict: str) -> None:
        self.exercised += 1
        self.counts[verdict] = self.counts.get(verdict, 0) + 1


@dataclass
class Failure:
    clause: str
    statement: str
    citation: str
    verdict: str
    program: str            # minimal program text (with its header)
    call_index: int
    call_text: str
    expected: str
    observed: str
    note: str
    replay: str             # one command that replays it
    file: str = ""          # where the program was saved
    count: int = 1          # failures with this signature
    expected_difference: str = ""   # why the differences entry that explains it allows it, if one does
    excused_by: str = ""            # that entry: its file and id, the versions it covers, the upstream fix
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> tuple[str, str, str]:
        return (self.clause, self.verdict, self.call_text.split("(")[0].split("=")[-1].strip())


@dataclass
class TargetResults:
    name: str
    layers: list[str]
    facts: dict[str, Any] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    programs: int = 0
    calls: int = 0
    not_applicable: int = 0          # programs using calls the target does not implement
    clauses: dict[str, ClauseStats] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    never_exercised: list[str] = field(default_factory=list)
    not_observable: dict[str, str] = field(default_factory=dict)   # clause -> why this target cannot show it
    machine: dict[str, Any] = field(default_factory=dict)          # state-machine statistics
    fault_path: dict[str, int] = field(default_factory=dict)       # the model's fault-path counters, summed
    # clause -> programs skipped as not applicable that would have exercised it (judged on the model)
    not_applicable_clauses: dict[str, int] = field(default_factory=dict)
    timeline: list[list[float]] = field(default_factory=list)      # [seconds, programs, clauses, failures] samples
    stopped: str = ""      # why judging this target stopped early (it kept crashing or hanging); "" if it did not

    def unexplained(self) -> list[Failure]:
        return [f for f in self.failures if not f.expected_difference]


@dataclass
class RunResults:
    command: str
    seed: int
    started: str
    duration_s: float = 0.0
    interrupted: bool = False
    interrupted_by: str = ""          # "SIGINT" (Ctrl-C) or "SIGTERM"
    exit_code: int | None = None      # the code the command exits with (set before the report is written)
    targets: list[TargetResults] = field(default_factory=list)
    catalogue: dict[str, dict[str, str]] = field(default_factory=dict)   # id -> statement, citation, layer
    coverage: dict[str, Any] = field(default_factory=dict)   # the model's line/branch coverage (check --coverage)
    # malloc targets: {columns, rows} of what each library chose where the standards allow a choice
    impl_choices: dict[str, Any] = field(default_factory=dict)

    @property
    def unexplained_failures(self) -> int:
        return sum(len(t.unexplained()) for t in self.targets)
