"""`memspec compare`: several targets, one set of programs, and the side the model takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from memspec.commands.compare import CompareOptions, render_markdown, run
from memspec.errors import UsageError

HERE = os.path.dirname(os.path.abspath(__file__))
BROKEN_HW = os.path.join(HERE, "..", "hw", "broken_hw.py")


def test_a_broken_walker_is_rejected_and_the_model_sides_with_the_right_one(tmp_path) -> None:
    broken = f"py:{BROKEN_HW}:BrokenTarget(DirtyOnRead)"
    report, status = run(CompareOptions(targets=["model", broken], layer="hw", programs=10, out=str(tmp_path),
                                        quiet=True))
    assert status == 1                                  # the broken side is rejected, with no cited difference
    s = report["summary"]
    assert s["unexplained"] >= 1 and s["by_target"]["model"]["rejected"] == 0
    first = [d for p in report["programs"] for d in p["disagreements"] if not d["after_divergence"]]
    dirty = [d for d in first if d["clause"].startswith("sdm.ad.")]
    assert dirty, first
    d = dirty[0]
    assert d["model_sides_with"] == ["model"] and not d["all_allowed"]
    assert len(d["explained"]) == 1 and list(d["explained"].values()) == [""]    # the broken one, unexplained
    assert d["citation"].startswith("Intel SDM")
    on_disk = json.loads((tmp_path / "compare.json").read_text())
    assert on_disk["summary"] == s
    md = (tmp_path / "compare.md").read_text()
    assert "| program | call | model |" in md and d["clause"] in md


def test_agreeing_targets_give_no_disagreement(tmp_path) -> None:
    report, status = run(CompareOptions(targets=["model", "qemu"], layer="hw", programs=0, suite=False,
                                        out=str(tmp_path), quiet=True))
    assert status == 0 and report["summary"]["programs"] == 0 and report["summary"]["disagreements"] == 0


def test_usage_errors() -> None:
    with pytest.raises(UsageError, match="at least two targets"):
        run(CompareOptions(targets=["model"], quiet=True))
    with pytest.raises(UsageError, match="no layer is implemented by all"):
        run(CompareOptions(targets=["model", "qemu"], layer="os", quiet=True))
    with pytest.raises(UsageError, match="unknown target"):
        run(CompareOptions(targets=["model", "nosuch"], quiet=True))


def test_real_peers_disagree_only_where_a_cited_difference_explains_it(tmp_path) -> None:
    """unicorn's QEMU 5.0 and Bochs on the hw suite: every disagreement that rejects one of them
    is an expected difference, and the model sides with Bochs on the MOV CR checks QEMU skips."""
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "compare", "-t", "qemu", "-t", "bochs", "--layer", "hw",
                        "--programs", "10", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "compare.json").read_text())
    first = {(p["origin"], d["clause"]): d for p in report["programs"] for d in p["disagreements"]
             if not d["after_divergence"]}
    cr0 = first[("suite/hw/18-cr0-pg-clear.mst", "sdm.cr0.pg-clear-long-mode-gp")]
    assert cr0["model_sides_with"] == ["bochs"] and cr0["explained"]["qemu"]
    pk = first[("suite/hw/12-pkeys.mst", "sdm.pkeys.access-disable")]
    assert pk["model_sides_with"] == ["qemu"] and pk["explained"]["bochs"]
    assert "model expects #GP under sdm.cr0.pg-clear-long-mode-gp: sides with bochs" in r.stderr
    assert render_markdown(report).count("\n|") >= 3
