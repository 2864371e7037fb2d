"""The hw judge's third round of shortcuts decides as the plain forms they replace.

* ``Paging._giving`` is ``Removed.latest_first_cands(keep=Paging._may_give, ...)`` laid flat (one pass
  over the removed walks, the memory's bounds read once): after every access of random programs --
  the codec's and the TLB-heavy ones of test_tlb_lean, loads, stores and fetches, outcomes the model
  allows adopted at random -- both give the same walks, invalidations and times, in the same order.
  A shortcut that drops the walks is caught by test_judge_lean's comparison with the eager form.
* ``stale_walks`` walks a PTE under current entries in one flat loop (its older values only), and
  takes the (root, PCID) pairs it starts from from ``History.root_keys`` (made again after a load):
  test_tlb_lean holds both to the reference enumeration; ``root_keys`` is held here to the plain
  scan of the last 8 loads after every call of random programs.
* ``WalkMemo`` finds a walk by its mode's identity: an equal mode made anew walks again, to the
  same answer.
* ``stale_walks`` leaves no cycle behind it: its walkers (closures that call each other) are
  emptied before it returns, so what they held is freed by reference counting and the collector is
  not asked to (one cycle per access made the judge's collections several times as frequent).
"""

from __future__ import annotations

import gc
import random

from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.fuzz.layers import random_programs
from memspec.model.paging import Paging
from memspec.model.pte import Mode
from memspec.model.tlb import History, stale_walks
from memspec.model.walk import WalkMemo
from memspec.program import Program, bind_result, eval_args, parse

from .test_judge_lean import STALE_AD, _run_both
from .test_tlb_lean import SETUP, op


class DropsGiving(Paging):
    """A broken shortcut: no removed walk ever gives the access's data."""

    def _giving(self, removed, la, acc, o):
        return []


def _plain(m: Paging, removed, la: int, acc: int, o) -> list:
    return list(removed.latest_first_cands(keep=m._may_give, keep_args=(la, acc, o)))


def _run(program: Program, facts: dict | None, seed: int) -> int:
    """Judge ``program`` on the model; before each access's apply, ``_giving`` against the plain filter
    for the adopted outcome and for every outcome the access allows.  The walks compared."""
    rng = random.Random(seed)
    m = Paging(facts)
    env: dict[str, int] = {}
    compared = 0
    for c in program.calls:
        args = eval_args(c, env)
        exp = m.expect("main", c.name, args)
        o = exp.default
        if c.name == "access" and not o.errno and o.signal != "#GP":
            la, acc, _cpl, _ac = args
            removed = m._last["removed"]
            for other in [o] + [x for x in (exp.allowed or ()) if x is not o]:
                fast, plain = m._giving(removed, la, acc, other), _plain(m, removed, la, acc, other)
                assert fast == plain, (c, other)
                compared += len(plain)
            if removed.cands and rng.random() < 0.5:
                # a removed walk's own data as the outcome: the case the filter keeps
                cand, _glob, _ev = rng.choice(removed.cands)
                if cand[3] is None:
                    o2 = m._outcome_of(removed.result(cand), la, acc, args[2], args[3])[0]
                    if o2 is not None:
                        assert m._giving(removed, la, acc, o2) == _plain(m, removed, la, acc, o2), (c, o2)
                        compared += 1
        m.apply("main", c.name, args, o)
        bind_result(env, c, o.value)
    return compared


def test_codec_programs_give_the_same_walks():
    for i, (_, p) in enumerate(random_programs("hw", 150, 24, None, {})):
        _run(p, {}, i)


def test_stale_ad_program_gives_the_removed_walk():
    assert _run(parse(STALE_AD), None, 0) > 0


def test_a_broken_giving_is_caught():
    try:
        _run_both(parse(STALE_AD), None, 0, lean=DropsGiving)
    except AssertionError:
        return
    raise AssertionError("a _giving that drops every walk went unnoticed")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=10, max_size=80), st.integers(0, 2**32))
def test_tlb_heavy_programs_give_the_same_walks(ops, seed):
    _run(parse(SETUP + "\n".join(ops) + "\n"), None, seed)


def test_stale_walks_leaves_no_cycle():
    # the kvm benchmark's step: a PTE rewritten, INVLPG, a load: removed walks are enumerated
    lines = [SETUP.strip()]
    for i in range(12):
        lines += [f"set_pte(0x203000, 5, {0x300000 + 0x1000 * (i % 4):#x}, 3)", "invlpg(0x405008)",
                  "access(0x405008, 0, 0, 0)"]
    prog = parse("\n".join(lines) + "\n")
    m = Paging(None)
    env: dict[str, int] = {}
    for c in prog.calls:
        args = eval_args(c, env)
        o = m.expect("main", c.name, args).default
        m.apply("main", c.name, args, o)
    was = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        kept, removed = stale_walks(m.history, m.mode, m.read, 0x405008, 0, 0, m.pcid, True)
        assert removed.cands            # the enumeration ran (the walkers were made)
        del kept, removed
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def _plain_root_keys(h: History) -> list[tuple[int, int, int, int]]:
    latest: dict[tuple[int, int], int] = {}
    first: dict[tuple[int, int], int] = {}
    for start, end, root, p in h.roots[-8:]:
        latest[(root, p)] = end
        first.setdefault((root, p), start)
    return [(root, p, end, first[(root, p)]) for (root, p), end in latest.items()]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=10, max_size=80))
def test_root_keys_are_the_plain_scan(ops):
    m = Paging(None)
    env: dict[str, int] = {}
    for c in parse(SETUP + "\n".join(ops) + "\n").calls:
        args = eval_args(c, env)
        o = m.expect("main", c.name, args).default
        m.apply("main", c.name, args, o)
        assert m.history.root_keys() == _plain_root_keys(m.history), c


def test_walk_memo_takes_an_equal_mode_anew():
    mem = {0x0: 0x1000 | 7, 0x1000: 0x2000 | 7, 0x2000: 0x3000 | 7, 0x3000 + 8 * 5: 0x5000 | 7}
    read = mem.get
    a, b = Mode(0x80010001, 0x20, 0xD00), Mode(0x80010001, 0x20, 0xD00)
    memo = WalkMemo()
    first = memo.walk(lambda pa: read(pa, 0), a, 0, 0x5008, 0, 0)
    again = memo.walk(lambda pa: read(pa, 0), b, 0, 0x5008, 0, 0)
    assert again == first and again is not first
    assert memo.walk(lambda pa: read(pa, 0), a, 0, 0x5008, 0, 0) is first


def test_walk_memo_reads_mem_first_as_read_does():
    # the hw model's reads: its written qwords, else the pattern; the memo given mem finds the same walks
    import random as _r
    from memspec.calls_hw import pattern
    from memspec.model.walk import walk
    rng = _r.Random(5)
    mem = {0x0: 0x1000 | 7, 0x1000: 0x2000 | 7, 0x2000: 0x3000 | 7, 0x3000 + 8 * 5: 0x5000 | 7}
    read = lambda pa: mem[pa] if pa in mem else pattern(pa)      # noqa: E731
    mode = Mode(0x80010001, 0x20, 0xD00)
    memo = WalkMemo()
    for _ in range(300):
        if rng.random() < 0.4:
            addr = rng.choice([0x0, 0x1000, 0x2000, 0x3000 + 8 * 5, 0x3000 + 8 * 6])
            if rng.random() < 0.2:
                mem.pop(addr, None)
            else:
                mem[addr] = rng.choice([0x1000, 0x2000, 0x3000, 0x5000, 0x6000]) | rng.choice([7, 5, 6, 0x87, 0x27])
        la, acc, cpl = rng.choice([0x5008, 0x6000, 0x200000]), rng.randrange(3), rng.choice([0, 3])
        assert memo.walk(read, mode, 0, la, acc, cpl, True, mem) == walk(read, mode, 0, la, acc, cpl, True)
