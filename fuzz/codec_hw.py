"""hw-layer codec: fuzzer bytes -> the hw layer's generator (``specs/gen_hw.py``) driven by the
byte chooser.  An input whose last byte is a multiple of 5 (one in five), for a target with the
``segmentation`` calls, is a segmentation program.  A text input that is refused decodes to the
empty program.  ``encode`` is the inverse for text: ``decode(encode(p)) == p``."""

from __future__ import annotations

from typing import Any

from memspec.program import Program
from memspec.specs import gen_hw

from .bytes import decode as _decode, encode_text

USES_FACTS = True            # decode() takes the target's facts (callers pass them when a codec says so)


def decode(data: bytes, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """``facts``: the target's (``cpl3_reserved_slots`` constrains the accesses generated)."""
    seg = bool(data) and data[-1] % 5 == 0
    return _decode(data, "hw", lambda r, c, f: gen_hw.program(r, c, f, seg=seg), calls, facts, text_fallback=False)


def encode(program: Program) -> bytes:
    return encode_text(program)
