"""os-layer clauses: mmap, munmap, mprotect, accesses, fork (the POSIX slice).

Sources: POSIX.1-2024 (IEEE Std 1003.1-2024) XSH pages mmap(), munmap(),
mprotect(), fork(); Linux man-pages 6.9 mmap(2), mprotect(2), fork(2); and
the Linux 6.x source where the man page is silent (mm/mmap.c, mm/vma.c,
mm/mprotect.c, arch/x86/kernel/sys_x86_64.c).
"""

from __future__ import annotations

from .catalogue import declare

POSIX_MMAP = "POSIX.1-2024 XSH mmap()"
POSIX_MUNMAP = "POSIX.1-2024 XSH munmap()"
POSIX_MPROTECT = "POSIX.1-2024 XSH mprotect()"
MAN_MMAP = "mmap(2), Linux man-pages 6.9"
MAN_MPROTECT = "mprotect(2), Linux man-pages 6.9"

declare(
    "os",
    # --- mmap: errors ---------------------------------------------------------
    ("posix.mmap.einval-len0", "mmap with length 0 fails with EINVAL",
     f"{MAN_MMAP}, ERRORS: EINVAL (since Linux 2.6.12) length was 0; {POSIX_MMAP} ERRORS EINVAL"),
    ("posix.mmap.einval-offset", "mmap with an offset that is not a multiple of the page size fails with EINVAL",
     f"{POSIX_MMAP}, ERRORS: EINVAL The addr argument (if MAP_FIXED was specified) or off is not a multiple of the page size; arch/x86/kernel/sys_x86_64.c sys_mmap"),
    ("posix.mmap.fixed-einval-unaligned", "MAP_FIXED with an address that is not page aligned fails with EINVAL",
     f"{POSIX_MMAP}, ERRORS: EINVAL; {MAN_MMAP}, ERRORS: EINVAL addr not aligned"),
    ("posix.mmap.einval-type", "flags with neither MAP_PRIVATE nor MAP_SHARED (or MAP_SHARED_VALIDATE for anonymous memory) fail with EINVAL",
     f"{MAN_MMAP}, ERRORS: EINVAL flags contained none of MAP_PRIVATE, MAP_SHARED, or MAP_SHARED_VALIDATE; mm/mmap.c do_mmap (anonymous: default case)",
     "Linux rejects MAP_SHARED_VALIDATE for anonymous mappings with EINVAL although the man page lists it as a valid type"),
    ("posix.mmap.ebadf", "a non-anonymous mapping with an invalid fd fails with EBADF",
     f"{POSIX_MMAP}, ERRORS: EBADF The fildes argument is not a valid open file descriptor"),
    ("posix.mmap.file", "file-backed mappings (not modelled in this slice: judged unknown)", f"{POSIX_MMAP}"),
    ("linux.mmap.hugetlb-growsdown", "MAP_HUGETLB and MAP_GROWSDOWN mappings (not modelled: judged unknown)", MAN_MMAP),
    ("linux.mmap.enomem-len-overflow", "a length that overflows when rounded up to a page fails with ENOMEM",
     "mm/mmap.c do_mmap: len = PAGE_ALIGN(len); if (!len) return -ENOMEM"),
    ("linux.mmap.enomem-too-long", "a length beyond the user address space fails with ENOMEM",
     f"{MAN_MMAP}, ERRORS: ENOMEM; mm/mmap.c __get_unmapped_area: len > TASK_SIZE"),
    ("linux.mmap.fixed-enomem-beyond-task-size", "MAP_FIXED with addr+len beyond the user address space fails with ENOMEM",
     f"{POSIX_MMAP}, ERRORS: ENOMEM MAP_FIXED was specified, and the range [addr,addr+len) exceeds that allowed for the address space of a process; mm/mmap.c __get_unmapped_area"),
    ("linux.mmap.eperm-below-min-addr", "MAP_FIXED below vm.mmap_min_addr fails with EPERM without CAP_SYS_RAWIO",
     "mm/mmap.c __get_unmapped_area -> security_mmap_addr; Documentation/admin-guide/sysctl/vm.rst mmap_min_addr"),
    ("linux.mmap.fixed-noreplace-eexist", "MAP_FIXED_NOREPLACE over an existing mapping fails with EEXIST",
     f"{MAN_MMAP}, MAP_FIXED_NOREPLACE and ERRORS: EEXIST"),
    ("posix.mmap.enomem-no-room", "mmap fails with ENOMEM when no free range of the length exists",
     f"{POSIX_MMAP}, ERRORS: ENOMEM"),
    # --- mmap: effects --------------------------------------------------------
    ("posix.mmap.fixed-exact", "MAP_FIXED maps exactly at addr and replaces any mapping there",
     f"{POSIX_MMAP}: When MAP_FIXED is set ... the implementation shall not change the value of addr; the mapping replaces any previous mappings"),
    ("linux.mmap.fixed-noreplace-maps", "MAP_FIXED_NOREPLACE over a free range maps exactly at addr",
     f"{MAN_MMAP}, MAP_FIXED_NOREPLACE (since Linux 4.17)"),
    ("posix.mmap.new-range-free", "without MAP_FIXED, mmap returns a page-aligned range that overlaps no existing mapping",
     f"{POSIX_MMAP}: the implementation uses addr to arrive at pa ... pa shall not overlap existing mappings (implementation-defined choice)"),
    ("linux.mmap.hint-used-when-free", "a hint address whose range is free is used as the mapping address",
     f"{MAN_MMAP}: If addr is not NULL, then the kernel takes it as a hint about where to place the mapping; arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area_topdown",
     "POSIX leaves the use of the hint implementation-defined; Linux uses it when the range is free"),
    ("linux.mmap.32bit-below-2g", "MAP_32BIT places the mapping in the first 2 GiB", f"{MAN_MMAP}, MAP_32BIT"),
    ("posix.mmap.maps-range", "a successful mmap maps the pages [pa, pa+len) with the requested protection and sharing",
     f"{POSIX_MMAP}: establish a mapping between the address space of the process at an address pa for len bytes"),
    ("linux.mmap.anon-zero-fill", "anonymous memory reads as zero until written", f"{MAN_MMAP}, MAP_ANONYMOUS: its contents are initialized to zero"),
    ("posix.mmap.private-contents", "a private mapping reads back what the process stored", f"{POSIX_MMAP}: MAP_PRIVATE"),
    ("posix.mmap.shared-visible", "stores to a MAP_SHARED mapping are visible to every process mapping the same object",
     f"{POSIX_MMAP}: If MAP_SHARED is specified, write references shall change the underlying object"),
    # --- protection enforcement ------------------------------------------------
    ("posix.mmap.prot-read", "a page with PROT_READ can be read", f"{POSIX_MMAP}: PROT_READ Data can be read"),
    ("posix.mmap.prot-write", "a page with PROT_WRITE can be written", f"{POSIX_MMAP}: PROT_WRITE Data can be written"),
    ("posix.mmap.prot-exec", "a page with PROT_EXEC can be executed", f"{POSIX_MMAP}: PROT_EXEC Data can be executed"),
    ("posix.mmap.prot-none-sigsegv", "any access to a PROT_NONE page raises SIGSEGV",
     f"{POSIX_MMAP}: PROT_NONE Data cannot be accessed; {POSIX_MPROTECT}: shall result in a SIGSEGV"),
    ("posix.mmap.prot-enforced-write", "a store to a page without PROT_WRITE raises SIGSEGV",
     f"{POSIX_MPROTECT}: an implementation shall not permit a write to succeed where PROT_WRITE has not been set"),
    ("linux.x86.write-implies-read", "on x86, PROT_WRITE without PROT_READ is readable",
     f"{MAN_MMAP}, NOTES: on some hardware architectures (e.g., i386), PROT_WRITE implies PROT_READ",
     "POSIX allows either; x86 page tables cannot express write-only"),
    ("linux.x86.exec-only-pkey", "PROT_EXEC alone is execute-only (reads fault) when the CPU has PKU, readable otherwise",
     "pkeys(7), Linux man-pages 6.9: execute-only memory; arch/x86/mm/pkeys.c execute_only_pkey; POSIX mmap(): an implementation may permit accesses other than those specified by prot",
     "an allowed choice: recorded as impl-defined"),
    ("linux.x86.nx-enforced", "a fetch from a page without PROT_EXEC raises SIGSEGV on x86-64 (NX), also when readable",
     f"{MAN_MMAP}, NOTES: PROT_READ implies PROT_EXEC only with READ_IMPLIES_EXEC personality; Intel SDM Vol. 3A §4.6 (XD)",
     "POSIX allows PROT_READ to imply execute; x86-64 Linux enforces NX"),
    ("posix.access.unmapped-sigsegv", "an access to an address with no mapping raises SIGSEGV",
     f"{POSIX_MMAP}: references to whole pages following the end of an object ... SIGSEGV / SIGBUS; signal(7) SIGSEGV SEGV_MAPERR"),
    # --- munmap ----------------------------------------------------------------
    ("posix.munmap.einval-unaligned", "munmap of an address that is not page aligned fails with EINVAL",
     f"{POSIX_MUNMAP}, ERRORS: EINVAL The addr argument is not a multiple of the page size"),
    ("posix.munmap.einval-outside", "munmap of a range outside the process's address space fails with EINVAL",
     f"{POSIX_MUNMAP}, ERRORS: EINVAL Addresses in the range [addr,addr+len) are outside the valid range for the address space of a process; mm/vma.c do_vmi_munmap"),
    ("posix.munmap.einval-len0", "munmap with length 0 fails with EINVAL",
     f"{MAN_MMAP}, ERRORS: EINVAL (since Linux 2.6.12) length was 0 (munmap shares the page); mm/vma.c do_vmi_munmap"),
    ("posix.munmap.unmapped-ok", "munmap of a range with no mappings succeeds and has no effect",
     f"{POSIX_MUNMAP}: If there are no mappings in the specified address range, then munmap() has no effect; {MAN_MMAP}: It is not an error if the indicated range does not contain any mapped pages"),
    ("posix.munmap.removes-range", "munmap removes every page of [addr, addr+len rounded up); later accesses raise SIGSEGV",
     f"{POSIX_MUNMAP}: remove any mappings for those entire pages containing any part of the address space of the process starting at addr and continuing for len bytes"),
    # --- mprotect --------------------------------------------------------------
    ("posix.mprotect.einval-unaligned", "mprotect of an address that is not page aligned fails with EINVAL",
     f"{POSIX_MPROTECT}, ERRORS: EINVAL The addr argument is not a multiple of the page size; {MAN_MPROTECT}, ERRORS"),
    ("linux.mprotect.len0-ok", "mprotect with length 0 succeeds and changes nothing",
     "mm/mprotect.c do_mprotect_pkey: if (!len) return 0", "POSIX does not say; Linux returns 0"),
    ("linux.mprotect.enomem-wrap", "mprotect of a range that wraps the address space fails with ENOMEM",
     "mm/mprotect.c do_mprotect_pkey: end <= start -> -ENOMEM"),
    ("posix.mprotect.einval-prot", "mprotect with unknown protection bits fails with EINVAL",
     f"{MAN_MPROTECT}, ERRORS: EINVAL prot is invalid; include/linux/mman.h arch_validate_prot"),
    ("linux.mprotect.einval-grows-both", "PROT_GROWSDOWN|PROT_GROWSUP together fail with EINVAL",
     f"{MAN_MPROTECT}, ERRORS: EINVAL Both PROT_GROWSUP and PROT_GROWSDOWN were specified in prot"),
    ("linux.mprotect.einval-growsdown-not-stack", "PROT_GROWSDOWN/PROT_GROWSUP on a mapping that does not grow fails with EINVAL",
     f"{MAN_MPROTECT}, PROT_GROWSDOWN; mm/mprotect.c do_mprotect_pkey (VM_GROWSDOWN / VM_GROWSUP checks)"),
    ("posix.mprotect.enomem-unmapped", "mprotect whose range starts with unmapped pages fails with ENOMEM and changes nothing",
     f"{POSIX_MPROTECT}, ERRORS: ENOMEM Addresses in the range [addr,addr+len) are invalid for the address space of a process, or specify one or more pages which are not mapped"),
    ("linux.mprotect.enomem-hole-partial", "mprotect over a hole fails with ENOMEM after changing the mappings before the hole",
     f"{MAN_MPROTECT}, ERRORS: ENOMEM; mm/mprotect.c do_mprotect_pkey loop; {POSIX_MPROTECT}: the protection of some of the pages in the range may have been changed"),
    ("posix.mprotect.sets-prot", "mprotect changes the protection of every page of the range to prot",
     f"{POSIX_MPROTECT}: change the access protections to be that specified by prot for those whole pages containing any part of the address space"),
    # --- processes ---------------------------------------------------------------
    ("posix.fork.copies-address-space", "fork creates a process with a copy of the caller's mappings",
     "POSIX.1-2024 XSH fork(); fork(2), Linux man-pages 6.9: the child inherits copies of the parent's memory mappings"),
    ("posix.fork.private-copy", "after fork, each process sees its own copy of private pages (copy-on-write): a store in one is not seen by the other",
     "fork(2), Linux man-pages 6.9: the child and parent run in separate memory spaces ... memory writes performed by one of the processes do not affect the other; seed: Copy-on-Write"),
    ("posix.exit.releases", "_exit ends the process and releases its mappings", "POSIX.1-2024 XSH _exit(): memory mappings ... shall be unmapped"),
    # --- checkpoint views and the harness's own promises -------------------------
    ("linux.proc-maps.matches", "/proc/PID/maps shows each page with the protection and sharing the calls gave it",
     "proc_pid_maps(5), Linux man-pages 6.9 (perms: r w x, p private / s shared)"),
    ("memspec.proc.exited", "a call in a process that has exited is refused (ESRCH)", "memspec protocol (docs/protocol.md)"),
    ("memspec.target.alive", "the target runs every call of the program and answers (no crash, hang or garbage)",
     "memspec docs/protocol.md: one reply per request"),
)

# Invariants of the model's own state, checked after every call (a broken
# implementation of the model, or a target adopted into an impossible state).
declare(
    "os",
    ("memspec.inv.vma-page-aligned", "every VMA is a non-empty range of whole pages", "mm/vma.c (vm_start, vm_end page aligned)"),
    ("memspec.inv.vmas-disjoint", "the VMAs of a process do not overlap", "mm/vma.c: the VMA tree holds disjoint ranges"),
    ("memspec.inv.shared-object-exists", "a shared mapping's object exists exactly while some process maps it",
     "POSIX.1-2024 XSH munmap(): the object is released when no mappings remain"),
    ("memspec.inv.private-pages-mapped", "private page contents exist only inside private mappings",
     "POSIX.1-2024 XSH munmap(): removed pages' contents are gone"),
)

declare(
    "os",
    ("linux.mmap.fixed-addr-is-err-value", "MAP_FIXED with an address in the top 4095 values fails with errno = -addr (EPERM for -1)",
     "mm/mmap.c __get_unmapped_area: IS_ERR_VALUE(addr) after get_area returns a MAP_FIXED address unchanged",
     "POSIX says EINVAL or ENOMEM; the kernel's error-pointer encoding leaks through"),
)

declare(
    "os",
    ("memspec.checkpoint", "a target's state at a checkpoint matches the model's (layers without a named view clause)",
     "memspec docs/protocol.md, observe"),
)
