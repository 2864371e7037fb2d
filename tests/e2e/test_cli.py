"""memspec as a new user meets it: the command line, its reports, exit codes and errors."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from xml.etree import ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BROKEN = os.path.join(os.path.dirname(HERE), "broken", "broken_server.py")
FAKE = os.path.join(HERE, "fake_server.py")
PY = sys.executable


def report(out: str) -> dict:
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


@pytest.mark.slow   # a whole check of the kernel: ~25 s
def test_check_linux_passes_with_30_clauses(memspec_cli, tmp_path) -> None:
    out = str(tmp_path / "out")
    r = memspec_cli("check", "--target", "linux", "--programs", "60", "--machine-examples", "5", "--out", out, "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = report(out)
    (t,) = rep["targets"]
    assert t["name"] == "linux" and t["failures"] == []
    assert t["clauses_exercised"] >= 30
    assert rep["summary"]["unexplained_failures"] == 0
    xml = ET.parse(os.path.join(out, "report.xml")).getroot()
    cases = xml.findall(".//testcase")
    assert len(cases) >= 30 and not xml.findall(".//failure")
    assert "clauses exercised" in r.stdout


def test_check_through_the_protocol_with_the_model_server(memspec_cli, tmp_path) -> None:
    out = str(tmp_path / "out")
    r = memspec_cli("check", "--target", f"cmd:{PY} -m memspec.commands.cli serve model", "--programs", "40",
                    "--machine-examples", "5", "--out", out, "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert report(out)["targets"][0]["clauses_exercised"] >= 30


BUGS = {
    "mprotect-misses-last-page": "posix.mprotect.sets-prot",
    "munmap-leaves-page": "posix.access.unmapped-sigsegv",
    "len0-wrong-errno": "posix.mmap.einval-len0",
    "fixed-does-not-replace": "posix.mmap.fixed-exact",
    "shared-not-shared": "posix.mmap.shared-visible",
    "cow-shares-written-page": "posix.fork.private-copy",
    "fetch-ignores-nx": "linux.x86.nx-enforced",
    "noreplace-replaces": "linux.mmap.fixed-noreplace-eexist",
    "prot-none-readable": "posix.mmap.prot-none-sigsegv",
}


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_broken_implementation_is_caught_and_replays(memspec_cli, tmp_path, bug) -> None:
    out = str(tmp_path / "out")
    target = f"cmd:{PY} {BROKEN} {bug}"
    r = memspec_cli("check", "--target", target, "--programs", "60", "--machine-examples", "10", "--out", out, "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    fails = report(out)["targets"][0]["failures"]
    mine = [f for f in fails if f["clause"] == BUGS[bug]]
    assert mine, f"expected a failure of {BUGS[bug]}, got {[f['clause'] for f in fails]}"
    best = min(mine, key=lambda f: f["program"].count("\n"))
    calls = [ln for ln in best["program"].splitlines() if ln and not ln.startswith("#")]
    assert len(calls) in range(1, 7), best["program"]
    assert best["expected"] != best["observed"]
    assert best["replay"].startswith("memspec replay ")
    rr = memspec_cli("replay", best["file"], "--target", target)
    assert rr.returncode == 1, rr.stdout + rr.stderr
    assert f"FAIL {BUGS[bug]}" in rr.stdout or "FAIL " in rr.stdout


@pytest.mark.parametrize("mode, verdict, words", [
    # the server counts replies over its whole life (it is reused with reset), so the crash,
    # hang or garbage lands on whichever program makes that call, at whichever of its calls
    # that is (it depends on the generated programs): the message names the call
    ("crash-at-3", "crash", "killed by SIGSEGV"),
    ("hang-at-2", "hang", "target hung at call "),
    ("garbage-at-2", "error", "target answered garbage at call "),
    ("wrong-id", "error", "does not match"),
])
@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_misbehaving_target_gets_a_verdict_and_the_run_goes_on(memspec_cli, tmp_path, mode, verdict, words) -> None:
    out = str(tmp_path / "out")
    r = memspec_cli("check", "--target", f"cmd:{PY} {FAKE} {mode}", "--programs", "6", "--machine-examples", "0",
                    "--no-suite", "--timeout", "2", "--confirm", "1", "--max-target-failures", "0", "--out", out, "-q",
                    timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    t = report(out)["targets"][0]
    assert t["programs"] >= 6, "the run stopped at the first bad program"
    f = [f for f in t["failures"] if f["verdict"] == verdict]
    assert f, t["failures"]
    assert words in f[0]["observed"]
    assert f[0]["clause"] == "memspec.target.alive"


@pytest.mark.parametrize("mode, words", [("exit-at-hello", "no valid hello"), ("old-protocol", "speaks protocol 99")])
def test_target_that_cannot_start_is_a_clear_harness_error(memspec_cli, tmp_path, mode, words) -> None:
    r = memspec_cli("check", "--target", f"cmd:{PY} {FAKE} {mode}", "--out", str(tmp_path), "-q")
    assert r.returncode == 2 and words in r.stderr, r.stderr


def test_unknown_target_and_layer_are_usage_errors(memspec_cli, tmp_path) -> None:
    r = memspec_cli("check", "--target", "vax", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown target 'vax'" in r.stderr and "linux" in r.stderr
    r = memspec_cli("check", "--target", "linux", "--layer", "hw", "--out", str(tmp_path))
    assert r.returncode == 2 and "does not implement layer 'hw'" in r.stderr
    r = memspec_cli("check", "--target", "cmd:", "--out", str(tmp_path))
    assert r.returncode == 2


def test_replay_of_a_malformed_file_names_line_and_column(memspec_cli, tmp_path) -> None:
    f = tmp_path / "bad.mst"
    f.write_text("# target: linux\na = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nstore(a+, 1)\n")
    r = memspec_cli("replay", str(f))
    assert r.returncode == 2
    assert f"{f}:3:9: expected a number" in r.stderr
    missing = memspec_cli("replay", str(tmp_path / "nope.mst"))
    assert missing.returncode == 2 and "cannot read program file" in missing.stderr


def test_replay_of_a_passing_program_exits_0(memspec_cli, tmp_path) -> None:
    f = tmp_path / "ok.mst"
    f.write_text("# target: linux\na = mmap(NULL, 0, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    r = memspec_cli("replay", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "posix.mmap.einval-len0" in r.stdout and "PASS" in r.stdout


def _check_until_it_judges(out: str, *flags: str, **popen: object) -> subprocess.Popen:
    """``memspec check`` on linux, returned once it has judged a program (its first progress line):
    a fixed sleep lands in the start-up on a loaded machine, where there is nothing to report yet."""
    p = subprocess.Popen([PY, "-m", "memspec.commands.cli", "check", "--target", "linux", "--programs", "100000",
                          "--out", out, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    seen, deadline = b"", time.monotonic() + 120
    while not re.search(rb"\] \d+/\d+ programs, ", seen):       # "[  12s] linux [os] 1/100059 programs, ..."
        if time.monotonic() > deadline or not select.select([p.stderr], [], [], deadline - time.monotonic())[0]:
            p.kill()
            pytest.fail(f"no progress line in 120 s: {seen.decode(errors='replace')}")
        chunk = os.read(p.stderr.fileno(), 4096)
        if not chunk:
            pytest.fail(f"check ended before it judged a program: {seen.decode(errors='replace')}")
        seen += chunk
    return p


def _stopped_with_a_partial_report(p: subprocess.Popen, out: str, code: int = 130) -> None:
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()                                # (it would run its 100,000 programs)
        p.communicate()
        raise
    assert p.returncode == code, err.decode(errors="replace")
    rep = report(out)
    assert rep["interrupted"] is True
    assert rep["targets"][0]["programs"] > 0


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
@pytest.mark.parametrize("overlap", ["--overlap", "--no-overlap"])
@pytest.mark.parametrize("after", [0.0, 0.7])       # at once, or a few programs later: another moment of the loop
def test_ctrl_c_writes_a_partial_report(tmp_path, overlap, after) -> None:
    out = str(tmp_path / "out")
    p = _check_until_it_judges(out, overlap)
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    _stopped_with_a_partial_report(p, out)


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_ctrl_c_stops_a_check_started_with_sigint_ignored(tmp_path) -> None:
    # a shell without job control starts a background job (``memspec check ... &`` in a script, a CI
    # step run in the background) with SIGINT ignored, and Python then installs no handler: the run
    # went on after the interrupt until the 60 s below ran out
    out = str(tmp_path / "out")
    p = _check_until_it_judges(out, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    p.send_signal(signal.SIGINT)
    _stopped_with_a_partial_report(p, out)


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_fuzz_shows_progress_and_keeps_its_corpus(tmp_path) -> None:
    corpus, findings = tmp_path / "corpus", tmp_path / "findings"
    args = [PY, "-m", "memspec.commands.cli", "fuzz", "--target", "linux", "--time", "4", "--engine", "python",
            "--corpus", str(corpus), "--findings", str(findings)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr     # 1: it found something (reported, not this test's concern)
    assert "exec/s" in r.stderr and "clauses" in r.stderr
    first = set(os.listdir(corpus))
    assert len(first) >= 5
    p = subprocess.Popen(args[:-4] + ["--corpus", str(corpus), "--findings", str(findings)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, 130), err
    assert first <= set(os.listdir(corpus)), "a later run lost corpus entries"
    assert not [n for n in os.listdir(corpus) if n.endswith(".tmp")]


def test_help_documents_every_command(memspec_cli) -> None:
    r = memspec_cli("--help")
    assert r.returncode == 0
    for cmd in ("check", "fuzz", "replay", "clauses", "serve"):
        assert cmd in r.stdout
        sub = memspec_cli(cmd, "--help")
        assert sub.returncode == 0 and "usage: memspec " + cmd in sub.stdout
