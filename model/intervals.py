"""A sorted map of disjoint half-open intervals [start, end) to values.

This is the model's VMA tree: lookups, inserts and range removals cost
O(log n + k) for k touched intervals (bisect on a sorted list), so that the
model's cost grows like the kernel's maple tree, not like a scan of every VMA.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Generic, Iterator, TypeVar

V = TypeVar("V")


class IntervalMap(Generic[V]):
    __slots__ = ("_starts", "_ends", "_values")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._values: list[V] = []

    def __len__(self) -> int:
        return len(self._starts)

    def copy(self) -> "IntervalMap[V]":
        m: IntervalMap[V] = IntervalMap()
        m._starts = self._starts[:]
        m._ends = self._ends[:]
        m._values = self._values[:]
        return m

    def items(self) -> Iterator[tuple[int, int, V]]:
        return zip(self._starts, self._ends, self._values)

    def find(self, addr: int) -> tuple[int, int, V] | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._ends[i]:
            return self._starts[i], self._ends[i], self._values[i]
        return None

    def overlapping(self, start: int, end: int) -> list[tuple[int, int, V]]:
        """Intervals that intersect [start, end), in address order (not clipped)."""
        i = max(bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._starts) and self._starts[i] < end:
            if self._ends[i] > start:
                out.append((self._starts[i], self._ends[i], self._values[i]))
            i += 1
        return out

    def any_overlap(self, start: int, end: int) -> bool:
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return True
        return i + 1 < len(self._starts) and self._starts[i + 1] < end

    def remove(self, start: int, end: int) -> None:
        """Remove [start, end), splitting intervals that straddle its edges."""
        if start >= end:
            return
        i = max(bisect_right(self._starts, start) - 1, 0)
        j = bisect_left(self._starts, end)
        keep_s: list[int] = []
        keep_e: list[int] = []
        keep_v: list[V] = []
        for k in range(i, j):
            s, e, v = self._starts[k], self._ends[k], self._values[k]
            if e <= start:
                keep_s.append(s); keep_e.append(e); keep_v.append(v)
                continue
            if s < start:
                keep_s.append(s); keep_e.append(start); keep_v.append(v)
            if e > end:
                keep_s.append(end); keep_e.append(e); keep_v.append(v)
        self._starts[i:j] = keep_s
        self._ends[i:j] = keep_e
        self._values[i:j] = keep_v

    def set(self, start: int, end: int, value: V) -> None:
        """Map [start, end) to ``value``, replacing whatever was there."""
        self.remove(start, end)
        i = bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._values.insert(i, value)

    def gaps(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Free ranges within [lo, hi), from the highest address down (top-down placement)."""
        i = bisect_left(self._starts, hi)
        cur_hi = hi
        while i > 0:
            i -= 1
            s, e = self._starts[i], self._ends[i]
            if e <= lo:
                break
            if e < cur_hi:
                yield max(e, lo), cur_hi
            cur_hi = min(cur_hi, s)
            if cur_hi <= lo:
                return
        if cur_hi > lo:
            yield lo, cur_hi
