"""The rule of mseal, and what a sealed mapping refuses.

mm/mseal.c do_mseal (Linux 6.10+): flags must be 0, the start page aligned, the rounded length
must not wrap (EINVAL); a zero length is 0; any unmapped page in the range is ENOMEM before
anything is sealed; then every VMA of the range gets VM_SEALED (split at the ends).  mseal_apply
walks the range VMA by VMA and skips a VMA already sealed; any other goes through
vma_modify_flags, whose split_vma refuses a split when the process already has
vm.max_map_count mappings: ENOMEM, with the VMAs before the refused split already sealed
(clause linux.mseal.enomem-max-map-count; the limit's arithmetic is model/os/splits.py).  A sealed
VMA refuses with EPERM (clause linux.mseal.eperm; measured on Linux 6.18): munmap of a range
that touches it (nothing changes), MAP_FIXED over it, mremap of it or onto it, mprotect (even to
the same protection; the VMAs before it in the range are already changed), and on private
anonymous memory without PROT_WRITE the advice that discard data (mm/madvise.c
can_madvise_modify).  fork keeps the seal (kernel/fork.c dup_mmap copies vm_flags).

Worked example: ``mseal(a, 4096, 0)`` is 0 and ``munmap(a, 4096)`` then fails with EPERM.
"""

from __future__ import annotations

from dataclasses import replace

from memspec.consts import MADV
from memspec.records import Outcome

from ..expect import Expect, errno, exactly, or_errno
from ..rules import Rule
from . import splits
from .state import PAGE_MASK, PROT_W, U64, Mm, OsState, Vma, page_align

# mm/madvise.c is_discard: the advice that may not touch sealed read-only anonymous memory
DISCARD = frozenset(MADV[n] for n in ("MADV_FREE", "MADV_DONTNEED", "MADV_DONTNEED_LOCKED", "MADV_REMOVE",
                                      "MADV_DONTFORK", "MADV_WIPEONFORK", "MADV_GUARD_INSTALL"))


MAP_COUNT = "linux.mseal.enomem-max-map-count"


def sealed_in(mm: Mm, start: int, end: int) -> bool:
    """Whether a sealed VMA overlaps [start, end)."""
    return any(v.sealed for _, _, v in mm.vmas.overlapping(start, end))


def refuses_advice(v: Vma, advice: int) -> bool:
    """mm/madvise.c can_madvise_modify: a discarding advice on sealed private anonymous memory the
    process could not write anyway."""
    return v.sealed and advice in DISCARD and v.obj is None and not v.prot & PROT_W


def _range(addr: int, length: int) -> tuple[int, int] | Expect:
    if addr & ~PAGE_MASK:
        return errno("linux.mseal.einval", "EINVAL")
    plen = page_align(length) & U64
    if (length and not plen) or addr + plen > U64:
        return errno("linux.mseal.einval", "EINVAL")
    return addr, addr + plen


def expect_mseal(sys: OsState, mm: Mm, addr: int, length: int, flags: int) -> Expect:
    if not sys.has("mseal"):
        return errno("linux.mseal.enosys", "ENOSYS")
    if flags:
        return errno("linux.mseal.einval", "EINVAL")
    rng = _range(addr, length)
    if isinstance(rng, Expect):
        return rng
    start, end = rng
    if end == start:
        return exactly("linux.mseal.seals", Outcome(value=0))
    # mm/mseal.c range_contains_unmapped
    cursor = start
    for s, e, _ in mm.vmas.overlapping(start, end):
        if s > cursor:
            return errno("linux.mseal.enomem-unmapped", "ENOMEM")
        cursor = e
    if cursor < end:
        return errno("linux.mseal.enomem-unmapped", "ENOMEM")
    # mm/mseal.c mseal_apply -> vma_modify_flags -> mm/vma.c split_vma: map_count >= max -> ENOMEM
    lim = splits.limit(sys, mm, start, end, _changes)
    if lim == "refused":
        return errno(MAP_COUNT, "ENOMEM")
    ok = exactly("linux.mseal.seals", Outcome(value=0))
    return or_errno(ok, MAP_COUNT, "ENOMEM") if lim == "maybe" else ok


def _changes(v: Vma) -> bool:
    """mseal_apply skips a VMA that is already sealed (no split for it)."""
    return not v.sealed


def _has_hole(mm: Mm, start: int, end: int) -> bool:
    cursor = start
    for s, e, _ in mm.vmas.overlapping(start, end):
        if s > cursor:
            return True
        cursor = e
    return cursor < end


def apply_mseal(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, flags: int) -> None:
    if flags or not ((o.ok and o.value == 0) or o.errno == "ENOMEM"):
        return
    rng = _range(addr, length)
    if isinstance(rng, Expect) or rng[0] == rng[1]:
        return          # mm/mseal.c do_mseal: end == start returns 0 before anything is sealed
    start, end = rng
    if o.errno == "ENOMEM":
        if _has_hole(mm, start, end) or not splits.limit(sys, mm, start, end, _changes):
            return      # range_contains_unmapped: nothing sealed
        # a split refused at vm.max_map_count: the VMAs before it are sealed
        end = splits.refused_at(sys, mm, start, end, _changes, failed=True)
        if end is None or end <= start:
            return
    for s, e, v in list(mm.mapped_pages(start, end)):
        mm.vmas.set(s, e, replace(v, sealed=True))


RULES = {
    "mseal": Rule(expect_mseal, apply_mseal),
}
