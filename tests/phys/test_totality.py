"""The phys model is total: every well-formed program gets a verdict, absurd sizes included.

A realloc to 2^62 bytes used to make the heap model allocate an array of that many bytes
(MemoryError); contents are now runs, and the model's own heap never takes a block it
cannot place (ENOMEM, which POSIX allows for any request).
"""

from __future__ import annotations

import tracemalloc

import pytest

from memspec.model.heap import STORED, UNKNOWN, ZEROED, MOVED, Contents
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

HUGE = """\
p = malloc(100)
heap_fill(p, 100, 0x41)
q = realloc(p, 0x4000000000000000)
r = malloc(16)
heap_fill(r, 16, 0x43)
s = realloc(r, 0x10000000000)
heap_count(s, 16, 0x43)
heap_fill(s, 0x8000000000, 0x42)
heap_count(s, 0x10000000000, 0x42)
heap_load(s+0xffffffffff)
t = calloc(0x100000, 0x100000)
heap_count(t, 0x10000000000, 0)
"""


def test_absurd_sizes_get_a_verdict_in_bounded_memory():
    p = parse(HUGE)
    tracemalloc.start()
    try:
        run = ModelTarget().run(p)
        j = judge(p, run, "model", {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert j.passed, j.failure
    assert peak < 64 << 20
    values = [o.value for o in run.outcomes]
    assert values[2] == 0 and run.outcomes[2].errno == "ENOMEM"     # 2^62 bytes do not fit the model's heap
    assert values[6] == 16                                            # the kept prefix moved with the block
    assert values[8] == 0x8000000000                                  # the stored half is known; the rest is not
    assert values[11] == 0x10000000000                                # calloc's terabyte reads as zero


def test_a_huge_block_the_target_made_is_adopted_and_judged():
    # a target (not the model) returned a 2^62-byte block: the model adopts it without materialising it
    text = "p = malloc(16)\nq = realloc(p, 0x4000000000000000)\nheap_fill(q, 0x1000000000000000, 0x7)\n" \
           "heap_count(q, 0x2000000000000000, 0x7)\n"
    outcomes = [Outcome(value=0x10000000), Outcome(value=0x1000_0000_0000), Outcome(), Outcome(value=0)]
    j = judge(parse(text), RunResult(tuple(outcomes)), "t", {})
    # 2^60 bytes were stored: a count of 0 over 2^61 of them is wrong, and said so
    assert j.failure is not None and j.failure.clause == "c11.object.value-kept"
    ok = outcomes[:3] + [Outcome(value=0x1000000000000000)]
    assert judge(parse(text), RunResult(tuple(ok)), "t", {}).passed


@pytest.mark.parametrize("zero", [False, True])
def test_contents_runs(zero):
    c = Contents(1 << 62, zero)
    base = ZEROED if zero else UNKNOWN
    assert c.load(5) == ((0, ZEROED) if zero else (None, UNKNOWN))
    c.fill(10, 5, 0x141)
    assert c.load(12) == (0x41, STORED)
    lo, hi, prov = c.count(0, 20, 0x41)
    assert (lo, hi) == ((5, 5) if zero else (5, 20)) and prov in (STORED, ZEROED)
    m = c.moved(12)
    assert m.size == 12 and m.load(11) == (0x41, MOVED) and m.load(12) == (None, UNKNOWN)
    assert m.count(0, 12, 0x41) == ((2, 2, MOVED) if zero else (2, 12, MOVED))
    assert base in (ZEROED, UNKNOWN)


EXTREMES = (0, 1, -1, 4095, 1 << 22, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)


def test_every_phys_call_with_extreme_arguments_gets_a_verdict():
    """Each phys call with every argument at an extreme value, after a set-up that leaves a block,
    a cache, an object, a region, a GC object, pages and a vmalloc area live."""
    import random

    from memspec.calls import CALLS
    from memspec.program import Call, Int, Program

    setup = parse("p = malloc(100)\nc = kmem_cache_create(64)\no = kmem_cache_alloc(c)\nr = arena_create(4096)\n"
                  "g = gc_new(32)\nb = buddy_alloc(1)\nv = vmalloc(10000)\nk = kmalloc(100)\n")
    names = sorted(n for n, c in CALLS.items() if c.layer == "phys")
    rng = random.Random(7)
    target = ModelTarget()
    ran = 0
    for name in names:
        nparams = len(CALLS[name].params)
        combos = [tuple([v] * nparams) for v in EXTREMES]
        combos += [tuple(rng.choice(EXTREMES) for _ in range(nparams)) for _ in range(12)]
        for args in combos:
            call = Call(name, tuple(Int(a) for a in args))
            p = Program(setup.calls + (call, call))
            j = judge(p, target.run(p), "model", {})
            assert j.passed, (name, args, j.failure)
            ran += 1
    assert ran >= 21 * len(names)
