"""Shared record types: what a target observed, what a clause says, what the judge decided.

Data flows one way: program -> target -> ``Outcome``/``Observation`` -> model
judgement (``Check``) -> report.  All records are frozen and plain, so that they
cross processes (JSON) and compare by value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


# Outcome and Check are made once per judged call or more (the judge's hot path): their __init__
# sets the slots through the slots' own descriptors, which is about a third cheaper than the frozen
# dataclass's generated __init__ (object.__setattr__ by name per field); they stay frozen, compare
# and hash by value as before.

@dataclass(frozen=True, slots=True, init=False)
class Outcome:
    """What one call did: a value, or an errno, or a signal (never more than one)."""

    value: int | None = None
    errno: str | None = None      # "EINVAL", …
    signal: str | None = None     # "SIGSEGV", "SIGBUS", …
    # extra detail a target may report (e.g. a fault's error code); not compared
    detail: tuple[tuple[str, Any], ...] = ()

    def __init__(self, value: int | None = None, errno: str | None = None, signal: str | None = None,
                 detail: tuple[tuple[str, Any], ...] = ()) -> None:
        _o_value(self, value)
        _o_errno(self, errno)
        _o_signal(self, signal)
        _o_detail(self, detail)

    @property
    def ok(self) -> bool:
        return self.errno is None and self.signal is None

    def describe(self) -> str:
        if self.signal:
            d = dict(self.detail)
            if isinstance(d.get("errcode"), int):     # a fault: its error code and faulting address belong to it
                return f"{self.signal} errcode={d['errcode']:#x}" + (
                    f" cr2={d['cr2']:#x}" if isinstance(d.get("cr2"), int) else "")
            return self.signal
        if self.errno:
            return f"-1 {self.errno}"
        if self.value is None:
            return "ok"
        return hex(self.value) if abs(self.value) >= 4096 else str(self.value)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.value is not None:
            d["value"] = self.value
        if self.errno:
            d["errno"] = self.errno
        if self.signal:
            d["signal"] = self.signal
        if self.detail:
            d["detail"] = dict(self.detail)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Outcome":
        detail = d.get("detail") or {}
        return cls(d.get("value"), d.get("errno"), d.get("signal"), tuple(sorted(detail.items())))


_o_value, _o_errno, _o_signal, _o_detail = (Outcome.__dict__[f].__set__ for f in ("value", "errno", "signal", "detail"))
OK = Outcome()


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of a process's memory map, as the target reports it (start inclusive, end exclusive)."""

    start: int
    end: int
    perms: str   # "rw-p": read, write, exec, then p(rivate) or s(hared)


@dataclass(frozen=True, slots=True)
class Observation:
    """State at a checkpoint: per process, its mappings (and, later layers, more)."""

    maps: tuple[tuple[str, tuple[Mapping, ...]], ...] = ()   # (proc name, mappings)
    extra: tuple[tuple[str, Any], ...] = ()

    def maps_of(self, proc: str) -> tuple[Mapping, ...] | None:
        for p, m in self.maps:
            if p == proc:
                return m
        return None


class RunStatus(enum.Enum):
    OK = "ok"                # every call ran and produced an outcome
    CRASH = "crash"          # the target died (signal, exit) before the program's end
    HANG = "hang"            # the target exceeded its time limit
    REFUSED = "refused"      # the target declined the program (unsupported or unsafe)
    ERROR = "error"          # the target answered nonsense (protocol violation)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a target reports for one program: an outcome per call that ran, checkpoints, status."""

    outcomes: tuple[Outcome, ...]
    observations: tuple[tuple[int, Observation], ...] = ()   # (index of the call after which, state)
    status: RunStatus = RunStatus.OK
    message: str = ""

    def observation_after(self, index: int) -> Observation | None:
        for i, o in self.observations:
            if i == index:
                return o
        return None


@dataclass(frozen=True, slots=True)
class Clause:
    """One checkable statement of a specification, with a stable ID and its source."""

    id: str            # "posix.mmap.einval-len0"
    layer: str         # "os"
    statement: str     # one line
    citation: str      # "POSIX.1-2024 mmap(), ERRORS"; "mmap(2) Linux man-pages 6.9, ERRORS"
    kernel_differs: str = ""   # where Linux differs from POSIX: what and why we model the kernel


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"             # the model cannot decide: never a failure
    UNSUPPORTED = "unsupported"     # an optional feature the target lacks
    IMPL_DEFINED = "impl-defined"   # an allowed choice, recorded with the choice made
    CRASH = "crash"
    HANG = "hang"
    ERROR = "error"                 # the target broke the protocol or the harness could not run it


@dataclass(frozen=True, slots=True, init=False)
class Check:
    """One judgement: a clause applied to one call (or checkpoint) of one program."""

    clause: str
    verdict: Verdict
    index: int                 # call index (-1: whole program)
    expected: str = ""
    observed: str = ""
    note: str = ""
    at: str = "call"           # "call", "checkpoint" (state compared after the call) or "invariant"

    def __init__(self, clause: str, verdict: Verdict, index: int, expected: str = "", observed: str = "",
                 note: str = "", at: str = "call") -> None:
        _c_clause(self, clause)
        _c_verdict(self, verdict)
        _c_index(self, index)
        _c_expected(self, expected)
        _c_observed(self, observed)
        _c_note(self, note)
        _c_at(self, at)


_c_clause, _c_verdict, _c_index, _c_expected, _c_observed, _c_note, _c_at = (
    Check.__dict__[f].__set__ for f in ("clause", "verdict", "index", "expected", "observed", "note", "at"))


@dataclass(slots=True)
class Judgement:
    """All checks of one program on one target, in call order; the first failure ends judging."""

    target: str
    checks: list[Check] = field(default_factory=list)
    status: RunStatus = RunStatus.OK
    message: str = ""
    # the os-layer state before and after the failing call, for the report
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def failure(self) -> Check | None:
        for c in self.checks:
            if c.verdict in (Verdict.FAIL, Verdict.CRASH, Verdict.HANG, Verdict.ERROR):
                return c
        return None

    @property
    def passed(self) -> bool:
        return self.failure is None
