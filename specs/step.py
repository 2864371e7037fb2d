"""One judged step: expect -> judge -> apply -> invariants, as the judge and every state machine
take it.

``judge_call`` is the step on an outcome already observed (the judge replays a whole run through
it); ``Stepper`` runs the call on a live session first (the state machines), turns a refusal by
the target's harness into an ``unsupported`` step that the run goes on past, a dead target into a
``memspec.target.alive`` failure, and a disagreement into a ``ConformanceFailure`` carrying the
program so far.

``os_judged`` is the judge's step for the os model: expect, judge and apply in one call, and
mmap, munmap and mprotect's common forms in one function each (``STEPS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from memspec.consts import PAGE_SIZE
from memspec.errors import SessionFailed
from memspec.program import Call, Program, bind_result, eval_args, format_call
from memspec.records import Check, Outcome, RunStatus, Verdict

from memspec.model.expect import Expect
from memspec.model.mm import _SEEN, System, _registers
from memspec.model.os import mappings
from memspec.model.os.mappings import (ANON_PRIVATE, PROT_RWX, PROT_SEM, _REMOVES_RANGE, _SETS_PROT, _UNMAPPED_OK,
                                       _anon_private, apply_mmap, apply_mprotect, apply_munmap, expect_mmap,
                                       expect_mprotect, expect_munmap)
from memspec.model.os.state import (PAGE_MASK, PROT_W, U64, Mm, OsState, exec_only as _exec_only, new_vma,
                                    reprotected)

from .catalogue import CATALOGUE, get as clause
from .failures import ConformanceFailure


def judge_call(model: Any, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome,
               index: int) -> list[Check]:
    """Judge ``observed`` as the outcome of ``call`` and, if the model allows it, adopt it.

    Returns the checks made: a single ``FAIL`` (blamed on the clause the observation broke; the
    model is left as it was) or the passing check of the call's clause and of every other clause
    the same check held the target to."""
    exp, bad = judge_outcome(model, proc, call, args, observed, index)
    if bad is not None:
        return [bad]
    seen = observed.describe()
    verdict = verdict_of(exp)
    checks = [Check(exp.clause, verdict, index, exp.describe, seen)]
    if exp.covers:
        checks += [Check(other, verdict, index, exp.describe, seen) for other in exp.covers if other != exp.clause]
    return checks


def judge_outcome(model: Any, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome,
                  index: int) -> tuple[Expect, Check | None]:
    """``judge_call``'s work without its passing checks: (the model's ``Expect``, the failing check or
    None).  Allowed, the outcome is adopted (``apply``, ``bind``); the passing checks are the
    ``Expect``'s clause and its ``covers``, each with ``verdict_of(exp)`` (every clause named is
    catalogued: looked up here)."""
    name = call.name
    exp = model.expect(proc, name, args)
    if exp.clause not in CATALOGUE:
        clause(exp.clause)   # every rule names a catalogued clause: a KeyError if not
    why = exp.judge(observed)
    if why is not None:
        return exp, Check(clause(exp.blame(observed)).id, Verdict.FAIL, index, exp.describe, observed.describe(), why)
    for other in exp.covers:
        if other not in CATALOGUE:
            clause(other)
    model.apply(proc, name, args, observed)
    model.bind(proc, name, call.result, observed)
    return exp, None


def verdict_of(exp: Expect) -> Verdict:
    """The verdict of an outcome ``exp`` allows."""
    return Verdict.UNKNOWN if exp.unknown else Verdict.IMPL_DEFINED if exp.impl_defined else Verdict.PASS


def invariant_failure(model: Any, index: int, full: bool = True) -> Check | None:
    """The first of the model's own invariants broken now, as a failing check.

    ``full``: every invariant recounted over the whole state (at checkpoints and at the end of a
    program); otherwise, after a step, each over the footprint of the steps since the last check,
    where the model offers that (``incremental_invariants``), else the full recount."""
    bad = model.invariants() if full or not getattr(type(model), "incremental_invariants", False) \
        else model.invariants(full=False)
    return invariant_check(bad, index)


def invariant_check(bad: list[tuple[str, str]], index: int) -> Check | None:
    """The first of ``bad`` (a model's broken invariants: clause, message) as a failing check."""
    for cid, msg in bad:
        return Check(cid, Verdict.FAIL, index, "the invariant holds", msg, "model invariant broken", at="invariant")
    return None


@dataclass
class Stepper:
    """A state machine's live session and the program it has run so far.

    ``step(call)`` runs one call on the target and judges it; it returns the outcome, or ``None``
    when the target's harness refused the step (counted in ``unsupported`` under the clause the
    step would have exercised, left out of the program: nothing happened on the target, so the
    model does not adopt it either)."""

    model: Any
    session: Any
    note: Callable[[str], None] = lambda msg: None
    unsupported: dict[str, int] = field(default_factory=dict)
    invariants: bool = False
    failure: type[ConformanceFailure] = ConformanceFailure
    calls: list[Call] = field(default_factory=list)
    env: dict[str, int] = field(default_factory=dict)

    def program(self, extra: tuple[Call, ...] = ()) -> Program:
        return Program(tuple(self.calls) + extra)

    def step(self, call: Call, args: tuple[int | str, ...] | None = None) -> Outcome | None:
        proc = call.proc or "main"
        args = eval_args(call, self.env) if args is None else args
        try:
            observed = self.session.call(call, args)
        except SessionFailed as e:
            if e.status is RunStatus.REFUSED:
                cid = self.model.expect(proc, call.name, args).clause
                self.unsupported[cid] = self.unsupported.get(cid, 0) + 1
                self.note(f"unsupported (refused by the target): {format_call(call)}: {e.message}")
                return None
            raise self.failure("memspec.target.alive", self.program((call,)), len(self.calls), "an answer",
                               e.message, e.status.value) from None
        self.calls.append(call)
        index = len(self.calls) - 1
        bad = self.judged(proc, call, args, observed, index)
        if bad is None and self.invariants:
            bad = invariant_failure(self.model, index, full=False)
        if bad is not None:
            raise self.failure(bad.clause, self.program(), index, bad.expected, bad.observed, bad.note)
        bind_result(self.env, call, observed.value)
        return observed

    def judged(self, proc: str, call: Call, args: tuple[int | str, ...], observed: Outcome, index: int) -> Check | None:
        """The call's outcome judged (and adopted by the model if allowed): the failing check, or None."""
        checks = judge_call(self.model, proc, call, args, observed, index)
        return checks[0] if checks[0].verdict is Verdict.FAIL else None

    def observe(self) -> Any:
        """The target's observation of its state (its memory maps), or None when its harness
        refused to give one; a target that crashes or hangs while observed is a failure of
        ``memspec.target.alive`` at the last call, as it is in a call."""
        try:
            return self.session.observe()
        except SessionFailed as e:
            if e.status is RunStatus.REFUSED:
                self.note(f"unsupported (refused by the target): observing its state: {e.message}")
                return None
            raise self.failure("memspec.target.alive", self.program(), max(len(self.calls) - 1, 0),
                               "its memory maps", e.message, e.status.value) from None

    def check_invariants(self, full: bool = False) -> None:
        """The model's invariants after the last step (a state machine's ``@invariant``): over the
        steps' footprint, or (``full``, at the end of a run) recounted over the whole state."""
        index = max(len(self.calls) - 1, 0)
        bad = invariant_failure(self.model, index, full)
        if bad is not None:
            raise self.failure(bad.clause, self.program(), index, bad.expected, bad.observed, bad.note)


__all__ = ["judge_call", "judge_outcome", "verdict_of", "invariant_failure", "invariant_check", "Stepper"]


# -- the os model's judged step --------------------------------------------------------------------------
# The judge's own path for the os model (``System``): ``os_judged`` asks the call's rule (expect, the
# answer's judge and, for an allowed outcome, apply) in one call, and mmap, munmap and mprotect's common
# forms in one function each (``STEPS``).  Each of these answers the call as its rule's expect does
# (model.os.mappings), judges the outcome by that answer and, if it is allowed, adopts it as the rule's apply
# does, where the common form lets one function do all three: the range's VMAs found once, the passing
# outcome (exactly 0, or a free address) recognised without the answer's judge, the VMA tree changed without
# unmap's walk of a process that holds no per-page state.  Any other form is asked through the rule's
# expect, judge and apply, one by one.  Only the judge runs these (no target does: they live here, with
# the step, not in the model); tests/os/test_lean_steps.py holds them to the plain model, and each of their
# fallbacks to a form without it.

# the methods ``os_judged`` and the one-call forms stand in for, or skip where they would do nothing
# (unmap's walk of a process without per-page state): a class with its own is judged through them
STOOD_IN = ("expect", "apply", "unmap", "split_huge", "pages_in", "drop_page")


def fused(cls: type) -> bool:
    """Whether ``os_judged`` may judge a model of class ``cls``: an os ``System`` without a form of its
    own of any of ``STOOD_IN`` (a test's broken model has one)."""
    return issubclass(cls, System) and all(getattr(cls, n) is getattr(System, n) for n in STOOD_IN)


def os_judged(system: System, proc: str, name: str, args: tuple, observed: Outcome) -> tuple[Expect, str | None]:
    """``system.expect``, its answer's ``judge`` of ``observed`` and, if that allows it, ``system.apply``, in
    one call: (the answer, why ``observed`` is refused or None).  For a model ``fused`` allows; mmap, munmap
    and mprotect answer and adopt in one function each (``STEPS``), but where ``system``'s rule is another."""
    mm = system.procs.get(proc)
    if mm is None or system.config.page_size != PAGE_SIZE:
        exp = system.expect(proc, name, args)
        why = exp.judge(observed)
        if why is None:
            system.apply(proc, name, args, observed)
        return exp, why
    seen = _SEEN.get(name)      # (mm._registers: the arguments asked before)
    try:
        regs = seen.get(args) if seen is not None else None
    except TypeError:
        regs = None
    if regs is None:
        regs = _registers(name, args)
    rule = system.rules[name]
    step = STEPS.get(name)
    if step is not None and step[0] is rule:
        return step[1](system, proc, mm, observed, *regs)
    exp = rule.expect(system, mm, *regs)
    why = exp.judge(observed)
    if why is None and rule.apply is not None:
        rule.apply(system, proc, mm, observed, *regs)
    return exp, why


def _one_by_one(e: Expect, apply: Any, sys: OsState, proc: str, mm: Mm, o: Outcome,
                *regs: int) -> tuple[Expect, str | None]:
    why = e.judge(o)
    if why is None:
        apply(sys, proc, mm, o, *regs)
    return e, why


def _paged(mm: Mm) -> bool:
    """Whether unmap (OsState.unmap) has more to do than change the VMA tree: huge mappings to split,
    pages, PTEs or their traces to drop, guard markers."""
    return bool(mm.huge or mm.thp_maybe or mm.pte or mm.anon or mm.maybe or mm.last_ref or mm.guard)


def step_mmap(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int, flags: int, fd: int,
              offset: int) -> tuple[Expect, str | None]:
    """mmap: anonymous private memory without a hint is answered by its placement alone
    (mappings._anon_private: posix.mmap.new-range-free, no limit near); an address that answer allows
    is free, so apply_mmap has nothing to unmap there, nor to populate or lock."""
    e = None
    if flags == ANON_PRIVATE and not addr and not offset and not mm.mcl_future:
        e = _anon_private(sys, mm, length, prot)
    if e is None or e is not mm.last_placement[1] or _paged(mm):
        if e is None:
            e = expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)
        return _one_by_one(e, apply_mmap, sys, proc, mm, o, addr, length, prot, flags, fd, offset)
    why = e.predicate(o)        # (Expect.judge of a placement)
    if why is None and o.errno is None and o.signal is None and o.value is not None:
        start = o.value
        mm.vmas.set_free(start, start + ((length + PAGE_SIZE - 1) & PAGE_MASK), new_vma(
            prot & PROT_RWX, False, None, 0, _exec_only(sys, prot), "posix.mmap.maps-range", False, False, True,
            False, False))      # (apply_mmap's VMA of anonymous private memory)
    return e, why


def step_munmap(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> tuple[Expect, str | None]:
    """munmap of an aligned range below TASK_SIZE, without a sealed VMA (linux.mseal.eperm) or a hole
    inside one VMA (linux.munmap.enomem-max-map-count near the limit) in it: posix.munmap.removes-range
    (posix.munmap.unmapped-ok where nothing is mapped), the VMAs found for the answer removed."""
    c = sys.config
    end = addr + ((length + PAGE_SIZE - 1) & PAGE_MASK)
    if addr & ~PAGE_MASK or addr > c.task_size or length > c.task_size - addr or end == addr or _paged(mm):
        return _one_by_one(expect_munmap(sys, mm, addr, length), apply_munmap, sys, proc, mm, o, addr, length)
    hits = mm.vmas.overlapping(addr, end)
    e = _REMOVES_RANGE if hits else _UNMAPPED_OK
    for s, t, v in hits:
        if v.sealed or s < addr and end < t:
            return _one_by_one(expect_munmap(sys, mm, addr, length), apply_munmap, sys, proc, mm, o, addr, length)
    if o.value != 0 or o.errno is not None or o.signal is not None:
        return e, e.judge(o)
    mm.vmas.remove_found(addr, end, hits)       # OsState.unmap of a process without per-page state
    gone = None
    for _, _, v in hits:
        if v.obj is not None:
            gone = gone or set()
            gone.add(v.obj)
    if gone:
        sys.collect(gone)
    return e, None


def step_mprotect(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int,
                  prot: int) -> tuple[Expect, str | None]:
    """mprotect of whole VMAs without a hole, with a valid prot, none sealed (linux.mseal.eperm), none
    refusing the write (posix.mprotect.eacces-shared-readonly-fd) or turning private memory writable (the
    limits of data): posix.mprotect.sets-prot, no split (linux.mprotect.enomem-max-map-count) to ask about;
    each VMA found for the answer re-protected in place."""
    end = addr + ((length + PAGE_SIZE - 1) & PAGE_MASK)
    hits = () if prot & ~(PROT_RWX | PROT_SEM) or addr & ~PAGE_MASK or end <= addr or end > U64 or \
        mm.huge or mm.thp_maybe else mm.vmas.overlapping(addr, end)
    cursor = addr
    for s, t, v in hits:
        if s != cursor or v.sealed or prot & PROT_W and (not v.may_write or not v.shared and not v.prot & PROT_W):
            break
        cursor = t
    if not hits or cursor != end:
        return _one_by_one(expect_mprotect(sys, mm, addr, length, prot), apply_mprotect, sys, proc, mm, o, addr,
                           length, prot)
    if o.value != 0 or o.errno is not None or o.signal is not None:
        return _SETS_PROT, _SETS_PROT.judge(o)
    if mm.pte or mm.anon or mm.maybe or mm.last_ref:
        apply_mprotect(sys, proc, mm, o, addr, length, prot)
    else:       # (apply_mprotect without pages)
        p, xo = prot & PROT_RWX, _exec_only(sys, prot)
        for s, t, v in hits:
            mm.vmas.set(s, t, reprotected(v, p, xo, "posix.mprotect.sets-prot"))
    return _SETS_PROT, None


# call -> (the rule, its one-call form): os_judged takes the form only for that very rule
STEPS = {"mmap": (mappings.RULES["mmap"], step_mmap), "munmap": (mappings.RULES["munmap"], step_munmap),
         "mprotect": (mappings.RULES["mprotect"], step_mprotect)}
