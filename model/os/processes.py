"""The rules of the calls that make, end and change processes: fork, exit, drop_privileges.

fork copies the address space (kernel/fork.c dup_mmap): VMAs but not MADV_DONTFORK ones and
not their locks, private pages shared copy-on-write with both PTEs read-only, memory objects
and descriptors shared.  exit releases everything (``OsState.release``); drop_privileges
takes away the capabilities the other rules read (CAP_IPC_LOCK, file-mode bypass, setuid).

Worked example: ``store(a, 1)``, ``p = fork()``, then ``store(a, 2)`` in the parent: the
child still reads 1 (``posix.fork.private-copy``), through a copy made on the write fault.
"""

from __future__ import annotations

from dataclasses import replace

from memspec.consts import PAGE_SIZE
from memspec.records import OK, Outcome

from .. import fault
from ..expect import Expect, errno, exactly, or_errno
from ..pages import ZERO_PAGE
from ..rules import Rule
from .state import PROT_W, Fd, Mm, OsState, Pte

NOBODY = 65534         # the unprivileged user and group drop_privileges switches to


def expect_fork(sys: OsState, mm: Mm) -> Expect:
    def allowed(o: Outcome) -> str | None:
        if not o.ok or o.value is None or o.value <= 0:
            return f"expected a process id, observed {o.describe()}"
        return None
    ok = Expect("posix.fork.copies-address-space", Outcome(value=sys.next_pid), "a process id",
                predicate=allowed, impl_defined=True)
    if sys.config.overcommit_memory == 2 and any(v.prot & PROT_W and not v.shared for _, _, v in mm.vmas.items()):
        # kernel/fork.c dup_mmap charges every VM_ACCOUNT mapping: ENOMEM under strict overcommit
        return or_errno(ok, "linux.mmap.enomem-overcommit", "ENOMEM")
    return ok


def apply_fork(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    # The new process's name is bound by the caller through ``bind``.
    if not o.ok:
        return
    sys.pending_fork = fork_mm(sys, mm, o.value or sys.next_pid)
    sys.next_pid += 1


def fork_mm(sys: OsState, parent: Mm, pid: int) -> Mm:
    """kernel/fork.c dup_mmap: copy the VMAs (not MADV_DONTFORK ones, and without
    VM_LOCKED: mlock(2) 'memory locks are not inherited'), share private pages
    copy-on-write (both PTEs read-only), and share memory objects."""
    child = Mm(sys.config)
    child.pid = pid
    child.privileged = parent.privileged
    child.dac_override = parent.dac_override
    child.fowner = parent.fowner
    child.can_setuid = parent.can_setuid
    child.sys_admin = parent.sys_admin
    child.uid = parent.uid
    child.memlock_soft = parent.memlock_soft
    child.fsize_soft = parent.fsize_soft
    for s, e, v in parent.vmas.items():
        if v.dontfork:
            continue
        child.vmas.set(s, e, replace(v, locked=False, onfault=False))
        if v.locked:
            child.unlocked_at_fork |= set(range(s, e, PAGE_SIZE))
        if v.wipeonfork:
            # kernel/fork.c dup_mmap: a VM_WIPEONFORK VMA gets no anon_vma and no copied page
            # tables: the child reads zero there, and has no guard markers (linux.madvise.wipeonfork)
            continue
        # mm/memory.c copy_nonpresent_pte: guard markers are copied (measured on Linux 6.18 for
        # anonymous and file mappings alike; clause linux.madvise.guard-install)
        child.guard |= {p for p in parent.guard if s <= p < e}
        for page in sys.pages_in(parent, s, e):
            p = parent.anon.get(page)
            if p is not None:
                p.mapcount += 1
                child.anon[page] = p
                p.inherited = True
            t = parent.pte.get(page)
            if t is not None and t.page is ZERO_PAGE:
                # mm/memory.c copy_page_range copies nothing for a VMA without an anon_vma,
                # and a read fault mapping the zero page makes none: the child may or may
                # not have this PTE (it reads zero either way)
                fault.flush_tlb_page(parent, page)
                child.maybe.add(page)
            elif t is not None:
                if p is not None and t.page is p:
                    t.write = False
                    fault.flush_tlb_page(parent, page)
                    child.pte[page] = Pte(t.page, False)
                else:
                    # page-cache PTEs are copied only when the VMA has an anon_vma
                    child.maybe.add(page)
            elif page in parent.maybe:
                child.maybe.add(page)
    for base in parent.huge | parent.thp_maybe:
        child.thp_maybe.add(base)
    for fd, f in parent.fds.items():
        child.fds[fd] = Fd(f.obj, f.read, f.write, f.pos, f.append)     # one open file description, one offset
        if f.obj is not None:
            sys.objects[f.obj].opens += 1
    return child


def expect_exit(sys: OsState, mm: Mm) -> Expect:
    return exactly("posix.exit.releases", OK)


def apply_exit(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    sys.release(proc)


def expect_drop_privileges(sys: OsState, mm: Mm) -> Expect:
    if not mm.can_setuid:
        # setgroups(2), setresuid(2): without CAP_SETGID / CAP_SETUID (an unprivileged caller,
        # or one that already dropped them) changing the groups fails with EPERM
        return errno("posix.setuid.eperm", "EPERM")
    return exactly("posix.setuid.drops-capabilities", Outcome(value=0))


def apply_drop_privileges(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    if o.ok:
        mm.privileged = False
        mm.dac_override = False
        mm.fowner = False
        mm.can_setuid = False
        mm.sys_admin = False
        mm.uid = NOBODY


RULES = {
    "fork": Rule(expect_fork, apply_fork),
    "exit": Rule(expect_exit, apply_exit),
    "drop_privileges": Rule(expect_drop_privileges, apply_drop_privileges),
}
