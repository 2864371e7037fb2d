"""check, compare and the fuzz driver's Python loop judge beside the run (fuzz/pipeline.RunAhead: the
judge in a second process) on every target, in this process or elsewhere, and give the same
verdicts and outputs with and without it on a seeded run.  The target is the model with one TLB bug (tests/hw/broken_pcid.py), declared to
run elsewhere: deterministic, so any difference is the pipeline's, and failing, so findings
(confirmed, shrunk and saved through the target between two programs) are compared too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.fuzz import pipeline

HERE = Path(__file__).resolve().parent
HW = HERE.parent / "hw"
BUG = "InvpcidSingleFlushesCurrent"


def elsewhere(bug: str = BUG):
    """A ``py:`` target: the broken walker, as if it ran in another process."""
    sys.path.insert(0, str(HW))
    import broken_pcid
    t = broken_pcid.target(bug)
    t.runs_elsewhere = True
    return t


def here(bug: str = BUG):
    """The same broken walker, running in this process (as a ``py:`` target does)."""
    t = elsewhere(bug)
    t.runs_elsewhere = False
    return t


SPEC = f'py:{Path(__file__).resolve()}:elsewhere()'
HERE_SPEC = f'py:{Path(__file__).resolve()}:here()'


@pytest.fixture
def modes(monkeypatch):
    """Records whether each RunAhead made judged beside the run."""
    seen: list[bool] = []
    init = pipeline.RunAhead.__init__

    def record(self, *a, **kw):
        init(self, *a, **kw)
        seen.append(self.ahead)
    monkeypatch.setattr(pipeline.RunAhead, "__init__", record)
    return seen


_VOLATILE = {"started", "duration_s", "timeline", "seconds", "argv", "command", "replay", "file", "coverage"}


def _stable(x):
    """A report without what changes from run to run (times, folders, the command line)."""
    if isinstance(x, dict):
        return {k: _stable(v) for k, v in x.items() if k not in _VOLATILE}
    if isinstance(x, list):
        return [_stable(v) for v in x]
    if isinstance(x, str):
        return x.split("/out-")[0]
    return x


@pytest.mark.parametrize("spec", [SPEC, HERE_SPEC], ids=["elsewhere", "in-process"])
def test_check_gives_the_same_report_with_and_without_overlap(tmp_path, modes, spec) -> None:
    reports = {}
    for flag in ("--overlap", "--no-overlap"):
        out = tmp_path / f"out-{flag}"
        status = main(["check", "-q", "--target", spec, "--layer", "hw", "--programs", "60", "--seed", "3",
                       "--machine-examples", "0", "--out", str(out), flag])
        reports[flag] = (status, _stable(json.loads((out / "report.json").read_text())))
    assert modes == [True, False]
    (s1, r1), (s2, r2) = reports["--overlap"], reports["--no-overlap"]
    assert s1 == s2 == 1
    assert r1["targets"][0]["failures"], "the broken walker was not caught: nothing to compare"
    assert r1 == r2


def test_compare_gives_the_same_report_with_and_without_overlap(tmp_path, modes) -> None:
    reports = {}
    for flag in ("--overlap", "--no-overlap"):
        out = tmp_path / f"out-{flag}"
        status = main(["compare", "-q", "--target", "model", "--target", SPEC, "--layer", "hw", "--programs", "60",
                       "--seed", "3", "--no-suite", "--out", str(out), flag])
        reports[flag] = (status, _stable(json.loads((out / "compare.json").read_text())))
    assert modes == [True, False]
    (s1, r1), (s2, r2) = reports["--overlap"], reports["--no-overlap"]
    assert s1 == s2
    assert any(p["disagreements"] for p in r1["programs"]), "no disagreement: nothing to compare"
    assert r1 == r2


def test_the_fuzz_loop_gives_the_same_inputs_verdicts_corpus_and_findings(tmp_path, modes) -> None:
    from memspec.commands.fuzz_driver import Fuzzer, FuzzOptions
    got = {}
    for overlap in (True, False):
        root = tmp_path / f"out-{overlap}"
        o = FuzzOptions(target=SPEC, layer="hw", seconds=600, seed=7, corpus=str(root / "c"),
                        findings=str(root / "f"), quiet=True, overlap=overlap, suite_seeds=False)
        f = Fuzzer(o)
        verdicts = []
        judged = f.judged

        def note(data, program, j, keep, judged=judged, verdicts=verdicts):
            verdicts.append((data, j.status.value, [(c.clause, c.verdict.value) for c in j.checks]))
            judged(data, program, j, keep)
        f.judged = note
        assert f.run_python(limit=120) in (0, 1)
        findings = sorted((p.relative_to(root / "f").as_posix(), p.read_text().replace(str(root), "ROOT"))
                          for p in (root / "f").rglob("*.mst"))
        got[overlap] = (verdicts, sorted(p.name for p in (root / "c").iterdir()), findings,
                        (f.stats.execs, f.stats.corpus, f.stats.features, f.stats.findings, f.stats.refused))
    assert modes == [True, False]
    assert len(got[True][0]) > 60 and got[True][2], "no finding: nothing to compare"
    assert got[True] == got[False]


def test_check_coverage_counts_the_judges_lines_with_overlap_too(tmp_path) -> None:
    # --coverage measures the model's lines in this process: the judge stays here (on the helper
    # thread, which coverage traces), so overlap does not hide them.  On linux the run executes no
    # model code: every line counted is the judge's.  Each mode in a fresh process (a warm cache
    # skips lines).
    import subprocess
    totals = {}
    for flag in ("--overlap", "--no-overlap"):
        out = tmp_path / f"out-{flag}"
        subprocess.run([sys.executable, "-m", "memspec.commands.cli", "check", "-q", "--target", "linux",
                        "--layer", "os", "--programs", "15", "--seed", "2", "--no-suite", "--machine-examples", "0",
                        "--coverage", "--out", str(out), flag], check=False, timeout=300)
        totals[flag] = json.loads((out / "report.json").read_text())["coverage"]["totals"]
    assert totals["--no-overlap"]["covered_lines"] > 1000
    assert totals["--overlap"] == totals["--no-overlap"]
