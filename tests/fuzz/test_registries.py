"""Nothing registered by name fails silently: every registry resolves at import, every registered
name imports, and a bogus entry is an error (never a skipped layer, comparison or target)."""

from __future__ import annotations

import importlib
import importlib.util
import os

import pytest

import memspec.calls as calls
from memspec.calls import LAYERS
from memspec.model import registry as model_registry
from memspec.program import parse
from memspec.records import RunResult
from memspec.specs import catalogue, judge as judge_mod
from memspec.targets import registry as target_registry
from memspec.targets.base import Target


# -- model factories (model/registry.py) --------------------------------------------------------

def test_every_layer_has_a_model_factory_that_builds_a_model() -> None:
    assert set(model_registry.FACTORIES) == set(LAYERS)
    for layer in LAYERS:
        m = model_registry.new_model(layer, {})
        assert callable(m.expect) and callable(m.apply) and callable(m.invariants), layer


def test_an_unknown_layer_has_no_model() -> None:
    with pytest.raises(KeyError, match="no model for layer 'bogus'"):
        model_registry.new_model("bogus")


# -- checkpoint comparisons (specs/judge.COMPARE) -----------------------------------------------

def test_every_layer_has_a_checkpoint_comparison() -> None:
    assert set(judge_mod.COMPARE) == set(LAYERS)
    assert all(callable(f) for f in judge_mod.COMPARE.values())
    assert judge_mod._compare_for("virt").__module__ == "memspec.specs.compare_virt"


def test_a_layer_without_a_comparison_is_an_error_not_a_silent_pass(monkeypatch) -> None:
    with pytest.raises(KeyError, match="no checkpoint comparison for layer 'bogus'"):
        judge_mod._compare_for("bogus")
    monkeypatch.delitem(judge_mod.COMPARE, "virt")
    p = parse("vm_enter(0)\n")
    with pytest.raises(KeyError, match="virt"):
        judge_mod.judge(p, RunResult(()), "t")


def test_the_judge_refuses_to_import_when_a_layer_lacks_a_comparison(monkeypatch) -> None:
    monkeypatch.setattr(calls, "LAYERS", LAYERS + ("bogus",))
    path = os.path.join(os.path.dirname(judge_mod.__file__), "judge.py")
    spec = importlib.util.spec_from_file_location("memspec.specs._judge_copy", path)
    mod = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match="do not cover the layers"):
        spec.loader.exec_module(mod)  # type: ignore[union-attr]


# -- targets (targets/registry.py) --------------------------------------------------------------

@pytest.mark.parametrize("where", sorted(set(target_registry.TARGETS.values()) | set(target_registry.FAMILIES.values())))
def test_every_registered_target_adapter_imports(where) -> None:
    obj = target_registry._load(where)
    assert callable(obj)
    if isinstance(obj, type):
        assert issubclass(obj, Target), where


def test_a_misspelt_target_module_fails_at_import(monkeypatch) -> None:
    monkeypatch.setitem(target_registry.TARGETS, "bogus", "memspec.targets.no_such_module:Bogus")
    with pytest.raises(ImportError, match="no_such_module"):
        target_registry._check_registered()
    monkeypatch.setitem(target_registry.TARGETS, "bogus", "memspec.targets.model")
    with pytest.raises(ImportError, match="not 'module:attribute'"):
        target_registry._check_registered()


def test_a_misspelt_target_attribute_is_an_error_not_unavailable(monkeypatch) -> None:
    monkeypatch.setitem(target_registry.TARGETS, "bogus", "memspec.targets.model:NoSuchTarget")
    with pytest.raises(ImportError, match="NoSuchTarget"):
        target_registry.make_target("bogus")


def test_a_missing_memspec_module_is_a_bug_not_a_missing_extra(monkeypatch) -> None:
    def load(where):
        raise ModuleNotFoundError("No module named 'memspec.targets.gone'", name="memspec.targets.gone")
    monkeypatch.setattr(target_registry, "_load", load)
    with pytest.raises(ModuleNotFoundError):
        target_registry.make_target("model")


# -- clause modules (specs/catalogue.CLAUSE_MODULES) -------------------------------------------

def test_every_clause_module_imports_and_declares_clauses() -> None:
    cat = catalogue.all_clauses()
    for m in catalogue.CLAUSE_MODULES:
        importlib.import_module(m)
    assert {c.layer for c in cat.values()} == set(LAYERS)


def test_a_misspelt_clause_module_fails(monkeypatch) -> None:
    monkeypatch.setattr(catalogue, "CLAUSE_MODULES", catalogue.CLAUSE_MODULES + ("memspec.specs.clauses_nope",))
    with pytest.raises(ImportError, match="clauses_nope"):
        catalogue._check_modules()


# -- the Layer records (memspec.fuzz.layers): every part by direct reference ------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_record_is_whole(name) -> None:
    from memspec.fuzz.layers import LAYERS as RECORDS
    from memspec.model.registry import FACTORIES
    from memspec.specs.judge import COMPARE
    lay = RECORDS[name]
    assert lay.name == name
    assert callable(lay.codec.decode) and callable(lay.codec.encode)
    assert callable(lay.machine) and lay.compare is COMPARE[name] and lay.new_model is FACTORIES[name]
    assert lay.clauses and next(iter(lay.suite()), None) is not None, f"layer {name} has no directed suite"
    # its clause modules declare clauses of this layer
    from memspec.specs.catalogue import all_clauses
    assert any(c.layer == name for c in all_clauses().values())


def test_every_catalogued_clause_module_belongs_to_a_layer_record() -> None:
    from memspec.fuzz.layers import LAYERS as RECORDS
    from memspec.specs import catalogue
    in_records = {m.__name__ for lay in RECORDS.values() for m in lay.clauses}
    assert in_records == set(catalogue.CLAUSE_MODULES)


def test_an_unknown_layer_is_an_error_not_a_silent_skip() -> None:
    from memspec.fuzz.layers import layer, random_programs
    with pytest.raises(KeyError, match="no layer 'bogus'"):
        layer("bogus")
    with pytest.raises(KeyError):
        list(random_programs("bogus", 3, 0, None))
