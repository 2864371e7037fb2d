"""``Paging`` is composed of one module per concern (model/paging.py's docstring): each module stays
small, each call's rule lives in the module of its family, and no base defines a name another base
also defines (so the order of the bases never decides which method runs)."""

from __future__ import annotations

import os

import pytest

from memspec.model.paging import Paging
from memspec.model.paging_state import PagingState

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOMES = {
    "boot": "paging_control", "mov_cr0": "paging_control", "mov_cr3": "paging_control",
    "mov_cr4": "paging_control", "wrmsr_efer": "paging_control", "wrpkru": "paging_control",
    "invlpg": "paging_invalidation", "invpcid": "paging_invalidation",
    "set_pte": "paging_ad", "read_pte": "paging_ad",
}


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "model"))
                                        if f == "paging.py" or f.startswith("paging_") and f.endswith(".py")))
def test_the_paging_modules_stay_small(name) -> None:
    with open(os.path.join(ROOT, "model", name), encoding="utf-8") as f:
        n = sum(1 for _ in f)
    assert n <= 800, f"model/{name} has {n} lines"


def test_each_rule_lives_in_its_family() -> None:
    assert set(Paging.RULES) == set(HOMES) | {"access"}
    for name, home in HOMES.items():
        rule = Paging.RULES[name]
        assert rule.expect.__module__ == rule.apply.__module__ == "memspec.model." + home, name
    # an access's expect (what it may give) and apply (what it did: A/D, TLB fill) are two concerns
    assert Paging.RULES["access"].expect.__module__ == "memspec.model.paging_access"
    assert Paging.RULES["access"].apply.__module__ == "memspec.model.paging_ad"


def test_no_base_shadows_another() -> None:
    bases = [c for c in Paging.__mro__ if c not in (Paging, object)]
    assert bases[-1] is PagingState
    owner: dict[str, type] = {}
    for c in bases:
        for name in vars(c):
            if name.startswith("__") and name.endswith("__"):
                continue
            assert name not in owner, f"{name} is defined by {owner[name].__name__} and {c.__name__}"
            owner[name] = c
