"""os-layer codec: fuzzer bytes -> the os layer's generator (``specs/gen_os.py``) driven by the
byte chooser.  ``encode`` is the inverse for text: ``decode(encode(p)) == p``, so a text
reproducer seeds a corpus as it is."""

from __future__ import annotations

from memspec.program import Program
from memspec.specs import gen_os

from .bytes import decode as _decode, encode_text


def decode(data: bytes, calls: frozenset[str] | None = None) -> Program:
    """Bytes -> program (total: every input gives a valid program, possibly empty)."""
    return _decode(data, "os", gen_os.program, calls)


def encode(program: Program) -> bytes:
    """Program -> bytes that ``decode`` maps back to the same program."""
    return encode_text(program)
