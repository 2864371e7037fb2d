"""``memspec serve model``: the reference model speaking the protocol on stdin/stdout.

This is both a worked example of the protocol's server side and the way the whole
check is tested end to end through a process boundary.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Callable

from memspec.calls import CALLS
from memspec.program import Call, Int, Str
from memspec.protocol import PROTOCOL_VERSION, ProtocolViolation, decode, encode, observation_to_state, outcome_to_reply

from .model import ModelSession


def _call_of(msg: dict[str, Any]) -> tuple[Call, tuple[Any, ...]]:
    name = msg.get("name")
    if name not in CALLS:
        raise ProtocolViolation(f"unknown call {name!r}")
    args = msg.get("args")
    if not isinstance(args, list) or len(args) != len(CALLS[name].params):
        raise ProtocolViolation(f"{name} needs {len(CALLS[name].params)} args")
    proc = msg.get("proc") or "main"
    call = Call(name, tuple(Str(a) if isinstance(a, str) else Int(int(a)) for a in args),
                msg.get("result"), None if proc == "main" else proc)
    return call, tuple(args)


def serve(stdin: IO[bytes], stdout: IO[bytes], make_session: Callable[[str], Any] = ModelSession,
          name: str = "memspec-model", layers: tuple[str, ...] = ("os",)) -> int:
    session = make_session(layers[0])

    def send(msg: dict[str, Any]) -> None:
        stdout.write(encode(msg))
        stdout.flush()

    for line in stdin:
        try:
            msg = decode(line)
        except ProtocolViolation as e:
            send({"type": "error", "id": None, "message": str(e)})
            continue
        kind, ident = msg["type"], msg.get("id")
        try:
            if kind == "hello":
                send({"type": "hello", "protocol": PROTOCOL_VERSION, "name": name, "layers": list(layers),
                      "calls": sorted(c.name for c in CALLS.values() if c.layer in layers)})
            elif kind == "call":
                call, args = _call_of(msg)
                send(outcome_to_reply(ident, session.call(call, args)))
            elif kind == "observe":
                send(observation_to_state(ident, session.observe()))
            elif kind == "reset":
                session = make_session(layers[0])
                send({"type": "reply", "id": ident, "value": 0})
            elif kind == "bye":
                return 0
            else:
                send({"type": "error", "id": ident, "message": f"unknown message type {kind!r}"})
        except ProtocolViolation as e:
            send({"type": "error", "id": ident, "message": str(e)})
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve(sys.stdin.buffer, sys.stdout.buffer)


