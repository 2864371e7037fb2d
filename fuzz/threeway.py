"""Three-way differential: one program on several peers (e.g. ``qemu`` and ``kvm``) and the model.

Each peer runs the program and the model judges each run separately, with that
peer's own facts (a peer without 1 GiB pages is judged as such).  Then the peers'
outcomes are compared call by call, ignoring detail the model ignores (which KVM
path answered, for instance).  Where two peers disagree, the report says which
of them the model sides with, under which clause, and the clause's citation::

    tw = threeway(program, [make_target("qemu"), make_target("kvm")])
    for d in tw.disagreements:
        print(d.describe())

Worked example: ``mov_cr0(0x180010001)`` -- qemu says ok, kvm says ok, the model
expects #GP (sdm.cr0.rsvd-gp): no disagreement between the peers, both fail the
clause.  ``wrpkru(0)`` with CR4.PKE = 0 -- qemu #UD, kvm KVM_EXIT_INTERNAL_ERROR:
a disagreement, the model sides with qemu (sdm.pkeys.wrpkru-ud, SDM Vol. 2D WRPKRU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from memspec.program import Program, format_call
from memspec.records import Judgement, Outcome, RunResult, Verdict
from memspec.specs.catalogue import all_clauses
from memspec.specs.judge import judge

# Detail keys a peer may add for its own report; never part of what the model compares.
PRIVATE_DETAIL = frozenset({"path", "kvm", "cs", "returned", "status"})

ACCEPTS = (Verdict.PASS, Verdict.IMPL_DEFINED, Verdict.UNKNOWN)


def comparable(o: Outcome | None) -> tuple[Any, ...] | None:
    """What two peers must agree on: value, errno, signal and the public detail (error code, CR2)."""
    if o is None:
        return None
    return (o.value, o.errno, o.signal, tuple(sorted((k, v) for k, v in o.detail if k not in PRIVATE_DETAIL)))


def show(o: Outcome | None) -> str:
    if o is None:
        return "(no answer)"
    d = {k: v for k, v in o.detail if k not in PRIVATE_DETAIL}
    if o.signal == "#PF" and "errcode" in d:
        return f"#PF errcode={d['errcode']:#x} cr2={d.get('cr2', 0):#x}"
    return o.describe()


@dataclass(frozen=True)
class PeerAnswer:
    """One peer's outcome at a call and what the model made of it."""

    target: str
    outcome: Outcome | None
    verdict: str           # "pass", "fail", "impl-defined", "unknown", or "not judged" (judging stopped earlier)
    clause: str
    expected: str
    why_not_judged: str = ""   # for "not judged": where and why this peer's judging stopped

    @property
    def accepted(self) -> bool:
        return self.verdict in (v.value for v in ACCEPTS)


@dataclass(frozen=True)
class Disagreement:
    """Peers that answered one call differently, and the side the model takes."""

    index: int
    call: str
    answers: tuple[PeerAnswer, ...]
    clause: str
    citation: str
    after_divergence: bool     # an earlier disagreement already made the peers' states differ

    @property
    def model_sides_with(self) -> tuple[str, ...]:
        return tuple(a.target for a in self.answers if a.accepted)

    @property
    def both_allowed(self) -> bool:
        """Every peer's answer is allowed (an allowed choice, or facts that differ between
        the peers, e.g. one has LA57 and the other not): not a bug in either."""
        return all(a.accepted for a in self.answers)

    @property
    def why_not_judged(self) -> str:
        """For the peers the model did not judge at this call: each one's reason."""
        return "; ".join(f"{a.target}: {a.why_not_judged}" for a in self.answers if a.verdict == "not judged")

    def describe(self) -> str:
        lines = [f"call {self.index + 1}: {self.call}"]
        for a in self.answers:
            lines.append(f"  {a.target:>8}: {show(a.outcome):<44} model: {a.verdict}")
        side = ("all of them (allowed choices, or the peers' facts differ)" if self.both_allowed
                else ", ".join(self.model_sides_with) or "none of them")
        expected = next((a.expected for a in self.answers if a.expected), "")
        if expected:
            lines.append(f"  model expects {expected} under {self.clause}: sides with {side}")
        else:
            lines.append("  the model judged none of them: " + self.why_not_judged)
        if self.citation:
            lines.append(f"  [{self.citation}]")
        if self.after_divergence:
            lines.append("  (after an earlier disagreement: the peers' states may already differ)")
        return "\n".join(lines)


@dataclass
class ThreeWay:
    """The runs, the model's judgement of each, and where the peers disagree."""

    program: Program
    runs: dict[str, RunResult]
    judgements: dict[str, Judgement]
    facts: dict[str, dict[str, Any]]
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def one_sided(self) -> list["Disagreement"]:
        """Disagreements where the model rejects at least one peer: where a bug is."""
        return [d for d in self.disagreements if not d.both_allowed]

    @property
    def facts_differ(self) -> dict[str, dict[str, Any]]:
        """Facts on which the peers differ (a disagreement may come from them, not from a bug)."""
        keys = set().union(*(f.keys() for f in self.facts.values())) if self.facts else set()
        out: dict[str, dict[str, Any]] = {}
        for k in sorted(keys):
            vals = {t: f.get(k) for t, f in self.facts.items()}
            if len({repr(v) for v in vals.values()}) > 1 and not k.startswith(("kvm_", "harness_")):
                out[k] = vals
        return out

    def describe(self) -> str:
        lines = []
        for t, j in self.judgements.items():
            f = j.failure
            lines.append(f"{t}: " + ("passes" if f is None else f"{f.verdict.value} {f.clause} at call {f.index + 1}"))
        if not self.disagreements:
            lines.append("the peers agree on every call they both answered")
        for d in self.disagreements:
            lines.append(d.describe())
        fd = self.facts_differ
        if fd:
            lines.append("facts that differ: " + "; ".join(f"{k} {v}" for k, v in fd.items()))
        return "\n".join(lines)


def _answer(target: str, j: Judgement, run: RunResult, index: int) -> PeerAnswer:
    o = run.outcomes[index] if index < len(run.outcomes) else None
    for c in j.checks:
        if c.index == index and c.at == "call":
            return PeerAnswer(target, o, c.verdict.value, c.clause, c.expected)
    return PeerAnswer(target, o, "not judged", "", "", _why_not_judged(j, run, index))


def _why_not_judged(j: Judgement, run: RunResult, index: int) -> str:
    """Why the model has no verdict for this peer at call ``index`` (a report row must say)."""
    f = j.failure
    if f is not None and f.index < index:
        return f"judging stopped at call {f.index + 1} ({f.verdict.value} {f.clause})"
    if f is not None and f.index == index:
        return f"a checkpoint after this call failed ({f.verdict.value} {f.clause})"
    if index >= len(run.outcomes):
        return f"the run ended before this call ({run.status.value}{': ' + run.message if run.message else ''})"
    return "the model checked no clause at this call (its outcome was only recorded)"


def threeway(program: Program, targets: Sequence[Any], facts: dict[str, dict[str, Any]] | None = None) -> ThreeWay:
    """Run ``program`` on every target (each a ``memspec.targets.base.Target``), judge each run
    with the model under that target's facts, and list the calls where the targets disagree.

    ``facts`` maps a target's name to its facts; a target missing from it is asked (``facts()``).
    """
    facts = dict(facts or {})
    runs: dict[str, RunResult] = {}
    judgements: dict[str, Judgement] = {}
    for t in targets:
        f = facts.setdefault(t.name, t.facts())
        runs[t.name] = t.run(program)
        judgements[t.name] = judge(program, runs[t.name], t.name, f)
    tw = ThreeWay(program, runs, judgements, facts)
    catalogue = all_clauses()
    names = list(runs)
    diverged = False
    for i, call in enumerate(program.calls):
        seen = {n: comparable(runs[n].outcomes[i]) if i < len(runs[n].outcomes) else None for n in names}
        answered = [n for n in names if seen[n] is not None]
        if len(answered) < 2:
            break
        if len({seen[n] for n in answered}) == 1:
            continue
        answers = tuple(_answer(n, judgements[n], runs[n], i) for n in answered)
        clause = next((a.clause for a in answers if a.clause), "")
        cite = catalogue[clause].citation if clause in catalogue else ""
        tw.disagreements.append(Disagreement(i, format_call(call), answers, clause, cite, diverged))
        diverged = True
    return tw


__all__ = ["ThreeWay", "Disagreement", "PeerAnswer", "threeway", "comparable"]
