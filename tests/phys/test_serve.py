"""``memspec serve model`` answers every layer's calls, each from its own layer's model.

It used to hand every call to the os layer's model: a phys call died with
AttributeError (``_expect_nr_free_pages``) and the server with it.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys

from memspec.specs.directed import suite_programs
from memspec.program import Call, Int
from memspec.specs.judge import judge
from memspec.targets.model import ModelSession
from memspec.targets.registry import make_target
from memspec.targets.serve import serve

SERVE = [sys.executable, "-c", "import sys; from memspec.commands.cli import main; sys.exit(main(['serve', 'model']))"]


def _exchange(lines: list[dict]) -> list[dict]:
    p = subprocess.run(SERVE, input="".join(json.dumps(m) + "\n" for m in lines), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return [json.loads(ln) for ln in p.stdout.splitlines()]


def test_serve_answers_a_call_of_every_layer():
    out = _exchange([
        {"type": "hello", "protocol": 1, "client": "test"},
        {"type": "call", "id": 1, "name": "nr_free_pages", "args": [-1], "result": None},       # phys
        {"type": "call", "id": 2, "name": "buddy_alloc", "args": [11, -1, 0, 1], "result": None},  # phys, bad order
        {"type": "call", "id": 3, "name": "read_pte", "args": [0, 0], "result": None},           # hw
        {"type": "call", "id": 4, "name": "mmap", "args": [0, 0, 3, 0x22, -1, 0], "result": None},  # os: len 0
        {"type": "call", "id": 5, "name": "kpti_stat", "args": [99], "result": None},            # virt
        {"type": "bye"},
    ])
    hello, replies = out[0], {m["id"]: m for m in out[1:]}
    assert set(hello["layers"]) == {"phys", "hw", "os", "virt"}
    assert {"nr_free_pages", "read_pte", "mmap", "kpti_stat"} <= set(hello["calls"])
    assert all(m["type"] == "reply" for m in replies.values()), out
    # each answer is the one its own layer's model gives in process
    for ident, layer, name, args in ((1, "phys", "nr_free_pages", (-1,)), (2, "phys", "buddy_alloc", (11, -1, 0, 1)),
                                     (3, "hw", "read_pte", (0, 0)), (4, "os", "mmap", (0, 0, 3, 0x22, -1, 0)),
                                     (5, "virt", "kpti_stat", (99,))):
        want = ModelSession(layer).call(Call(name, tuple(Int(a) for a in args)), args)
        got = replies[ident]
        assert (got.get("value"), got.get("errno"), got.get("signal")) == (want.value, want.errno, want.signal), \
            (name, got, want)
    assert replies[1]["value"] > 0
    assert replies[2]["errno"] == "ENOMEM"
    assert replies[4]["errno"] == "EINVAL"


def test_a_call_of_a_layer_the_server_lacks_is_an_error_not_a_crash():
    out = io.BytesIO()
    msgs = [{"type": "call", "id": 1, "name": "nr_free_pages", "args": [-1]},
            {"type": "call", "id": 2, "name": "mmap", "args": [0, 0, 3, 0x22, -1, 0]}]
    serve(io.BytesIO(b"".join(json.dumps(m).encode() + b"\n" for m in msgs)), out, layers=("os",))
    replies = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert replies[0]["type"] == "error" and "phys" in replies[0]["message"]
    assert replies[1]["type"] == "reply" and replies[1]["errno"] == "EINVAL"


def test_reset_gives_fresh_models_of_every_layer():
    out = io.BytesIO()
    msgs = [{"type": "call", "id": 1, "name": "buddy_alloc", "args": [10, -1, 0, 1]},
            {"type": "call", "id": 2, "name": "nr_free_pages", "args": [-1]},
            {"type": "reset", "id": 3},
            {"type": "call", "id": 4, "name": "nr_free_pages", "args": [-1]}]
    serve(io.BytesIO(b"".join(json.dumps(m).encode() + b"\n" for m in msgs)), out)
    r = {m["id"]: m for m in map(json.loads, out.getvalue().splitlines())}
    assert r[4]["value"] == r[2]["value"] + 1024


def test_every_layers_first_suite_program_passes_through_serve():
    t = make_target("cmd:" + " ".join(shlex.quote(a) for a in SERVE))
    try:
        for layer in ("phys", "hw", "os", "virt"):
            name, p = next(iter(suite_programs(layer)))
            j = judge(p, t.run(p), t.name, t.facts())
            assert j.passed, (layer, name, j.failure)
            assert len(j.checks) >= len(p.calls)
    finally:
        t.close()
