"""virt-layer clauses: EPT and AMD nested paging (two-dimensional translation), KPTI, and the
seed's quantitative claims that the experiments measure.

Sources: Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 3C
(order no. 326019, the 2024 edition's numbering): §25.6.11 (the EPT pointer,
Table 25-9), §27.2.1.1 (VM-entry checks on VM-execution control fields),
§28.2.1 (basic VM-exit information; Table 28-7, exit qualification for EPT
violations), §29.3 (EPT: §29.3.2 translation mechanism, Tables 29-1..29-6;
§29.3.3.1 EPT misconfigurations; §29.3.3.2 EPT violations; §29.3.5 accessed and
dirty flags for EPT), §29.4 (caching translation information: guest-physical and
combined mappings, §29.4.3 invalidation); Vol. 3C ch. 31, INVEPT.  AMD64
Architecture Programmer's Manual Vol. 2 (24593) §15.25 (nested paging: §15.25.5
nested table walk, §15.25.6 nested versus guest page faults and EXITINFO1/2 of
#VMEXIT_NPF) and §15.16 (TLB control).  Linux Documentation/arch/x86/pti.rst and
arch/x86/mm/tlb.c (choose_new_asid), arch/x86/include/asm/tlbflush.h.  The seed
article (``seed``) for the experiments; Belady, Nelson and Shedler, "An anomaly
in space-time characteristics of certain programs running in a paging machine",
CACM 12(6), 1969; Belady, "A study of replacement algorithms for a virtual-storage
computer", IBM Systems Journal 5(2), 1966; Denning, "The working set model for
program behavior", CACM 11(5), 1968.
"""

from __future__ import annotations

from .catalogue import declare

EPT = "Intel SDM Vol. 3C §29.3.2 (EPT translation mechanism), Tables 29-1..29-6"
MIS = "Intel SDM Vol. 3C §29.3.3.1 (EPT misconfigurations)"
VIO = "Intel SDM Vol. 3C §29.3.3.2 (EPT violations); §28.2.1, Table 28-7 (exit qualification)"
CACHE = "Intel SDM Vol. 3C §29.4 (caching translation information)"
EPTP = "Intel SDM Vol. 3C §25.6.11, Table 25-9 (EPTP); §27.2.1.1 (VM-entry checks)"
NPT = "AMD64 APM Vol. 2 §15.25.5 (nested table walk)"
NPF = "AMD64 APM Vol. 2 §15.25.6 (nested versus guest page faults; EXITINFO1/EXITINFO2)"
PTI = "Linux Documentation/arch/x86/pti.rst"
TLBC = "Linux arch/x86/mm/tlb.c (choose_new_asid, switch_mm_irqs_off); arch/x86/include/asm/tlbflush.h"
H = "memspec virt harness"

declare(
    "virt",
    # --- the two-dimensional walk ------------------------------------------------------------
    ("sdm.ept.two-dimensional", "with EPT, a guest access translates gva -> gpa with the guest tables and every gpa "
     "(each guest paging entry and the final gpa) through EPT; the access reaches hpa = EPT(guest walk(gva))",
     f"{EPT}; Intel SDM Vol. 3C §29.3.1; seed, Causal relationships: EPT/RVI two-dimensional address translation"),
    ("sdm.ept.guest-paging-structures-translated", "the guest-physical addresses of the guest's own paging-structure "
     "entries (guest CR3 included) are translated through EPT, never used as host-physical addresses",
     "Intel SDM Vol. 3C §29.3.1 (guest-physical addresses used by the guest's paging structures are translated by EPT)"),
    ("sdm.ept.worst-case-24-refs", "a 4-level guest walk under 4-level EPT with nothing cached makes 4 x (4 + 1) + 4 = 24 "
     "memory references", f"{EPT}; {NPT} (the nested walk for each guest table and the final gpa)"),
    ("sdm.ept.misconfig.write-without-read", "an EPT entry with W = 1 and R = 0 is an EPT misconfiguration", MIS),
    ("sdm.ept.misconfig.execute-only-unsupported", "an execute-only EPT entry (X = 1, R = W = 0) is a misconfiguration "
     "unless IA32_VMX_EPT_VPID_CAP[0] reports execute-only support", MIS),
    ("sdm.ept.misconfig.rsvd-maxphy", "bits 51:MAXPHYADDR of a present EPT entry are reserved: misconfiguration", MIS),
    ("sdm.ept.misconfig.rsvd-ps", "bit 7 of an EPT PML4E/PML5E (and of a PDPTE without 1-GByte page support) is "
     "reserved: misconfiguration", MIS),
    ("sdm.ept.misconfig.rsvd-nonleaf", "bits 6:3 of an EPT entry that references another table are reserved", MIS),
    ("sdm.ept.misconfig.rsvd-large-low", "bits 29:12 of an EPT PDPTE mapping 1 GByte and bits 20:12 of a PDE mapping "
     "2 MBytes are reserved", MIS),
    ("sdm.ept.misconfig.memory-type", "a leaf EPT entry with memory type 2, 3 or 7 is an EPT misconfiguration", MIS),
    ("sdm.ept.violation.pml5e-not-present", "an EPT PML5E with bits 2:0 = 0 ends the walk: EPT violation", VIO),
    ("sdm.ept.violation.pml4e-not-present", "an EPT PML4E with bits 2:0 = 0 ends the walk: EPT violation; "
     "exit qualification bits 5:3 = 0", VIO),
    ("sdm.ept.violation.pdpte-not-present", "an EPT PDPTE with bits 2:0 = 0 ends the walk: EPT violation", VIO),
    ("sdm.ept.violation.pde-not-present", "an EPT PDE with bits 2:0 = 0 ends the walk: EPT violation", VIO),
    ("sdm.ept.violation.pte-not-present", "an EPT PTE with bits 2:0 = 0 ends the walk: EPT violation", VIO),
    ("sdm.ept.violation.read", "a data read needs R = 1 in every EPT entry used: else EPT violation, qualification bit 0", VIO),
    ("sdm.ept.violation.write", "a data write needs W = 1 in every EPT entry used: else EPT violation, qualification bit 1 "
     "and bits 5:3 = the AND of R, W, X over the entries", VIO),
    ("sdm.ept.violation.execute", "an instruction fetch needs X = 1 in every EPT entry used: else EPT violation, "
     "qualification bit 2", VIO),
    ("sdm.ept.violation.guest-paging-entry", "an EPT violation met while translating a guest paging entry's gpa has "
     "qualification bit 7 = 1 and bit 8 = 0; the walk's reads are data reads (bit 0) and its A/D updates data writes "
     "(bit 1; bit 0 implementation-specific for that read-modify-write); with EPT A/D on, every guest "
     "paging-structure access counts as a write and sets both bit 0 and bit 1",
     f"{VIO}, note 1 of Table 28-7; §28.2.1 (read-modify-write operations)"),
    ("sdm.ept.ad.readback", "with EPTP[6] = 1 the processor sets EPT A in every entry used and EPT D in the leaf on a "
     "write; with EPTP[6] = 0 it never writes EPT entries", "Intel SDM Vol. 3C §29.3.5 (accessed and dirty flags for EPT)"),
    ("sdm.ept.ad.only-a-d", "the processor writes no bit of an EPT entry other than accessed (8) and dirty (9)",
     "Intel SDM Vol. 3C §29.3.5 (accessed and dirty flags for EPT); Tables 29-1..29-6 (the other bits are software's)"),
    ("apm.npt.ad", "a nested walk sets A in every nested entry it uses and D in the nested leaf of a write (guest "
     "page-table accesses count as writes), as ordinary paging does in ordinary entries", f"{NPT}; AMD64 APM Vol. 2 §5.4.2"),
    ("sdm.ept.guest-ad", "guest A/D flags are set in the guest's entries (in the host frames EPT maps them to) as in "
     "ordinary paging; setting them is a write for EPT purposes", "Intel SDM Vol. 3A §4.8; Vol. 3C §29.3.3.2"),
    ("sdm.ept.cached-guest-physical", "guest-physical mappings (cached EPT translations, tagged by EP4TA) may be used "
     "after the EPT entries change, until INVEPT; linear and combined mappings do not survive VM entry/exit without VPID",
     f"{CACHE}, §29.4.3.1, §29.4.3.3"),
    ("sdm.eptp.valid", "VM entry accepts an EPTP with memory type UC or WB, a supported walk length and no reserved bits",
     EPTP),
    ("sdm.eptp.invalid-fails-entry", "an EPTP with a reserved memory type, an unsupported walk length, A/D without "
     "support or reserved bits fails VM entry", EPTP),
    ("sdm.invept.single-context", "INVEPT single-context invalidates the guest-physical and combined mappings derived "
     "from the given EPTP's EP4TA", "Intel SDM Vol. 3C ch. 31, INVEPT; §29.4.3.1"),
    ("sdm.invept.all-context", "INVEPT all-context invalidates the guest-physical and combined mappings of every EP4TA",
     "Intel SDM Vol. 3C ch. 31, INVEPT; §29.4.3.1"),
    ("apm.npt.two-dimensional", "with nested paging, gva -> gpa with the guest tables and every gpa through the nested "
     "tables (x86 format, walked as user accesses)", NPT),
    ("apm.npt.ncr3", "VMRUN with nested paging enabled loads nCR3; the nested tables use the host's paging mode",
     "AMD64 APM Vol. 2 §15.25.3, §15.25.4"),
    ("apm.npt.npf-final", "a nested fault on the final gpa exits with #VMEXIT_NPF: EXITINFO1 = #PF-style error code with "
     "bit 32 set, EXITINFO2 = the gpa", NPF),
    ("apm.npt.npf-guest-table", "a nested fault while translating a guest page-table gpa exits with #VMEXIT_NPF, "
     "EXITINFO1 bit 33 set; the nested walk treats guest page-table accesses as user writes (W|U), and sets D in "
     "the nested leaf that maps a guest table", f"{NPF}; {NPT}"),
    ("memspec.virt.two-d-equals-composition", "wherever neither stage faults, the 2-D walk reaches the hpa of the guest "
     "walk over guest-physical memory composed with the nested walk of its gpa", f"{EPT}; {NPT}"),
    ("memspec.virt.guest-confined", "a guest never reaches a host frame that its EPT/NPT (or a mapping cached from it "
     "and not yet invalidated) does not map to it", f"{VIO}; {CACHE}"),
    ("memspec.virt.guests-isolated", "two guests reach a common host frame only if both EPTs map it: guests with "
     "disjoint EPT mappings are isolated (cached mappings are tagged by EP4TA)", f"{CACHE} (EP4TA tagging); {NPT}"),
    ("memspec.virt.harness-code-walk", "each guest access first runs the harness's guest code through guest PML4 "
     "entry 511: a nested fault on the guest root page exits there (gpa gCR3 + 0xff8) before the program's access", H),
    ("memspec.virt.vm-args", "vm_boot/vm_enter/vm_cr3 with a bad guest number, kind, root or register: EINVAL", H),
    ("memspec.virt.vm-enter", "vm_enter(vm) makes a booted guest current", H),
    ("memspec.virt.guest-cr3", "vm_cr3 loads the guest's CR3 (its root table's gpa)", H),
    ("memspec.virt.table-args", "entry calls with a misaligned or out-of-RAM table, an index beyond 511 or the "
     "harness's slot 511 of a root: EINVAL", H),
    ("memspec.virt.set-entry", "set_epte/set_npte write frame|flags at table + 8*index of host-physical memory", H),
    ("memspec.virt.set-gpte", "set_gpte writes the guest entry in the host frame that the current EPT maps its gpa to", H),
    ("memspec.virt.gpte-unmapped", "set_gpte/read_gpte on a gpa the current EPT/NPT does not map: EINVAL", H),
    ("memspec.virt.invept-args", "invept with an unknown type or a bad root: EINVAL", H),
    ("memspec.virt.access-args", "vm_access with a misaligned, non-canonical or harness-slot gva, or a bad op/CPL: EINVAL", H),
    ("memspec.virt.pa-outside-pattern", "a guest access that reaches host memory the pattern does not cover: any value", H),
    # --- KPTI ----------------------------------------------------------------------------------
    ("linux.pti.boot", "kpti_boot starts one process in user mode with KPTI and PCID use as asked", PTI),
    ("linux.pti.user-set-maps-user", "the user page-table set maps the process's user memory with U/S = 1", PTI),
    ("linux.pti.user-set-no-kernel", "in user mode no kernel-only page is mapped: a CPL 3 load of one is a not-present "
     "#PF (errcode U), not a protection fault", f"{PTI}, Overview"),
    ("linux.pti.trampoline-in-user-set", "the user set maps the entry/exit trampoline and cpu_entry_area (supervisor-only)",
     f"{PTI}, Page Table Management"),
    ("linux.pti.kernel-set-maps-all", "the kernel set maps user memory and all kernel memory", PTI),
    ("linux.pti.entry-switches-cr3", "with KPTI, syscall entry writes CR3 to the kernel set and exit writes it back to the "
     "user set (two CR3 writes per syscall)", f"{PTI}, Overhead"),
    ("linux.pti.exit-switches-cr3", "with KPTI, syscall exit writes CR3 back to the user set as its last step before "
     "SYSRET (with PCID: the user PCID, no flush unless a user flush is pending)", f"{PTI}, Overhead; {TLBC}"),
    ("linux.pti.off-no-switch", "without KPTI one set serves both modes: syscall entry and exit write no CR3", PTI),
    ("linux.pti.off-kernel-mapped", "without KPTI kernel pages are mapped (supervisor-only) in user mode: a CPL 3 load is "
     "a protection #PF (errcode P|U)", f"{PTI}, Overview (what KPTI removes)"),
    ("linux.pti.not-mapped-pf", "a load of an address no set maps is a not-present #PF with CR2 = the address",
     "Intel SDM Vol. 3A §4.7"),
    ("linux.pti.pcid-distinct", "with PCID the user and kernel sets use distinct PCIDs (user = kernel | bit 11)",
     f"{PTI}, Overhead; {TLBC}"),
    ("linux.pti.pcid-no-flush", "with PCID, syscall entry and exit switch CR3 with the no-flush bit: no TLB flush per "
     "syscall", f"{PTI}, Overhead"),
    ("linux.pti.no-pcid-flush", "without PCID every CR3 switch flushes the non-global TLB: two flushes per syscall "
     "under KPTI", f"{PTI}, Overhead"),
    ("linux.pti.context-switch", "a context switch from kernel mode loads the next process's kernel set", TLBC),
    ("linux.pti.pcid-flush-on-reuse", "a PCID last used for another address space is flushed before reuse: no process "
     "ever sees another's stale translation", TLBC),
    ("memspec.kpti.boot-first", "KPTI calls before kpti_boot: EINVAL", H),
    ("memspec.kpti.args", "kpti_map with a misaligned page or frame, a kernel kind below the kernel half or a user kind "
     "above the user half, or a bad mode/counter: EINVAL", H),
    ("memspec.kpti.mode-args", "user_access/syscall_enter need user mode; kernel_access/syscall_exit/context_switch "
     "need kernel mode: EINVAL otherwise", H),
    ("memspec.kpti.walks-bounded", "the walk counter is between 0 and the number of accesses (TLB size is the target's)", H),
    ("memspec.kpti.syscalls-counted", "KSTAT_SYSCALLS counts syscall entries since kpti_boot", H),
    # --- the seed's quantitative claims (experiments) -------------------------------------------
    ("seed.tlb.huge-512x", "a 2 MB page covers 512 times what a 4 KB page covers: TLB reach (and pressure) improves by "
     "a factor of 512", "seed, Causal relationships: THP can reduce TLB pressure by a factor of 512"),
    ("seed.tlb.large-working-set-misses", "small pages generate more TLB misses for large working sets; huge pages fewer",
     "seed, Tradeoffs: paging granularity vs. TLB coverage"),
    ("seed.replacement.lru-clock", "Linux approximates LRU with a clock using the MMU's access bits; OPT (Belady's MIN) "
     "is the lower bound on faults", "seed, Swapping and Page Replacement; Belady, IBM Systems Journal 5(2), 1966"),
    ("belady.fifo-anomaly", "FIFO replacement can fault more with more frames: 1,2,3,4,1,2,5,1,2,3,4,5 faults 9 times "
     "with 3 frames and 10 with 4", "Belady, Nelson & Shedler, CACM 12(6), 1969"),
    ("seed.wss.working-set-over-time", "the working set W(t, τ) grows with τ and tracks phase changes of a program",
     "seed, Swapping and Page Replacement (Denning 1968); Denning, CACM 11(5), 1968"),
    ("seed.kpti.overhead-5-30", "KPTI adds measurable overhead on syscall-heavy work, reported at 5-30% in I/O-intensive "
     "benchmarks", "seed, Tradeoffs: security hardening vs. performance"),
    ("seed.numa.first-touch-migration", "naive first-touch allocation produces remote accesses when threads migrate "
     "across NUMA nodes; binding keeps them local", "seed, Tradeoffs: NUMA topology and allocation locality"),
)
