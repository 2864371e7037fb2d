"""``hw_removed.removed_pass`` answers as the two plain searches it replaces.

For an access only its current walk explains, with removed walks and a successful load or store of
pattern data, the judge asks which invalidation was exercised and which removed walks give the
access's data (for ``_note_stale_ad``).  One pass now answers both.  After every access of random
programs -- the codec's, the TLB-heavy ones of test_tlb_lean, kvm steps, PTEs rewritten to the same
frame with other rights (removed walks that give the same data, or the same data with rights that
fault), stores into the data frames -- the pass gives the clause of the plain search (every removed
walk built, its outcome matched) and the walks, invalidations and times of the plain filter
(``Removed.latest_first_cands(keep=Paging._may_give)``); and the model keeps the A/D blame the
eager form keeps (test_judge_lean's ``EagerStaleAd``) after every call.  A pass that never finds a
giving walk is caught.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model import hw_removed
from memspec.model.paging import Paging, matches
from memspec.program import Program, bind_result, eval_args, parse

from .test_access_memo import data_store
from .test_flat_removed import kvm_step
from .test_judge_lean import _run_both
from .test_tlb_lean import FRAMES, PT, SETUP, op


def _plain_exercised(m: Paging, removed, o_cur, clause: str, la: int, acc: int, cpl: int, ac: int) -> str:
    for cand, ev, _t in removed.latest_first_cands(paths_only=True):
        if not ev.clause.startswith("sdm."):
            continue
        o_old, _, _ = m._outcome_of(removed.result(cand), la, acc, cpl, ac)
        if o_old is None or not matches(o_old, o_cur):
            return ev.clause
    return clause


def _check(m: Paging, args: tuple, answer=hw_removed.removed_pass) -> int:
    """The pass against the plain searches on ``m``'s state for this access; 1 if it was asked."""
    la, acc, cpl, ac = args
    if la % 8 or acc not in (0, 1) or cpl not in (0, 3):
        return 0
    try:
        cur, stale, removed = m._candidates(la, acc, cpl, ac)
    except Exception:
        return 0            # (arguments the access refuses before any walk)
    o_cur, clause, pa = m._outcome_of(cur, la, acc, cpl, ac)
    if stale or not removed.cands or o_cur is None or not o_cur.ok or o_cur.value is None or o_cur.detail:
        return 0
    got = answer(m, removed, o_cur, clause, la, acc, cpl, ac)
    want = (_plain_exercised(m, removed, o_cur, clause, la, acc, cpl, ac),
            list(removed.latest_first_cands(keep=m._may_give, keep_args=(la, acc, o_cur))))
    assert got == want, args
    return 1 + bool(want[1])


def _run(program: Program, seed: int, answer=hw_removed.removed_pass) -> int:
    rng = random.Random(seed)
    m = Paging(None)
    env: dict[str, int] = {}
    asked = 0
    for c in program.calls:
        args = eval_args(c, env)
        if c.name == "access":
            asked += _check(m, args, answer)
        exp = m.expect("main", c.name, args)
        o = exp.default
        if exp.allowed and rng.random() < 0.3:
            o = rng.choice(exp.allowed)
        m.apply("main", c.name, args, o)
        bind_result(env, c, o.value)
    return asked


# a PTE rewritten to a frame it held before, with other rights: removed walks giving the same data
same_frame = st.builds(lambda f, fl, a: f"set_pte({PT:#x}, 5, {f:#x}, {fl:#x})\ninvlpg(0x405008)\n"
                       f"access(0x405008, {a}, 0, 0)", st.sampled_from(FRAMES[:2]), st.sampled_from([3, 1, 7, 5]),
                       st.integers(0, 1))
heavy = st.one_of(op, same_frame, same_frame, data_store,
                  st.builds(kvm_step, st.integers(0, 7), st.sampled_from([7, 3, 1, 0x107])))


def test_codec_programs_answer_the_same():
    for i, (_, p) in enumerate(random_programs("hw", 100, 27, None, {})):
        _run(p, i)


def test_the_same_frame_again_gives_its_walk():
    prog = parse(SETUP + f"set_pte({PT:#x}, 5, 0x300000, 3)\naccess(0x405008, 0, 0, 0)\n" +
                 f"set_pte({PT:#x}, 5, 0x300000, 1)\ninvlpg(0x405008)\naccess(0x405008, 0, 0, 0)\n" +
                 f"set_pte({PT:#x}, 5, 0x300000, 3)\ninvlpg(0x405008)\naccess(0x405008, 1, 0, 0)\n")
    assert _run(prog, 0) >= 3       # asked twice, a giving walk found at least once
    assert _run_both(prog, None, 0) > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(heavy, min_size=10, max_size=60), st.integers(0, 2**32))
def test_tlb_heavy_programs_answer_the_same(ops, seed):
    prog = parse(SETUP + "\n".join(ops) + "\n")
    _run(prog, seed)
    _run_both(prog, None, seed)


def test_a_pass_that_never_gives_is_caught():
    def never_gives(m, removed, o_cur, clause, la, acc, cpl, ac):
        exercised, _ = hw_removed.removed_pass(m, removed, o_cur, clause, la, acc, cpl, ac)
        return exercised, []
    prog = parse(SETUP + f"set_pte({PT:#x}, 5, 0x300000, 3)\naccess(0x405008, 0, 0, 0)\n" +
                 f"set_pte({PT:#x}, 5, 0x300000, 1)\ninvlpg(0x405008)\naccess(0x405008, 0, 0, 0)\n")
    try:
        _run(prog, 0, never_gives)
    except AssertionError:
        return
    raise AssertionError("a removed_pass that finds no giving walk went unnoticed")
