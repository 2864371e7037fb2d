"""Calls of the hw layer (x86-64 paging, MMU, TLB): registered with ``memspec.calls.register``.

A hw program is what a kernel's early boot code does to a CPU: write paging
entries into physical memory, load control registers, access memory at a
privilege level, invalidate the TLB::

    # memspec-program: 1
    boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE|CR4_SMEP, EFER_LME|EFER_LMA|EFER_NXE)
    set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)     # PML4[0] -> PDPT
    set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)     # PDPT[0] -> PD
    set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)     # PD[2]   -> PT
    set_pte(0x203000, 5, 0x300000, PTE_P|PTE_US)            # PT[5]   -> frame, read-only user
    mov_cr3(0x200000)
    v = access(0x405008, ACC_READ, 3)       # the qword at physical 0x300008
    access(0x405008, ACC_WRITE, 3)          # #PF, errcode P|W|U, cr2 0x405008
    e = read_pte(0x203000, 5)               # A set by the hardware, D clear

Physical memory outside the harness's own first MiB holds a known pattern: the
qword at physical address ``pa`` reads ``(pa << 8) | 0xCC`` (a not-present
entry if used as a paging entry, an ``int3`` if executed), so a load returns the
physical address the access reached.  A write stores the byte 0xCC at ``addr``
(which leaves the pattern as it was) and then loads the qword, so it returns the
physical address too.  A fetch executes at ``addr``.

Entries are written by physical address of their table and index; index 511 of
a root table is the harness's own (its code lives in the top 1 GiB), so indexes
run 0..510 and linear addresses in the top-level slot 511 are refused (EINVAL).
"""

from __future__ import annotations

from .calls import CallSpec, Param as P, register

register(CallSpec(
    "boot", "hw", (P("cr0", "creg"), P("cr4", "creg"), P("efer", "creg")), returns="none",
    doc="firmware set-up: load CR0, CR4 and IA32_EFER together (paging off then on), the TLB empty "
        "afterwards; the only way to choose 4- or 5-level paging (CR4.LA57)"))
register(CallSpec(
    "set_pte", "hw", (P("table"), P("index"), P("frame"), P("flags", "pte", 0)), returns="none",
    doc="write the 64-bit entry frame|flags at physical address table + 8*index (index 0..510)"))
register(CallSpec(
    "read_pte", "hw", (P("table"), P("index")),
    doc="read the 64-bit entry at table + 8*index back from physical memory (A/D bits as the CPU left them)"))
register(CallSpec(
    "access", "hw", (P("addr"), P("op", "acc", 0), P("cpl", "int", 0), P("ac", "int", 0)),
    doc="a real load (ACC_READ), store (ACC_WRITE) or instruction fetch (ACC_EXEC) at linear addr, "
        "at privilege level cpl (0 or 3) with EFLAGS.AC = ac; returns the qword read, or #PF/#GP"))
register(CallSpec(
    "mov_cr3", "hw", (P("value", "creg"),), returns="none",
    doc="MOV to CR3 at CPL 0: root table | PCID (CR4.PCIDE=1) | CR3_NOFLUSH"))
register(CallSpec(
    "mov_cr4", "hw", (P("value", "creg"),), returns="none", doc="MOV to CR4 at CPL 0 (#GP if not allowed)"))
register(CallSpec(
    "mov_cr0", "hw", (P("value", "creg"),), returns="none", doc="MOV to CR0 at CPL 0 (#GP if not allowed)"))
register(CallSpec(
    "wrmsr_efer", "hw", (P("value", "creg"),), returns="none",
    doc="WRMSR to IA32_EFER (0xC0000080) at CPL 0 (#GP if not allowed)"))
register(CallSpec(
    "invlpg", "hw", (P("addr"),), returns="none", doc="INVLPG m at CPL 0: invalidate the page of addr"))
register(CallSpec(
    "invpcid", "hw", (P("type", "invpcid"), P("pcid", "int", 0), P("addr", "int", 0)), returns="none",
    doc="INVPCID at CPL 0 with descriptor {pcid, addr}: INVPCID_ADDR, _SINGLE, _ALL_GLOBAL, _ALL "
        "(#UD where the CPU lacks it)"))
register(CallSpec(
    "wrpkru", "hw", (P("value"),), returns="none",
    doc="WRPKRU: load the protection-key rights register (AD/WD bit pairs per key; #UD without CR4.PKE)"))

# The harness's physical layout, shared by the model and the targets (facts may override).
HARNESS_LOW = 0x100000          # physical memory below 1 MiB holds the harness's code and tables
RAM_SIZE = 32 << 20             # guest RAM; the pattern fills [HARNESS_LOW, RAM_SIZE)
HARNESS_SLOT = 511              # top-level index reserved for the harness
INITIAL_CR3 = HARNESS_LOW       # the root a program starts with (empty: pattern entries are not present)


def pattern(pa: int) -> int:
    """The qword the harness keeps at physical address ``pa`` (8-aligned): ``(pa << 8) | 0xCC``."""
    return ((pa << 8) | 0xCC) & ((1 << 64) - 1)
