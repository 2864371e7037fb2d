"""Where the os model does not give one exact answer, and why the kernel leaves it open.

A rule that allows several outcomes (``impl_defined=True``, ``or_errno``) or answers "unknown"
(``unknown=True``) judges less than an exact one: a wrong kernel could pass it.  Each such place
in ``model/os/*.py`` and ``model/mm.py`` is listed here with the reason; ``tests/os/test_os_audit.py``
finds every one in the source and fails when the source and this list differ, so the count
only changes knowingly.  ``docs/os-audit.md`` shows the same list; ``memspec check`` prints
the count for the os layer.

Each entry: (module, function, clause, reason).
"""

from __future__ import annotations

OPEN_ANSWERS: tuple[tuple[str, str, str, str], ...] = (
    ("access", "_expect_access", "linux.x86.fetch-crosses-page",
     "an instruction fetched near a page's end may run onto a page that cannot be fetched: whether it "
     "does depends on the bytes there, which the model does not decode"),
    ("access", "_expect_access", "linux.mmap.growsdown-expands",
     "below a MAP_GROWSDOWN mapping a fault grows it unless the stack guard gap (a boot parameter), "
     "RLIMIT_STACK, RLIMIT_AS, the lock limit or overcommit refuse it: not modelled (unknown)"),
    ("access", "_expect_access", "linux.writeback.zeroes-eof-tail",
     "a byte stored past the end of a disk file, in the page straddling it, is zeroed by any writeback of "
     "the page, which the flusher or reclaim may start at any time (and the target's folder may be tmpfs, "
     "which never zeroes it): the stored value or 0"),
    ("access", "_expect_access", "linux.madvise.free-lazy",
     "after MADV_FREE the kernel frees the page only under memory pressure (mm/vmscan.c): old value or 0"),
    ("advice", "expect_madvise", "linux.madvise.hwpoison-privileged",
     "MADV_HWPOISON / MADV_SOFT_OFFLINE with CAP_SYS_ADMIN take frames out of the machine: the linux "
     "target refuses them, so no kernel answer exists to model (unknown)"),
    ("advice", "_expect_collapse", "linux.madvise.collapse",
     "a range without a whole 2 MiB block: EINVAL on Linux 6.18 and before, 0 in later trees; an "
     "unknown release allows both"),
    ("advice", "_expect_collapse", "linux.madvise.collapse",
     "a collapse succeeds or fails by what the kernel finds: pages still on per-CPU LRU caches (EAGAIN), "
     "no huge page to allocate (ENOMEM), an empty page table (EINVAL), a charge refused (EBUSY)"),
    ("advice", "expect_mincore", "posix.mincore.residency",
     "pages reclaim, MADV_PAGEOUT, fault-around or a fork copy may or may not have left resident"),
    ("bulk", "expect_map_pages", "linux.mmap.max-map-count-reached",
     "with RLIMIT_AS set or after mlockall(MCL_FUTURE), limits that grow with every page mapped are not "
     "followed page by page: not modelled (unknown)"),
    ("bulk", "expect_map_pages", "linux.mmap.max-map-count-reached",
     "on a target with mappings of its own (one that reports quiet ranges) the last page may come anywhere "
     "within 64 mappings of vm.max_map_count: its own mappings move while it runs and base_maps is probed once"),
    ("fileio", "_write_check", "linux.write.not-modelled",
     "writes beyond 1 MiB per call are not staged; a regular file past 1 TiB meets its file system's "
     "s_maxbytes, a host fact not probed (unknown)"),
    ("fileio", "expect_lseek", "linux.lseek.data-hole",
     "SEEK_DATA / SEEK_HOLE inside a file: where the file system keeps holes is its own allocation"),
    ("fileio", "expect_lseek", "posix.lseek.sets-offset",
     "an offset past 1 TiB in a regular file may pass its file system's s_maxbytes (EINVAL), a host "
     "fact not probed"),
    ("files", "_fd_expect", "posix.open.regular-file",
     "the lowest free descriptor depends on the descriptors the target process holds itself"),
    ("files", "_fd_expect", "posix.open.emfile",
     "near RLIMIT_NOFILE the target's own open descriptors decide between a descriptor and EMFILE"),
    ("mappings", "_mmap_check", "linux.mmap.hugetlb-growsdown",
     "MAP_HUGETLB depends on the huge page pool (nr_hugepages, reservations); MAP_GROWSDOWN on the "
     "stack guard gap: not modelled (unknown)"),
    ("mappings", "_mmap_check_late", "posix.mmap.enodev",
     "mmap of a pipe with PROT_EXEC on a kernel before 6.18: EPERM (pipefs noexec, measured on 6.18) "
     "or ENODEV, the release that made pipefs noexec is not pinned"),
    ("mappings", "_mmap_check", "linux.mmap.fixed-noreplace-maps",
     "before Linux 4.17 MAP_FIXED_NOREPLACE is an unknown bit (the address a hint): not modelled (unknown)"),
    ("mappings", "_expect_mmap", "linux.mmap.fixed-noreplace-maps",
     "outside the target's quiet ranges its own mappings (libraries, heap) may occupy the range: EEXIST"),
    ("mappings", "_expect_mmap", "linux.mmap.sync-fs-dependent",
     "MAP_SYNC on a file of open_file: VM_SYNC is refused by a file system without DAX (ext4, xfs) and "
     "ignored by tmpfs; the target's folder may be on either"),
    ("mappings", "expect_mmap", "linux.mmap.enomem-max-map-count",
     "near vm.max_map_count the target's own mappings count too (alone the model counts exactly)"),
    ("mappings", "expect_mmap", "linux.mmap.enomem-max-map-count",
     "alone, over vm.max_map_count by the model's count, but not if the kernel merged neighbouring VMAs "
     "the model keeps apart (whether anonymous ones merge depends on their anon_vma, which fork shares)"),
    ("mappings", "split_first", "linux.mprotect.enomem-max-map-count",
     "near vm.max_map_count the target's own mappings count too: a split may be refused (alone the "
     "model counts exactly)"),
    ("locking", "_split_limit", "linux.mlock.enomem-max-map-count",
     "near vm.max_map_count the target's own mappings count too: a split may be refused (alone the "
     "model counts exactly)"),
    ("sealing", "expect_mseal", "linux.mseal.enomem-max-map-count",
     "near vm.max_map_count the target's own mappings count too: a split may be refused (alone the "
     "model counts exactly)"),
    ("advice", "_collapse_walk", "linux.madvise.collapse",
     "MADV_COLLAPSE over several VMAs, or after a gap: each VMA's collapse may fail by what the kernel "
     "finds there (as _expect_collapse), and a failure ends the walk before a later VMA or the gap's ENOMEM"),
    ("advice", "expect_madvise", "linux.madvise.eagain-max-map-count",
     "near vm.max_map_count the target's own mappings count too (and, alone, neighbouring VMAs the "
     "kernel merged): a split may be refused"),
    ("mappings", "expect_munmap", "linux.munmap.enomem-max-map-count",
     "near vm.max_map_count the target's own mappings count too: a split may be refused"),
    ("mappings", "expect_mremap", "linux.mremap.enomem-max-map-count",
     "near vm.max_map_count the target's own mappings count too: a move may be refused"),
    ("limits", "limits", "linux.mmap.enomem-rlimit-as",
     "near RLIMIT_AS the target process's own address space moves while it runs"),
    ("limits", "limits", "linux.mmap.enomem-rlimit-data",
     "RLIMIT_DATA counts the target process's own private writable memory and heap"),
    ("limits", "limits", "linux.mmap.enomem-overcommit",
     "overcommit mode 2: what the rest of the machine has committed is not known"),
    ("mappings", "_placement", "posix.mmap.new-range-free",
     "the address of a mapping without MAP_FIXED is the kernel's choice (ASLR, mmap_base); any free, "
     "aligned range in the allowed window is accepted"),
    ("mappings", "_mremap_expect", "linux.mremap.efault-unmapped",
     "old_size 0 duplicates a shared mapping (a legacy path): not modelled (unknown)"),
    ("mappings", "_mremap_expect", "linux.mremap.efault-unmapped",
     "a MREMAP_FIXED move of several VMAs (Linux 6.17+): not modelled (unknown)"),
    ("mappings", "_mremap_expect", "linux.mremap.grow-in-place",
     "past a mapping the target placed itself may live memory the model does not see: grow or ENOMEM"),
    ("mappings", "_mremap_expect", "linux.mremap.grow-in-place",
     "as above, with MREMAP_MAYMOVE: grown in place or moved to a free range"),
    ("observation", "one_of_values", "linux.thp.fault-huge",
     "whether a fault got a transparent huge page depends on huge page allocation at that moment"),
    ("observation", "expect_minflt", "seed.fault.minor-counted",
     "fault counts are judged as bounds the kernel guarantees, never as the model's own accounting "
     "(fault-around, retries, the harness's own faults)"),
    ("observation", "expect_majflt", "seed.fault.major-counted",
     "as above: a lower bound of the page loads the model is sure of"),
    ("processes", "expect_fork", "posix.fork.copies-address-space",
     "the child's process id is the kernel's choice"),
    ("processes", "expect_fork", "linux.mmap.enomem-overcommit",
     "overcommit mode 2: fork charges the copied private writable memory against a commit limit "
     "other processes share"),
    ("mm", "expect", "memspec.host.page-size",
     "a kernel with pages other than 4 KiB: the model knows 4 KiB pages only (unknown)"),
)
