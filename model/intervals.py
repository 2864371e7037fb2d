"""A sorted map of disjoint half-open intervals [start, end) to values.

This is the model's VMA tree: lookups, inserts and range removals cost
O(log n + k) for k touched intervals, so that the model's cost grows like the
kernel's maple tree, not like a scan of every VMA.

Storage is a list of sorted chunks of at most ``2 * LOAD`` intervals each (starts,
ends and values in parallel lists), with the first start of every chunk in
``_heads``.  A lookup bisects the heads, then one chunk; an insert or a removal
moves at most one chunk's entries.  One flat sorted list would make every insert
and removal move O(n) entries: with 65,000 mappings that memmove cost 30x the
lookup itself (docs/performance.md).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Generic, Iterable, Iterator, TypeVar

V = TypeVar("V")

LOAD = 512     # a chunk splits in two when it grows past 2 * LOAD
NOT_ONE = object()     # IntervalMap._swap: the range is neither exactly one interval nor free
FREE = object()        # IntervalMap._swap: the range holds no interval


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` as sorted, disjoint [start, end) ranges: overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class IntervalMap(Generic[V]):
    __slots__ = ("_cs", "_ce", "_cv", "_heads", "_n")

    def __init__(self) -> None:
        # Always at least one chunk; only a lone chunk may be empty.  ``_heads`` is kept
        # only while there are several chunks (a lone chunk's head is read from it).
        self._cs: list[list[int]] = [[]]
        self._ce: list[list[int]] = [[]]
        self._cv: list[list[V]] = [[]]
        self._heads: list[int] = []
        # the number of intervals, kept by _insert and _delete and read while there are several
        # chunks (summing the chunks' lengths grew with the map: 64 chunks at 65,000 VMAs, on every
        # invariant check); a lone chunk's length is read from it (tests edit its flat lists), and
        # the count is taken afresh when a map comes to have several chunks
        self._n = 0

    # A map of one chunk (every map below 2 * LOAD intervals) exposes its flat lists,
    # which some tests use to build deliberately broken states.
    @property
    def _starts(self) -> list[int]:
        return self._flat(self._cs)

    @property
    def _ends(self) -> list[int]:
        return self._flat(self._ce)

    @property
    def _values(self) -> list[V]:
        return self._flat(self._cv)

    def _flat(self, chunks: list[list]) -> list:
        if len(chunks) == 1:
            return chunks[0]
        return [x for c in chunks for x in c]     # a copy: large maps have no single flat list

    def __len__(self) -> int:
        cs = self._cs
        return len(cs[0]) if len(cs) == 1 else self._n

    def copy(self) -> "IntervalMap[V]":
        m: IntervalMap[V] = IntervalMap()
        m._cs = [c[:] for c in self._cs]
        m._ce = [c[:] for c in self._ce]
        m._cv = [c[:] for c in self._cv]
        m._heads = self._heads[:]
        m._n = self._n
        return m

    def items(self) -> Iterator[tuple[int, int, V]]:
        if len(self._cs) == 1:
            return zip(self._cs[0], self._ce[0], self._cv[0])
        return (t for c in range(len(self._cs)) for t in zip(self._cs[c], self._ce[c], self._cv[c]))

    # -- positions ----------------------------------------------------------------------

    def _chunk(self, addr: int) -> int:
        """The chunk holding the last interval that starts at or before ``addr`` (-1: none)."""
        if len(self._cs) == 1:
            s = self._cs[0]
            return 0 if s and s[0] <= addr else -1
        return bisect_right(self._heads, addr) - 1

    def _last_at_or_before(self, addr: int) -> tuple[int, int]:
        """(chunk, index) of the last interval with start <= addr; (0, -1) if there is none."""
        c = self._chunk(addr)
        if c < 0:
            return 0, -1
        return c, bisect_right(self._cs[c], addr) - 1

    def _next(self, c: int, i: int) -> tuple[int, int]:
        i += 1
        if i < len(self._cs[c]):
            return c, i
        return c + 1, 0

    def _valid(self, c: int, i: int) -> bool:
        return c < len(self._cs) and 0 <= i < len(self._cs[c])

    # -- queries ------------------------------------------------------------------------

    def find(self, addr: int) -> tuple[int, int, V] | None:
        cs = self._cs
        if len(cs) == 1:
            s = cs[0]
            i = bisect_right(s, addr) - 1
            if i >= 0:
                e = self._ce[0][i]
                if addr < e:
                    return s[i], e, self._cv[0][i]
            return None
        c = bisect_right(self._heads, addr) - 1
        if c < 0:
            return None
        s = cs[c]
        i = bisect_right(s, addr) - 1
        e = self._ce[c][i]
        if addr < e:
            return s[i], e, self._cv[c][i]
        return None

    def overlapping(self, start: int, end: int) -> list[tuple[int, int, V]]:
        """Intervals that intersect [start, end), in address order (not clipped)."""
        if len(self._cs) == 1:      # one chunk (every map below 2 * LOAD intervals): its lists alone
            s, e, v = self._cs[0], self._ce[0], self._cv[0]
            i = bisect_right(s, start) - 1
            if i < 0:
                i = 0
            n = len(s)
            out = []
            while i < n and s[i] < end:
                if e[i] > start:
                    out.append((s[i], e[i], v[i]))
                i += 1
            return out
        c, i = self._last_at_or_before(start)
        if i < 0:
            i = 0
        out = []
        cs, ce, cv = self._cs, self._ce, self._cv
        while c < len(cs):
            s, e, v = cs[c], ce[c], cv[c]
            while i < len(s):
                if s[i] >= end:
                    return out
                if e[i] > start:
                    out.append((s[i], e[i], v[i]))
                i += 1
            c, i = c + 1, 0
        return out

    def next_after(self, addr: int) -> tuple[int, int, V] | None:
        """The first interval that starts after ``addr`` (None: there is none)."""
        c, i = self._next(*self._last_at_or_before(addr))
        return (self._cs[c][i], self._ce[c][i], self._cv[c][i]) if self._valid(c, i) else None

    def any_overlap(self, start: int, end: int) -> bool:
        if len(self._cs) == 1:
            s = self._cs[0]
            i = bisect_right(s, start) - 1
            if i >= 0 and self._ce[0][i] > start:
                return True
            return i + 1 < len(s) and s[i + 1] < end
        c, i = self._last_at_or_before(start)
        if i >= 0 and self._ce[c][i] > start:
            return True
        c, i = self._next(c, i)
        return self._valid(c, i) and self._cs[c][i] < end

    def covers(self, start: int, end: int) -> bool:
        """Does every address of [start, end) lie in some interval (no hole)?"""
        return next(self.gaps(start, end), None) is None

    def gaps(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Free ranges within [lo, hi), from the highest address down (top-down placement)."""
        c = self._chunk(hi - 1) if hi > 0 else -1
        # the intervals that start below hi: up to (c, i) inclusive
        i = bisect_left(self._cs[c], hi) - 1 if c >= 0 else -1
        cur_hi = hi
        while c >= 0:
            s_, e_ = self._cs[c], self._ce[c]
            while i >= 0:
                s, e = s_[i], e_[i]
                if e <= lo:
                    if cur_hi > lo:
                        yield lo, cur_hi
                    return
                if e < cur_hi:
                    yield max(e, lo), cur_hi
                cur_hi = min(cur_hi, s)
                if cur_hi <= lo:
                    return
                i -= 1
            c -= 1
            if c >= 0:
                i = len(self._cs[c]) - 1
        if cur_hi > lo:
            yield lo, cur_hi

    def fit_below(self, lo: int, hi: int, size: int) -> int | None:
        """Where the top-down search puts ``size`` bytes in [lo, hi): the end of the first free range
        from the top (``gaps``) that holds them, less ``size``; None if none does.  ``gaps``'s walk
        without its generator (mmap asks this on every call without MAP_FIXED)."""
        cs, ce = self._cs, self._ce
        if hi <= 0:
            c = -1
        elif len(cs) == 1:      # (_chunk)
            c = 0 if cs[0] and cs[0][0] < hi else -1
        else:
            c = bisect_right(self._heads, hi - 1) - 1
        i = bisect_left(cs[c], hi) - 1 if c >= 0 else -1
        cur_hi = hi
        while c >= 0:
            s_, e_ = cs[c], ce[c]
            while i >= 0:
                e = e_[i]
                if e <= lo:
                    return cur_hi - size if cur_hi > lo and cur_hi - lo >= size else None
                if e < cur_hi and cur_hi - max(e, lo) >= size:
                    return cur_hi - size
                s = s_[i]
                if s < cur_hi:
                    cur_hi = s
                if cur_hi <= lo:
                    return None
                i -= 1
            c -= 1
            if c >= 0:
                i = len(cs[c]) - 1
        return cur_hi - size if cur_hi > lo and cur_hi - lo >= size else None

    # -- updates ------------------------------------------------------------------------

    def _delete(self, start: int) -> None:
        self._n -= 1
        if len(self._cs) == 1:
            i = bisect_left(self._cs[0], start)
            del self._cs[0][i], self._ce[0][i], self._cv[0][i]
            return
        c = self._chunk(start)
        i = bisect_left(self._cs[c], start)
        del self._cs[c][i], self._ce[c][i], self._cv[c][i]
        if len(self._cs) == 1:
            return
        if not self._cs[c]:
            del self._cs[c], self._ce[c], self._cv[c], self._heads[c]
            if len(self._cs) == 1:
                self._heads = []
        elif i == 0:
            self._heads[c] = self._cs[c][0]

    def _insert(self, start: int, end: int, value: V) -> None:
        c = max(self._chunk(start), 0) if self._heads else 0
        s = self._cs[c]
        i = bisect_left(s, start)
        s.insert(i, start)
        self._ce[c].insert(i, end)
        self._cv[c].insert(i, value)
        self._n += 1
        if self._heads and i == 0:
            self._heads[c] = start
        if len(s) > 2 * LOAD:
            if not self._heads:
                self._heads = [s[0]]
                self._n = len(s)        # one chunk becomes two: counted afresh (see __init__)
            for lists in (self._cs, self._ce, self._cv):
                whole = lists[c]
                lists[c:c + 1] = [whole[:LOAD], whole[LOAD:]]
            self._heads.insert(c + 1, self._cs[c + 1][0])

    def remove(self, start: int, end: int) -> list[tuple[int, int, V]]:
        """Remove [start, end), splitting intervals that straddle its edges; the intervals it
        cut into or removed, as they were."""
        if start >= end:
            return []
        hits = self.overlapping(start, end)
        if hits:
            self._cut(hits, start, end)
        return hits

    def _cut(self, hits: list[tuple[int, int, V]], start: int, end: int) -> None:
        """``remove``'s change: ``hits`` (what it found over [start, end)) taken out, the parts of the
        first and last outside the range put back."""
        for s, _, _ in hits:
            self._delete(s)
        s0, _, v0 = hits[0]
        if s0 < start:
            self._insert(s0, start, v0)
        _, e1, v1 = hits[-1]
        if e1 > end:
            self._insert(end, e1, v1)

    def set(self, start: int, end: int, value: V) -> None:
        """Map [start, end) to ``value``, replacing whatever was there; an empty range maps nothing."""
        if end <= start:
            return
        old = self._swap(start, end, value)
        if old is FREE:
            self._insert(start, end, value)
        elif old is NOT_ONE:
            self.remove(start, end)
            self._insert(start, end, value)

    def _swap(self, start: int, end: int, value: V) -> V | object:
        """The two cases of ``set`` that need no removal, found with one bisect: [start, end) is
        exactly one interval, between neighbours that do not reach into it -- give it ``value`` in
        place and return the old value (what ``remove`` + ``_insert`` would do, without moving the
        lists' entries) --, or it holds no interval (``FREE``: nothing to remove, insert it).  Else
        change nothing and return ``NOT_ONE`` (also at a chunk's edge, where a neighbour lies in
        the next chunk or the one before)."""
        c = max(self._chunk(start), 0) if self._heads else 0
        s, e = self._cs[c], self._ce[c]
        i = bisect_left(s, start)
        n = len(s)
        if (i == 0 and c) or (i + 1 >= n and c + 1 < len(self._cs)) or (i and e[i - 1] > start):
            return NOT_ONE
        if i == n or s[i] >= end:
            return FREE
        if s[i] != start or e[i] != end or (i + 1 < n and s[i + 1] < end):
            return NOT_ONE
        old = self._cv[c][i]
        self._cv[c][i] = value
        return old
