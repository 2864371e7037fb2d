"""The standalone fuzz entry point fails with a readable program on a disagreement."""

from __future__ import annotations

import os
import random
import sys

import pytest

from memspec.fuzz.codec_os import decode, encode
from memspec.commands.fuzz_entry import Disagreement, make_test_one_input
from memspec.program import parse

BROKEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "broken", "broken_server.py")


def test_entry_point_is_quiet_on_the_model_and_raises_on_a_broken_target() -> None:
    ok = make_test_one_input("model")
    rng = random.Random(3)
    for _ in range(50):
        ok(bytes(rng.randrange(256) for _ in range(128)))
    bad = make_test_one_input(f"cmd:{sys.executable} {BROKEN} len0-wrong-errno")
    prog = parse("a = mmap(NULL, 0, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)")
    with pytest.raises(Disagreement) as e:
        bad(encode(prog))
    assert "posix.mmap.einval-len0" in str(e.value)
    assert "a = mmap(NULL, 0, PROT_READ" in str(e.value)


def test_codec_is_total_and_text_inputs_round_trip() -> None:
    rng = random.Random(5)
    for _ in range(300):
        p = decode(bytes(rng.randrange(256) for _ in range(rng.randrange(300))))
        assert decode(encode(p)) == p


def test_the_custom_mutator_keeps_structure_and_the_size_limit() -> None:
    from memspec.commands.fuzz_entry import make_entry
    from memspec.fuzz.bytes import TEXT_MAGIC
    one, make_mutator = make_entry("model", "os")
    byte_calls: list[int] = []

    def byte_mutate(data: bytes, max_size: int) -> bytes:
        byte_calls.append(max_size)
        return data[:max_size]

    custom = make_mutator(byte_mutate)
    parent = encode(parse("a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                          "store(a+0x1000, 0x41)\nmunmap(a, 0x1000)\n"))
    texts = 0
    for seed in range(200):
        out = custom(parent, 4096, seed)
        assert len(out) <= 4096
        if out.startswith(TEXT_MAGIC) and out != parent:
            texts += 1
            assert decode(out).calls                 # a program again, which the model passes
            one(out)
    assert 60 < texts < 140 and 60 < len(byte_calls) < 140     # about half and half
    # a mutant too large for libFuzzer's limit falls back to the byte mutation
    byte_calls.clear()
    assert custom(parent, 10, 1) == parent[:10] and byte_calls == [10]
