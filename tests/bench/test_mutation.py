"""The mutation benchmark's mutator and runner (benchmarks/mutation.py).

Each operator gives mutants that compile and differ from the model and from each other;
a mutant is rebuilt from its id alone; an obvious mutant (munmap's alignment check
inverted) is killed by a short ``check`` naming its clause, and the unmutated model served
the same way is not (no false kill).  Kill rates are measured by the benchmark, not here.
"""

from __future__ import annotations

import ast
import os

import pytest

from ..conftest import load_benchmark

pytestmark = pytest.mark.slow   # each test builds and runs mutants of the model in subprocesses (~3 min together)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


mutation = load_benchmark("mutation.py")


def _obvious() -> str:
    """munmap's alignment check inverted: `if addr & ~PAGE_MASK:` -> `if not addr & ~PAGE_MASK:`
    (found by content: the model's line numbers move as it is edited)."""
    with open(os.path.join(ROOT, "model", "os", "mappings.py")) as f:
        tree = ast.parse(f.read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "expect_munmap")
    check = next(n for n in fn.body if isinstance(n, ast.If))
    assert ast.unparse(check.test) == "addr & ~PAGE_MASK"
    return f"os/mappings.py:{check.lineno}:{check.col_offset}:not"


OBVIOUS = _obvious()


def _normal(path: str) -> str:
    with open(os.path.join(ROOT, "model", path)) as f:
        return ast.unparse(ast.parse(f.read()))


@pytest.mark.parametrize("path", ["os/mappings.py", "buddy.py"])
def test_every_operator_gives_valid_distinct_mutants(path: str) -> None:
    ms = mutation.mutants_of("os" if path.startswith("os/") else "phys", files=(path,))
    kinds = {m.op.split(".")[0] for m in ms}
    assert kinds == set(mutation.OPERATORS), kinds
    assert len({m.id for m in ms}) == len(ms)
    original = _normal(path)
    seen: dict[str, str] = {}
    per_kind: dict[str, int] = {}
    for m in ms:
        kind = m.op.split(".")[0]
        per_kind[kind] = per_kind.get(kind, 0) + 1
        if per_kind[kind] > 8:     # a few of each operator (every mutant of a module is slow)
            continue
        src = mutation.mutate(m)
        compile(src, m.file, "exec")
        norm = ast.unparse(ast.parse(src))
        assert norm != original, m.id
        assert norm not in seen, (m.id, seen.get(norm))
        seen[norm] = m.id


def test_mutant_reproducible_from_id() -> None:
    ms = mutation.sample("os", 25, seed=3)
    assert ms == mutation.sample("os", 25, seed=3)
    assert mutation.sample("os", 10, seed=3) == ms[:10]      # a smaller sample is a prefix
    for m in ms:
        again = mutation.Mutant.parse(m.id)
        assert again == m
        assert mutation.mutate(again) == mutation.mutate(m)
    before, after = mutation.mutated_line(mutation.Mutant.parse(OBVIOUS))
    assert before == "if addr & ~PAGE_MASK:"
    assert after.startswith("if not addr & ~PAGE_MASK:")


def test_unknown_mutant_is_refused() -> None:
    with pytest.raises(mutation.MutantNotFound):
        mutation.mutate(mutation.Mutant("os/mappings.py", 1, 0, "not"))


def test_obvious_mutant_killed_and_unmutated_model_survives() -> None:
    killed = mutation.judge_mutant(mutation.Mutant.parse(OBVIOUS), "os", seed=0, programs=5,
                                   fuzz_seconds=0, limit=120)
    assert killed["verdict"] == "killed", killed
    assert killed["clause"] == "posix.munmap.einval-unaligned"
    assert killed["repro_calls"] and killed["repro_calls"] >= 1
    clean = mutation.judge_mutant(None, "os", seed=0, programs=5, fuzz_seconds=0, limit=120)
    assert clean["verdict"] == "survived", clean


def test_equivalent_list_names_real_mutants_with_reasons() -> None:
    entries = mutation.equivalent_entries()
    assert entries
    assert len({e["id"] for e in entries}) == len(entries)
    gone = []
    for e in entries:
        assert e["kind"] in ("equivalent", "allowed"), e
        assert len(e["reason"]) > 20 and e["source"], e
        now = mutation.reanchor(e)
        if now is None:      # the line was edited since it was inspected: to be looked at again
            gone.append(e["id"])
            continue
        m = mutation.Mutant.parse(now)
        layer = next(lay for lay, files in mutation.LAYER_FILES.items() if m.file in files)
        assert m in mutation.mutants_of(layer, files=(m.file,)), (e["id"], now)
    assert len(gone) < len(entries), gone


def test_mutant_that_does_not_import_is_non_viable_and_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutated model package that raises when imported is no target at all: ``non-viable``,
    left out of the rate (the mutated line here is a rule whose table check fails at import)."""
    m = mutation.Mutant.parse(OBVIOUS)
    original = mutation.mutate(m)
    monkeypatch.setattr(mutation, "mutate", lambda _m: original + "\nraise ValueError('table check failed')\n")
    r = mutation.judge_mutant(m, "os", seed=0, programs=5, fuzz_seconds=0, limit=120)
    assert r["verdict"] == "non-viable", r
    assert r["error"] == "ValueError: table check failed"
    s = mutation.summarise([r, {"id": "x.py:1:0:not", "verdict": "killed", "stage": "check"},
                            {"id": "x.py:2:0:not", "verdict": "crashed", "stage": "check"}], {})
    assert (s["judged"], s["non_viable"], s["killed_by_check"], s["crashed"]) == (2, 1, 1, 1)
    assert s["kill_rate_check_pct"] == 50.0
