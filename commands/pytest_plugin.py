"""memspec as a pytest plugin: conformance clauses as ordinary pytest tests.

In your project::

    pytest --memspec-target=cmd:./my_impl

or in its pytest configuration (``pytest.ini``, ``pyproject.toml``, ``setup.cfg``)::

    [pytest]
    memspec_target = cmd:./my_impl

For each target, memspec runs its conformance check once (the layer's directed
suite, seeded random programs and the layer's state machine, as ``memspec check``
does) and reports **one test per clause** of the layer, named by the clause ID::

    memspec-os[cmd:./my_impl]::posix.mmap.einval-len0 PASSED
    memspec-os[cmd:./my_impl]::posix.mprotect.sets-prot FAILED
    memspec-os[cmd:./my_impl]::linux.mmap.hint-used-when-free SKIPPED (not exercised)

``--memspec-layer=os,phys`` (or ``all``) judges several layers, one group of tests each.

A failed clause shows the minimal program, expected vs observed and the command
that replays it.  A clause that no program reached, or that only programs using
calls the target does not implement would reach, is *skipped* with that reason --
never passed.  The reports (JSON, JUnit XML, HTML) go to ``--memspec-out``.

The plugin does nothing unless a target is given.
"""

from __future__ import annotations

import os
import textwrap
import traceback
from typing import Any

import pytest

_KEY = "_memspec_runners"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("memspec", "memspec conformance checks")
    g.addoption("--memspec-target", action="append", default=None, metavar="T",
                help="judge target T (repeatable), e.g. cmd:./my_impl; ini: memspec_target")
    g.addoption("--memspec-layer", default=None, metavar="LAYER",
                help="layer(s) to check: a name, a comma-separated list or 'all' "
                     "(default: the target's first layer); ini: memspec_layer")
    g.addoption("--memspec-seed", type=int, default=None, metavar="N", help="seed (default 0); ini: memspec_seed")
    g.addoption("--memspec-programs", type=int, default=None, metavar="N",
                help="random programs per target (default 100); ini: memspec_programs")
    g.addoption("--memspec-examples", type=int, default=None, metavar="N",
                help="state-machine examples per target (default 20); ini: memspec_examples")
    g.addoption("--memspec-timeout", type=float, default=None, metavar="S",
                help="time limit per program in seconds (default 10); ini: memspec_timeout")
    g.addoption("--memspec-out", default=None, metavar="DIR",
                help="report folder (default memspec-out under the root directory); ini: memspec_out")
    parser.addini("memspec_target", "memspec targets to judge, one per line", type="linelist", default=[])
    parser.addini("memspec_layer", "memspec layer to check", default="")
    parser.addini("memspec_seed", "memspec seed", default="0")
    parser.addini("memspec_programs", "memspec random programs per target", default="100")
    parser.addini("memspec_examples", "memspec state-machine examples per target", default="20")
    parser.addini("memspec_timeout", "memspec time limit per program (seconds)", default="10")
    parser.addini("memspec_out", "memspec report folder", default="")


def _setting(config: pytest.Config, name: str, cast: Any) -> Any:
    v = config.getoption(f"memspec_{name}")
    if v is None:
        v = config.getini(f"memspec_{name}")
    try:
        return cast(v)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"memspec: {name} must be a number, got {v!r}") from None


def _targets(config: pytest.Config) -> list[str]:
    cli = config.getoption("memspec_target")
    if cli:
        return [t for t in cli if t.strip()]
    return [t.strip() for t in config.getini("memspec_target") if t.strip()]


class _Runner:
    """Runs ``memspec check`` for one target and layer, once, on first use."""

    def __init__(self, config: pytest.Config, target: str, layer: str):
        self.config = config
        self.target = target
        self.layer = layer
        self.results: Any = None
        self.error: str | None = None
        self.html = ""

    def result(self) -> Any:
        if self.results is None and self.error is None:
            from memspec.commands.check import Checker, CheckOptions
            from memspec.errors import TargetError, UsageError
            c = self.config
            out = _setting(c, "out", str) or str(c.rootpath / "memspec-out")
            opts = CheckOptions(targets=[self.target], layer=self.layer, seed=_setting(c, "seed", int),
                                out=out, programs=_setting(c, "programs", int),
                                machine_examples=_setting(c, "examples", int), timeout=_setting(c, "timeout", float),
                                quiet=True, argv=["--target", self.target, "--layer", self.layer])
            try:
                self.results = Checker(opts).run()
            except (UsageError, TargetError) as e:
                self.error = f"{e}"
            except Exception:   # a bug in memspec: report it once per clause, run it once
                self.error = "memspec itself failed (please report this):\n" + traceback.format_exc()
            else:
                self.html = _write_reports(self.results, out, self.target, self.layer)
        if self.error is not None:
            pytest.fail(f"memspec could not judge {self.target}: {self.error}", pytrace=False)
        return self.results.targets[0]


def _write_reports(results: Any, out: str, target: str, layer: str) -> str:
    from memspec.fuzz.findings import safe_name as _safe  # the file-name rule counterexamples use
    from memspec.reports import html, json_report, junit
    stem = os.path.join(out, f"pytest-{_safe(target)}-{layer}")
    json_report.write(results, stem + ".json")
    junit.write(results, stem + ".xml")
    html.write(results, stem + ".html")
    return stem + ".html"


def failure_text(f: Any, target: str) -> str:
    """The message of a failed clause test: clause, program, expected vs observed, replay."""
    lines = [f"{f.clause}: {f.statement}", f"  [{f.citation}]",
             f"target: {target} -- verdict {f.verdict}, seen {f.count}x"]
    if f.expected_difference:
        lines.append(f"(listed as an expected difference: {f.expected_difference})")
    lines += [f"at call {f.call_index + 1}: {f.call_text}",
              f"expected: {f.expected}", f"observed: {f.observed}"]
    if f.note:
        lines.append(f"why: {f.note}")
    prog = [ln for ln in f.program.rstrip().splitlines() if not ln.startswith("#")]
    lines.append("program:")
    lines += [("  > " if i == f.call_index else "    ") + ln for i, ln in enumerate(prog)]
    lines.append(f"replay: {f.replay}")
    return "\n".join(lines)


class ClauseItem(pytest.Item):
    """One clause of one target's layer."""

    def __init__(self, *, runner: _Runner, clause: str, statement: str, citation: str, **kw: Any):
        super().__init__(**kw)
        self.runner = runner
        self.clause = clause
        self.statement = statement
        self.citation = citation
        self.add_marker(pytest.mark.memspec)

    def runtest(self) -> None:
        t = self.runner.result()
        failures = [f for f in t.failures if f.clause == self.clause]
        unexplained = [f for f in failures if not f.expected_difference]
        if unexplained:
            pytest.fail("\n\n".join(failure_text(f, self.runner.target) for f in unexplained)
                        + f"\nreport: {self.runner.html}", pytrace=False)
        if failures:
            pytest.xfail(f"expected difference: {failures[0].expected_difference}")
        stats = t.clauses.get(self.clause)
        if stats is None:
            na = t.not_applicable_clauses.get(self.clause)
            if na:
                pytest.skip(f"not applicable: {na} programs reaching {self.clause} use calls "
                            f"{self.runner.target} does not implement")
            pytest.skip(f"not exercised: no program of this run reached {self.clause}")
        bad = {k: v for k, v in stats.counts.items() if k in ("fail", "crash", "hang", "error")}
        if bad:
            pytest.fail(f"{self.clause}: {bad} checks failed but were not confirmed on re-runs (flaky target?)",
                        pytrace=False)
        if set(stats.counts) <= {"unknown"}:
            pytest.skip(f"unknown: the model could not decide any of the {stats.exercised} checks of {self.clause}")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"memspec clause {self.clause} on {self.runner.target}"

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, pytest.fail.Exception):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class TargetCollector(pytest.Collector):
    """The clauses of one target's layer (not found on disk: made by the plugin)."""

    def __init__(self, *, runner: _Runner, **kw: Any):
        super().__init__(**kw)
        self.runner = runner

    def collect(self) -> list[pytest.Item]:
        from memspec.specs.catalogue import all_clauses as catalogue
        cat = catalogue()
        return [ClauseItem.from_parent(self, name=cid, runner=self.runner, clause=cid, statement=c.statement,
                                       citation=c.citation)
                for cid, c in sorted(cat.items()) if c.layer == self.runner.layer]


def _layers_of(target: str, wanted: str) -> list[str]:
    """The layers to judge: ``wanted`` (comma-separated, or ``all``), else the target's first layer."""
    from memspec.errors import TargetError, UsageError
    from memspec.targets.registry import make_target
    try:
        t = make_target(target)
    except (UsageError, TargetError) as e:
        raise pytest.UsageError(f"memspec: cannot start target {target!r}: {e}") from None
    try:
        layers = list(t.layers)
    finally:
        t.close()
    if not wanted:
        return layers[:1]
    if wanted.strip() == "all":
        return layers
    out = [w.strip() for w in wanted.split(",") if w.strip()]
    for w in out:
        if w not in layers:
            raise pytest.UsageError(f"memspec: target {target!r} does not implement layer {w!r} "
                                    f"(it implements: {', '.join(layers)})")
    return out


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "memspec: a memspec conformance clause (added by the memspec plugin)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    targets = _targets(config)
    if not targets:
        return
    wanted = _setting(config, "layer", str)
    for target in targets:
        for layer in _layers_of(target, wanted):
            runner = _Runner(config, target, layer)
            name = f"memspec-{layer}[{target}]"
            col = TargetCollector.from_parent(session, name=name, nodeid=name, runner=runner)
            items.extend(col.collect())


def pytest_report_header(config: pytest.Config) -> list[str]:
    targets = _targets(config)
    if not targets:
        return []
    return [textwrap.shorten("memspec targets: " + ", ".join(targets), 200)]
