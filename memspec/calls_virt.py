"""Calls of the virt layer (EPT/RVI, KPTI): registered with ``memspec.calls.register``.

Two halves, one layer.

**Two-dimensional translation** (Intel EPT, AMD RVI nested paging).  A virt
program is what a hypervisor does: write EPT (or nested, x86-format) entries
into host-physical memory, boot a guest whose own page tables live in
guest-physical memory, and let the guest access memory::

    # memspec-program: 1
    set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)            # EPT PML4[0] -> EPT PDPT
    set_epte(0x201000, 0, 0x202000, EPT_R|EPT_W|EPT_X)            # EPT PDPT[0] -> EPT PD
    set_epte(0x202000, 0, 0x400000, EPT_R|EPT_W|EPT_X|EPT_MT_WB|EPT_PS)  # gpa 0..2M -> hpa 4M..6M
    set_epte(0x202000, 1, 0x800000, EPT_R|EPT_MT_WB|EPT_PS)       # gpa 2M..4M -> hpa 8M..10M, read-only
    vm_boot(0, VM_EPT, 0x200000, EPTP_WB|EPTP_WL4, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)
    set_gpte(0x10000, 0, 0x11000, PTE_P|PTE_RW|PTE_US)            # guest tables, written at gpa
    set_gpte(0x11000, 0, 0x12000, PTE_P|PTE_RW|PTE_US)
    set_gpte(0x12000, 0, 0x13000, PTE_P|PTE_RW|PTE_US)
    set_gpte(0x13000, 5, 0x200000, PTE_P|PTE_RW|PTE_US)           # gva 0x5000 -> gpa 0x200000
    v = vm_access(0x5008, ACC_READ, 3)     # the qword at hpa 0x800008: (0x800008 << 8) | 0xCC
    vm_access(0x5008, ACC_WRITE, 3)        # EPT violation: exit_qualification W|R|valid-gla|final

Host-physical memory holds the hw layer's pattern (``calls_hw.pattern``): the
qword at hpa reads ``(hpa << 8) | 0xCC``, so a guest load returns the host
address it reached.  Unwritten x86-format entries read as not present; an
unwritten *EPT* entry reads as ``X|PS`` with memory type 1 and ignore-PAT, which
at most levels is an EPT misconfiguration -- write 0 to make one not present.

``set_gpte``/``read_gpte`` name their table by guest-physical address: the
hypervisor writes (reads) the host frame the current VM's EPT/NPT maps that gpa
to now (a software walk that ignores permissions; EINVAL if nothing maps it).
Index 511 of the EPT/NPT root and of the guest root are the harness's own (the
guest's code), so guest-linear and guest-physical addresses in top-level slot 511
are refused (EINVAL), as in the hw layer.  On a CPU whose guest-physical addresses
cannot reach EPT/NPT root slot 511 (MAXPHYADDR < 48; Bochs has 40) the harness keeps
the highest root slot below 2^MAXPHYADDR instead (``nested_harness_slot``).

A guest access is one VM entry, one guest load, store or fetch, and one VM exit;
its outcome is a value, or one of three faults as values:

* ``#PF`` -- a guest page fault, delivered to the guest: detail ``errcode``, ``cr2`` (guest CR2);
* ``EPT_VIOLATION`` -- detail ``exit_qualification`` (SDM Table 28-7 bits), ``gpa``, ``gla``;
* ``EPT_MISCONFIG`` -- detail ``gpa``;
* ``#NPF`` (AMD) -- detail ``exitinfo1`` (a #PF-style error code, bit 32 final
  translation, bit 33 guest page-table access), ``exitinfo2`` (the gpa).

VPIDs are off: every VM entry and exit drops linear and combined mappings, so the
only translations that may outlive a change are guest-physical ones (cached EPT/NPT
translations), until ``invept``.

**KPTI** (Linux Documentation/arch/x86/pti.rst).  A KPTI program is what a kernel
with page-table isolation does per syscall and context switch::

    kpti_boot(KPTI_ON|KPTI_PCID)
    kpti_map(0x400000, 0x300000, KMAP_USER)                # process 1's user page
    kpti_map(0xffffffff81000000, 0x500000, KMAP_KERNEL)    # kernel text
    kpti_map(0xfffffe0000000000, 0x600000, KMAP_TRAMPOLINE)  # entry trampoline / cpu_entry_area
    user_access(0xffffffff81000000)     # #PF, errcode U (not present in the user set)
    syscall_enter()
    kernel_access(0xffffffff81000000)   # 0x500000
    syscall_exit()
    f = kpti_stat(KSTAT_FLUSHES)        # 0 with PCID: no full flush on entry or exit
"""

from __future__ import annotations

from .calls import CallSpec, Param as P, register


# --- the two-dimensional walk ---------------------------------------------------
register(CallSpec(
    "vm_boot", "virt",
    (P("vm"), P("kind", "vmkind"), P("root"), P("eptp_flags", "eptp"), P("gcr3"), P("gcr4", "creg"), P("gefer", "creg")),
    returns="none",
    doc="create (or reset) guest vm (0..3) of kind VM_EPT (EPTP = root | eptp_flags: EPTP_WB|EPTP_WL4 [|EPTP_AD]) "
        "or VM_NPT (nCR3 = root, eptp_flags 0), guest CR0 = PG|PE|WP, CR3 = gcr3 (a gpa), CR4, EFER; it becomes current. "
        "An invalid EPTP fails the VM entry: EINVAL"))
register(CallSpec(
    "vm_enter", "virt", (P("vm"),), returns="none",
    doc="make booted guest vm current (VMRESUME/VMRUN of its VMCS/VMCB): EINVAL if never booted"))
register(CallSpec(
    "set_epte", "virt", (P("table"), P("index"), P("frame"), P("flags", "ept", 0)), returns="none",
    doc="write the EPT entry frame|flags at host-physical table + 8*index (index 0..511; 511 of a root is "
        "the harness's)"))
register(CallSpec(
    "set_npte", "virt", (P("table"), P("index"), P("frame"), P("flags", "pte", 0)), returns="none",
    doc="write the nested (x86-format) entry frame|flags at host-physical table + 8*index"))
register(CallSpec(
    "read_epte", "virt", (P("table"), P("index")),
    doc="read an EPT or nested entry back from host-physical memory (EPT A/D or nested A/D as left)"))
register(CallSpec(
    "set_gpte", "virt", (P("table"), P("index"), P("frame"), P("flags", "pte", 0)), returns="none",
    doc="write the guest's paging entry frame|flags at guest-physical table + 8*index (the host frame the "
        "current EPT/NPT maps it to now; EINVAL if unmapped)"))
register(CallSpec(
    "read_gpte", "virt", (P("table"), P("index")),
    doc="read the guest's paging entry at guest-physical table + 8*index (guest A/D as the CPU left them)"))
register(CallSpec(
    "vm_cr3", "virt", (P("value"),), returns="none",
    doc="guest MOV to CR3 (a gpa; no PCID): the guest's root table"))
register(CallSpec(
    "vm_access", "virt", (P("addr"), P("op", "acc", 0), P("cpl", "int", 0)),
    doc="one guest load (ACC_READ), store (ACC_WRITE) or fetch (ACC_EXEC) at guest-linear addr and CPL: "
        "the qword read, or #PF (to the guest), EPT_VIOLATION, EPT_MISCONFIG or #NPF (to the hypervisor)"))
register(CallSpec(
    "invept", "virt", (P("type", "invept"), P("root", "int", 0)), returns="none",
    doc="INVEPT single-context (mappings derived from the EPT/NPT root table) or all-context; for VM_NPT guests the same "
        "request is a TLB_CONTROL flush of the guest's ASID on the next VMRUN"))

# --- KPTI ----------------------------------------------------------------------------
register(CallSpec(
    "kpti_boot", "virt", (P("mode", "kpti"),), returns="none",
    doc="boot a kernel with KPTI_ON and/or KPTI_PCID (KPTI_OFF: one page-table set); process 1 runs in user mode"))
register(CallSpec(
    "kpti_map", "virt", (P("addr"), P("frame"), P("kind", "kmap")), returns="none",
    doc="map the page of addr to frame: KMAP_USER (the current process's user page), KMAP_KERNEL (kernel-only, "
        "every process), KMAP_TRAMPOLINE (entry text / cpu_entry_area: in the user set too)"))
register(CallSpec("syscall_enter", "virt", (), returns="none",
                  doc="SYSCALL: user -> kernel (KPTI: switch CR3 to the kernel set first thing)"))
register(CallSpec("syscall_exit", "virt", (), returns="none",
                  doc="SYSRET: kernel -> user (KPTI: switch CR3 to the user set last thing)"))
register(CallSpec(
    "context_switch", "virt", (P("pid"),), returns="none",
    doc="in kernel mode: switch to process pid (1..8; a new one starts with no user pages)"))
register(CallSpec(
    "user_access", "virt", (P("addr"),),
    doc="in user mode, a CPL 3 load at addr: the physical address reached, or #PF (errcode, cr2)"))
register(CallSpec(
    "kernel_access", "virt", (P("addr"),),
    doc="in kernel mode, a CPL 0 load at addr (SMAP off): the physical address reached, or #PF"))
register(CallSpec(
    "kpti_stat", "virt", (P("counter", "kstat"),),
    doc="a counter since kpti_boot: KSTAT_FLUSHES (full non-global TLB flushes), KSTAT_WALKS (TLB misses), "
        "KSTAT_CR3_WRITES, KSTAT_SYSCALLS"))

# The harness's guest: top-level slot 511 of the EPT/NPT root and of the guest root are its own.
GUEST_HARNESS_SLOT = 511
MAX_VMS = 4
MAX_PIDS = 8


def nested_harness_slot(maxphyaddr: int) -> int:
    """The EPT/NPT root slot the harness keeps for its guest code: 511, or on a CPU whose
    guest-physical addresses are too narrow to reach it (MAXPHYADDR < 48: gpa bits 47:39 index
    the root), the highest slot below 2^MAXPHYADDR (1 with Bochs' 40 bits)."""
    return 511 if maxphyaddr >= 48 else max((1 << max(maxphyaddr - 39, 0)) - 1, 0)
