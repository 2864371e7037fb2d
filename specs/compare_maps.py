"""The memory-map comparison of a checkpoint: each process's mappings against the model's.

Used by the os layer's checkpoint comparison (``compare_os``) and by its state machine.  The
model speaks for the pages it has mapped and for the target's quiet ranges (where nothing
else lives); elsewhere a real process has mappings of its own (its stack, its libraries).
"""

from __future__ import annotations

from memspec.model.intervals import merged
from memspec.model.mm import System
from memspec.records import Check, Observation, Verdict

from .catalogue import get as clause


def _all_maps(system: System) -> dict[str, list[tuple[int, int, str]]]:
    return {p: system.maps(p) for p in system.procs}


def _clip(ranges: list[tuple[int, int, str]], windows: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """The parts of ``ranges`` inside the sorted, disjoint ``windows``, window by window, in one
    pass over both (a map of thousands of mappings against as many windows stays linear)."""
    ranges = sorted(ranges)
    out = []
    i, n = 0, len(ranges)
    for lo, hi in windows:
        while i < n and ranges[i][1] <= lo:    # ends before this window, so before every later one
            i += 1
        j = i
        while j < n and ranges[j][0] < hi:
            s, e, perms = ranges[j]
            s2, e2 = max(s, lo), min(e, hi)
            if s2 < e2:
                out.append((s2, e2, perms))
            j += 1
    return out


def _merge(ranges: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for s, e, p in sorted(ranges):
        if out and out[-1][1] == s and out[-1][2] == p:
            out[-1] = (out[-1][0], e, p)
        else:
            out.append((s, e, p))
    return out


def compare_maps(system: System, obs: Observation, index: int) -> Check | None:
    """Compare each process's map with the model's, over the ranges the model can speak for:
    the pages the model has mapped, and the target's quiet ranges (where nothing else lives)."""
    for proc in system.procs:
        seen = obs.maps_of(proc)
        if seen is None:
            continue
        expected = system.maps(proc)
        windows = [(s, e) for s, e, _ in expected] + list(system.config.quiet_ranges)
        observed_raw = [(m.start, m.end, m.perms) for m in seen]
        spoken = merged(windows)
        want, got = _merge(_clip(expected, spoken)), _merge(_clip(observed_raw, spoken))
        if want != got:
            addr = _first_difference(want, got)
            cid = system.blame(proc, addr)
            return Check(cid, Verdict.FAIL, index,
                         _fmt(want, addr), _fmt(got, addr),
                         f"process {proc}: memory map differs at {addr:#x} ({clause('linux.proc-maps.matches').statement})",
                         at="checkpoint")
    return None


def _first_difference(a: list[tuple[int, int, str]], b: list[tuple[int, int, str]]) -> int:
    for x, y in zip(a, b):
        if x != y:
            return min(x[0], y[0]) if x[0] != y[0] else (min(x[1], y[1]) if x[1] != y[1] else x[0])
    longer = a if len(a) > len(b) else b
    return longer[min(len(a), len(b))][0]


def _fmt(ranges: list[tuple[int, int, str]], near: int) -> str:
    close = [r for r in ranges if r[1] > near - 0x10000 and r[0] < near + 0x10000] or ranges[:3]
    return "; ".join(f"{s:#x}-{e:#x} {p}" for s, e, p in close) or "(nothing mapped)"
