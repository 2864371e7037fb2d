"""The VMA tree (IntervalMap) agrees with a page-by-page dictionary under any operations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model.intervals import IntervalMap, merged

OPS = st.lists(st.tuples(st.sampled_from(["set", "remove"]), st.integers(0, 40), st.integers(1, 12),
                         st.integers(0, 3)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(0, 50), st.integers(0, 50))
def test_interval_map_matches_a_dict(ops, qlo, qlen) -> None:
    m: IntervalMap[int] = IntervalMap()
    ref: dict[int, int] = {}
    for op, start, length, value in ops:
        if op == "set":
            m.set(start, start + length, value)
            for x in range(start, start + length):
                ref[x] = value
        else:
            m.remove(start, start + length)
            for x in range(start, start + length):
                ref.pop(x, None)
    items = list(m.items())
    assert len(m) == len(items) == len(m.copy())      # the kept count (several chunks) and the lone chunk's
    for (s1, e1, _), (s2, _, _) in zip(items, items[1:]):
        assert e1 <= s2, "intervals overlap or are out of order"
    seen = {x: v for s, e, v in items for x in range(s, e)}
    assert seen == ref
    for x in range(0, 60):
        hit = m.find(x)
        assert (hit[2] if hit else None) == ref.get(x)
    lo, hi = qlo, qlo + qlen
    assert m.any_overlap(lo, hi) == any(lo <= x < hi for x in ref) if hi > lo else True
    over = {x for s, e, _ in m.overlapping(lo, hi) for x in range(max(s, lo), min(e, hi))}
    assert over == {x for x in ref if lo <= x < hi}
    gaps = list(m.gaps(0, 60))
    free = {x for a, b in gaps for x in range(a, b)}
    assert free == {x for x in range(60) if x not in ref}
    assert gaps == sorted(gaps, reverse=True)
    if hi > lo:
        assert m.covers(lo, hi) == all(x in ref for x in range(lo, hi))


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(0, 50), st.integers(0, 50))
def test_interval_map_matches_a_dict_across_chunks(ops, qlo, qlen) -> None:
    """The same law with chunks of at most 4 intervals, so that splits, emptied chunks and
    lookups across chunk boundaries all happen in small examples."""
    from memspec.model import intervals
    old = intervals.LOAD
    intervals.LOAD = 2
    try:
        test_interval_map_matches_a_dict.hypothesis.inner_test(ops, qlo, qlen)
    finally:
        intervals.LOAD = old


def test_the_count_of_a_map_of_several_chunks_is_its_intervals_after_every_change() -> None:
    """len() of a map of several chunks is a count kept by its two primitive changes: after every
    set and remove, through splits and emptied chunks, it is the number of intervals it holds."""
    from memspec.model import intervals
    old = intervals.LOAD
    intervals.LOAD = 2
    try:
        m: IntervalMap[int] = IntervalMap()
        for i in range(40):
            m.set(3 * i, 3 * i + 2, i)
            assert len(m) == len(list(m.items())) == i + 1
        assert len(m._cs) > 1
        for i in range(0, 40, 3):
            m.remove(3 * i + 1, 3 * i + 5)          # cuts one interval, removes the next's start
            assert len(m) == len(list(m.items()))
        m.set(0, 200, -1)
        assert len(m) == len(list(m.items())) == 1
    finally:
        intervals.LOAD = old


def test_a_lone_chunk_edited_behind_the_map_is_counted_when_it_splits() -> None:
    """A test may build a broken state through a lone chunk's flat lists; the count is taken afresh
    when that chunk splits, so len() stays the number of intervals held."""
    from memspec.model import intervals
    old = intervals.LOAD
    intervals.LOAD = 2
    try:
        m: IntervalMap[int] = IntervalMap()
        m.set(0, 1, 0)
        m._starts.append(10)
        m._ends.append(11)
        m._values.append(1)                          # behind the map's back
        for i in range(2, 8):
            m.set(10 * i, 10 * i + 1, i)
        assert len(m._cs) > 1
        assert len(m) == len(list(m.items())) == 8
    finally:
        intervals.LOAD = old


def test_setting_an_empty_range_maps_nothing():
    from memspec.model.intervals import IntervalMap, merged
    m = IntervalMap()
    m.set(0x1000, 0x3000, "a")
    m.set(0x2000, 0x2000, "b")
    assert list(m.overlapping(0, 0x10000)) == [(0x1000, 0x3000, "a")]


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8)), max_size=12))
def test_merged_ranges_cover_the_same_addresses_disjoint_and_sorted(pairs) -> None:
    ranges = [(s, s + n) for s, n in pairs]
    out = merged(ranges)
    assert {x for s, e in out for x in range(s, e)} == {x for s, e in ranges for x in range(s, e)}
    for (s1, e1), (s2, e2) in zip(out, out[1:]):
        assert e1 < s2, "touching or overlapping ranges were not joined"
