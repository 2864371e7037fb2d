"""The hw model's shortcuts on the judge's path decide as the plain forms they replace.

* ``Paging._exercised`` names the invalidation an access exercised: the one that removed the latest
  cached walk giving another outcome.  A removed walk whose leaf gives other data than a load or
  store's outcome is told apart without building it (``_gives_other_data``); ``PlainSearch`` below
  (any ``_outcome_of`` of a subclass) builds every walk it looks at, as before.
* ``Paging.invariants(full=False)`` (after each step) looks at the reference TLB only when an
  invalidation was recorded or the entries changed since the last look; the full form looks every
  time.  Both report the same after every call, on the model and on one whose TLB keeps what an
  INVPCID removes (the broken TLB is caught at the same call either way).
* ``Path.ored`` (the OR of the entries, which ``_path`` records) gives ``_allowed_clause`` the
  answer its scan of the entries gives.
On random hw programs: the codec's, and the TLB-heavy ones of test_tlb_lean.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model.paging import Paging
from memspec.model.tlb import ALL_NONGLOBAL, RefTlb
from memspec.model.walk import Path, _allowed_clause
from memspec.program import Program, bind_result, eval_args, parse

from .test_tlb_lean import SETUP, op


class PlainSearch(Paging):
    """Its own ``_outcome_of`` (the same answers): ``_exercised`` builds every removed walk it looks at."""

    def _outcome_of(self, res, la, acc, cpl, ac):
        return super()._outcome_of(res, la, acc, cpl, ac)


class _KeepsNonGlobal(RefTlb):
    def apply(self, ev):
        if ev.kind == ALL_NONGLOBAL:
            return
        super().apply(ev)


class KeepsAfterInvpcidAll(Paging):
    """Its reference TLB keeps every translation through INVPCID type 3: the TLB law breaks."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.tlb = _KeepsNonGlobal()


def _run(program: Program, facts: dict | None, seed: int, model: type[Paging] = Paging,
         look: float = 0.7) -> dict[str, int]:
    """Judge ``program`` on ``model`` and on ``PlainSearch`` side by side (each access's Expect: clause,
    default, description, verdict on the adopted outcome), compare the footprint invariants with the
    full ones after each call, and the rights clause of each current walk with and without ``ored``."""
    rng = random.Random(seed)
    a, b = model(facts), PlainSearch(facts)
    b.tlb = type(a.tlb)()
    env: dict[str, int] = {}
    seen = {"accesses": 0, "broken": 0, "exercised": 0}
    for c in program.calls:
        args = eval_args(c, env)
        ea, eb = a.expect("main", c.name, args), b.expect("main", c.name, args)
        assert (ea.clause, ea.default, ea.describe, ea.impl_defined, ea.unknown) == \
            (eb.clause, eb.default, eb.describe, eb.impl_defined, eb.unknown), c
        o = ea.default
        assert ea.judge(o) == eb.judge(o)
        if c.name == "access":
            seen["accesses"] += 1
            seen["exercised"] += ea.clause.startswith("sdm.tlb.") or ea.clause.startswith("sdm.invpcid.")
            cur = a._last.get("cur")
            if isinstance(cur, Path):
                _la, acc, cpl, ac = args
                assert _allowed_clause(cur, a.mode, acc, cpl, ac) == _allowed_clause(replace(cur, ored=-1), a.mode, acc, cpl, ac)
        a.apply("main", c.name, args, o)
        b.apply("main", c.name, args, o)
        bind_result(env, c, o.value)
        if rng.random() < look:       # the footprint check after most calls, not all: it looks back to the last one
            step = a.invariants(full=False)
            assert step == a.invariants(), c
            seen["broken"] += bool(step)
    return seen


def test_codec_programs_judge_the_same():
    seen = {"accesses": 0, "broken": 0, "exercised": 0}
    for i, (_, p) in enumerate(random_programs("hw", 150, 23, None, {})):
        for k, v in _run(p, {}, i).items():
            seen[k] += v
    assert seen["accesses"] > 300 and seen["exercised"] > 0


def test_a_broken_tlb_is_caught_by_the_footprint_check_at_the_same_call():
    prog = parse(SETUP + "set_pte(0x203000, 5, 0x300000, 7)\naccess(0x405000, 0, 0, 0)\ninvpcid(3, 0, 0)\n"
                 "set_pte(0x203000, 6, 0x300000, 7)\n")
    assert _run(prog, None, 0, KeepsAfterInvpcidAll, look=1.0)["broken"] == 2      # after the INVPCID and the store
    assert _run(prog, None, 0, Paging, look=1.0)["broken"] == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=10, max_size=80), st.integers(0, 2**32), st.booleans())
def test_tlb_heavy_programs_judge_the_same(ops, seed, broken):
    _run(parse(SETUP + "\n".join(ops) + "\n"), None, seed, KeepsAfterInvpcidAll if broken else Paging)
