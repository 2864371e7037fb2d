"""``tlb.flat_removed`` gives ``stale_walks``' answer where it answers at all.

An access whose current walk is a 4 KiB one, whose only stale walks go through older values of its
PTE and were all removed by an invalidation (the kvm step: ``set_pte`` + ``invlpg`` + ``access``),
has its removed walks read off the PTE's history without the walk over the tree.  After every call
of random programs -- the codec's, the TLB-heavy ones of test_tlb_lean (entry rewrites at every
level, INVLPG/INVPCID, CR3 loads with PCIDs and the no-flush bit, CR4.PGE/PCIDE and EFER.NXE
toggles, global leaves) and kvm-step programs with those mixed in -- for every address, access and
privilege: where ``flat_removed`` answers, ``stale_walks`` allows no stale walk and removed the same
walks, with the same invalidations, in the same order, latest first too.  A shortcut that skips the
check of the entries above the PTE is caught.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model import tlb
from memspec.model.paging import Paging
from memspec.model.walk import Path
from memspec.program import Program, bind_result, eval_args, parse

from .test_tlb_lean import FRAMES, LAS, PT, SETUP, op


def _removed(r) -> list:
    return [(cand, glob, r.event_of(cand, glob) if ev is None else ev) for cand, glob, ev in r.cands]


def _latest(r) -> list:
    return [(cand, ev, t) for cand, ev, t in r.latest_first_cands()]


def _compare(m: Paging, flat=tlb.flat_removed) -> tuple[int, int]:
    """Every address, access and privilege on ``m``'s state: (answers flat gave, of them non-empty)."""
    answered = nonempty = 0
    mode, h = m.mode, m.history
    for la in LAS + [0x405008]:
        for acc in (0, 1, 2):
            for cpl in (0, 3):
                cur = m.walks.walk(m.read, mode, m.root, la, acc, cpl, True, m.mem)
                if type(cur) is not Path or cur.size != 4096:
                    continue
                fast = flat(h, mode, la, acc, cpl, m.pcid, cur.uses)
                if fast is None:
                    continue
                kept, plain = tlb.stale_walks(h, mode, m.read, la, acc, cpl, m.pcid, True)
                assert kept == [], (la, acc, cpl)
                assert _removed(fast) == _removed(plain), (la, acc, cpl)
                assert _latest(fast) == _latest(plain), (la, acc, cpl)
                answered += 1
                nonempty += bool(fast.cands)
    return answered, nonempty


def _run(program: Program, facts: dict | None, seed: int, flat=tlb.flat_removed) -> tuple[int, int]:
    rng = random.Random(seed)
    m = Paging(facts)
    env: dict[str, int] = {}
    seen = [0, 0]
    for c in program.calls:
        args = eval_args(c, env)
        exp = m.expect("main", c.name, args)
        o = exp.default
        if exp.allowed and rng.random() < 0.3:
            o = rng.choice(exp.allowed)
        m.apply("main", c.name, args, o)
        bind_result(env, c, o.value)
        a, n = _compare(m, flat)
        seen[0] += a
        seen[1] += n
    return seen[0], seen[1]


def kvm_step(i: int, flags: int = 7) -> str:
    return f"set_pte({PT:#x}, 5, {FRAMES[i % 4]:#x}, {flags:#x})\ninvlpg(0x405008)\naccess(0x405008, {i % 3}, 0, 0)\n"


def test_codec_programs_remove_the_same_walks():
    for i, (_, p) in enumerate(random_programs("hw", 100, 25, None, {})):
        _run(p, {}, i)


def test_the_kvm_step_is_answered():
    answered, nonempty = _run(parse(SETUP + "".join(kvm_step(i) for i in range(12))), None, 0)
    assert nonempty >= 10


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(op, st.builds(kvm_step, st.integers(0, 7), st.sampled_from([7, 0x107, 3, 0x67]))),
                min_size=10, max_size=60), st.integers(0, 2**32))
def test_tlb_heavy_programs_remove_the_same_walks(ops, seed):
    _run(parse(SETUP + "\n".join(ops) + "\n"), None, seed)


def _no_upper_check(h, mode, la, acc, cpl, pcid, uses):
    """A broken shortcut: the entries above the PTE (and the roots) are not looked at."""
    saved = tlb._flat_prefix
    tlb._flat_prefix = lambda h, mode, pcid, uses, floor: tuple((u.addr, u.value) for u in uses[:-1])
    h._flat.clear()
    try:
        return tlb.flat_removed(h, mode, la, acc, cpl, pcid, uses)
    finally:
        tlb._flat_prefix = saved
        h._flat.clear()


def test_a_shortcut_blind_above_the_pte_is_caught():
    # a PDE rewritten to another table and back, INVLPG, then the PTE changed: the walks through the
    # older PDE's table are removed walks stale_walks finds
    prog = parse(SETUP + "access(0x405008, 0, 0, 0)\n" + "set_pte(0x202000, 2, 0x204000, 7)\naccess(0x405008, 0, 0, 0)\n"
                 "set_pte(0x202000, 2, 0x203000, 7)\n" + kvm_step(1) + kvm_step(2))
    try:
        _run(prog, None, 0, flat=_no_upper_check)
    except AssertionError:
        return
    raise AssertionError("a flat_removed blind to the entries above the PTE went unnoticed")
