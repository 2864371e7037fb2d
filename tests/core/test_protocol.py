"""Protocol messages: replies and states are validated strictly; garbage is a violation."""

from __future__ import annotations

import pytest

from memspec.protocol import ProtocolViolation, decode, reply_to_outcome, state_to_observation


def test_reply_round_trip() -> None:
    o = reply_to_outcome({"type": "reply", "id": 3, "value": None, "errno": "EINVAL"}, 3)
    assert o.errno == "EINVAL" and o.value is None and not o.ok


@pytest.mark.parametrize("msg, words", [
    ({"type": "reply", "id": 4}, "does not match"),
    ({"type": "reply", "id": 3, "value": "12"}, "integer"),
    ({"type": "reply", "id": 3, "value": True}, "integer"),
    ({"type": "reply", "id": 3, "errno": 22}, "name string"),
    ({"type": "reply", "id": 3, "errno": "EINVAL", "signal": "SIGSEGV"}, "not both"),
    ({"type": "state", "id": 3}, "expected a 'reply'"),
    ({"type": "error", "id": 3, "message": "boom"}, "boom"),
])
def test_bad_replies_are_violations(msg, words) -> None:
    with pytest.raises(ProtocolViolation, match=words):
        reply_to_outcome(msg, 3)


@pytest.mark.parametrize("line", [b"", b"{", b"[1]", b'{"id": 1}', b"\xff\xfe"])
def test_garbage_lines_are_violations(line) -> None:
    with pytest.raises(ProtocolViolation):
        decode(line)


def test_state_rows_are_checked() -> None:
    obs = state_to_observation({"type": "state", "id": 1, "procs": {"main": {"maps": [[0, 4096, "rw-p"]]}}}, 1)
    assert obs.maps_of("main")[0].perms == "rw-p"
    for bad in ([[4096, 0, "rw-p"]], [[0, 4096, "rw"]], [["0", 4096, "rw-p"]], "x"):
        with pytest.raises(ProtocolViolation):
            state_to_observation({"type": "state", "id": 1, "procs": {"main": {"maps": bad}}}, 1)
