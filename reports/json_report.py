"""The JSON report (schema documented in docs/report.md; ``schema`` bumps on incompatible change)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from memspec import __version__

from memspec.atomic import write_text
from memspec.results import RunResults

SCHEMA = 1


def to_dict(r: RunResults) -> dict[str, Any]:
    out: dict[str, Any] = {
        "memspec": __version__,
        "schema": SCHEMA,
        "command": r.command,
        "seed": r.seed,
        "started": r.started,
        "duration_s": round(r.duration_s, 3),
        "interrupted": r.interrupted,
        "interrupted_by": r.interrupted_by,
        "exit_code": r.exit_code,
        "summary": {
            "targets": len(r.targets),
            "failures": sum(len(t.failures) for t in r.targets),
            "unexplained_failures": r.unexplained_failures,
            "expected_differences": sum(len(t.failures) - len(t.unexplained()) for t in r.targets),
        },
        "targets": [],
    }
    for t in r.targets:
        d = asdict(t)
        d["clauses"] = {cid: {"exercised": s.exercised, **s.counts} for cid, s in sorted(t.clauses.items())}
        d["clauses_exercised"] = len(t.clauses)
        d["clauses_failed"] = sorted({f.clause for f in t.failures})
        out["targets"].append(d)
    out["catalogue"] = r.catalogue
    if r.coverage:
        out["coverage"] = r.coverage
    if r.impl_choices:
        out["impl_choices"] = r.impl_choices
    return out


def write(r: RunResults, path: str) -> None:
    write_text(path, json.dumps(to_dict(r), indent=2, sort_keys=False, default=str) + "\n")
