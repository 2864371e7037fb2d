"""The os judge's hot path in its plain forms, as they were before issue #20's lean ones: the
reference ``tests/os/test_lean_judge.py`` holds the model to.  ``PlainSystem`` is the reference model
with these in place of the lean forms: mmap's VMA made afresh (not one kept per distinct question),
munmap's and mprotect's rules as they were (each question of the range asked on its own, a fresh
``Expect`` per answer), mprotect's apply with ``dataclasses.replace`` and the huge-page split asked
always, ```unmap`` and ``pages_in`` without their early exits, mmap's placement worked out afresh on
every call, and every invariant run in the full recount (none left out for a state without pages).
A copy of the old code, kept only as the reference: not imported by the model."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memspec.consts import MAP, MCL, PAGE_SIZE, PROT
from memspec.calls import CALLS
from memspec.model import fault
from memspec.model import mm as M
from memspec.model import invariants as inv
from memspec.model.expect import Expect, errno, exactly, or_errno
from memspec.model.intervals import NOT_ONE
from memspec.model.mm import System
from memspec.model.os import splits
from memspec.model.os.footprint import VmaTree
from memspec.model.os.limits import limits
from memspec.model.os.mappings import (GROWS, MAP_DROPPABLE, MAP_TYPE, PROT_RWX, _map_count_near, _mprotect_changes)
from memspec.model.os.sealing import sealed_in
from memspec.model.os.state import PAGE_MASK, PROT_W, U64, Mm, OsState, Vma, exec_only as _exec_only, page_align
from memspec.model.rules import replaced
from memspec.records import Outcome


def apply_mmap(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int, flags: int,
               fd: int, offset: int) -> None:
    if not o.ok or o.value is None:
        return
    start, end = o.value, o.value + page_align(length)
    shared = flags & MAP_TYPE in (MAP["MAP_SHARED"], MAP["MAP_SHARED_VALIDATE"])
    obj = None
    origin = 0      # anonymous private memory: pgoff follows the address, so VMAs merge
    may_write = True
    if not flags & MAP["MAP_ANONYMOUS"]:
        f = mm.fds[fd if fd < (1 << 63) else fd - (1 << 64)]
        obj = f.obj
        origin = start - offset
        may_write = f.write or not shared
    elif shared:
        obj = sys.new_object("anon-shared", end - start).id
        origin = start
    sys.unmap(mm, start, end)
    exec_only = _exec_only(sys, prot)      # before the mask: do_mmap compares the prot it was given
    prot &= PROT_RWX
    locked = bool(flags & MAP["MAP_LOCKED"]) or bool(mm.mcl_future)
    # MAP_DROPPABLE (anonymous only): VM_DROPPABLE | VM_WIPEONFORK | VM_DONTDUMP (clause linux.mmap.droppable)
    droppable = obj is None and flags & MAP_TYPE == MAP_DROPPABLE
    vma = Vma(prot, shared, obj, origin, exec_only=exec_only, clause=(
        "posix.mmap.fixed-exact" if flags & MAP["MAP_FIXED"] else "posix.mmap.maps-range"),
        locked=locked and not droppable, onfault=bool(mm.mcl_future & MCL["MCL_ONFAULT"]), may_write=may_write,
        huge=None, droppable=droppable, wipeonfork=droppable, dontdump=droppable,
        growsdown=bool(flags & MAP["MAP_GROWSDOWN"]))
    mm.vmas.set(start, end, vma)
    # mm/mmap.c do_mmap -> mm_populate: MAP_POPULATE (not with MAP_NONBLOCK: clause
    # linux.mmap.populate-nonblock), and MAP_LOCKED / MCL_FUTURE without ONFAULT
    populate = flags & (MAP["MAP_POPULATE"] | MAP["MAP_NONBLOCK"]) == MAP["MAP_POPULATE"]
    # (MCL_FUTURE still populates a MAP_DROPPABLE mapping, which stays unlocked: measured on 6.18).
    # After mlockall(MCL_FUTURE|MCL_ONFAULT) the VMA has VM_LOCKONFAULT and mm/gup.c
    # populate_vma_page_range returns at once: MAP_POPULATE populates nothing (measured on 6.18,
    # as mincore shows: posix.mincore.residency; found by the soak)
    if (populate or locked) and not vma.onfault:
        fault.populate(sys, mm, start, end)


def expect_munmap(sys: OsState, mm: Mm, addr: int, length: int) -> Expect:
    c = sys.config
    # mm/vma.c do_vmi_munmap: alignment, then the range must lie below TASK_SIZE.
    if addr & ~PAGE_MASK:
        return errno("posix.munmap.einval-unaligned", "EINVAL")
    if addr > c.task_size or length > c.task_size - addr:
        return errno("posix.munmap.einval-outside", "EINVAL")
    if page_align(length) == 0:
        return errno("posix.munmap.einval-len0", "EINVAL")
    if sealed_in(mm, addr, addr + page_align(length)):
        # mm/vma.c vms_gather_munmap_vmas: a sealed VMA in the range: EPERM, nothing unmapped
        return errno("linux.mseal.eperm", "EPERM")
    if not mm.vmas.any_overlap(addr, addr + page_align(length)):
        return exactly("posix.munmap.unmapped-ok", Outcome(value=0))
    ok = exactly("posix.munmap.removes-range", Outcome(value=0))
    hit = mm.vmas.find(addr)
    if hit is not None and hit[0] < addr and addr + page_align(length) < hit[1] and _map_count_near(sys, mm, 0):
        # mm/vma.c vms_gather_munmap_vmas: a hole inside one VMA splits it in three; with
        # map_count >= vm.max_map_count that is ENOMEM and nothing is unmapped
        return or_errno(ok, "linux.munmap.enomem-max-map-count", "ENOMEM")
    return ok


def expect_mprotect(sys: OsState, mm: Mm, addr: int, length: int, prot: int) -> Expect:
    # mm/mprotect.c do_mprotect_pkey, in the kernel's order of checks.
    if prot & GROWS == GROWS:
        return errno("linux.mprotect.einval-grows-both", "EINVAL")
    if addr & ~PAGE_MASK:
        return errno("posix.mprotect.einval-unaligned", "EINVAL")
    if length == 0:
        return exactly("linux.mprotect.len0-ok", Outcome(value=0))
    end = addr + page_align(length)
    if end <= addr or end > (1 << 64) - 1 or page_align(length) == 0:
        return errno("linux.mprotect.enomem-wrap", "ENOMEM")
    if prot & ~(PROT_RWX | PROT["PROT_SEM"] | GROWS):
        return errno("posix.mprotect.einval-prot", "EINVAL")
    first = mm.vmas.overlapping(addr, end)
    if not first:
        return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
    if prot & PROT["PROT_GROWSDOWN"]:
        return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
    if first[0][0] > addr:
        return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
    if prot & PROT["PROT_GROWSUP"]:
        return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
    # mm/vma.c split_vma (from mprotect_fixup -> vma_modify_flags): map_count >= vm.max_map_count
    # refuses a split with ENOMEM, the VMAs before it already changed (model/os/splits.py)
    changes = _mprotect_changes(sys, prot)
    lim = splits.limit(sys, mm, addr, end, changes)
    stop = splits.refused_at(sys, mm, addr, end, changes) if lim == "refused" else None

    def split_first(at: int, other: Expect) -> Expect:
        if stop is not None and stop < at:
            return errno(splits.MPROTECT, "ENOMEM")
        return or_errno(other, splits.MPROTECT, "ENOMEM") if lim == "maybe" else other

    cursor = addr
    for s, e, v in first:
        if s > cursor:
            return split_first(cursor, errno("linux.mprotect.enomem-hole-partial", "ENOMEM"))
        if prot & PROT_W and not v.may_write:
            # mm/mprotect.c: newflags & ~(oldflags >> 4) & VM_WRITE -> EACCES
            return split_first(max(s, addr), errno("posix.mprotect.eacces-shared-readonly-fd", "EACCES"))
        if v.sealed:
            # a sealed VMA: EPERM, even for its own protection (measured on 6.18); the VMAs
            # before it in the range are already changed
            return split_first(max(s, addr), errno("linux.mseal.eperm", "EPERM"))
        cursor = e
    if cursor < end:
        return split_first(cursor, errno("linux.mprotect.enomem-hole-partial", "ENOMEM"))
    ok = split_first(end, exactly("posix.mprotect.sets-prot", Outcome(value=0)))
    if prot & PROT_W and stop is None:
        # mm/mprotect.c mprotect_fixup: private memory turning writable becomes data
        # (may_expand_vm) and is charged (security_vm_enough_memory_mm)
        gain = sum(e - s for s, e, v in mm.mapped_pages(addr, end) if not v.shared and not v.prot & PROT_W)
        if gain:
            return limits(sys, mm, ok, 0, gain, gain)
    return ok


def apply_mprotect(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int) -> None:
    if o.errno not in (None, "ENOMEM", "EACCES", "EPERM") or length == 0 or addr & ~PAGE_MASK:
        return
    end = addr + page_align(length)
    if o.errno is not None:
        # Linux changes the VMAs before the first hole (or refused VMA), then fails (mprotect(2)
        # NOTES; POSIX allows "some of the pages may have been changed").
        if prot & ~(PROT_RWX | PROT["PROT_SEM"] | GROWS) or prot & GROWS:
            return
        if end <= addr or end > U64:
            return     # mm/mprotect.c: end <= start fails before touching anything
        runs = mm.vmas.overlapping(addr, end)
        if not runs or runs[0][0] > addr:
            return
        cursor = addr
        for s, e, _ in runs:
            cursor = e if s <= cursor else cursor
        # no hole and no refused VMA: a limit refused the first private VMA turning writable
        limit = o.errno == "ENOMEM" and cursor >= end and all(v.may_write or not prot & PROT_W for _, _, v in runs)
        refused = None
        if o.errno == "ENOMEM" and splits.limit(sys, mm, addr, end, _mprotect_changes(sys, prot)):
            # a split refused at vm.max_map_count (clause linux.mprotect.enomem-max-map-count)
            refused = splits.refused_at(sys, mm, addr, end, _mprotect_changes(sys, prot), failed=True)
            limit = limit and refused is None
        cursor = addr
        stop = addr
        for s, e, v in runs:
            if s > cursor or (prot & PROT_W and not v.may_write) or v.sealed or (
                    limit and prot & PROT_W and not v.shared and not v.prot & PROT_W):
                break
            cursor = e
            stop = min(e, end)
        end = stop if refused is None else min(stop, refused)
        clause = "linux.mprotect.enomem-hole-partial" if refused is None else splits.MPROTECT
    else:
        clause = "posix.mprotect.sets-prot"
    if end <= addr:
        return
    sys.split_huge(mm, addr, end)
    p = prot & PROT_RWX
    for s, e, v in list(mm.mapped_pages(addr, end)):
        mm.vmas.set(s, e, replace(v, prot=p, exec_only=_exec_only(sys, prot & ~GROWS), clause=clause))
        for page in sys.pages_in(mm, s, e):
            t = mm.pte.get(page)
            if t is not None:
                if not p & PROT_W:
                    if t.write:
                        mm.flushed.add(page)
                    t.write = False
                else:
                    # mm/mprotect.c can_change_pte_writable: the kernel may make an exclusive
                    # page writable at once; the next store may or may not fault.
                    mm.maybe.add(page)
            fault.flush_tlb_page(mm, page)


def unmap(self, mm: Mm, start: int, end: int) -> None:
    self.split_huge(mm, start, end)
    for page in self.pages_in(mm, start, end):
        self.drop_page(mm, page)
    gone = {v.obj for _, _, v in mm.vmas.remove(start, end) if v.obj is not None}
    if mm.guard:
        # mm/memory.c zap_nonpresent_ptes: unmapping (ZAP_FLAG_DROP_MARKER) drops guard markers
        mm.guard -= {p for p in mm.guard if start <= p < end}
    if gone:
        self.collect(gone)

def pages_in(self, mm: Mm, start: int, end: int) -> list[int]:
    """The pages of [start, end) that have any per-page state, in address order.
    Costs O(min(pages in the range, pages with state)): no union of every table per call
    (that union made each mmap/munmap/mprotect grow with the whole address space)."""
    stores = (mm.pte, mm.anon, mm.maybe, mm.last_ref)
    if (end - start) // PAGE_SIZE <= sum(len(x) for x in stores):
        return [p for p in range(start, end, PAGE_SIZE)
                if p in mm.pte or p in mm.anon or p in mm.maybe or p in mm.last_ref]
    found: set[int] = set()
    for x in stores:
        found.update(p for p in x if start <= p < end)
    return sorted(found)


def registers(name: str, args: tuple) -> tuple:
    """model.mm._registers as it was: a copy of the arguments, every time."""
    masks = M._MASKS.get(name)
    if masks is None:
        masks = M._MASKS[name] = tuple((i, M.U64 if p.name in M._UNSIGNED else M.U32)
                                     for i, p in enumerate(CALLS[name].params)
                                     if p.name in M._UNSIGNED or p.name == "fd")
    if not masks:
        return args
    regs = list(args)
    n = len(regs)
    for i, m in masks:
        if i < n and type(regs[i]) is int:
            regs[i] &= m
    return tuple(regs)


class NoSwap(VmaTree):
    """The VMA tree's ``set`` as it was: always remove, then insert (never the one VMA replaced in place)."""

    def _swap(self, start: int, end: int, value: Any) -> Any:
        return NOT_ONE


def _plain_tree(mm: Mm) -> None:
    t = mm.vmas
    if type(t) is VmaTree:
        plain = NoSwap(t.ranges, t.objs)
        plain._cs, plain._ce, plain._cv, plain._heads, plain.known_len = t._cs, t._ce, t._cv, t._heads, t.known_len
        mm.vmas = plain


class PlainSystem(System):
    """The reference model with the plain forms above."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        for mm in self.procs.values():
            _plain_tree(mm)

    rules = replaced(replaced(replaced(System.rules, "mmap", apply=apply_mmap), "munmap", expect=expect_munmap),
                     "mprotect", expect=expect_mprotect, apply=apply_mprotect)
    unmap = unmap
    pages_in = pages_in

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        for mm in self.procs.values():
            mm.last_placement = ((), None)      # mmap's placement worked out afresh
        return super().expect(proc, name, args)

    def bind(self, proc: str, name: str, result: Any, outcome: Outcome) -> None:
        super().bind(proc, name, result, outcome)
        for mm in self.procs.values():      # a forked process's tree
            _plain_tree(mm)

    def invariants(self, full: bool = True) -> list[tuple[str, str]]:
        kept, inv._OF_PAGES = inv._OF_PAGES, frozenset()    # every law in the full recount
        try:
            return super().invariants(full)
        finally:
            inv._OF_PAGES = kept
