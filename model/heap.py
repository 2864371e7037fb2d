"""A variable-size heap judged by what C11 §7.22.3 and POSIX promise, and a region (arena).

The heap's laws (not glibc's internals):

* a successful allocation is a non-null pointer, suitably aligned for any object
  with a fundamental alignment *that fits in the size asked for* (C23 §7.24.3
  p1, DR 445): 16 bytes on x86-64 (``alignof(max_align_t)``) from 16 bytes up,
  the largest power of two <= n below that (``fundamental_align``); the
  requested alignment for the aligned calls; its ``size`` bytes overlap no
  other live block;
* a failure is NULL with errno ENOMEM (POSIX), and leaves every block as it was
  (glibc also fails every request above PTRDIFF_MAX that way: a glibc-only rule);
* calloc's bytes read as zero; ``realloc`` keeps the first ``min(old, new)``
  bytes; a stored byte reads back until it is overwritten or freed;
* where the standard leaves a choice (``malloc(0)``, ``realloc(p, 0)``,
  an alignment that is not a power of two for aligned_alloc/memalign) every
  permitted answer is allowed and recorded as implementation-defined;
* anything the standard calls undefined (freeing a pointer twice, touching
  bytes outside a live block) is judged *unknown* -- and real targets refuse
  to run it.

Worked example: ``p = malloc(5000)`` then ``heap_fill(p, 5000, 0x41)`` then
``q = realloc(p, 9000)``: ``heap_count(q, 5000, 0x41)`` must be 5000 and
``heap_count(q+5000, 4000, 0x41)`` anything from 0 to 4000 (indeterminate).

Contents are kept as runs of bytes with a provenance code, so that a wrong byte is
blamed on the clause that promised it.

The rules of the region and heap calls (``RULES``) follow: ``arena_*`` after Hanson, the
C library's calls after C11 §7.22.3 / C23 §7.24.3 and POSIX, with glibc's documented
extras only when the target's fact ``malloc_rules`` says glibc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from memspec.records import Outcome

from .allocator import K_EINVAL, NULL_EINVAL, NULL_ENOMEM, OK0, checked, is_pow2, next_pow2, not_failed, unknown
from .expect import Expect, exactly
from .frames import PAGE_SHIFT
from .intervals import IntervalMap
from .rules import Rule

PAGE = 1 << PAGE_SHIFT

MAX_ALIGN = 16                  # alignof(max_align_t), x86-64 SysV ABI
PTRDIFF_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1
HEAP_BASE = 0x0000_1000_0000    # where the model's own heap places blocks
HEAP_END = 0x0000_7000_0000_0000



def fundamental_align(size: int) -> int:
    """The alignment a malloc/calloc/realloc block of ``size`` bytes must have (C23 §7.24.3 p1,
    after C17's DR 445): enough for every object with a fundamental alignment and a size <= ``size``.
    No such object is larger than its size, so below 16 bytes that is the largest power of two <= size.

    >>> [fundamental_align(n) for n in (0, 1, 3, 4, 8, 12, 15, 16, 100)]
    [1, 1, 2, 4, 8, 8, 8, 16, 16]
    """
    if size >= MAX_ALIGN:
        return MAX_ALIGN
    return 1 << (size.bit_length() - 1) if size > 0 else 1


# provenance of a known byte
UNKNOWN, STORED, ZEROED, MOVED = 0, 1, 2, 3
PROVENANCE_CLAUSE = {STORED: "c11.object.value-kept", ZEROED: "c11.calloc.zeroed",
                     MOVED: "c11.realloc.preserves-contents"}


class Contents:
    """The bytes of one block that the program can know: value and provenance per byte.

    Kept as runs (an interval map of ``[start, end) -> (value, provenance)``), never as an
    array of ``size`` bytes: a block may be as large as the address space allows (a
    realloc to 2^62 bytes is a well-formed call), and what the program can know about it
    is only what it stored, plus the zeroes calloc promised.  A byte in no run is
    indeterminate.
    """

    __slots__ = ("size", "runs")

    def __init__(self, size: int, zero: bool):
        self.size = size
        self.runs: IntervalMap[tuple[int, int]] = IntervalMap()
        if zero and size > 0:
            self.runs.set(0, size, (0, ZEROED))

    def fill(self, off: int, n: int, value: int) -> None:
        if n > 0:
            self.runs.set(off, off + n, (value & 0xFF, STORED))

    def load(self, off: int) -> tuple[int | None, int]:
        """(value, provenance) of one byte; value None if indeterminate."""
        hit = self.runs.find(off)
        if hit is None:
            return None, UNKNOWN
        v, k = hit[2]
        return v, k

    def count(self, off: int, n: int, value: int) -> tuple[int, int, int]:
        """(fewest, most, provenance) of bytes equal to ``value`` in [off, off+n)."""
        certain = known = 0
        seen: set[int] = set()
        for s, e, (v, k) in self.runs.overlapping(off, off + n):
            length = min(e, off + n) - max(s, off)
            known += length
            seen.add(k)
            if v == value & 0xFF:
                certain += length
        codes = [c for c in (MOVED, ZEROED, STORED) if c in seen]
        return certain, certain + (n - known), codes[0] if codes else UNKNOWN

    def moved(self, new_size: int) -> "Contents":
        """The contents after realloc to ``new_size``: the kept prefix is marked MOVED."""
        c = Contents(new_size, False)
        keep = min(self.size, new_size)
        for s, e, (v, _) in self.runs.overlapping(0, keep):
            c.runs.set(s, min(e, keep), (v, MOVED))
        return c


@dataclass(slots=True)
class Block:
    size: int
    contents: Contents


class Heap:
    """Live blocks by address; extent max(size, 1) so that malloc(0)'s pointer is unique too."""

    __slots__ = ("blocks",)

    def __init__(self) -> None:
        self.blocks: IntervalMap[Block] = IntervalMap()

    def live(self, ptr: int) -> Block | None:
        hit = self.blocks.find(ptr)
        return hit[2] if hit and hit[0] == ptr else None

    def inside(self, addr: int, n: int = 1) -> tuple[int, Block] | None:
        """The live block holding all of [addr, addr+n), with addr's offset in it."""
        hit = self.blocks.find(addr)
        if hit is None:
            return None
        start, _, b = hit
        off = addr - start
        return (off, b) if n >= 0 and off + n <= b.size else None

    def overlaps(self, addr: int, size: int, ignore: int | None = None) -> int | None:
        """The start of a live block (other than ``ignore``) that [addr, addr+max(size,1)) overlaps."""
        for s, _, _ in self.blocks.overlapping(addr, addr + max(size, 1)):
            if s != ignore:
                return s
        return None

    def add(self, addr: int, size: int, contents: Contents) -> None:
        self.blocks.set(addr, addr + max(size, 1), Block(size, contents))

    def remove(self, addr: int) -> Block | None:
        b = self.live(addr)
        if b is not None:
            self.blocks.remove(addr, addr + max(b.size, 1))
        return b

    def pick(self, size: int, align: int = MAX_ALIGN) -> int | None:
        """The model's own placement: first fit from the bottom of its heap range."""
        need = max(size, 1)
        cur = HEAP_BASE
        for s, e, _ in self.blocks.items():
            a = (cur + align - 1) // align * align
            if a + need <= s:
                return a
            cur = max(cur, e)
        a = (cur + align - 1) // align * align
        return a if a + need <= HEAP_END else None

    def audit(self) -> list[tuple[str, str]]:
        prev_end = -1
        for s, e, _ in self.blocks.items():
            if s < prev_end:
                return [("c11.malloc.disjoint", f"live blocks overlap at {s:#x}")]
            prev_end = e
        return []


@dataclass(slots=True)
class Arena:
    """A region (Hanson 1990; Ross 1967): bump allocation, everything freed at once."""

    base: int
    capacity: int
    cursor: int
    objects: int = 0

    @property
    def end(self) -> int:
        return self.base + self.capacity


ARENA_BASE = 0x0000_2000_0000_0000
ARENA_MAX = 1 << 26


# -- the region and heap calls' rules ------------------------------------------------


class Heaps(Protocol):
    """What the region and heap rules read and change of the phys model."""

    heap: Heap
    arenas: dict[int, Arena]            # base -> region
    glibc_malloc: bool                  # glibc's documented rules on top of C and POSIX (fact ``malloc_rules``)


def expect_arena_create(m: Heaps, capacity: int) -> Expect:
    if capacity <= 0 or capacity > ARENA_MAX:
        return exactly("hanson.arena.create-einval", NULL_EINVAL)
    top = max((a.base + (a.capacity + PAGE - 1) // PAGE * PAGE for a in m.arenas.values()), default=ARENA_BASE)

    def disjoint(o: Outcome) -> str | None:
        v = o.value
        if not v or v % PAGE:
            return f"{o.describe()} is not a page-aligned region base"
        for a in m.arenas.values():
            if v < a.end and a.base < v + capacity:
                return f"[{v:#x}, +{capacity:#x}) overlaps the region at {a.base:#x}"
        return None
    return checked("hanson.arena.disjoint", Outcome(value=top), "a new region",
                   not_failed("hanson.arena.disjoint", "address space"), ("hanson.arena.disjoint", disjoint))


def apply_arena_create(m: Heaps, o: Outcome, capacity: int) -> None:
    if o.ok and o.value and 0 < capacity <= ARENA_MAX:
        m.arenas[o.value] = Arena(o.value, capacity, o.value)


def expect_arena_alloc(m: Heaps, arena: int, size: int, align: int = 16) -> Expect:
    a = m.arenas.get(arena)
    if a is None or size < 0 or not is_pow2(align):
        return exactly("hanson.arena.einval", NULL_EINVAL)
    first = (a.cursor + align - 1) // align * align
    if first + size > a.end:
        return exactly("hanson.arena.enomem-when-full", NULL_ENOMEM)

    def bump(o: Outcome) -> str | None:
        v = o.value
        if not v or v % align:
            return f"{o.describe()} is not {align}-byte aligned"
        if v < a.cursor or v + size > a.end:
            return (f"[{v:#x}, +{size}) is not in the region's unused part "
                    f"[{a.cursor:#x}, {a.end:#x}) (earlier objects live until a reset)")
        return None
    return checked("hanson.arena.bump", Outcome(value=first), f"{size} bytes from the region",
                   not_failed("hanson.arena.enomem-when-full", f"{size} bytes of room"),
                   ("hanson.arena.bump", bump))


def apply_arena_alloc(m: Heaps, o: Outcome, arena: int, size: int, align: int = 16) -> None:
    a = m.arenas.get(arena)
    if a is not None and o.ok and o.value:
        a.cursor = o.value + size
        a.objects += 1


def expect_arena_known(m: Heaps, arena: int) -> Expect:
    return exactly("hanson.arena.reset", OK0) if arena in m.arenas else exactly("hanson.arena.einval", K_EINVAL)


def apply_arena_reset(m: Heaps, o: Outcome, arena: int) -> None:
    a = m.arenas.get(arena)
    if a is not None and o.ok:
        a.cursor, a.objects = a.base, 0


def apply_arena_destroy(m: Heaps, o: Outcome, arena: int) -> None:
    if o.ok:
        m.arenas.pop(arena, None)


def block_expect(m: Heaps, clause: str, size: int, align: int, default_align: int, ignore: int | None = None,
                 may_be_null: bool = False, impl: bool = False, align_clause: str | None = None,
                 null_clause: str = "posix.malloc.enomem", null_errno: tuple[str, ...] = ("ENOMEM",)) -> Expect:
    """A fresh block: non-null, ``align``-aligned, overlapping no live block (but ``ignore``);
    NULL is always allowed (insufficient storage) with an errno in ``null_errno`` (POSIX: ENOMEM),
    or with any errno when ``may_be_null``."""
    def null_ok(o: Outcome) -> str | None:
        if o.value == 0 and o.signal is None:
            if may_be_null or o.errno in null_errno:
                return None
            return f"a NULL result must set errno to {' or '.join(null_errno)}, observed {o.describe()}"
        if not o.ok or o.value is None:
            return f"observed {o.describe()}"
        return None

    def aligned(o: Outcome) -> str | None:
        if o.value and o.value % align:
            return f"{o.value:#x} is not {align}-byte aligned"
        return None

    def disjoint(o: Outcome) -> str | None:
        if o.value:
            if o.value + max(size, 1) > 1 << 64:
                return f"[{o.value:#x}, +{size}) wraps around the address space"
            other = m.heap.overlaps(o.value, size, ignore)
            if other is not None:
                return f"[{o.value:#x}, +{max(size, 1)}) overlaps the live block at {other:#x}"
        return None

    pick = m.heap.pick(size, max(align, default_align)) if size <= PTRDIFF_MAX else None
    default = Outcome(value=pick) if pick is not None else NULL_ENOMEM
    return checked(clause, default, f"a {align}-aligned block of {size} bytes overlapping no live block",
                   (null_clause, null_ok), (align_clause or clause, aligned),
                   ("c11.malloc.disjoint", disjoint), impl_defined=impl)


def fresh(m: Heaps, clause: str | None, size: int, ignore: int | None = None, may_be_null: bool = False,
          impl: bool = False, null_clause: str = "posix.malloc.enomem") -> Expect:
    """A malloc/calloc/realloc block: aligned for every fundamental type that fits in ``size``
    (16 from 16 bytes up; ``malloc(8)`` may be 8-aligned: C23 §7.24.3 p1, DR 445)."""
    small = size < MAX_ALIGN
    align_clause = "c23.malloc.aligned-small-size" if small else "c11.malloc.aligned-max-align-t"
    return block_expect(m, clause or align_clause, size, fundamental_align(size), MAX_ALIGN, ignore=ignore,
                        may_be_null=may_be_null, impl=impl, null_clause=null_clause,
                        align_clause=align_clause)


def too_big(m: Heaps, size: int, null_clause: str) -> Expect:
    """A request above PTRDIFF_MAX.  glibc fails it with ENOMEM by its own rule; any other allocator
    is held to POSIX only: no block that large fits the address space, and a NULL carries ENOMEM."""
    if m.glibc_malloc:
        return exactly("glibc.malloc.enomem-over-ptrdiff-max", NULL_ENOMEM)
    return checked(null_clause, NULL_ENOMEM, f"NULL with errno ENOMEM (no block of {size & SIZE_MAX:#x} bytes fits)",
                   (null_clause, lambda o: None if o.value == 0 and o.signal is None and o.errno == "ENOMEM"
                    else f"a NULL result must set errno to ENOMEM, observed {o.describe()}"))


def expect_malloc(m: Heaps, size: int) -> Expect:
    if size > PTRDIFF_MAX or size < 0:
        return too_big(m, size, "posix.malloc.enomem")
    if size == 0:
        return fresh(m, "c11.malloc.size0-impl-defined", 0, may_be_null=True, impl=True)
    return fresh(m, None, size)


def adopt(m: Heaps, o: Outcome, size: int, contents: Contents) -> None:
    if o.ok and o.value:
        m.heap.add(o.value, size, contents)


def apply_malloc(m: Heaps, o: Outcome, size: int) -> None:
    if 0 <= size <= PTRDIFF_MAX:
        adopt(m, o, size, Contents(size, zero=False))


def expect_calloc(m: Heaps, nmemb: int, size: int) -> Expect:
    if nmemb < 0 or size < 0 or nmemb * size > SIZE_MAX:
        return checked("c11.calloc.overflow", NULL_ENOMEM, "NULL with errno ENOMEM",
                       ("c11.calloc.overflow", lambda o: None if o.value == 0 and o.signal is None
                        else f"nmemb * size overflows size_t, so the result must be NULL; observed {o.describe()}"),
                       ("posix.calloc.enomem", lambda o: None if o.errno == "ENOMEM"
                        else f"a NULL result must set errno to ENOMEM, observed {o.describe()}"))
    total = nmemb * size
    if total > PTRDIFF_MAX:
        return too_big(m, total, "posix.calloc.enomem")
    if total == 0:
        return fresh(m, "c11.malloc.size0-impl-defined", 0, may_be_null=True, impl=True,
                     null_clause="posix.calloc.enomem")
    return fresh(m, None, total, null_clause="posix.calloc.enomem")


def apply_calloc(m: Heaps, o: Outcome, nmemb: int, size: int) -> None:
    if nmemb >= 0 and size >= 0 and nmemb * size <= PTRDIFF_MAX:
        adopt(m, o, nmemb * size, Contents(nmemb * size, zero=True))


def expect_realloc(m: Heaps, ptr: int, size: int) -> Expect:
    if ptr == 0:
        return expect_malloc(m, size)
    old = m.heap.live(ptr)
    if old is None:
        return unknown("c11.free.undefined-non-live", "undefined: realloc of a pointer that is not live")
    if size > PTRDIFF_MAX or size < 0:
        return too_big(m, size, "posix.realloc.enomem")
    if size == 0:
        return fresh(m, "c11.realloc.size0-impl-defined", 0, ignore=ptr, may_be_null=True, impl=True)
    e = fresh(m, None, size, ignore=ptr, null_clause="posix.realloc.enomem")
    # the model's own choice: grow or shrink in place when the room is there
    if ptr + size <= HEAP_END and m.heap.overlaps(ptr, size, ignore=ptr) is None:
        e = Expect(e.clause, Outcome(value=ptr), e.describe, predicate=e.predicate, blame_by=e.blame_by,
                   covers=e.covers)
    return e


def apply_realloc(m: Heaps, o: Outcome, ptr: int, size: int) -> None:
    if ptr == 0:
        apply_malloc(m, o, size)
        return
    old = m.heap.live(ptr)
    if old is None or size < 0 or size > PTRDIFF_MAX:
        return
    if o.value == 0:
        if size == 0:
            m.heap.remove(ptr)    # glibc (and C17's allowed choice): realloc(p, 0) freed p
        return                       # a failure leaves the old block untouched
    if o.ok and o.value:
        m.heap.remove(ptr)
        m.heap.add(o.value, size, old.contents.moved(size))


def expect_free(m: Heaps, ptr: int) -> Expect:
    if ptr == 0:
        return exactly("c11.free.null-noop", Outcome())
    if m.heap.live(ptr) is None:
        return unknown("c11.free.undefined-non-live", "undefined: free of a pointer that is not live")
    return exactly("c11.free.deallocates", Outcome())


def apply_free(m: Heaps, o: Outcome, ptr: int) -> None:
    if ptr:
        m.heap.remove(ptr)


def expect_posix_memalign(m: Heaps, alignment: int, size: int) -> Expect:
    if alignment % 8 or not is_pow2(alignment):
        return exactly("posix.posix_memalign.einval-not-power-of-two" if alignment % 8 == 0
                       else "posix.posix_memalign.einval-not-multiple-of-pointer", NULL_EINVAL)
    if size > PTRDIFF_MAX or size < 0:
        return too_big(m, size, "posix.posix_memalign.enomem")
    if size == 0:
        return block_expect(m, "posix.posix_memalign.size0-impl-defined", 0, alignment, MAX_ALIGN,
                            may_be_null=True, impl=True, align_clause="posix.posix_memalign.aligned")
    return block_expect(m, "posix.posix_memalign.aligned", size, alignment, MAX_ALIGN,
                        null_clause="posix.posix_memalign.enomem")


def expect_aligned_alloc(m: Heaps, alignment: int, size: int) -> Expect:
    if size > PTRDIFF_MAX or size < 0 or alignment > 1 << 62 or alignment < 0:
        if m.glibc_malloc:
            return null_any("glibc.malloc.enomem-over-ptrdiff-max")
        return null_errno("posix.aligned_alloc.errors", ("ENOMEM", "EINVAL"))
    if not is_pow2(alignment):
        # C17 7.22.3.1 (DR 460): an unsupported alignment yields NULL (POSIX.1-2024: with EINVAL);
        # glibc before 2.38 instead rounds it up to a power of two.  Both recorded as implementation-defined.
        return block_expect(m, "c11.aligned_alloc.unsupported-alignment", size, next_pow2(alignment),
                            MAX_ALIGN, impl=True, null_clause="posix.aligned_alloc.errors",
                            null_errno=("EINVAL", "ENOMEM"))
    if size == 0:
        return block_expect(m, "c11.malloc.size0-impl-defined", 0, alignment, MAX_ALIGN, may_be_null=True,
                            impl=True, align_clause="c11.aligned_alloc.aligned")
    return block_expect(m, "c11.aligned_alloc.aligned", size, alignment, MAX_ALIGN,
                        null_clause="posix.aligned_alloc.errors", null_errno=("ENOMEM", "EINVAL"))


def null_any(clause: str) -> Expect:
    return checked(clause, NULL_ENOMEM, "NULL",
                   (clause, lambda o: None if o.value == 0 else f"observed {o.describe()}"))


def null_errno(clause: str, errnos: tuple[str, ...]) -> Expect:
    return checked(clause, Outcome(value=0, errno=errnos[0]), f"NULL with errno {' or '.join(errnos)}",
                   (clause, lambda o: None if o.value == 0 and o.signal is None and o.errno in errnos
                    else f"observed {o.describe()}"))


def expect_memalign(m: Heaps, alignment: int, size: int) -> Expect:
    # memalign is in neither C nor POSIX: its errno is documented for glibc only (memalign(3))
    if size > PTRDIFF_MAX or size < 0 or alignment > 1 << 62 or alignment < 0:
        return null_any("glibc.malloc.enomem-over-ptrdiff-max" if m.glibc_malloc
                        else "linux.memalign.null-on-failure")
    if not is_pow2(alignment) and not m.glibc_malloc:
        return unknown("glibc.memalign.rounds-up", "memalign(3): the alignment must be a power of two; "
                       "only glibc documents what it does with another")
    if size == 0:
        return block_expect(m, "c11.malloc.size0-impl-defined", 0, next_pow2(alignment), MAX_ALIGN,
                            may_be_null=True, impl=True, align_clause="glibc.memalign.rounds-up")
    return block_expect(m, "glibc.memalign.rounds-up", size, next_pow2(alignment), MAX_ALIGN,
                        may_be_null=not (is_pow2(alignment) and m.glibc_malloc),
                        impl=not is_pow2(alignment),
                        null_clause="posix.malloc.enomem" if m.glibc_malloc
                        else "linux.memalign.null-on-failure")


def apply_aligned(m: Heaps, o: Outcome, alignment: int, size: int) -> None:
    apply_malloc(m, o, size)


def expect_malloc_usable_size(m: Heaps, ptr: int) -> Expect:
    if ptr == 0:
        return exactly("glibc.malloc_usable_size.at-least-size", OK0)
    b = m.heap.live(ptr)
    if b is None:
        return unknown("c11.free.undefined-non-live", "undefined: not a live block")
    return checked("glibc.malloc_usable_size.at-least-size", Outcome(value=b.size), f">= {b.size}",
                   ("glibc.malloc_usable_size.at-least-size",
                    lambda o: None if o.ok and o.value is not None and o.value >= b.size
                    else f"{o.describe()} is less than the {b.size} bytes asked for"))


def expect_heap_store(m: Heaps, addr: int, value: int = 0x41) -> Expect:
    if m.heap.inside(addr) is None:
        return unknown("c11.object.out-of-bounds", "undefined: the byte is outside every live block")
    return exactly("c11.object.value-kept", Outcome())


def apply_heap_store(m: Heaps, o: Outcome, addr: int, value: int = 0x41) -> None:
    hit = m.heap.inside(addr)
    if hit is not None:
        hit[1].contents.fill(hit[0], 1, value)


def expect_heap_fill(m: Heaps, addr: int, length: int, value: int = 0x41) -> Expect:
    if length < 0 or m.heap.inside(addr, length) is None:
        return unknown("c11.object.out-of-bounds", "undefined: the range leaves its live block")
    return exactly("c11.object.value-kept", Outcome())


def apply_heap_fill(m: Heaps, o: Outcome, addr: int, length: int, value: int = 0x41) -> None:
    hit = m.heap.inside(addr, length)
    if hit is not None and length > 0:
        hit[1].contents.fill(hit[0], length, value)


def expect_heap_load(m: Heaps, addr: int) -> Expect:
    hit = m.heap.inside(addr)
    if hit is None:
        return unknown("c11.object.out-of-bounds", "undefined: the byte is outside every live block")
    v, prov = hit[1].contents.load(hit[0])
    if v is None:
        return checked("c11.malloc.indeterminate", Outcome(value=0), "any byte value",
                       ("c11.malloc.indeterminate", lambda o: None if o.value is not None and 0 <= o.value < 256
                        else f"observed {o.describe()}"), impl_defined=True)
    return exactly(PROVENANCE_CLAUSE[prov], Outcome(value=v))


def expect_heap_count(m: Heaps, addr: int, length: int, value: int = 0x41) -> Expect:
    if length < 0 or m.heap.inside(addr, length) is None:
        return unknown("c11.object.out-of-bounds", "undefined: the range leaves its live block")
    off, b = m.heap.inside(addr, length)  # type: ignore[misc]
    lo, hi, prov = b.contents.count(off, length, value)
    clause = PROVENANCE_CLAUSE.get(prov, "c11.malloc.indeterminate")
    if lo == hi:
        return exactly(clause, Outcome(value=lo))
    return checked(clause, Outcome(value=lo), f"between {lo} and {hi}",
                   (clause, lambda o: None if o.value is not None and lo <= o.value <= hi
                    else f"observed {o.describe()}"), impl_defined=True)


RULES = {
    "arena_create": Rule(expect_arena_create, apply_arena_create),
    "arena_alloc": Rule(expect_arena_alloc, apply_arena_alloc),
    "arena_reset": Rule(expect_arena_known, apply_arena_reset),
    "arena_destroy": Rule(expect_arena_known, apply_arena_destroy),
    "malloc": Rule(expect_malloc, apply_malloc),
    "calloc": Rule(expect_calloc, apply_calloc),
    "realloc": Rule(expect_realloc, apply_realloc),
    "free": Rule(expect_free, apply_free),
    "posix_memalign": Rule(expect_posix_memalign, apply_aligned),
    "aligned_alloc": Rule(expect_aligned_alloc, apply_aligned),
    "memalign": Rule(expect_memalign, apply_aligned),
    "malloc_usable_size": Rule(expect_malloc_usable_size),
    "heap_store": Rule(expect_heap_store, apply_heap_store),
    "heap_fill": Rule(expect_heap_fill, apply_heap_fill),
    "heap_load": Rule(expect_heap_load),
    "heap_count": Rule(expect_heap_count),
}
