"""The differential executor: run a program on a target, judge it with the model,
confirm a failure by re-running it, and shrink it to a minimal program that
fails the same clause the same way."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from memspec.program import Call, Int, Program, ProgramError, Ref, validate
from memspec.records import Check, Judgement, RunStatus, Verdict
from memspec.specs.judge import judge


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


def _drop(program: Program, idx: set[int]) -> Program | None:
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


def _simpler_args(c: Call) -> list[Call]:
    """Candidate simplifications of one call's arguments, simplest first."""
    out = []
    for i, a in enumerate(c.args):
        if isinstance(a, Ref) and a.offset:
            out.append(Call(c.name, c.args[:i] + (Ref(a.name),) + c.args[i + 1:], c.result, c.proc))
        # Only lengths shrink: an address or a flag word means something as it is.
        if isinstance(a, Int) and c.spec.params[i].name == "length" and a.value > 4096:
            for v in (4096,):
                if v < abs(a.value):
                    out.append(Call(c.name, c.args[:i] + (Int(v, hex=v >= 4096),) + c.args[i + 1:], c.result, c.proc))
    return out


def minimise(program: Program, still_fails: Callable[[Program], bool], budget: int = 300) -> Program:
    """Delta debugging: drop chunks of calls, then single calls, then simplify arguments,
    keeping each step only if the same failure remains (syzkaller's coarse-to-fine order)."""
    tries = 0
    best = program
    n = 2
    while len(best.calls) >= 2 and tries < budget:
        chunk = max(1, len(best.calls) // n)
        progressed = False
        for start in range(0, len(best.calls), chunk):
            cand = _drop(best, set(range(start, min(start + chunk, len(best.calls)))))
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
    changed = True
    while changed and tries < budget:
        changed = False
        for i, c in enumerate(best.calls):
            for simpler in _simpler_args(c):
                cand = best.with_calls(best.calls[:i] + (simpler,) + best.calls[i + 1:])
                tries += 1
                try:
                    validate(cand)
                except ProgramError:
                    continue
                if still_fails(cand):
                    best = cand
                    changed = True
                    break
            if changed or tries >= budget:
                break
    return best


def shrink_failure(target: Any, program: Program, facts: dict[str, Any], sig: Signature,
                   budget: int = 300) -> Program:
    return minimise(program, lambda p: failing_signature(target, p, facts) == sig, budget)


__all__ = ["Signature", "execute", "localise", "failing_signature", "confirm", "minimise", "shrink_failure",
           "RunStatus", "Verdict"]
