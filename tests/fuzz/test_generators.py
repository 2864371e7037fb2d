"""One generator per layer, driven by fuzzer bytes or by Hypothesis draws through the chooser."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from memspec.calls_phys import ALLOCATORS
from memspec.program import format_program, parse, validate
from memspec.specs import gen_hw, gen_os, gen_phys, gen_virt
from memspec.specs.choose import ByteChooser, DrawChooser
from memspec.fuzz import codec_os, codec_phys

GENERATORS = {"os": gen_os, "phys": gen_phys, "hw": gen_hw, "virt": gen_virt}


def test_byte_chooser_reads_as_few_bytes_as_the_range_needs_and_yields_the_first_choice_when_exhausted() -> None:
    r = ByteChooser(bytes([7, 1, 2, 150]))
    assert r.integer(0, 9) == 7                    # one byte
    assert r.integer(0, 999) == (1 << 8 | 2) % 1000   # two bytes, big-endian, modulo the range
    assert r.weighted([(100, "a"), (100, "b")]) == "b"   # 150 of 200
    assert r.exhausted
    assert r.integer(5, 9) == 5 and r.choice("xyz") == "x" and r.chance(1) and not r.boolean()


@pytest.mark.parametrize("layer", sorted(GENERATORS))
def test_the_codec_is_the_generator_driven_by_the_byte_chooser(layer: str) -> None:
    from memspec.fuzz.layers import layer as layer_of
    rng = random.Random(layer)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(200))
        if layer == "hw" and data[-1] % 5 == 0:
            continue
        assert layer_of(layer).decode(data, None) == GENERATORS[layer].program(ByteChooser(data), None)


@pytest.mark.parametrize("layer", sorted(GENERATORS))
def test_hypothesis_draws_drive_the_same_generator_to_valid_programs(layer: str) -> None:
    seen: list[int] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data) -> None:
        p = GENERATORS[layer].program(DrawChooser(data), None)
        if p.calls:
            validate(p)
            assert parse(format_program(p)) == p
            assert p.layer == layer
            seen.append(len(p.calls))

    run()
    assert seen and max(seen) > 1


def test_a_call_set_limits_what_either_chooser_generates() -> None:
    heap = ALLOCATORS["heap"]
    rng = random.Random(1)
    for _ in range(30):
        p = codec_phys.decode(bytes(rng.randrange(256) for _ in range(200)), heap)
        assert all(c.name in heap for c in p.calls)

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data) -> None:
        p = gen_phys.program(DrawChooser(data), heap)
        assert all(c.name in heap for c in p.calls)

    run()


def test_the_os_codec_and_generator_share_one_vocabulary() -> None:
    # the codec keeps no vocabulary of its own: the generator's tuples are the only ones
    assert not any(isinstance(v, (list, tuple)) and v and isinstance(v[0], tuple) for k, v in vars(codec_os).items()
                   if k.isupper())
