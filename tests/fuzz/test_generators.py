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
    assert layer_of(layer).generator is GENERATORS[layer]
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


class _First:
    """A chooser that always takes the first choice and every chance."""
    exhausted = False

    def integer(self, lo, hi):
        return lo

    def choice(self, seq):
        return seq[0]

    def weighted(self, table):
        return table[0][1]

    def chance(self, percent):
        return True

    def boolean(self):
        return True


def test_a_changed_range_is_read_back_at_its_edges_and_beside_it() -> None:
    from memspec.program import Call, Int, Ref
    g = gen_os.OsGen(_First(), None)
    g.read_back(Ref("a", 0x1000), Int(0x2000, hex=True), None, "p2")
    assert g.calls == [Call("load", (Ref("a"),), None, "p2"), Call("load", (Ref("a", 0x1000),), None, "p2"),
                       Call("load", (Ref("a", 0x2fff),), None, "p2"), Call("load", (Ref("a", 0x3fff),), None, "p2")]
    g.calls.clear()
    g.read_back(Ref("b"), Int(0x1000, hex=True), 3, None)      # beside a mapping outside the window: never
    assert g.calls == []


def _few_call_runs(gen, monkeypatch, percent: int) -> int:
    """Programs of 10 calls or more (besides loads) that use at most 4 distinct calls, among 400 random inputs."""
    monkeypatch.setattr(gen, "SWARM_PERCENT", percent)
    if gen is gen_phys:
        # the exhaustion phases, the full machine and the runs of one call through its edges are long runs
        # of a few calls by design: measure swarm without them
        monkeypatch.setattr(gen, "GROUPS", tuple(g for g in gen.GROUPS if g[1] not in ("pressure", "full", "edge")))
    else:
        # so are the os scenarios (a lock scenario is mlock and mincore over and over), and map_pages at
        # the map-count limit: measure swarm on the single steps
        monkeypatch.setattr(gen, "STEPS", [s for s in gen.STEPS if not s[1].endswith("-scenario")])
        monkeypatch.setattr(gen, "MAP_PAGES_LIMIT_PERCENT", 0)
    rng = random.Random(9)
    n = 0
    for _ in range(400):
        p = gen.program(ByteChooser(bytes(rng.randrange(256) for _ in range(300))), None)
        # loads left out: the os generator reads a changed range back with a run of them in any program
        calls = [c for c in p.calls if c.name != "load"]
        n += len(calls) >= 10 and len({c.name for c in calls}) <= 4
    return n


@pytest.mark.parametrize("gen", [gen_os, gen_phys], ids=["os", "phys"])
def test_swarm_programs_are_long_runs_of_a_few_calls(gen, monkeypatch) -> None:
    percent = gen.SWARM_PERCENT
    without, with_swarm = _few_call_runs(gen, monkeypatch, 0), _few_call_runs(gen, monkeypatch, percent)
    assert with_swarm >= 2 * without + 10, (without, with_swarm)
