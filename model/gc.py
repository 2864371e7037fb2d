"""A tracing garbage-collected heap (Jones & Lins 1996: mark-sweep, with sliding compaction).

Laws:

* objects are reached through handles; references live in numbered slots;
  the roots are a set of objects named by the program (the mutator's roots);
* **soundness**: a collection never frees an object reachable from a root;
* **completeness**: a full collection frees every object that is unreachable
  when it starts (a non-incremental, non-generational cycle);
* **compaction** slides the live objects to the bottom of the heap in
  allocation order (Jones & Lins ch. 5, the Lisp 2 algorithm): afterwards
  they occupy ``[GC_BASE, GC_BASE + live bytes)``; references (slots) still
  name the same objects;
* the **pause** of a collection costs work units: one per object marked, one per
  reference slot traced, one per object swept -- so a pause grows with the heap,
  not only with the live data (the seed's "latency variance from collection pauses").

Worked example: ``a = gc_new(32)``, ``b = gc_new(32)``, ``gc_ref(a, 0, b)``,
``gc_root(a)``, ``c = gc_new(16)``, ``gc_collect()`` frees exactly ``c`` (returns 1);
its pause is 2 marked + 4 slots traced + 3 swept = 9 units.

The rules of the GC calls (``RULES``): a collection must free exactly the objects
unreachable when it starts (``jones.gc.sound``, ``jones.gc.complete``); after a compaction
an object's address is any free, aligned place below the live data's end
(``jones.gc.compact-slides``) until the target says which (``memspec.gc.address-stable``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from memspec.records import Outcome

from .allocator import K_EINVAL, OK0, checked
from .expect import Expect, exactly
from .rules import Rule

GC_BASE = 0x0000_3000_0000_0000
GC_SIZE = 1 << 32
GC_ALIGN = 16
MAX_REFS = 16
MAX_SIZE = 1 << 20


def gc_round(size: int) -> int:
    return (size + GC_ALIGN - 1) // GC_ALIGN * GC_ALIGN


@dataclass(slots=True)
class GcObject:
    handle: int
    size: int
    refs: list[int]
    addr: int
    seq: int                    # allocation order (compaction keeps it)
    confirmed: bool = False     # the target has told us this address


@dataclass(slots=True)
class GcHeap:
    objects: dict[int, GcObject] = field(default_factory=dict)
    roots: set[int] = field(default_factory=set)
    dead: set[int] = field(default_factory=set)
    next_handle: int = 1
    seq: int = 0
    last_pause: int = 0
    collected: bool = False     # completeness is checked right after a collection
    bound: dict[int, int] = field(default_factory=dict)   # handle -> address bound set by the last compaction

    def reachable(self) -> set[int]:
        seen: set[int] = set()
        stack = [r for r in self.roots if r in self.objects]
        while stack:
            h = stack.pop()
            if h in seen:
                continue
            seen.add(h)
            stack.extend(t for t in self.objects[h].refs if t and t in self.objects and t not in seen)
        return seen

    def pause_for(self, marked: set[int]) -> int:
        """Mark (one per object) + trace (one per slot of a marked object) + sweep (one per object)."""
        return len(marked) + sum(len(self.objects[h].refs) for h in marked) + len(self.objects)

    def place(self, size: int) -> int:
        """The model's own placement: bump above the highest object."""
        top = max((o.addr + gc_round(o.size) for o in self.objects.values()), default=GC_BASE)
        return top

    def compacted(self) -> dict[int, int]:
        """Sliding compaction: handle -> new address, in allocation order from GC_BASE."""
        out = {}
        cur = GC_BASE
        for o in sorted(self.objects.values(), key=lambda o: o.seq):
            out[o.handle] = cur
            cur += gc_round(o.size)
        return out

    def audit(self) -> list[tuple[str, str]]:
        for h in self.roots:
            if h not in self.objects:
                return [("jones.gc.sound", f"root {h} was freed")]
        for o in self.objects.values():
            for t in o.refs:
                if t and t not in self.objects:
                    return [("jones.gc.sound", f"object {o.handle} refers to freed object {t}")]
        if self.collected:
            stray = set(self.objects) - self.reachable()
            if stray:
                return [("jones.gc.complete", f"objects {sorted(stray)[:5]} survived a full collection unreachable")]
        return []


# -- the GC calls' rules -------------------------------------------------------------


class Collected(Protocol):
    """What the GC rules read and change of the phys model."""

    gc: GcHeap


def expect_gc_new(m: Collected, size: int, nrefs: int = 2) -> Expect:
    if not 1 <= size <= MAX_SIZE or not 0 <= nrefs <= MAX_REFS:
        return exactly("jones.gc.handle-valid", K_EINVAL)
    used = set(m.gc.objects) | m.gc.dead
    return checked("memspec.gc.handle-fresh", Outcome(value=m.gc.next_handle), "a fresh handle",
                   ("memspec.gc.handle-fresh", lambda o: None if o.ok and o.value is not None and o.value > 0
                    and o.value not in used else f"{o.describe()} is not a fresh handle"))


def apply_gc_new(m: Collected, o: Outcome, size: int, nrefs: int = 2) -> None:
    if not (o.ok and o.value and o.value > 0 and 1 <= size <= MAX_SIZE and 0 <= nrefs <= MAX_REFS):
        return
    g = m.gc
    g.objects[o.value] = GcObject(o.value, size, [0] * nrefs, g.place(size), g.seq)
    g.seq += 1
    g.next_handle = max(g.next_handle, o.value + 1)
    g.collected = False


def expect_gc_ref(m: Collected, obj: int, slot: int, target: int = 0) -> Expect:
    o = m.gc.objects.get(obj)
    if o is None or not 0 <= slot < len(o.refs) or (target and target not in m.gc.objects):
        return exactly("jones.gc.handle-valid", K_EINVAL)
    return exactly("jones.gc.refs-kept", OK0)


def apply_gc_ref(m: Collected, o: Outcome, obj: int, slot: int, target: int = 0) -> None:
    if o.ok and obj in m.gc.objects:
        m.gc.objects[obj].refs[slot] = target
        m.gc.collected = False


def expect_gc_get(m: Collected, obj: int, slot: int) -> Expect:
    o = m.gc.objects.get(obj)
    if o is None or not 0 <= slot < len(o.refs):
        return exactly("jones.gc.handle-valid", K_EINVAL)
    return exactly("jones.gc.refs-kept", Outcome(value=o.refs[slot]))


def expect_gc_root(m: Collected, obj: int) -> Expect:
    if obj in m.gc.objects:
        return exactly("jones.gc.roots", OK0)
    return exactly("jones.gc.handle-valid", K_EINVAL)


def apply_gc_root(m: Collected, o: Outcome, obj: int) -> None:
    if o.ok and obj in m.gc.objects:
        m.gc.roots.add(obj)


def expect_gc_unroot(m: Collected, obj: int) -> Expect:
    if obj in m.gc.roots:
        return exactly("jones.gc.roots", OK0)
    return exactly("jones.gc.handle-valid", K_EINVAL)


def apply_gc_unroot(m: Collected, o: Outcome, obj: int) -> None:
    if o.ok:
        m.gc.roots.discard(obj)
        m.gc.collected = False


def expect_gc_collect(m: Collected) -> Expect:
    live = m.gc.reachable()
    dead = set(m.gc.objects) - live
    n = len(dead)

    def sound(o: Outcome) -> str | None:
        freed = dict(o.detail).get("freed")
        if freed is not None and set(freed) & live:
            return f"freed reachable objects {sorted(set(freed) & live)[:5]}"
        if o.value is not None and o.value > n:
            return f"freed {o.value} objects but only {n} were unreachable"
        return None

    def complete(o: Outcome) -> str | None:
        freed = dict(o.detail).get("freed")
        if freed is not None and dead - set(freed):
            return f"left unreachable objects {sorted(dead - set(freed))[:5]}"
        if o.value != n:
            return f"freed {o.describe()} objects, but {n} were unreachable"
        return None

    return checked("jones.gc.complete", Outcome(value=n, detail=(("freed", tuple(sorted(dead))),)),
                   f"{n} objects freed", ("jones.gc.sound", sound), ("jones.gc.complete", complete))


def apply_gc_collect(m: Collected, o: Outcome) -> None:
    g = m.gc
    live = g.reachable()
    freed = dict(o.detail).get("freed")
    dead = set(freed) if freed is not None else set(g.objects) - live
    g.last_pause = g.pause_for(live)
    for h in dead:
        # a root is never garbage; if a (broken) collector freed one, the root now dangles,
        # and the soundness invariant reports it
        g.objects.pop(h, None)
        g.dead.add(h)
        g.bound.pop(h, None)
    g.collected = True


def expect_gc_compact(m: Collected) -> Expect:
    new = m.gc.compacted()
    moved = sum(1 for h, a in new.items() if m.gc.objects[h].addr != a)
    total = len(m.gc.objects)
    return checked("jones.gc.compact-slides", Outcome(value=moved), f"0..{total} objects moved",
                   ("jones.gc.compact-slides", lambda o: None if o.value is not None and 0 <= o.value <= total
                    else f"observed {o.describe()}"), impl_defined=True)


def apply_gc_compact(m: Collected, o: Outcome) -> None:
    new = m.gc.compacted()
    bound = GC_BASE + sum(gc_round(x.size) for x in m.gc.objects.values())
    for h, a in new.items():
        ob = m.gc.objects[h]
        ob.addr, ob.confirmed = a, False
        m.gc.bound[h] = bound


def expect_gc_live(m: Collected, obj: int) -> Expect:
    if obj in m.gc.objects:
        return exactly("jones.gc.sound", Outcome(value=1))
    if obj in m.gc.dead:
        return exactly("jones.gc.complete", Outcome(value=0))
    return exactly("jones.gc.handle-valid", K_EINVAL)


def expect_gc_addr(m: Collected, obj: int) -> Expect:
    ob = m.gc.objects.get(obj)
    if ob is None:
        return exactly("jones.gc.handle-valid", K_EINVAL)
    if ob.confirmed:
        return exactly("memspec.gc.address-stable", Outcome(value=ob.addr))
    bound = m.gc.bound.get(obj, GC_BASE + GC_SIZE)
    size = gc_round(ob.size)

    def place(o: Outcome) -> str | None:
        v = o.value
        if v is None or v % GC_ALIGN or not GC_BASE <= v or v + size > bound:
            return f"{o.describe()} is not a {GC_ALIGN}-aligned address below {bound:#x} in the GC heap"
        for other in m.gc.objects.values():
            if other.confirmed and other.handle != obj and v < other.addr + gc_round(other.size) \
                    and other.addr < v + size:
                return f"{v:#x} overlaps object {other.handle} at {other.addr:#x}"
        return None
    clause = "jones.gc.compact-slides" if obj in m.gc.bound else "memspec.gc.address-stable"
    return checked(clause, Outcome(value=ob.addr), "an address of the GC heap", (clause, place))


def apply_gc_addr(m: Collected, o: Outcome, obj: int) -> None:
    ob = m.gc.objects.get(obj)
    if ob is not None and o.ok and o.value is not None and o.value > 0:
        ob.addr, ob.confirmed = o.value, True


def expect_gc_pause(m: Collected) -> Expect:
    marked = len(m.gc.reachable()) if m.gc.collected else 0
    want = m.gc.last_pause
    return checked("jones.gc.pause-accounted", Outcome(value=want), f"{want} work units",
                   ("jones.gc.pause-accounted", lambda o: None if o.value is not None and o.value >= marked
                    else f"a pause must at least mark the {marked} live objects; observed {o.describe()}"),
                   impl_defined=True)


RULES = {
    "gc_new": Rule(expect_gc_new, apply_gc_new),
    "gc_ref": Rule(expect_gc_ref, apply_gc_ref),
    "gc_get": Rule(expect_gc_get),
    "gc_root": Rule(expect_gc_root, apply_gc_root),
    "gc_unroot": Rule(expect_gc_unroot, apply_gc_unroot),
    "gc_collect": Rule(expect_gc_collect, apply_gc_collect),
    "gc_compact": Rule(expect_gc_compact, apply_gc_compact),
    "gc_live": Rule(expect_gc_live),
    "gc_addr": Rule(expect_gc_addr, apply_gc_addr),
    "gc_pause": Rule(expect_gc_pause),
}
