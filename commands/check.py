"""``memspec check``: the conformance run that the CLI wires together.

For each target and layer: the directed suite (specs/suite/<layer>/*.mst), then
seeded random programs from the layer's codec, then the layer's state machine --
each program run on the target and judged by the model.  A failure is confirmed
by re-running it, shrunk to a minimal program that fails the same clause the
same way, saved as a replayable file, and grouped by signature in the report.
Ctrl-C stops the run and still writes a (partial) report.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from memspec.errors import Terminated, TargetError, UsageError
from memspec.program import Program, ProgramError, format_call, format_program
from memspec.records import RunStatus, Verdict
from memspec.fuzz.layers import layer as layer_of, random_programs
from memspec.model.os.open_answers import OPEN_ANSWERS
from memspec.specs.directed import excused_by as _excused_by, lacks as _lacks, load_differences, suite_programs


@dataclass
class CheckOptions:
    targets: list[str]
    layer: str | None = None
    seed: int = 0
    out: str = "memspec-out"
    programs: int = 200
    machine_examples: int = 20
    confirm: int = 3
    shrink_budget: int = 200
    timeout: float = 10.0
    quiet: bool = False
    coverage: bool = False     # measure line and branch coverage of the model package
    db: str | None = None      # Hypothesis example database: a directory or redis://host:port/n
    suite: bool = True         # run the layer's directed suite (off: random programs and the machine only)
    progress: Callable[[str], None] | None = None
    argv: list[str] = field(default_factory=list)
    log_every: float = 5.0     # seconds between progress lines when stderr is not a terminal
    max_dead: int = 3          # stop judging a target after this many programs in a row crash, hang or answer garbage (0: never)
    overlap: bool = True       # judge a program (in a second process) while the next one runs


def example_database(spec: str | None) -> Any:
    """A Hypothesis example database shared between runs and workers: a directory, or Redis.
    ``None`` (and no MEMSPEC_HYPOTHESIS_DB in the environment) keeps none, so runs are reproducible."""
    spec = spec or os.environ.get("MEMSPEC_HYPOTHESIS_DB")
    if not spec:
        return None
    if spec.startswith(("redis://", "rediss://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise UsageError("a redis:// example database needs the redis package: pip install redis") from None
        return RedisExampleDatabase(redis.Redis.from_url(spec))
    from hypothesis.database import DirectoryBasedExampleDatabase
    return DirectoryBasedExampleDatabase(spec)


def _clear_counterexamples(out: str) -> None:
    """A run's counterexamples folder holds that run's counterexamples only: an earlier run's are
    removed at the start (memspec owns ``OUT/counterexamples``; nothing else in OUT is touched)."""
    import shutil
    d = os.path.join(out, "counterexamples")
    if os.path.isdir(d) and not os.path.islink(d):
        shutil.rmtree(d)


class Checker:
    def __init__(self, opts: CheckOptions):
        from memspec.results import RunResults
        self.o = opts
        self.results = RunResults(command=" ".join(["memspec", "check"] + opts.argv), seed=opts.seed,
                                  started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.t0 = time.monotonic()
        self.cov: Any = None
        self.diffs = load_differences()
        self._last = 0.0
        self._choices = {}

    def say(self, msg: str) -> None:
        if not self.o.quiet:
            print(msg, file=sys.stderr, flush=True)

    def tick(self, msg: str) -> None:
        now = time.monotonic()
        if self.o.progress:
            self.o.progress(msg)
        elif self.o.quiet or not msg:
            return
        elif sys.stderr.isatty():
            if now - self._last > 0.2:
                print("\r\033[K" + self._bar() + msg, end="", file=sys.stderr, flush=True)
                self._last = now
        elif now - self._last >= self.o.log_every:
            # a log file or a CI job: a whole line every few seconds, with the elapsed time
            print(f"[{now - self.t0:6.0f}s] {msg}", file=sys.stderr, flush=True)
            self._last = now

    def _bar(self, width: int = 24) -> str:
        done, total = self._progress
        if not total:
            return ""
        fill = min(width, width * done // total)
        return f"[{'#' * fill}{'.' * (width - fill)}] "

    _progress: tuple[int, int] = (0, 0)

    def run(self) -> Any:
        from memspec.specs.catalogue import all_clauses as catalogue
        from memspec.targets.registry import make_target
        cat = catalogue()
        self.results.catalogue = {c.id: {"layer": c.layer, "statement": c.statement, "citation": c.citation,
                                         "kernel_differs": c.kernel_differs} for c in cat.values()}
        if self.o.coverage:
            self.cov = _start_model_coverage()
        _clear_counterexamples(self.o.out)
        try:
            for spec in self.o.targets:
                try:
                    target = make_target(spec, timeout=self.o.timeout)
                except TargetError as e:
                    raise UsageError(str(e)) from None
                try:
                    layers = [self.o.layer] if self.o.layer else [target.layers[0]]
                    for layer in layers:
                        if layer not in target.layers:
                            raise UsageError(f"target {spec!r} does not implement layer {layer!r} "
                                             f"(it implements: {', '.join(target.layers)})")
                        self.check_target(target, layer, cat)
                        if layer == "phys" and "allocator" in target.facts():
                            self.probe_choices(target)
                finally:
                    target.close()
        except KeyboardInterrupt as e:
            self.results.interrupted = True
            self.results.interrupted_by = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
            self.say(f"\n{'terminated' if isinstance(e, Terminated) else 'interrupted'}: writing a partial report")
        if self.cov is not None:
            self.results.coverage = _stop_model_coverage(self.cov, self.o.out)
        self.results.duration_s = time.monotonic() - self.t0
        return self.results

    def probe_choices(self, target: Any) -> None:
        """A malloc target: measure what it chose where C and POSIX allow a choice (the report's table)."""
        from .impl_choices import probe, table
        self.tick(f"{target.name}: probing implementation choices")
        self._choices[target.name] = probe(target)
        self.results.impl_choices = table(self._choices)

    _choices: dict[str, dict[str, str]]

    def check_target(self, target: Any, layer: str, cat: dict[str, Any]) -> None:
        from memspec.fuzz.pipeline import RUN_AHEAD, RunAhead
        from memspec.results import TargetResults
        facts = target.facts()
        tr = TargetResults(name=target.name, layers=[layer], facts=facts, unsupported=list(target.unsupported()))
        self.results.targets.append(tr)
        reported: dict[Any, Any] = {}        # finding -> its Failure in the report
        sources = list(suite_programs(layer, capabilities=True)) if self.o.suite else []
        if hasattr(target, "not_observable"):
            # a target of several layers lists them all: keep this layer's
            tr.not_observable = {c: why for c, why in target.not_observable().items()
                                 if c not in cat or cat[c].layer == layer}
        self.say(f"{target.name} [{layer}]: {len(sources)} suite programs, {self.o.programs} random programs, "
                 f"{self.o.machine_examples} state-machine examples")
        import itertools
        total = len(sources) + self.o.programs
        programs = itertools.chain(sources, random_programs(layer, self.o.programs, self.o.seed, target.calls,
                                                                     facts))
        t_start = time.monotonic()

        def not_applicable(program: Program) -> bool:
            return (target.calls is not None and any(c.name not in target.calls for c in program.calls)
                    or _lacks(facts, program.meta("requires")))

        # the next program runs on the target while this one is judged: here, where the target
        # runs it in its own process (the native agent), else in a second process (fuzz/pipeline.py);
        # the target itself, and so the findings pipeline's re-runs, stay on this thread
        from memspec.specs.judge import judge
        # (--coverage measures the model's lines in this process: its judge stays here, on a thread)
        ahead = RunAhead(target, programs, skip=not_applicable, ahead=None if self.o.overlap else False,
                         judge_in="thread" if self.o.coverage else None, depth=RUN_AHEAD,
                         judge=lambda program, run: judge(program, run, target.name, facts))
        findings = self._findings(target, facts, layer)
        with ahead:
            self._judge_stream(ahead, target, layer, tr, facts, cat, findings, reported, total, t_start)
        if not tr.stopped:
            self.run_machine(target, layer, tr, facts, cat)
        layer_clauses = sorted(cid for cid, c in cat.items() if c.layer == layer)
        tr.not_applicable_clauses = {c: k for c, k in tr.not_applicable_clauses.items() if c not in tr.clauses}
        # a clause reached only by programs this target cannot run is reported as not applicable, not as a gap
        tr.never_exercised = [cid for cid in layer_clauses if cid not in tr.clauses and cid not in tr.not_observable
                              and cid not in tr.not_applicable_clauses]
        tr.timeline.append([round(time.monotonic() - t_start, 3), tr.programs, len(tr.clauses), len(tr.failures)])
        self.tick("")
        if not self.o.quiet and sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr)

    def _judge_stream(self, ahead: Any, target: Any, layer: str, tr: Any, facts: dict[str, Any], cat: dict[str, Any],
                      findings: Any, reported: dict[Any, Any], total: int, t_start: float) -> None:
        from memspec.fuzz.differential import localise
        from memspec.results import ClauseStats
        held = ahead.target
        dead_in_a_row = 0
        last_ok: Program | None = None      # the last program this target ran to its end: the canary
        for n, (origin, program, run, j) in enumerate(ahead, 1):
            if n == 1 or n == total or n % 10 == 0:
                tr.timeline.append([round(time.monotonic() - t_start, 3), tr.programs, len(tr.clauses), len(tr.failures)])
            if run is None:
                tr.not_applicable += 1
                # which clauses the skipped program would have exercised: judged on the model alone
                for cid in _model_clauses(program):
                    tr.not_applicable_clauses[cid] = tr.not_applicable_clauses.get(cid, 0) + 1
                continue
            self._progress = (n, total)
            if j.failure is not None:
                j = localise(held, program, facts, j)
            dead_in_a_row = dead_in_a_row + 1 if j.status in (RunStatus.CRASH, RunStatus.HANG, RunStatus.ERROR) else 0
            tr.programs += 1
            tr.calls += len(program.calls)
            for c in j.checks:
                tr.clauses.setdefault(c.clause, ClauseStats()).add(c.verdict.value)
            for k, v in j.context.get("fault_path", {}).items():
                if isinstance(v, int):
                    tr.fault_path[k] = tr.fault_path.get(k, 0) + v
            f = j.failure
            self.tick(f"{target.name} [{layer}] {n}/{total} programs, {len(tr.clauses)} clauses, "
                      f"{len(tr.failures)} failures")
            if j.status is RunStatus.OK:
                last_ok = program
            if self.o.max_dead and dead_in_a_row >= self.o.max_dead and self._still_alive(held, last_ok, facts):
                dead_in_a_row = 0       # only those programs kill it: go on
            if self.o.max_dead and dead_in_a_row >= self.o.max_dead:
                # every later program would cost a whole time limit: stop judging this target
                # (libFuzzer and syzkaller stop at the first hang) and say so in the report
                tr.stopped = (f"stopped after {dead_in_a_row} programs in a row ended in a crash, hang or garbage "
                              f"(last: {j.status.value}{': ' + j.message if j.message else ''}), "
                              + ("and a program it ran before failed too" if last_ok is not None else
                                 "and none had run")
                              + f"; {total - n} programs and the state machine were not run")
                self.say(f"\n{target.name}: {tr.stopped}")
                if f is not None and not findings.by_signature:
                    # one verdict that says so: the dead target's failure, as it is (no re-runs)
                    tr.failures.append(self._report(findings.record(program, f, j, origin), cat, facts))
                break
            status, finding = findings.consider(program, j, origin)
            if status == "flaky":
                self.say(f"\n{origin}: {f.clause} failed once but not on re-runs: reported as unknown (flaky)")
                tr.clauses.setdefault(f.clause, ClauseStats()).add(Verdict.UNKNOWN.value)
            elif status == "seen" and finding is not None:
                reported[id(finding)].count = finding.count
            elif status == "new" and finding is not None:
                failure = self._report(finding, cat, facts)
                reported[id(finding)] = failure
                tr.failures.append(failure)

    def _still_alive(self, target: Any, canary: Program | None, facts: dict[str, Any]) -> bool:
        """After programs in a row crashed, hung or answered garbage: is the target dead, or do only those programs kill
        it (an emulator that accepts an illegal write, then dies)?  A program it ran to its end
        before is run again: if that still runs, the target lives and judging goes on."""
        if canary is None:
            return False
        from memspec.fuzz.differential import execute
        return execute(target, canary, facts).status is RunStatus.OK

    def _machine_finding(self, target: Any, facts: dict[str, Any], layer: str, prog: Program, check: Any) -> Any:
        """The state machine's failing program as a finding: run again as a program and, when it
        fails there too, through the findings pipeline the programs take (confirmed, shrunk by the
        same minimiser, saved), so its reproducer is as short as a random program's; else saved as
        the machine found it."""
        from memspec.fuzz.differential import execute, localise
        from memspec.records import Judgement
        findings = self._findings(target, facts, layer)
        try:
            j = localise(target, prog, facts, execute(target, prog, facts))
        except Exception:       # a target whose sessions only the machine can drive: keep the machine's own
            j = None
        if j is not None and j.failure is not None:
            status, finding = findings.consider(prog, j, "state machine")
            if finding is not None:
                return finding
        return findings.record(prog, check, Judgement(target.name), "state machine")

    def _findings(self, target: Any, facts: dict[str, Any], layer: str) -> Any:
        from memspec.fuzz.findings import Findings
        return Findings(target, facts, os.path.join(self.o.out, "counterexamples"), layer, seed=self.o.seed,
                        confirm=self.o.confirm, shrink_budget=self.o.shrink_budget)

    def _report(self, finding: Any, cat: dict[str, Any], facts: dict[str, Any]) -> Any:
        """A finding as a report's failure: its clause's statement and citation, the failing call,
        and the cited difference that excuses it (same clause and outcome, on the version ``facts``
        report), if one does."""
        from memspec.results import Failure
        f, program = finding.check, finding.program
        c = cat.get(f.clause)
        call_text = format_call(program.calls[f.index]) if 0 <= f.index < len(program.calls) else "(end of program)"
        excuse = _excused_by(self.diffs, program.meta("target") or "", f.clause, f.observed, facts)
        return Failure(clause=f.clause, statement=c.statement if c else "", citation=c.citation if c else "",
                       verdict=f.verdict.value, program=format_program(program), call_index=f.index,
                       call_text=call_text, expected=f.expected, observed=f.observed, note=f.note,
                       replay=finding.replay, file=finding.path, count=finding.count,
                       expected_difference=excuse.why if excuse else "",
                       excused_by=excuse.describe() if excuse else "",
                       context={k: v for k, v in finding.judgement.context.items()})

    def run_machine(self, target: Any, layer: str, tr: Any, facts: dict[str, Any], cat: dict[str, Any]) -> None:
        if self.o.machine_examples <= 0:
            return
        from hypothesis import HealthCheck, Phase, settings
        from hypothesis import seed as hseed
        from hypothesis.errors import Flaky
        from hypothesis.stateful import run_state_machine_as_test
        machine_class = layer_of(layer).machine(target, facts)
        M = hseed(self.o.seed)(machine_class)
        cfg = settings(max_examples=self.o.machine_examples, stateful_step_count=25, deadline=None,
                       database=example_database(self.o.db), suppress_health_check=list(HealthCheck), print_blob=False,
                       report_multiple_bugs=False,
                       # the explain phase traces every line of a failing example again and again (it
                       # was most of a failing machine's minutes); the report explains failures itself
                       phases=[p for p in Phase if p is not Phase.explain])
        t0 = time.monotonic()
        from memspec.results import ClauseStats
        try:
            run_state_machine_as_test(M, settings=cfg)
            tr.machine = {"examples": self.o.machine_examples, "result": "pass", "seconds": round(time.monotonic() - t0, 2)}
        except Flaky as e:
            # a failure that did not happen again on replay: the target's behaviour depended
            # on something the program does not control (state left by an earlier example)
            tr.machine = {"examples": self.o.machine_examples, "result": "flaky",
                          "seconds": round(time.monotonic() - t0, 2), "message": str(e).splitlines()[0][:300],
                          "programs": self._flaky_programs(target, layer, facts, cat, e)}
        except AssertionError as e:
            prog = getattr(e, "program", None)
            tr.machine = {"examples": self.o.machine_examples, "result": "fail", "seconds": round(time.monotonic() - t0, 2)}
            if prog is None:
                raise
            from memspec.records import Check
            check = Check(e.clause, Verdict.FAIL, e.index, e.expected, e.observed, str(e).splitlines()[0])
            tr.clauses.setdefault(e.clause, ClauseStats()).add("fail")
            finding = self._machine_finding(target, facts, layer, prog, check)
            tr.failures.append(self._report(finding, cat, facts))
        finally:
            # steps the target refused to run: unsupported under the clause each would have exercised
            refused = dict(getattr(machine_class, "unsupported_steps", {}))
            for cid, n in sorted(refused.items()):
                for _ in range(n):
                    tr.clauses.setdefault(cid, ClauseStats()).add(Verdict.UNSUPPORTED.value)
            if refused and tr.machine:
                tr.machine["unsupported_steps"] = sum(refused.values())

    def _flaky_programs(self, target: Any, layer: str, facts: dict[str, Any], cat: dict[str, Any],
                        e: BaseException) -> list[dict[str, Any]]:
        """The programs behind a flaky state-machine result, each saved as a replayable file, with
        the outcome of every run seen: Hypothesis's runs (the failures it collected) and ``confirm``
        more runs of the saved program on the target."""
        from memspec.fuzz.differential import execute
        from memspec.records import Check, Judgement
        by_text: dict[str, tuple[Program, list[Any]]] = {}
        for x in getattr(e, "exceptions", ()) or ():
            prog = getattr(x, "program", None)
            if isinstance(prog, Program):
                by_text.setdefault(format_program(prog), (prog, []))[1].append(x)
        out: list[dict[str, Any]] = []
        for prog, seen in by_text.values():
            runs = [f"state machine run {k}: failed {x.clause} at call {x.index + 1}: expected {x.expected}, "
                    f"observed {x.observed}" for k, x in enumerate(seen, 1)]
            if len(by_text) == 1 and len(seen) == 1:
                runs.append("state machine replay: " + str(e).splitlines()[0][:200])
            for k in range(1, max(self.o.confirm, 1) + 1):
                try:
                    j = execute(target, prog, facts)
                except Exception as bug:     # a report must still be written: say what went wrong
                    runs.append(f"replay {k} of the saved program: the harness raised {type(bug).__name__}: {bug}")
                    continue
                f = j.failure
                runs.append(f"replay {k} of the saved program: " + (
                    f"{f.verdict.value} {f.clause} at call {f.index + 1}: expected {f.expected}, observed {f.observed}"
                    if f is not None else f"no failure ({j.status.value})"))
            x = seen[0]
            check = Check(x.clause, Verdict.UNKNOWN, x.index, x.expected, x.observed,
                          "flaky: failed under the state machine but not the same way on every run")
            saved = self._report(self._findings(target, facts, layer).record(
                prog, check, Judgement(target.name), "state machine (flaky)"), cat, facts)
            out.append({"clause": x.clause, "file": saved.file, "replay": saved.replay, "program": saved.program,
                        "runs": runs})
        return out


def _model_clauses(program: Program) -> set[str]:
    """The clauses ``program`` exercises when the model itself runs it."""
    from memspec.fuzz.differential import execute
    from memspec.targets.registry import make_target
    try:
        return {c.clause for c in execute(make_target("model"), program, {}).checks}
    except Exception:   # a statistic only: a model that cannot run it yet must not stop the check
        return set()


def _start_model_coverage() -> Any:
    import coverage
    from importlib.util import find_spec
    spec = find_spec("memspec.model")
    where = os.path.dirname(spec.origin) if spec and spec.origin else None
    cov = coverage.Coverage(branch=True, source=[where] if where else ["memspec.model"], data_file=None)
    cov.start()
    return cov


def _stop_model_coverage(cov: Any, out: str) -> dict[str, Any]:
    """Line and branch coverage of the model package, per file and in total."""
    import json as _json
    cov.stop()
    path = os.path.join(out, "coverage-model.json")
    os.makedirs(out, exist_ok=True)
    cov.json_report(outfile=path, pretty_print=False)
    with open(path, encoding="utf-8") as f:
        data = _json.load(f)
    keys = ("covered_lines", "num_statements", "num_branches", "covered_branches", "percent_covered")
    files = {os.path.basename(name): {k: v.get("summary", {}).get(k) for k in keys}
             for name, v in data.get("files", {}).items()}
    return {"package": "memspec.model", "files": files,
            "totals": {k: data.get("totals", {}).get(k) for k in keys}}


def _fact_text(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1 << 16:
        return hex(v)
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def summary_lines(results: Any) -> list[str]:
    lines = []
    for t in results.targets:
        counts: dict[str, int] = {}
        for s in t.clauses.values():
            for k, v in s.counts.items():
                counts[k] = counts.get(k, 0) + v
        lines.append(f"target {t.name} [{', '.join(t.layers)}]: {t.programs} programs, {t.calls} calls, "
                     f"{len(t.clauses)} clauses exercised, {len(t.unexplained())} failures"
                     + (f" ({len(t.failures) - len(t.unexplained())} expected differences)" if len(t.failures) != len(t.unexplained()) else "")
                     + (f", {t.not_applicable} programs not applicable" if t.not_applicable else ""))
        lines.append("  checks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if "os" in t.layers:
            lines.append(f"  os model: {len(OPEN_ANSWERS)} rules allow more than one outcome or answer unknown "
                         "(each with the kernel's reason in docs/os-audit.md)")
        if t.facts:
            shown = [f"{k}={_fact_text(v)}" for k, v in sorted(t.facts.items()) if k not in ("cpuid", "quiet_ranges")]
            lines.append("  facts judged with: " + ", ".join(shown[:16]) + (f", … ({len(shown)} in the report)"
                                                                             if len(shown) > 16 else ""))
        if t.machine:
            lines.append(f"  state machine: {t.machine['examples']} examples, {t.machine['result']} ({t.machine['seconds']} s)"
                         + (f", {t.machine['unsupported_steps']} steps unsupported by the target"
                            if t.machine.get("unsupported_steps") else "")
                         + (f": {t.machine['message']}" if t.machine.get("message") else ""))
            for fp in t.machine.get("programs", ()):
                lines.append(f"    flaky {fp['clause']}: {fp['file']}")
                lines += [f"      {r}" for r in fp["runs"]]
                lines.append(f"      replay: {fp['replay']}")
        if t.stopped:
            lines.append(f"  STOPPED: {t.stopped}")
        if t.fault_path:
            lines.append("  fault path (model, summed over programs): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(t.fault_path.items()) if v))
        if t.not_observable:
            lines.append(f"  {len(t.not_observable)} clauses this target cannot show (reasons in the report): "
                         + ", ".join(sorted(t.not_observable)[:6]) + (" …" if len(t.not_observable) > 6 else ""))
        if t.unsupported:
            lines.append("  unsupported by this target: " + ", ".join(t.unsupported))
        if t.not_applicable_clauses:
            lines.append(f"  not applicable: {len(t.not_applicable_clauses)} clauses reached only by programs using calls "
                         f"or features this target lacks (e.g. {', '.join(sorted(t.not_applicable_clauses)[:3])})")
        if t.never_exercised:
            lines.append(f"  warning: {len(t.never_exercised)} clauses of this layer never exercised: "
                         + ", ".join(t.never_exercised[:8]) + (" …" if len(t.never_exercised) > 8 else ""))
        for f in t.failures:
            tag = "EXPECTED DIFFERENCE" if f.expected_difference else f.verdict.upper()
            lines.append(f"\n  {tag} {f.clause} (x{f.count}): {f.statement}")
            lines.append(f"    [{f.citation}]")
            lines.append(f"    at call {f.call_index + 1}: {f.call_text}")
            lines.append(f"    expected: {f.expected}")
            lines.append(f"    observed: {f.observed}")
            if f.note:
                lines.append(f"    why: {f.note}")
            if f.excused_by:
                lines.append(f"    excused by: {f.excused_by}")
            for pl in f.program.rstrip().splitlines():
                if not pl.startswith("#"):
                    lines.append("      " + pl)
            lines.append(f"    replay: {f.replay}")
    if getattr(results, "impl_choices", None):
        from .impl_choices import text_table
        lines.append("\nimplementation choices (where C and POSIX leave the choice, and how each library meets absurd "
                     "sizes; measured by probe programs, judged in the clauses above):")
        lines += ["  " + x for x in text_table(results.impl_choices)]
    return lines


__all__ = ["CheckOptions", "Checker", "summary_lines", "suite_programs", "random_programs", "ProgramError"]
