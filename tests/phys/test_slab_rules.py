"""kmem_cache_create's limits are the kernel's (KMALLOC_MAX_SIZE, SLUB's calculate_order), not the model's;
a slab's geometry is a fact the target states (``phys_machine``: slub_min_objects, slub_max_order)."""

from __future__ import annotations

import pytest

from memspec.model.frames import MAX_ORDER
from memspec.model.phys import new_model
from memspec.model.slab import KMALLOC_MAX_SIZE, slab_order
from memspec.program import parse
from memspec.records import Outcome, RunResult, Verdict
from memspec.specs.judge import judge


def verdict(text: str, outcomes: list[Outcome], facts: dict | None = None):
    j = judge(parse(text), RunResult(tuple(outcomes)), "t", facts or {})
    f = j.failure
    return (f.clause, f.verdict) if f else None


@pytest.mark.parametrize("size", [40000, 1 << 20, KMALLOC_MAX_SIZE])
def test_a_cache_of_objects_over_32k_is_made(size):
    # the old model refused every size over 32 KiB (its own largest slab), citing the kernel
    assert verdict(f"c = kmem_cache_create({size})\n", [Outcome(value=1)]) is None
    assert verdict(f"c = kmem_cache_create({size})\n", [Outcome(value=-1, errno="EINVAL")]) == \
        ("linux.slab.create", Verdict.FAIL)


def test_past_kmalloc_max_size_is_refused():
    assert verdict(f"c = kmem_cache_create({KMALLOC_MAX_SIZE + 1})\n", [Outcome(value=-1, errno="EINVAL")]) is None
    assert verdict(f"c = kmem_cache_create({KMALLOC_MAX_SIZE + 1})\n", [Outcome(value=1)]) == \
        ("linux.slab.create-einval", Verdict.FAIL)
    # an alignment may push the object past the limit too
    assert verdict(f"c = kmem_cache_create({KMALLOC_MAX_SIZE - 8}, {1 << 23})\n",
                   [Outcome(value=-1, errno="EINVAL")]) is None


@pytest.mark.parametrize("args", ["0", "64, 3", "64, 0"])
def test_memspec_conventions_are_named_as_such(args):
    got = verdict(f"c = kmem_cache_create({args})\n", [Outcome(value=1)])
    assert got == ("memspec.slab.create-einval-args", Verdict.FAIL)


def test_alignment_above_a_page_is_accepted():
    assert verdict("c = kmem_cache_create(64, 8192)\n", [Outcome(value=1)]) is None


def test_a_big_objects_slab_is_a_high_order_block():
    m = new_model({})
    e = m.expect("main", "kmem_cache_create", (0x400000, 8))
    m.apply("main", "kmem_cache_create", (0x400000, 8), e.default)
    c = m.caches[e.default.value]
    assert c.order == MAX_ORDER and c.per_slab == 1
    block = m.expect("main", "kmem_cache_alloc", (e.default.value, 0)).default.value
    assert block % (4096 << MAX_ORDER) == 0
    text = "c = kmem_cache_create(0x400000)\no = kmem_cache_alloc(c)\n"
    assert verdict(text, [Outcome(value=1), Outcome(value=block)]) is None
    # one object per slab: an address one page into the block is no object boundary
    assert verdict(text, [Outcome(value=1), Outcome(value=block + 4096)]) == ("bonwick.slab.grow-from-buddy", Verdict.FAIL)


def test_slab_order_follows_calculate_order():
    assert [slab_order(n) for n in (8, 256, 1024, 2048, 3000, 9000, 40000)] == [0, 0, 0, 1, 2, 3, 4]
    assert slab_order(KMALLOC_MAX_SIZE) == MAX_ORDER and slab_order(KMALLOC_MAX_SIZE + 1) is None
    # a kernel with slub_min_objects=16 uses bigger slabs; slub_max_order=0 keeps order 0 while an object fits
    assert slab_order(1024, 16, 3) == 2
    assert slab_order(1024, 4, 0) == 0 and slab_order(3000, 4, 0) == 0 and slab_order(5000, 4, 0) == 1


@pytest.mark.parametrize("min_objects, max_order, second_in_new_slab", [(4, 3, True), (16, 3, False), (4, 0, True)])
def test_geometry_fact_decides_where_a_slab_ends(min_objects, max_order, second_in_new_slab):
    # five 1024-byte objects: with 4 per order-0 slab the fifth needs a new slab; with 16 it does not
    facts = {"phys_machine": {"slub_min_objects": min_objects, "slub_max_order": max_order}}
    m = new_model(facts)
    e = m.expect("main", "kmem_cache_create", (1024, 8))
    m.apply("main", "kmem_cache_create", (1024, 8), e.default)
    h = e.default.value
    addrs = []
    for _ in range(5):
        x = m.expect("main", "kmem_cache_alloc", (h, 0))
        m.apply("main", "kmem_cache_alloc", (h, 0), x.default)
        addrs.append(x.default.value)
    slabs = {a >> 12 >> m.caches[h].order for a in addrs}
    assert (len(slabs) == 2) == second_in_new_slab
    # a target whose fifth object starts a new slab far away is right exactly when four fill a slab
    text = "c = kmem_cache_create(1024)\n" + "".join(f"o{i} = kmem_cache_alloc(c)\n" for i in range(5))
    first = addrs[0]
    far = [Outcome(value=h)] + [Outcome(value=first + i * 1024) for i in range(4)] + [Outcome(value=first + (64 << 12))]
    got = verdict(text, far, facts)
    assert got == (None if second_in_new_slab else ("bonwick.slab.reuse", Verdict.FAIL))


def test_a_gfp_dma_kmalloc_has_caches_of_its_own():
    # kmalloc-128 has a slab with room; a GFP_DMA kmalloc(100) may still take a new slab in ZONE_DMA
    # (dma-kmalloc-128), and must not take an object of the Normal-zone slab
    m = new_model({})
    first = m.expect("main", "kmalloc", (100, 0)).default
    m.apply("main", "kmalloc", (100, 0), first)
    dma = m.expect("main", "kmalloc", (100, 1)).default       # GFP_DMA
    assert dma.value >> 12 < m.machine.dma_frames and dma.value >> 12 != first.value >> 12
    text = "a = kmalloc(100)\nb = kmalloc(100, GFP_DMA)\n"
    assert verdict(text, [first, dma]) is None
    assert verdict(text, [first, Outcome(value=first.value + 128)])[0] in ("linux.gfp.dma-zone", "linux.buddy.alloc-from-free")


@pytest.mark.parametrize("errno, ok", [("EINVAL", True), ("ENOMEM", True), ("EFAULT", False)])
def test_dma_size0_is_a_null_whatever_errno_the_protocol_gives(errno, ok):
    got = verdict("d = dma_alloc_coherent(0)\n", [Outcome(value=-1, errno=errno)])
    assert (got is None) == ok
    assert verdict("d = dma_alloc_coherent(0)\n", [Outcome(value=0x1000)]) == ("linux.dma.size0", Verdict.FAIL)
