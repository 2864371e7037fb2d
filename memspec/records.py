"""Shared record types: what a target observed, what a clause says, what the judge decided.

Data flows one way: program -> target -> ``Outcome``/``Observation`` -> model
judgement (``Check``) -> report.  All records are frozen and plain, so that they
cross processes (JSON) and compare by value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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

    def __reduce__(self) -> tuple:      # pickled by its fields: the judge process gets outcomes by the thousand
        if self.value is None and self.errno is None and self.signal is None and not self.detail:
            return _ok, ()              # the OK the judge finds by identity stays OK across processes
        return Outcome, (self.value, self.errno, self.signal, self.detail)

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


def _ok() -> Outcome:
    return OK


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of a process's memory map, as the target reports it (start inclusive, end exclusive)."""

    start: int
    end: int
    perms: str   # "rw-p": read, write, exec, then p(rivate) or s(hared)

    def __reduce__(self) -> tuple:
        return Mapping, (self.start, self.end, self.perms)


@dataclass(frozen=True, slots=True)
class Observation:
    """State at a checkpoint: per process, its mappings (and, later layers, more)."""

    maps: tuple[tuple[str, tuple[Mapping, ...]], ...] = ()   # (proc name, mappings)
    extra: tuple[tuple[str, Any], ...] = ()

    def __reduce__(self) -> tuple:
        return Observation, (self.maps, self.extra)

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

    def __reduce__(self) -> tuple:
        return RunResult, (self.outcomes, self.observations, self.status, self.message)

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

    def __reduce__(self) -> tuple:
        return Check, (self.clause, self.verdict, self.index, self.expected, self.observed, self.note, self.at)


_c_clause, _c_verdict, _c_index, _c_expected, _c_observed, _c_note, _c_at = (
    Check.__dict__[f].__set__ for f in ("clause", "verdict", "index", "expected", "observed", "note", "at"))


class Judgement:
    """All checks of one program on one target, in call order; the first failure ends judging.

    ``checks`` is a plain list of ``Check``.  The judge records a passing call compactly
    (``add_pass``: its clause, verdict, index, expected text and the observed ``Outcome``) and the
    ``Check`` is made, with the outcome's description, when ``checks`` is next read: the same list,
    in the same order, as if it had been made at once.  ``failure`` and ``passed`` read the compact
    entries without making them (a compact entry never fails)."""

    __slots__ = ("target", "_checks", "_made", "status", "message", "context")

    def __init__(self, target: str, checks: list[Check] | None = None, status: RunStatus = RunStatus.OK,
                 message: str = "", context: dict[str, Any] | None = None) -> None:
        self.target = target
        # Checks, and compact passing entries (clause, verdict, index, expected, observed Outcome)
        self._checks: list[Any] = [] if checks is None else checks
        self._made = 0          # _checks[:_made] are all Checks
        self.status = status
        self.message = message
        # the os-layer state before and after the failing call, for the report
        self.context: dict[str, Any] = {} if context is None else context

    def add_pass(self, clause: str, verdict: Verdict, index: int, expected: str, observed: Outcome) -> None:
        """A passing check, its ``Check`` made when ``checks`` is next read."""
        self._checks.append((clause, verdict, index, expected, observed))

    def sink(self) -> Any:
        """An append for the judge's loop: it takes a ``Check``, or a passing check as ``add_pass``'s
        tuple ``(clause, verdict, index, expected, observed)``.  Between two reads of ``checks``
        the list only grows, through this append (or ``add_pass``)."""
        return self._checks.append

    @property
    def checks(self) -> list[Check]:
        items = self._checks
        n = len(items)
        for k in range(self._made if self._made <= n else 0, n):
            c = items[k]
            if type(c) is tuple:
                clause, verdict, index, expected, observed = c
                items[k] = Check(clause, verdict, index, expected, observed.describe())
        self._made = n
        return items

    @checks.setter
    def checks(self, value: list[Check]) -> None:
        self._checks = value
        self._made = 0

    @property
    def failure(self) -> Check | None:
        for c in self._checks:
            if type(c) is not tuple and c.verdict in (Verdict.FAIL, Verdict.CRASH, Verdict.HANG, Verdict.ERROR):
                return c
        return None

    @property
    def passed(self) -> bool:
        return self.failure is None

    def __eq__(self, other: object) -> bool:
        if type(other) is not Judgement:
            return NotImplemented
        return (self.target, self.checks, self.status, self.message, self.context) == \
            (other.target, other.checks, other.status, other.message, other.context)

    __hash__ = None  # type: ignore[assignment]   # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        return (f"Judgement(target={self.target!r}, checks={self.checks!r}, status={self.status!r}, "
                f"message={self.message!r}, context={self.context!r})")

    def detached(self, outcomes: Any) -> "Judgement":
        """This judgement with each compact entry's observed outcome left out where it is the run's
        own (``outcomes[index]``, the very object): for a process that holds the run already, which
        puts them back with ``attach`` -- half the bytes, and a tenth of the pickling."""
        n = len(outcomes)
        items = [(c[0], c[1], c[2], c[3], None) if type(c) is tuple and c[2] < n and c[4] is outcomes[c[2]] else c
                 for c in self._checks]
        return _judgement(self.target, items, self._made, self.status, self.message, self.context)

    def attach(self, outcomes: Any) -> "Judgement":
        """Put back the observed outcomes ``detached`` left out (from an equal run)."""
        items = self._checks
        for k in range(self._made, len(items)):
            c = items[k]
            if type(c) is tuple and c[4] is None:
                items[k] = (c[0], c[1], c[2], c[3], outcomes[c[2]])
        return self

    def __reduce__(self) -> tuple:
        # the compact entries cross as they are (the judge process sends judgements back): equal
        # once read, and the descriptions are made only if a report reads them
        return _judgement, (self.target, self._checks, self._made, self.status, self.message, self.context)


def _judgement(target: str, items: list[Any], made: int, status: RunStatus, message: str,
               context: dict[str, Any]) -> Judgement:
    j = Judgement(target, items, status, message, context)
    j._made = made
    return j
