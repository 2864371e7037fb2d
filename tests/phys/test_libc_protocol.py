"""The libc target's own machinery: requests to its helper processes are matched to their
answers, and whatever a helper does (dies, hangs, answers late, answers garbage) the program
at hand gets a verdict and the next one a working helper -- never a traceback.

Two channels: the harness <-> the preloaded interpreter (the zygote, for ``malloc:NAME``)
and the harness <-> the child that runs a program (every libc target)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets import libc as libc_mod
from memspec.targets.base import SessionFailed
from memspec.targets.libc import LibcTarget, malloc_target

FAULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libc_zygote_faults.py")
PROGRAM = parse("p = malloc(16)\nheap_fill(p, 16, 0x41)\nn = heap_count(p, 16, 0x41)\nfree(p)\n")


def _libc_so() -> str:
    with open("/proc/self/maps") as f:
        return next(line.split()[-1] for line in f if "libc.so.6" in line)


@pytest.fixture
def no_zygotes():
    libc_mod._Zygote.close_all()
    yield
    libc_mod._Zygote.close_all()


def _faulty(monkeypatch, mode: str, once: str = "-", answer_timeout: float = 1.0):
    """A malloc target whose zygotes run with fault ``mode`` injected (see libc_zygote_faults.py)."""
    monkeypatch.setattr(libc_mod._Zygote, "ANSWER_TIMEOUT", answer_timeout)
    monkeypatch.setattr(libc_mod._Zygote, "command",
                        staticmethod(lambda fd, mem: [sys.executable, FAULTS, str(fd), str(mem), mode, once]))
    return malloc_target(_libc_so(), timeout=5.0)


def _passes(t) -> None:
    r = t.run(PROGRAM)
    assert r.status is RunStatus.OK, r
    assert r.outcomes[2].value == 16


# -- the zygote ---------------------------------------------------------------------------


def test_sessions_closed_at_once_leave_no_answer_behind(no_zygotes):
    """The state machine opens a session and may close it before its first call.  The zygote
    answered the child's pid before the child had made its process group, so killing the group
    missed it, the wait for it ran out of time, and its late answer ("SIGKILL") was read as the
    pid of the next fork: ValueError, the check ended with a traceback."""
    t = malloc_target(_libc_so(), timeout=5.0)
    try:
        t0 = time.monotonic()
        for _ in range(20):
            t.session("phys").close()
        _passes(t)
        assert time.monotonic() - t0 < 10
    finally:
        t.close()


def test_a_late_answer_is_dropped_not_taken_for_the_next(monkeypatch, no_zygotes):
    """A wait that outlives its time limit (a child slow to die) is answered later: while the
    harness waits for a fork's answer.  The answer's id tells them apart."""
    t = _faulty(monkeypatch, "slowwait", answer_timeout=0.3)
    try:
        t.session("phys").close()          # the wait for this child runs out of time...
        time.sleep(1.2)                    # ...and its answer is now queued
        z = next(iter(libc_mod._Zygote._live.values()))
        # the next fork's answer may take longer than 0.3 s on a loaded machine: only the wait
        # above needed to run out of time
        monkeypatch.setattr(libc_mod._Zygote, "ANSWER_TIMEOUT", 30.0)
        _passes(t)
        assert libc_mod._Zygote._live[(t.preload, t.mem_limit)] is z     # the same zygote, still trusted
    finally:
        t.close()


def test_stale_answers_before_every_fork_are_dropped(monkeypatch, no_zygotes):
    t = _faulty(monkeypatch, "stale")
    try:
        for _ in range(3):
            _passes(t)
        with t.session("phys") as s:
            assert s.call(PROGRAM.calls[0], (16,)).ok
    finally:
        t.close()


@pytest.mark.parametrize("mode, status, words", [
    ("future", RunStatus.ERROR, "garbage"),
    ("noid", RunStatus.ERROR, "garbage: b'SIGKILL'"),
    ("silent", RunStatus.HANG, "forked no child"),
    ("die", RunStatus.CRASH, "ended (exit status 0)"),
])
def test_a_broken_zygote_is_a_verdict_and_is_replaced(monkeypatch, no_zygotes, tmp_path, mode, status, words):
    # every zygote broken: the program's verdict names what went wrong (after one replacement)
    t = _faulty(monkeypatch, mode)
    try:
        r = t.run(PROGRAM)
        assert r.status is status and words in r.message and r.outcomes == (), r
        with t.session("phys") as s:       # a session's first call carries the verdict
            with pytest.raises(SessionFailed) as e:
                s.call(PROGRAM.calls[0], (16,))
            assert e.value.status is status and words in e.value.message
    finally:
        t.close()
    # only the first zygote broken: it is stopped, a fresh one serves the same program
    t = _faulty(monkeypatch, mode, once=str(tmp_path / "once"))
    try:
        _passes(t)
        _passes(t)
        (z,) = libc_mod._Zygote._live.values()
        assert not z.broken and z.proc.poll() is None
    finally:
        t.close()
    assert (tmp_path / "once").exists()


# -- the child that runs a program ---------------------------------------------------------


def _fake_serve(reply):
    """A child (forked from the harness: the glibc target) that answers each request with
    ``reply(request)`` (bytes, written as they are)."""
    def serve(rf, wfd, mem_limit=0):
        for line in rf:
            out = reply(json.loads(line))
            if out:
                os.write(wfd, out)
    return serve


def _line(**msg) -> bytes:
    return (json.dumps(msg) + "\n").encode()


CHILD_FAULTS = {
    "not json": (lambda req: b"Segmentation fault\n", RunStatus.ERROR, "garbage at call 1: b'Segmentation fault'"),
    "not an object": (lambda req: b"[1, 2]\n", RunStatus.ERROR, "garbage at call 1"),
    "no id": (lambda req: _line(o={"value": 1}), RunStatus.ERROR, "garbage at call 1"),
    "an id not asked": (lambda req: _line(id=req["id"] + 1, o={"value": 1}), RunStatus.ERROR, "garbage at call 1"),
    "a bad outcome": (lambda req: _line(id=req["id"], o={"value": "0x10"}), RunStatus.ERROR,
                      "garbage at call 1: value '0x10' is not a 64-bit integer"),
    "no outcome": (lambda req: _line(id=req["id"], o=None), RunStatus.ERROR, "garbage at call 1"),
    "no line end": (lambda req: b"x" * (3 << 20), RunStatus.ERROR, "no line end"),
    "the child's own error": (lambda req: _line(id=req["id"], error="ValueError: boom"), RunStatus.ERROR,
                              "could not run call 1: ValueError: boom"),
}


@pytest.mark.parametrize("fault", sorted(CHILD_FAULTS))
def test_garbage_from_the_child_is_an_error_verdict(monkeypatch, fault):
    reply, status, words = CHILD_FAULTS[fault]
    monkeypatch.setattr(libc_mod, "_serve", _fake_serve(reply))
    t = LibcTarget(timeout=5.0)
    r = t.run(PROGRAM)
    assert r.status is status and words in r.message, r
    with t.session("phys") as s:
        with pytest.raises(SessionFailed) as e:
            s.call(PROGRAM.calls[0], (16,))
        assert e.value.status is status and words in e.value.message
        with pytest.raises(SessionFailed) as e:      # the child was stopped: no write to a closed descriptor
            s.call(PROGRAM.calls[0], (16,))
        assert e.value.status is RunStatus.CRASH and "already stopped" in e.value.message


def test_an_answer_left_from_an_earlier_request_is_skipped(monkeypatch):
    """The rest of an earlier request's answer (its id is lower) is not taken for this one's."""
    def reply(req):
        return _line(id=req["id"] - 1, o={"value": 7}) + _line(id=req["id"], o={"value": 16})
    monkeypatch.setattr(libc_mod, "_serve", _fake_serve(reply))
    with LibcTarget(timeout=5.0).session("phys") as s:
        assert s.call(PROGRAM.calls[0], (16,)).value == 16
        assert s.call(PROGRAM.calls[0], (16,)).value == 16


def test_a_program_answered_short_or_long_is_an_error(monkeypatch):
    monkeypatch.setattr(libc_mod, "_serve", _fake_serve(lambda req: _line(id=req["id"], done=1)))
    r = LibcTarget(timeout=5.0).run(PROGRAM)
    assert r.status is RunStatus.ERROR and "garbage at call 1" in r.message
    monkeypatch.setattr(libc_mod, "_serve", _fake_serve(lambda req: _line(id=req["id"], o={}) * 5))
    r = LibcTarget(timeout=5.0).run(PROGRAM)
    assert r.status is RunStatus.ERROR and "garbage at call 5" in r.message and len(r.outcomes) == 4


def test_a_child_that_closes_its_end_but_lives_on_is_a_crash_at_once(monkeypatch):
    def serve(rf, wfd, mem_limit=0):
        rf.readline()
        os.close(wfd)
        time.sleep(60)
    monkeypatch.setattr(libc_mod, "_serve", serve)
    t0 = time.monotonic()
    r = LibcTarget(timeout=30.0).run(PROGRAM)
    assert r.status is RunStatus.CRASH and r.message == "target crashed at call 1: SIGKILL", r
    assert time.monotonic() - t0 < 10


def test_a_request_the_child_cannot_run_is_an_error_verdict(monkeypatch):
    def no_parse(text, **_):
        raise ValueError("cannot parse")
    monkeypatch.setattr(libc_mod, "parse", no_parse)
    r = LibcTarget(timeout=5.0).run(PROGRAM)
    assert r.status is RunStatus.ERROR and "ValueError: cannot parse" in r.message


def test_a_zygote_is_signalled_only_while_it_runs(monkeypatch, no_zygotes):
    """Closing a zygote twice (a broken one is closed, then again at exit) must not signal
    its pid again: once reaped, the pid may belong to another process."""
    t = malloc_target(_libc_so(), timeout=5.0)
    _passes(t)
    (z,) = libc_mod._Zygote._live.values()
    killed: list[int] = []
    real = libc_mod.kill_group
    monkeypatch.setattr(libc_mod, "kill_group", lambda pid: (killed.append(pid), real(pid)))
    z.close()
    z.close()
    t.close()
    assert killed == [z.proc.pid] and z.proc.returncode is not None
