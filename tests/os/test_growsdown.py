"""MAP_GROWSDOWN (found by fuzzing linux-agent): a hint ending in the stack guard gap below a
growing-down mapping is not used (linux.mmap.hint-stack-guard-gap), and an access below one may
grow it (linux.mmap.growsdown-expands): the model answers unknown there and, when the access was
made, grows its own mapping down to the page, so the memory map and the next accesses are
judged against the grown mapping.  The kernel itself is judged on the same program."""

from __future__ import annotations

import os

import pytest

from memspec.fuzz.differential import execute
from memspec.model.registry import new_model
from memspec.program import eval_args, parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x100000034000
QUIET = {"quiet_ranges": [[0x100000000000, 0x100000000000 + (1 << 36)]]}
GROWS = f"a = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_GROWSDOWN, -1, 0)\n"
PROGRAM = GROWS + "store(a, 1)\nx = load(a-0x1000)\ny = load(a-0x3000)\n" \
    "b = mmap(0x100000023000, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"


def test_a_hint_in_the_guard_gap_is_not_demanded_and_a_far_one_still_is():
    near = GROWS + "b = mmap(0x100000023000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
    far = GROWS + "b = mmap(0x100000023000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
    far = far.replace("0x100000023000", "0x100001000000")
    elsewhere = Outcome(value=0x7F0000000000)
    j = judge(parse(near), RunResult((Outcome(value=W), elsewhere), ()), "t", QUIET)
    assert j.failure is None and j.checks[-1].clause == "linux.mmap.hint-stack-guard-gap"
    # the hint itself is allowed too (the gap is a boot parameter)
    assert judge(parse(near), RunResult((Outcome(value=W), Outcome(value=0x100000023000)), ()), "t", QUIET).failure is None
    # a hint far from the gap (above the mapping): the free hint must be used
    bad = judge(parse(far), RunResult((Outcome(value=W), elsewhere), ()), "t", QUIET)
    assert bad.failure is not None and bad.failure.clause == "linux.mmap.hint-used-when-free"


def test_an_access_below_grows_the_models_mapping_and_the_map_is_judged_against_it():
    text = GROWS + "store(a, 1)\nx = load(a-0x1000)\n"
    outs = (Outcome(value=W), Outcome(), Outcome(value=0))
    j = judge(parse(text), RunResult(outs, ()), "t", QUIET)
    assert j.failure is None and j.checks[2].clause == "linux.mmap.growsdown-expands"
    m = new_model("os", QUIET)
    for call, o in zip(parse(text).calls, outs):
        m.apply("main", call.name, eval_args(call, {"a": W}), o)
    assert [(s, e) for s, e, _ in m.maps("main")] == [(W - 0x1000, W + 0x2000)]
    # the grown page is now an ordinary page of the mapping: its byte is 0, a store there sticks
    assert m.expect("main", "load", (W - 0x1000,)).default == Outcome(value=0)
    # SIGSEGV (a limit refused the growth) is allowed too, and then nothing grows
    j = judge(parse(text), RunResult((Outcome(value=W), Outcome(), Outcome(signal="SIGSEGV")), ()), "t", QUIET)
    assert j.failure is None


def test_without_a_growing_mapping_above_an_access_below_is_still_sigsegv():
    text = GROWS.replace("|MAP_GROWSDOWN", "") + "x = load(a-0x1000)\n"
    j = judge(parse(text), RunResult((Outcome(value=W), Outcome(value=0)), ()), "t", QUIET)
    assert j.failure is not None and j.failure.clause == "posix.access.unmapped-sigsegv"


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")
def test_on_linux_the_stack_grows_and_the_hint_below_is_moved():
    from memspec.targets.linux import LinuxTarget
    t = LinuxTarget()
    p = parse(PROGRAM)
    run = t.run(p)
    assert run.outcomes[2] == Outcome(value=0) and run.outcomes[3] == Outcome(value=0)
    assert run.outcomes[4].value != 0x100000023000
    assert execute(t, p, t.facts()).failure is None
