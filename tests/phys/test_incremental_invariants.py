"""The phys model's incremental invariants (``invariants(full=False)``, over the frames, free
blocks and allocators a step touched) catch every broken model the full recount catches, and
agree with it on the reference model after random programs."""

from __future__ import annotations

import importlib.util
import os
import random

import pytest

from memspec.fuzz.codec_phys import decode
from memspec.fuzz.differential import failing_signature
from memspec.model.frames import Owner
from memspec.model.phys import PhysModel
from memspec.program import eval_args, parse
from memspec.specs import judge as judge_mod

_here = os.path.dirname(__file__)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_incr_{name}", os.path.join(_here, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


cases = _load("test_broken")
broken = cases.broken


def steps(m: PhysModel, program, full: bool) -> tuple[int, list[tuple[str, str]]]:
    """Run ``program`` on ``m`` (its own choices), checking the invariants after every step;
    the index of the first step that broke one and what broke, or (len, [])."""
    env: dict[str, int] = {}
    for i, c in enumerate(program.calls):
        try:
            args = eval_args(c, env)
        except KeyError:
            return len(program.calls), []
        o = m.expect("main", c.name, args).default
        m.apply("main", c.name, args, o)
        if c.result and o.value is not None:
            env[c.result] = o.value
        bad = m.invariants(full=full)
        if bad:
            return i, bad
    return len(program.calls), []


@pytest.mark.parametrize("cls,text,invariant,clause", cases.INVARIANT_CASES,
                         ids=[c[2] + "-" + c[0].__name__ for c in cases.INVARIANT_CASES])
def test_incremental_check_catches_each_broken_model(cls, text, invariant, clause):
    at, bad = steps(cls(), parse(text), full=False)
    assert clause in [cid for cid, _ in bad], (at, bad)
    # no later than the full recount after every step
    at_full, bad_full = steps(cls(), parse(text), full=True)
    assert bad_full and at <= at_full


@pytest.mark.parametrize("target,text,clause,most", cases.CASES, ids=[c[0].name for c in cases.CASES])
def test_judge_without_recount_fails_each_broken_allocator(target, text, clause, most, monkeypatch):
    monkeypatch.setattr(judge_mod, "RECOUNT", False)
    sig = failing_signature(target, parse(text), {})
    assert sig is not None and sig.clause == clause


BROKEN = [broken.DoubleFreeBuddy, broken.NoCoalesceBuddy, broken.LeakyBuddy, broken.SlabTwice,
          broken.SlabStealsFrames, broken.GcMissesRoot, broken.RefcountGc, broken.BindSpills,
          broken.FreedButCounted, broken.SlabMiscount, broken.HeapOverlaps]


def _programs(seed: int, n: int):
    rng = random.Random(seed)
    return [decode(bytes(rng.randrange(256) for _ in range(rng.randrange(40, 400)))) for _ in range(n)]


def test_incremental_catches_what_full_catches_on_random_programs():
    caught: dict[str, int] = {}
    for cls in BROKEN:
        for p in _programs(11, 60):
            at_full, bad_full = steps(cls(), p, full=True)
            at_inc, bad_inc = steps(cls(), p, full=False)
            if bad_full:
                caught[cls.__name__] = caught.get(cls.__name__, 0) + 1
                assert bad_inc and at_inc <= at_full, (cls.__name__, p, bad_full, bad_inc)
    # random programs reach some of the bugs (the named programs above reach each)
    assert len(caught) >= 3, caught


def test_reference_model_incremental_and_full_agree_on_random_programs():
    checked = 0
    for p in _programs(5, 150):
        m = PhysModel()
        env: dict[str, int] = {}
        for c in p.calls:
            try:
                args = eval_args(c, env)
            except KeyError:
                break
            o = m.expect("main", c.name, args).default
            m.apply("main", c.name, args, o)
            if c.result and o.value is not None:
                env[c.result] = o.value
            assert m.invariants(full=False) == []
            assert m.invariants(full=True) == []
            checked += 1
    assert checked > 300


def test_incremental_check_sees_a_corruption_of_a_touched_frame():
    """A corruption inside the step's footprint is caught by the incremental check; one outside
    it is left to the full recount (what checkpoints and the end of a program are for)."""
    m = PhysModel()
    o = m.expect("main", "buddy_alloc", (0,)).default
    m.apply("main", "buddy_alloc", (0,), o)
    pfn = o.value
    assert m.invariants(full=False) == []
    m.frames.owner[pfn] = Owner.FREE                 # freed behind the allocator's back ...
    m.frames.touched.append((pfn, 1))                # ... in the step's footprint
    assert [c for c, _ in m.invariants(full=False)] == ["memspec.phys.frame-one-owner"]
    far = m.machine.total - 1
    m.frames.owner[far] = Owner.KERNEL               # owned, yet on a free list: outside any footprint
    assert m.invariants(full=False) == []
    assert [c for c, _ in m.invariants(full=True)] == ["memspec.phys.frame-one-owner"]


def _corrupt(kind: str) -> PhysModel:
    m = PhysModel()
    o = m.expect("main", "buddy_alloc", (0,)).default
    m.apply("main", "buddy_alloc", (0,), o)
    assert m.invariants() == []
    pfn, b = o.value, m.buddy
    if kind == "misaligned":
        head = next(h for h, k in b.free_head.items() if k >= 2)
        b._pop(head)
        b._push(head + 1, 1)
    elif kind == "overlap":
        head = next(h for h, k in b.free_head.items() if k >= 1)
        b._push(head + 1, 0)
    elif kind == "owned-on-list":
        b._push(pfn, 0)
    elif kind == "free-off-list":
        m.frames.owner[pfn] = Owner.FREE
        m.frames.touched.append((pfn, 1))
    elif kind == "not-coalesced":
        head = next(h for h, k in b.free_head.items() if k >= 1 and h not in b.allocated)
        k = b._pop(head)
        b._push(head, k - 1)
        b._push(head + (1 << (k - 1)), k - 1)
    return m


@pytest.mark.parametrize("kind,clause", [
    ("misaligned", "linux.buddy.block-aligned"), ("overlap", "linux.buddy.no-overlap"),
    ("owned-on-list", "memspec.phys.frame-one-owner"), ("free-off-list", "memspec.phys.frame-one-owner"),
    ("not-coalesced", "linux.buddy.coalesce")])
def test_window_audit_names_the_same_clause_as_the_full_audit(kind, clause):
    m = _corrupt(kind)
    assert [c for c, _ in m.buddy.audit_step(m.frames.touched)][:1] == [clause]
    assert [c for c, _ in m.buddy.audit()][:1] == [clause]
