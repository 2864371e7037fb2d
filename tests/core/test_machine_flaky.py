"""A state-machine failure that does not happen again on replay is reported as flaky, with exit 1."""

from __future__ import annotations

import json

from memspec.cli import main

TARGET = '''
from memspec.records import Outcome
from memspec.targets.model import ModelTarget

SEEN = []


class Once:
    """The model, except that the very first call of the whole run answers #GP."""

    def __init__(self, inner):
        self.inner = inner

    def call(self, call, args):
        o = self.inner.call(call, args)
        if not SEEN:
            SEEN.append(call.name)
            return Outcome(signal="#GP")
        return o

    def observe(self):
        return self.inner.observe()

    def close(self):
        self.inner.close()


class FlakyModel(ModelTarget):
    name = "flaky-model"

    def session(self, layer="hw"):
        return Once(super().session(layer))
'''


def test_a_failure_that_does_not_replay_is_flaky(tmp_path, capsys) -> None:
    f = tmp_path / "flaky_target.py"
    f.write_text(TARGET)
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f"py:{f}:FlakyModel()", "--layer", "hw", "--no-suite",
                   "--programs", "0", "--machine-examples", "5", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    (t,) = report["targets"]
    assert t["machine"]["result"] == "flaky" and t["machine"]["message"], t["machine"]
    assert status == 1
    assert "state machine: 5 examples, flaky" in capsys.readouterr().out


DYING = '''
from memspec.errors import SessionFailed
from memspec.records import RunStatus
from memspec.targets.model import ModelTarget


class Dies:
    """The model, except that every session dies at its third call."""

    def __init__(self, inner):
        self.inner, self.n = inner, 0

    def call(self, call, args):
        self.n += 1
        if self.n == 3:
            raise SessionFailed(RunStatus.CRASH, "the target exited (signal 11)")
        return self.inner.call(call, args)

    def observe(self):
        return self.inner.observe()

    def close(self):
        self.inner.close()


class DyingModel(ModelTarget):
    name = "dying-model"

    def session(self, layer="hw"):
        return Dies(super().session(layer))
'''


def test_a_target_dying_under_the_hw_machine_fails_target_alive(tmp_path) -> None:
    f = tmp_path / "dying_target.py"
    f.write_text(DYING)
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f"py:{f}:DyingModel()", "--layer", "hw", "--no-suite",
                   "--programs", "0", "--machine-examples", "5", "--out", str(out)])
    (t,) = json.loads((out / "report.json").read_text())["targets"]
    assert status == 1 and t["machine"]["result"] == "fail"
    (f,) = t["failures"]
    assert f["clause"] == "memspec.target.alive" and "signal 11" in f["observed"]
