"""docs/protocol.md keeps up with the call table, and its transcript is real protocol."""

from __future__ import annotations

import json
from pathlib import Path

from memspec.calls import CALLS
from memspec.protocol import decode, reply_to_outcome, state_to_observation
from memspec.protocol_doc import BEGIN, END, committed_block, generated_block, splice

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_call_reference_is_up_to_date() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert committed_block(text) == generated_block(), (
        "docs/protocol.md's call reference is stale: run "
        "python -m memspec.protocol_doc --write docs/protocol.md")


def test_every_call_of_every_layer_is_documented() -> None:
    block = generated_block()
    for name, spec in CALLS.items():
        assert f"| `{name}` |" in block, name
        for p in spec.params:
            assert f"`{p.name}`" in block


def test_splice_replaces_only_the_generated_part() -> None:
    doc = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    new = splice(doc)
    assert new.startswith("intro\n") and new.endswith("\noutro\n") and "old table" not in new
    assert "| `mmap` |" in new


def test_transcript_lines_are_valid_messages() -> None:
    """Every line of the worked transcript decodes, and replies/states pass the client's checks."""
    text = DOC.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.startswith(("> {", "< {"))]
    assert len(lines) >= 10
    pending: dict[int, str] = {}
    for ln in lines:
        msg = decode(ln[2:])
        if ln.startswith(">"):
            if "id" in msg:
                pending[msg["id"]] = msg["type"]
            if msg["type"] == "call":
                assert msg["name"] in CALLS and len(msg["args"]) == len(CALLS[msg["name"]].params)
        elif msg["type"] == "reply":
            reply_to_outcome(msg, msg["id"])
            assert msg["id"] in pending
        elif msg["type"] == "state":
            state_to_observation(msg, msg["id"])
        else:
            assert msg["type"] == "hello" and msg["protocol"] == 1
            json.dumps(msg)
