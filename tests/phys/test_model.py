"""The phys model's laws on worked examples (model/buddy.py, slab.py, heap.py, gc.py, numa.py)."""

from __future__ import annotations

import pytest

from memspec.model.buddy import internal_waste, order_for
from memspec.model.frames import MAX_ORDER, Machine, Owner
from memspec.model.phys import PhysModel, new_model
from memspec.model.slab import kmalloc_class
from memspec.program import eval_args, parse
from memspec.records import Outcome


def run(text: str, m: PhysModel | None = None) -> tuple[PhysModel, dict[str, Outcome]]:
    """Run a program on the model alone (its own choices), checking every invariant after every call."""
    m = m or PhysModel()
    env: dict[str, int] = {}
    out: dict[str, Outcome] = {}
    for i, c in enumerate(parse(text).calls):
        args = eval_args(c, env)
        o = m.expect("main", c.name, args).default
        m.apply("main", c.name, args, o)
        assert m.invariants() == [], (i, c)
        key = c.result or f"#{i}"
        out[key] = o
        if c.result and o.value is not None:
            env[c.result] = o.value
    return m, out


def test_seed_5k_request_gets_8k_block_wasting_3k():
    # seed: "A process requesting 5 KB receives an 8 KB block -- wasting 3 KB per allocation"
    assert order_for(5 * 1024) == 1
    assert (4096 << order_for(5 * 1024)) == 8 * 1024
    assert internal_waste(5 * 1024) == 3 * 1024
    # the kmalloc path gives the same figure: kmalloc-8192, ksize 8192
    _, out = run("k = kmalloc(5120)\ns = ksize(k)\n")
    assert out["s"].value == 8192


@pytest.mark.parametrize("size,order", [(1, 0), (4096, 0), (4097, 1), (8192, 1), (8193, 2), (4 << 20, 10),
                                        ((4 << 20) + 1, 11)])
def test_order_for(size, order):
    assert order_for(size) == order


def test_boot_free_lists_are_maximally_coalesced():
    m = PhysModel()
    info = m.buddy.buddyinfo()
    # pfn 0 is reserved: node 0's DMA zone keeps one block of each order 0..9, then three of order 10
    assert info["Node 0, zone DMA"] == [1] * 10 + [3]
    assert info["Node 1, zone Normal"] == [0] * 10 + [8]
    assert m.buddy.free_pages() == 16383
    assert m.frames.owner[0] == Owner.KERNEL


def test_split_then_coalesce_restores_the_free_lists():
    m = PhysModel()
    before = m.buddy.buddyinfo()
    m, out = run("a = buddy_alloc(0, 1)\nb = buddy_alloc(0, 1)\n", m)
    assert out["b"].value == out["a"].value + 1          # the split's other half
    assert m.buddy.buddyinfo()["Node 1, zone Normal"] == [0] + [1] * 9 + [7]
    m, out = run(f"buddy_free({out['a'].value})\nbuddy_free({out['b'].value})\n", m)
    assert m.buddy.buddyinfo() == before


def test_allocation_failure_is_a_value_and_double_free_is_refused():
    text = "".join(f"a{i} = buddy_alloc(10, 1, GFP_THISNODE)\n" for i in range(9)) + \
        "big = buddy_alloc(11)\nbuddy_free(a0)\nbuddy_free(a0)\n"
    m, out = run(text)
    assert [out[f"a{i}"].ok for i in range(9)] == [True] * 8 + [False]
    assert out["a8"] == Outcome(value=-1, errno="ENOMEM")
    assert out["big"].errno == "ENOMEM"
    assert out["#11"] == Outcome(value=-1, errno="EINVAL")


def test_gfp_dma_and_zone_order():
    m, out = run("n = buddy_alloc(0, 0)\nd = buddy_alloc(0, 0, GFP_DMA)\n")
    assert m.machine.zone_of(out["n"].value).name == "Normal"     # Normal before DMA
    assert m.machine.zone_of(out["d"].value).name == "DMA"


def test_external_fragmentation_measure():
    m = PhysModel(Machine(node_frames=(1024,), dma_frames=0, distances=((10,),), reserved=()))
    assert m.buddy.external_fragmentation(4) == 0.0
    # take every other frame: 512 single free frames, none usable for order >= 1
    pfns = []
    for _ in range(1024):
        e = m.expect("main", "buddy_alloc", (0, 0, 0, 5))
        m.apply("main", "buddy_alloc", (0, 0, 0, 5), e.default)
        pfns.append(e.default.value)
    for p in pfns[::2]:
        m.apply("main", "buddy_free", (p,), Outcome(value=0))
    assert m.buddy.free_pages() == 512 and m.buddy.largest() == 0
    assert m.buddy.external_fragmentation(1) == 1.0
    assert m.invariants() == []


def test_slab_reuse_partial_full_empty_and_shrink():
    m, out = run("c = kmem_cache_create(1024)\n" + "".join(f"o{i} = kmem_cache_alloc(c)\n" for i in range(5)))
    c = m.caches[out["c"].value]
    assert c.order == 0 and c.per_slab == 4
    states = sorted(c.state(s) for s in c.slabs.values())
    assert states == ["full", "partial"]
    # a freed object is reused before anything else
    m, out2 = run(f"kmem_cache_free({out['c'].value}, {out['o1'].value})\nx = kmem_cache_alloc({out['c'].value})\n", m)
    assert out2["x"].value == out["o1"].value
    text = "".join(f"kmem_cache_free({out['c'].value}, {out[k].value})\n" for k in ("o0", "o2", "o3", "o4")) \
        + f"kmem_cache_free({out['c'].value}, {out2['x'].value})\nn = kmem_cache_shrink({out['c'].value})\n"
    m, out3 = run(text, m)
    assert out3["n"].value == 2 and not c.slabs
    assert m.buddy.free_pages() == 16383


@pytest.mark.parametrize("size,cls", [(1, 8), (9, 16), (65, 96), (97, 128), (129, 192), (193, 256), (8192, 8192)])
def test_kmalloc_classes(size, cls):
    assert kmalloc_class(size) == cls


def test_vmalloc_is_scattered_when_no_run_exists():
    # a machine of one order-10 block with every other frame taken: no two contiguous frames
    m = PhysModel(Machine(node_frames=(1024,), dma_frames=0, distances=((10,),), reserved=()))
    pfns = []
    for _ in range(1024):
        e = m.expect("main", "buddy_alloc", (0, 0, 0, 5))
        m.apply("main", "buddy_alloc", (0, 0, 0, 5), e.default)
        pfns.append(e.default.value)
    for p in pfns[::2]:
        m.apply("main", "buddy_free", (p,), Outcome(value=0))
    m2, out = run("v = vmalloc(0x10000)\nf = vmalloc_to_pfn(v+0x1000)\nd = dma_alloc_coherent(0x2000)\n", m)
    assert out["v"].ok and out["f"].value == pfns[2]
    assert out["d"] == Outcome(value=-1, errno="ENOMEM")      # no contiguous pair for DMA


def test_heap_contents_follow_realloc_and_calloc():
    m, out = run("p = malloc(5000)\nheap_fill(p, 5000, 0x41)\nq = realloc(p, 9000)\n"
                 "n = heap_count(q, 5000, 0x41)\nz = calloc(4, 4)\nc = heap_count(z, 16, 0)\n")
    assert out["n"].value == 5000 and out["c"].value == 16
    e = m.expect("main", "heap_count", (out["q"].value + 5000, 4000, 0x41))
    assert e.judge(Outcome(value=0)) is None and e.judge(Outcome(value=4000)) is None
    assert e.judge(Outcome(value=4001)) is not None


def test_malloc_predicates_name_their_clause():
    m, out = run("p = malloc(100)\n")
    e = m.expect("main", "malloc", (100,))
    assert e.judge(Outcome(value=out["p"].value + 16)) is not None
    assert e.blame(Outcome(value=out["p"].value + 16)) == "c11.malloc.disjoint"
    assert e.blame(Outcome(value=0x7000_0008)) == "c11.malloc.aligned-max-align-t"
    assert e.judge(Outcome(value=0, errno="ENOMEM")) is None
    assert e.blame(Outcome(value=0)) == "posix.malloc.enomem"


def test_gc_worked_example_and_compaction():
    m, out = run("a = gc_new(32)\nb = gc_new(32)\ngc_ref(a, 0, b)\ngc_root(a)\nc = gc_new(16)\n"
                 "n = gc_collect()\nw = gc_pause()\nk = gc_compact()\nx = gc_addr(b)\nr = gc_get(a, 0)\n")
    assert out["n"].value == 1
    assert out["w"].value == 2 + 4 + 3      # marked + slots traced + swept
    assert out["x"].value == 0x0000_3000_0000_0000 + 32
    assert out["r"].value == out["b"].value


def test_numa_first_touch_then_migration_is_remote():
    m, out = run("t = numa_touch(0)\nmigrate_thread(1)\nu = numa_touch(0)\nr = numa_stat(NUMA_REMOTE)\n"
                 "l = numa_stat(NUMA_LOCAL)\n")
    assert m.machine.node_of(out["t"].value) == 0 and out["u"].value == out["t"].value
    assert out["r"].value == 1 and out["l"].value == 1


def test_numa_interleave_and_bind():
    m, out = run("set_mempolicy(MPOL_INTERLEAVE, 3)\n" + "".join(f"p{i} = numa_touch({i})\n" for i in range(4))
                 + "set_mempolicy(MPOL_BIND, 2)\nb = numa_touch(9)\nbad = set_mempolicy(MPOL_BIND, 0)\n")
    assert [m.machine.node_of(out[f"p{i}"].value) for i in range(4)] == [0, 1, 0, 1]
    assert m.machine.node_of(out["b"].value) == 1
    assert out["bad"].errno == "EINVAL"


def test_bind_fails_rather_than_spill():
    m = PhysModel(Machine(node_frames=(1024, 1024), dma_frames=0, reserved=()))
    text = "set_mempolicy(MPOL_BIND, 1)\n" + "".join(f"t{i} = numa_touch({i})\n" for i in range(1025))
    m, out = run(text, m)
    assert out["t1023"].ok and out["t1024"] == Outcome(value=-1, errno="ENOMEM")


def test_machine_from_facts():
    m = new_model({"phys_machine": {"node_frames": [2048, 1024, 1024], "dma_frames": 1024}})
    assert m.machine.nodes == 3 and m.machine.distances[0] == (10, 21, 21)
    with pytest.raises(ValueError):
        Machine(node_frames=(1000,))
    assert MAX_ORDER == 10
