"""The phys generator reaches the edges of each call's arguments, a machine with every frame in use, and
slab caches whose largest slab holds fewer objects than SLUB's minimum (issue #26).  Each feature has a
broken allocator (tests/phys/broken_edges.py) that ``memspec check`` at its default settings now catches
from random programs; with the generator before these features (commit 0a616e0) every one of them
passed check at default settings (0 failures)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.model.buddy import Buddy
from memspec.model.frames import FrameTable, Machine
from memspec.model.gc import MAX_REFS
from memspec.model.numa import MAX_PAGE
from memspec.model.slab import KmemCache, slab_order
from memspec.program import Program
from memspec.specs import gen_phys
from memspec.specs.choose import ByteChooser
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent


def _programs(n: int, seed: int = 26, calls=None) -> list[Program]:
    rng = random.Random(seed)
    return [gen_phys.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), calls) for _ in range(n)]


def _args(p: Program, name: str) -> list[tuple]:
    return [tuple(getattr(a, "value", a) for a in c.args) for c in p.calls if c.name == name]


def test_edges_of_the_argument_ranges_are_drawn() -> None:
    progs = _programs(400)
    seen = {name: {a for p in progs for a in _args(p, name)} for name in
            ("numa_touch", "gc_new", "phys_boot", "buddy_alloc", "kmalloc", "arena_create", "migrate_thread")}
    assert {(MAX_PAGE - 1,), (MAX_PAGE,), (-1,)} <= seen["numa_touch"]
    assert {a[1] for a in seen["gc_new"]} >= {-1, 0, MAX_REFS, MAX_REFS + 1}
    assert any(a[0] == 0 for a in seen["phys_boot"]) and any(a[2] == a[0] + 1 for a in seen["phys_boot"])
    assert {a[0] for a in seen["buddy_alloc"]} >= {-1, 10, 11} and {a[1] for a in seen["buddy_alloc"]} >= {-2, 2}
    assert {a[0] for a in seen["kmalloc"]} >= {8192, 8193, 1 << 22, (1 << 22) + 1}


def test_the_whole_machine_is_used_up_and_every_allocator_asked() -> None:
    """A full phase allocates every free block of the (booted) machine, largest first; the model then
    refuses every allocator that needs a frame, and a vmalloc of exactly the frames freed succeeds."""
    target, phases = ModelTarget(), 0
    for p in _programs(400):
        run = target.run(p)
        assert judge(p, run, "model", {}).passed, str(p)
        nr_free = [o.value for c, o in zip(p.calls, run.outcomes) if c.name == "nr_free_pages"]
        refused = {c.name for c, o in zip(p.calls, run.outcomes) if o.value == -1 and o.errno == "ENOMEM"}
        if 0 in nr_free and {"kmem_cache_alloc", "vmalloc", "dma_alloc_coherent", "numa_touch"} & refused:
            phases += 1
    assert phases >= 10, phases


def test_a_full_phase_fills_each_machine_it_boots() -> None:
    for n0, n1 in gen_phys.FULL_NODES:
        for dma in (0, 1, n0 // 2, n0):
            m = Machine.shaped((n0, n1) if n1 else (n0,), dma)
            b = Buddy(m, FrameTable(m))
            orders = sorted(b.free_head.values(), reverse=True)
            assert len(orders) <= 28
            for k in orders:       # largest first: each takes a block of exactly its order
                zone = b.first_zone_with(b.zonelist(m.fallback(0)), k)
                b.take(b.pick(zone, k), k, 5)
            assert b.free_pages() == 0


def test_slab_edges_are_where_the_slab_geometry_changes() -> None:
    edges = gen_phys.slab_order_edges()
    for s in edges[1:]:
        assert slab_order(s) != slab_order(s - 8)
    # either side of each size at which the largest slab (order 3, 32 KiB) holds 4, 3, 2, 1 objects
    caps = gen_phys.slab_cap_edges()
    assert [(KmemCache.make(0, "", s, 8).order, KmemCache.make(0, "", s, 8).per_slab) for s in caps] == \
        [(3, 4), (3, 3), (3, 3), (3, 2), (3, 2), (3, 1), (3, 1), (4, 1)]
    # a geometry of the target's own changes them
    assert gen_phys.slab_cap_edges(2, 1) == (4096, 4104, 8192, 8200)


def _failures(bug: str, tmp_path) -> list[dict]:
    out = tmp_path / "out"
    # the random programs and the state machine only: the directed edge programs (15-18) would catch
    # the edge bugs first (test_the_directed_edge_programs_catch_a_bug_at_an_edge_at_every_seed)
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_edges.py"}:target("{bug}")', "--layer", "phys",
                   "--no-suite", "--out", str(out)])
    assert status == 1
    return [f for t in json.loads((out / "report.json").read_text())["targets"] for f in t["failures"]]


@pytest.mark.slow      # a check run at default settings each (about 40 s on a loaded 2-core machine)
@pytest.mark.parametrize("bug, clauses", [
    ("NumaTouchPastLastPage", ("numa.touch.einval",)),
    ("FullSlabHandsOutLive", ("bonwick.slab.grow-from-buddy", "bonwick.slab.object-once")),
    ("GcLiveOfAnyHandle", ("jones.gc.handle-valid",)),
    ("SlabMinObjectsUncapped", ("bonwick.slab.reuse", "bonwick.slab.grow-from-buddy")),
])
def test_check_at_default_settings_catches_a_bug_at_an_edge(bug, clauses, tmp_path) -> None:
    fails = _failures(bug, tmp_path)
    mine = [f for f in fails if f["clause"] in clauses]
    assert mine, [f["clause"] for f in fails]
    assert any("# found_by: random" in f["program"] for f in mine), [f["program"] for f in mine]


@pytest.mark.parametrize("bug, clause", [
    ("NumaTouchPastLastPage", "numa.touch.einval"),
    ("GcLiveOfAnyHandle", "jones.gc.handle-valid"),
    ("CacheOfOneByteRefused", "linux.slab.create"),
    ("BindMaskPastOnlineRefused", "numa.set_mempolicy.ok"),
])
def test_the_directed_edge_programs_catch_a_bug_at_an_edge_at_every_seed(bug, clause, tmp_path) -> None:
    """The directed suite alone (no random program, no state machine) catches each bug at one edge value:
    specs/suite/phys/15-18 walk every edge the generator draws, so the catch does not depend on the seed.
    The suite before them (programs 01-14) passed all four."""
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_edges.py"}:target("{bug}")', "--layer", "phys",
                   "--programs", "0", "--machine-examples", "0", "--out", str(out)])
    assert status == 1
    fails = [f for t in json.loads((out / "report.json").read_text())["targets"] for f in t["failures"]]
    assert [f["clause"] for f in fails] == [clause]
    assert "edges" in fails[0]["program"], fails[0]["program"]
