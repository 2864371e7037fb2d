"""Shared record types: what a target observed, what a clause says, what the judge decided.

Data flows one way: program -> target -> ``Outcome``/``Observation`` -> model
judgement (``Check``) -> report.  All records are frozen and plain, so that they
cross processes (JSON) and compare by value.
"""

from __future__ import annotations

import enum
import operator
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
        if self.detail:
            return Outcome, (self.value, self.errno, self.signal, self.detail)
        return _outcome, (self.value, self.errno, self.signal)

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


# Outcomes without detail, unpickled, by value: a run's outcomes repeat (a call's 0, an errno, the
# address the kernel hands back again), and the judge's process takes them by the thousand.  Equal
# values, one object (they are frozen); the table is emptied when it grows past _OUTCOMES_KEPT.
_OUTCOMES: dict[tuple[Any, Any, Any], Outcome] = {}
_OUTCOMES_KEPT = 4096


def _outcome(value: int | None, errno: str | None, signal: str | None) -> Outcome:
    if not (type(value) is int or value is None) or not (type(errno) is str or errno is None) \
            or not (type(signal) is str or signal is None):
        return Outcome(value, errno, signal)        # (True equals 1, but crosses as itself)
    key = (value, errno, signal)
    o = _OUTCOMES.get(key)
    if o is None:
        if len(_OUTCOMES) >= _OUTCOMES_KEPT:
            _OUTCOMES.clear()
        o = _OUTCOMES[key] = Outcome(value, errno, signal)
    return o


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of a process's memory map, as the target reports it (start inclusive, end exclusive)."""

    start: int
    end: int
    perms: str   # "rw-p": read, write, exec, then p(rivate) or s(hared)

    def __reduce__(self) -> tuple:
        return Mapping, (self.start, self.end, self.perms)


# the most map lines (and outcomes) a process keeps by value; past it the table starts again
_TABLE_MAX = 1 << 15


class _Mappings(dict):
    """The mappings a process has unpickled, by (start, end, perms): a map line read again -- the
    same libraries in every program's observation, a parent's lines in its child's -- is the same
    frozen ``Mapping``, looked up without a Python call (``RunResult``'s reduction)."""

    def __missing__(self, key: tuple) -> Mapping:
        if len(self) >= _TABLE_MAX:
            self.clear()
        m = self[key] = Mapping(*key)
        return m


_MAPPINGS = _Mappings()
_mapping_fields = operator.attrgetter("start", "end", "perms")


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


_JUST_MAPPING = {Mapping}


def _observation_fields(obs: Observation) -> tuple | None:
    """``(maps, extra)`` with each process's mappings as ``(start, end, perms)`` triples; None where
    a map is not a tuple of plain ``Mapping``s (the run is pickled field by field then)."""
    if type(obs.maps) is not tuple:
        return None
    maps = []
    for entry in obs.maps:
        if type(entry) is not tuple or len(entry) != 2:
            return None
        proc, ms = entry
        if type(ms) is not tuple or (ms and set(map(type, ms)) != _JUST_MAPPING):
            return None
        maps.append((proc, tuple(map(_mapping_fields, ms))))
    return tuple(maps), obs.extra


def _observation(maps: tuple, extra: tuple) -> Observation:
    get = _MAPPINGS.__getitem__
    return Observation(tuple([(proc, tuple(map(get, triples))) for proc, triples in maps]), extra)


class RunStatus(enum.Enum):
    OK = "ok"                # every call ran and produced an outcome
    CRASH = "crash"          # the target died (signal, exit) before the program's end
    HANG = "hang"            # the target exceeded its time limit
    REFUSED = "refused"      # the target declined the program (unsupported or unsafe)
    ERROR = "error"          # the target answered nonsense (protocol violation)

    def __reduce_ex__(self, protocol: Any) -> str:
        return "RunStatus." + self._name_       # by name: unpickled by a lookup, not the enum's constructor


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a target reports for one program: an outcome per call that ran, checkpoints, status."""

    outcomes: tuple[Outcome, ...]
    observations: tuple[tuple[int, Observation], ...] = ()   # (index of the call after which, state)
    status: RunStatus = RunStatus.OK
    message: str = ""

    def __reduce__(self) -> tuple:
        # the judge process gets a run a program: its outcomes as plain values and its observations'
        # map lines as triples (``_run``), where they are the plain records; else field by field
        if type(self.outcomes) is tuple and type(self.observations) is tuple:
            codes = _outcome_codes(self.outcomes)
            obs = [] if codes is not None else None
            for item in self.observations if codes is not None else ():
                if type(item) is not tuple or len(item) != 2 or type(item[1]) is not Observation:
                    obs = None
                    break
                fields = _observation_fields(item[1])
                if fields is None:
                    obs = None
                    break
                obs.append((item[0], *fields))
            if obs is not None:
                return _run, (codes, tuple(obs), self.status, self.message)
        return RunResult, (self.outcomes, self.observations, self.status, self.message)

    def observation_after(self, index: int) -> Observation | None:
        for i, o in self.observations:
            if i == index:
                return o
        return None


def _outcome_codes(outcomes: tuple) -> tuple | None:
    """Each outcome as ``_outcomes`` reads it back: None for OK, its value for a plain value, its errno
    for a plain errno, ``(value, errno)`` for both, else the ``Outcome`` itself; None where one is
    not an ``Outcome``."""
    codes: list[Any] = []
    put = codes.append
    for o in outcomes:
        if o is OK:
            put(None)
        elif type(o) is not Outcome:
            return None
        elif o.signal is None and o.detail == () and type(o.detail) is tuple:
            v, e = o.value, o.errno
            if e is None:
                put(None if v is None else v if type(v) is int else o)
            elif type(e) is not str:
                put(o)
            else:
                put(e if v is None else (v, e) if type(v) is int else o)
        else:
            put(o)
    return tuple(codes)


class _Outcomes(dict):
    """The outcomes a process has unpickled, by code (``_outcome_codes``): a value or an errno seen
    before -- 0, -1 EINVAL, an address the kernel hands out again -- is the same frozen ``Outcome``,
    found without a Python call; OK is OK.  An ``Outcome`` that stands for itself is not kept."""

    def __missing__(self, code: Any) -> Outcome:
        if type(code) is Outcome:
            return code
        if len(self) >= _TABLE_MAX:
            self.clear()
        if code is None:
            o = OK
        elif type(code) is int:
            o = Outcome(code)
        elif type(code) is str:
            o = Outcome(None, code)
        else:
            o = Outcome(code[0], code[1])
        self[code] = o
        return o


_OUTCOMES = _Outcomes()


def _outcomes(codes: tuple) -> tuple:
    try:
        return tuple(map(_OUTCOMES.__getitem__, codes))
    except TypeError:           # an outcome whose detail does not hash: the others one by one
        return tuple([x if type(x) is Outcome else _OUTCOMES[x] for x in codes])


def _run(codes: tuple, observations: tuple, status: RunStatus, message: str) -> RunResult:
    return RunResult(_outcomes(codes), tuple([(i, _observation(maps, extra)) for i, maps, extra in observations]),
                     status, message)


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

    def __reduce_ex__(self, protocol: Any) -> str:
        return "Verdict." + self._name_         # by name: unpickled by a lookup, not Verdict('pass')


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
