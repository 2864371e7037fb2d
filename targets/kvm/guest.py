"""The guest: its physical layout, the harness code and tables written into its RAM, and the VM that
runs it.  The machine code is GNU assembler source, ``guest.S``, assembled at first use
(``asm.py``); the tables (GDT, IDT, TSS, the physmap) are data, written here."""

from __future__ import annotations

import ctypes
import fcntl
import functools
import mmap
import os
import signal
import struct
import threading
from dataclasses import dataclass
from typing import Any

from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, INITIAL_CR3, RAM_SIZE
from memspec.consts import CREG

from . import asm
from .ioctl import (
    KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_REGS, KVM_GET_SREGS, KVM_RUN, KVM_SET_CPUID2, KVM_SET_REGS,
    KVM_SET_SREGS, KVM_SET_USER_MEMORY_REGION, _GuestTimeout, _Kvm, _REGS, _SEG, _SEG_OFF)

# --- the guest's layout ----------------------------------------------------------

PHYS = 0xFFFF_FF80_0000_0000          # all of guest RAM, mapped through root slot 511
GDT, IDT, TSS, STUBS, HANDLERS = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
UCODE, USTACK, KSTACK, SCRATCH = 0x6000, 0x7000, 0x8000, 0x9000
H_PDPT, H_PD, H_PT = 0xA000, 0xB000, 0xC000
CODE, CODE_END = 0x10000, 0x50000
SLOTS, SLOT_SIZE, NSLOTS = 0x50000, 40, 0x40000 // 40
STATIC_PAGES = (GDT, IDT, TSS, STUBS, HANDLERS, UCODE, H_PDPT, H_PD, H_PT)   # never written by the guest
KTOP, UTOP = PHYS + KSTACK + 0x1000, PHYS + USTACK + 0x1000
KCS, KDS, UCS, UDS, TSSSEL = 0x08, 0x10, 0x2B, 0x23, 0x30
P, RW, US, A, D, PS = 1, 2, 4, 0x20, 0x40, 0x80
HARNESS_ENTRY = H_PDPT | P | RW | US | A     # root[511]: A preset so that walks never change it
VEC_NAMES = {0: "#DE", 1: "#DB", 2: "#NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
             10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
             19: "#XM", 21: "#CP"}

CR0_PE, CR0_WP, CR0_PG = CREG["CR0_PE"], CREG["CR0_WP"], CREG["CR0_PG"]
CR4_PAE, CR4_LA57, CR4_PCIDE = CREG["CR4_PAE"], CREG["CR4_LA57"], CREG["CR4_PCIDE"]
CR4_SMEP, CR4_SMAP, CR4_PKE, CR4_PGE = CREG["CR4_SMEP"], CREG["CR4_SMAP"], CREG["CR4_PKE"], CREG["CR4_PGE"]
EFER_LME, EFER_LMA, EFER_NXE, EFER_SCE = CREG["EFER_LME"], CREG["EFER_LMA"], CREG["EFER_NXE"], CREG["EFER_SCE"]
CR3_NOFLUSH = CREG["CR3_NOFLUSH"]
CR4_KNOWN = (CR4_PAE | CR4_PGE | CR4_LA57 | CR4_PCIDE | CR4_SMEP | CR4_SMAP | CR4_PKE | CREG["CR4_PSE"]
             | (1 << 9) | (1 << 10) | (1 << 18))
EFER_KNOWN = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE
U64 = (1 << 64) - 1
PATH_CPL0, PATH_CPL3 = "cpl0-emulator", "cpl3-shadow"

# Result slot: [0] status, [8] value or faulting RIP, [16] error code, [24] CR2, [32] rax at a fault.
# status 0: ran to completion at CPL 0; 2: a fetch returned; 3: a fetch passed its checks but
# KVM could not emulate what it fetched; 4: KVM could not emulate the call's instruction;
# 0x100|vector | cs << 16: an exception (a CPL 3 snippet ends in one: HLT -> #GP).
ST_OK, ST_RETURNED, ST_FETCHED, ST_UNEMULATED, ST_EXC = 0, 2, 3, 4, 0x100


READ, WRITE, EXEC = 0, 1, 2
# what guest.S takes from here (-D values): one source for the layout
DEFINES = dict(STUBS=STUBS, HANDLERS=HANDLERS, UCODE=UCODE, KTOP=KTOP, UTOP=UTOP, UCS=UCS, UDS=UDS,
               ST_EXC=ST_EXC, ST_RETURNED=ST_RETURNED)


@dataclass(frozen=True)
class Code:
    """guest.S assembled: the harness blob, the templates compile.py emits, and the addresses
    (in the physmap) of the harness labels the host needs."""

    harness: bytes
    t: dict[str, asm.Template]
    assembled: asm.GuestCode    # all of it (the probe's 32-bit code, the symbols)
    fatal: int                  # where a fault in the harness's own code resumes (a HLT)
    user_entry: dict[int, int]  # op -> the CPL 3 snippet an access IRETQs to
    user_done: dict[int, int]   # op -> the RIP of the snippet's final HLT (its #GP ends the access)


@functools.lru_cache(maxsize=None)
def code() -> Code:
    g = asm.build(DEFINES)
    assert STUBS + len(g.harness) <= USTACK, "guest.S: the harness runs into the user stack"

    def at(label: str) -> int:
        return PHYS + g.at(label, STUBS)

    names = {READ: "user_read", WRITE: "user_write", EXEC: "user_exec"}
    entry = {op: at(n) for op, n in names.items()}
    done = {op: at(n + "_done") for op, n in names.items()}
    assert all(PHYS + UCODE <= a < PHYS + UCODE + 0x1000 for a in (*entry.values(), *done.values())), \
        "guest.S: a user snippet outside the user page"
    return Code(g.harness, g.templates, g, at("fatal"), entry, done)


def _pattern_image() -> bytes:
    """Guest RAM as a program starts: zero below HARNESS_LOW, the pattern ``(pa << 8) | 0xCC`` above."""
    import numpy as np
    pas = np.arange(HARNESS_LOW, RAM_SIZE, 8, dtype=np.uint64)
    return bytes(HARNESS_LOW) + ((pas << np.uint64(8)) | np.uint64(0xCC)).astype("<u8").tobytes()


_IMAGE: bytes | None = None


def _image() -> bytes:
    global _IMAGE
    if _IMAGE is None:
        img = bytearray(_pattern_image())
        _build_harness(img)
        _IMAGE = bytes(img)
    return _IMAGE


def _w64(m: bytearray | mmap.mmap, a: int, v: int) -> None:
    struct.pack_into("<Q", m, a, v & U64)


def _build_harness(m: bytearray) -> None:
    """GDT, TSS, IDT, exception stubs and handlers, user snippets, the physmap tables, root[511]."""
    # descriptor types with the accessed bit preset, so that loading a segment writes nothing
    for i, v in enumerate([0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF, 0x00CFFB000000FFFF,
                           0x00CFF3000000FFFF, 0x00AFFB000000FFFF]):
        _w64(m, GDT + 8 * i, v)
    base, lim = PHYS + TSS, 0x67
    _w64(m, GDT + TSSSEL, (lim & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89 << 40)
         | (((base >> 24) & 0xFF) << 56))
    _w64(m, GDT + TSSSEL + 8, base >> 32)
    _w64(m, TSS + 4, KTOP)                          # RSP0: the stack a CPL 3 fault lands on
    struct.pack_into("<H", m, TSS + 0x66, 0x68)     # no I/O bitmap
    # the stubs, the common handler, FATAL and the user snippets (guest.S, section .harness)
    harness = code().harness
    m[STUBS:STUBS + len(harness)] = harness
    for v in range(256):
        handler = PHYS + STUBS + 16 * v
        dpl = 3 if v == 3 else 0           # INT3 from CPL 3: a fetch of the pattern succeeded
        _w64(m, IDT + 16 * v, (handler & 0xFFFF) | (KCS << 16) | ((0x8E00 | dpl << 13) << 32)
             | (((handler >> 16) & 0xFFFF) << 48))
        _w64(m, IDT + 16 * v + 8, handler >> 32)
    # physmap: PML4[511] -> H_PDPT[0] -> H_PD: entry 0 -> H_PT (4 KiB pages, the user pages U/S=1),
    # entries 1..15 -> 2 MiB pages; A and D preset so that no walk ever changes these entries
    _w64(m, H_PDPT, H_PD | P | RW | US | A)
    _w64(m, H_PD, H_PT | P | RW | US | A)
    for i in range(1, RAM_SIZE >> 21):
        _w64(m, H_PD + 8 * i, (i << 21) | P | RW | PS | A | D)
    for i in range(512):
        # user code is read-only, so that code a program makes the guest run at CPL 3 (bytes of
        # paging entries, say) cannot rewrite the snippets later accesses use
        flags = P | US | A if (i << 12) == UCODE else P | RW | A | D | (US if (i << 12) == USTACK else 0)
        _w64(m, H_PT + 8 * i, (i << 12) | flags)
    _w64(m, INITIAL_CR3 + 8 * HARNESS_SLOT, HARNESS_ENTRY)


class _Vm:
    """One VM with one vCPU and RAM_SIZE bytes of guest memory."""

    def __init__(self, kvm: _Kvm, cpuid: list[list[int]]):
        self.kvm = kvm
        self.fd = fcntl.ioctl(kvm.fd, KVM_CREATE_VM, 0)
        self.mem = mmap.mmap(-1, RAM_SIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.mem[:] = _image()
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        fcntl.ioctl(self.fd, KVM_SET_USER_MEMORY_REGION, struct.pack("<IIQQQ", 0, 0, 0, RAM_SIZE, addr))
        self.cpu = fcntl.ioctl(self.fd, KVM_CREATE_VCPU, 0)
        self.run_mm = mmap.mmap(self.cpu, kvm.run_size, prot=mmap.PROT_READ | mmap.PROT_WRITE,
                                flags=mmap.MAP_SHARED)
        b = struct.pack("<II", len(cpuid), 0) + b"".join(struct.pack("<7I12x", *e) for e in cpuid)
        fcntl.ioctl(self.cpu, KVM_SET_CPUID2, bytearray(b), True)   # over 1 KiB: must be mutable
        self.sregs = bytearray(fcntl.ioctl(self.cpu, KVM_GET_SREGS, bytes(312)))
        self._init_segments()

    def close(self) -> None:
        if self.cpu >= 0:
            self.run_mm.close()
            os.close(self.cpu)
            os.close(self.fd)
            self.cpu = self.fd = -1
            try:
                self.mem.close()      # 32 MiB: do not wait for the collector
            except BufferError:       # a view of guest memory is still alive somewhere
                pass

    def _seg(self, name: str, **kw: int) -> None:
        f = dict(base=0, limit=0xFFFFFFFF, sel=0, type=3, present=1, dpl=0, db=1, s=1, l=0, g=1, avl=0,
                 unusable=0)
        f.update(kw)
        _SEG.pack_into(self.sregs, _SEG_OFF[name], f["base"], f["limit"], f["sel"], f["type"], f["present"],
                       f["dpl"], f["db"], f["s"], f["l"], f["g"], f["avl"], f["unusable"])

    def _init_segments(self) -> None:
        self._seg("cs", sel=KCS, type=11, db=0, l=1)
        for s in ("ds", "es", "fs", "gs", "ss"):
            self._seg(s, sel=KDS)
        self._seg("tr", base=PHYS + TSS, limit=0x67, sel=TSSSEL, type=11, s=0, g=0)
        self._seg("ldt", type=2, s=0, present=0, unusable=1, limit=0, g=0)
        struct.pack_into("<QH", self.sregs, 192, PHYS + GDT, 0x3F)
        struct.pack_into("<QH", self.sregs, 208, PHYS + IDT, 0xFFF)

    def set_control(self, cr0: int, cr3: int, cr4: int, efer: int) -> None:
        """KVM_SET_SREGS with CPL 0 segments; OSError (EINVAL) if KVM refuses the combination."""
        self._init_segments()
        struct.pack_into("<5Q", self.sregs, 224, cr0, 0, cr3, cr4, 0)
        struct.pack_into("<Q", self.sregs, 264, efer)
        fcntl.ioctl(self.cpu, KVM_SET_SREGS, bytes(self.sregs))

    def control(self) -> dict[str, int]:
        b = fcntl.ioctl(self.cpu, KVM_GET_SREGS, bytes(312))
        cr0, cr2, cr3, cr4, _cr8, efer = struct.unpack_from("<6Q", b, 224)
        return dict(cr0=cr0, cr2=cr2, cr3=cr3, cr4=cr4, efer=efer)

    def get_regs(self) -> dict[str, int]:
        return dict(zip(_REGS, struct.unpack("<18Q", fcntl.ioctl(self.cpu, KVM_GET_REGS, bytes(144)))))

    def set_regs(self, **kw: int) -> None:
        r = dict.fromkeys(_REGS, 0)
        r.update(rflags=2, rsp=KTOP, r14=PHYS + SCRATCH, r15=code().fatal)
        r.update(kw)
        fcntl.ioctl(self.cpu, KVM_SET_REGS, struct.pack("<18Q", *(r[n] for n in _REGS)))

    def run(self, timeout: float) -> int:
        """KVM_RUN until the guest exits; the exit reason.  A guest that runs longer than
        ``timeout`` seconds is interrupted (SIGALRM; KVM_RUN returns EINTR) and raises _GuestTimeout."""
        timer = timeout > 0 and threading.current_thread() is threading.main_thread()
        if timer:
            old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            fcntl.ioctl(self.cpu, KVM_RUN, 0)
        except _GuestTimeout:
            raise
        except InterruptedError:
            raise _GuestTimeout() from None
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        return struct.unpack_from("<I", self.run_mm, 8)[0]

    def internal_error(self) -> str:
        sub, n = struct.unpack_from("<II", self.run_mm, 32)
        data = struct.unpack_from(f"<{min(n, 16)}Q", self.run_mm, 40) if n else ()
        return f"suberror {sub}" + (f", data {' '.join(hex(x) for x in data)}" if data else "")

    def r64(self, pa: int) -> int:
        return struct.unpack_from("<Q", self.mem, pa)[0]


def _on_alarm(signum: int, frame: Any) -> None:
    raise _GuestTimeout()
