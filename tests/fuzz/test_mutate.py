"""Structure-keeping mutation: mutants stay valid programs of the layer, named results stay defined."""

from __future__ import annotations

import random

import pytest

from memspec.consts import GROUP_OF
from memspec.fuzz.layers import layer as layer_of
from memspec.fuzz.mutate import Mutator, mutator_for
from memspec.program import Flags, Ref, format_program, parse, validate
from memspec.specs.kinds import kind_of

LAYERS = ("os", "phys", "hw", "virt")


def _programs(layer: str, n: int, seed: int) -> list:
    lay = layer_of(layer)
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        p = lay.decode(bytes(rng.randrange(256) for _ in range(200)), None)
        if p.calls:
            out.append(p)
    return out


@pytest.mark.parametrize("layer", LAYERS)
def test_mutants_parse_and_keep_named_results_valid(layer: str) -> None:
    m = mutator_for(layer_of(layer), None, None, random.Random(layer))
    corpus = _programs(layer, 20, 1)
    changed = 0
    for i in range(300):
        p = corpus[i % len(corpus)]
        q = m.mutate(p, corpus)
        validate(q)                                     # every Ref defined earlier, every process live
        assert parse(format_program(q), allow_empty=True) == q
        assert not q.calls or q.layer == layer
        defined: set[str] = set()
        for c in q.calls:
            assert all(a.name in defined for a in c.args if isinstance(a, Ref)), format_program(q)
            if c.result:
                defined.add(c.result)
        changed += q != p
    assert changed > 250


def test_each_operation_does_what_it_says() -> None:
    lay = layer_of("os")
    m = Mutator(lambda d: lay.decode(d, None), random.Random(3))
    p = parse("""\
a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
store(a+0x1000, 0x41)
b = mmap(NULL, 0x1000, PROT_READ, MAP_SHARED|MAP_ANONYMOUS, -1, 0)
x = load(b)
munmap(a, 0x2000)
""")
    seen = {"insert": 0, "delete": 0, "splice": 0, "argument": 0}
    for _ in range(60):
        for op in seen:
            q = getattr(m, op)(p, [p])
            if q is None:
                continue
            validate(q)
            seen[op] += 1
            if op == "insert":
                assert len(q.calls) == len(p.calls) + 1
            elif op == "delete":
                assert len(q.calls) < len(p.calls)
            elif op == "splice":
                assert len(q.calls) > len(p.calls)
            else:
                assert len(q.calls) == len(p.calls)
                diff = [(c, d) for c, d in zip(p.calls, q.calls) if c != d]
                assert len(diff) == 1                                   # one call changed ...
                c, d = diff[0]
                changed = [i for i, (x, y) in enumerate(zip(c.args, d.args)) if x != y]
                assert len(changed) == 1                                # ... in one argument
                i = changed[0]
                if kind_of(c.spec, i) == "flags" and isinstance(d.args[i], Flags):
                    group = c.spec.params[i].kind                       # a flag set keeps to its group
                    assert all(GROUP_OF[n] == group for n in d.args[i].names)
    assert all(n > 10 for n in seen.values()), seen


def test_deleting_a_call_deletes_the_calls_that_used_its_result() -> None:
    p = parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nx = load(a)\nmunmap(a, 0x1000)\n")
    m = Mutator(lambda d: p, random.Random(0))
    results = set()
    for _ in range(30):
        q = m.delete(p)
        if q is None:                       # deleting the mmap would leave nothing: never the empty program
            continue
        validate(q)
        results.add(q.calls)
    assert results == {p.calls[:1] + p.calls[2:], p.calls[:2]}


def test_a_call_set_is_kept_by_inserted_calls() -> None:
    from memspec.calls_phys import ALLOCATORS
    heap = ALLOCATORS["heap"]
    m = mutator_for(layer_of("phys"), heap, None, random.Random(5))
    p = parse("p = malloc(24)\nfree(p)\n")
    for _ in range(100):
        p = m.mutate(p)
        assert all(c.name in heap for c in p.calls), format_program(p)
