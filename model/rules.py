"""A layer's rules: for each call, what it may do now (``expect``) and what it did (``apply``).

Every layer with a table of calls composes its rules the same way.  Each module that
governs some calls (an os family such as ``model.os.mappings``, a phys allocator such as
``model.buddy``) exports them as ``RULES``, a mapping call name -> ``Rule``; the layer's
model joins the tables with ``compose``, which fails at import -- not at the first program
that uses the call -- when a call of the layer has no rule, a rule has no call, a call has
two rules, or a rule's parameters are not the call's (``memspec.calls``), in its order.

A rule's functions take the model's own leading arguments, then the call's:

    os    expect(sys, mm, *params)          apply(sys, proc, mm, outcome, *params)
    phys  expect(m, *params)                apply(m, outcome, *params)

``apply`` is None for a call that only observes (the state stays as it is).

Worked example: ``compose("phys", buddy.RULES, slab.RULES, ...)["buddy_free"]`` is
``Rule(expect_buddy_free, apply_buddy_free)``; a second module that also gave a rule for
``buddy_free`` would stop the import with "two rules for 'buddy_free'".
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from memspec.calls import CALLS

from .expect import Expect


@dataclass(frozen=True, slots=True)
class Rule:
    """One call's rule."""

    expect: Callable[..., Expect]
    apply: Callable[..., None] | None = None


Rules = Mapping[str, Rule]


def _params(f: Callable[..., object], lead: int) -> tuple[str, ...] | None:
    """The parameters after the model's ``lead`` ones; None for a function taking ``*args``."""
    ps = list(inspect.signature(f).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in ps):
        return None
    return tuple(p.name for p in ps[lead:])


def compose(layer: str, *tables: Rules, lead: tuple[int, int], only: Iterable[str] | None = None,
            names: bool = True) -> Rules:
    """The tables as one, covering exactly ``layer``'s calls (or those of them in ``only``: a model that
    hands a part of its layer to another, as the virt model hands the KPTI calls to ``model.kpti``);
    ``lead``: how many of the model's own arguments ``expect`` and ``apply`` take before the call's.
    With ``names`` the parameters must be the call's by name, else by number (methods whose names
    would shadow the walk's own, such as ``index``)."""
    out: dict[str, Rule] = {}
    for t in tables:
        for name, r in t.items():
            if name in out:
                raise ValueError(f"two rules for {name!r}")
            out[name] = r
    calls = {c.name: c for c in CALLS.values() if c.layer == layer}
    if only is not None:
        calls = {n: c for n, c in calls.items() if n in set(only)}
    if set(out) != set(calls):
        raise ValueError(f"{layer} rules and calls differ: no rule for {sorted(set(calls) - set(out))}, "
                         f"no call for {sorted(set(out) - set(calls))}")
    for name, r in out.items():
        want = tuple(p.name for p in calls[name].params)
        for f, n in ((r.expect, lead[0]), (r.apply, lead[1])):
            got = None if f is None else _params(f, n)
            if got is not None and (got != want if names else len(got) != len(want)):
                raise ValueError(f"the rule for {name!r} ({f.__name__}) does not take the call's parameters "
                                 f"{want}: it takes {got}")
    return MappingProxyType(out)


def replaced(table: Rules, name: str, *, expect: Callable[..., Expect] | None = None,
             apply: Callable[..., None] | None = None) -> Rules:
    """``table`` with one call's expect and/or apply replaced (a test's deliberately broken model)."""
    old = table[name]
    return MappingProxyType({**table, name: Rule(expect or old.expect, apply or old.apply)})
