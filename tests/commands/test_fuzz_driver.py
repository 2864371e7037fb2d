"""The fuzz driver's own promises: dictionaries stay in sync, merge keeps coverage, py: targets load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memspec.calls import LAYERS
from memspec.fuzz.make_dicts import dictionary

from ..conftest import missing_peer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_committed_dictionaries_match_the_call_table() -> None:
    for layer in LAYERS:
        with open(os.path.join(ROOT, "fuzz", "dict", f"{layer}.dict")) as f:
            assert f.read() == dictionary(layer), f"regenerate with: python -m memspec.fuzz.make_dicts fuzz/dict"


def test_merge_keeps_fewer_entries_with_the_same_clauses(tmp_path) -> None:
    corpus = tmp_path / "c"
    base = [sys.executable, "-m", "memspec.commands.cli", "fuzz", "--target", "model", "--engine", "python",
            "--corpus", str(corpus), "--findings", str(tmp_path / "f"), "--quiet"]
    r = subprocess.run(base + ["--time", "3", "--summary-json", str(tmp_path / "s1.json")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    before = len(os.listdir(corpus))
    r = subprocess.run(base + ["--time", "1", "--merge"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    after = len(os.listdir(corpus))
    assert 0 < after <= before


def test_stop_on_finding_reports_the_first_finding(tmp_path) -> None:
    import json
    broken = os.path.join(ROOT, "tests", "broken", "broken_server.py")
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "fuzz", "--target",
                        f"cmd:{sys.executable} {broken} len0-wrong-errno", "--engine", "python", "--time", "60",
                        "--stop-on-finding", "--corpus", str(tmp_path / "c"), "--findings", str(tmp_path / "f"),
                        "--summary-json", str(tmp_path / "s.json"), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    s = json.load(open(tmp_path / "s.json"))
    assert s["first_finding"]["clause"] == "posix.mmap.einval-len0"
    assert s["first_finding"]["calls"] <= 6
    (folder,) = os.listdir(tmp_path / "f")          # one folder per target
    (saved,) = os.listdir(tmp_path / "f" / folder)
    text = open(tmp_path / "f" / folder / saved).read()
    assert "# clause: posix.mmap.einval-len0" in text and "# replay: memspec replay" in text


def test_the_python_loop_mutates_programs_keeping_their_structure(tmp_path) -> None:
    from memspec.commands.fuzz_driver import Fuzzer, FuzzOptions
    from memspec.fuzz.bytes import TEXT_MAGIC
    from memspec.program import parse, validate
    f = Fuzzer(FuzzOptions(target="model", seconds=1, layer="phys", corpus=str(tmp_path / "c"),
                           findings=str(tmp_path / "f"), quiet=True))
    try:
        parent = f.codec.encode(parse("p = malloc(24)\nheap_store(p, 0x41)\nq = malloc(100)\nfree(p)\n"))
        f.entries.append(parent)
        kept = 0
        for _ in range(100):
            child = f.mutate(parent)
            if child.startswith(TEXT_MAGIC):
                p = f.decode(child)
                assert p.calls and p.layer == "phys"
                validate(p)
                kept += 1
                f.run_one(child)
        assert kept >= 60                   # a text input mostly keeps its structure
        assert f.stats.findings == 0        # and the model passes its mutants
    finally:
        f.target.close()


@pytest.mark.slow     # waits for libFuzzer to start (instrumenting the model takes ~15 s, more under load)
def test_libfuzzer_runs_the_structure_keeping_mutator(tmp_path) -> None:
    import signal
    import time
    try:
        import atheris  # noqa: F401
    except ImportError:
        missing_peer("atheris", "pip install -e '.[dev]' installs it (libFuzzer's engine for memspec fuzz)")
    p = subprocess.Popen([sys.executable, "-m", "memspec.commands.cli", "fuzz", "--target", "model", "--layer", "phys",
                          "--engine", "atheris", "--time", "600", "--corpus", str(tmp_path / "c"), "--findings",
                          str(tmp_path / "f"), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = tmp_path / "f" / "libfuzzer-phys.log"
    log = ""
    deadline = time.monotonic() + 400
    # libFuzzer names the mutations that made each new input: ours is "Custom"
    while time.monotonic() < deadline and p.poll() is None and "Custom-" not in log:
        time.sleep(1)
        log = path.read_text(errors="replace") if path.exists() else ""
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    log = path.read_text(errors="replace")
    assert "must be called before" not in log, log[-2000:]
    assert p.returncode == 130, err + log[-2000:]           # it ran until stopped: the mutator never broke it
    assert "Custom-" in log, log[-2000:]
