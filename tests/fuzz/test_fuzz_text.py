"""The text form of a fuzz input, shared by every layer's codec."""

from __future__ import annotations

from memspec.fuzz import codec_hw, codec_os, codec_phys, codec_virt
from memspec.fuzz.bytes import TEXT_MAGIC, decode_text, encode_text
from memspec.program import parse

OS = parse("a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmunmap(a, 4096)\n")
HEAP = parse("p = malloc(24)\nfree(p)\n")


def test_text_inputs_round_trip_through_every_codec() -> None:
    assert codec_os.decode(codec_os.encode(OS)) == OS
    assert codec_phys.decode(codec_phys.encode(HEAP)) == HEAP
    for codec in (codec_os, codec_phys, codec_hw, codec_virt):
        assert codec.encode(OS) == encode_text(OS) and encode_text(OS).startswith(TEXT_MAGIC)


def test_text_of_another_layer_or_with_calls_not_allowed_is_refused() -> None:
    assert decode_text(encode_text(OS), "os", None) == OS
    assert decode_text(encode_text(OS), "phys", None) is None
    assert decode_text(encode_text(OS), "os", frozenset({"mmap"})) is None
    assert decode_text(TEXT_MAGIC + b"mmap(((\n", "os", None) is None
    assert decode_text(TEXT_MAGIC, "hw", None).calls == ()
    # the codecs stay total: a refused text input still decodes to a program of their layer
    assert codec_hw.decode(encode_text(OS)).calls == ()
    p = codec_phys.decode(encode_text(OS))
    assert all(c.name not in ("mmap", "munmap") for c in p.calls)
