"""The directed phys suite passes on the model, exercising the clauses it names; the experiment's numbers."""

from __future__ import annotations

from memspec.specs.directed import suite_programs
from memspec.specs.catalogue import all_clauses
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget


def test_suite_passes_on_the_model_with_its_clauses():
    cat = all_clauses()
    names = []
    for name, p in suite_programs("phys"):
        names.append(name)
        j = judge(p, ModelTarget().run(p, observe="each"), "model")
        assert j.passed, (name, j.failure)
        want = set(p.meta("clauses").split())
        assert want <= set(cat), want - set(cat)
        assert want <= {c.clause for c in j.checks}, (name, want - {c.clause for c in j.checks})
    assert len(names) >= 13


def test_every_phys_clause_is_cited():
    phys = [c for c in all_clauses().values() if c.layer == "phys"]
    assert len(phys) >= 100
    assert all(c.citation and c.statement for c in phys)


def test_experiment_numbers_and_plot(tmp_path):
    from memspec.commands.experiments.buddy import run
    d = run(str(tmp_path))
    assert d["five_kb"] == {"request_bytes": 5120, "order": 1, "block_bytes": 8192, "wasted_bytes": 3072}
    curve = d["curve"]
    assert len(curve) == 6000
    # churn fragments the free memory: more of it unusable for order 4 at the end than at the start
    assert curve[-1]["unusable_index"] > curve[0]["unusable_index"]
    assert d["max_unusable_index"] > 0.3
    with open(d["plot"], encoding="utf-8", errors="replace") as f:
        head = f.read(200)
    assert "<svg" in head or d["plot"].endswith(".png")
