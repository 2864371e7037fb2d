"""The hw generator builds on the machine the target declares (issue #26): reserved bits from its
MAXPHYADDR, frames at the end of its guest memory."""

from __future__ import annotations

import random

from memspec.program import eval_args
from memspec.specs import gen_hw
from memspec.specs.choose import ByteChooser

U52 = (1 << 52) - 1


def _entries(facts, n: int = 600) -> list[int]:
    rng = random.Random(26)
    out = []
    for _ in range(n):
        p = gen_hw.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), None, facts)
        out += [eval_args(c, {})[2] for c in p.calls if c.name == "set_pte"]
    return out


def _high_bits(entries: list[int]) -> set[int]:
    return {b for e in entries for b in range(36, 52) if e >> b & 1}


def test_reserved_bits_follow_the_declared_maxphyaddr() -> None:
    assert _high_bits(_entries({"maxphyaddr": 39})) == {38, 39, 51}
    assert _high_bits(_entries({"maxphyaddr": 46})) == {45, 46, 51}
    assert _high_bits(_entries(None)) == {51}          # MAXPHYADDR 52: bit 51 is the highest address bit


def test_frames_at_the_end_of_the_declared_guest_memory() -> None:
    for ram in (16 << 20, 24 << 20, (32 << 20) + 0x5000):
        frames = {e & U52 & ~0xFFF for e in _entries({"ram": ram})}
        assert {ram - 0x1000, ram - 0x2000, ram} <= frames, ram
