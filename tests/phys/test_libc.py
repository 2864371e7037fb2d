"""The libc target: glibc's malloc family, judged on what C11 and POSIX promise."""

from __future__ import annotations

import os
import random
import signal

import pytest

from memspec.calls_phys import HEAP_CALLS
from memspec.errors import UsageError
from memspec.fuzz.codec_phys import decode
from memspec.program import format_program, parse
from memspec.records import RunStatus, Verdict
from memspec.specs.judge import judge
from memspec.targets import libc as libc_mod
from memspec.targets.libc import LibcTarget, malloc_target
from memspec.targets.registry import make_target


def test_registry_names():
    assert isinstance(make_target("libc"), LibcTarget)
    t = make_target("malloc:glibc")
    assert t.name == "malloc:glibc" and t.calls == HEAP_CALLS and t.layers == ("phys",)
    with pytest.raises(UsageError, match="unknown allocator"):
        malloc_target("nosuchalloc")


def test_worked_example_on_glibc():
    p = parse("p = malloc(5000)\nheap_fill(p, 5000, 0x41)\nq = realloc(p, 9000)\nn = heap_count(q, 5000, 0x41)\n"
              "a = posix_memalign(4096, 10)\nb = posix_memalign(24, 10)\nfree(q)\nfree(a)\n")
    r = LibcTarget().run(p)
    assert r.status is RunStatus.OK
    assert r.outcomes[3].value == 5000
    assert r.outcomes[4].value % 4096 == 0
    assert r.outcomes[5].errno == "EINVAL" and r.outcomes[5].value == 0
    assert judge(p, r, "libc").passed


def test_random_programs_pass_on_glibc():
    t = LibcTarget()
    rng = random.Random(11)
    statuses = set()
    for _ in range(120):
        p = decode(bytes(rng.randrange(256) for _ in range(rng.randrange(20, 300))), t.calls)
        assert all(c.name in HEAP_CALLS for c in p.calls)
        r = t.run(p)
        statuses.add(r.status)
        j = judge(p, r, t.name)
        assert j.passed, f"{j.failure}\n{format_program(p)}"
    assert statuses == {RunStatus.OK}      # the codec never asks for undefined behaviour


def test_undefined_behaviour_is_refused_not_run():
    t = LibcTarget()
    for text in ("p = malloc(16)\nfree(p)\nfree(p)\n", "p = malloc(16)\nheap_store(p+16, 1)\n",
                 "p = malloc(16)\nfree(p)\nq = realloc(p, 32)\n"):
        p = parse(text)
        r = t.run(p)
        assert r.status is RunStatus.REFUSED and "refused" in r.message
        j = judge(p, r, t.name)
        assert j.failure is None and j.checks[-1].verdict is Verdict.UNSUPPORTED


def test_calls_outside_the_target_are_not_applicable():
    r = LibcTarget().run(parse("b = buddy_alloc(0)\n"))
    assert r.status is RunStatus.REFUSED and "not applicable" in r.message


def test_a_crash_is_a_verdict_naming_the_call(monkeypatch):
    real = libc_mod._Heap.do_malloc

    def abort_on_666(self, size):
        if size == 666:
            os.kill(os.getpid(), signal.SIGABRT)
        return real(self, size)

    monkeypatch.setattr(libc_mod._Heap, "do_malloc", abort_on_666)
    p = parse("a = malloc(16)\nb = malloc(666)\nc = malloc(16)\n")
    r = LibcTarget().run(p)
    assert r.status is RunStatus.CRASH
    assert r.message == "target crashed at call 2: SIGABRT"
    j = judge(p, r, "libc")
    assert j.failure is not None and j.failure.verdict is Verdict.CRASH


def test_a_hang_is_a_verdict_and_the_child_is_killed(monkeypatch):
    import time

    def sleep_forever(self, size):
        time.sleep(60)

    monkeypatch.setattr(libc_mod._Heap, "do_malloc", sleep_forever)
    r = LibcTarget(timeout=0.5).run(parse("a = malloc(16)\n"))
    assert r.status is RunStatus.HANG and "call 1" in r.message


def test_session_steps_and_refuses():
    from memspec.targets.base import SessionFailed
    t = LibcTarget()
    with t.session("phys") as s:
        p = parse("p = malloc(100)\n")
        o = s.call(p.calls[0], (100,))
        assert o.ok and o.value % 16 == 0
        free = parse("free(0)\n").calls[0]
        s.call(free, (o.value,))
        with pytest.raises(SessionFailed) as e:
            s.call(free, (o.value,))
        assert e.value.status is RunStatus.REFUSED


def test_suite_heap_programs_pass_on_glibc_and_others_are_not_applicable():
    from memspec.specs.directed import suite_programs
    ran = 0
    for name, p in suite_programs("phys"):
        r = LibcTarget().run(p)
        if any(c.name not in HEAP_CALLS for c in p.calls):
            assert r.status is RunStatus.REFUSED
            continue
        ran += 1
        j = judge(p, r, "libc")
        assert j.passed, (name, j.failure)
        assert set(p.meta("clauses").split()) <= {c.clause for c in j.checks}, name
    assert ran >= 3


def test_preloaded_allocator_runs_in_an_execd_interpreter():
    """malloc:/path/to/lib.so execs a fresh interpreter with LD_PRELOAD (here: the C library itself,
    which every machine has), and the same judgement applies."""
    with open("/proc/self/maps") as f:
        path = next(line.split()[-1] for line in f if "libc.so.6" in line)
    t = malloc_target(path)
    assert t.preload == path and t.name == f"malloc:{path}"
    p = parse("p = malloc(5000)\nheap_fill(p, 5000, 0x41)\nq = realloc(p, 9000)\nn = heap_count(q, 5000, 0x41)\n"
              "free(q)\nfree(q)\n")
    r = t.run(p)
    assert [o.describe() for o in r.outcomes][3] == "0x1388"
    assert r.status is RunStatus.REFUSED          # the double free was refused in the exec'd child too
    j = judge(p, r, t.name)
    assert j.failure is None and j.checks[-1].verdict is Verdict.UNSUPPORTED
    with t.session("phys") as s:
        assert s.call(p.calls[0], (100,)).ok
