"""The hw judge's shortcuts decide as the plain forms they replace.

``Paging._note_stale_ad`` looks, on every access that sets A or D, for a removed stale walk that
would have served the access the same way (whom to blame if those bits read back clear).  It now
sets aside, before building it, every removed walk whose leaf cannot give the observed data
(``Paging._may_give``).  ``EagerStaleAd`` below is the plain form (every removed walk built and its
outcome worked out); on random hw programs -- the codec's and the TLB-heavy ones of
test_tlb_lean -- the two models keep the same A/D blame (``ad_stale``) after every call.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model.paging import Paging, matches
from memspec.model.pte import WRITE
from memspec.program import Program, bind_result, eval_args, parse
from memspec.records import Outcome

from .test_tlb_lean import SETUP, op


class EagerStaleAd(Paging):
    """``_note_stale_ad`` as it was: every removed walk's outcome, then the filter."""

    def _note_stale_ad(self, used, o, la, acc, cpl, ac, removed) -> None:
        if not removed.cands:
            return
        new = []
        for u in used.uses:
            if u.addr in self.mem:
                v = self.read(u.addr)
                bits = (0x20 | (0x40 if u is used.uses[-1] and acc == WRITE else 0)) & ~v
                if bits:
                    new.append((u.addr, v & ~0x60, bits))
        if not new:
            return
        done: set[int] = set()
        for o_old, cid, res in self._removed_outcomes(removed, la, acc, cpl, ac, walks=True, flushed=False):
            if not (cid.startswith("sdm.") and matches(o, o_old)):
                continue
            held = {(u.addr, u.value & ~0x60) for u in res.uses}
            for addr, v, bits in new:
                if (addr, v) not in held and addr not in done:
                    self.ad_stale[addr] = (bits, cid)
                    done.add(addr)


class NeverGives(Paging):
    """A broken shortcut (no removed walk can give anything): must be caught."""

    def _may_give(self, cand, la, acc, o) -> bool:
        return False


def _run_both(program: Program, facts: dict | None, seed: int, lean: type[Paging] = Paging) -> int:
    """Run ``program`` on both models, adopting the same allowed outcome; the A/D blames recorded."""
    rng = random.Random(seed)
    a, b = lean(facts), EagerStaleAd(facts)
    env: dict[str, int] = {}
    noted = 0
    for c in program.calls:
        args = eval_args(c, env)
        ea, eb = a.expect("main", c.name, args), b.expect("main", c.name, args)
        assert (ea.clause, ea.default, ea.describe) == (eb.clause, eb.default, eb.describe)
        o = ea.default
        if c.name == "access" and o.ok and o.value is not None and rng.random() < 0.3:
            o = Outcome(value=o.value)           # the same outcome, not the model's own object
        a.apply("main", c.name, args, o)
        b.apply("main", c.name, args, o)
        assert a.ad_stale == b.ad_stale, (c, a.ad_stale, b.ad_stale)
        noted += len(b.ad_stale)
        bind_result(env, c, o.value)
    return noted


def test_codec_programs_blame_the_same():
    noted = sum(_run_both(p, {}, i) for i, (_, p) in enumerate(random_programs("hw", 150, 22, None, {})))
    assert noted > 0          # the eager form did record blames for the shortcut to agree with


# an INVLPG between two values of a PTE that map the same frame: the older walk would have served
# the access, so A and D on the entries it did not use are the INVLPG's to keep
STALE_AD = (SETUP + "set_pte(0x203000, 5, 0x300000, 0x3)\naccess(0x405008, 0, 0, 0)\n"
            "set_pte(0x203000, 5, 0x300000, 0x7)\ninvlpg(0x405008)\naccess(0x405008, 1, 0, 0)\n")


def test_a_removed_walk_that_would_have_served_is_noted():
    assert _run_both(parse(STALE_AD), None, 0) > 0


def test_a_broken_shortcut_is_caught():
    with pytest.raises(AssertionError):
        _run_both(parse(STALE_AD), None, 0, lean=NeverGives)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=10, max_size=80), st.integers(0, 2**32))
def test_tlb_heavy_programs_blame_the_same(ops, seed):
    _run_both(parse(SETUP + "\n".join(ops) + "\n"), None, seed)
