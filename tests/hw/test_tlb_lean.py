"""The lean TLB law judges as the reference one did (tests/hw/reference_tlb.py).

``stale_walks`` enumerates stale walks as plain (time, entries) tuples, drops the ones an
invalidation of the page removed before building anything, and works the removed walks out
only when the judge asks (the exercised invalidation, the blame of a refused observation).
On random hw programs -- the codec's, and TLB-heavy ones drawn by Hypothesis (entry rewrites
at every level, INVLPG/INVPCID, CR3 loads with PCIDs and the no-flush bit, CR4.PGE/PCIDE and
EFER.NXE toggles) -- every access gets the same clause, default, description and verdict on
every outcome some walk gives, the same blame for each refused one, the same stale walks and
the same removed walks; the model then adopts an allowed outcome chosen at random, stale ones
included, so later accesses see the histories a target makes.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model.paging import Paging
from memspec.program import Program, bind_result, eval_args, parse
from memspec.records import Outcome

from .reference_tlb import expect_access_reference


def _observations(m: Paging, exp, ref_samples, rng: random.Random) -> list[Outcome]:
    obs = [exp.default, Outcome(value=rng.getrandbits(64)), Outcome(signal="#GP")]
    for o in ref_samples:
        if o is None:
            continue
        obs.append(o)
        if o.signal == "#PF":
            d = dict(o.detail)
            obs.append(Outcome(signal="#PF", detail=(("cr2", d["cr2"]), ("errcode", d["errcode"] ^ 0x20))))
    return obs


def _same_access(m: Paging, args: tuple, rng: random.Random) -> Outcome:
    """Judge one access both ways on the same state; the outcome to adopt (an allowed one)."""
    m._ref = None
    ref = expect_access_reference(m, *args)
    ref_walks = m._ref
    new = m.expect("main", "access", args)            # last, so the model applies its own bookkeeping
    assert (new.clause, new.default, new.describe, new.impl_defined, new.unknown, new.allowed) == \
        (ref.clause, ref.default, ref.describe, ref.impl_defined, ref.unknown, ref.allowed)
    samples: list[Outcome | None] = []
    if ref_walks is not None:
        stale, removed, samples = ref_walks
        _cur, new_stale, new_removed = m._candidates(*args)
        assert new_stale == stale
        assert list(new_removed) == removed
        assert list(new_removed.latest_first()) == sorted(removed, key=lambda r: -r[2])
    allowed = []
    for obs in _observations(m, ref, samples, rng):
        why_ref, why_new = ref.judge(obs), new.judge(obs)
        assert why_new == why_ref, obs
        if why_ref is None:
            allowed.append(obs)
        else:
            assert new.blame(obs) == ref.blame(obs), obs
    return rng.choice(allowed) if allowed else new.default


def _run_both(program: Program, facts: dict | None, seed: int) -> int:
    """Run ``program`` through the model, judging each access both ways; the accesses compared."""
    rng = random.Random(seed)
    m = Paging(facts)
    env: dict[str, int] = {}
    n = 0
    for c in program.calls:
        args = eval_args(c, env)
        if c.name == "access":
            o = _same_access(m, args, rng)
            n += 1
        else:
            o = m.expect("main", c.name, args).default
        m.apply("main", c.name, args, o)
        bind_result(env, c, o.value)
        assert not m.invariants()
    return n


@pytest.mark.parametrize("strict", [False, True])
def test_codec_programs_judge_the_same(strict):
    facts = {"strict_tlb": strict}
    total = 0
    for i, (_, p) in enumerate(random_programs("hw", 150, 20, None, facts)):
        total += _run_both(p, facts, i)
    assert total > 300


@pytest.mark.slow
def test_more_codec_programs_judge_the_same():
    total = 0
    for i, (_, p) in enumerate(random_programs("hw", 1500, 21, None, {})):
        total += _run_both(p, {}, i)
    assert total > 3000


# a TLB-heavy program: two roots sharing one tree, a PT with two pages and a 2 MiB page beside it
ROOT, ROOT2, PDPT, PD, PT = 0x200000, 0x204000, 0x201000, 0x202000, 0x203000
FRAMES = [0x300000 + 0x1000 * i for i in range(4)]
LAS = [0x405000, 0x406000, 0x405ff8, 0x600000, 0x7ff000]
LEAF = [0x7, 0x5, 0x3, 0x1, 0x107, 0x8000000000000007, 0x0800000000000007, 0x6, 0x67, 0x1000000000000005]
UPPER = [0x7, 0x7, 0x5, 0x3, 0x8000000000000007, 0x6, 0x87]
CR4 = [0x20, 0xA0, 0x20020, 0x200A0, 0x100020, 0x300020, 0x4000A0]   # PAE with PGE, PCIDE, SMEP, SMAP, PKE

access = st.builds(lambda la, a, c, ac: f"access({la:#x}, {a}, {c}, {ac})", st.sampled_from(LAS), st.integers(0, 2),
                   st.sampled_from([0, 3]), st.integers(0, 1))
leaf = st.builds(lambda i, f, fl: f"set_pte({PT:#x}, {i}, {f:#x}, {fl:#x})",
                 st.sampled_from([5, 6]), st.sampled_from(FRAMES), st.sampled_from(LEAF))
invlpg = st.builds(lambda la: f"invlpg({la:#x})", st.sampled_from(LAS))
op = st.one_of(
    access, access, access, access, leaf, leaf, leaf, invlpg,
    st.builds(lambda big, fl: f"set_pte({PD:#x}, 2, {PT:#x}, {fl:#x})" if not big else
              f"set_pte({PD:#x}, 3, 0x600000, {fl | 0x80:#x})", st.booleans(), st.sampled_from(UPPER)),
    st.builds(lambda t, fl: f"set_pte({t[0]:#x}, {t[1]}, {t[2]:#x}, {fl:#x})",
              st.sampled_from([(PDPT, 0, PD), (ROOT, 0, PDPT), (ROOT2, 0, PDPT)]), st.sampled_from(UPPER)),
    st.builds(lambda la: f"invlpg({la:#x})", st.sampled_from(LAS)),
    st.builds(lambda k, p, la: f"invpcid({k}, {p}, {la:#x})", st.integers(0, 3), st.integers(0, 2), st.sampled_from(LAS)),
    st.builds(lambda r, p, nf: f"mov_cr3({r | p | (nf << 63):#x})", st.sampled_from([ROOT, ROOT2]), st.integers(0, 2),
              st.integers(0, 1)),
    st.builds(lambda v: f"mov_cr4({v:#x})", st.sampled_from(CR4)),
    st.builds(lambda nxe: f"wrmsr_efer({0x500 | (nxe << 11):#x})", st.integers(0, 1)),
    st.builds(lambda wp: f"mov_cr0({0x80000001 | (wp << 16):#x})", st.integers(0, 1)),
    st.builds(lambda t: f"read_pte({t[0]:#x}, {t[1]})", st.sampled_from([(PT, 5), (PT, 6), (PD, 2), (PDPT, 0)])),
)
SETUP = (f"set_pte({ROOT:#x}, 0, {PDPT:#x}, 7)\nset_pte({ROOT2:#x}, 0, {PDPT:#x}, 7)\n"
         f"set_pte({PDPT:#x}, 0, {PD:#x}, 7)\nset_pte({PD:#x}, 2, {PT:#x}, 7)\nmov_cr3({ROOT:#x})\n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=10, max_size=80), st.integers(0, 2**32))
def test_tlb_heavy_programs_judge_the_same(ops, seed):
    _run_both(parse(SETUP + "\n".join(ops) + "\n"), None, seed)
