"""Machines of any shape (issue #26): nodes and the DMA zone of any positive number of frames, the
buddy allocator seeded as Linux seeds it (linux.buddy.init-free-ranges), programs that start on such a
machine (``phys_boot``), and a buddy allocator that assumes max-order aligned zone ends caught by
``memspec check`` at its default settings."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.model.frames import MAX_ORDER, Machine
from memspec.model.phys import PhysModel
from memspec.program import parse
from memspec.specs import gen_phys
from memspec.specs.choose import ByteChooser
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent

SHAPES = [((8191,), 4096), ((5000, 1025), 1025), ((1025, 8191), 1), ((8192, 8192), 4096), ((3000, 5000), 0),
          ((1,), 0), ((1, 1), 1), ((2049,), 2049), ((12345, 3), 1000)]


def linux_blocks(start: int, end: int, reserved: set[int]) -> list[tuple[int, int]]:
    """(pfn, order) as mm/memblock.c __free_pages_memory hands [start, end) to the buddy allocator:
    order min(MAX_ORDER, trailing zeros of the pfn), lowered while the block passes ``end`` (the reserved
    frames split the range, as memblock's reserved regions do)."""
    out = []
    pfn = start
    while pfn < end:
        if pfn in reserved:
            pfn += 1
            continue
        stop = min([r for r in reserved if r > pfn] + [end])
        order = MAX_ORDER if pfn == 0 else min(MAX_ORDER, (pfn & -pfn).bit_length() - 1)
        while pfn + (1 << order) > stop:
            order -= 1
        out.append((pfn, order))
        pfn += 1 << order
    return out


@pytest.mark.parametrize("nodes, dma", SHAPES)
def test_each_zone_is_seeded_as_linux_seeds_it(nodes, dma) -> None:
    m = PhysModel(Machine.shaped(nodes, dma))
    want = sorted(b for z in m.machine.zones for b in linux_blocks(z.start, z.end, set(m.machine.reserved)))
    assert sorted(m.buddy.free_head.items()) == want
    for head, k in want:      # no block crosses a zone or a node
        assert m.machine.zone_of(head) == m.machine.zone_of(head + (1 << k) - 1)
    assert m.invariants() == []
    assert sum(m.buddy.free_pages(n) for n in range(len(nodes))) == sum(nodes) - 1     # pfn 0 is reserved


def test_any_positive_shape_is_a_machine_and_no_other() -> None:
    assert Machine(node_frames=(8191, 5000), dma_frames=1025, distances=((10, 21), (21, 10))).total == 13191
    for bad in (dict(node_frames=()), dict(node_frames=(0,)), dict(node_frames=(100,), dma_frames=101),
                dict(node_frames=(100,), dma_frames=-1), dict(node_frames=(4,), dma_frames=0, reserved=(4,))):
        bad.setdefault("distances", tuple((10,) * len(bad["node_frames"]) for _ in bad["node_frames"]))
        with pytest.raises(ValueError):
            Machine(**bad)


def test_phys_boot_starts_afresh_on_the_shape_and_refuses_no_machine() -> None:
    text = ("b = buddy_alloc(10, 0)\nphys_boot(5000, 1025, 1025)\nbuddy_free(b)\nn = nr_free_pages(-1)\n"
            "l = buddy_largest(1)\nphys_boot(0)\nphys_boot(100, 0, 101)\nphys_boot(100, -1)\n"
            "phys_boot(40000, 40000)\nm = nr_free_pages(-1)\n")
    p = parse(text)
    run = ModelTarget().run(p)
    values = [(o.value, o.errno) for o in run.outcomes]
    assert values[1] == (0, None)
    assert values[2] == (-1, "EINVAL")              # the block of the machine before is forgotten
    assert values[3] == (6024, None)                # every frame but pfn 0
    assert values[4] == (9, None)                   # node 1 = [5000, 6025): no aligned 1,024 frames inside
    assert values[5:9] == [(-1, "EINVAL")] * 4
    assert values[9] == (6024, None)                # a refused shape leaves the machine as it was
    assert judge(p, run, "model", {}).passed


def _programs(n: int, seed: int = 26, calls=None):
    rng = random.Random(seed)
    return [gen_phys.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), calls) for _ in range(n)]


def test_the_generator_draws_shapes_that_end_anywhere_and_the_model_passes_them() -> None:
    progs = _programs(150)
    boots = [p for p in progs if p.calls and p.calls[0].name == "phys_boot"]
    assert len(boots) >= 30, len(boots)       # BOOT_PERCENT of them
    shapes = [tuple(a.value for a in p.calls[0].args) for p in boots]
    assert sum(1 for s in shapes if any(x % (1 << MAX_ORDER) for x in s)) >= 0.7 * len(shapes), shapes
    assert any(s[1] == 0 for s in shapes) and any(s[1] > 0 for s in shapes)       # one node and two
    target = ModelTarget()
    for p in boots:
        run = target.run(p)
        j = judge(p, run, "model", {})
        assert j.passed, (str(p), j.failure)
    # the buddy exhaustion phases on a booted machine use its nodes' sizes
    assert any(c.name == "buddy_alloc" and c.args[2] != 0 for p in boots for c in p.calls)


def test_no_shape_for_a_target_that_does_not_take_phys_boot() -> None:
    from memspec.calls_phys import HEAP_CALLS
    assert not any(c.name == "phys_boot" for p in _programs(100, calls=HEAP_CALLS | {"buddy_alloc"}) for c in p.calls)


def _check(bug: str, tmp_path, *extra: str) -> list[dict]:
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_pressure.py"}:target("{bug}")', "--layer", "phys",
                   "--out", str(out), *extra])
    assert status == 1
    return [f for t in json.loads((out / "report.json").read_text())["targets"] for f in t["failures"]]


def test_a_buddy_that_assumes_aligned_zone_ends_is_caught_by_random_programs(tmp_path) -> None:
    fails = _check("ZoneEndAligned", tmp_path, "--no-suite", "--machine-examples", "0", "--confirm", "1")
    mine = [f for f in fails if f["clause"] in ("memspec.phys.free-plus-used", "linux.buddy.coalesce",
                                                  "linux.buddy.alloc-from-free", "linux.buddy.no-spurious-failure")]
    assert mine, [f["clause"] for f in fails]
    assert all(f["program"].count("phys_boot(") for f in mine)       # only another shape shows it


@pytest.mark.slow
def test_a_buddy_that_assumes_aligned_zone_ends_is_caught_by_check_at_default_settings(tmp_path) -> None:
    fails = _check("ZoneEndAligned", tmp_path)
    assert any("# found_by: random" in f["program"] and "phys_boot(" in f["program"] for f in fails), fails
