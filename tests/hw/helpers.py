"""Helpers of the hw tests: drive the model through program text, judge targets."""

from __future__ import annotations

from typing import Any

from memspec.model.paging import Paging
from memspec.program import Program, eval_args, parse
from memspec.records import Outcome

TREE = """\
set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)
set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)
"""


def model_after(text: str, facts: dict[str, Any] | None = None) -> Paging:
    """The model after running ``text`` with its own default outcomes."""
    m = Paging(facts)
    for c in parse(text).calls:
        args = eval_args(c, {})
        o = m.expect("main", c.name, args).default
        m.apply("main", c.name, args, o)
    return m


def allowed(m: Paging, line: str, observed: Outcome) -> str | None:
    c = parse(line).calls[0]
    return m.expect("main", c.name, eval_args(c, {})).judge(observed)


def value(pa: int) -> Outcome:
    return Outcome(value=(pa << 8) | 0xCC)


def pf(cr2: int, code: int) -> Outcome:
    return Outcome(signal="#PF", detail=(("cr2", cr2), ("errcode", code)))


def program(text: str) -> Program:
    return parse(text)
