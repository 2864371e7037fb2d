"""The line protocol: JSON messages, one per line, between memspec and a target.

See docs/protocol.md for the schema and a worked transcript.  Each program call
maps one-to-one onto a ``call`` request and its ``reply``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .program import Call, Program, format_call
from .records import Mapping, Observation, Outcome

PROTOCOL_VERSION = 1


class ProtocolViolation(Exception):
    """The peer sent something that is not a valid message at this point."""


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        raise ProtocolViolation("empty line where a JSON message was expected")
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolViolation(f"not JSON ({e.msg} at column {e.colno}): {text[:120]!r}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolViolation(f"a message must be a JSON object with a string 'type': {text[:120]!r}")
    return msg


def hello(layers: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "layers": layers, **extra}


def call_message(ident: int, call: Call, args: tuple[int | str, ...]) -> dict[str, Any]:
    return {"type": "call", "id": ident, "proc": call.proc or "main", "name": call.name,
            "args": list(args), "result": call.result, "text": format_call(call)}


def reply_to_outcome(msg: dict[str, Any], ident: int) -> Outcome:
    if msg.get("type") == "error":
        raise ProtocolViolation(f"target reported an error: {msg.get('message', '(no message)')}")
    if msg.get("type") != "reply":
        raise ProtocolViolation(f"expected a 'reply', got {msg.get('type')!r}")
    if msg.get("id") != ident:
        raise ProtocolViolation(f"reply id {msg.get('id')!r} does not match request id {ident}")
    value, err, sig = msg.get("value"), msg.get("errno"), msg.get("signal")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ProtocolViolation(f"reply value must be an integer or null, got {value!r}")
    for name, v in (("errno", err), ("signal", sig)):
        if v is not None and not isinstance(v, str):
            raise ProtocolViolation(f"reply {name} must be a name string or null, got {v!r}")
    if err is not None and sig is not None:
        raise ProtocolViolation("a reply carries an errno or a signal, not both")
    detail = msg.get("detail") or {}
    if not isinstance(detail, dict):
        raise ProtocolViolation("reply detail must be an object")
    return Outcome(value, err, sig, tuple(sorted(detail.items())))


# The reply lines a target writes most (memspec's agent writes exactly these shapes, and nothing
# else for a call that ran): a value; -1 and an errno; no value and a signal.  ``fast_reply`` reads
# them without json; anything else (another key or order, spacing, an escape, a leading zero, a
# number too long to be a register, a wrong id, both an errno and a signal) is None, for
# ``decode`` and ``reply_to_outcome`` to read, so garbage gets the error it always got.
_REPLY = re.compile(rb'\{"type":"reply","id":([1-9][0-9]{0,17}),"value":(?:(-?(?:0|[1-9][0-9]{0,38}))|null)'
                    rb'(?:,"errno":"([A-Z][A-Z0-9]{0,31})")?(?:,"signal":"([A-Z][A-Z0-9]{0,31})")?\}')


def fast_reply(line: bytes, ident: int) -> Outcome | None:
    """``reply_to_outcome(decode(line), ident)`` for a common reply line, else None (the same
    Outcome, held to the plain path by tests/agent/test_fast_reply.py)."""
    m = _REPLY.fullmatch(line)
    if m is None or int(m[1]) != ident:
        return None
    value, err, sig = m.group(2, 3, 4)
    if err is not None:
        if sig is not None:
            return None
        err = err.decode()
    elif sig is not None:
        sig = sig.decode()
    return Outcome(None if value is None else int(value), err, sig)


def outcome_to_reply(ident: int, o: Outcome) -> dict[str, Any]:
    return {"type": "reply", "id": ident, **o.to_json()}


def state_to_observation(msg: dict[str, Any], ident: int) -> Observation:
    if msg.get("type") == "error":
        raise ProtocolViolation(f"target reported an error: {msg.get('message', '(no message)')}")
    if msg.get("type") != "state" or msg.get("id") != ident:
        raise ProtocolViolation(f"expected 'state' with id {ident}, got {msg.get('type')!r} id {msg.get('id')!r}")
    procs = msg.get("procs")
    if not isinstance(procs, dict):
        raise ProtocolViolation("'state' needs an object 'procs'")
    maps = []
    for name, st in procs.items():
        rows = st.get("maps", []) if isinstance(st, dict) else None
        if not isinstance(rows, list):
            raise ProtocolViolation(f"'maps' of process {name!r} must be a list")
        out = []
        for r in rows:
            if (not isinstance(r, list) or len(r) != 3 or not isinstance(r[0], int) or not isinstance(r[1], int)
                    or not isinstance(r[2], str) or len(r[2]) != 4 or r[0] >= r[1]):
                raise ProtocolViolation(f"bad map row {r!r}: want [start, end, \"rwxp\"] with start < end")
            out.append(Mapping(r[0], r[1], r[2]))
        maps.append((name, tuple(out)))
    return Observation(tuple(maps))


def observation_to_state(ident: int, obs: Observation) -> dict[str, Any]:
    return {"type": "state", "id": ident,
            "procs": {p: {"maps": [[m.start, m.end, m.perms] for m in ms]} for p, ms in obs.maps}}


__all__ = ["PROTOCOL_VERSION", "ProtocolViolation", "encode", "decode", "hello", "call_message",
           "reply_to_outcome", "fast_reply", "outcome_to_reply", "state_to_observation", "observation_to_state", "Program"]
