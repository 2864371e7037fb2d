"""The differential executor: run a program on a target, judge it with the model,
confirm a failure by re-running it, and shrink it to a minimal program that
fails the same clause the same way."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from memspec.program import Arg, Call, Flags, Int, Program, ProgramError, Ref, Str, validate
from memspec.records import Check, Judgement, RunStatus, Verdict
from memspec.specs.judge import judge
from memspec.specs.kinds import kind_of


@dataclass(frozen=True)
class Signature:
    """What makes two failures 'the same': clause, verdict and the failing call's name."""

    clause: str
    verdict: str
    call: str

    @classmethod
    def of(cls, program: Program, check: Check) -> "Signature":
        # A checkpoint failure attaches to whichever call came last: the call is not part of it.
        name = (program.calls[check.index].name if 0 <= check.index < len(program.calls) and check.at == "call"
                else check.at)
        if check.clause == "memspec.target.alive":
            name = "any"    # a target that hangs or crashes does so whatever the call: one failure, not one per call
        return cls(check.clause, check.verdict.value, name)


def execute(target: Any, program: Program, facts: dict[str, Any], invariants: bool = True,
            observe: str = "end") -> Judgement:
    run = target.run(program, observe=observe)
    return judge(program, run, target.name, facts, invariants=invariants)


def localise(target: Any, program: Program, facts: dict[str, Any], j: Judgement,
             invariants: bool = True) -> Judgement:
    """A failure seen only at a later checkpoint (the state compared after the last call) is blamed
    on the call that caused it: the program runs again with a checkpoint after every call, and the
    first one at which the target's state differs names the call and the clause it stands for (the
    model's record of which call last set that state).  If that run does not fail the same way
    earlier, the failure stays where it was and its note says the cause could not be told."""
    f = j.failure
    if f is None or f.at != "checkpoint" or f.index <= 0:
        return j
    each = execute(target, program, facts, invariants, observe="each")
    g = each.failure
    if g is not None and g.index <= f.index and g.verdict is f.verdict:
        return each
    j.checks[j.checks.index(f)] = replace(
        f, note=(f.note + "; " if f.note else "") + "seen at this checkpoint only: which call caused it could not be told")
    return j


def failing_signature(target: Any, program: Program, facts: dict[str, Any]) -> Signature | None:
    j = localise(target, program, facts, execute(target, program, facts))
    f = j.failure
    return Signature.of(program, f) if f else None


def confirm(target: Any, program: Program, facts: dict[str, Any], sig: Signature, k: int = 3) -> bool:
    """True if ``program`` fails with ``sig`` on every one of ``k`` more runs."""
    return all(failing_signature(target, program, facts) == sig for _ in range(k))


def without_calls(program: Program, idx: set[int]) -> Program | None:
    """The program without calls ``idx`` (and calls that used their results); None if invalid."""
    gone_names: set[str] = set()
    keep: list[Call] = []
    for i, c in enumerate(program.calls):
        uses = {a.name for a in c.args if isinstance(a, Ref)} | ({c.proc} if c.proc else set())
        if i in idx or uses & gone_names:
            if c.result:
                gone_names.add(c.result)
            continue
        keep.append(c)
    p = program.with_calls(keep)
    try:
        validate(p)
    except ProgramError:
        return None
    return p


PAGE = 4096


def _num(v: int) -> Int:
    return Int(v, hex=abs(v) >= PAGE)


def _simpler_int(kind: str, v: int) -> list[int]:
    """Simpler values of a number of ``kind`` (specs/kinds.py), simplest first."""
    if kind == "flags":                 # a raw flag word: drop one bit at a time, the highest first
        bits = [b for b in range(64) if v >= 0 and v >> b & 1]
        return [v & ~(1 << b) for b in reversed(bits)][:8] if len(bits) > 1 else ([0] if v else [])
    if kind == "addr":                  # page-aligned (an absolute address means where it points: no further)
        return [v & ~(PAGE - 1)] if v > 0 and v % PAGE else []
    if kind == "size":                  # one page, then whole pages, then half as many (a page or less stays)
        out = [PAGE] if v > PAGE or v < 0 else []
        if v > PAGE and v % PAGE:
            out.append(v - v % PAGE)
        elif v > 2 * PAGE:
            out.append(v // 2 - v // 2 % PAGE)
        return out
    out = [0] if v else []              # toward zero
    half = int(v / 2)
    return out + ([half] if half not in (0, v) else [])


def _simpler_arg(kind: str, a: Arg) -> list[Arg]:
    """Simpler forms of one argument by its kind, simplest first."""
    if isinstance(a, Ref):
        if not a.offset:
            return []
        # the named result itself, then a page-aligned offset, then half as far (earlier)
        out: list[Arg] = [Ref(a.name)]
        aligned = int(a.offset / PAGE) * PAGE
        half = int(a.offset / 2 / PAGE) * PAGE
        for off in (aligned if a.offset % PAGE else half,):
            if off and off != a.offset:
                out.append(Ref(a.name, off))
        return out
    if isinstance(a, Flags):            # fewer constants: drop one at a time, the last first
        if len(a.names) > 1:
            return [Flags(a.names[:i] + a.names[i + 1:]) for i in reversed(range(len(a.names)))]
        return [Int(0)] if kind == "flags" else []
    if isinstance(a, Str):
        return [Str(a.value[:n]) for n in sorted({len(a.value) // 2, 1}) if n < len(a.value)]
    if isinstance(a, Int):
        return [_num(v) for v in dict.fromkeys(_simpler_int(kind, a.value)) if v != a.value]
    return []


def _simpler_args(c: Call) -> list[Call]:
    """Candidate simplifications of one call's arguments, each argument by its kind, simplest first."""
    out = []
    for i, a in enumerate(c.args):
        for b in _simpler_arg(kind_of(c.spec, i), a):
            out.append(Call(c.name, c.args[:i] + (b,) + c.args[i + 1:], c.result, c.proc))
    return out


def _drop_calls(best: Program, still_fails: Callable[[Program], bool], tries: int, budget: int) -> tuple[Program, int]:
    """Delta debugging over calls: chunks, then single calls (syzkaller's coarse-to-fine order)."""
    n = 2
    while len(best.calls) >= 2 and tries < budget:
        chunk = max(1, len(best.calls) // n)
        progressed = False
        for start in range(0, len(best.calls), chunk):
            cand = without_calls(best, set(range(start, min(start + chunk, len(best.calls)))))
            tries += 1
            if cand is not None and len(cand.calls) < len(best.calls) and still_fails(cand):
                best = cand
                n = max(n - 1, 2)
                progressed = True
                break
            if tries >= budget:
                break
        if not progressed:
            if chunk == 1:
                break
            n = min(n * 2, len(best.calls))
    return best, tries


def _simplify_args(best: Program, still_fails: Callable[[Program], bool], tries: int,
                   budget: int) -> tuple[Program, int, bool]:
    """Each call's arguments, one at a time, as simple as the failure allows."""
    changed_any = False
    i = 0
    while i < len(best.calls) and tries < budget:
        changed = False
        for simpler in _simpler_args(best.calls[i]):
            cand = best.with_calls(best.calls[:i] + (simpler,) + best.calls[i + 1:])
            tries += 1
            try:
                validate(cand)
            except ProgramError:
                continue
            if still_fails(cand):
                best, changed = cand, True
                break
            if tries >= budget:
                break
        if changed:
            changed_any = True      # the same call again: its next argument, or a simpler value still
        else:
            i += 1
    return best, tries, changed_any


def minimise(program: Program, still_fails: Callable[[Program], bool], budget: int = 300) -> Program:
    """Delta debugging: drop chunks of calls, then single calls, then simplify every argument by its
    kind (``specs/kinds.py``: flags lose constants, addresses become page-aligned and earlier, sizes
    one page, numbers nearer zero, strings shorter, offsets of named results zero), keeping each step
    only if the same failure remains; calls that simpler arguments made unnecessary go last."""
    best, tries = _drop_calls(program, still_fails, 0, budget)
    changed = True
    while changed and tries < budget:       # a simpler later call may let an earlier one simplify further
        best, tries, changed = _simplify_args(best, still_fails, tries, budget)
        if changed:
            best, tries = _drop_calls(best, still_fails, tries, budget)
    return best


def shrink_failure(target: Any, program: Program, facts: dict[str, Any], sig: Signature,
                   budget: int = 300) -> Program:
    return minimise(program, lambda p: failing_signature(target, p, facts) == sig, budget)


__all__ = ["Signature", "execute", "localise", "failing_signature", "confirm", "minimise", "shrink_failure",
           "without_calls",
           "RunStatus", "Verdict"]
