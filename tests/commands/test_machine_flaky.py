"""A state-machine failure that does not happen again on replay is reported as flaky, with exit 1,
naming the program and the outcome of every run, saved as a replayable file; a step the target
refuses to run is unsupported and the run goes on."""

from __future__ import annotations

import json

import pytest

from memspec.commands.cli import main
from memspec.program import parse

TARGET = '''
from memspec.records import Outcome
from memspec.targets.base import Session
from memspec.targets.model import ModelTarget

SEEN = []


class Once(Session):
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
    text = capsys.readouterr().out
    assert "state machine: 5 examples, flaky" in text
    # the program is named, saved and replayable, with what each run showed
    (fp,) = t["machine"]["programs"]
    assert fp["clause"] and fp["replay"].startswith("memspec replay ")
    saved = parse(open(fp["file"]).read())
    assert saved.calls and saved.meta("clause") == fp["clause"] and saved.meta("found_by") == "state machine (flaky)"
    runs = fp["runs"]
    assert runs[0].startswith("state machine run 1: failed ") and "observed #GP" in runs[0], runs
    # the first call of the run answered #GP once; replays of the saved program pass
    replays = [r for r in runs if r.startswith("replay ")]
    assert len(replays) == 3 and all("no failure" in r for r in replays), runs
    assert fp["file"] in text and "observed #GP" in text


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


REFUSING = '''
from memspec.errors import SessionFailed
from memspec.records import RunStatus
from memspec.targets.base import Session
from memspec.targets.model import ModelTarget

LOG = __file__ + ".log"


def log(what):
    with open(LOG, "a") as f:
        f.write(what + "\\n")


class RefusesUser(Session):
    """The model, except that it refuses (cannot stage) every CPL 3 access, without saying so in its facts."""

    def __init__(self, inner):
        self.inner = inner

    def call(self, call, args):
        if call.name in ("access", "vm_access") and int(args[2]) == 3:
            log("refused")
            raise SessionFailed(RunStatus.REFUSED, "this harness cannot run CPL 3 code")
        log("ran " + call.name)
        return self.inner.call(call, args)

    def observe(self):
        return self.inner.observe()

    def close(self):
        pass


class RefusingModel(ModelTarget):
    name = "refusing-model"

    def session(self, layer="hw"):
        return RefusesUser(super().session(layer))

'''


@pytest.mark.parametrize("layer", ["hw", "virt"])
def test_a_step_the_target_refuses_is_unsupported_and_the_run_goes_on(tmp_path, capsys, layer) -> None:
    f = tmp_path / "refusing_target.py"
    f.write_text(REFUSING)
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f"py:{f}:RefusingModel()", "--layer", layer, "--no-suite",
                   "--programs", "0", "--machine-examples", "15", "--seed", "3", "--out", str(out)])
    (t,) = json.loads((out / "report.json").read_text())["targets"]
    assert status == 0, t["failures"]
    assert t["machine"]["result"] == "pass" and t["machine"]["unsupported_steps"] > 0, t["machine"]
    assert t["failures"] == []
    assert "memspec.target.alive" not in t["clauses"]
    unsupported = {cid: c.get("unsupported", 0) for cid, c in t["clauses"].items()}
    assert sum(unsupported.values()) == t["machine"]["unsupported_steps"]
    # the refused access's own clause is the one counted (a walk's or #GP's, not the harness's)
    assert all(cid.startswith("sdm.") for cid, n in unsupported.items() if n), unsupported
    # and the same example went on after a refusal: calls ran after one was refused
    log = (tmp_path / "refusing_target.py.log").read_text().split("\n")
    assert any(a == "refused" and b.startswith("ran ") for a, b in zip(log, log[1:])), log[:40]
    assert "steps unsupported by the target" in capsys.readouterr().out
