"""phys-layer codec: fuzzer bytes -> the phys layer's generator (``specs/gen_phys.py``) driven by
the byte chooser; ``decode(data, calls)`` draws only from the call groups in ``calls``, so the libc
target gets heap-only programs.  ``encode`` is the inverse for text: ``decode(encode(p)) == p``."""

from __future__ import annotations

from typing import Any

from memspec.program import Program
from memspec.specs import gen_phys

from .bytes import decode as _decode, encode_text

USES_FACTS = True            # decode() takes the target's facts: the machine it declares (``phys_machine``)


def decode(data: bytes, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """Bytes -> program (total: every input gives a valid program, possibly empty); ``facts``: the
    target's (its nodes' sizes shape the exhaustion phases and the nodes named)."""
    return _decode(data, "phys", gen_phys.program, calls, facts)


def encode(program: Program) -> bytes:
    """Program -> bytes that ``decode`` maps back to the same program."""
    return encode_text(program)
