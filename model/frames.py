"""Frames, zones and NUMA nodes: the machine the phys layer allocates from.

The law: every frame has exactly one owner at every moment -- a free list, a
slab, a page table, an anonymous page, the page cache or the kernel (reserved,
vmalloc, DMA, kmalloc_large, plain ``alloc_pages``).  ``FrameTable`` keeps one
row per frame (a numpy array of ``Owner``) and records every attempt to claim a
frame that is not free, or to release one its caller does not own, as a
violation for the invariant ``no_frame_owned_twice``.

Worked example (the default machine): two nodes of 8192 frames (32 MiB) each;
node 0's first 4096 frames (16 MiB) are ZONE_DMA, as on x86 where ISA DMA can
only reach 24 address bits; frame 0 is reserved by the kernel (the BIOS data
area), so no allocator ever hands out pfn 0 and a physical address 0 never
names a buffer.

A machine may end anywhere: nodes and the DMA zone have any positive number of
frames (8191, 5000, 1025), as real memory maps do.  Blocks still never straddle a
zone or a node: the buddy allocator seeds each zone with the largest naturally
aligned blocks that fit inside it (``linux.buddy.init-free-ranges``) and never
merges across a zone boundary (``linux.buddy.coalesce``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

PAGE_SHIFT = 12
MAX_ORDER = 10          # orders 0..10: 4 KiB .. 4 MiB (Linux MAX_PAGE_ORDER on x86-64)


class Owner(enum.IntEnum):
    """Who owns a frame (the page's type in struct page terms)."""

    FREE = 0        # on a buddy free list
    SLAB = 1
    PAGETABLE = 2
    ANON = 3
    PAGECACHE = 4
    KERNEL = 5


@dataclass(frozen=True, slots=True)
class Zone:
    """A pfn range of one node with one purpose (include/linux/mmzone.h ``struct zone``)."""

    name: str       # "DMA", "Normal"
    node: int
    start: int      # first pfn
    end: int        # one past the last pfn

    def __contains__(self, pfn: int) -> bool:
        return self.start <= pfn < self.end

    @property
    def label(self) -> str:
        return f"Node {self.node}, zone {self.name}"


@dataclass(frozen=True, slots=True)
class Machine:
    """A machine description: frames per node, the DMA zone, node distances (ACPI SLIT)."""

    node_frames: tuple[int, ...] = (8192, 8192)
    dma_frames: int = 4096
    distances: tuple[tuple[int, ...], ...] = ((10, 21), (21, 10))
    reserved: tuple[int, ...] = (0,)
    # derived tables, computed once (zones, pfn -> zone index, node starts)
    _zones: tuple[Zone, ...] = field(default=(), init=False, repr=False, compare=False, hash=False)
    zone_index: np.ndarray = field(default=None, init=False, repr=False, compare=False, hash=False)  # type: ignore[assignment]
    _starts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # any positive sizes (linux.buddy.init-free-ranges: a zone need not end on a max-order boundary)
        if not self.node_frames or any(n <= 0 for n in self.node_frames) \
                or not 0 <= self.dma_frames <= self.node_frames[0]:
            raise ValueError("nodes need a positive number of frames, and the DMA zone 0 to node 0's frames")
        if any(not 0 <= r < sum(self.node_frames) for r in self.reserved):
            raise ValueError("reserved frames must be frames of the machine")
        if len(self.distances) != len(self.node_frames) or any(len(r) != len(self.node_frames)
                                                               for r in self.distances):
            raise ValueError("the distance table must be nodes x nodes")
        starts = tuple(sum(self.node_frames[:n]) for n in range(len(self.node_frames)))
        object.__setattr__(self, "_starts", starts)
        zones = []
        for n, lo in enumerate(starts):
            hi = lo + self.node_frames[n]
            if n == 0 and self.dma_frames:
                zones.append(Zone("DMA", 0, lo, lo + self.dma_frames))
                lo += self.dma_frames
            if hi > lo:
                zones.append(Zone("Normal", n, lo, hi))
        object.__setattr__(self, "_zones", tuple(zones))
        index = np.zeros(sum(self.node_frames), dtype=np.int8)
        for i, z in enumerate(zones):
            index[z.start:z.end] = i
        object.__setattr__(self, "zone_index", index)

    @classmethod
    def from_facts(cls, facts: dict) -> "Machine":
        m = facts.get("phys_machine") or {}
        kw = {}
        if "node_frames" in m:
            kw["node_frames"] = tuple(int(x) for x in m["node_frames"])
        if "dma_frames" in m:
            kw["dma_frames"] = int(m["dma_frames"])
        if "distances" in m:
            kw["distances"] = tuple(tuple(int(x) for x in r) for r in m["distances"])
        if "reserved" in m:
            kw["reserved"] = tuple(int(x) for x in m["reserved"])
        if "node_frames" in kw and "distances" not in kw:
            n = len(kw["node_frames"])
            kw["distances"] = tuple(tuple(10 if i == j else 21 for j in range(n)) for i in range(n))
        return cls(**kw)

    @classmethod
    def shaped(cls, node_frames: tuple[int, ...], dma_frames: int, reserved: tuple[int, ...] = (0,)) -> "Machine":
        """A machine of ``node_frames`` with a DMA zone of ``dma_frames`` (the call ``phys_boot``): the
        default node distances (10 local, 21 remote) and the ``reserved`` frames that lie inside it."""
        n = len(node_frames)
        return cls(node_frames=tuple(node_frames), dma_frames=dma_frames,
                   distances=tuple(tuple(10 if i == j else 21 for j in range(n)) for i in range(n)),
                   reserved=tuple(r for r in reserved if 0 <= r < sum(node_frames)))

    @property
    def nodes(self) -> int:
        return len(self.node_frames)

    @property
    def total(self) -> int:
        return sum(self.node_frames)

    def node_range(self, node: int) -> tuple[int, int]:
        start = self._starts[node]
        return start, start + self.node_frames[node]

    def node_of(self, pfn: int) -> int:
        if not 0 <= pfn < len(self.zone_index):
            return -1
        return self._zones[self.zone_index[pfn]].node

    @property
    def zones(self) -> tuple[Zone, ...]:
        return self._zones

    def zone_of(self, pfn: int) -> Zone | None:
        if not 0 <= pfn < len(self.zone_index):
            return None
        return self._zones[self.zone_index[pfn]]

    def fallback(self, node: int) -> list[int]:
        """Nodes by distance from ``node`` (the kernel's zonelist order, build_zonelists)."""
        return sorted(range(self.nodes), key=lambda n: (self.distances[node][n], n))


class FrameTable:
    """One owner per frame; claims and releases are checked as they happen."""

    __slots__ = ("machine", "owner", "node_of_pfn", "violations", "touched")

    def __init__(self, machine: Machine):
        self.machine = machine
        self.owner = np.zeros(machine.total, dtype=np.int8)
        self.node_of_pfn = np.zeros(machine.total, dtype=np.int8)
        for n in range(machine.nodes):
            lo, hi = machine.node_range(n)
            self.node_of_pfn[lo:hi] = n
        self.violations: list[tuple[str, str]] = []
        self.touched: list[tuple[int, int]] = []    # (pfn, count) claimed or released since the last check

    def claim(self, pfn: int, count: int, owner: Owner) -> None:
        """Give free frames [pfn, pfn+count) to ``owner``."""
        self.touched.append((pfn, count))
        if count == 1 and 0 <= pfn < len(self.owner) and not self.owner[pfn]:
            self.owner[pfn] = owner     # the common case (vmalloc, first touch), without slicing
            return
        rows = self.owner[pfn:pfn + count]
        if len(rows) != count or (rows != Owner.FREE).any():
            bad = pfn + int(np.flatnonzero(rows != Owner.FREE)[0]) if len(rows) == count else pfn
            self.violations.append(("memspec.phys.frame-one-owner",
                                    f"frame {bad} claimed for {Owner(owner).name} while owned by "
                                    f"{Owner(int(self.owner[bad])).name if bad < len(self.owner) else '?'}"))
        rows[:] = owner

    def release(self, pfn: int, count: int, owner: Owner) -> None:
        """Return frames [pfn, pfn+count) owned by ``owner`` to the free state."""
        self.touched.append((pfn, count))
        rows = self.owner[pfn:pfn + count]
        if (rows != owner).any():
            bad = pfn + int(np.flatnonzero(rows != owner)[0])
            self.violations.append(("memspec.phys.frame-one-owner",
                                    f"frame {bad} released by {Owner(owner).name} but owned by "
                                    f"{Owner(int(self.owner[bad])).name}"))
        rows[:] = Owner.FREE

    def is_free(self, pfn: int, count: int) -> bool:
        if pfn < 0 or pfn + count > len(self.owner):
            return False
        if count == 1:
            return not self.owner[pfn]
        return not self.owner[pfn:pfn + count].any()

    def free_count(self, node: int = -1) -> int:
        if node < 0:
            return int((self.owner == Owner.FREE).sum())
        lo, hi = self.machine.node_range(node)
        return int((self.owner[lo:hi] == Owner.FREE).sum())

    def counts(self) -> np.ndarray:
        """Frames per (node, owner): rows are nodes, columns ``Owner`` values."""
        out = np.zeros((self.machine.nodes, len(Owner) + 1), dtype=np.int64)
        np.add.at(out, (self.node_of_pfn.astype(np.int64), self.owner.astype(np.int64)), 1)
        return out
