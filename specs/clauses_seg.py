"""hw-layer clauses, segmentation: real-address mode, protected-mode descriptors and 64-bit mode.

Sources: Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A
(order no. 253668), chapter 3 "Protected-Mode Memory Management" (§3.2.4
segmentation in IA-32e mode, §3.4.2 segment selectors, §3.4.3 segment registers,
§3.4.4 segment loading instructions in IA-32e mode, §3.4.5 segment descriptors and
§3.4.5.1 code- and data-segment descriptor types, Table 3-1), chapter 5 "Protection"
(§5.3 limit checking, §5.4.1.1 null segment checking in 64-bit mode, §5.5 privilege
levels, §5.6 privilege level checking when accessing data segments, §5.7 ... when
loading the SS register), chapter 6 (§6.15 #NP, #SS, #GP) and chapter 20 (§20.1.1
address translation in real-address mode); Vol. 2B MOV (move to/from segment
registers: Operation and the exceptions of each mode) and WRMSR.  ``memspec.seg.*``
clauses are the harness's own promises about the segmentation calls.
"""

from __future__ import annotations

from .catalogue import declare

MOV = "Intel SDM Vol. 2B MOV (Sreg), Operation"
MOVP = "Intel SDM Vol. 2B MOV, Protected Mode Exceptions"
LIM = "Intel SDM Vol. 3A §5.3 (limit checking)"
DESC = "Intel SDM Vol. 3A §3.4.5 (segment descriptors)"
REALM = "Intel SDM Vol. 3A §20.1.1 (address translation in real-address mode)"
LONGM = "Intel SDM Vol. 3A §3.2.4 (segmentation in IA-32e mode) and §3.4.4"

declare(
    "hw",
    # --- real-address mode ---------------------------------------------------------------
    ("sdm.seg.real.load", "in real-address mode MOV to DS/ES/FS/GS/SS loads any selector: base = selector << 4, no descriptor, no privilege checks", REALM),
    ("sdm.seg.real.linear", "in real-address mode the linear address is (selector << 4) + offset", REALM),
    ("sdm.seg.real.a20-wrap", "with A20 masked, bit 20 of the address is forced to 0: FFFF:0010 reaches physical 0 (the 8086's wrap at 1 MiB)", f"{REALM} (the A20M# signal)"),
    ("sdm.seg.real.a20-reach", "with A20 enabled, addresses from 0x100000 to 0x10FFEF (FFFF:0010..FFFF:FFFF) reach the memory above 1 MiB", REALM),
    ("sdm.seg.real.limit", "in real-address mode an access with offset + size - 1 > 0xFFFF raises #GP(0), or #SS(0) through SS", "Intel SDM Vol. 2B MOV, Real-Address Mode Exceptions; Vol. 3A §20.1.1"),
    # --- descriptors and loads (protected mode and 64-bit mode) -------------------------------
    ("sdm.seg.load.ok", "a selector that passes the checks loads the descriptor's base, limit (scaled by G) and attributes into the segment register's hidden part", f"Intel SDM Vol. 3A §3.4.3; {DESC}; {MOV}"),
    ("sdm.seg.load.null-data", "MOV to DS, ES, FS or GS with a null selector (index 0, TI 0, any RPL) loads a null segment without a fault", f"Intel SDM Vol. 3A §3.4.2; {MOV}"),
    ("sdm.seg.load.null-ss-gp", "MOV to SS with a null selector raises #GP(0) (in 64-bit mode: at CPL 3)", f"{MOV}; {MOVP}; Intel SDM Vol. 2B MOV, 64-Bit Mode Exceptions"),
    ("sdm.seg.load.null-ss-64-rpl-gp", "in 64-bit mode MOV to SS with a null selector at CPL < 3 whose RPL != CPL raises #GP(0)", "Intel SDM Vol. 2B MOV, 64-Bit Mode Exceptions"),
    ("sdm.seg.load.null-ss-64", "in 64-bit mode MOV to SS with a null selector at CPL < 3 and RPL = CPL loads a null SS", f"{MOV} (IA-32e mode); Intel SDM Vol. 3A §3.4.4"),
    ("sdm.seg.load.beyond-limit-gp", "MOV to a segment register with a selector whose index is outside the descriptor table (index*8+7 > GDTR.limit, or TI = 1 with no LDT) raises #GP(selector & 0xFFFC)", f"{MOV}; Intel SDM Vol. 3A §5.3 (table-limit checking), §3.4.2"),
    ("sdm.seg.load.system-gp", "MOV to DS/ES/FS/GS with a system descriptor (S = 0) raises #GP(selector & 0xFFFC)", f"{MOV}; {MOVP}"),
    ("sdm.seg.load.exec-only-gp", "MOV to DS/ES/FS/GS with an execute-only code segment raises #GP(selector & 0xFFFC)", f"{MOV}; Intel SDM Vol. 3A §5.6.1"),
    ("sdm.seg.load.data-privilege-gp", "MOV to DS/ES/FS/GS with a data or non-conforming code segment whose DPL < max(CPL, RPL) raises #GP(selector & 0xFFFC)", f"Intel SDM Vol. 3A §5.6 (privilege level checking when accessing data segments); {MOV}"),
    ("sdm.seg.load.conforming-no-privilege", "a readable conforming code segment loads into DS/ES/FS/GS whatever CPL and RPL (its DPL is not checked)", f"Intel SDM Vol. 3A §5.6.1 (accessing data in code segments); {MOV}"),
    ("sdm.seg.load.not-present-np", "MOV to DS/ES/FS/GS with a descriptor that passes the other checks but has P = 0 raises #NP(selector & 0xFFFC)", f"{MOV}; Intel SDM Vol. 3A §6.15 (Interrupt 11, segment not present)"),
    ("sdm.seg.load.ss-rpl-cpl-gp", "MOV to SS with RPL != CPL raises #GP(selector & 0xFFFC)", f"Intel SDM Vol. 3A §5.7 (privilege level checking when loading the SS register); {MOV}"),
    ("sdm.seg.load.ss-type-gp", "MOV to SS with a descriptor that is not a writable data segment raises #GP(selector & 0xFFFC)", f"{MOV}; Intel SDM Vol. 3A §5.7"),
    ("sdm.seg.load.ss-dpl-cpl-gp", "MOV to SS with a descriptor whose DPL != CPL raises #GP(selector & 0xFFFC)", f"Intel SDM Vol. 3A §5.7; {MOV}"),
    ("sdm.seg.load.ss-not-present-ss", "MOV to SS with a descriptor that passes the other checks but has P = 0 raises #SS(selector & 0xFFFC)", f"{MOV}; Intel SDM Vol. 3A §6.15 (Interrupt 12, stack fault)"),
    ("sdm.seg.load.cs-ud", "MOV to CS raises #UD (in every mode)", "Intel SDM Vol. 2B MOV, Description and the exceptions of every mode"),
    ("sdm.seg.load.accessed", "loading a descriptor into a segment register sets the accessed bit (type bit 0) of the descriptor in memory", f"Intel SDM Vol. 3A §3.4.5.1 (code- and data-segment descriptor types); {MOV}"),
    ("sdm.seg.cache-until-reload", "changing a descriptor in memory does not change a segment register already loaded from it: accesses use the hidden part until the register is reloaded", "Intel SDM Vol. 3A §3.4.3 (segment registers)"),
    # --- accesses in protected mode ----------------------------------------------------------
    ("sdm.seg.access.linear", "in protected mode the linear address is the segment base + offset (mod 2^32)", "Intel SDM Vol. 3A §3.4 (logical and linear addresses), Figure 3-5"),
    ("sdm.seg.limit.expand-up", "for an expand-up segment every byte of an access must lie in 0..limit: otherwise #GP(0), or #SS(0) through SS", LIM),
    ("sdm.seg.limit.granularity", "with G = 1 the effective limit is (limit << 12) | 0xFFF (4-KByte units; the low 12 bits of the offset are not checked)", f"{DESC} (granularity flag); {LIM}"),
    ("sdm.seg.limit.expand-down", "for an expand-down data segment the valid offsets are limit+1 .. 0xFFFF (B = 0) or 0xFFFFFFFF (B = 1); outside: #GP(0), or #SS(0) through SS", f"{LIM}; Intel SDM Vol. 3A §3.4.5.1"),
    ("sdm.seg.access.write-readonly-gp", "in protected mode a write through a read-only data segment raises #GP(0)", f"{MOVP} (#GP(0) if the destination is located in a non-writable segment); Intel SDM Vol. 3A §5.5"),
    ("sdm.seg.access.write-code-gp", "in protected mode a write through a code segment (loaded in a data-segment register) raises #GP(0)", f"{MOVP}; Intel SDM Vol. 3A §3.4.5.1 (code segments are never writable)"),
    ("sdm.seg.access.null-gp", "in protected mode an access through DS/ES/FS/GS holding a null selector raises #GP(0)", f"{MOVP}; Intel SDM Vol. 3A §3.4.2 (null segment selector)"),
    # --- 64-bit mode ---------------------------------------------------------------------------
    ("sdm.seg.long.base-ignored", "in 64-bit mode the bases of CS, DS, ES and SS are treated as 0", LONGM),
    ("sdm.seg.long.fs-gs-base", "in 64-bit mode FS and GS keep their base: the linear address is base + offset (mod 2^64)", f"{LONGM}; Intel SDM Vol. 3A §3.4.4 (FS and GS)"),
    ("sdm.seg.long.no-limit", "in 64-bit mode no limit or type check is made on accesses (limit, G, E and W are ignored)", f"{LONGM}; Intel SDM Vol. 3A §5.2.1, §5.3.1"),
    ("sdm.seg.long.null-usable", "in 64-bit mode an access through DS/ES/FS/GS holding a null selector does not fault", "Intel SDM Vol. 3A §5.4.1.1 (null segment checking in 64-bit mode)"),
    ("sdm.seg.long.null-fs-gs-base", "in 64-bit mode a null selector loaded into FS or GS leaves the base zero or unchanged (processors differ): both are allowed", f"{LONGM}; {MOV} (IA-32e mode, null selector)"),
    ("sdm.seg.long.noncanonical-gp", "in 64-bit mode an access whose linear address is not canonical raises #GP(0)", "Intel SDM Vol. 3A §6.15 (Interrupt 13) and Vol. 1 §3.3.7.1"),
    ("sdm.seg.long.noncanonical-ss", "in 64-bit mode an access through SS whose linear address is not canonical raises #SS(0), not #GP", "Intel SDM Vol. 3A §6.15 (Interrupt 12, stack fault: non-canonical address referencing SS); Vol. 2B MOV, 64-Bit Mode Exceptions"),
    ("sdm.seg.wrmsr-base", "WRMSR to IA32_FS_BASE / IA32_GS_BASE loads the 64-bit base of FS / GS", "Intel SDM Vol. 2B WRMSR; Vol. 3A §3.4.4"),
    ("sdm.seg.wrmsr-base-noncanonical-gp", "WRMSR to IA32_FS_BASE / IA32_GS_BASE with a non-canonical value raises #GP(0)", "Intel SDM Vol. 2B WRMSR, Protected Mode Exceptions"),
    # --- the harness's own promises --------------------------------------------------------------
    ("memspec.seg.mode", "seg_mode() resets the segmentation unit into the mode: GDT holds only the harness's descriptors, GDTR.limit = SEG_GDT_LIMIT, segment registers flat (real mode: selector 0), CPL 0", "memspec hw harness"),
    ("memspec.seg.mode-feature", "seg_mode(SEG_REAL) on a target that cannot mask A20 fails with EINVAL", "memspec hw harness"),
    ("memspec.seg.args", "segmentation calls check their arguments (mode, sreg, selector, cpl, offset width, op, size): EINVAL otherwise", "memspec hw harness"),
    ("memspec.seg.desc-args", "set_desc()/read_desc() need an index the program owns (1..23; read 0..31), a 32-bit base, a 20-bit limit, a 4-bit type, DPL 0..3 and DESC_* flags: EINVAL otherwise", "memspec hw harness"),
    ("memspec.seg.set-desc", "set_desc() writes the descriptor into the GDT in memory", "memspec hw harness"),
    ("memspec.seg.desc-readback", "read_desc() returns the descriptor as last written (the CPU changes only the accessed bit)", f"memspec hw harness; {DESC}"),
    ("memspec.seg.lgdt", "lgdt() loads GDTR.limit (0..SEG_GDT_LIMIT); loaded segment registers keep their hidden parts", "memspec hw harness; Intel SDM Vol. 2B LGDT"),
    ("memspec.seg.outside-pattern", "an access reaching memory outside the pattern (the harness's first pages, beyond its RAM) is judged unknown", "memspec hw harness"),
)
