"""What a phys allocator's rules are made of: one ``Rule`` per call, a table of them by
call name, and the outcomes and checks the allocators share.

A rule is two plain functions of the phys model: ``expect(m, *args) -> Expect`` (what
the clauses allow now, each naming its clause) and ``apply(m, outcome, *args)`` (adopt
an allowed outcome as what happened; ``None`` when the call changes nothing).  Each
allocator module (``buddy``, ``slab``, ``vmalloc``, ``dma``, ``numa``, ``heap``,
``gc``) exports its table as ``RULES``; ``model.phys`` composes them and ``compose``
checks the result against the call table: a call without a rule, a rule without a
call, a call with two rules, or a rule whose parameters are not the call's fails at
import, not at the first program that uses it.

Worked example::

    RULES = table(Rule("buddy_free", expect_buddy_free, apply_buddy_free))
    compose("phys", buddy.RULES, slab.RULES, ...)["buddy_free"].expect(m, pfn)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from memspec.calls import CALLS
from memspec.records import Outcome

from .expect import Expect

OK0 = Outcome(value=0)
K_ENOMEM = Outcome(value=-1, errno="ENOMEM")
K_EINVAL = Outcome(value=-1, errno="EINVAL")
K_EFAULT = Outcome(value=-1, errno="EFAULT")
NULL_ENOMEM = Outcome(value=0, errno="ENOMEM")
NULL_EINVAL = Outcome(value=0, errno="EINVAL")

Check = tuple[str, Callable[[Outcome], str | None]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One call's rule: ``expect(m, *args)`` and, if the call changes state, ``apply(m, outcome, *args)``."""

    call: str
    expect: Callable[..., Expect]
    apply: Callable[..., None] | None = None


Rules = Mapping[str, Rule]


def table(*rules: Rule) -> Rules:
    """One allocator's rules by call name; a call given twice is an error."""
    out: dict[str, Rule] = {}
    for r in rules:
        if r.call in out:
            raise ValueError(f"two rules for {r.call!r}")
        out[r.call] = r
    return MappingProxyType(out)


def _params(f: Callable[..., object], skip: int) -> tuple[str, ...]:
    return tuple(inspect.signature(f).parameters)[skip:]


def compose(layer: str, *tables: Rules) -> Rules:
    """The allocators' tables as one, which must cover exactly ``layer``'s calls in the call table,
    each rule taking the call's parameters in the call's order."""
    out: dict[str, Rule] = {}
    for t in tables:
        for name, r in t.items():
            if name in out:
                raise ValueError(f"two rules for {name!r}")
            out[name] = r
    calls = {c.name: c for c in CALLS.values() if c.layer == layer}
    if set(out) != set(calls):
        raise ValueError(f"{layer} rules and calls differ: no rule for {sorted(set(calls) - set(out))}, "
                         f"no call for {sorted(set(out) - set(calls))}")
    for name, r in out.items():
        want = tuple(p.name for p in calls[name].params)
        if _params(r.expect, 1) != want or r.apply is not None and _params(r.apply, 2) != want:
            raise ValueError(f"the rule for {name!r} does not take the call's parameters {want}")
    return MappingProxyType(out)


def checked(clause: str, default: Outcome, describe: str, *checks: Check, impl_defined: bool = False) -> Expect:
    """An Expect whose outcome must pass every check; a refusal blames the first failing check's clause."""
    def first(o: Outcome) -> tuple[str, str] | None:
        for cid, f in checks:
            why = f(o)
            if why is not None:
                return cid, why
        return None

    def predicate(o: Outcome) -> str | None:
        bad = first(o)
        return None if bad is None else f"expected {describe}; {bad[1]}"

    def blame(o: Outcome) -> str:
        bad = first(o)
        return bad[0] if bad else clause

    return Expect(clause, default, describe, predicate=predicate, impl_defined=impl_defined, blame_by=blame,
                  covers=tuple(dict.fromkeys(cid for cid, _ in checks if cid)))


def not_failed(clause: str, what: str) -> Check:
    return (clause, lambda o: None if o.ok and o.value is not None and o.value != -1 else
            f"{what} was available, so the call may not fail; observed {o.describe()}")


def unknown(clause: str, why: str) -> Expect:
    return Expect(clause, Outcome(), why, unknown=True)


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
