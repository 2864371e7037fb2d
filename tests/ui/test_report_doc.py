"""docs/report.md documents every field report.json has."""

from __future__ import annotations

from pathlib import Path

from memspec.reports.json_report import SCHEMA, to_dict
from memspec.results import ClauseStats, Failure, RunResults, TargetResults

DOC = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def sample() -> dict:
    t = TargetResults(name="cmd:./impl", layers=["os"], programs=3, calls=9, not_applicable=1,
                      not_applicable_clauses={"posix.mlock.locks": 1}, timeline=[[0.0, 0, 0, 0], [0.5, 3, 2, 1]])
    t.clauses["posix.mmap.einval-len0"] = ClauseStats()
    t.clauses["posix.mmap.einval-len0"].add("fail")
    t.failures.append(Failure("posix.mmap.einval-len0", "s", "c", "fail", "a = mmap(NULL, 0, ...)\n", 0,
                              "a = mmap(...)", "-1 EINVAL", "-1 ENOMEM", "why", "memspec replay f.mst", "f.mst"))
    r = RunResults(command="memspec check", seed=0, started="2026-01-01T00:00:00Z", targets=[t],
                   catalogue={"posix.mmap.einval-len0": {"layer": "os", "statement": "s", "citation": "c",
                                                         "kernel_differs": ""}},
                   coverage={"package": "memspec.model", "totals": {}, "files": {}},
                   impl_choices={"columns": ["malloc:glibc"], "rows": [
                       {"id": "malloc0", "choice": "malloc(0)", "program": "p = malloc(0)\n",
                        "values": {"malloc:glibc": "unique pointer, usable size 24"}}]})
    return to_dict(r)


def test_every_report_field_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    d = sample()
    missing = [k for k in d if f"`{k}`" not in doc]
    missing += [f"summary.{k}" for k in d["summary"] if f"`{k}`" not in doc]
    missing += [f"targets[].{k}" for k in d["targets"][0] if f"`{k}`" not in doc]
    missing += [f"failures[].{k}" for k in d["targets"][0]["failures"][0] if f"`{k}`" not in doc]
    missing += [f"impl_choices.{k}" for k in d["impl_choices"] if f"`{k}`" not in doc]
    missing += [f"impl_choices.rows[].{k}" for k in d["impl_choices"]["rows"][0] if f"`rows[].{k}`" not in doc]
    assert missing == [], f"docs/report.md does not document: {missing}"
    assert f"Schema version **{SCHEMA}**" in doc
