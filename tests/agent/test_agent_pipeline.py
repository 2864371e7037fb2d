"""Pipelined programs on the native agent (``AgentTarget.run``): the requests go ahead of their
replies, the agent resolves named results itself (``{"ref": NAME, "add": N}``) and skips what
follows a refused call.  The run must be the call-by-call session's run: the same statuses,
outcomes where the kernel is deterministic, and verdicts."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from memspec.fuzz.layers import random_programs
from memspec.program import parse
from memspec.records import RunStatus
from memspec.specs.directed import suite_programs
from memspec.specs.judge import judge
from memspec.targets.agent import WINDOW, AgentTarget, build_agent
from memspec.targets.base import Target

from ..conftest import GCC, need, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="the agent makes Linux system calls")

agent = target_fixture("linux-agent", GCC)


def _per_call(t, p):
    return Target.run(t, p)           # the session, one round trip per call


def _verdict(t, p, run):
    j = judge(p, run, t.name, t.facts())
    return run.status, len(run.outcomes), j.failure.clause if j.failure else None


def _talk(lines: list[dict]) -> list[dict]:
    exe = build_agent()
    text = "".join(json.dumps(m) + "\n" for m in [{"type": "hello", "protocol": 1}, *lines, {"type": "bye"}])
    r = subprocess.run([exe], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()[1:]]


MMAP = ["mmap", 0, 4096, 3, 0x22, -1, 0]


def _call(ident, name, *args, result=None, batch=True):
    return {"type": "call", "id": ident, "proc": "main", "name": name, "args": list(args), "result": result,
            "batch": batch}


def test_the_hello_offers_pipelining():
    need(GCC)
    hello = subprocess.run([build_agent()], input='{"type":"hello","protocol":1}\n', capture_output=True, text=True,
                           timeout=60).stdout
    assert json.loads(hello.splitlines()[0])["pipeline"] is True


def test_references_are_resolved_by_the_agent():
    need(GCC)
    out = _talk([_call(1, *MMAP, result="a"),
                 _call(2, "mprotect", {"ref": "a", "add": 0}, 4096, 1),
                 _call(3, "load", {"ref": "a", "add": 4095}),
                 _call(4, "mmap", 0, 0, 3, 0x22, -1, 0, result="b"),       # EINVAL: b is bound to -1
                 _call(5, "munmap", {"ref": "b", "add": 0}, 4096),          # munmap(-1): EINVAL, not a refusal
                 _call(6, "munmap", {"ref": "a", "add": 0}, 4096),
                 _call(7, "load", {"ref": "a", "add": 4095}),               # unmapped now
                 _call(8, "store", {"ref": "nope", "add": 0}, 1)])
    a = out[0]["value"]
    assert a > 0 and [m["id"] for m in out] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert out[1]["value"] == 0 and out[2]["value"] == 0
    assert out[3]["errno"] == "EINVAL" and out[4]["errno"] == "EINVAL"
    assert out[5]["value"] == 0 and out[6]["signal"] == "SIGSEGV"
    assert out[7]["type"] == "error" and "name" in out[7]["message"]


def test_what_was_asked_is_answered_when_the_input_ends():
    need(GCC)
    exe = build_agent()
    text = "".join(json.dumps(m) + "\n" for m in [{"type": "hello", "protocol": 1}, _call(1, *MMAP, result="a"),
                                                  _call(2, "munmap", {"ref": "a", "add": 0}, 4096)])
    r = subprocess.run([exe], input=text, capture_output=True, text=True, timeout=60)     # no "bye"
    assert r.returncode == 0 and [json.loads(x)["id"] for x in r.stdout.splitlines()[1:]] == [1, 2], r.stdout


def test_a_refusal_skips_the_rest_of_a_pipelined_program_only():
    need(GCC)
    out = _talk([_call(1, *MMAP, result="a"),
                 _call(2, "mprotect", 0x1000, 0x7ffffffff000, 0),          # the agent's own memory: refused
                 _call(3, *MMAP, result="b"),
                 {"type": "observe", "id": 4},
                 {"type": "reset", "id": 5},
                 _call(6, *MMAP, result="c")])
    assert isinstance(out[1].get("refused"), str)
    assert out[2] == {"type": "reply", "id": 3, "value": None, "skipped": True}
    assert out[3]["type"] == "state" and out[4] == {"type": "reply", "id": 5, "value": 0}
    assert out[5]["value"] > 0                                             # a new program runs again
    # without "batch" a call after a refusal runs: the call-by-call session decides itself
    out = _talk([_call(1, "mprotect", 0x1000, 0x7ffffffff000, 0, batch=False), _call(2, *MMAP, batch=False)])
    assert isinstance(out[0].get("refused"), str) and out[1]["value"] > 0


def test_pipelined_runs_agree_with_the_session_on_the_suite_and_random_programs(agent):
    programs = list(suite_programs("os")) + list(random_programs("os", 60, 5, agent.calls, agent.facts()))
    differ, n = [], 0
    for name, p in programs:
        if any(c.name not in agent.calls for c in p.calls):
            continue
        n += 1
        a, b = agent.run(p), _per_call(agent, p)
        va, vb = _verdict(agent, p, a), _verdict(agent, p, b)
        if va != vb:      # the kernel's timing may decide one run (pagemap frames): once more each
            a, b = agent.run(p), _per_call(agent, p)
            va, vb = _verdict(agent, p, a), _verdict(agent, p, b)
        if va != vb:
            differ.append((name, va, vb, a.message, b.message))
    assert n >= 100 and not differ, differ


def test_a_program_longer_than_the_window_and_the_next_after_a_refusal(agent):
    rounds = [f"a{i} = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              f"store(a{i}+{1 + i % 4095}, {i % 256})\nx{i} = load(a{i}+{1 + i % 4095})\nmunmap(a{i}, 4096)\n"
              for i in range(600)]
    p = parse("".join(rounds))
    assert sum(len(json.dumps(c.name)) + 60 for c in p.calls) > 4 * WINDOW    # many windows' worth of requests
    run = agent.run(p)
    assert run.status is RunStatus.OK and len(run.outcomes) == len(p.calls)
    assert [run.outcomes[4 * i + 2].value for i in range(600)] == [i % 256 for i in range(600)]
    assert judge(p, run, agent.name, agent.facts()).failure is None
    refused = agent.run(parse("a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                              "mprotect(0x1000, 0x7ffffffff000, PROT_NONE)\n" + "".join(rounds[:50])))
    assert refused.status is RunStatus.REFUSED and len(refused.outcomes) == 1
    again = agent.run(p)                  # the replies of the skipped calls were read: in step again
    assert again.status is RunStatus.OK and len(again.outcomes) == len(p.calls)


def test_a_crash_in_the_middle_of_a_pipelined_program_is_a_crash_and_the_agent_is_replaced():
    need(GCC)
    t = AgentTarget(defines=("-DAGENT_BUG_CRASH_ON_MSYNC",))
    try:
        p = parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmsync(a, 0x1000, MS_SYNC)\n"
                  + "b = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n" * 200)
        run = t.run(p)
        assert run.status is RunStatus.CRASH and len(run.outcomes) == 1
        assert "main process died: killed by SIGABRT" in run.message, run.message
        ok = t.run(parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"))
        assert ok.status is RunStatus.OK and ok.outcomes[0].value > 0
    finally:
        t.close()


@pytest.mark.parametrize("sig", ["SIGSEGV", "SIGABRT"])
def test_a_death_in_a_block_of_answers_sends_the_answers_before_it(sig):
    # main gathers the answers of quiet calls (mmap, mprotect, munmap, load) while more requests
    # wait, and writes them out when it dies of a signal it catches: the crash is the dying call's
    need(GCC)
    t = AgentTarget(defines=(f"-DAGENT_BUG_DIE_ON_PROT_NONE={sig}",))
    try:
        rounds = "".join(f"a{i} = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                         f"mprotect(a{i}, 4096, PROT_READ|PROT_WRITE)\nx{i} = load(a{i})\nmunmap(a{i}, 4096)\n"
                         for i in range(40))
        p = parse(rounds + "b = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                  "mprotect(b, 4096, PROT_NONE)\n" + rounds)
        run = t.run(p)
        assert run.status is RunStatus.CRASH and len(run.outcomes) == 161, (run.status, len(run.outcomes))
        assert f"main process died: killed by {sig}" in run.message, run.message
        assert t.run(parse(rounds)).status is RunStatus.OK
    finally:
        t.close()


def test_malformed_requests_in_a_pipelined_program_are_answered_in_order():
    need(GCC)
    exe = build_agent()
    lines = ['{"type":"hello","protocol":1}', json.dumps(_call(1, *MMAP, result="a"), separators=(",", ":")),
             '{"type":"call","id":2,garbage', '{"type":"observe","id":3', '{"type":"observe","id":4}',
             json.dumps(_call(5, "munmap", {"ref": "a", "add": 0}, 4096), separators=(",", ":")), '{"type":"bye"}']
    r = subprocess.run([exe], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    out = [json.loads(x) for x in r.stdout.splitlines()[1:]]
    assert [m["type"] for m in out] == ["reply", "error", "error", "state", "reply"], out
    assert out[1] == {"type": "error", "id": None, "message": "expected a string"}
    assert out[2] == {"type": "error", "id": None, "message": "expected ',' or '}'"}
    assert out[4] == {"type": "reply", "id": 5, "value": 0}


def test_the_stream_is_judged_as_the_finished_run(agent):
    # judge() on agent.stream(p) reads outcomes while the agent still runs: the same judgement
    progs = [p for _, p in random_programs("os", 30, 9, agent.calls, agent.facts())]
    progs.append(parse("a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                       "mprotect(0x1000, 0x7ffffffff000, PROT_NONE)\nmunmap(a, 4096)\n"))      # refused midway
    facts = agent.facts()
    for p in progs:
        s = agent.stream(p)
        js = judge(p, s, agent.name, facts)
        run = s.finish()
        jr = judge(p, run, agent.name, facts)
        assert (js.status, js.failure and js.failure.clause, len(js.checks)) == \
               (jr.status, jr.failure and jr.failure.clause, len(jr.checks)), format(p)
        if run.status is RunStatus.OK:
            assert len(run.outcomes) == len(p.calls) and run.observations[-1][0] == len(p.calls) - 1
    assert js.status is RunStatus.REFUSED and len(run.outcomes) == 1
    agent.pipelined = False       # a target that keeps one request at a time (UML's console) streams so too
    try:
        s = agent.stream(progs[0])
        assert judge(progs[0], s, agent.name, facts).status is s.finish().status
        assert s.sent == s.got == len(s.kinds)
    finally:
        agent.pipelined = True


def test_without_gcc_linux_runs_in_the_python_child_and_says_so(monkeypatch, tmp_path, capsys):
    import shutil

    from memspec.targets import agent as agent_mod
    from memspec.targets.linux import LinuxTarget
    from memspec.targets.registry import make_target
    monkeypatch.setattr(agent_mod, "cache_dir", lambda: str(tmp_path))      # no agent built yet
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)               # and no compiler
    monkeypatch.setattr(agent_mod, "_FELL_BACK", [])
    t = make_target("linux")
    try:
        assert isinstance(t, LinuxTarget) and t.name == "linux"
        assert "gcc" in capsys.readouterr().err
        run = t.run(parse("a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"))
        assert run.status is RunStatus.OK and run.outcomes[0].value > 0
    finally:
        t.close()
    monkeypatch.undo()
    need(GCC)
    with_gcc = make_target("linux")
    try:
        assert type(with_gcc).__name__ == "LinuxOnAgent" and with_gcc.name == "linux"
    finally:
        with_gcc.close()
