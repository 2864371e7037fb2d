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
"""

from __future__ import annotations

from dataclasses import dataclass

from .intervals import IntervalMap

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
