"""A rule of the os layer: what a call may do now (``expect``) and what it did (``apply``).

Each family module (``model.os.mappings``, ``model.os.access``, ...) exports one table
``RULES``, call name -> ``Rule``; ``model.mm`` merges the tables with ``merge`` (a call with
two rules is an error at import) and checks them against the call table with ``covering``
(a call of the os layer without a rule, or a rule for no such call, is an error at import).

The functions' shapes, with the call's arguments as the call table lists them (unsigned
arguments already reduced to 64 bits):

    expect(sys, mm, *args) -> Expect              what the clause allows now
    apply(sys, proc, mm, outcome, *args) -> None  adopt the (allowed) outcome

Worked example: ``RULES["munmap"].expect(sys, mm, 0x1001, 4096)`` is EINVAL under clause
``posix.munmap.einval-unaligned``; ``RULES["munmap"].apply`` then changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..expect import Expect


@dataclass(frozen=True, slots=True)
class Rule:
    expect: Callable[..., Expect]
    apply: Callable[..., None]


def unchanged(sys: Any, proc: str, mm: Any, o: Any, *args: Any) -> None:
    """The ``apply`` of a call that only observes: the state stays as it is."""


def merge(*tables: Mapping[str, Rule]) -> dict[str, Rule]:
    """One table from the families' tables; a call governed by two of them is an error."""
    out: dict[str, Rule] = {}
    for table in tables:
        for name, rule in table.items():
            if name in out:
                raise ValueError(f"os call {name!r} has two rules")
            out[name] = rule
    return out


def covering(table: Mapping[str, Rule], calls: Iterable[str]) -> Mapping[str, Rule]:
    """``table`` itself, if it has a rule for exactly ``calls``; otherwise an error naming the difference."""
    want = set(calls)
    missing, extra = sorted(want - set(table)), sorted(set(table) - want)
    if missing or extra:
        raise ValueError(f"os rules do not match the call table: without a rule {missing}, "
                         f"rules for no such call {extra}")
    return table


def replaced(table: Mapping[str, Rule], name: str, *, expect: Callable[..., Expect] | None = None,
             apply: Callable[..., None] | None = None) -> dict[str, Rule]:
    """``table`` with one call's expect and/or apply replaced (a test's deliberately broken model)."""
    old = table[name]
    return {**table, name: Rule(expect or old.expect, apply or old.apply)}
