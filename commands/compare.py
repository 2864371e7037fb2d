"""``memspec compare``: the same programs on several implementations, and where they disagree.

``memspec check`` judges each target against the model on its own.  ``compare`` runs one set
of programs -- the layer's directed suite, then seeded random programs from the layer's codec,
restricted to the calls every target implements -- on every target, judges each run with the
model under that target's own facts, and lists the calls where the targets' answers differ
(``memspec.fuzz.threeway``).  For each disagreement it says which side the model, and so the
cited specification, takes; where the model rejects a target, whether specs/differences.toml
already explains it.  A disagreement in which every answer is allowed (an implementation
choice, or facts that differ, such as one CPU having 1-GByte pages) is listed apart::

    memspec compare --target qemu --target qemu-system --target kvm --target bochs --layer hw

Writes ``compare.json`` and ``compare.md`` to ``--out``.  The exit status is 1 when some
disagreement rejects a target for a reason no cited difference explains.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from memspec.errors import Terminated, TargetError, UsageError


@dataclass
class CompareOptions:
    targets: list[str]
    layer: str | None = None
    programs: int = 100
    seed: int = 0
    out: str = "memspec-out"
    timeout: float = 10.0
    suite: bool = True
    quiet: bool = False
    argv: list[str] = field(default_factory=list)
    overlap: bool = True        # judge a program (in a second process) while the next one runs


def _say(opts: CompareOptions, msg: str, end: str = "\n") -> None:
    if not opts.quiet:
        print(msg, end=end, file=sys.stderr, flush=True)


def _programs(layer: str, opts: CompareOptions, calls: frozenset[str] | None, facts: list[dict[str, Any]]):
    from memspec.specs.directed import lacks as _lacks, suite_programs
    from memspec.fuzz.layers import random_programs
    chosen = list(suite_programs(layer, capabilities=True)) if opts.suite else []
    chosen += list(random_programs(layer, opts.programs, opts.seed, calls))
    for origin, p in chosen:
        if calls is not None and any(c.name not in calls for c in p.calls):
            continue
        if any(_lacks(f, p.meta("requires")) for f in facts):
            continue
        yield origin, p


class _EveryTarget:
    """Runs a program on each target in turn: one run of the stream ``RunAhead`` keeps ahead."""

    def __init__(self, targets: list[Any]) -> None:
        self.targets = targets
        self.runs_elsewhere = any(getattr(t, "runs_elsewhere", False) for t in targets)

    def run(self, program: Any, observe: str = "end") -> dict[str, Any]:
        return {t.name: t.run(program, observe=observe) for t in self.targets}


class _Ran:
    """A target whose run of this program is already done: hands ``threeway`` that run."""

    def __init__(self, target: Any, run: Any, facts: dict[str, Any]) -> None:
        self.name, self._run, self._facts = target.name, run, facts

    def facts(self) -> dict[str, Any]:
        return self._facts

    def run(self, program: Any, observe: str = "end") -> Any:
        return self._run


def run(opts: CompareOptions) -> tuple[dict[str, Any], int]:
    """Run the comparison; returns the report (as written to compare.json) and the exit status."""
    from memspec.specs.directed import excused_by, load_differences
    from memspec.fuzz.pipeline import RUN_AHEAD, RunAhead
    from memspec.fuzz.threeway import threeway
    from memspec.program import format_program
    from memspec.targets.registry import make_target
    if len(opts.targets) < 2:
        raise UsageError("compare needs at least two targets (repeat --target)")
    diffs = load_differences()
    targets: list[Any] = []
    report: dict[str, Any] = {"memspec_compare": 1, "command": " ".join(["memspec", "compare"] + opts.argv),
                              "seed": opts.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "interrupted": False}
    t0 = time.monotonic()
    ahead = None
    try:
        for spec in opts.targets:
            try:
                targets.append(make_target(spec, timeout=opts.timeout))
            except TargetError as e:
                raise UsageError(str(e)) from None
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise UsageError(f"compare needs distinct targets, got {', '.join(names)}")
        common = [layer for layer in targets[0].layers if all(layer in t.layers for t in targets)]
        layer = opts.layer or (common[0] if common else None)
        if layer is None or layer not in common:
            raise UsageError(f"no layer is implemented by all of {', '.join(names)}"
                             + (f" (asked for {opts.layer!r})" if opts.layer else ""))
        calls: frozenset[str] | None = None
        for t in targets:
            if t.calls is not None:
                calls = t.calls if calls is None else calls & t.calls
        facts = {t.name: t.facts() for t in targets}
        report.update(layer=layer, targets=names,
                      facts={n: {k: v for k, v in f.items() if k != "cpuid"} for n, f in facts.items()},
                      unsupported={t.name: list(t.unsupported()) for t in targets})
        chosen = list(_programs(layer, opts, calls, list(facts.values())))
        _say(opts, f"compare [{layer}]: {len(chosen)} programs on {', '.join(names)}")
        results: list[dict[str, Any]] = []
        report["programs"] = results
        # every target runs program k+1 (on this thread) while program k's runs are judged and
        # compared on a helper thread (fuzz/pipeline.py)
        each = _EveryTarget(targets)
        ahead = RunAhead(each, chosen, ahead=None if opts.overlap else False, depth=RUN_AHEAD,
                         judge=lambda program, runs: threeway(program, [_Ran(t, runs[t.name], facts[t.name]) for t in targets], facts))
        for n, (origin, program, _runs, tw) in enumerate(ahead, 1):
            entry: dict[str, Any] = {
                "origin": origin,
                "verdicts": {t: (None if j.failure is None else
                                 {"clause": j.failure.clause, "verdict": j.failure.verdict.value,
                                  "call": j.failure.index + 1,
                                  "expected_difference": bool(excused_by(diffs, t, j.failure.clause,
                                                                         j.failure.observed, facts[t]))})
                             for t, j in tw.judgements.items()},
                "disagreements": [],
            }
            for d in tw.disagreements:
                rejected = [a.target for a in d.answers if not a.accepted and a.verdict != "not judged"]
                entry["disagreements"].append({
                    "call": d.index + 1, "text": d.call, "clause": d.clause, "citation": d.citation,
                    "answers": [{"target": a.target, "observed": _show(a.outcome), "verdict": a.verdict,
                                 "expected": a.expected} for a in d.answers],
                    "model_sides_with": list(d.model_sides_with), "all_allowed": d.both_allowed,
                    "not_judged": d.why_not_judged,
                    "after_divergence": d.after_divergence,
                    # the entry that excuses each rejected answer (same clause, outcome and version), or ""
                    "explained": {t: _excuse(diffs, t, d.clause, a.outcome, facts[t])
                                  for a in d.answers for t in [a.target] if t in rejected},
                })
            if entry["disagreements"]:
                entry["program"] = format_program(program)
            results.append(entry)
            progress = f"{n}/{len(chosen)} programs, {sum(1 for r in results if r['disagreements'])} with disagreements"
            if sys.stderr.isatty():
                _say(opts, "\r\033[K" + progress, end="")
            elif n % 25 == 0 or n == len(chosen):
                _say(opts, progress)
        if sys.stderr.isatty():
            _say(opts, "")
    except KeyboardInterrupt as e:
        report["interrupted"] = True
        report["interrupted_by"] = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
        _say(opts, "\ninterrupted: writing a partial report")
    finally:
        if ahead is not None:
            ahead.close()
        for t in targets:
            t.close()
    report["duration_s"] = round(time.monotonic() - t0, 2)
    report["summary"] = summary = _summarise(report)
    _write(opts.out, report)
    _say(opts, render_text(report))
    if report["interrupted"]:
        return report, (143 if report.get("interrupted_by") == "SIGTERM" else 130)
    return report, (1 if summary["unexplained"] else 0)


def _excuse(diffs: list[Any], target: str, clause: str, outcome: Any, facts: dict[str, Any]) -> str:
    from memspec.specs.directed import excused_by
    d = excused_by(diffs, target, clause, outcome.describe() if outcome is not None else "", facts)
    return d.describe() if d else ""


def _show(o: Any) -> str:
    from memspec.fuzz.threeway import show
    return show(o)


def _summarise(report: dict[str, Any]) -> dict[str, Any]:
    progs = report.get("programs", [])
    all_d = [d for p in progs for d in p["disagreements"]]
    first = [d for d in all_d if not d["after_divergence"]]
    unexplained = [d for d in first if not d["all_allowed"] and any(not why for why in d["explained"].values())]
    sides: dict[str, dict[str, int]] = {}
    for d in first:
        for a in d["answers"]:
            s = sides.setdefault(a["target"], {"sided_with": 0, "rejected": 0})
            s["sided_with" if a["target"] in d["model_sides_with"] else "rejected"] += 1
    by_clause: dict[str, int] = {}
    for d in first:
        by_clause[d["clause"] or "(not judged)"] = by_clause.get(d["clause"] or "(not judged)", 0) + 1
    return {"programs": len(progs), "programs_with_disagreements": sum(1 for p in progs if p["disagreements"]),
            "disagreements": len(first), "all_allowed": sum(1 for d in first if d["all_allowed"]),
            "unexplained": len(unexplained), "by_target": sides, "by_clause": dict(sorted(by_clause.items()))}


def render_text(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"compare [{report.get('layer', '?')}] {', '.join(report.get('targets', []))}: {s['programs']} programs, "
             f"{s['disagreements']} disagreements ({s['all_allowed']} where every answer is allowed), "
             f"{s['unexplained']} rejecting a target with no cited difference"]
    for t, v in s["by_target"].items():
        lines.append(f"  {t}: the model sides with it {v['sided_with']}x, rejects it {v['rejected']}x")
    shown = 0
    for p in report.get("programs", []):
        for d in p["disagreements"]:
            if d["after_divergence"] or shown >= 20:
                continue
            shown += 1
            lines.append(f"\n  {p['origin']}, call {d['call']}: {d['text']}")
            for a in d["answers"]:
                lines.append(f"    {a['target']:>12}: {a['observed']:<44} model: {a['verdict']}")
            expected = next((a["expected"] for a in d["answers"] if a["expected"]), "")
            side = ("every answer is allowed" if d["all_allowed"]
                    else "sides with " + (", ".join(d["model_sides_with"]) or "none of them"))
            if d["clause"]:
                lines.append(f"    model expects {expected or '?'} under {d['clause']}: {side}")
            if d.get("not_judged"):
                lines.append(f"    not judged: {d['not_judged']}")
            if d["citation"]:
                lines.append(f"    [{d['citation']}]")
            for t, why in d["explained"].items():
                lines.append(f"    {t}: " + (f"expected difference, excused by {why}" if why
                                             else "NOT EXPLAINED by a cited difference"))
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    out = [f"# memspec compare: {', '.join(report.get('targets', []))} [{report.get('layer', '?')}]", "",
           f"`{report['command']}` — {s['programs']} programs, {s['disagreements']} disagreements "
           f"({s['all_allowed']} where every answer is allowed), {s['unexplained']} unexplained.", "",
           "| program | call | " + " | ".join(report.get("targets", [])) + " | clause | model sides with |",
           "|---|---|" + "---|" * len(report.get("targets", [])) + "---|---|"]
    for p in report.get("programs", []):
        for d in p["disagreements"]:
            if d["after_divergence"]:
                continue
            obs = {a["target"]: f"{a['observed']} ({a['verdict']})" for a in d["answers"]}
            cells = [obs.get(t, "—").replace("|", "\\|") for t in report.get("targets", [])]
            side = "all (allowed)" if d["all_allowed"] else (", ".join(d["model_sides_with"]) or "none")
            if d.get("not_judged"):
                side += " (not judged: " + d["not_judged"].replace("|", "\\|") + ")"
            out.append(f"| {p['origin']} | {d['call']}: `{d['text']}` | " + " | ".join(cells)
                       + f" | {d['clause'] or '(not judged)'} | {side} |")
    return "\n".join(out) + "\n"


def _write(out: str, report: dict[str, Any]) -> None:
    from memspec.atomic import write_text
    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "compare.json"), json.dumps(report, indent=1, default=str) + "\n")
    write_text(os.path.join(out, "compare.md"), render_markdown(report))


__all__ = ["CompareOptions", "run", "render_text", "render_markdown"]
