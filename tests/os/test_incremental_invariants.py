"""The os model's incremental invariants (``System.invariants(full=False)``: each invariant over
the addresses, VMA ranges, pages and objects the steps since the last check touched) catch every
broken model the full recount catches, no later, and agree with it after random programs.

The broken-model suites themselves also pass with the recount left out of every judge, in
process and in the processes they start: ``MEMSPEC_INVARIANT_RECOUNT=0 pytest tests/os/test_broken.py
tests/phys/test_broken.py tests/phys/test_broken_malloc.py tests/specs/test_judge_catches.py tests/model``."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from memspec.fuzz.codec_os import decode
from memspec.model import invariants as inv
from memspec.model.mm import Config, new_model
from memspec.model.os.state import Pte
from memspec.model.pages import ZERO_PAGE, Page
from memspec.program import eval_args, load, parse
from memspec.specs import judge as judge_mod
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

ROOT = Path(__file__).resolve().parents[2]
REPRO = ROOT / "tests" / "broken" / "repro"
sys.path.insert(0, str(ROOT / "tests" / "broken"))
import broken_server  # noqa: E402


@pytest.fixture(autouse=True)
def _footprint_always(monkeypatch):
    """Every step through the footprint check, however small the state (the judge otherwise
    recounts a small state whole, which would leave the footprint path untested here)."""
    monkeypatch.setattr(inv, "SMALL", 0)


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


catches = _load(ROOT / "tests" / "specs" / "test_judge_catches.py", "_incr_judge_catches")


def steps(s, program, full: bool, after=None) -> tuple[int, list[tuple[str, str]]]:
    """Run ``program`` on ``s`` with its own choices, checking the invariants after every step
    (``after(s)`` first, if given); the first step that broke one and what broke, or (len, [])."""
    env: dict[str, int] = {}
    for i, c in enumerate(program.calls):
        try:
            args = eval_args(c, env)
        except KeyError:
            return len(program.calls), []
        proc = c.proc or "main"
        if proc not in s.procs:
            return len(program.calls), []
        o = s.expect(proc, c.name, args).default
        s.apply(proc, c.name, args, o)
        s.bind(proc, c.name, c.result, o)
        if c.result and o.value is not None and c.name != "fork":
            env[c.result] = o.value
        if after is not None:
            after(s)
        bad = s.invariants(full=full)
        if bad:
            return i, bad
    return len(program.calls), []


def _programs(seed: int, n: int):
    rng = random.Random(seed)
    return [decode(bytes(rng.randrange(256) for _ in range(rng.randrange(50, 600)))) for _ in range(n)]


@pytest.mark.parametrize("broken, text, clause", catches.INVARIANT_CASES, ids=[c[2] for c in catches.INVARIANT_CASES])
def test_judge_without_recount_catches_each_broken_model(broken, text, clause, monkeypatch) -> None:
    monkeypatch.setattr(judge_mod, "RECOUNT", False)
    p = parse(text)
    run = ModelTarget().run(p)
    f = judge(p, run, "model", model=broken(Config())).failure
    assert f is not None and f.at == "invariant" and f.clause == clause, f


@pytest.mark.parametrize("bug,invariant", [
    ("cow-shares-written-page", "memspec.inv.cow-read-only"),
    ("munmap-stale-tlb", "memspec.inv.no-stale-tlb"),
])
def test_incremental_check_catches_the_broken_servers_states(bug, invariant):
    at, bad = steps(broken_server.BUGS[bug](), load(str(REPRO / f"{bug}.mst")), full=False)
    assert invariant in {c for c, _ in bad}, bad


def test_incremental_check_catches_a_swapped_locked_page():
    s = broken_server.MlockedPageSwapped()
    seen = set()
    for name, args in (("memory_limit", (64, 16)), ("mmap", (0x100000000000, 0x1000, 3, 0x22, -1, 0)),
                       ("mlock", (0x100000000000, 0x1000)), ("reclaim", (1,))):
        o = s.expect("main", name, args).default
        s.apply("main", name, args, o)
        seen |= {c for c, _ in s.invariants(full=False)}
    assert "memspec.inv.locked-resident" in seen


def test_incremental_catches_what_full_catches():
    """Each broken os model on the reproducers and 120 random programs: whenever the full recount
    after every step finds a broken invariant, the footprint check finds one at that step or before."""
    progs = [load(str(p)) for p in sorted(REPRO.glob("*.mst"))] + _programs(3, 120)
    caught = set()
    for bug, cls in sorted(broken_server.BUGS.items()):
        for p in progs:
            at_full, bad_full = steps(cls(), p, full=True)
            at_inc, bad_inc = steps(cls(), p, full=False)
            if bad_full:
                caught.add(bug)
                assert bad_inc and at_inc <= at_full, (bug, bad_full, bad_inc)
    # the bugs whose states break an invariant (the others are wrong answers, caught by the clauses)
    assert {"cow-shares-written-page", "munmap-stale-tlb", "mlocked-page-swapped"} <= caught, caught


def test_reference_model_incremental_and_full_agree_on_random_programs():
    checked = 0
    for p in _programs(5, 300):
        def both(s):
            nonlocal checked
            assert s.invariants(full=False) == []
            checked += 1
        at, bad = steps(new_model({}), p, full=True, after=both)
        assert bad == [], (p, bad)
    assert checked > 1000


def _corrupt(kind: str):
    """An ``after`` hook that breaks one invariant on something the last step touched."""
    done = []

    def after(s):
        if done:
            return
        fp = inv.footprint(s)
        if kind == "mapcount":
            pages = [p for p in fp.pages if isinstance(p, Page) and p.pfn is not None]
            if pages:
                pages[0].mapcount += 1
                done.append(kind)
        elif kind == "frame":
            pages = [p for p in fp.pages if p.pfn is not None and s.frames.owner.get(p.pfn) is p]
            if pages:
                s.frames.owner[pages[0].pfn] = Page("anon", pfn=pages[0].pfn)
                done.append(kind)
        else:   # a writable translation of the zero page left in the TLB
            for name, mm in s.procs.items():
                hit = [a for a in fp.addrs.get(name, ()) if a in mm.pte]
                if hit:
                    mm.tlb[hit[0]] = Pte(ZERO_PAGE, True)
                    done.append(kind)
                    return
    return after, done


@pytest.mark.parametrize("kind,clause", [("mapcount", "memspec.inv.mapcount-matches"),
                                         ("frame", "memspec.inv.no-frame-owned-twice"),
                                         ("tlb", "memspec.inv.cow-read-only")])
def test_a_corruption_in_the_footprint_is_seen_by_both_forms(kind, clause):
    corrupted = 0
    for p in _programs(9, 80):
        hook, done = _corrupt(kind)
        at_inc, bad_inc = steps(new_model({}), p, full=False, after=hook)
        if not done:
            continue
        corrupted += 1
        hook2, _ = _corrupt(kind)
        at_full, bad_full = steps(new_model({}), p, full=True, after=hook2)
        assert bad_inc and bad_full and at_inc == at_full, (bad_inc, bad_full)
        assert bad_inc[0][0] == bad_full[0][0] == clause
    assert corrupted >= 10


class _CorruptsAnUntouchedPage(type(new_model({}))):
    """After each ``load`` it raises the mapcount of a private page the load did not touch."""

    def apply(self, proc, name, args, outcome):
        super().apply(proc, name, args, outcome)
        if name == "load":
            mm = self.procs[proc]
            for addr, page in mm.anon.items():
                if addr != args[0] & ~0xFFF:
                    page.mapcount += 1
                    return


def test_the_judge_recounts_at_the_end_what_no_footprint_holds(monkeypatch):
    W = "0x100000000000"
    p = parse(f"a = mmap({W}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              f"store(a, 1)\nstore(a + 0x1000, 2)\nn = load(a)\n")
    run = ModelTarget().run(p)
    monkeypatch.setattr(judge_mod, "RECOUNT", True)
    f = judge(p, run, "model", model=_CorruptsAnUntouchedPage(Config())).failure
    assert f is not None and f.at == "invariant" and f.clause == "memspec.inv.mapcount-matches", f
    monkeypatch.setattr(judge_mod, "RECOUNT", False)
    assert judge(p, run, "model", model=_CorruptsAnUntouchedPage(Config())).failure is None
