"""A target that declares root slots where it cannot run CPL 3 accesses (the fact
``cpl3_reserved_slots``, as kvm-pvm reports slot 256) never gets one there from the hw state
machine or the hw codec; it still gets CPL 0 accesses there, and CPL 3 accesses elsewhere."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, settings
from hypothesis import seed as hseed
from hypothesis.stateful import run_state_machine_as_test

from memspec.fuzz import codec_hw
from memspec.program import eval_args
from memspec.specs.machine_hw import cpl3_reserved, machine
from memspec.targets.base import Session
from memspec.targets.model import ModelTarget

RESERVED = [0, 256]


class Recording(Session):
    def __init__(self, inner, seen):
        self.inner, self.seen = inner, seen

    def call(self, call, args):
        if call.name == "access":
            self.seen.append((int(args[0]), int(args[2])))
        return self.inner.call(call, args)

    def observe(self):
        return self.inner.observe()


class RecordingModel(ModelTarget):
    name = "recording-model"

    def __init__(self, facts):
        super().__init__()
        self._facts = facts
        self.seen: list[tuple[int, int]] = []

    def facts(self):
        return dict(self._facts)

    def session(self, layer="hw"):
        return Recording(super().session(layer), self.seen)


def _slot_accesses(facts: dict) -> list[tuple[int, int]]:
    t = RecordingModel(facts)
    cfg = settings(max_examples=60, stateful_step_count=25, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck), print_blob=False)
    run_state_machine_as_test(hseed(5)(machine(t)), settings=cfg)
    return t.seen


def test_cpl3_reserved_names_canonical_slots_only() -> None:
    assert cpl3_reserved(0xFFFF800000001000, frozenset({256}))
    assert cpl3_reserved(0x1000, frozenset({0}))
    assert not cpl3_reserved(0x800000000000, frozenset({256}))      # non-canonical: #GP, no slot
    assert not cpl3_reserved(0x8000001000, frozenset({256}))        # slot 1


def test_the_machine_gives_a_reserved_slot_cpl0_accesses_only() -> None:
    reserved = frozenset(RESERVED)
    seen = _slot_accesses({"cpl3_reserved_slots": RESERVED})
    assert not [(hex(la), cpl) for la, cpl in seen if cpl == 3 and cpl3_reserved(la, reserved)]
    assert any(cpl == 0 and cpl3_reserved(la, reserved) for la, cpl in seen)
    assert any(cpl == 3 and not cpl3_reserved(la, reserved) for la, cpl in seen)
    # the same machine without the declaration does reach those slots at CPL 3 (the check can fail)
    free = _slot_accesses({})
    assert any(cpl == 3 and cpl3_reserved(la, reserved) for la, cpl in free)


def _codec_accesses(facts: dict | None) -> list[tuple[int, int]]:
    rng = random.Random(7)
    out = []
    for _ in range(400):
        p = codec_hw.decode(bytes(rng.randrange(256) for _ in range(256)), None, facts=facts)
        env: dict[str, int] = {}
        for c in p.calls:
            if c.name == "access":
                a = eval_args(c, env)
                out.append((int(a[0]), int(a[2])))
    return out


def test_the_codec_gives_a_reserved_slot_cpl0_accesses_only() -> None:
    reserved = frozenset(RESERVED + [300])
    seen = _codec_accesses({"cpl3_reserved_slots": sorted(reserved)})
    assert not [(hex(la), cpl) for la, cpl in seen if cpl == 3 and cpl3_reserved(la, reserved)]
    assert any(cpl == 0 and cpl3_reserved(la, reserved) for la, cpl in seen)
    assert any(cpl == 3 and not cpl3_reserved(la, reserved) for la, cpl in seen)
    free = _codec_accesses(None)
    assert any(cpl == 3 and cpl3_reserved(la, reserved) for la, cpl in free)
