"""The os codec: total, round-trips through text, honours a target's calls, multi-process."""

from __future__ import annotations

import random

from memspec.fuzz.codec_os import decode, encode
from memspec.program import format_program, parse
from memspec.targets.linux import LinuxTarget, PRESSURE_CALLS


def _inputs(n, seed=7):
    rng = random.Random(seed)
    for _ in range(n):
        yield bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 64, 256, 512])))


def test_decode_is_total_and_round_trips():
    for data in _inputs(300):
        p = decode(data)
        assert decode(encode(p)) == p
        if p.calls:     # program text without a call is not a program (a parse error)
            assert parse(format_program(p)) == p


def test_decode_honours_the_targets_calls():
    seen = set()
    for data in _inputs(300):
        p = decode(data, LinuxTarget.calls)
        names = {c.name for c in p.calls}
        assert not names & PRESSURE_CALLS
        seen |= names
    assert {"mremap", "madvise", "mlock", "shm_open", "memfd_create", "fork", "pfn_of"} <= seen


def test_programs_span_several_processes_and_pressure_events():
    procs, pressure = 0, 0
    for data in _inputs(300, seed=3):
        p = decode(data)
        procs += any(c.proc for c in p.calls)
        pressure += any(c.name in PRESSURE_CALLS for c in p.calls)
    assert procs > 20 and pressure > 20
