"""DMA-coherent buffers (Documentation/core-api/dma-api.rst; kernel/dma/direct.c), and their rules.

Laws:

* ``dma_alloc_coherent(size, mask)`` returns the bus address of ``2^order`` physically
  contiguous frames (``order = get_order(size)``, ``linux.dma.contiguous``) lying wholly
  below the device's DMA mask (``linux.dma.below-mask``); it fails cleanly only when no
  such run is free (``linux.dma.fails-cleanly``);
* a buffer of size 0 does not exist (``linux.dma.size0``);
* ``dma_free_coherent`` frees a live buffer and refuses any other address.

Worked example: ``dma_alloc_coherent(9000, 0xFFFFFF)`` needs an order-2 block (16 KiB)
ending at or below 16 MiB - 1, so on the default machine it comes from node 0's DMA zone.
"""

from __future__ import annotations

from typing import Protocol

from memspec.records import Outcome

from .allocator import K_EINVAL, K_ENOMEM, checked, not_failed
from .buddy import Buddy, OnNode, freeing, order_for
from .expect import Expect, exactly
from .frames import MAX_ORDER, PAGE_SHIFT, Machine, Owner
from .rules import Rule

PAGE = 1 << PAGE_SHIFT


class Kernel(Protocol):
    """What the DMA rules read and change of the phys model."""

    machine: Machine
    buddy: Buddy
    numa: OnNode
    dma: dict[int, int]                 # bus address -> pfn of a live buffer


def expect_dma_alloc_coherent(m: Kernel, size: int, dma_mask: int = 0xFFFFFFFF) -> Expect:
    if size <= 0:
        # dma_alloc_coherent only returns NULL: which errno the protocol's -1 carries is the target's
        return checked("linux.dma.size0", K_EINVAL, "-1 (EINVAL or ENOMEM)",
                       ("linux.dma.size0", lambda o: None if o.value == -1 and o.errno in ("EINVAL", "ENOMEM")
                        and o.signal is None else f"no buffer of size 0 exists; observed {o.describe()}"))
    order = order_for(size)
    if order > MAX_ORDER:
        return exactly("linux.dma.fails-cleanly", K_ENOMEM)
    limit = (dma_mask + 1) >> PAGE_SHIFT       # first pfn the device cannot reach
    zones = m.buddy.zonelist(m.machine.fallback(m.numa.cpu_node), below=limit)
    zone = m.buddy.first_zone_with(zones, order, limit)
    if zone is None:
        return exactly("linux.dma.fails-cleanly", K_ENOMEM)
    pick = m.buddy.pick(zone, order, limit)
    n = 1 << order

    def below(o: Outcome) -> str | None:
        end = o.value + (PAGE << order) - 1
        if end > dma_mask:
            return f"buffer ends at {end:#x}, beyond the device's mask {dma_mask:#x}"
        return None

    def contiguous(o: Outcome) -> str | None:
        pfn = o.value >> PAGE_SHIFT
        if o.value % (PAGE << order) or not m.buddy.can_take(pfn, order):
            return f"frames {pfn}..{pfn + n - 1} are not one free aligned order-{order} block"
        return None

    return checked("linux.dma.contiguous", Outcome(value=pick << PAGE_SHIFT),
                   f"{n} contiguous free frames below {dma_mask:#x}",
                   not_failed("linux.dma.fails-cleanly", f"a contiguous run of {n} frames below the mask"),
                   ("linux.dma.below-mask", below), ("linux.dma.contiguous", contiguous))


def apply_dma_alloc_coherent(m: Kernel, o: Outcome, size: int, dma_mask: int = 0xFFFFFFFF) -> None:
    if o.ok and o.value is not None and o.value > 0 and size > 0:
        pfn = o.value >> PAGE_SHIFT
        m.buddy.take(pfn, order_for(size), Owner.KERNEL)
        m.dma[o.value] = pfn


def expect_dma_free_coherent(m: Kernel, handle: int) -> Expect:
    return freeing(m.dma, handle, "linux.dma.free", "linux.dma.free-unallocated")


def apply_dma_free_coherent(m: Kernel, o: Outcome, handle: int) -> None:
    if o.ok and handle in m.dma:
        m.buddy.give(m.dma.pop(handle))


RULES = {
    "dma_alloc_coherent": Rule(expect_dma_alloc_coherent, apply_dma_alloc_coherent),
    "dma_free_coherent": Rule(expect_dma_free_coherent, apply_dma_free_coherent),
}
