"""Every law has a broken allocator that the judge catches, with a minimal reproducer.

Each case runs a program with some padding on a broken target; the judge must
fail it on the named clause, and the shared minimiser (the one ``memspec
check`` uses) must shrink it to at most the calls the bug needs.  The broken
models are also caught by their own invariants, one per invariant name.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from memspec.fuzz.differential import failing_signature, shrink_failure
from memspec.model.phys import PhysModel
from memspec.program import format_program, parse
from memspec.targets.model import ModelSession

_spec = importlib.util.spec_from_file_location("broken_phys", os.path.join(os.path.dirname(__file__), "broken_phys.py"))
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]

M = broken.broken_target
H = broken.NaiveHeapTarget

CASES = [
    # (target, program, clause it must fail, most calls a minimal reproducer needs)
    (M(broken.DoubleFreeBuddy), "a = buddy_alloc(0)\nb = buddy_alloc(2)\nbuddy_free(a)\nn = nr_free_pages()\n"
     "buddy_free(a)\nbuddy_free(b)\n", "linux.buddy.free-unallocated", 3),
    (M(broken.NoCoalesceBuddy), "a = buddy_alloc(0, 0)\nb = buddy_alloc(1, 1)\nbuddy_free(a)\nbuddy_free(b)\n"
     "m = buddy_largest(1)\n", "linux.buddy.coalesce", 3),
    (M(broken.LeakyBuddy), "a = buddy_alloc(3)\nc = kmem_cache_create(64)\nbuddy_free(a)\nn = nr_free_pages()\n",
     "memspec.phys.free-plus-used", 3),
    (M(broken.SlabTwice), "c = kmem_cache_create(64)\nd = kmem_cache_create(128)\no1 = kmem_cache_alloc(c)\n"
     "p1 = kmem_cache_alloc(d)\no2 = kmem_cache_alloc(c)\n", "bonwick.slab.object-once", 3),
    (M(broken.SlabStealsFrames), "b = buddy_alloc(0, 0)\nx = kmalloc(100)\nc = kmem_cache_create(64)\n"
     "o = kmem_cache_alloc(c)\n", "linux.buddy.alloc-from-free", 3),
    (M(broken.GcMissesRoot), "a = gc_new(16)\nb = gc_new(16)\ngc_root(a)\ngc_root(b)\nn = gc_collect()\n",
     "jones.gc.sound", 3),
    (M(broken.RefcountGc), "a = gc_new(16)\nb = gc_new(16)\ngc_ref(a, 0, b)\ngc_ref(b, 0, a)\nn = gc_collect()\n",
     "jones.gc.complete", 5),
    (M(broken.BindSpills), "t0 = numa_touch(0)\nset_mempolicy(MPOL_BIND, 2)\nt = numa_touch(1)\n", "numa.bind.no-spill", 2),
    (M(broken.DmaIgnoresMask), "b = buddy_alloc(0)\nd = dma_alloc_coherent(9000, 0xFFFFFF)\n", "linux.dma.below-mask", 1),
    (M(broken.VmallocNoGuard), "v = vmalloc(4096)\nb = buddy_alloc(0)\nw = vmalloc(4096)\n", "linux.vmalloc.guard-page", 2),
    (M(broken.ArenaReuses), "a = arena_create(4096)\nx = arena_alloc(a, 100)\ny = arena_alloc(a, 100)\n",
     "hanson.arena.bump", 3),
    (M(broken.HeapOverlaps), "p = malloc(100)\nb = buddy_alloc(0)\nq = malloc(100)\n", "c11.malloc.disjoint", 2),
    (H("double-free"), "p = malloc(16)\nz = malloc(32)\nfree(p)\nfree(p)\na = malloc(16)\nb = malloc(16)\n",
     "c11.malloc.disjoint", 5),
    (H("realloc-no-copy"), "p = malloc(100)\nheap_fill(p, 100, 0x41)\nz = malloc(8)\nq = realloc(p, 200)\n"
     "n = heap_count(q, 100, 0x41)\n", "c11.realloc.preserves-contents", 4),
    (H("calloc-dirty"), "a = malloc(8)\np = calloc(4, 8)\nn = heap_count(p, 32, 0)\n", "c11.calloc.zeroed", 2),
    (H("memalign-einval"), "a = malloc(8)\np = posix_memalign(24, 100)\n",
     "posix.posix_memalign.einval-not-power-of-two", 1),
    (H("misaligned"), "p = malloc(24)\n", "c11.malloc.aligned-max-align-t", 1),
]


@pytest.mark.parametrize("target,text,clause,most", CASES, ids=[c[0].name for c in CASES])
def test_broken_allocator_fails_with_minimal_reproducer(target, text, clause, most):
    program = parse(text)
    sig = failing_signature(target, program, {})
    assert sig is not None, f"{target.name} passed:\n{text}"
    assert sig.clause == clause
    small = shrink_failure(target, program, {}, sig)
    assert failing_signature(target, small, {}) == sig
    assert len(small) <= most, format_program(small)
    # the reference model itself passes the minimal program (the bug is the target's)
    from memspec.targets.model import ModelTarget
    assert failing_signature(ModelTarget(), small, {}) is None


def test_bug_free_naive_heap_passes_random_programs():
    """The naive heap without a bug is a correct allocator: the judge raises no false alarm."""
    import random

    from memspec.fuzz.codec_phys import decode
    t = H("")
    rng = random.Random(5)
    for _ in range(60):
        p = decode(bytes(rng.randrange(256) for _ in range(120)), t.calls)
        assert failing_signature(t, p, {}) is None, format_program(p)


INVARIANT_CASES = [
    # (broken model, program it runs on itself, invariant that must fire, clause it names)
    (broken.SlabStealsFrames, "b = buddy_alloc(0, 0)\nc = kmem_cache_create(64)\no = kmem_cache_alloc(c)\n",
     "no_frame_owned_twice", "memspec.phys.frame-one-owner"),
    (broken.NoCoalesceBuddy, "a = buddy_alloc(0, 0)\nbuddy_free(a)\n", "buddy_blocks_aligned_and_coalesced",
     "linux.buddy.coalesce"),
    (broken.FreedButCounted, "a = buddy_alloc(2)\nbuddy_free(a)\n", "free_plus_used_is_total",
     "memspec.phys.free-plus-used"),
    (broken.SlabMiscount, "c = kmem_cache_create(64)\no = kmem_cache_alloc(c)\nkmem_cache_free(c, o)\n",
     "slab_counts_consistent", "bonwick.slab.counts"),
    (broken.HeapOverlaps, "p = malloc(100)\nq = malloc(100)\n", "live_heap_blocks_disjoint", "c11.malloc.disjoint"),
    (broken.GcMissesRoot, "a = gc_new(16)\ngc_root(a)\nn = gc_collect()\n", "gc_sound_and_complete", "jones.gc.sound"),
    (broken.RefcountGc, "a = gc_new(16)\ngc_ref(a, 0, a)\nn = gc_collect()\n", "gc_sound_and_complete",
     "jones.gc.complete"),
    (broken.BindSpills, "set_mempolicy(MPOL_BIND, 2)\nt = numa_touch(0)\n", "bind_never_off_node", "numa.bind.no-spill"),
]


@pytest.mark.parametrize("cls,text,invariant,clause", INVARIANT_CASES, ids=[c[2] + "-" + c[0].__name__ for c in INVARIANT_CASES])
def test_invariant_catches_broken_model(cls, text, invariant, clause):
    s = ModelSession("phys")
    s.system = cls()
    program = parse(text)
    from memspec.program import eval_args
    env: dict[str, int] = {}
    for c in program.calls:
        o = s.call(c, eval_args(c, env))
        if c.result and o.value is not None:
            env[c.result] = o.value
    fired = s.system.INVARIANTS[invariant](s.system)
    assert clause in [cid for cid, _ in fired], fired
    # the reference model runs the same program with every invariant holding
    ref = PhysModel()
    env = {}
    for c in program.calls:
        args = eval_args(c, env)
        o = ref.expect("main", c.name, args).default
        ref.apply("main", c.name, args, o)
        if c.result and o.value is not None:
            env[c.result] = o.value
        assert ref.invariants() == []


def test_every_invariant_has_a_broken_model():
    assert {c[2] for c in INVARIANT_CASES} == set(PhysModel.INVARIANTS)
