"""The limits a call that adds address space may run into: RLIMIT_AS and RLIMIT_DATA
(mm/mmap.c may_expand_vm) and the commit charge (mm/util.c __vm_enough_memory, by
vm.overcommit_memory), for mmap, mprotect turning private memory writable, and mremap growing
(model/os/mappings.py).

Worked example: with RLIMIT_AS 1 MiB, an mmap of 2 MiB is ENOMEM (linux.mmap.enomem-rlimit-as)
whatever else the process holds; one of 64 KiB is ENOMEM or a mapping, since the target's own
memory moves while it runs (64 MiB of slack).
"""

from __future__ import annotations

from ..expect import Expect, errno, or_errno
from .state import PAGE_SIZE, Mm, OsState

# vm.overcommit_memory 0 refuses a charge of more pages than RAM plus swap since Linux 5.2 (8c7829b04c52,
# "mm: fix false-positive OVERCOMMIT_GUESS failures"); before, it counted free memory, page cache and free
# swap, a limit no fact gives (the generator and the linux target read this)
GUESS_RAM_SWAP_SINCE = (5, 2)


def limits(sys: OsState, mm: Mm, ok: Expect, grow: int, data_grow: int, charge: int) -> Expect:
    """The limits a call that adds ``grow`` bytes of address space (``charge`` of them committed)
    may run into, as ``ok`` widened or replaced by their errno.  Each limit is a host fact;
    where the target's own use of it is only approximately known (the harness's mappings, its
    heap, other processes' commitments), the model allows both answers near the limit."""
    c = sys.config
    slack = 64 << 20          # the target process's own memory moves while it runs
    if c.rlimit_as >= 0 and grow > 0:
        # mm/mmap.c may_expand_vm: total_vm + npages > RLIMIT_AS
        if grow > c.rlimit_as:
            return errno("linux.mmap.enomem-rlimit-as", "ENOMEM")
        if c.base_vm + mm.total_vm() + grow + slack > c.rlimit_as:
            ok = or_errno(ok, "linux.mmap.enomem-rlimit-as", "ENOMEM")
    if c.rlimit_data >= 0 and data_grow > 0:
        # mm/mmap.c may_expand_vm: data_vm (private writable) + npages > RLIMIT_DATA
        if data_grow > c.rlimit_data:
            return errno("linux.mmap.enomem-rlimit-data", "ENOMEM")
        ok = or_errno(ok, "linux.mmap.enomem-rlimit-data", "ENOMEM")
    if charge > 0:
        pages = charge // PAGE_SIZE
        # mm/util.c __vm_enough_memory, by vm.overcommit_memory
        if c.overcommit_memory == 0 and pages > c.ram_pages + c.swap_pages:
            return errno("linux.mmap.enomem-overcommit", "ENOMEM")
        if c.overcommit_memory == 2:
            limit = c.ram_pages * c.overcommit_ratio // 100 + c.swap_pages
            if pages > limit:
                return errno("linux.mmap.enomem-overcommit", "ENOMEM")
            # what the rest of the machine has committed is not known: either answer
            ok = or_errno(ok, "linux.mmap.enomem-overcommit", "ENOMEM")
    return ok
