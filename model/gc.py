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
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
