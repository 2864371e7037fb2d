"""vm.max_map_count at a split: the calls that change part of a VMA (mprotect, mlock, munlock,
mlock2, madvise with an advice that changes the VMA's flags) refuse a split when the process
already has vm.max_map_count mappings.

mm/vma.c ``split_vma`` asks ``vma->vm_mm->map_count >= sysctl_max_map_count`` before each split
(``__split_vma``, which munmap uses, does not: munmap asks its own question first, clause
``linux.munmap.enomem-max-map-count``).  ``vma_modify`` splits off the head of the first VMA of
the range (its start lies before the range), then the tail of the last (its end lies past the
range), each split one more mapping.  The callers walk the range VMA by VMA and stop at the
first error, so the VMAs before the refused split are already changed:

* mm/mprotect.c ``do_mprotect_pkey`` -> ``mprotect_fixup``: ENOMEM (clause
  ``linux.mprotect.enomem-max-map-count``);
* mm/mlock.c ``apply_vma_lock_flags`` -> ``mlock_fixup``: ENOMEM, before any page is faulted in
  (``__mm_populate`` runs only after the flags went on; clause ``linux.mlock.enomem-max-map-count``);
* mm/madvise.c ``madvise_vma_behavior`` -> ``madvise_update_vma``: the ENOMEM becomes EAGAIN
  ("madvise() returns EAGAIN if kernel resources ... are temporarily unavailable"; clause
  ``linux.madvise.eagain-max-map-count``).

A VMA whose flags would not change is skipped before any split (``mprotect_fixup``:
``newflags == oldflags``; ``mlock_fixup``; ``madvise_update_vma``), so it needs none.

The count is the model's VMAs plus the fact ``base_maps``.  Run alone (no quiet ranges) the
model counts exactly and the answer is exact.  On a target with mappings of its own (quiet
ranges or the fact base_maps) the count is
known within 64 (as ``mappings._map_count_near``), so near the limit a split may or may not be
refused; when it was (the call failed), the model takes the first split the walk needs as the
refused one: after map_pages reached the limit the process holds vm.max_map_count + 1 mappings,
and every split is refused until two of them go.

The model never merges VMAs, where the kernel merges neighbours that differ in nothing it keeps
(``merge_slack``): alone, the count is exact only while no two of the model's VMAs could be one;
otherwise a split is surely refused only when the merged count reaches the limit, and may be
refused when the model's own count does.

Worked example: alone, with vm.max_map_count 8 and base_maps 0, a process of 7 VMAs and
``mprotect(a + 4096, 4096, PROT_READ)`` inside a three-page VMA at ``a``: the head split makes 8
mappings, the tail split is refused: ENOMEM, the protection unchanged, the VMA split in two.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from memspec.consts import PROT

from .state import Mm, OsState, Vma, exec_only

PROT_RWX = PROT["PROT_READ"] | PROT["PROT_WRITE"] | PROT["PROT_EXEC"]
GROWS = PROT["PROT_GROWSDOWN"] | PROT["PROT_GROWSUP"]

BAND = 64           # as mappings._map_count_near: the target's own mappings move while it runs

MPROTECT = "linux.mprotect.enomem-max-map-count"
MLOCK = "linux.mlock.enomem-max-map-count"
MADVISE = "linux.madvise.eagain-max-map-count"


def mprotect_changes(sys: OsState, prot: int) -> Callable[[Vma], bool]:
    """Whether mprotect(prot) changes a VMA's flags (mprotect_fixup skips one whose newflags ==
    oldflags before any split): its protection or its execute-only key."""
    p = prot & PROT_RWX
    xo = exec_only(sys, prot & ~GROWS)
    return lambda v: v.prot != p or v.exec_only != xo


def merge_slack(mm: Mm) -> int:
    """How many fewer VMAs the kernel may hold than the model: the pairs of the model's VMAs that
    touch and differ in nothing the kernel keeps (clause names aside).  The kernel merges such
    neighbours when it makes or changes a VMA (mm/vma.c vma_merge_new_range,
    vma_merge_existing_range: the same flags, file and contiguous offset -- anonymous memory's
    offset follows its address until mremap moves it, ``Vma.origin`` -- policy and name), and an
    mprotect or madvise that changes nothing does not split (mprotect_fixup: newflags == oldflags),
    where the model keeps every range as made.  Whether two anonymous VMAs merge also depends on
    their anon_vma (is_mergeable_anon_vma: not after fork shared it), which the model does not
    keep; so the kernel's count lies between the model's less this and the model's."""
    n = 0
    pe, pv = -1, None
    for st, e, v in mm.vmas.items():
        if st == pe and pv is not None and (pv is v or replace(pv, clause=v.clause) == v):
            n += 1
        pe, pv = e, v
    return n


def own_mappings(sys: OsState) -> bool:
    """Whether the target has mappings of its own the model counts only approximately (it reports
    quiet ranges, or the fact base_maps): then the map count is known within ``BAND``."""
    return bool(sys.config.quiet_ranges or sys.config.base_maps)


def _splits(mm: Mm, start: int, end: int, changes: Callable[[Vma], bool | None]) -> list[tuple[int, bool | None]]:
    """The splits a walk over [start, end) asks for, in order: (the address up to which the VMAs
    before it are changed, whether the VMA's flags surely change (None: the model does not know))."""
    out: list[tuple[int, bool | None]] = []
    for s, e, v in mm.vmas.overlapping(start, end):
        if s < start or e > end:
            ch = changes(v)
            if ch is False:
                continue
            if s < start:
                out.append((start, ch))
            if e > end:
                out.append((max(s, start), ch))
    return out


def refused_at(sys: OsState, mm: Mm, start: int, end: int, changes: Callable[[Vma], bool | None],
               failed: bool = False) -> int | None:
    """Where split_vma refuses a split of the walk over [start, end): the address up to which the
    VMAs before the refused split were changed, or None when none is refused.  ``failed``: the
    target said the call failed (on a target with mappings of its own the first split needed is
    then the refused one)."""
    c = sys.config
    n = c.base_maps + len(mm.vmas)
    if own_mappings(sys) or (failed and merge_slack(mm)):
        if not failed:
            return None
        n = c.max_map_count
    for at, _ in _splits(mm, start, end, changes):
        if n >= c.max_map_count:
            return at
        n += 1
    return None


def limit(sys: OsState, mm: Mm, start: int, end: int, changes: Callable[[Vma], bool | None]) -> str | None:
    """``"refused"`` (a split is surely refused; ``refused_at`` says where), ``"maybe"`` (it may
    be: the target's own mappings count too, or the model does not know whether the flags change),
    or None."""
    splits = _splits(mm, start, end, changes)
    if not splits:
        return None
    c = sys.config
    n = c.base_maps + len(mm.vmas)
    if own_mappings(sys):
        return "maybe" if n + BAND + len(splits) > c.max_map_count else None
    if n + len(splits) > c.max_map_count:
        slack = merge_slack(mm)
        if slack and n - slack < c.max_map_count:
            return "maybe"      # the kernel may have merged the model's neighbours: fewer mappings
    for _, ch in splits:
        if n >= c.max_map_count:
            return "refused" if ch else "maybe"
        n += 1
    return None
