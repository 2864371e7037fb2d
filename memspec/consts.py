"""Named constants of program text: Linux x86-64 values, spelt as in C.

Program text uses these names so that a kernel developer reads it as C
(``PROT_READ|PROT_WRITE``, ``MAP_PRIVATE|MAP_ANONYMOUS``).  Values are those of
the x86-64 Linux UAPI headers (asm-generic/mman-common.h, asm/mman.h,
linux/mman.h, asm-generic/errno-base.h).
"""

from __future__ import annotations

import errno as _errno

PAGE_SIZE = 4096
PAGE_SHIFT = 12

# Groups of constants.  A name belongs to exactly one group; the group tells
# the program validator which argument kinds may use it.
PROT = {
    "PROT_NONE": 0x0,
    "PROT_READ": 0x1,
    "PROT_WRITE": 0x2,
    "PROT_EXEC": 0x4,
    "PROT_SEM": 0x8,
    "PROT_GROWSDOWN": 0x01000000,
    "PROT_GROWSUP": 0x02000000,
}

MAP = {
    "MAP_SHARED": 0x01,
    "MAP_PRIVATE": 0x02,
    "MAP_SHARED_VALIDATE": 0x03,
    "MAP_FIXED": 0x10,
    "MAP_ANONYMOUS": 0x20,
    "MAP_32BIT": 0x40,
    "MAP_GROWSDOWN": 0x0100,
    "MAP_DENYWRITE": 0x0800,
    "MAP_EXECUTABLE": 0x1000,
    "MAP_LOCKED": 0x2000,
    "MAP_NORESERVE": 0x4000,
    "MAP_POPULATE": 0x8000,
    "MAP_NONBLOCK": 0x10000,
    "MAP_STACK": 0x20000,
    "MAP_HUGETLB": 0x40000,
    "MAP_SYNC": 0x80000,
    "MAP_FIXED_NOREPLACE": 0x100000,
    "MAP_UNINITIALIZED": 0x4000000,
    "MAP_DROPPABLE": 0x08,           # linux/mman.h, since Linux 6.11 (a mapping type, like MAP_PRIVATE)
    "MAP_ABOVE4G": 0x80,             # arch/x86/include/uapi/asm/mman.h, since Linux 6.6
    "MAP_FILE": 0x0,
    # linux/mman.h MAP_HUGE_* (asm-generic/hugetlb_encode.h): log2 of the huge page size << 26
    "MAP_HUGE_16KB": 14 << 26, "MAP_HUGE_64KB": 16 << 26, "MAP_HUGE_512KB": 19 << 26,
    "MAP_HUGE_1MB": 20 << 26, "MAP_HUGE_2MB": 21 << 26, "MAP_HUGE_8MB": 23 << 26,
    "MAP_HUGE_16MB": 24 << 26, "MAP_HUGE_32MB": 25 << 26, "MAP_HUGE_256MB": 28 << 26,
    "MAP_HUGE_512MB": 29 << 26, "MAP_HUGE_1GB": 30 << 26, "MAP_HUGE_2GB": 31 << 26,
    "MAP_HUGE_16GB": 34 << 26,
}

MREMAP = {"MREMAP_MAYMOVE": 1, "MREMAP_FIXED": 2, "MREMAP_DONTUNMAP": 4}
# asm-generic/mman-common.h: every advice value of the 6.x uapi
MADV = {
    "MADV_NORMAL": 0, "MADV_RANDOM": 1, "MADV_SEQUENTIAL": 2, "MADV_WILLNEED": 3,
    "MADV_DONTNEED": 4, "MADV_FREE": 8, "MADV_REMOVE": 9, "MADV_DONTFORK": 10,
    "MADV_DOFORK": 11, "MADV_MERGEABLE": 12, "MADV_UNMERGEABLE": 13,
    "MADV_HUGEPAGE": 14, "MADV_NOHUGEPAGE": 15, "MADV_DONTDUMP": 16, "MADV_DODUMP": 17,
    "MADV_WIPEONFORK": 18, "MADV_KEEPONFORK": 19, "MADV_COLD": 20, "MADV_PAGEOUT": 21,
    "MADV_POPULATE_READ": 22, "MADV_POPULATE_WRITE": 23, "MADV_DONTNEED_LOCKED": 24,
    "MADV_COLLAPSE": 25, "MADV_HWPOISON": 100, "MADV_SOFT_OFFLINE": 101,
    "MADV_GUARD_INSTALL": 102, "MADV_GUARD_REMOVE": 103,
}
MS = {"MS_ASYNC": 1, "MS_INVALIDATE": 2, "MS_SYNC": 4}
MCL = {"MCL_CURRENT": 1, "MCL_FUTURE": 2, "MCL_ONFAULT": 4}
MLOCK = {"MLOCK_ONFAULT": 1}
O_FLAGS = {
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_CREAT": 0o100, "O_EXCL": 0o200,
    "O_TRUNC": 0o1000, "O_APPEND": 0o2000,
}
MISC = {"NULL": 0}
# lseek(2) whence (include/uapi/linux/fs.h)
SEEK = {"SEEK_SET": 0, "SEEK_CUR": 1, "SEEK_END": 2, "SEEK_DATA": 3, "SEEK_HOLE": 4}
# memfd_create(2) flags (include/uapi/linux/memfd.h) and resource limits (asm-generic/resource.h)
MFD = {"MFD_CLOEXEC": 0x1, "MFD_ALLOW_SEALING": 0x2, "MFD_HUGETLB": 0x4, "MFD_NOEXEC_SEAL": 0x8, "MFD_EXEC": 0x10}
# phys layer: gfp flags (include/linux/gfp_types.h; GFP_THISNODE stands for __GFP_THISNODE,
# whose leading underscores program text cannot spell), page owners, NUMA policy modes
# (include/uapi/linux/mempolicy.h) and counters.
GFP = {"GFP_KERNEL": 0x0, "GFP_DMA": 0x1, "GFP_DMA32": 0x4, "GFP_THISNODE": 0x200000}
PGOWNER = {"PG_SLAB": 1, "PG_PAGETABLE": 2, "PG_ANON": 3, "PG_PAGECACHE": 4, "PG_KERNEL": 5}
MPOL = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3, "MPOL_LOCAL": 4}
NUMASTAT = {"NUMA_LOCAL": 0, "NUMA_REMOTE": 1, "NUMA_HIT": 2, "NUMA_MISS": 3, "NUMA_INTERLEAVE_HIT": 4}

# hw layer (Intel SDM Vol. 3A §2.5, §4.5, §4.10.4; AMD APM Vol. 2 §5): paging-entry
# bits, control-register bits, access kinds and INVPCID types.
PTE = {
    "PTE_P": 1 << 0, "PTE_RW": 1 << 1, "PTE_US": 1 << 2, "PTE_PWT": 1 << 3, "PTE_PCD": 1 << 4,
    "PTE_A": 1 << 5, "PTE_D": 1 << 6, "PTE_PS": 1 << 7, "PTE_G": 1 << 8,
    "PTE_PAT_LARGE": 1 << 12,   # PAT of a 2 MiB / 1 GiB page (bit 7 is PAT in a 4 KiB PTE)
    "PTE_PK1": 1 << 59, "PTE_PK2": 1 << 60, "PTE_PK4": 1 << 61, "PTE_PK8": 1 << 62,
    "PTE_XD": 1 << 63,
}
CREG = {
    "CR0_PE": 1 << 0, "CR0_WP": 1 << 16, "CR0_PG": 1 << 31,
    "CR4_PSE": 1 << 4, "CR4_PAE": 1 << 5, "CR4_PGE": 1 << 7, "CR4_LA57": 1 << 12, "CR4_PCIDE": 1 << 17,
    "CR4_SMEP": 1 << 20, "CR4_SMAP": 1 << 21, "CR4_PKE": 1 << 22,
    "EFER_SCE": 1 << 0, "EFER_LME": 1 << 8, "EFER_LMA": 1 << 10, "EFER_NXE": 1 << 11,
    "CR3_NOFLUSH": 1 << 63,
}
ACC = {"ACC_READ": 0, "ACC_WRITE": 1, "ACC_EXEC": 2}
INVPCID = {"INVPCID_ADDR": 0, "INVPCID_SINGLE": 1, "INVPCID_ALL_GLOBAL": 2, "INVPCID_ALL": 3}
# hw layer, segmentation (Intel SDM Vol. 3A §3.4.2 selectors, §3.4.5 descriptors, Table 3-1 types;
# Vol. 2B MOV's sreg encoding): CPU modes of the segmentation unit, segment registers, descriptor
# types (the 4-bit type field of a code/data descriptor) and descriptor flags (their bits in the
# descriptor's high dword).
SEGMODE = {"SEG_REAL": 0, "SEG_REAL_A20": 1, "SEG_PROTECTED": 2, "SEG_LONG": 3}
SREG = {"SREG_ES": 0, "SREG_CS": 1, "SREG_SS": 2, "SREG_DS": 3, "SREG_FS": 4, "SREG_GS": 5}
DESCTYPE = {
    "DESC_DATA_R": 0x0, "DESC_ACCESSED": 0x1, "DESC_DATA_RW": 0x2, "DESC_DATA_R_ED": 0x4, "DESC_DATA_RW_ED": 0x6,
    "DESC_CODE_X": 0x8, "DESC_CODE_XR": 0xA, "DESC_CODE_XC": 0xC, "DESC_CODE_XRC": 0xE,
}
DESC = {"DESC_S": 1 << 12, "DESC_P": 1 << 15, "DESC_AVL": 1 << 20, "DESC_L": 1 << 21, "DESC_DB": 1 << 22,
        "DESC_G": 1 << 23}

# virt layer (Intel SDM Vol. 3C §29.3 EPT, §25.6.11 EPTP; AMD APM Vol. 2 §15.25 nested paging;
# Linux Documentation/arch/x86/pti.rst): EPT entry bits, EPTP fields, VM kinds, INVEPT types,
# KPTI modes, mapping kinds and counters.
EPT = {
    "EPT_R": 1 << 0, "EPT_W": 1 << 1, "EPT_X": 1 << 2,
    "EPT_MT_UC": 0 << 3, "EPT_MT_WC": 1 << 3, "EPT_MT_WT": 4 << 3, "EPT_MT_WP": 5 << 3, "EPT_MT_WB": 6 << 3,
    "EPT_IPAT": 1 << 6, "EPT_PS": 1 << 7, "EPT_A": 1 << 8, "EPT_D": 1 << 9, "EPT_XU": 1 << 10,
    "EPT_SVE": 1 << 63,
}
EPTP = {"EPTP_UC": 0, "EPTP_WB": 6, "EPTP_WL4": 3 << 3, "EPTP_WL5": 4 << 3, "EPTP_AD": 1 << 6}
VMKIND = {"VM_EPT": 1, "VM_NPT": 2}
INVEPT = {"INVEPT_SINGLE": 1, "INVEPT_ALL": 2}
KPTI = {"KPTI_OFF": 0, "KPTI_ON": 1, "KPTI_PCID": 2}
KMAP = {"KMAP_USER": 1, "KMAP_KERNEL": 2, "KMAP_TRAMPOLINE": 3}
KSTAT = {"KSTAT_FLUSHES": 0, "KSTAT_WALKS": 1, "KSTAT_CR3_WRITES": 2, "KSTAT_SYSCALLS": 3}

GROUPS: dict[str, dict[str, int]] = {
    "prot": PROT,
    "map": MAP,
    "mremap": MREMAP,
    "madv": MADV,
    "ms": MS,
    "mcl": MCL,
    "mlock": MLOCK,
    "oflags": O_FLAGS,
    "misc": MISC,
    "seek": SEEK,
    "mfd": MFD,
    "gfp": GFP,
    "pgowner": PGOWNER,
    "mpol": MPOL,
    "numastat": NUMASTAT,
    "pte": PTE,
    "creg": CREG,
    "acc": ACC,
    "invpcid": INVPCID,
    "segmode": SEGMODE,
    "sreg": SREG,
    "desctype": DESCTYPE,
    "desc": DESC,
    "ept": EPT,
    "eptp": EPTP,
    "vmkind": VMKIND,
    "invept": INVEPT,
    "kpti": KPTI,
    "kmap": KMAP,
    "kstat": KSTAT,
}

CONSTANTS: dict[str, int] = {}
GROUP_OF: dict[str, str] = {}
for _g, _table in GROUPS.items():
    for _name, _value in _table.items():
        CONSTANTS[_name] = _value
        GROUP_OF[_name] = _g


def flag_names(group: str, value: int) -> tuple[str, ...]:
    """Decompose ``value`` into names of ``group`` (largest first), for display."""
    table = GROUPS[group]
    if value == 0:
        zero = [n for n, v in table.items() if v == 0]
        return (zero[0],) if zero else ()
    names: list[str] = []
    rest = value
    for name, bit in sorted(table.items(), key=lambda kv: -kv[1]):
        if bit and rest & bit == bit and bin(bit).count("1") == 1:
            names.append(name)
            rest &= ~bit
    names.reverse()
    if rest:
        names.append(hex(rest))
    return tuple(names)


# errno and signal names travel as names (``"EINVAL"``, ``"SIGSEGV"``) in
# observations, reports and the protocol; numbers only at the system-call edge.
ERRNO_NAMES = frozenset(n for n in dir(_errno) if n.startswith("E") and n.isupper())
SIGNAL_NAMES = frozenset({"SIGSEGV", "SIGBUS", "SIGILL", "SIGKILL", "SIGABRT", "SIGFPE", "SIGTRAP"})


def errno_name(num: int) -> str:
    return _errno.errorcode.get(num, f"E#{num}")


def errno_number(name: str) -> int:
    return getattr(_errno, name)

# A window of the x86-64 user address space that Linux never picks on its own
# (mmap_base is near 0x7f..., the executable and brk near 0x55...).  Programs use
# it for MAP_FIXED and hint addresses; the linux target refuses to run programs
# that touch memory outside it and outside what they mapped themselves.
SANDBOX_WINDOW = (0x100000000000, 0x100000000000 + (1 << 36))

# map_pages (memspec/calls.py): the most pages one call maps.  Every other page of 2 * 131,072
# pages is 1 GiB of the sandbox window (64 GiB), twice the default vm.max_map_count of 65,530.
MAP_PAGES_MAX = 1 << 17
assert 2 * MAP_PAGES_MAX * PAGE_SIZE <= SANDBOX_WINDOW[1] - SANDBOX_WINDOW[0]
