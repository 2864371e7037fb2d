"""A target that runs in memspec's own process (the model, a py: target) is held to the same
time limit per program as one in another process: a call that never returns is interrupted and
the program is a hang of ``memspec.target.alive``, and the run goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path

from memspec.program import parse as parse_program
from memspec.records import RunStatus
from memspec.targets.model import ModelTarget
from memspec.targets.pyload import load_target

HERE = Path(__file__).resolve().parent
TARGET = f"py:{HERE / 'hanging_py_target.py'}:HangsOnMprotect()"
PROGRAM = """# memspec-program: 1
a = mmap(NULL, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
store(a, 1)
mprotect(a, 0x1000, PROT_READ)
x = load(a)
"""


def test_a_call_that_never_returns_is_a_hang_after_the_time_limit() -> None:
    t = load_target(f"{HERE / 'hanging_py_target.py'}:HangsOnMprotect()", timeout=0.5)
    assert t.time_limited_in_process is True
    t0 = time.monotonic()
    run = t.run(parse_program(PROGRAM))
    took = time.monotonic() - t0
    assert run.status is RunStatus.HANG, run
    assert len(run.outcomes) == 2 and "0.5 s" in run.message, run
    assert took < 5.0
    # the timer and handler are gone afterwards: a later program of the same target runs whole
    ok = t.run(parse_program(PROGRAM.replace("mprotect(a, 0x1000, PROT_READ)\n", "")))
    assert ok.status is RunStatus.OK and len(ok.outcomes) == 3


def test_the_model_target_finishes_under_its_limit() -> None:
    run = ModelTarget(timeout=5.0).run(parse_program(PROGRAM))
    assert run.status is RunStatus.OK and len(run.outcomes) == 4


def test_check_reports_the_hang_and_goes_on(memspec_cli, tmp_path) -> None:
    out = tmp_path / "out"
    r = memspec_cli("check", "--target", TARGET, "--layer", "os", "--programs", "4", "--machine-examples", "0",
                    "--timeout", "1", "--confirm", "1", "--max-target-failures", "0", "--out", str(out), "-q",
                    timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    t = json.loads((out / "report.json").read_text())["targets"][0]
    hangs = [f for f in t["failures"] if f["clause"] == "memspec.target.alive" and f["verdict"] == "hang"]
    assert hangs, t["failures"]
    assert t["programs"] > 1, "the run stopped at the first hang"
