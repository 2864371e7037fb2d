"""The chooser: the one small interface every generator draws its decisions through.

A layer's generator (``specs/gen_<layer>.py``) never reads bytes or calls Hypothesis itself: it asks
a ``Chooser`` for an integer in a range, one item of a sequence, a weighted item, a coin with a
given chance.  Two choosers drive it:

* ``ByteChooser`` -- over fuzzer bytes (the codecs: ``fuzz/codec_<layer>.py``).  An integer takes
  as few bytes as its range needs; exhausted input gives the first choice (0), so every input,
  the empty one too, decodes to a program.
* ``DrawChooser`` -- over Hypothesis draws (``st.data()`` in a state machine's rule), so the
  machine's arguments come from the same vocabularies and Hypothesis shrinks them: an integer
  toward ``lo``, a choice toward the first item, a weighted choice toward the first entry.

It lives in ``specs/`` (not ``fuzz/``) because the state machines use it and specs may not import
fuzz; the core is no place for it either (it is about generation, not programs).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Chooser(Protocol):
    @property
    def exhausted(self) -> bool: ...

    def integer(self, lo: int, hi: int) -> int: ...

    def choice(self, seq: Sequence[T]) -> T: ...

    def weighted(self, table: Sequence[tuple[int, T]]) -> T: ...

    def chance(self, percent: int) -> bool: ...

    def boolean(self) -> bool: ...


class _FromIntegers:
    """Every choice made from ``integer`` (so both choosers map a decision to the same number)."""

    __slots__ = ()

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.integer(0, len(seq) - 1)]

    def weighted(self, table: Sequence[tuple[int, T]]) -> T:
        r = self.integer(0, sum(w for w, _ in table) - 1)
        for w, item in table:
            if r < w:
                return item
            r -= w
        return table[-1][1]

    def chance(self, percent: int) -> bool:
        return self.integer(0, 99) < percent

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1


class ByteChooser(_FromIntegers):
    """Choices from fuzzer bytes (big-endian, modulo the range; 0 once the bytes run out)."""

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

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi] (inclusive) from as few bytes as the range needs."""
        span = hi - lo + 1
        v = 0
        n = 0
        while (1 << (8 * n)) < span:
            v = (v << 8) | self.byte()
            n += 1
        return lo + (v % span if span > 0 else 0)


class DrawChooser(_FromIntegers):
    """Choices drawn from a Hypothesis ``st.data()`` object (never exhausted)."""

    __slots__ = ("data",)

    def __init__(self, data: Any):
        self.data = data

    @property
    def exhausted(self) -> bool:
        return False

    def integer(self, lo: int, hi: int) -> int:
        from hypothesis import strategies as st
        return self.data.draw(st.integers(lo, max(lo, hi)))


def swarm(r: Chooser, table: Sequence[T], percent: int, keep: Callable[[T], bool] = lambda item: False) -> list[T]:
    """Swarm testing (Groce et al., "Swarm testing", ISSTA 2012): in ``percent`` of the programs, only a
    random subset of ``table`` (the calls or features a generator draws from; ``keep`` names those
    always in), so that long runs of a few calls appear; the other programs draw from the whole table.
    Each entry stays with chance 1/2, 1/4, 1/8 or 1/16 (the density is drawn first: the AND of 1 to 4
    random masks), so small subsets are common too.  Never empty."""
    if len(table) < 2 or not r.chance(percent):
        return list(table)
    full = (1 << len(table)) - 1
    mask = full
    for _ in range(r.integer(1, 4)):
        mask &= r.integer(0, full)
    sub = [item for i, item in enumerate(table) if mask >> i & 1 or keep(item)]
    return sub or list(table)


__all__ = ["Chooser", "ByteChooser", "DrawChooser", "swarm"]
