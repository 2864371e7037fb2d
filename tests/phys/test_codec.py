"""The phys codec: total, well-typed, inverse for text, and restricted to a target's calls."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from memspec.calls import CALLS
from memspec.calls_phys import HEAP_CALLS
from memspec.fuzz.codec_phys import decode, encode
from memspec.program import format_program, parse


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_decode_is_total_and_round_trips(data):
    p = decode(data)
    assert all(CALLS[c.name].layer == "phys" for c in p.calls)
    # a program without a call is no program text (memspec.program refuses it); the codec's own text form keeps it
    if p.calls:
        assert parse(format_program(p)) == p
    assert decode(encode(p)) == p


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_decode_respects_the_targets_calls(data):
    p = decode(data, HEAP_CALLS)
    assert {c.name for c in p.calls} <= HEAP_CALLS


def test_decode_reaches_every_call_group():
    rng = random.Random(3)
    seen = set()
    for _ in range(300):
        seen |= {c.name for c in decode(bytes(rng.randrange(256) for _ in range(200))).calls}
    phys = {n for n, c in CALLS.items() if c.layer == "phys"}
    assert phys - seen <= {"gc_unroot"} or not (phys - seen), phys - seen


def test_text_from_another_layer_is_not_smuggled_to_a_subset():
    text = b"MST1\nb = buddy_alloc(0)\n"
    p = decode(text, HEAP_CALLS)
    assert {c.name for c in p.calls} <= HEAP_CALLS
