"""The hw codec: every input decodes to a valid hw program; text round-trips; the mode varies."""

from __future__ import annotations

import random

from memspec.fuzz.codec_hw import decode, encode
from memspec.program import format_program, parse


def samples(n: int, seed: int = 7):
    rng = random.Random(seed)
    for _ in range(n):
        yield bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64, 256, 700])))


def test_every_input_is_a_valid_hw_program_and_round_trips():
    for data in samples(300):
        p = decode(data)
        assert p.calls and p.layer == "hw"
        assert parse(format_program(p)) == p
        assert decode(encode(p)) == p


def test_programs_reach_the_interesting_modes_and_shapes():
    seen: set[str] = set()
    for data in samples(400, seed=3):
        text = format_program(decode(data))
        for word in ("CR4_SMEP", "CR4_SMAP", "CR4_PGE", "CR4_LA57", "CR4_PKE", "PTE_PS", "PTE_XD", "PTE_G",
                     "ACC_EXEC", "invlpg", "read_pte", "mov_cr0", "wrmsr_efer", "wrpkru", ", 3,", ", 1)"):
            if word in text:
                seen.add(word)
        if "CR0_WP" not in text.split("\n")[0] and text.startswith("boot"):
            seen.add("WP=0")
    assert seen >= {"CR4_SMEP", "CR4_SMAP", "CR4_PGE", "CR4_LA57", "CR4_PKE", "PTE_PS", "PTE_XD", "PTE_G",
                    "ACC_EXEC", "invlpg", "read_pte", "mov_cr0", "wrmsr_efer", "wrpkru", ", 3,", "WP=0"}


def test_call_subset_is_respected():
    only = frozenset({"set_pte", "mov_cr3", "access"})
    for data in samples(50, seed=11):
        assert {c.name for c in decode(data, only).calls} <= only
