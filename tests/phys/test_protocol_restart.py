"""A ``cmd:`` target whose process fails is replaced before the next program; a replacement
that does not start (no hello) is that program's verdict, never an exception out of the run
or the state machine's session."""

from __future__ import annotations

import shlex
import sys

import pytest

from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets.base import SessionFailed
from memspec.targets.registry import make_target

SERVER = '''
import json, os, sys
flag = sys.argv[1]
if os.path.exists(flag):
    sys.exit(1)                 # every start after the first fails before its hello
open(flag, "w").close()
sys.stdin.readline()
print(json.dumps({"type": "hello", "protocol": 1, "layers": ["phys"]}), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    if msg["type"] == "call":
        sys.exit(2)             # the first process dies at its first call
    print(json.dumps({"type": "reply", "id": msg["id"]}), flush=True)
'''


def test_a_replacement_that_does_not_start_is_a_crash_verdict(tmp_path):
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    t = make_target(f"cmd:{shlex.quote(sys.executable)} {shlex.quote(str(server))} {shlex.quote(str(tmp_path / 'flag'))}")
    p = parse("p = malloc(16)\n")
    try:
        r = t.run(p)
        assert r.status is RunStatus.CRASH and "exit status 2" in r.message, r
        r = t.run(p)                               # the replacement exits before its hello
        assert r.status is RunStatus.CRASH and r.outcomes == (), r
        assert "no target process at call 1" in r.message and "no valid hello" in r.message
        s = t.session("phys")                      # a state machine's session: the verdict at its first call
        with pytest.raises(SessionFailed) as e:
            s.call(p.calls[0], (16,))
        assert e.value.status is RunStatus.CRASH and "no valid hello" in e.value.message
        with pytest.raises(SessionFailed):
            s.observe()
        s.close()
    finally:
        t.close()
