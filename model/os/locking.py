"""The rules of the calls that lock memory and set the lock limit: mlock, mlock2, munlock,
mlockall, munlockall, set_memlock_limit.

mm/mlock.c: without CAP_IPC_LOCK a lock must fit RLIMIT_MEMLOCK (``linux.mlock.enomem-rlimit``)
and a zero limit forbids it (``linux.mlock.eperm-no-limit``); the range must be mapped; then
__mm_populate faults every page in (``model.fault.populate``), and the first page it cannot
fault in makes the call ENOMEM after VM_LOCKED went on.  A locked page is never evicted
(``posix.mlock.never-evicted``, kept by ``model.pressure``).

Worked example: unprivileged, with RLIMIT_MEMLOCK 4096, ``mlock(a, 8192)`` is ENOMEM
(``linux.mlock.enomem-rlimit``) and locks nothing.
"""

from __future__ import annotations

from dataclasses import replace

from memspec.consts import MCL, PAGE_SIZE
from memspec.records import Outcome

from .. import fault
from ..expect import Expect, errno, exactly, or_errno
from ..rules import Rule
from . import splits
from .state import PAGE_MASK, PROT_R, PROT_W, PROT_X, U64, Mm, OsState, can_do_mlock, page_align


def _lock_check(sys: OsState, mm: Mm, addr: int, length: int) -> Expect | None:
    if not can_do_mlock(mm):
        return errno("linux.mlock.eperm-no-limit", "EPERM")
    plen = page_align(length + (addr & ~PAGE_MASK)) & U64
    start = addr & PAGE_MASK
    if not mm.privileged:
        locked = plen // PAGE_SIZE + mm.locked_vm() // PAGE_SIZE
        limit = mm.memlock_soft // PAGE_SIZE
        if locked > limit:
            locked -= sum(e - s for s, e, v in mm.mapped_pages(start, start + plen) if v.locked) // PAGE_SIZE
        if locked > limit:
            return errno("linux.mlock.enomem-rlimit", "ENOMEM")
    return _range_check(sys, mm, start, plen, "posix.mlock.einval-wrap", "posix.mlock.enomem-unmapped")


def _range_check(sys: OsState, mm: Mm, start: int, plen: int, wrap: str, hole: str) -> Expect | None:
    end = start + plen
    if end > U64:
        return errno(wrap, "EINVAL")
    if end == start:
        return None
    if mm.vmas.find(start) is None:
        return errno(hole, "ENOMEM")
    cursor = start
    for s, e, _ in mm.vmas.overlapping(start, end):
        if s > cursor:
            return errno(hole, "ENOMEM")
        cursor = e
    if cursor < end:
        return errno(hole, "ENOMEM")
    return None


def _populate_fails(sys: OsState, mm: Mm, start: int, end: int) -> int | None:
    """mm/gup.c __mm_populate without ignore_errors: the first page that cannot be faulted
    in (no access rights, or past a file's end) stops it; mlock then reports ENOMEM."""
    if end <= start:
        return None
    for s, e, v in mm.mapped_pages(start, end):
        if not v.prot & (PROT_R | PROT_W | PROT_X) or v.exec_only:
            return s      # (an execute-only protection key forbids GUP's read too)
        # a guard marker (MADV_GUARD_INSTALL) faults SIGSEGV: measured, mlock is then ENOMEM
        guarded = [p for p in mm.guard if s <= p < e]
        if v.obj is None and guarded:
            return min(guarded)
        if v.obj is not None:
            obj = sys.objects[v.obj]
            for page in range(s, e, PAGE_SIZE):
                if v.pgoff(page) >= obj.npages() or page in mm.guard:
                    return page
    return None


def expect_mlock(sys: OsState, mm: Mm, addr: int, length: int) -> Expect:
    bad = _lock_check(sys, mm, addr, length)
    if bad is not None:
        return bad
    start = addr & PAGE_MASK
    end = start + page_align(length + (addr & ~PAGE_MASK))
    return _split_limit(sys, mm, start, end, _changes(True, False),
                        _populate_expect(sys, mm, start, end, "posix.mlock.locks"))


def _changes(lock: bool, onfault: bool):
    """Whether mlock_fixup changes a VMA (it skips one whose VM_LOCKED/VM_LOCKONFAULT stay, and
    VM_DROPPABLE memory, before any split)."""
    if not lock:
        return lambda v: v.locked
    return lambda v: not v.droppable and (not v.locked or v.onfault != onfault)


def _split_limit(sys: OsState, mm: Mm, start: int, end: int, changes, ok: Expect) -> Expect:
    """mm/mlock.c apply_vma_lock_flags -> mlock_fixup -> vma_modify_flags -> split_vma: at
    vm.max_map_count a split is ENOMEM, before __mm_populate (model/os/splits.py)."""
    lim = splits.limit(sys, mm, start, end, changes)
    if lim == "refused":
        return errno(splits.MLOCK, "ENOMEM")
    if lim == "maybe":
        return or_errno(ok, splits.MLOCK, "ENOMEM")
    return ok


def _populate_expect(sys: OsState, mm: Mm, start: int, end: int, ok: str) -> Expect:
    """mlock's answer after __mm_populate: ENOMEM at the first page that cannot be faulted
    in.  A PROT_EXEC-only range decides by the PKU fact: execute-only (GUP's read is denied
    by the key: ENOMEM, clause linux.x86.exec-only-pkey) or readable (success, clause
    linux.x86.exec-implies-read)."""
    stop = _populate_fails(sys, mm, start, end)
    if stop is not None:
        hit = mm.vmas.find(stop)
        return errno("linux.x86.exec-only-pkey" if hit is not None and hit[2].exec_only
                     else "linux.mlock.enomem-populate", "ENOMEM")
    if any(v.prot == PROT_X for _, _, v in mm.mapped_pages(start, end)):
        return exactly("linux.x86.exec-implies-read", Outcome(value=0))
    return exactly(ok, Outcome(value=0))


def expect_mlock2(sys: OsState, mm: Mm, addr: int, length: int, flags: int) -> Expect:
    if flags & ~1:
        return errno("linux.mlock2.einval-flags", "EINVAL")
    bad = _lock_check(sys, mm, addr, length)
    if bad is not None:
        return bad
    start = addr & PAGE_MASK
    end = start + page_align(length + (addr & ~PAGE_MASK))
    if flags:
        return _split_limit(sys, mm, start, end, _changes(True, True),
                            exactly("linux.mlock2.onfault", Outcome(value=0)))
    return _split_limit(sys, mm, start, end, _changes(True, False),
                        _populate_expect(sys, mm, start, end, "posix.mlock.locks"))


def _set_locked(sys: OsState, mm: Mm, o: Outcome, addr: int, length: int, lock: bool, onfault: bool) -> None:
    if o.errno not in (None, "ENOMEM"):
        return
    start = addr & PAGE_MASK
    end = start + page_align(length + (addr & ~PAGE_MASK))
    if end <= start or end > U64:
        return
    if o.errno == "ENOMEM" and splits.limit(sys, mm, start, end, _changes(lock, onfault)):
        refused = splits.refused_at(sys, mm, start, end, _changes(lock, onfault), failed=True)
        rlimit = _lock_check(sys, mm, addr, length)
        if lock and not mm.privileged and rlimit is not None and rlimit.clause == "linux.mlock.enomem-rlimit":
            return
        if refused is not None:
            # a split refused at vm.max_map_count: the VMAs before it have the flags, nothing is
            # faulted in (clause linux.mlock.enomem-max-map-count)
            end = refused
            cursor = start
            for s, e, _ in mm.vmas.overlapping(start, end):
                if s > cursor:
                    break
                cursor = e
            for s, e, v in list(mm.mapped_pages(start, min(cursor, end))):
                mm.vmas.set(s, e, replace(v, locked=lock and not v.droppable,
                                          onfault=onfault and lock and not v.droppable))
            return
    if o.errno == "ENOMEM" and lock and not onfault:
        stop = _populate_fails(sys, mm, start, end)
        chk = _lock_check(sys, mm, addr, length)
        if stop is not None and chk is None:
            for s, e, v in list(mm.mapped_pages(start, end)):
                mm.vmas.set(s, e, replace(v, locked=not v.droppable, onfault=False))
            fault.populate(sys, mm, start, stop)
            return
    if o.errno == "ENOMEM":
        if not mm.privileged and lock and _lock_check(sys, mm, addr, length) is not None and \
                _lock_check(sys, mm, addr, length).clause == "linux.mlock.enomem-rlimit":
            return
        # applied up to the first hole
        cursor = start
        for s, e, _ in mm.vmas.overlapping(start, end):
            if s > cursor:
                break
            cursor = e
        end = min(cursor, end)
        if mm.vmas.find(start) is None:
            return
    for s, e, v in list(mm.mapped_pages(start, end)):
        # mm/mlock.c mlock_fixup: VM_DROPPABLE memory is never locked (measured on 6.18: mlock is 0,
        # the pages are populated, and MADV_DONTNEED still drops them)
        mm.vmas.set(s, e, replace(v, locked=lock and not v.droppable, onfault=onfault and lock and not v.droppable))
    if lock and not onfault and o.ok:
        # mm/mlock.c do_mlock: __mm_populate only after the flags went on without error
        fault.populate(sys, mm, start, end)


def apply_mlock(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
    _set_locked(sys, mm, o, addr, length, True, False)


def apply_mlock2(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, flags: int) -> None:
    if not flags & ~1:
        _set_locked(sys, mm, o, addr, length, True, bool(flags & 1))


def expect_munlock(sys: OsState, mm: Mm, addr: int, length: int) -> Expect:
    plen = page_align(length + (addr & ~PAGE_MASK)) & U64
    start = addr & PAGE_MASK
    return _range_check(sys, mm, start, plen, "posix.mlock.einval-wrap", "posix.mlock.enomem-unmapped") or \
        _split_limit(sys, mm, start, start + plen, _changes(False, False),
                     exactly("posix.munlock.unlocks", Outcome(value=0)))


def apply_munlock(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
    _set_locked(sys, mm, o, addr, length, False, False)


def expect_mlockall(sys: OsState, mm: Mm, flags: int) -> Expect:
    C, F, OF = MCL["MCL_CURRENT"], MCL["MCL_FUTURE"], MCL["MCL_ONFAULT"]
    if not flags or flags & ~(C | F | OF) or flags == OF:
        return errno("posix.mlockall.einval-flags", "EINVAL")
    if not can_do_mlock(mm):
        return errno("linux.mlock.eperm-no-limit", "EPERM")
    if flags & C and not mm.privileged and mm.total_vm() + sys.config.base_vm > mm.memlock_soft:
        return errno("linux.mlock.enomem-rlimit", "ENOMEM")
    return exactly("posix.mlockall.locks", Outcome(value=0))


def apply_mlockall(sys: OsState, proc: str, mm: Mm, o: Outcome, flags: int) -> None:
    if not o.ok:
        return
    C, F, OF = MCL["MCL_CURRENT"], MCL["MCL_FUTURE"], MCL["MCL_ONFAULT"]
    mm.mcl_future = (F | (flags & OF)) if flags & F else 0
    if flags & C:
        for s, e, v in list(mm.vmas.items()):
            if not v.droppable:             # mlock_fixup skips VM_DROPPABLE
                mm.vmas.set(s, e, replace(v, locked=True, onfault=bool(flags & OF)))
        if not flags & OF:
            for s, e, _ in list(mm.vmas.items()):
                fault.populate(sys, mm, s, e)


def expect_munlockall(sys: OsState, mm: Mm) -> Expect:
    return exactly("posix.munlockall.unlocks", Outcome(value=0))


def apply_munlockall(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    mm.mcl_future = 0
    for s, e, v in list(mm.vmas.items()):
        if v.locked:
            mm.vmas.set(s, e, replace(v, locked=False, onfault=False))


def expect_set_memlock_limit(sys: OsState, mm: Mm, soft: int) -> Expect:
    # kernel/sys.c do_prlimit: soft above hard is EINVAL; raising hard needs CAP_SYS_RESOURCE
    if soft & U64 > sys.config.memlock_hard:
        return errno("posix.setrlimit.einval-soft-above-hard", "EINVAL")
    return exactly("posix.setrlimit.sets", Outcome(value=0))


def apply_set_memlock_limit(sys: OsState, proc: str, mm: Mm, o: Outcome, soft: int) -> None:
    if o.ok:
        mm.memlock_soft = soft & U64


RULES = {
    "mlock": Rule(expect_mlock, apply_mlock),
    "mlock2": Rule(expect_mlock2, apply_mlock2),
    "munlock": Rule(expect_munlock, apply_munlock),
    "mlockall": Rule(expect_mlockall, apply_mlockall),
    "munlockall": Rule(expect_munlockall, apply_munlockall),
    "set_memlock_limit": Rule(expect_set_memlock_limit, apply_set_memlock_limit),
}
