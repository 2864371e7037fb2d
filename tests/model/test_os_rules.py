"""The os model's rule tables (model/os/*.py): every os call of the call table has exactly one
rule, the facade looks calls up in the table, and the modules stay small."""

from __future__ import annotations

import importlib
import os
import pkgutil

import pytest

from memspec.calls import layer_calls
from memspec.model import mm
from memspec.model import os as os_model
from memspec.model.os import mappings
from memspec.model.rules import Rule, compose, replaced
from memspec.records import Outcome

# every module of the os package that exports rules (a new family counts without editing this list)
FAMILIES = tuple(importlib.import_module(f"memspec.model.os.{m.name}") for m in pkgutil.iter_modules(os_model.__path__))
FAMILIES = tuple(f for f in FAMILIES if hasattr(f, "RULES"))
OS_CALLS = {c.name for c in layer_calls("os")}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_table_covers_exactly_the_os_calls() -> None:
    assert set(mm.RULES) == OS_CALLS
    assert len(OS_CALLS) >= 39
    assert all(isinstance(r, Rule) and callable(r.expect) and (r.apply is None or callable(r.apply))
               for r in mm.RULES.values())


def test_each_call_has_its_rule_in_one_family() -> None:
    owners: dict[str, list[str]] = {}
    for fam in FAMILIES:
        for name in fam.RULES:
            owners.setdefault(name, []).append(fam.__name__)
    assert {n: o for n, o in owners.items() if len(o) != 1} == {}
    assert set(owners) == OS_CALLS


def _compose(*tables):
    return compose("os", *tables, lead=(2, 4))


def test_the_families_compose_to_the_facade_table() -> None:
    assert dict(_compose(*(f.RULES for f in FAMILIES))) == dict(mm.RULES)


def test_a_duplicate_rule_fails() -> None:
    with pytest.raises(ValueError, match="two rules for 'munmap'"):
        _compose(*(f.RULES for f in FAMILIES), {"munmap": mappings.RULES["munmap"]})


def test_a_missing_rule_fails() -> None:
    table = {n: r for f in FAMILIES for n, r in f.RULES.items() if n != "mincore"}
    with pytest.raises(ValueError, match=r"no rule for \['mincore'\]"):
        _compose(table)


def test_a_rule_for_no_call_fails() -> None:
    with pytest.raises(ValueError, match=r"no call for \['mmap2'\]"):
        _compose(*(f.RULES for f in FAMILIES), {"mmap2": mappings.RULES["mmap"]})


def test_a_rule_with_other_parameters_than_its_call_fails() -> None:
    table = {n: r for f in FAMILIES for n, r in f.RULES.items()}
    table["munmap"] = Rule(lambda sys, m, length, addr: mappings.expect_munmap(sys, m, addr, length))
    with pytest.raises(ValueError, match="the rule for 'munmap'"):
        _compose(table)
    table["munmap"] = Rule(mappings.expect_munmap, lambda sys, m, o, addr, length: None)   # apply lacks proc
    with pytest.raises(ValueError, match="the rule for 'munmap'"):
        _compose(table)


def test_the_facade_answers_through_the_table() -> None:
    seen = []

    def expect(sys, m, addr, length):
        seen.append((addr, length))
        return mappings.expect_munmap(sys, m, addr, length)

    class Watched(mm.System):
        rules = replaced(mm.System.rules, "munmap", expect=expect)

    s = Watched()
    e = s.expect("main", "munmap", (0x1001, 4096))
    assert seen == [(0x1001, 4096)]
    assert e.clause == "posix.munmap.einval-unaligned" and e.default.errno == "EINVAL"
    # the unchanged reference answers the same without the wrapper
    assert mm.System().expect("main", "munmap", (0x1001, 4096)).default == e.default


def test_unsigned_arguments_reach_the_rules_as_64_bit_values() -> None:
    got = []

    class Watched(mm.System):
        rules = replaced(mm.System.rules, "munmap", apply=lambda sys, proc, m, o, addr, length: got.append(addr))

    Watched().apply("main", "munmap", (-4096, 4096), Outcome(value=-1, errno="EINVAL"))
    assert got == [(1 << 64) - 4096]


@pytest.mark.parametrize("path", ["model/mm.py", "model/fault.py", "model/pressure.py", "model/invariants.py"]
                         + sorted(f"model/os/{f}" for f in os.listdir(os.path.join(ROOT, "model", "os"))
                                  if f.endswith(".py")))
def test_the_os_modules_stay_small(path) -> None:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        n = sum(1 for _ in f)
    assert n <= 800, f"{path} has {n} lines"
