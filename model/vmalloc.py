"""vmalloc: virtually contiguous areas of scattered frames (mm/vmalloc.c), and its rules.

Laws:

* ``vmalloc(size)`` succeeds while ``ceil(size / 4096)`` frames are free anywhere, contiguous
  or not (``seed.vmalloc.physically-scattered``): each page of the area is its own order-0
  block of the buddy allocator;
* the area is one page-aligned range of the kernel's vmalloc range
  ``[VMALLOC_START, VMALLOC_END)`` (``seed.vmalloc.virtually-contiguous``), followed by an
  unmapped guard page that no other area overlaps (``linux.vmalloc.guard-page``);
* ``vfree`` takes the address that starts an area and gives every frame back;
  ``vmalloc_to_pfn`` names the frame behind a page of an area.

Worked example: ``vmalloc(5000)`` takes two frames, and the area with its guard page spans
three pages: ``[VMALLOC_START, VMALLOC_START + 0x3000)`` on a fresh machine, so the next
area starts at ``VMALLOC_START + 0x3000`` at the earliest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from memspec.records import Outcome

from .allocator import K_EFAULT, K_ENOMEM, K_EINVAL, OK0, checked, not_failed
from .buddy import Buddy, OnNode
from .expect import Expect, exactly
from .frames import PAGE_SHIFT, FrameTable, Machine, Owner
from .intervals import IntervalMap
from .rules import Rule

PAGE = 1 << PAGE_SHIFT
VMALLOC_START = 0xFFFF_C900_0000_0000
VMALLOC_END = 0xFFFF_E900_0000_0000


@dataclass(slots=True)
class VmArea:
    size: int
    pfns: tuple[int, ...]


class Kernel(Protocol):
    """What the vmalloc rules read and change of the phys model."""

    machine: Machine
    frames: FrameTable
    buddy: Buddy
    numa: OnNode
    vm: IntervalMap[VmArea]             # [start, end + guard page) -> area


def expect_vmalloc(m: Kernel, size: int) -> Expect:
    if size <= 0:
        return exactly("linux.vmalloc.size0", K_ENOMEM)
    n = (size + PAGE - 1) // PAGE
    span = n * PAGE + PAGE          # the area and its guard page
    if m.frames.free_count() < n or span > VMALLOC_END - VMALLOC_START:
        return exactly("seed.vmalloc.physically-scattered", K_ENOMEM)
    zones = m.buddy.zonelist(m.machine.fallback(m.numa.cpu_node))
    # the model's own choice: the lowest free frames, zone by zone in zonelist order
    pref: list[int] = []
    for z in zones:
        rows = np.flatnonzero(m.frames.owner[z.start:z.end] == Owner.FREE)[:n - len(pref)]
        pref += (rows + z.start).tolist()
        if len(pref) >= n:
            break
    start = VMALLOC_START
    for s, e, _ in m.vm.items():
        if start + span <= s:
            break
        start = max(start, e)
    default = Outcome(value=start, detail=(("pfns", tuple(pref)),))

    def range_ok(o: Outcome) -> str | None:
        v = o.value
        if v % PAGE or not VMALLOC_START <= v <= VMALLOC_END - span:
            return f"{o.describe()} is not a page-aligned address of the vmalloc range"
        return None

    def guard(o: Outcome) -> str | None:
        if m.vm.any_overlap(o.value, o.value + span):
            return f"[{o.value:#x}, +{span:#x}) overlaps another area or its guard page"
        return None

    def frames_ok(o: Outcome) -> str | None:
        pfns = dict(o.detail).get("pfns")
        if pfns is None:
            return None   # the target does not report its frames: nothing to check
        pfns = [int(p) for p in pfns]
        if len(pfns) != n or len(set(pfns)) != n or not all(m.frames.is_free(p, 1) for p in pfns):
            return f"the area's {n} pages must be backed by {n} distinct free frames, got {pfns[:8]}"
        return None

    return checked("seed.vmalloc.virtually-contiguous", default, f"a {n}-page vmalloc area",
                   not_failed("seed.vmalloc.physically-scattered", f"{n} free frames (contiguous or not)"),
                   ("seed.vmalloc.virtually-contiguous", range_ok), ("linux.vmalloc.guard-page", guard),
                   ("seed.vmalloc.physically-scattered", frames_ok))


def apply_vmalloc(m: Kernel, o: Outcome, size: int) -> None:
    if not o.ok or o.value is None or o.value <= 0 or size <= 0:
        return
    n = (size + PAGE - 1) // PAGE
    pfns = dict(o.detail).get("pfns")
    if pfns is None:
        # the target did not say which frames back the area, and the model's own choice
        # may not exist (the target succeeded where the model would have failed)
        pfns = dict(expect_vmalloc(m, size).default.detail).get("pfns", ())
    pfns = tuple(int(p) for p in pfns)
    for p in pfns:
        m.buddy.take(p, 0, Owner.KERNEL)
    m.vm.set(o.value, o.value + n * PAGE + PAGE, VmArea(size, pfns))


def expect_vfree(m: Kernel, addr: int) -> Expect:
    hit = m.vm.find(addr)
    if hit and hit[0] == addr:
        return exactly("linux.vmalloc.vfree", OK0)
    return exactly("linux.vmalloc.vfree-not-area", K_EINVAL)


def apply_vfree(m: Kernel, o: Outcome, addr: int) -> None:
    hit = m.vm.find(addr)
    if o.ok and hit and hit[0] == addr:
        for p in hit[2].pfns:
            m.buddy.give(p)
        m.vm.remove(hit[0], hit[1])


def expect_vmalloc_to_pfn(m: Kernel, addr: int) -> Expect:
    hit = m.vm.find(addr)
    if hit is not None:
        i = (addr - hit[0]) // PAGE
        if i < len(hit[2].pfns):
            return exactly("seed.vmalloc.virtually-contiguous", Outcome(value=hit[2].pfns[i]))
    return exactly("linux.vmalloc.to-pfn-unmapped", K_EFAULT)


RULES = {
    "vmalloc": Rule(expect_vmalloc, apply_vmalloc),
    "vfree": Rule(expect_vfree, apply_vfree),
    "vmalloc_to_pfn": Rule(expect_vmalloc_to_pfn),
}
