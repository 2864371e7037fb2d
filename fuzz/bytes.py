"""What every layer's codec shares: fuzzer bytes drive the layer's generator through the byte
chooser (``specs/choose.ByteChooser``: exhausted input yields the first choice), and the text form
of an input (a program as text after a magic line), so that a reproducer, a suite program or a
structure-keeping mutant (``fuzz/mutate.py``) seeds a corpus as it is."""

from __future__ import annotations

from typing import Any, Callable

from memspec.program import Program, ProgramError, format_program, parse
from memspec.specs.choose import ByteChooser, Chooser

TEXT_MAGIC = b"MST1\n"

Generate = Callable[..., Program]      # (chooser, calls, facts) -> a program of the layer


def encode_text(program: Program) -> bytes:
    """Program -> an input that every codec's ``decode`` maps back to the same program."""
    return TEXT_MAGIC + format_program(program).encode()


def decode_text(data: bytes, layer: str, calls: frozenset[str] | None) -> Program | None:
    """The program written in a text input, if it parses, belongs to ``layer`` and uses only
    ``calls`` (all calls when None); else None.  ``data`` must start with TEXT_MAGIC."""
    try:
        p = parse(data[len(TEXT_MAGIC):].decode("utf-8", "replace"), allow_empty=True)
    except ProgramError:
        return None
    if p.calls and (p.layer != layer or calls is not None and any(c.name not in calls for c in p.calls)):
        return None
    return p


def decode(data: bytes, layer: str, generate: Generate, calls: frozenset[str] | None,
           facts: dict[str, Any] | None = None, *, text_fallback: bool = True,
           chooser: Callable[[bytes], Chooser] = ByteChooser) -> Program:
    """Bytes -> a program of ``layer`` (total: every input gives a valid program, possibly empty).
    A text input decodes to its program; one that is refused decodes, after the magic, as bytes
    (``text_fallback``) or to the empty program."""
    if data.startswith(TEXT_MAGIC):
        p = decode_text(data, layer, calls)
        if p is not None:
            return p
        if not text_fallback:
            return Program(())
        data = data[len(TEXT_MAGIC):]
    return generate(chooser(data), calls, facts)
