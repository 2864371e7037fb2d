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


# --- segmentation (Intel SDM Vol. 3A ch. 3 and 5; ch. 20 real-address mode) -------------------
#
# The segmentation calls drive a second logical processor of the harness, the *segmentation
# unit*: it shares nothing with the paging calls above (its own RAM, paging off in real and
# protected mode, an identity map in long mode) so that a load's value is the linear address
# the segment produced.  A program picks its mode with ``seg_mode`` (which also resets it),
# writes code/data descriptors into the harness's GDT, loads segment registers with real
# ``MOV Sreg, r16`` instructions and accesses memory through them::
#
#     seg_mode(SEG_PROTECTED)
#     set_desc(3, 0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB)
#     load_seg(SREG_DS, 0x18, 0)                    # index 3, RPL 0, at CPL 0
#     v = seg_access(SREG_DS, 0x10, ACC_READ, 4)    # linear 0x200010: 0x200010cc
#     seg_access(SREG_DS, 0xFFE, ACC_READ, 4)       # beyond the limit: #GP(0)
#     load_seg(SREG_SS, 0x18, 3)                    # RPL != CPL: #GP(0x18)
SEG = "segmentation"
register(CallSpec(
    "seg_mode", "hw", (P("mode", "segmode"),), returns="none", capability=SEG,
    doc="reset the segmentation unit into SEG_REAL (A20 masked), SEG_REAL_A20, SEG_PROTECTED (CR0.PE = 1, "
        "paging off) or SEG_LONG (64-bit mode): program descriptors zero, GDTR limit SEG_GDT_LIMIT, every "
        "segment register flat (real mode: selector 0), CPL 0"))
register(CallSpec(
    "set_desc", "hw", (P("index"), P("base"), P("limit"), P("type", "desctype"), P("dpl", "int", 0),
                       P("flags", "desc", 0)), returns="none", capability=SEG,
    doc="write the GDT descriptor at index (1..SEG_GDT_PROGRAM-1): 32-bit base, 20-bit limit, type "
        "(DESC_DATA_*/DESC_CODE_*, |DESC_ACCESSED), DPL and DESC_S|DESC_P|DESC_AVL|DESC_L|DESC_DB|DESC_G"))
register(CallSpec(
    "read_desc", "hw", (P("index"),), capability=SEG,
    doc="read the 64-bit GDT descriptor at index back from memory (the accessed bit as the CPU left it)"))
register(CallSpec(
    "lgdt", "hw", (P("limit"),), returns="none", capability=SEG,
    doc="LGDT with the harness's GDT base and this limit (0..SEG_GDT_LIMIT): selectors whose index*8+7 "
        "exceeds it are outside the GDT"))
register(CallSpec(
    "load_seg", "hw", (P("sreg", "sreg"), P("selector"), P("cpl", "int", 0)), returns="none", capability=SEG,
    doc="MOV Sreg, r16 at privilege level cpl (0..3; 0 in real mode): the descriptor checks of SDM "
        "Vol. 2B MOV; ok, or #GP/#NP/#SS with their error code, or #UD for SREG_CS"))
register(CallSpec(
    "seg_access", "hw", (P("sreg", "sreg"), P("offset"), P("op", "acc", 0), P("size", "int", 4)), capability=SEG,
    doc="a load (ACC_READ) or a read-and-write-back (ACC_WRITE, XADD of 0) of size 1, 2, 4 (8 in long mode) "
        "bytes at sreg:offset (SREG_SS: based on (E/R)BP); returns the value read, or #GP(0)/#SS(0)"))
register(CallSpec(
    "wrmsr_segbase", "hw", (P("sreg", "sreg"), P("base")), returns="none", capability=SEG,
    doc="WRMSR to IA32_FS_BASE (SREG_FS) or IA32_GS_BASE (SREG_GS) at CPL 0 in long mode: a 64-bit base"))

# The segmentation unit's physical layout, shared by the model and the targets.
SEG_RAM = 4 << 20           # its RAM: the pattern fills [SEG_LOW, SEG_RAM)
SEG_LOW = 0x8000            # below: the harness's code, GDT, stack and (long mode) page tables
SEG_GDT_ENTRIES = 32        # the GDT: program descriptors 1..23, the harness's own 24..31
SEG_GDT_PROGRAM = 24
SEG_GDT_LIMIT = 8 * SEG_GDT_ENTRIES - 1
# the harness's descriptors: flat code (32-bit, 64-bit, DPL 0 and 3) and flat data (DPL 0 and 3)
SEG_HARNESS_GDT = {
    24: 0x00CF9B000000FFFF,     # 32-bit code, DPL 0, base 0, 4 GiB
    25: 0x00CF93000000FFFF,     # data, read/write, DPL 0, base 0, 4 GiB
    26: 0x00AF9B000000FFFF,     # 64-bit code, DPL 0
    27: 0x00CFFB000000FFFF,     # 32-bit code, DPL 3
    28: 0x00CFF3000000FFFF,     # data, read/write, DPL 3
}
SEG_CODE32, SEG_DATA, SEG_CODE64 = 24 << 3, 25 << 3, 26 << 3
