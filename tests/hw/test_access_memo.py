"""An access's outcome and Expect kept per walk (``Paging._access_memo``) decide as the plain ones.

``_expect_access`` keeps, for a successful access whose data is the harness's pattern, the current
walk's outcome and clause, and -- when no stale walk exists -- the Expect per clause (the walk's own,
or the invalidation that removed the other walks: the kvm benchmark's INVLPG), found
again for the same walk object, address, access and mode while the data's qword is still the pattern
(not in the model's ``mem``).  ``Plain`` below decides every access afresh (a subclass with its own
``_outcome_of`` never uses the memo).  On random programs -- the codec's, the TLB-heavy ones of
test_tlb_lean, and ones that also store paging entries into the data frames the accesses read --
every access gets the same clause, default, description, verdict on the default and on other
outcomes (the allowed and refused ones some walk gives, a random value, a #PF, a #GP) and the same
blame of each refused one; both models adopt the same allowed outcome.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model.paging import Paging
from memspec.program import Program, bind_result, eval_args, parse
from memspec.records import Outcome

from .test_tlb_lean import FRAMES, LAS, SETUP, op


class Plain(Paging):
    """Every access decided afresh: its own ``_outcome_of`` turns the memo off."""

    def _outcome_of(self, res, la, acc, cpl, ac):
        return super()._outcome_of(res, la, acc, cpl, ac)


def _observations(exp, rng: random.Random, la: int) -> list[Outcome]:
    obs = [exp.default, Outcome(value=rng.getrandbits(64)), Outcome(signal="#GP"),
           Outcome(signal="#PF", detail=(("cr2", la), ("errcode", rng.choice([0, 1, 2, 3, 0x11])))), Outcome()]
    if exp.default.value is not None:
        obs.append(Outcome(value=exp.default.value ^ 0x20))
        obs.append(Outcome(value=exp.default.value))      # equal, not the same object
    return obs


def _kept(m: Paging) -> tuple[int, int]:
    return len(m._access_memo), sum(len(k[5]) for k in m._access_memo.values())


def _run(program: Program, facts: dict | None, seed: int) -> int:
    """Judge ``program`` on the memo'd model and on ``Plain`` side by side; the accesses the memo answered."""
    rng = random.Random(seed)
    a, b = Paging(facts), Plain(facts)
    assert Paging._lean_access and not Plain._lean_access
    env: dict[str, int] = {}
    hits = 0
    for c in program.calls:
        args = eval_args(c, env)
        before = _kept(a)
        ea, eb = a.expect("main", c.name, args), b.expect("main", c.name, args)
        assert (ea.clause, ea.default, ea.describe, ea.impl_defined, ea.unknown, ea.allowed) == \
            (eb.clause, eb.default, eb.describe, eb.impl_defined, eb.unknown, eb.allowed), c
        if c.name == "access":
            hits += _kept(a) == before and any(e is ea for m in a._access_memo.values() for e in m[5].values())
            allowed = []
            for o in _observations(eb, rng, args[0]):
                why_a, why_b = ea.judge(o), eb.judge(o)
                assert (why_a is None) == (why_b is None), (c, o)
                if why_b is None:
                    allowed.append(o)
                else:
                    assert why_a == why_b, (c, o)
                    assert ea.blame(o) == eb.blame(o), (c, o)
            o = rng.choice(allowed) if allowed else eb.default
        else:
            o = eb.default
        a.apply("main", c.name, args, o)
        b.apply("main", c.name, args, o)
        assert a.ad_stale == b.ad_stale and a.unsure == b.unsure and a.mem == b.mem, c
        bind_result(env, c, o.value)
    return hits


def test_codec_programs_judge_the_same():
    hits = 0
    for i, (_, p) in enumerate(random_programs("hw", 150, 25, None, {})):
        hits += _run(p, {}, i)
    assert hits > 0


# a store into a data frame: set_pte with a frame's page as the table (the qword an access reads there)
data_store = st.builds(lambda f, i, v: f"set_pte({f:#x}, {i}, {v:#x}, 0)", st.sampled_from(FRAMES),
                       st.sampled_from([0, 1, 0x1FF]), st.sampled_from([0x1000, 0x300000, 0x7FFFF000]))
same_access = st.builds(lambda la, a: f"access({la:#x}, {a}, 0, 0)\naccess({la:#x}, {a}, 0, 0)",
                        st.sampled_from(LAS), st.integers(0, 2))
heavy = st.one_of(op, op, data_store, same_access)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(heavy, min_size=10, max_size=80), st.integers(0, 2**32))
def test_tlb_heavy_programs_judge_the_same(ops, seed):
    _run(parse(SETUP + "\n".join(ops) + "\n"), None, seed)


def test_a_store_into_the_data_is_seen_by_the_next_access():
    # the same walk and access before and after the qword it reads is written: the memo must not answer
    # (the first access sets A in every entry: the second walks other values, the third the same)
    prog = parse(SETUP + "set_pte(0x203000, 5, 0x300000, 3)\n" + "access(0x405008, 0, 0, 0)\n" * 3 +
                 "set_pte(0x300000, 1, 0x7000, 0)\naccess(0x405008, 0, 0, 0)\n")
    assert _run(prog, None, 0) == 1          # the third access found the Expect, the last did not
    m = Paging(None)
    for c in prog.calls:
        args = eval_args(c, {})
        e = m.expect("main", c.name, args)
        m.apply("main", c.name, args, e.default)
    assert e.default.value == 0x7000


def test_the_kvm_step_finds_the_expect_of_the_invalidation_exercised():
    # bench_kvm's step: a PTE rewritten (frames in turn), INVLPG, a load: the removed walks name the
    # INVLPG as exercised, and the Expect kept for that clause answers from the second round on
    lines = [SETUP.strip()]
    for i in range(24):
        lines += [f"set_pte(0x203000, 5, {FRAMES[i % 4]:#x}, 3)", "invlpg(0x405008)", "access(0x405008, 0, 0, 0)"]
    prog = parse("\n".join(lines) + "\n")
    assert _run(prog, None, 0) >= 16
    m = Paging(None)
    for c in prog.calls:
        args = eval_args(c, {})
        e = m.expect("main", c.name, args)
        m.apply("main", c.name, args, e.default)
    assert e.clause == "sdm.tlb.invlpg"
