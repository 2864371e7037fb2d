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

from .model import ModelSession, ModelTarget


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


class _Layers:
    """One model session per layer, made on the layer's first call: a program makes the calls of
    one layer, so each call goes to its own layer's model (``model.registry.new_model``), and
    ``observe`` shows the layer called last."""

    def __init__(self, make_session: Callable[[str], Any], layers: tuple[str, ...]):
        self.make_session = make_session
        self.sessions: dict[str, Any] = {}
        self.current = layers[0]

    def session(self, layer: str) -> Any:
        s = self.sessions.get(layer)
        if s is None:
            s = self.sessions[layer] = self.make_session(layer)
        self.current = layer
        return s

    def call(self, call: Call, args: tuple[Any, ...]) -> Any:
        return self.session(CALLS[call.name].layer).call(call, args)

    def observe(self) -> Any:
        return self.session(self.current).observe()


def serve(stdin: IO[bytes], stdout: IO[bytes], make_session: Callable[[str], Any] = ModelSession,
          name: str = "memspec-model", layers: tuple[str, ...] = ModelTarget.layers,
          capabilities: frozenset[str] = ModelTarget.capabilities) -> int:
    session = _Layers(make_session, layers)

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
                      "capabilities": sorted(capabilities),
                      "calls": sorted(c.name for c in CALLS.values() if c.layer in layers
                                      and (not c.capability or c.capability in capabilities))})
            elif kind == "call":
                call, args = _call_of(msg)
                if CALLS[call.name].layer not in layers:
                    raise ProtocolViolation(f"{call.name} is a call of the {CALLS[call.name].layer} layer, "
                                            f"which this server does not implement")
                send(outcome_to_reply(ident, session.call(call, args)))
            elif kind == "observe":
                send(observation_to_state(ident, session.observe()))
            elif kind == "reset":
                session = _Layers(make_session, layers)
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


