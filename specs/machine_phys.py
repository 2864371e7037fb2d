"""Hypothesis state machines for the phys layer: drive a target and the model together.

``machine(target)`` builds a ``RuleBasedStateMachine`` whose rules are the
phys-layer calls the target implements (all of them for ``model``, the heap
calls for ``libc``).  Each rule makes one call on ``target.session("phys")``,
judges the outcome against the model's allowed set, adopts it, and the
invariants -- named after what they protect -- run after every step.  A failure
names the clause and prints the program so far, as program text that
``memspec replay`` runs again.

Results are named (``p3``) and kept in bundles per kind, so that frees and
probes take live results and Hypothesis shrinks a failure to the fewest calls.
"""

from __future__ import annotations

from typing import Any

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule

from memspec.calls import CALLS
from memspec.model.frames import MAX_ORDER, Machine
from memspec.model.registry import new_model
from memspec.program import Call, Flags, Int, Program, Ref
from memspec.records import Outcome
from memspec.errors import SessionFailed

from . import gen_phys
from .choose import DrawChooser
from .failures import ConformanceFailure
from .machine_rules import needs as has, remove_unrunnable
from .step import Stepper

VALUES = st.integers(0, 255)


def _size(data) -> int:
    """A heap request the machine can follow: no size beyond any heap (programs and the codec try those;
    how each library meets them is an implementation choice its cited differences speak for)."""
    return gen_phys.heap_size(DrawChooser(data), huge=False)


def _pick(data, vocabulary: tuple[int, ...]) -> int:
    return DrawChooser(data).choice(vocabulary)


def machine(target: Any, facts: dict[str, Any] | None = None,
            allocator: str | None = None) -> type[RuleBasedStateMachine]:
    """The state machine for ``target``: every phys allocator it implements, or only ``allocator``
    (a key of ``memspec.calls_phys.ALLOCATORS``: "buddy", "slab", "heap", "gc", ...)."""
    calls = target.calls
    if allocator is not None:
        from memspec.calls_phys import ALLOCATORS
        calls = ALLOCATORS[allocator] if calls is None else ALLOCATORS[allocator] & calls
    unsupported_steps: dict[str, int] = {}      # clause -> steps the target refused to run
    # the nodes of the machine the target declares (fact ``phys_machine``; two when the facts are not
    # known yet): the CPU's (-1), each of them
    nodes = tuple(range(Machine.from_facts(facts).nodes)) if facts is not None else (0, 1)

    class PhysMachine(RuleBasedStateMachine):
        blocks = Bundle("blocks")      # (name, address, size) of live heap blocks
        pages = Bundle("pages")
        caches = Bundle("caches")
        objects = Bundle("objects")    # (cache name, object name)
        kobjs = Bundle("kobjs")
        areas = Bundle("areas")
        dmas = Bundle("dmas")
        arenas = Bundle("arenas")
        gcobjs = Bundle("gcobjs")

        def __init__(self) -> None:
            super().__init__()
            try:
                self.session = target.session("phys")
            except SessionFailed as e:   # the reset before the first call did not answer
                raise ConformanceFailure("memspec.target.alive", Program(()), 0, "an answer to the reset",
                                         e.message, e.status.value) from None
            self.model = new_model("phys", facts if facts is not None else target.facts())
            self.stepper = Stepper(self.model, self.session, note, unsupported_steps)
            self.env = self.stepper.env
            self.program = self.stepper.calls
            self.n = 0

        def teardown(self) -> None:
            self.session.close()

        # -- one call: run, judge, adopt ------------------------------------------

        def prog(self) -> Program:
            return Program(tuple(self.program)).with_header(target=target.name)

        def do(self, name: str, *args: Int | Ref | Flags, result: bool = False) -> tuple[str | None, Outcome]:
            res = None
            if result:
                self.n += 1
                res = f"r{self.n}"
            spec = CALLS[name]
            # spell out trailing defaults, as the parser does, so the call is canonical program text
            # and a protocol peer gets every argument
            args = args + tuple(Int(p.default) for p in spec.params[len(args):])  # type: ignore[arg-type]
            call = Call(name, tuple(args), res)
            o = self.stepper.step(call)
            if o is None:       # refused by the target's harness: unsupported, and the run goes on
                o = Outcome(errno="EREFUSED")
            return res, o

        def fail_if(self, bad: list[tuple[str, str]]) -> None:
            if bad:
                cid, msg = bad[0]
                raise ConformanceFailure(cid, self.prog(), len(self.program) - 1, "the invariant holds", msg,
                                         "model invariant broken")

        # -- the variable-size heap -----------------------------------------------

        def _block(self, name: str | None, o: Outcome, size: int):
            if name and o.ok and o.value and 0 < size <= 1 << 20:
                return (name, o.value, size)
            return multiple()

        @has("malloc")
        @rule(target=blocks, data=st.data())
        def malloc(self, data):
            size = _size(data)
            name, o = self.do("malloc", Int(size), result=True)
            return self._block(name, o, size)

        @has("calloc")
        @rule(target=blocks, n=st.integers(0, 64), data=st.data())
        def calloc(self, n: int, data):
            size = _size(data)
            name, o = self.do("calloc", Int(n), Int(size), result=True)
            return self._block(name, o, n * size)

        @has("posix_memalign")
        @rule(target=blocks, data=st.data())
        def posix_memalign(self, data):
            align, size = _pick(data, gen_phys.VALID_ALIGNS), _size(data)
            name, o = self.do("posix_memalign", Int(align), Int(size), result=True)
            return self._block(name, o, size)

        @has("aligned_alloc")
        @rule(target=blocks, data=st.data())
        def aligned_alloc(self, data):
            align, size = _pick(data, gen_phys.VALID_ALIGNS), _size(data)
            name, o = self.do("aligned_alloc", Int(align), Int(size), result=True)
            return self._block(name, o, size)

        @has("realloc")
        @rule(target=blocks, b=consumes(blocks), data=st.data())
        def realloc(self, b, data):
            size = _size(data)
            name, o = self.do("realloc", Ref(b[0]), Int(size), result=True)
            return self._block(name, o, size)

        @has("free")
        @rule(b=consumes(blocks))
        def free(self, b) -> None:
            self.do("free", Ref(b[0]))

        @has("heap_fill", "heap_count")
        @rule(b=blocks, value=VALUES, data=st.data())
        def fill_and_count(self, b, value: int, data) -> None:
            off = data.draw(st.integers(0, b[2] - 1))
            n = data.draw(st.integers(1, b[2] - off))
            self.do("heap_fill", Ref(b[0], off) if off else Ref(b[0]), Int(n), Int(value))
            self.do("heap_count", Ref(b[0]), Int(b[2]), Int(value), result=True)

        @has("heap_store", "heap_load")
        @rule(b=blocks, value=VALUES, data=st.data())
        def store_and_load(self, b, value: int, data) -> None:
            off = data.draw(st.integers(0, b[2] - 1))
            ref = Ref(b[0], off) if off else Ref(b[0])
            self.do("heap_store", ref, Int(value))
            self.do("heap_load", ref, result=True)

        @has("malloc_usable_size")
        @rule(b=blocks)
        def usable_size(self, b) -> None:
            self.do("malloc_usable_size", Ref(b[0]), result=True)

        # -- the machine's shape --------------------------------------------------------

        @has("phys_boot")
        @initialize(data=st.data())
        def boot(self, data) -> None:
            """Sometimes a machine of another shape first (``gen_phys.machine_shape``)."""
            shape = gen_phys.machine_shape(DrawChooser(data))
            if shape is not None:
                self.do("phys_boot", *(Int(x) for x in shape))

        # -- buddy ------------------------------------------------------------------

        @has("buddy_alloc")
        @rule(target=pages, node=st.sampled_from((-1,) + nodes),
              gfp=st.sampled_from(((), ("GFP_DMA",), ("GFP_THISNODE",))), data=st.data())
        def buddy_alloc(self, node: int, gfp, data):
            order = _pick(data, gen_phys.ORDERS)
            name, o = self.do("buddy_alloc", Int(order), Int(node), Flags(gfp) if gfp else Int(0), Int(5), result=True)
            return name if o.ok and o.value is not None and o.value > 0 else multiple()

        @has("buddy_free")
        @rule(p=consumes(pages))
        def buddy_free(self, p: str) -> None:
            self.do("buddy_free", Ref(p))

        @has("buddy_largest", "nr_free_pages")
        @rule(node=st.sampled_from((-1,) + nodes))
        def buddy_state(self, node: int) -> None:
            self.do("buddy_largest", Int(node), result=True)
            self.do("nr_free_pages", Int(node), result=True)

        @has("buddy_alloc", "buddy_free")
        @rule(node=st.sampled_from(nodes), order=st.sampled_from((MAX_ORDER, MAX_ORDER - 1, 6, 3, 0)),
              how=st.sampled_from(gen_phys.FREE_ORDERS), data=st.data())
        def buddy_exhaust(self, node: int, order: int, how: str, data) -> None:
            """Blocks of one order on one node until one fails (as far as EXHAUST_MAX reaches), all freed in
            one of FREE_ORDERS, then the highest order asked for again: it must be back (coalescing)."""
            names = []
            for _ in range(gen_phys.EXHAUST_MAX):
                name, o = self.do("buddy_alloc", Int(order), Int(node), Flags(("GFP_THISNODE",)), Int(5), result=True)
                if not (o.ok and o.value is not None and o.value >= 0):
                    break
                names.append(name)
            for name in gen_phys.free_order(DrawChooser(data), names, how):
                self.do("buddy_free", Ref(name))
            self.do("buddy_alloc", Int(MAX_ORDER), Int(node), Flags(("GFP_THISNODE",)), Int(5), result=True)

        # -- slab and kmalloc -----------------------------------------------------

        @has("kmem_cache_create")
        @rule(target=caches, data=st.data())
        def cache_create(self, data):
            size = _pick(data, gen_phys.CACHE_SIZES)
            name, o = self.do("kmem_cache_create", Int(size), result=True)
            return name if o.ok and o.value and o.value > 0 else multiple()

        @has("kmem_cache_alloc")
        @rule(target=objects, c=caches)
        def cache_alloc(self, c: str):
            name, o = self.do("kmem_cache_alloc", Ref(c), result=True)
            return (c, name) if o.ok and o.value and o.value > 0 else multiple()

        @has("kmem_cache_free")
        @rule(x=consumes(objects))
        def cache_free(self, x) -> None:
            self.do("kmem_cache_free", Ref(x[0]), Ref(x[1]))

        @has("kmem_cache_shrink")
        @rule(c=caches)
        def cache_shrink(self, c: str) -> None:
            self.do("kmem_cache_shrink", Ref(c), result=True)

        @has("kmalloc")
        @rule(target=kobjs, data=st.data())
        def kmalloc(self, data):
            size = _pick(data, gen_phys.KSIZES)
            name, o = self.do("kmalloc", Int(size), result=True)
            return name if o.ok and o.value and o.value > 16 else multiple()

        @has("kfree", "ksize")
        @rule(k=consumes(kobjs))
        def kfree(self, k: str) -> None:
            self.do("ksize", Ref(k), result=True)
            self.do("kfree", Ref(k))

        # -- vmalloc and DMA ----------------------------------------------------------

        @has("vmalloc", "vmalloc_to_pfn")
        @rule(target=areas, data=st.data())
        def vmalloc(self, data):
            size = _pick(data, gen_phys.VMALLOC_SIZES)
            name, o = self.do("vmalloc", Int(size), result=True)
            if o.ok and o.value and o.value > 0:
                self.do("vmalloc_to_pfn", Ref(name), result=True)
                return name
            return multiple()

        @has("vfree")
        @rule(v=consumes(areas))
        def vfree(self, v: str) -> None:
            self.do("vfree", Ref(v))

        @has("dma_alloc_coherent")
        @rule(target=dmas, data=st.data())
        def dma_alloc(self, data):
            size, mask = _pick(data, gen_phys.DMA_SIZES), _pick(data, gen_phys.DMA_MASKS)
            name, o = self.do("dma_alloc_coherent", Int(size), Int(mask), result=True)
            return name if o.ok and o.value and o.value > 0 else multiple()

        @has("dma_free_coherent")
        @rule(d=consumes(dmas))
        def dma_free(self, d: str) -> None:
            self.do("dma_free_coherent", Ref(d))

        # -- NUMA ---------------------------------------------------------------

        @has("set_mempolicy")
        @rule(mode=st.sampled_from(("MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED")),
              mask=st.sampled_from((0, 1, 2, 3)))
        def set_mempolicy(self, mode: str, mask: int) -> None:
            self.do("set_mempolicy", Flags((mode,)), Int(mask if mode != "MPOL_DEFAULT" else 0))

        @has("migrate_thread")
        @rule(node=st.sampled_from(nodes))
        def migrate(self, node: int) -> None:
            self.do("migrate_thread", Int(node))

        @has("numa_touch", "numa_stat")
        @rule(page=st.integers(0, 30), k=st.integers(1, 8))
        def touch(self, page: int, k: int) -> None:
            for i in range(k):
                self.do("numa_touch", Int(page + i), result=True)
            self.do("numa_stat", Flags(("NUMA_REMOTE",)), result=True)

        # -- region ---------------------------------------------------------------

        @has("arena_create")
        @rule(target=arenas, cap=st.sampled_from((100, 4096, 65536)))
        def arena_create(self, cap: int):
            name, o = self.do("arena_create", Int(cap), result=True)
            return name if o.ok and o.value else multiple()

        @has("arena_alloc")
        @rule(a=arenas, size=st.sampled_from((1, 24, 1000, 5000)), align=st.sampled_from((8, 16, 64)))
        def arena_alloc(self, a: str, size: int, align: int) -> None:
            self.do("arena_alloc", Ref(a), Int(size), Int(align), result=True)

        @has("arena_reset")
        @rule(a=arenas)
        def arena_reset(self, a: str) -> None:
            self.do("arena_reset", Ref(a))

        # -- GC -------------------------------------------------------------------

        @has("gc_new")
        @rule(target=gcobjs, size=st.sampled_from((16, 32, 100)), nrefs=st.integers(0, 3))
        def gc_new(self, size: int, nrefs: int):
            name, o = self.do("gc_new", Int(size), Int(nrefs), result=True)
            return name if o.ok and o.value and o.value > 0 else multiple()

        @has("gc_ref")
        @rule(a=gcobjs, b=gcobjs, slot=st.integers(0, 2))
        def gc_ref(self, a: str, b: str, slot: int) -> None:
            self.do("gc_ref", Ref(a), Int(slot), Ref(b))

        @has("gc_root", "gc_unroot")
        @rule(a=gcobjs, add=st.booleans())
        def gc_root(self, a: str, add: bool) -> None:
            self.do("gc_root" if add else "gc_unroot", Ref(a))

        @has("gc_collect", "gc_pause")
        @rule()
        def gc_collect(self) -> None:
            self.do("gc_collect", result=True)
            self.do("gc_pause", result=True)

        @has("gc_compact", "gc_addr")
        @rule(a=gcobjs)
        def gc_compact(self, a: str) -> None:
            self.do("gc_compact", result=True)
            self.do("gc_addr", Ref(a), result=True)

        @has("gc_live", "gc_get")
        @rule(a=gcobjs, slot=st.integers(0, 2))
        def gc_probe(self, a: str, slot: int) -> None:
            self.do("gc_live", Ref(a), result=True)
            self.do("gc_get", Ref(a), Int(slot), result=True)

        # -- invariants, after every step ---------------------------------------------

        @invariant()
        def no_frame_owned_twice(self) -> None:
            self.fail_if(self.model.no_frame_owned_twice())

        @invariant()
        def buddy_blocks_aligned_and_coalesced(self) -> None:
            self.fail_if(self.model.buddy_blocks_aligned_and_coalesced())

        @invariant()
        def free_plus_used_is_total(self) -> None:
            self.fail_if(self.model.free_plus_used_is_total())

        @invariant()
        def slab_counts_consistent(self) -> None:
            self.fail_if(self.model.slab_counts_consistent())

        @invariant()
        def live_heap_blocks_disjoint(self) -> None:
            self.fail_if(self.model.live_heap_blocks_disjoint())

        @invariant()
        def gc_sound_and_complete(self) -> None:
            self.fail_if(self.model.gc_sound_and_complete())

        @invariant()
        def bind_never_off_node(self) -> None:
            self.fail_if(self.model.bind_never_off_node())

    remove_unrunnable(PhysMachine, calls)
    PhysMachine.__name__ = PhysMachine.__qualname__ = \
        f"PhysMachine_{target.name.replace(':', '_')}" + (f"_{allocator}" if allocator else "")
    PhysMachine.unsupported_steps = unsupported_steps     # type: ignore[attr-defined]
    return PhysMachine
