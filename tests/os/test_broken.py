"""Each broken os implementation (tests/broken/broken_server.py) is caught, through the
protocol, with a small reproducer that ``memspec replay`` reproduces; and the model's
invariants catch the broken states themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memspec.model.mm import new_model
from memspec.program import load

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "broken" / "broken_server.py"
REPRO = ROOT / "tests" / "broken" / "repro"
MEMSPEC = [sys.executable, "-m", "memspec.commands.cli"] if False else [str(Path(sys.executable).with_name("memspec"))]

sys.path.insert(0, str(SERVER.parent))
import broken_server  # noqa: E402

# bug -> the clause its reproducer must fail
EXPECTED = {
    "cow-shares-written-page": "posix.fork.private-copy",
    "munmap-stale-tlb": "seed.fault.step8-tlb",
    "mlocked-page-swapped": "posix.mlock.never-evicted",
    "mlock-wrong-errno": "linux.mlock.enomem-rlimit",
    "oom-kills-not-worst": "linux.oom.kills-worst",
    "thp-split-loses-data": "linux.thp.split-keeps-data",
    "len0-wrong-errno": "posix.mmap.einval-len0",
}


def target(bug: str) -> str:
    return f"cmd:{sys.executable} {SERVER} {bug}"


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_reproducer_is_small_and_replays(bug):
    path = REPRO / f"{bug}.mst"
    assert len(load(str(path)).calls) <= 6
    ok = subprocess.run(MEMSPEC + ["replay", str(path), "--target", "model"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(MEMSPEC + ["replay", str(path), "--target", target(bug)], capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"FAIL {EXPECTED[bug]}:" in bad.stdout


@pytest.mark.parametrize("bug", ["munmap-stale-tlb", "oom-kills-not-worst", "cow-shares-written-page"])
def test_memspec_check_finds_it(bug, tmp_path):
    """The whole check (directed suite + random programs) finds the bug and shrinks it."""
    r = subprocess.run(MEMSPEC + ["check", "--target", target(bug), "--layer", "os", "--programs", "20",
                                  "--machine-examples", "0", "--confirm", "1", "--out", str(tmp_path), "--json", "-q"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 1, r.stderr[-2000:]
    report = json.loads(r.stdout)
    fails = [f for t in report["targets"] for f in t["failures"]]
    mine = [f for f in fails if f["clause"] == EXPECTED[bug]]
    assert mine, [f["clause"] for f in fails]
    small = min(mine, key=lambda f: len([ln for ln in f["program"].splitlines() if not ln.startswith("#")]))
    assert len([ln for ln in small["program"].splitlines() if not ln.startswith("#")]) <= 6
    rep = subprocess.run(MEMSPEC + ["replay", small["file"], "--target", target(bug)], capture_output=True, text=True)
    assert rep.returncode == 1


def _run_broken(cls, path):
    """Run a reproducer on a broken model in process; returns the invariants it breaks."""
    s = cls()
    for c in load(str(path)).calls:
        from memspec.program import eval_args
        env = getattr(s, "_env", {})
        args = eval_args(c, env)
        proc = c.proc or "main"
        o = s.expect(proc, c.name, args).default
        s.apply(proc, c.name, args, o)
        s.bind(proc, c.name, c.result, o)
        if c.result and o.value is not None and c.name != "fork":
            env[c.result] = o.value
        s._env = env
    return {cid for cid, _ in s.invariants()}


@pytest.mark.parametrize("bug,invariant", [
    ("cow-shares-written-page", "memspec.inv.cow-read-only"),
    ("munmap-stale-tlb", "memspec.inv.no-stale-tlb"),
])
def test_invariant_catches_broken_state(bug, invariant):
    assert invariant in _run_broken(broken_server.BUGS[bug], REPRO / f"{bug}.mst")


def test_locked_resident_invariant_catches_a_swapped_locked_page():
    s = broken_server.MlockedPageSwapped()
    for name, args in (("memory_limit", (64, 16)), ("mmap", (0x100000000000, 0x1000, 3, 0x22, -1, 0)),
                       ("mlock", (0x100000000000, 0x1000)), ("reclaim", (1,))):
        o = s.expect("main", name, args).default
        s.apply("main", name, args, o)
    assert "memspec.inv.locked-resident" in {c for c, _ in s.invariants()}


def test_correct_model_breaks_no_invariant_on_the_reproducers():
    for path in REPRO.glob("*.mst"):
        assert not _run_broken(type(new_model({})), path), path.name


def test_every_bug_name_still_served():
    for name in ("mprotect-misses-last-page", "munmap-leaves-page", "len0-wrong-errno", "fixed-does-not-replace",
                 "shared-not-shared", "cow-shares-written-page", "fetch-ignores-nx", "noreplace-replaces",
                 "prot-none-readable", *EXPECTED):
        assert name in broken_server.BUGS
    assert os.path.exists(SERVER)
