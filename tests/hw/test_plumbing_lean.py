"""The hw model's per-call shortcuts decide as the plain forms they replace.

* ``Paging.expect``/``apply`` find a rule's function in ``_EXPECTS``/``_APPLIES`` (made from ``RULES``
  with the class): the same functions as ``RULES``, a subclass's override included.
* ``mov_cr3``'s Expect is kept per (value, CR4.PCIDE): after every call of random programs, for
  values with and without PCIDs, the no-flush bit and reserved bits, the kept Expect is the one
  ``_decide_mov_cr3`` makes afresh.
* An access's canonical and harness-slot answers are kept per address for the mode object: equal to
  ``canonical`` and ``_harness_slot`` asked afresh, after every call, for addresses in and out of the
  harness slot, canonical or not, with LA57 on and off.
* An exact access's Expect takes a plain equal value field by field: its verdict on outcomes with
  and without detail, errno, signal and loose bits is the plain ``obs == want or matches(obs, want)``.
* ``WalkMemo`` keeps walks as a tree of the entries read: equal to the plain walk while the entries
  of many walks under one key change (more than the memo keeps: it starts again).
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model.paging import Paging, matches
from memspec.model.pte import CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME, READ, Mode
from memspec.model.walk import WalkMemo, canonical, walk
from memspec.program import Program, bind_result, eval_args, parse
from memspec.records import OK, Outcome

from .broken_hw import IgnoresWp, ScribblesOnEntries
from .test_tlb_lean import SETUP, op

CR3_VALUES = [0x200000, 0x204000, 0x200001, 0x204002, (1 << 63) | 0x200001, (1 << 63) | 0x200000, 1 << 52,
              0x1000, 0x200000 | (1 << 40)]
LAS = [0x405008, 0xFFFF800000001000, 0x0000800000000000, 0xFF7FFFFFFFFFF000, 511 << 39, 0x1FF << 48, 0x7FF8]


def _same_expect(a, b) -> bool:
    return (a.clause, a.default, a.describe, a.allowed, a.impl_defined, a.unknown, a.covers) == \
        (b.clause, b.default, b.describe, b.allowed, b.impl_defined, b.unknown, b.covers)


def _check_state(m: Paging) -> int:
    for v in CR3_VALUES:
        assert _same_expect(m._expect_mov_cr3(v), m._decide_mov_cr3(v)), hex(v)
    for la in LAS:
        m._expect_access(la, READ, 0, 0)            # fills the per-address answers
        seen = m._la_seen.get(la)
        if seen is not None and seen[0] is m.mode:
            assert seen[1:] == (canonical(la, m.mode), m._harness_slot(la)), hex(la)
    return len(m._la_seen)


def _run(program: Program, seed: int) -> int:
    rng = random.Random(seed)
    m = Paging(None)
    env: dict[str, int] = {}
    seen = 0
    for c in program.calls:
        args = eval_args(c, env)
        exp = m.expect("main", c.name, args)
        assert exp.clause == Paging.RULES[c.name].expect(m, *args).clause if c.name != "access" else True
        o = exp.default
        if exp.allowed and rng.random() < 0.3:
            o = rng.choice(exp.allowed)
        m.apply("main", c.name, args, o)
        bind_result(env, c, o.value)
        seen += _check_state(m)
    return seen


mode_ops = st.one_of(op, st.builds(lambda v: f"mov_cr4({v:#x})", st.sampled_from([0x20, 0x1020, 0x20020, 0x1000A0])),
                     st.builds(lambda v: f"mov_cr3({v:#x})", st.sampled_from(CR3_VALUES)))


def test_codec_programs_keep_the_same_answers():
    for i, (_, p) in enumerate(random_programs("hw", 60, 29, None, {})):
        _run(p, i)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mode_ops, min_size=5, max_size=50), st.integers(0, 2**32))
def test_tlb_heavy_programs_keep_the_same_answers(ops, seed):
    assert _run(parse(SETUP + "\n".join(ops) + "\n"), seed) > 0


def test_dispatch_is_the_rules():
    for cls in (Paging, IgnoresWp, ScribblesOnEntries):
        for name, rule in cls.RULES.items():
            assert cls._EXPECTS[name] is rule.expect and cls._APPLIES[name] is rule.apply, (cls, name)
    assert ScribblesOnEntries._APPLIES["access"] is ScribblesOnEntries._apply_access is not Paging._apply_access


def test_an_exact_access_judges_as_matches():
    rng = random.Random(3)
    m = Paging(None)
    wants = [Outcome(value=0x3000CC), Outcome(value=0x3000CC, detail=(("loose", 0x60),)), OK,
             Outcome(signal="#PF", detail=(("cr2", 0x405008), ("errcode", 1)))]
    for want in wants:
        exp = m._explained("memspec.hw.set-pte", want, 0x405008)
        for _ in range(200):
            v = rng.choice([want.value, 0x3000CC, 0x3000CC ^ 0x20, 0x3000CC ^ 0x40, None, rng.getrandbits(64)])
            obs = Outcome(value=v, errno=rng.choice([None, None, "EINVAL"]), signal=rng.choice([None, None, "#PF"]),
                          detail=rng.choice([(), (("cr2", 0x405008), ("errcode", 1)), (("x", 1),)]))
            if obs.errno and obs.signal:
                continue
            plain = obs == want or matches(obs, want)
            assert (exp.judge(obs) is None) == plain, (want, obs)


class _SmallMemo(WalkMemo):
    __slots__ = ()
    LIMIT = 16          # the memo starts again often


def test_walk_memo_tree_is_the_walk_past_its_limit():
    rng = random.Random(7)
    mode = Mode(CR0_PE | CR0_PG, CR4_PAE, EFER_LME | EFER_LMA)
    mem = {0x0: 0x1000 | 7, 0x1000: 0x2000 | 7, 0x2000: 0x3000 | 7}
    read = lambda pa: mem.get(pa, 0)        # noqa: E731
    memo = _SmallMemo()
    cleared = 0
    for _ in range(2000):
        pte = 0x3000 + 8 * rng.randrange(4)
        mem[pte] = rng.randrange(1, 64) << 12 | rng.choice([7, 5, 1, 0, 0x87])
        if rng.random() < 0.1:
            mem[0x2000] = 0x3000 | rng.choice([7, 6, 0x87])
        la = rng.randrange(4) << 12 | 8
        acc, cpl = rng.randrange(3), rng.choice([0, 3])
        assert memo.walk(read, mode, 0, la, acc, cpl, True, mem) == walk(read, mode, 0, la, acc, cpl, True)
        cleared += memo._results == 1
    assert cleared > 10
