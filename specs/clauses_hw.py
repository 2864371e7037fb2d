"""hw-layer clauses: x86-64 paging, access rights, page faults, A/D bits and the TLB.

Sources: Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A
(order no. 253668), chapter 4 "Paging" (§4.5 4-level and 5-level paging, §4.6
access rights, §4.7 page-fault exceptions, §4.8 accessed and dirty flags, §4.10
caching translation information), §4.3 32-bit paging, §4.4 PAE paging, and chapter 2 (§2.5 control registers);
Vol. 2 instruction pages MOV to/from CR, INVLPG, INVPCID, WRMSR, WRPKRU; AMD64
Architecture Programmer's Manual Vol. 2 (24593) §5.3 long-mode page translation,
§5.6 page-protection checks, §8.4.2 #PF error code.  ``memspec.hw.*`` clauses are
the harness's own promises (argument checks, the physical-memory pattern).
"""

from __future__ import annotations

from .catalogue import declare

W = "Intel SDM Vol. 3A §4.5.4 (4-level paging), Tables 4-15..4-20"
W5 = "Intel SDM Vol. 3A §4.5.5 (5-level paging), Table 4-14"
W32 = "Intel SDM Vol. 3A §4.3 (32-bit paging)"
WPAE = "Intel SDM Vol. 3A §4.4 (PAE paging)"
A = "Intel SDM Vol. 3A §4.6.1 (determination of access rights)"
PF = "Intel SDM Vol. 3A §4.7 (page-fault exceptions), Figure 4-12"
AD = "Intel SDM Vol. 3A §4.8 (accessed and dirty flags)"
TLB = "Intel SDM Vol. 3A §4.10"
APM = "AMD64 APM Vol. 2 §5.3.3 (4-Kbyte page translation) and §5.4 (page-translation-table entry fields)"

declare(
    "hw",
    # --- walks: present and reserved bits, level by level -----------------------------
    ("sdm.walk.pml5e.not-present", "a PML5E with P = 0 ends the walk: #PF with errcode P = 0", f"{W5}; {PF}"),
    ("sdm.walk.pml5e.rsvd-ps", "bit 7 (PS) of a PML5E is reserved: #PF with P|RSVD", f"{W5}, Table 4-14"),
    ("sdm.walk.pml5e.rsvd-maxphy", "bits 51:MAXPHYADDR of a PML5E are reserved: #PF with P|RSVD", f"{W5}; {PF}"),
    ("sdm.walk.pml4e.not-present", "a PML4E with P = 0 ends the walk: #PF with errcode P = 0", f"{W}, Table 4-15; {APM}"),
    ("sdm.walk.pml4e.rsvd-ps", "bit 7 (PS) of a PML4E is reserved: #PF with P|RSVD", f"{W}, Table 4-15 and Figure 4-11"),
    ("sdm.walk.pml4e.rsvd-maxphy", "bits 51:MAXPHYADDR of a PML4E are reserved: #PF with P|RSVD", f"{W}, Table 4-15; {PF}"),
    ("sdm.walk.pdpte.not-present", "a PDPTE with P = 0 ends the walk: #PF with errcode P = 0", f"{W}, Tables 4-16/4-17"),
    ("sdm.walk.pdpte.ps-1g", "a PDPTE with PS = 1 maps a 1-GByte page: pa = PDPTE[51:30] | la[29:0]", f"{W}, Table 4-16"),
    ("sdm.walk.pdpte.rsvd-1g-low", "bits 29:13 of a PDPTE that maps a 1-GByte page are reserved: #PF with P|RSVD", f"{W}, Table 4-16"),
    ("sdm.walk.pdpte.rsvd-ps-no-1g", "without 1-GByte page support (CPUID.80000001H:EDX[26] = 0) PS in a PDPTE is reserved", f"{W}, §4.1.4 and Table 4-16"),
    ("sdm.walk.pdpte.rsvd-maxphy", "bits 51:MAXPHYADDR of a PDPTE are reserved: #PF with P|RSVD", f"{W}, Tables 4-16/4-17"),
    ("sdm.walk.pde.not-present", "a PDE with P = 0 ends the walk: #PF with errcode P = 0", f"{W}, Tables 4-18/4-19"),
    ("sdm.walk.pde.ps-2m", "a PDE with PS = 1 maps a 2-MByte page: pa = PDE[51:21] | la[20:0]", f"{W}, Table 4-18"),
    ("sdm.walk.pde.rsvd-2m-low", "bits 20:13 of a PDE that maps a 2-MByte page are reserved: #PF with P|RSVD", f"{W}, Table 4-18"),
    ("sdm.walk.pde.rsvd-maxphy", "bits 51:MAXPHYADDR of a PDE are reserved: #PF with P|RSVD", f"{W}, Tables 4-18/4-19"),
    ("sdm.walk.pte.not-present", "a PTE with P = 0: #PF with errcode P = 0, CR2 = the linear address", f"{W}, Table 4-20; {PF}"),
    ("sdm.walk.pte.maps-4k", "a PTE maps a 4-KByte page: pa = PTE[51:12] | la[11:0]", f"{W}, Table 4-20; {APM}"),
    ("sdm.walk.pte.rsvd-maxphy", "bits 51:MAXPHYADDR of a PTE are reserved: #PF with P|RSVD", f"{W}, Table 4-20; {PF}"),
    ("sdm.walk.rsvd.xd-without-nxe", "with IA32_EFER.NXE = 0, bit 63 (XD) of any paging entry is reserved: #PF with P|RSVD", f"{W}, §4.5.4 and Figure 4-11; {PF}"),
    # --- 32-bit paging (§4.3) and PAE paging (§4.4) ------------------------------------
    ("sdm.walk32.pde.not-present", "32-bit paging: a PDE with P = 0 ends the walk: #PF with errcode P = 0", f"{W32}, Tables 4-4/4-5; {PF}"),
    ("sdm.walk32.pde.ps-4m", "32-bit paging with CR4.PSE = 1: a PDE with PS = 1 maps a 4-MByte page: pa[31:22] = PDE[31:22], pa[M-1:32] = PDE[M-20:13] (PSE-36, M = min(MAXPHYADDR, 40))", f"{W32}, Table 4-4"),
    ("sdm.walk32.pde.rsvd-4m", "32-bit paging: bit 21 and bits 20:(M-19) of a PDE that maps a 4-MByte page are reserved: #PF with P|RSVD", f"{W32}, Table 4-4; {PF}"),
    ("sdm.walk32.pde.pse-off-ignores-ps", "32-bit paging with CR4.PSE = 0: PS of a PDE is ignored; the PDE references a page table", f"{W32}, §4.3 and Table 4-5"),
    ("sdm.walk32.pte.not-present", "32-bit paging: a PTE with P = 0: #PF with errcode P = 0", f"{W32}, Table 4-6; {PF}"),
    ("sdm.walk32.pte.maps-4k", "32-bit paging: a PTE maps a 4-KByte page: pa = PTE[31:12] | la[11:0]; a PTE has no reserved bit", f"{W32}, Table 4-6"),
    ("sdm.walk32.no-xd", "32-bit paging has no XD bit: IA32_EFER.NXE has no effect, and the error code's I/D is set for fetches only with CR4.SMEP = 1", f"{W32}; {PF}"),
    ("sdm.pkeys.ia32e-only", "protection keys apply with 4-level and 5-level paging only: with 32-bit or PAE paging CR4.PKE has no effect", "Intel SDM Vol. 3A §4.6.2"),
    ("sdm.pae.pdpte.rsvd-gp", "PAE paging: MOV to CR3 (or to CR0/CR4 enabling PAE paging) loads the four PDPTEs; one with P = 1 and a reserved bit (2:1, 8:5, 63:MAXPHYADDR) makes it raise #GP(0), not a later #PF", f"{WPAE}, §4.4.1 and Table 4-8; Intel SDM Vol. 2B MOV CR"),
    ("sdm.pae.pdpte.not-present", "PAE paging: an access through a PDPTE register with P = 0 raises #PF with errcode P = 0", f"{WPAE}, Table 4-8"),
    ("sdm.pae.pdpte.no-rights", "PAE paging: a PDPTE has no R/W, U/S or XD bit and gets no A flag: the rights are the PDE's and PTE's", f"{WPAE}, Table 4-8; {A}; {AD}"),
    ("sdm.pae.pde.not-present", "PAE paging: a PDE with P = 0 ends the walk: #PF with errcode P = 0", f"{WPAE}, Tables 4-9/4-10"),
    ("sdm.pae.pde.ps-2m", "PAE paging: a PDE with PS = 1 maps a 2-MByte page: pa = PDE[M-1:21] | la[20:0]", f"{WPAE}, Table 4-9"),
    ("sdm.pae.pde.rsvd-2m-low", "PAE paging: bits 20:13 of a PDE that maps a 2-MByte page are reserved: #PF with P|RSVD", f"{WPAE}, Table 4-9"),
    ("sdm.pae.pde.rsvd-maxphy", "PAE paging: bits 62:MAXPHYADDR of a PDE are reserved (no ignored or protection-key bits above 51 as in IA-32e paging): #PF with P|RSVD", f"{WPAE}, Tables 4-9/4-10"),
    ("sdm.pae.pte.not-present", "PAE paging: a PTE with P = 0: #PF with errcode P = 0", f"{WPAE}, Table 4-11; {PF}"),
    ("sdm.pae.pte.maps-4k", "PAE paging: a PTE maps a 4-KByte page: pa = PTE[M-1:12] | la[11:0]", f"{WPAE}, Table 4-11"),
    ("sdm.pae.pte.rsvd-maxphy", "PAE paging: bits 62:MAXPHYADDR of a PTE are reserved: #PF with P|RSVD", f"{WPAE}, Table 4-11; {PF}"),
    ("sdm.pae.rsvd.xd-without-nxe", "PAE paging with IA32_EFER.NXE = 0: bit 63 (XD) of a PDE or PTE is reserved: #PF with P|RSVD", f"{WPAE}, Tables 4-9..4-11; {PF}"),
    ("sdm.canonical.gp", "a non-canonical linear address (bits 63:47, or 63:56 with LA57, not all equal) raises #GP(0), not #PF", "Intel SDM Vol. 3A §4.5.1 and Vol. 1 §3.3.7.1; AMD64 APM Vol. 2 §5.3.1"),
    # --- access rights --------------------------------------------------------------
    ("sdm.access.user-read-user", "CPL 3 may read a user-mode address (U/S = 1 at every level)", A),
    ("sdm.access.user-read-supervisor", "CPL 3 may not read a supervisor-mode address (U/S = 0 at some level): #PF P|U", f"{A}; {PF}"),
    ("sdm.access.user-write-writable", "CPL 3 may write a user-mode address with R/W = 1 at every level", A),
    ("sdm.access.user-write-readonly", "CPL 3 may not write an address with R/W = 0 at some level, whatever CR0.WP: #PF P|W|U", A),
    ("sdm.access.user-write-supervisor", "CPL 3 may not write a supervisor-mode address: #PF P|W|U", A),
    ("sdm.access.user-fetch-user", "CPL 3 may fetch from a user-mode address that is executable", A),
    ("sdm.access.user-fetch-supervisor", "CPL 3 may not fetch from a supervisor-mode address: #PF P|U(|I/D)", A),
    ("sdm.access.supervisor-write-writable", "CPL 0 may write a supervisor-mode address with R/W = 1 at every level", A),
    ("sdm.access.supervisor-fetch", "CPL 0 may fetch from an executable address (user-mode only if SMEP = 0)", A),
    ("sdm.access.wp-supervisor-write", "with CR0.WP = 1, CPL 0 may not write an address with R/W = 0 at some level: #PF P|W", f"{A}; Intel SDM Vol. 3A §2.5 (CR0.WP)"),
    ("sdm.access.wp0-supervisor-write", "with CR0.WP = 0, CPL 0 may write a read-only address", f"{A}; Intel SDM Vol. 3A §2.5 (CR0.WP)"),
    ("sdm.access.xd-fetch", "with IA32_EFER.NXE = 1, no fetch from an address with XD = 1 at some level: #PF P|I/D", f"{A}; AMD64 APM Vol. 2 §5.6.1 (no-execute)"),
    ("sdm.access.smep-fetch", "with CR4.SMEP = 1, CPL 0 may not fetch from a user-mode address: #PF P|I/D", A),
    ("sdm.access.smap-read", "with CR4.SMAP = 1 and EFLAGS.AC = 0, CPL 0 may not read a user-mode address: #PF P", A),
    ("sdm.access.smap-write", "with CR4.SMAP = 1 and EFLAGS.AC = 0, CPL 0 may not write a user-mode address: #PF P|W", A),
    ("sdm.access.smap-ac-override", "with CR4.SMAP = 1 and EFLAGS.AC = 1, explicit CPL 0 accesses to user-mode addresses follow the SMAP = 0 rules", A),
    ("sdm.pkeys.access-disable", "with CR4.PKE = 1, PKRU.AD[key] = 1 forbids data accesses to user-mode addresses with that key: #PF P|PK", "Intel SDM Vol. 3A §4.6.2 (protection keys)"),
    ("sdm.pkeys.write-disable", "with CR4.PKE = 1, PKRU.WD[key] = 1 forbids user-mode writes (and supervisor writes if CR0.WP = 1): #PF P|W|PK", "Intel SDM Vol. 3A §4.6.2"),
    ("sdm.pkeys.fetch-unaffected", "protection keys never restrict instruction fetches", "Intel SDM Vol. 3A §4.6.2"),
    ("sdm.pkeys.supervisor-page-unaffected", "protection keys apply to user-mode addresses only: a supervisor-mode page is not restricted by PKRU", "Intel SDM Vol. 3A §4.6.2"),
    ("sdm.pkeys.ignored-without-pke", "with CR4.PKE = 0 the protection-key bits 62:59 of an entry are ignored", "Intel SDM Vol. 3A §4.6.2 and Table 4-20"),
    ("sdm.walk.ignored-bits", "bits 58:52 and 11:9 (11:8 in non-leaf entries) of a paging entry are ignored by the walk", f"{W}, Tables 4-15..4-20 (Ign.)"),
    ("sdm.walk.pte.pat-not-ps", "bit 7 of a PTE is PAT, not PS: the PTE still maps a 4-KByte page", f"{W}, Table 4-20"),
    ("sdm.access.smep-cpl3-unaffected", "SMEP restricts supervisor-mode fetches only: CPL 3 fetches from user pages are allowed", A),
    ("sdm.access.smap-supervisor-page-unaffected", "SMAP restricts accesses to user-mode addresses only: CPL 0 data accesses to supervisor pages are allowed", A),
    ("sdm.access.smap-fetch-unaffected", "SMAP restricts supervisor-mode data accesses only: with CR4.SMEP = 0, CPL 0 may fetch from a user-mode address whatever CR4.SMAP and EFLAGS.AC (XD permitting)", f"{A} (SMAP: 'data' accesses; instruction fetches are governed by SMEP)"),
    ("sdm.access.xd-data-unaffected", "XD restricts instruction fetches only: with IA32_EFER.NXE = 1, reads and writes of an address with XD = 1 at some level follow the other rules", f"{A}; AMD64 APM Vol. 2 §5.6.1 (no-execute)"),
    ("sdm.access.supervisor-data-user-no-smap", "with CR4.SMAP = 0, CPL 0 may read (and, subject to WP, write) user-mode addresses", A),
    ("sdm.pkeys.wrpkru", "WRPKRU with CR4.PKE = 1 loads PKRU", "Intel SDM Vol. 2D WRPKRU"),
    ("sdm.pkeys.wrpkru-ud", "WRPKRU with CR4.PKE = 0 raises #UD", "Intel SDM Vol. 2D WRPKRU, Protected Mode Exceptions"),
    # --- the page-fault error code's bits that describe the access (§4.7), whatever the cause -----
    ("sdm.pf.errcode.w", "the W/R bit (1) of a #PF error code is 1 for a write and 0 for a read or fetch, whatever caused the fault", PF),
    ("sdm.pf.errcode.us", "the U/S bit (2) of a #PF error code is 1 for an access at CPL 3 and 0 for a supervisor-mode access, whatever caused the fault", PF),
    ("sdm.pf.errcode.id", "the I/D bit (4) of a #PF error code is 1 for an instruction fetch when CR4.SMEP = 1 or IA32_EFER.NXE = 1, and 0 otherwise, whatever caused the fault (a not-present page too)", f"{PF}; AMD64 APM Vol. 2 §8.4.2"),
    # --- A/D -----------------------------------------------------------------------------
    ("sdm.ad.accessed-on-use", "every paging-structure entry used by a translation gets A = 1", AD),
    ("sdm.ad.dirty-on-write", "a write sets D = 1 in the entry that maps the page (PTE, or PDE/PDPTE with PS = 1)", AD),
    ("sdm.ad.no-dirty-on-read", "a read sets A but never D in the entry that maps the page", AD),
    ("sdm.ad.fault-a-unspecified", "whether A is set in entries used by a walk that faults is not specified (either is allowed)", f"{AD}; {TLB}.2.1"),
    ("sdm.ad.only-a-d", "the processor changes no bit of a paging entry other than A and D", AD),
    ("sdm.tlb.ad-with-cached-translation", "an access served by a cached translation need not set A/D again (either is allowed)", f"{AD}; {TLB}.4.3"),
    # --- TLB ------------------------------------------------------------------------------
    ("sdm.tlb.stale-before-invalidation", "after a paging-entry change and before the required invalidation, the old and the new translation are both permitted (also mixtures through paging-structure caches; spurious #PF after a rights upgrade)", f"{TLB}.2.3, §4.10.3, §4.10.4.2, §4.10.4.3"),
    ("sdm.tlb.invlpg", "after INVLPG of a page only its current translation is used (global ones included, any PCID)", f"{TLB}.4.1; Intel SDM Vol. 2A INVLPG"),
    ("sdm.invlpg.noncanonical-nop", "INVLPG of a non-canonical address is a no-op (no #GP)", "Intel SDM Vol. 2A INVLPG, Description"),
    ("sdm.tlb.cr3-flush-nonglobal", "MOV to CR3 with CR4.PCIDE = 0 invalidates all non-global translations; global ones may survive", f"{TLB}.4.1; §4.10.2.4"),
    ("sdm.tlb.cr3-flush-pcid", "MOV to CR3 with CR4.PCIDE = 1 and bit 63 = 0 invalidates the non-global translations of the new PCID", f"{TLB}.4.1"),
    ("sdm.tlb.cr3-noflush", "MOV to CR3 with CR4.PCIDE = 1 and bit 63 = 1 invalidates nothing: translations of that PCID may be used", f"{TLB}.4.1; §4.10.1"),
    ("sdm.tlb.cr4-pge-flush", "MOV to CR4 that changes CR4.PGE invalidates all translations, global ones included", f"{TLB}.4.1"),
    ("sdm.tlb.cr4-pcide-off-flush", "MOV to CR4 that clears CR4.PCIDE invalidates all translations", f"{TLB}.4.1"),
    ("sdm.tlb.pf-invalidates", "a #PF invalidates the TLB entries of the faulting page for the current PCID: the next access walks again", f"{TLB}.4.1, last paragraph"),
    ("sdm.invpcid.addr", "INVPCID type 0 invalidates the non-global translation of one address in one PCID", "Intel SDM Vol. 2B INVPCID; " + f"{TLB}.4.1"),
    ("sdm.invpcid.single", "INVPCID type 1 invalidates the non-global translations of one PCID", "Intel SDM Vol. 2B INVPCID"),
    ("sdm.invpcid.all-global", "INVPCID type 2 invalidates all translations, global ones included", "Intel SDM Vol. 2B INVPCID"),
    ("sdm.invpcid.all", "INVPCID type 3 invalidates all non-global translations of all PCIDs", "Intel SDM Vol. 2B INVPCID"),
    ("sdm.invpcid.ud-unsupported", "INVPCID raises #UD if CPUID.(EAX=07H,ECX=0):EBX.INVPCID[10] = 0", "Intel SDM Vol. 2B INVPCID, Protected Mode Exceptions"),
    ("sdm.invpcid.gp-type-pcid", "INVPCID with a type above 3 or a PCID above 4095 raises #GP(0)", "Intel SDM Vol. 2B INVPCID, 64-Bit Mode Exceptions"),
    ("sdm.invpcid.gp-noncanonical", "INVPCID type 0 with a non-canonical address raises #GP(0)", "Intel SDM Vol. 2B INVPCID"),
    ("sdm.invpcid.gp-pcid-without-pcide", "INVPCID type 0 or 1 with PCID != 0 while CR4.PCIDE = 0 raises #GP(0)", "Intel SDM Vol. 2B INVPCID"),
    # --- control registers -----------------------------------------------------------------
    ("sdm.cr3.rsvd-gp", "MOV to CR3 with a 1 in bits 63:MAXPHYADDR (bit 63 only without PCIDE) raises #GP(0)", "Intel SDM Vol. 2B MOV—Move to/from Control Registers, 64-Bit Mode Exceptions; Vol. 3A §4.5.4"),
    ("sdm.cr4.load", "MOV to CR4 loads the supported bits (SMEP, SMAP, PKE, PGE, PCIDE) and they take effect for the next access", "Intel SDM Vol. 3A §2.5; Vol. 2B MOV CR"),
    ("sdm.cr4.rsvd-gp", "MOV to CR4 setting a reserved bit or a feature the CPU lacks raises #GP(0)", "Intel SDM Vol. 2B MOV CR, Protected Mode Exceptions"),
    ("sdm.cr4.cet-without-wp-gp", "MOV to CR4 setting CET (bit 23) while CR0.WP = 0 raises #GP(0); on a CPU without CET the bit is reserved", "Intel SDM Vol. 2B MOV CR, Protected Mode Exceptions; Vol. 3A §2.5 (CR4.CET)"),
    ("sdm.cr0.wp-clear-cet-gp", "MOV to CR0 clearing WP while CR4.CET = 1 raises #GP(0)", "Intel SDM Vol. 2B MOV CR, Protected Mode Exceptions; Vol. 3A §2.5"),
    ("sdm.cr4.pae-clear-gp", "MOV to CR4 clearing PAE in IA-32e mode raises #GP(0)", "Intel SDM Vol. 2B MOV CR"),
    ("sdm.cr4.la57-change-gp", "MOV to CR4 changing LA57 while IA32_EFER.LMA = 1 raises #GP(0)", "Intel SDM Vol. 2B MOV CR; Vol. 3A §4.1.1"),
    ("sdm.cr4.pcide-cr3-gp", "MOV to CR4 setting PCIDE while CR3[11:0] != 0 raises #GP(0)", "Intel SDM Vol. 2B MOV CR; Vol. 3A §4.10.1"),
    ("sdm.cr0.wp-load", "MOV to CR0 loads WP; the next supervisor write is checked against it", "Intel SDM Vol. 3A §2.5"),
    ("sdm.cr0.rsvd-gp", "MOV to CR0 with a 1 in bits 63:32 raises #GP(0)", "Intel SDM Vol. 2B MOV CR, 64-Bit Mode Exceptions"),
    ("sdm.cr0.pg-clear-long-mode-gp", "MOV to CR0 clearing PG (or PE) in 64-bit mode raises #GP(0)", "Intel SDM Vol. 2B MOV CR; Vol. 3A §10.8.5.4"),
    ("sdm.cr0.nw-without-cd-gp", "MOV to CR0 with NW = 1 and CD = 0 raises #GP(0)", "Intel SDM Vol. 2B MOV CR"),
    ("sdm.efer.nxe-load", "WRMSR to IA32_EFER loads NXE; the next walk uses it", "Intel SDM Vol. 3A §4.1.1; Vol. 4 IA32_EFER"),
    ("sdm.efer.rsvd-gp", "WRMSR to IA32_EFER setting a reserved bit raises #GP(0)", "Intel SDM Vol. 2B WRMSR"),
    ("sdm.efer.lme-change-gp", "WRMSR to IA32_EFER changing LME while paging is enabled raises #GP(0)", "Intel SDM Vol. 3A §10.8.5"),
    # --- the harness's own promises ---------------------------------------------------------
    ("memspec.hw.boot", "boot() loads CR0, CR4 and IA32_EFER with paging enabled and an empty TLB", "memspec hw harness"),
    ("memspec.hw.boot-long-mode", "boot() needs PG, PE, PAE and LME (IA-32e paging): EINVAL otherwise", "memspec hw harness"),
    ("memspec.hw.boot-feature", "boot() asking for a CR4 feature the CPU lacks fails with EINVAL", "memspec hw harness"),
    ("memspec.hw.set-pte", "set_pte() writes frame|flags at table + 8*index in physical memory", "memspec hw harness"),
    ("memspec.hw.table-args", "table must be a 4-KiB-aligned frame in the program's RAM and index 0..510: EINVAL otherwise", "memspec hw harness"),
    ("memspec.hw.entry-readback", "read_pte() returns the entry as last written (the CPU changes only A/D)", f"memspec hw harness; {AD}"),
    ("memspec.hw.access-args", "access() needs an 8-aligned address, op ACC_READ/WRITE/EXEC, cpl 0 or 3, ac 0 or 1: EINVAL otherwise", "memspec hw harness"),
    ("memspec.hw.harness-slot", "linear addresses in top-level slot 511 belong to the harness: EINVAL", "memspec hw harness"),
    ("memspec.hw.root-in-ram", "CR3 must name a root table in the program's RAM: EINVAL otherwise", "memspec hw harness"),
    ("memspec.hw.pa-outside-pattern", "an access reaching memory outside the pattern (harness frames, paging entries fetched as code) is judged unknown", "memspec hw harness"),
    ("memspec.hw.pkru-32bit", "wrpkru() takes a 32-bit value: EINVAL otherwise", "memspec hw harness"),
)
