"""specs.compare_maps: the memory-map comparison clips both maps to the ranges the model speaks
for in one pass; it agrees with clipping each range against each window, on any ranges (sorted
or not, overlapping or not, empty or not), and it catches a map that differs inside a window
but not one that differs only outside every window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model.intervals import merged
from memspec.model.registry import new_model
from memspec.records import Mapping, Observation
from memspec.specs.compare_maps import _clip, compare_maps

addr = st.integers(0, 64).map(lambda x: x * 0x1000)
rng = st.tuples(addr, addr, st.sampled_from(["r--p", "rw-p", "---p"]))


def _naive(ranges, windows):
    out = []
    for lo, hi in windows:
        for s, e, perms in ranges:
            s2, e2 = max(s, lo), min(e, hi)
            if s2 < e2:
                out.append((s2, e2, perms))
    return sorted(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(rng, max_size=12), st.lists(st.tuples(addr, addr), max_size=6))
def test_clip_is_the_clip_of_each_range_against_each_window(ranges, windows):
    spoken = merged((lo, hi) for lo, hi in windows if lo < hi)
    assert sorted(_clip(ranges, spoken)) == _naive(ranges, spoken)


def _obs(maps):
    return Observation((("main", tuple(Mapping(s, e, p) for s, e, p in maps)),))


def test_a_difference_inside_a_window_is_caught_and_one_outside_is_not():
    m = new_model("os", {})
    a = m.expect("main", "mmap", (0, 0x3000, 3, 0x22, -1, 0)).default
    m.apply("main", "mmap", (0, 0x3000, 3, 0x22, -1, 0), a)
    start = a.value
    same = [(s, e, p) for s, e, p in m.maps("main")]
    assert compare_maps(m, _obs(same), 0) is None
    # far away from every mapping the model made (and not a quiet range): not the model's to judge
    assert compare_maps(m, _obs(same + [(0x10000, 0x11000, "r--p")]), 0) is None
    # one page of the model's mapping shown read-only: caught, at that page
    wrong = [(start, start + 0x1000, "rw-p"), (start + 0x1000, start + 0x2000, "r--p"),
             (start + 0x2000, start + 0x3000, "rw-p")]
    bad = compare_maps(m, _obs(wrong), 0)
    assert bad is not None and bad.verdict.name == "FAIL" and hex(start + 0x1000) in bad.note
