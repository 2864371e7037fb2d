"""Control registers and mode changes (SDM Vol. 3A §2.5, §4.1; the instructions' pages in Vol. 2):
``boot``, MOV to CR0, CR3 and CR4, WRMSR to IA32_EFER and WRPKRU.

Each ``_expect_<call>`` names the clause that decides it (a #GP for a reserved or forbidden value,
the load otherwise) and ``_apply_<call>`` loads the register; the loads that flush the TLB record
their invalidation (§4.10.4.1: MOV to CR3 without the no-flush bit, a change of CR4.PGE, CR4.PCIDE
cleared).

Worked example: with CR4.PCIDE = 1, ``mov_cr3(root | 5 | 1 << 63)`` loads PCID 5 and flushes nothing
(sdm.tlb.cr3-noflush); ``mov_cr3(root | 5)`` flushes PCID 5's non-global translations
(sdm.tlb.cr3-flush-pcid); a 1 in bits 62:MAXPHYADDR is #GP (sdm.cr3.rsvd-gp).
"""

from __future__ import annotations

from memspec.records import OK, Outcome

from .expect import Expect
from .paging_state import EINVAL, GP, U64, UD, PagingState, exactly
from .pte import (CR0_PE, CR0_PG, CR0_WP, CR3_NOFLUSH, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_PKE, CR4_PSE,
                  CR4_SMAP, CR4_SMEP, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, addr_mask, bits)
from .tlb import ALL, PCID_ALL

CR4_KNOWN = CR4_PSE | CR4_PAE | CR4_PGE | CR4_LA57 | CR4_PCIDE | CR4_SMEP | CR4_SMAP | CR4_PKE | (1 << 9) | (1 << 10) | (1 << 18)
# CR4.CET (bit 23, SDM Vol. 3A §2.5): loadable by MOV to CR4 on a CPU with CET (CPUID.(EAX=7,
# ECX=0):ECX[7] or EDX[20]) and only while CR0.WP = 1; never part of a boot() the harness makes
CR4_CET = 1 << 23
# CR4.VMXE (bit 13, SDM Vol. 3C §24.7): loadable on a CPU with VMX (CPUID.01H:ECX[5], the `vmx` fact);
# reserved otherwise
CR4_VMXE = 1 << 13
EFER_KNOWN = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE


class ControlRegisters(PagingState):
    """The control-register calls' rules (see the module docstring)."""

    def _expect_boot(self, cr0: int, cr4: int, efer: int) -> Expect:
        if not (cr0 & CR0_PG and cr0 & CR0_PE and cr4 & CR4_PAE and efer & EFER_LME):
            return exactly("memspec.hw.boot-long-mode", EINVAL)
        if cr4 & ~CR4_KNOWN or efer & ~EFER_KNOWN or cr4 & CR4_PCIDE and self.cr3 & 0xFFF:
            return exactly("memspec.hw.boot-long-mode", EINVAL)
        missing = self._unsupported_cr4(cr4) or (efer & EFER_NXE and not self.facts["nx"])
        if missing:
            return exactly("memspec.hw.boot-feature", EINVAL)
        return exactly("memspec.hw.boot", OK)

    def _apply_boot(self, o: Outcome, cr0: int, cr4: int, efer: int) -> None:
        if not o.ok:
            return
        self.cr0, self.cr4, self.efer = cr0, cr4, efer | EFER_LMA
        self._write_harness_entry()
        self._invalidate(ALL, 0, 0, "memspec.hw.boot")
        self.history.load_root(self.root, self.pcid)

    def _unsupported_cr4(self, cr4: int) -> bool:
        need = ((CR4_LA57, "la57"), (CR4_PCIDE, "pcid"), (CR4_SMEP, "smep"), (CR4_SMAP, "smap"), (CR4_PKE, "pku"),
                (CR4_CET, "cet"), (CR4_VMXE, "vmx"))
        return any(cr4 & bit and not self.facts.get(f, False) for bit, f in need)

    def _expect_mov_cr3(self, value: int) -> Expect:
        # the answer reads only the value, CR4.PCIDE and the facts: kept per (value, PCIDE)
        key = (value, self.cr4 & CR4_PCIDE)
        e = self._cr3_expects.get(key)
        if e is None:
            if len(self._cr3_expects) >= 256:
                self._cr3_expects.clear()
            e = self._cr3_expects[key] = self._decide_mov_cr3(value)
        return e

    def _decide_mov_cr3(self, value: int) -> Expect:
        pcide = bool(self.cr4 & CR4_PCIDE)
        noflush = bool(value & CR3_NOFLUSH) and pcide
        v = value & ~CR3_NOFLUSH if pcide else value
        # SDM MOV CR: #GP(0) on a 1 in a reserved bit of CR3 (bits 63:MAXPHYADDR; bit 63 is the
        # no-flush hint only with CR4.PCIDE = 1)
        if v & bits(63, self.maxphy):
            return exactly("sdm.cr3.rsvd-gp", GP)
        root = v & addr_mask(self.maxphy)
        if not self.low <= root < self.ram:
            return exactly("memspec.hw.root-in-ram", EINVAL)
        if noflush:
            return exactly("sdm.tlb.cr3-noflush", OK)
        if pcide:
            return exactly("sdm.tlb.cr3-flush-pcid", OK)
        return exactly("sdm.tlb.cr3-flush-nonglobal", OK)

    def _apply_mov_cr3(self, o: Outcome, value: int) -> None:
        if not o.ok:
            return
        pcide = self.cr4 & CR4_PCIDE
        self.cr3 = cr3 = value & ~CR3_NOFLUSH & U64
        self._write_harness_entry()
        pcid = cr3 & 0xFFF if pcide else 0          # self.pcid
        self.history.load_root(self.root, pcid)
        if value & CR3_NOFLUSH and pcide:
            return
        if pcide:
            self._invalidate(PCID_ALL, pcid, 0, "sdm.tlb.cr3-flush-pcid")
        else:
            self._invalidate(PCID_ALL, 0, 0, "sdm.tlb.cr3-flush-nonglobal")

    def _expect_mov_cr4(self, value: int) -> Expect:
        old = self.cr4
        if value & ~(CR4_KNOWN | CR4_CET | CR4_VMXE) or self._unsupported_cr4(value):
            return exactly("sdm.cr4.rsvd-gp", GP)
        if value & CR4_CET and not self.cr0 & CR0_WP:
            return exactly("sdm.cr4.cet-without-wp-gp", GP)
        if not value & CR4_PAE:
            return exactly("sdm.cr4.pae-clear-gp", GP)
        if (value ^ old) & CR4_LA57:
            return exactly("sdm.cr4.la57-change-gp", GP)
        if value & CR4_PCIDE and not old & CR4_PCIDE and self.cr3 & 0xFFF:
            return exactly("sdm.cr4.pcide-cr3-gp", GP)
        if (value ^ old) & CR4_PGE:
            return exactly("sdm.tlb.cr4-pge-flush", OK)
        if old & CR4_PCIDE and not value & CR4_PCIDE:
            return exactly("sdm.tlb.cr4-pcide-off-flush", OK)
        return exactly("sdm.cr4.load", OK)

    def _apply_mov_cr4(self, o: Outcome, value: int) -> None:
        if not o.ok:
            return
        old, self.cr4 = self.cr4, value
        if (value ^ old) & CR4_PGE:
            self._invalidate(ALL, 0, 0, "sdm.tlb.cr4-pge-flush")
        elif old & CR4_PCIDE and not value & CR4_PCIDE:
            self._invalidate(ALL, 0, 0, "sdm.tlb.cr4-pcide-off-flush")
        if (value ^ old) & CR4_PCIDE:
            self.history.load_root(self.root, self.pcid)

    def _expect_mov_cr0(self, value: int) -> Expect:
        if value >> 32:
            return exactly("sdm.cr0.rsvd-gp", GP)
        if not value & CR0_PG or not value & CR0_PE:
            return exactly("sdm.cr0.pg-clear-long-mode-gp", GP)
        if value & (1 << 29) and not value & (1 << 30):   # NW = 1 with CD = 0
            return exactly("sdm.cr0.nw-without-cd-gp", GP)
        if not value & CR0_WP and self.cr4 & CR4_CET:
            return exactly("sdm.cr0.wp-clear-cet-gp", GP)
        return exactly("sdm.cr0.wp-load", OK)

    def _apply_mov_cr0(self, o: Outcome, value: int) -> None:
        if o.ok:
            self.cr0 = value

    def _expect_wrmsr_efer(self, value: int) -> Expect:
        if value & ~EFER_KNOWN or (value & EFER_NXE and not self.facts["nx"]):
            return exactly("sdm.efer.rsvd-gp", GP)
        if not value & EFER_LME:
            return exactly("sdm.efer.lme-change-gp", GP)
        return exactly("sdm.efer.nxe-load", OK)

    def _apply_wrmsr_efer(self, o: Outcome, value: int) -> None:
        if o.ok and self.efer & EFER_NXE and not value & EFER_NXE:
            self.history.nxe_cleared = self.history.tick()
        if o.ok:
            self.efer = (value & ~EFER_LMA) | EFER_LMA   # LMA is read-only (set by the processor)

    def _expect_wrpkru(self, value: int) -> Expect:
        if not self.cr4 & CR4_PKE:
            return exactly("sdm.pkeys.wrpkru-ud", UD)
        if value >> 32:
            return exactly("memspec.hw.pkru-32bit", EINVAL)
        return exactly("sdm.pkeys.wrpkru", OK)

    def _apply_wrpkru(self, o: Outcome, value: int) -> None:
        if o.ok:
            self.pkru = value
