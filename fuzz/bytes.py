"""What every layer's codec shares: a reader that turns fuzzer bytes into choices (exhausted
input yields the first choice), and the text form of an input (a program as text after a
magic line), so that a reproducer or a suite program seeds a corpus as it is."""

from __future__ import annotations

from typing import Sequence, TypeVar

from memspec.program import Program, ProgramError, format_program, parse

TEXT_MAGIC = b"MST1\n"

T = TypeVar("T")


class ByteReader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi] (inclusive) from as few bytes as the range needs."""
        span = hi - lo + 1
        v = 0
        n = 0
        while (1 << (8 * n)) < span:
            v = (v << 8) | self.byte()
            n += 1
        return lo + (v % span if span > 0 else 0)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.int(0, len(seq) - 1)]

    def weighted(self, table: Sequence[tuple[int, T]]) -> T:
        total = sum(w for w, _ in table)
        r = self.int(0, total - 1)
        for w, item in table:
            if r < w:
                return item
            r -= w
        return table[-1][1]

    def chance(self, percent: int) -> bool:
        return self.int(0, 99) < percent


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
