"""The qemu (unicorn) target's sweep of 32-bit and PAE paging: a unicorn CPU in 32-bit protected mode.

unicorn's QEMU runs protected mode with paging directly (``UC_MODE_32``; CR0, CR3, CR4 and IA32_EFER
loaded by the harness).  Memory is the long-mode machine's: 32 MiB whose every qword holds the pattern
``(pa << 8) | 0xCC``, and the 4 MiB above 4 GiB that a 4-MByte page with physical-address bit 32 set
(PSE-36) reaches.  The harness's pages (code at CPL 0 and CPL 3, GDT, a stack) sit at linear
``LIN`` = 0xFFE00000 in every tree: PDE 1023 -> a page table (32-bit paging), PDPTE 3 -> PDE 511 -> a
page table (PAE), supervisor pages but for the CPL 3 code.

Per access: the CPU state saved at start-up (CPL 0, flat segments, paging off) is restored, the
tree written, CR3, CR4, IA32_EFER and CR0 loaded, and the guest runs ``mov cr3, edi`` (a real MOV to
CR3: with PAE paging it loads the PDPTEs) and then the access at CPL 0, or an IRET to CPL 3 code that
loads DS and makes it: ``mov ebx, [eax]; mov ecx, [eax+4]`` (read: the whole pattern qword),
``mov byte [eax], 0xcc`` first (write), ``jmp eax`` (fetch: the pattern's INT3 ends it).  Exceptions
come to a ``UC_HOOK_INTR`` hook as in ``targets/qemu.py``, whose calibrated offset of the #PF error
code in a saved context is reused (the CPU state is the same structure in every mode) and checked
here with three known faults at start-up.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from memspec.calls_hw import RAM_SIZE
from memspec.errors import TargetError
from memspec.sweepspace import ALLOWED, GP, OTHER, PF, TABLES, Items, Observed

LIN = 0xFFE00000
H_PT32, H_PD_PAE, H_PT_PAE, H_SUP, H_USR, H_GDT, H_DATA = 0x1000, 0x2000, 0x3000, 0x5000, 0x6000, 0x7000, 0x8000
SUP, USR, GDT, DATA = LIN, LIN + 0x1000, LIN + 0x2000, LIN + 0x3000
HIGH = 1 << 32                     # PSE-36: physical address bit 32 (a 4 MiB page's PDE bit 13)
HIGH_SIZE = 16 << 20
# GDT: null, CPL 0 code and data, CPL 3 code and data (flat, 32-bit, accessed)
GDT_ENTRIES = (0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF, 0x00CFFB000000FFFF, 0x00CFF3000000FFFF)
USER_CS, USER_DS = 0x1B, 0x23
MSR_EFER = 0xC0000080
# code: CPL 0 at SUP + 0x10 * access (after MOV CR3), the IRET to CPL 3 at SUP + 0x30, CPL 3 at USR + 0x10 * access
MOV_CR3 = bytes.fromhex("0f22df")
ACCESS = (bytes.fromhex("8b18 8b4804"), bytes.fromhex("c600cc 8b18 8b4804"), bytes.fromhex("ffe0"))
IRET = bytes.fromhex("cf")
LOAD_DS = bytes.fromhex("8ed9")
HARNESS_FLAGS = 0x23               # P|RW|A: supervisor
USER_FLAGS = 0x27                  # P|RW|US|A


class Legacy:
    """One unicorn CPU in 32-bit protected mode, for sweeps of 32-bit and PAE paging."""

    def __init__(self, off_err: int, cpu_model: str = "UC_CPU_X86_ICELAKE_SERVER") -> None:
        import unicorn as uc_mod
        from unicorn import x86_const as x
        self.x = x
        self.uc = uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_32)
        uc.ctl_set_cpu_model(getattr(x, cpu_model))
        uc.mem_map(0, RAM_SIZE)
        uc.mem_map(HIGH, HIGH_SIZE)
        for lo, hi in ((0, RAM_SIZE), (HIGH, HIGH + HIGH_SIZE)):
            uc.mem_write(lo, _pattern_bytes(lo, hi))
        self.off_err = off_err
        self.exc: int | None = None
        self.cr2 = self.errcode = 0
        self.scratch = uc.context_save()
        self.scratch_ptr = ctypes.cast(self.scratch.context, ctypes.c_void_p).value
        uc.hook_add(uc_mod.UC_HOOK_INTR, self._on_intr)
        # harness pages, one page table per paging mode
        for i, d in enumerate(GDT_ENTRIES):
            uc.mem_write(H_GDT + 8 * i, struct.pack("<Q", d))
        for k, (page, flags) in enumerate(((H_SUP, HARNESS_FLAGS), (H_USR, USER_FLAGS), (H_GDT, HARNESS_FLAGS),
                                           (H_DATA, HARNESS_FLAGS))):
            uc.mem_write(H_PT32 + 4 * (512 + k), struct.pack("<I", page | flags))
            uc.mem_write(H_PT_PAE + 8 * k, struct.pack("<Q", page | flags))
        uc.mem_write(H_PD_PAE + 8 * 511, struct.pack("<Q", H_PT_PAE | USER_FLAGS))
        for acc, code in enumerate(ACCESS):
            uc.mem_write(H_SUP + 0x10 * acc, MOV_CR3 + code)
            uc.mem_write(H_USR + 0x10 * acc, LOAD_DS + code)
        uc.mem_write(H_SUP + 0x30, MOV_CR3 + IRET)
        # flat segments from the GDT (paging off: its linear address is its physical one), then the GDT
        # at its paged address for the IRETs to come
        uc.reg_write(x.UC_X86_REG_GDTR, (0, H_GDT, 8 * len(GDT_ENTRIES) - 1, 0))
        uc.reg_write(x.UC_X86_REG_CS, 0x08)
        for r in (x.UC_X86_REG_SS, x.UC_X86_REG_DS, x.UC_X86_REG_ES):
            uc.reg_write(r, 0x10)
        uc.reg_write(x.UC_X86_REG_GDTR, (0, GDT, 8 * len(GDT_ENTRIES) - 1, 0))
        self.clean = uc.context_save()
        self._check_errcode()

    def _on_intr(self, uc: Any, intno: int, _data: Any) -> None:
        self.exc = intno
        if intno == 14:
            self.cr2 = uc.reg_read(self.x.UC_X86_REG_CR2)
            uc.context_update(self.scratch)
            self.errcode = ctypes.c_uint32.from_address(self.scratch_ptr + self.off_err).value
        uc.emu_stop()

    def _check_errcode(self) -> None:
        """Three known not-present faults (CPL 0 read 0x0, write 0x2, CPL 3 read 0x4) with 32-bit paging."""
        root = TABLES[0]
        self.harness("32bit", root)
        for acc, cpl, want in ((0, 0, 0), (1, 0, 2), (0, 3, 4)):
            self.uc.mem_write(root + 4, b"\0" * 4)
            got = self.access("32bit", root, 0x80000011, 0x10, 0, 0x401008, acc, cpl, 0)
            if got[:2] != ("pf", want):
                raise TargetError(f"the qemu target's 32-bit machine did not report #PF {want:#x} for a known "
                                  f"fault (got {got[:2]}): the calibrated error-code offset does not hold here")
        self.uc.mem_write(root + 4, _pattern_bytes(root, root + 8)[4:8])

    def harness(self, paging: str, root: int) -> None:
        """The harness's entry in a tree's root: PDE 1023 (32-bit) or PDPTE 3 (PAE)."""
        if paging == "32bit":
            self.uc.mem_write(root + 4 * 1023, struct.pack("<I", H_PT32 | USER_FLAGS))
        else:
            self.uc.mem_write(root + 8 * 3, struct.pack("<Q", H_PD_PAE | 1))

    def access(self, paging: str, root: int, cr0: int, cr4: int, efer: int, la: int, acc: int, cpl: int,
               ac: int) -> tuple[str, int, int, int]:
        """(kind, error code or vector, CR2, value) of one access through the tree at ``root``."""
        uc, x = self.uc, self.x
        uc.context_restore(self.clean)
        uc.reg_write(x.UC_X86_REG_CR3, root)
        uc.reg_write(x.UC_X86_REG_CR4, cr4)
        uc.reg_write(x.UC_X86_REG_MSR, (MSR_EFER, efer))
        uc.reg_write(x.UC_X86_REG_CR0, cr0)
        uc.reg_write(x.UC_X86_REG_EAX, la)
        uc.reg_write(x.UC_X86_REG_EDI, root)
        uc.reg_write(x.UC_X86_REG_EBX, 0)
        uc.reg_write(x.UC_X86_REG_ECX, 0)
        self.exc = None
        if cpl == 0:
            uc.reg_write(x.UC_X86_REG_EFLAGS, 0x2 | (ac << 18))
            start = SUP + 0x10 * acc
            end = start + len(MOV_CR3) + len(ACCESS[acc])
        else:
            uc.mem_write(H_DATA + 0xF00, struct.pack("<5I", USR + 0x10 * acc, USER_CS, 0x2 | (ac << 18),
                                                      DATA + 0xE00, USER_DS))
            uc.reg_write(x.UC_X86_REG_ESP, DATA + 0xF00)
            uc.reg_write(x.UC_X86_REG_ECX, USER_DS)
            start = SUP + 0x30
            end = USR + 0x10 * acc + len(LOAD_DS) + len(ACCESS[acc])
        uc.emu_start(start, end, count=16)
        if self.exc is None:
            if acc == 2:
                return "other", -1, 0, 0     # a fetch that ran on instead of reaching the INT3
            value = uc.reg_read(x.UC_X86_REG_EBX) | (uc.reg_read(x.UC_X86_REG_ECX) << 32)
            return "ok", 0, 0, value
        if self.exc == 3 and acc == 2:
            return "ok", 0, 0, 0
        if self.exc == 14:
            return "pf", self.errcode, self.cr2, 0
        return "exc", self.exc, 0, 0


def _pattern_bytes(lo: int, hi: int) -> bytes:
    import numpy as np
    pa = np.arange(lo, hi, 8, dtype=np.uint64)
    return ((pa << np.uint64(8)) | np.uint64(0xCC)).astype("<u8").tobytes()


def run_legacy(machine: Legacy, items: Items) -> Observed:
    """A batch of 32-bit or PAE accesses on ``machine``: one tree per access, written, run, read back."""
    uc = machine.uc
    n = len(items)
    obs = Observed.empty(n)
    size = items.entry_size
    fmt = "<I" if size == 4 else "<Q"
    root = TABLES[0]
    machine.harness(items.paging, root)
    written, entries = items.written.tolist(), items.entries.tolist()
    for i in range(n):
        where = []
        for k in range(items.levels):
            if written[i] >> (items.levels - k - 1) & 1:
                table, idx = items.slot(k, i)
                pa = table + size * idx
                uc.mem_write(pa, struct.pack(fmt, entries[i][k]))
                where.append((k, pa))
        kind, code, cr2, value = machine.access(items.paging, root, int(items.cr0[i]), int(items.cr4[i]),
                                                int(items.efer[i]), int(items.la[i]), int(items.acc[i]),
                                                int(items.cpl[i]), int(items.ac[i]))
        ad = 0
        for k, pa in where:
            v = struct.unpack(fmt, bytes(uc.mem_read(pa, size)))[0]
            ad |= ((v >> 5) & 3) << (2 * (items.levels - k - 1))
            # the pattern back where the tree was (the next tree writes only its own slots)
            uc.mem_write(pa, _pattern_bytes(pa & ~7, (pa & ~7) + 8)[pa & 4:(pa & 4) + size])
        obs.ad[i] = ad
        if kind == "ok":
            obs.kind[i], obs.value[i] = ALLOWED, value
        elif kind == "pf":
            obs.kind[i], obs.vector[i], obs.errcode[i], obs.cr2[i] = PF, 14, code, cr2
        elif kind == "exc":
            obs.kind[i], obs.vector[i] = (GP if code == 13 else OTHER), code
        else:
            obs.kind[i], obs.vector[i] = OTHER, -1
    return obs


__all__ = ["Legacy", "run_legacy", "LIN"]
