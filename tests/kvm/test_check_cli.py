"""`memspec check --target kvm --layer hw`: the acceptance run, short."""

from __future__ import annotations

import json
import os


def test_check_passes_with_unsupported_features_listed(kvm_target, memspec_cli, tmp_path):
    out = tmp_path / "out"
    r = memspec_cli("check", "--target", "kvm", "--layer", "hw", "--programs", "40", "--machine-examples", "5",
                    "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "report.json").read_text())
    t = next(t for t in report["targets"] if t["name"] == "kvm")
    assert "1 GiB pages" in t["unsupported"] and "LA57 (5-level paging)" in t["unsupported"]
    assert len(t["clauses"]) >= 50
    assert all(f.get("expected_difference") for f in t["failures"]), [f["clause"] for f in t["failures"]]
    assert os.path.exists(out / "report.xml")
