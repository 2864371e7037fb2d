"""The implementation-choice table is measured, not assumed: probe programs run on the target
and their outcomes become the answers (memspec/impl_choices.py)."""

from __future__ import annotations

import importlib.util
import os

from memspec.commands.check import summary_lines
from memspec.commands.impl_choices import PROBES, probe, table, text_table
from memspec.reports.html import render
from memspec.reports.json_report import to_dict
from memspec.results import RunResults
from memspec.targets.registry import make_target

_spec = importlib.util.spec_from_file_location("broken_phys", os.path.join(os.path.dirname(__file__), "broken_phys.py"))
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]


def test_the_models_own_choices():
    """The in-process model answers with its defaults: a unique pointer for malloc(0), a new block for
    realloc(p, 0), no slack, 16-byte placement, NULL with ENOMEM for absurd sizes."""
    a = probe(make_target("model"))
    assert a["malloc0"] == "unique pointer, usable size 0"
    assert a["realloc0"] == "returns a new block, usable size 0"
    assert a["slack-24"] == "24 (+0)" and a["slack-4097"] == "4097 (+0)"
    assert {a[f"align-{n}"] for n in (1, 2, 4, 8, 12)} == {"16"}
    assert a["huge-size-max"] == a["calloc-overflow"] == a["realloc-huge"] == "NULL, errno ENOMEM"
    assert a["aligned-alloc-size"] == "a 64-aligned block" and a["aligned-alloc-24"] == "a 32-aligned block"
    assert set(a) == {p.id for p in PROBES}


def test_a_different_heap_gets_a_different_column():
    """NaiveHeap rounds to 16 bytes, has no aligned_alloc, and with its "misaligned" bug hands out
    8-aligned blocks: the table shows exactly that, side by side with the model."""
    ok = probe(broken.NaiveHeapTarget())
    bad = probe(broken.NaiveHeapTarget("misaligned"))
    assert ok["malloc0"] == "unique pointer, usable size 16"
    assert ok["slack-24"] == "32 (+8)" and ok["slack-1"] == "16 (+15)"
    assert ok["align-8"] == "16" and bad["align-8"] == "8"
    assert ok["huge-size-max"] == "NULL, errno ENOMEM"
    assert ok["aligned-alloc-size"] == "not implemented"
    t = table({"model": probe(make_target("model")), "naive": ok, "naive-misaligned": bad})
    assert t["columns"] == ["model", "naive", "naive-misaligned"]
    row = next(r for r in t["rows"] if r["id"] == "align-8")
    assert row["values"] == {"model": "16", "naive": "16", "naive-misaligned": "8"}
    assert row["program"].startswith("p0 = malloc(8)\n")


def test_the_table_in_every_report():
    t = table({"model": probe(make_target("model")), "naive": probe(broken.NaiveHeapTarget())})
    r = RunResults(command="memspec check", seed=0, started="2026-01-01T00:00:00Z", impl_choices=t)
    assert to_dict(r)["impl_choices"] == t
    text = "\n".join(summary_lines(r))
    assert "implementation choices" in text and "unique pointer, usable size 16" in text
    lines = text_table(t)
    assert lines[0].split()[:3] == ["choice", "model", "naive"] and len(lines) == len(PROBES) + 2
    html = render(to_dict(r))
    assert 'id="choices"' in html and "unique pointer, usable size 16" in html
    # no malloc target, no table
    assert "impl_choices" not in to_dict(RunResults(command="c", seed=0, started="s"))
    assert 'id="choices"' not in render(to_dict(RunResults(command="c", seed=0, started="s")))
