"""The binary buddy allocator (Knuth TAOCP 1 §2.5; Linux mm/page_alloc.c).

Laws:

* a block of order ``k`` is 2^k frames starting at a pfn that is a multiple of
  2^k; its buddy is the block at ``pfn ^ 2^k``;
* allocation takes a free block of order >= k and splits it, putting the
  unused halves on the lower orders' free lists (``expand``);
* freeing merges a block with its buddy while the buddy is free and of the
  same order (``__free_one_page``), so no two free buddies are ever left
  apart: the free lists are a function of the set of allocated frames;
* blocks never cross a zone, which may end anywhere (seeded per zone, merged within it).

Worked example (the seed's figure): a 5 KB request needs two 4 KiB frames, so
order 1, an 8 KiB block: 8192 - 5120 = 3072 bytes (3 KB) of internal
fragmentation (``internal_waste(5 * 1024) == 3 * 1024``).

The rules of the buddy calls (``RULES``): ``buddy_alloc(order, node, gfp, owner)`` may
return any free, order-aligned block of the first zone of the zonelist that has one
(``linux.buddy.alloc-from-free``, ``linux.buddy.zonelist-order``); ``buddy_free`` frees
what ``buddy_alloc`` handed out and refuses anything else (``linux.buddy.free-unallocated``).
The other allocators that take blocks (slab, kmalloc_large, DMA, first touch) judge their
block with ``Buddy.block_checks`` and choose it with ``Buddy.block_expect``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Container, Iterable, Iterator, Protocol

import numpy as np

from memspec.consts import GFP
from memspec.records import Outcome

from .allocator import K_EINVAL, K_ENOMEM, OK0, Check, checked, not_failed
from .expect import Expect, exactly
from .frames import MAX_ORDER, PAGE_SHIFT, FrameTable, Machine, Owner, Zone
from .rules import Rule

PAGE = 1 << PAGE_SHIFT


def order_for(size: int) -> int:
    """get_order(size): the smallest order whose block holds ``size`` bytes (size >= 1)."""
    pages = max(1, (size + PAGE - 1) >> PAGE_SHIFT)
    return (pages - 1).bit_length()


def internal_waste(size: int) -> int:
    """Bytes a buddy block of ``order_for(size)`` wastes on a ``size``-byte request."""
    return (PAGE << order_for(size)) - size


class Buddy:
    """Free lists per order over all zones; ``owner`` records who holds each allocated block."""

    __slots__ = ("machine", "frames", "free_head", "lists", "allocated", "used", "head_order", "free_frames", "touched")

    def __init__(self, machine: Machine, frames: FrameTable):
        self.machine = machine
        self.frames = frames
        self.free_head: dict[int, int] = {}                          # pfn -> order of a free block
        self.lists: list[set[int]] = [set() for _ in range(MAX_ORDER + 1)]
        self.allocated: dict[int, tuple[int, Owner]] = {}            # pfn -> (order, owner)
        self.used = [0] * machine.nodes                               # frames in allocated blocks, per node
        # the same free lists as a per-frame array (order of the free block headed there, -1: none) and
        # the free frames per node, both kept by _push/_pop: what the incremental audit reads
        self.head_order = np.full(machine.total, -1, dtype=np.int8)
        self.free_frames = [0] * machine.nodes
        self.touched: set[int] = set()                                # heads pushed or popped since the last audit
        reserved = set(machine.reserved)
        for r in reserved:
            frames.owner[r] = Owner.KERNEL
        # linux.buddy.init-free-ranges (memblock_free_all): every non-reserved frame of a zone in the largest
        # aligned blocks that fit before the zone's end, wherever it is (already maximally coalesced)
        for z in machine.zones:
            pfn = z.start
            while pfn < z.end:
                if pfn in reserved:
                    pfn += 1
                    continue
                order = MAX_ORDER
                while order > 0 and (pfn % (1 << order) or pfn + (1 << order) > z.end
                                     or any(pfn <= r < pfn + (1 << order) for r in reserved)):
                    order -= 1
                self._push(pfn, order)
                pfn += 1 << order

    # -- free-list structure ---------------------------------------------------

    def _push(self, pfn: int, order: int) -> None:
        self.free_head[pfn] = order
        self.lists[order].add(pfn)
        self.touched.add(pfn)
        if 0 <= pfn < len(self.head_order):
            self.head_order[pfn] = order
            self.free_frames[self.frames.node_of_pfn[pfn]] += 1 << order

    def _pop(self, pfn: int) -> int:
        order = self.free_head.pop(pfn)
        self.lists[order].discard(pfn)
        self.touched.add(pfn)
        if 0 <= pfn < len(self.head_order):
            self.head_order[pfn] = -1
            self.free_frames[self.frames.node_of_pfn[pfn]] -= 1 << order
        return order

    def containing(self, pfn: int, order: int) -> int | None:
        """The head of the free block that holds all of [pfn, pfn + 2^order), if any."""
        for k in range(order, MAX_ORDER + 1):
            head = pfn & ~((1 << k) - 1)
            if self.free_head.get(head) == k:
                return head
        return None

    def can_take(self, pfn: int, order: int) -> bool:
        return pfn >= 0 and pfn % (1 << order) == 0 and self.containing(pfn, order) is not None

    # -- allocation ----------------------------------------------------------------

    def zonelist(self, nodes: Iterable[int], dma_only: bool = False, below: int | None = None) -> list[Zone]:
        """Zones to try, in order: each node's Normal zone before its DMA zone (lowmem
        reserve keeps DMA for those who need it); ``below`` keeps zones under a pfn limit."""
        out = []
        for n in nodes:
            zs = [z for z in self.machine.zones if z.node == n]
            zs.sort(key=lambda z: z.name == "DMA")
            for z in zs:
                if dma_only and z.name != "DMA":
                    continue
                if below is not None and z.start >= below:
                    continue
                out.append(z)
        return out

    def blocks_in(self, zone: Zone, order: int, limit: int | None = None) -> Iterator[tuple[int, int]]:
        """Free blocks of order >= ``order`` inside ``zone`` (and below pfn ``limit``)."""
        for k in range(order, MAX_ORDER + 1):
            for head in self.lists[k]:
                if head in zone and (limit is None or head + (1 << order) <= limit):
                    yield head, k

    def first_zone_with(self, zones: list[Zone], order: int, limit: int | None = None) -> Zone | None:
        for z in zones:
            if next(self.blocks_in(z, order, limit), None) is not None:
                return z
        return None

    def pick(self, zone: Zone, order: int, limit: int | None = None) -> int | None:
        """The model's own choice: __rmqueue_smallest -- the smallest order that has a
        block, its lowest-addressed block, split keeping the low half."""
        for k in range(order, MAX_ORDER + 1):
            heads = [h for h in self.lists[k] if h in zone and (limit is None or h + (1 << order) <= limit)]
            if heads:
                return min(heads)
        return None

    def block_checks(self, order: int, zone: Zone, clause_zone: str, shift: int = 0) -> list[Check]:
        """A value names a free, aligned block of ``order`` in ``zone`` (value >> shift is its pfn)."""
        n = 1 << order

        def aligned(o: Outcome) -> str | None:
            pfn = o.value >> shift if o.value is not None else -1
            if o.value is None or o.value & ((1 << shift) - 1) or pfn % n:
                return f"{o.describe()} does not start an order-{order} aligned block"
            return None

        def free(o: Outcome) -> str | None:
            pfn = o.value >> shift
            if not self.can_take(pfn, order):
                return f"frames {pfn}..{pfn + n - 1} are not all free"
            return None

        def in_zone(o: Outcome) -> str | None:
            pfn = o.value >> shift
            if pfn not in zone:
                z = self.machine.zone_of(pfn)
                return f"pfn {pfn} is in {z.label if z else 'no zone'}, but {zone.label} had a free block"
            return None

        return [not_failed("linux.buddy.no-spurious-failure", f"an order-{order} block in {zone.label}"),
                ("linux.buddy.block-aligned", aligned), ("linux.buddy.alloc-from-free", free),
                (clause_zone, in_zone)]

    def block_expect(self, zones: list[Zone], order: int, clause: str, enomem: str, clause_zone: str,
                     shift: int = 0, what: str = "") -> Expect:
        """Any free order-``order`` block of the first of ``zones`` that has one (``value >> shift`` is
        its pfn); ``-1 ENOMEM`` under ``enomem`` when none has."""
        zone = self.first_zone_with(zones, order)
        if zone is None:
            return exactly(enomem, K_ENOMEM)
        return checked(clause, Outcome(value=self.pick(zone, order) << shift),
                       f"{what or f'a free order-{order} block'} in {zone.label}",
                       *self.block_checks(order, zone, clause_zone, shift))

    def take(self, pfn: int, order: int, owner: Owner) -> None:
        """Allocate [pfn, pfn + 2^order) out of the free block holding it, splitting it."""
        head = self.containing(pfn, order)
        if head is None:
            self.frames.violations.append(("linux.buddy.alloc-from-free",
                                           f"block {pfn}/order {order} taken but not free"))
            self.frames.claim(pfn, 1 << order, owner)
            self.allocated[pfn] = (order, owner)
            self.used[self.machine.node_of(pfn)] += 1 << order
            return
        k = self._pop(head)
        # expand(): halve the block, keeping the half that holds pfn, freeing the other
        while k > order:
            k -= 1
            half = head + (1 << k)
            if pfn >= half:
                self._push(head, k)
                head = half
            else:
                self._push(half, k)
        self.frames.claim(pfn, 1 << order, owner)
        self.allocated[pfn] = (order, owner)
        self.used[self.machine.node_of(pfn)] += 1 << order

    def give(self, pfn: int) -> int:
        """Free an allocated block, merging with free buddies; returns its order."""
        order, owner = self.allocated.pop(pfn)
        self.used[self.machine.node_of(pfn)] -= 1 << order
        self.frames.release(pfn, 1 << order, owner)
        self.coalesce(pfn, order)
        return order

    def coalesce(self, pfn: int, order: int) -> None:
        zone = self.machine.zone_of(pfn)
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if self.free_head.get(buddy) != order or zone is None or buddy not in zone:
                break
            self._pop(buddy)
            pfn = min(pfn, buddy)
            order += 1
        self._push(pfn, order)

    # -- observation and measures ------------------------------------------------

    def buddyinfo(self) -> dict[str, list[int]]:
        """/proc/buddyinfo: free blocks per order, per zone."""
        out = {z.label: [0] * (MAX_ORDER + 1) for z in self.machine.zones}
        for head, k in self.free_head.items():
            z = self.machine.zone_of(head)
            if z is not None:
                out[z.label][k] += 1
        return out

    def largest(self, node: int = -1) -> int:
        best = -1
        for head, k in self.free_head.items():
            if k > best and (node < 0 or self.machine.node_of(head) == node):
                best = k
        return best

    def free_pages(self, node: int = -1) -> int:
        return sum(1 << k for h, k in self.free_head.items() if node < 0 or self.machine.node_of(h) == node)

    def external_fragmentation(self, order: int, node: int = -1) -> float:
        """The share of free memory unusable for an order-``order`` request
        (Gorman's unusable free space index): 1 - (free pages in blocks >= order) / free pages."""
        free = self.free_pages(node)
        if free == 0:
            return 0.0
        usable = sum(1 << k for h, k in self.free_head.items()
                     if k >= order and (node < 0 or self.machine.node_of(h) == node))
        return 1.0 - usable / free

    # -- invariants ----------------------------------------------------------

    def accounting(self) -> list[tuple[str, str]]:
        """free + allocated = total, per node (memspec.phys.free-plus-used)."""
        # the allocated frames are counted per node as blocks come and go
        used = np.array(self.used, dtype=np.int64)
        for r in self.machine.reserved:
            used[self.machine.node_of(r)] += 1
        for n in range(self.machine.nodes):
            free = self.free_pages(n)
            if free + used[n] != self.machine.node_frames[n]:
                return [("memspec.phys.free-plus-used",
                         f"node {n}: {free} free + {used[n]} allocated != {self.machine.node_frames[n]} frames")]
        return []

    def accounting_step(self) -> list[tuple[str, str]]:
        """``accounting`` from the free frames counted as blocks enter and leave the free lists
        (``free_frames``) instead of a sum over every free block: O(nodes)."""
        for n in range(self.machine.nodes):
            used = self.used[n] + sum(1 for r in self.machine.reserved if self.machine.node_of(r) == n)
            if self.free_frames[n] + used != self.machine.node_frames[n]:
                return [("memspec.phys.free-plus-used", f"node {n}: {self.free_frames[n]} free + {used} allocated "
                         f"!= {self.machine.node_frames[n]} frames")]
        return []

    def audit(self) -> list[tuple[str, str]]:
        """Free blocks aligned, inside one zone, not overlapping, maximally coalesced, and
        exactly the frames the frame table marks free (one numpy pass over the frame table);
        and the per-frame copy of the free lists the incremental audit reads agrees with them."""
        if not self.free_head:
            heads = np.zeros(0, dtype=np.int64)
            orders = np.zeros(0, dtype=np.int64)
        else:
            heads = np.fromiter(self.free_head.keys(), dtype=np.int64, count=len(self.free_head))
            orders = np.fromiter(self.free_head.values(), dtype=np.int64, count=len(self.free_head))
        bad = self._audit_blocks(heads, orders, 0, len(self.machine.zone_index))
        if bad:
            return bad
        inside = heads < len(self.head_order)
        if (int(np.count_nonzero(self.head_order >= 0)) != int(np.count_nonzero(inside))
                or (self.head_order[heads[inside]] != orders[inside]).any()):
            return [("linux.buddy.no-overlap", "the free lists and the per-frame record of their heads differ")]
        return []

    def audit_step(self, ranges: list[tuple[int, int]]) -> list[tuple[str, str]]:
        """``audit`` over the footprint of the steps since the last audit: the 2^MAX_ORDER-frame
        windows holding a head pushed or popped (``touched``) or a frame claimed or released
        (``ranges``: (pfn, count)).  An aligned block of order <= MAX_ORDER lies inside one window,
        and so does its buddy, so each window is audited exactly as the whole table would be."""
        size = 1 << MAX_ORDER
        total = len(self.machine.zone_index)
        windows: set[int] = set()
        for h in self.touched:
            k = self.free_head.get(h)
            if k is not None and (k < 0 or k > MAX_ORDER or h % (1 << k)):
                return [("linux.buddy.block-aligned", f"free block at pfn {h} of order {k} is not aligned")]
            if 0 <= h < total:
                windows.add(h >> MAX_ORDER)
            elif k is not None:
                return [("linux.buddy.within-zone", f"free block at pfn {h} of order {k} leaves its zone")]
        for pfn, count in ranges:
            lo, hi = max(pfn, 0), min(pfn + max(count, 1), total)
            windows.update(range(lo >> MAX_ORDER, ((hi - 1) >> MAX_ORDER) + 1) if hi > lo else ())
        for w in sorted(windows):
            lo = w * size
            bad = self._audit_window(lo, min(lo + size, total))
            if bad:
                return bad
        return []

    def _audit_window(self, lo: int, hi: int) -> list[tuple[str, str]]:
        """``_audit_blocks`` over one window, block by block: a window holds few free blocks, and
        a handful of scalar steps beat a dozen array passes there."""
        ho, zi, owner = self.head_order, self.machine.zone_index, self.frames.owner
        free = np.cumsum(owner[lo:hi] == Owner.FREE)   # free[i]: free frames in [lo, lo + i]
        prev_end = lo
        covered = 0
        for i in np.flatnonzero(ho[lo:hi] >= 0).tolist():
            h = lo + i
            k = int(ho[h])
            n = 1 << k
            if h % n:
                return [("linux.buddy.block-aligned", f"free block at pfn {h} of order {k} is not aligned")]
            if h + n > len(zi) or zi[h] != zi[h + n - 1]:
                return [("linux.buddy.within-zone", f"free block at pfn {h} of order {k} leaves its zone")]
            if h < prev_end:
                return [("linux.buddy.no-overlap", f"frame {h} is in two free blocks")]
            end = min(h + n, hi)
            prev_end = end
            if int(free[end - lo - 1]) - (int(free[i - 1]) if i else 0) != end - h:
                pfn = h + int(np.flatnonzero(owner[h:end] != Owner.FREE)[0])
                return [("memspec.phys.frame-one-owner", f"frame {pfn} is on a free list but owned")]
            covered += end - h
            if k < MAX_ORDER:
                b = h ^ n
                if self.free_head.get(b) == k and 0 <= b < len(zi) and zi[b] == zi[h]:
                    return [("linux.buddy.coalesce", f"free buddies at pfn {min(h, b)} and {max(h, b)} "
                             f"(order {k}) were not merged")]
        if len(free) and int(free[-1]) != covered:
            listed = np.zeros(hi - lo, dtype=bool)
            for i in np.flatnonzero(ho[lo:hi] >= 0).tolist():
                listed[i:i + (1 << int(ho[lo + i]))] = True
            pfn = lo + int(np.flatnonzero(listed != (owner[lo:hi] == Owner.FREE))[0])
            return [("memspec.phys.frame-one-owner", f"frame {pfn} is free in the frame table but on no free list")]
        return []

    def _audit_blocks(self, heads: np.ndarray, orders: np.ndarray, lo: int, hi: int) -> list[tuple[str, str]]:
        """The audit of the free blocks ``heads``/``orders`` over frames [lo, hi), which must hold
        every free block that covers a frame of it."""
        sizes = np.left_shift(1, orders)
        misaligned = np.flatnonzero(heads % sizes)
        if len(misaligned):
            i = misaligned[0]
            return [("linux.buddy.block-aligned", f"free block at pfn {heads[i]} of order {orders[i]} is not aligned")]
        zi = self.machine.zone_index
        ends = heads + sizes
        if len(heads) and (ends > len(zi)).any() or len(heads) and (zi[heads] != zi[np.minimum(ends, len(zi)) - 1]).any():
            i = int(np.flatnonzero((ends > len(zi)) | (zi[heads] != zi[np.minimum(ends, len(zi)) - 1]))[0])
            return [("linux.buddy.within-zone", f"free block at pfn {heads[i]} of order {orders[i]} leaves its zone")]
        # coverage: +1 at each head, -1 at each end; the running sum counts free lists covering a frame
        n = hi - lo
        cover = np.bincount(heads - lo, minlength=n + 1) - np.bincount(np.minimum(ends, hi) - lo, minlength=n + 1)
        count = np.cumsum(cover)[:n]
        if (count > 1).any():
            pfn = lo + int(np.flatnonzero(count > 1)[0])
            return [("linux.buddy.no-overlap", f"frame {pfn} is in two free blocks")]
        on_list = count == 1
        free_rows = self.frames.owner[lo:hi] == Owner.FREE
        if (on_list != free_rows).any():
            pfn = int(np.flatnonzero(on_list != free_rows)[0])
            return [("memspec.phys.frame-one-owner",
                     f"frame {lo + pfn} is {'free in the frame table but on no free list' if free_rows[pfn] else 'on a free list but owned'}")]
        for head, k in zip(heads.tolist(), orders.tolist()):
            if k < MAX_ORDER:
                b = head ^ (1 << k)
                if self.free_head.get(b) == k and 0 <= b < len(zi) and zi[b] == zi[head]:
                    return [("linux.buddy.coalesce", f"free buddies at pfn {min(head, b)} and {max(head, b)} "
                             f"(order {k}) were not merged")]
        return []


# -- the buddy calls' rules --------------------------------------------------------


class OnNode(Protocol):
    cpu_node: int           # the node of the calling thread's CPU


class Kernel(Protocol):
    """What the buddy rules read and change of the phys model."""

    machine: Machine
    buddy: Buddy
    numa: OnNode
    pages: set[int]         # blocks from buddy_alloc (freeable by buddy_free)


def nodes_for(m: Kernel, node: int, gfp: int) -> list[int]:
    """The nodes an allocation on ``node`` (-1: the CPU's) tries: its fallback list by distance,
    or ``node`` alone under GFP_THISNODE (linux.gfp.thisnode)."""
    start = m.numa.cpu_node if node < 0 else node
    if gfp & GFP["GFP_THISNODE"]:
        return [start]
    return m.machine.fallback(start)


def bad_node(m: Kernel, node: int) -> bool:
    return node < -1 or node >= m.machine.nodes


def expect_buddy_alloc(m: Kernel, order: int, node: int = -1, gfp: int = 0, owner: int = Owner.KERNEL) -> Expect:
    if order < 0 or order > MAX_ORDER:
        return replace(exactly("linux.buddy.order-too-large", K_ENOMEM),
                       covers=("linux.buddy.order-too-large", "seed.buddy.sizes-4k-4m"))
    if bad_node(m, node) or owner not in set(Owner) - {Owner.FREE}:
        return exactly("linux.buddy.einval", K_EINVAL)
    dma = bool(gfp & GFP["GFP_DMA"])
    clause_zone = ("linux.gfp.dma-zone" if dma else "linux.gfp.thisnode" if gfp & GFP["GFP_THISNODE"]
                   else "linux.buddy.zonelist-order")
    return m.buddy.block_expect(m.buddy.zonelist(nodes_for(m, node, gfp), dma_only=dma), order,
                                "linux.buddy.alloc-from-free", "linux.buddy.enomem-when-exhausted", clause_zone)


def apply_buddy_alloc(m: Kernel, o: Outcome, order: int, node: int = -1, gfp: int = 0,
                      owner: int = Owner.KERNEL) -> None:
    if o.ok and o.value is not None and o.value >= 0:
        m.buddy.take(o.value, order, Owner(owner))
        m.pages.add(o.value)


def freeing(handed_out: Container[int], block: int, freed: str, unallocated: str) -> Expect:
    """A free of ``block``: 0 if this allocator handed it out (and it is still out), else -1 EINVAL."""
    return exactly(freed, OK0) if block in handed_out else exactly(unallocated, K_EINVAL)


def expect_buddy_free(m: Kernel, pfn: int) -> Expect:
    return freeing(m.pages, pfn, "linux.buddy.free", "linux.buddy.free-unallocated")


def apply_buddy_free(m: Kernel, o: Outcome, pfn: int) -> None:
    if o.ok and pfn in m.pages:
        m.pages.discard(pfn)
        m.buddy.give(pfn)


def expect_nr_free_pages(m: Kernel, node: int = -1) -> Expect:
    if bad_node(m, node):
        return exactly("linux.buddy.einval", K_EINVAL)
    return exactly("memspec.phys.free-plus-used", Outcome(value=m.buddy.free_pages(node)))


def expect_buddy_largest(m: Kernel, node: int = -1) -> Expect:
    if bad_node(m, node):
        return exactly("linux.buddy.einval", K_EINVAL)
    return exactly("linux.buddy.coalesce", Outcome(value=m.buddy.largest(node)))


RULES = {
    "buddy_alloc": Rule(expect_buddy_alloc, apply_buddy_alloc),
    "buddy_free": Rule(expect_buddy_free, apply_buddy_free),
    "nr_free_pages": Rule(expect_nr_free_pages),
    "buddy_largest": Rule(expect_buddy_largest),
}
