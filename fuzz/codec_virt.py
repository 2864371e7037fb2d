"""virt-layer codec: fuzzer bytes -> the virt layer's generator (``specs/gen_virt.py``) driven by
the byte chooser.  A text input that is refused decodes to the empty program.  ``encode`` is the
inverse for text (``decode(encode(p)) == p``)."""

from __future__ import annotations

from memspec.program import Program
from memspec.specs import gen_virt

from .bytes import decode as _decode, encode_text


def decode(data: bytes, calls: frozenset[str] | None = None) -> Program:
    return _decode(data, "virt", gen_virt.program, calls, text_fallback=False)


def encode(program: Program) -> bytes:
    return encode_text(program)
