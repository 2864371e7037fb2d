"""A stand-in for the native agent that offers pipelining, misbehaving on purpose.

``python fake_pipelined.py``: answers ``hello`` with ``"pipeline":true``, each call with a
value (its id times 4096), ``observe`` with one mapping, ``reset`` with 0; and by call name:
``msync`` a line that is not JSON, ``mincore`` a refusal (then every later ``batch`` call
skipped, as the agent does), ``mlock`` a reply with the wrong id, ``munlock`` two replies.
Replies go out in blocks (standard output is buffered) and are flushed when no request waits."""

from __future__ import annotations

import json
import select
import sys


def main() -> None:
    out = sys.stdout.buffer
    stopped = False
    for raw in sys.stdin.buffer:
        msg = json.loads(raw)
        kind, ident = msg.get("type"), msg.get("id")
        if kind == "hello":
            line = json.dumps({"type": "hello", "protocol": 1, "layers": ["os"], "pipeline": True})
        elif kind == "reset":
            stopped = False
            line = json.dumps({"type": "reply", "id": ident, "value": 0})
        elif kind == "bye":
            break
        elif kind == "observe":
            line = json.dumps({"type": "state", "id": ident, "procs": {"main": {"maps": [[4096, 8192, "rw-p"]]}}})
        elif stopped and msg.get("batch"):
            line = json.dumps({"type": "reply", "id": ident, "value": None, "skipped": True})
        else:
            name = msg.get("name")
            line = json.dumps({"type": "reply", "id": ident, "value": ident * 4096}, separators=(",", ":"))
            if name == "msync":
                line = "Segmentation fault (core dumped)"
            elif name == "mincore":
                line = json.dumps({"type": "reply", "id": ident, "value": None, "refused": "not the program's"})
                stopped = True
            elif name == "mlock":
                line = json.dumps({"type": "reply", "id": ident + 1, "value": 0})
            elif name == "munlock":
                line += "\n" + line
        out.write(line.encode() + b"\n")
        if not select.select([sys.stdin], [], [], 0)[0]:
            out.flush()
    out.flush()


if __name__ == "__main__":
    main()
