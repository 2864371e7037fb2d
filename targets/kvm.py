"""Target ``kvm``: Linux KVM's MMU, judged through tiny long-mode guests on /dev/kvm.

What answers is KVM's own code, not the CPU's page walker: guest code at CPL 0
runs in KVM's instruction emulator, whose every memory access goes through the
software walker (``paging64_walk_addr_generic`` and ``permission_fault`` in
arch/x86/kvm/mmu/paging_tmpl.h); guest code at CPL 3 runs natively on KVM's
shadow page tables, which KVM builds from the same walker and keeps in sync by
write-protecting guest page-table pages (``mmu_pte_write``) or by letting them go
unsync until the guest invalidates.  Each access outcome carries the path that
produced it in ``detail["path"]``: ``cpl0-emulator`` or ``cpl3-shadow``.

A program is compiled into guest code and run in as few ``KVM_RUN`` rounds as
possible (one per stretch between ``boot`` calls, which load CR0/CR4/EFER with
``KVM_SET_SREGS``).  Every paging entry is written by a guest store at CPL 0, so
KVM sees it the way it sees a guest kernel's stores; the host never writes into
live tables, because the shadow MMU would not notice (a stale shadow entry then
survives INVLPG and CR3 loads).  Between programs the entries a program wrote
are put back to the pattern the same way, by guest stores, and the next program
starts with a CR3 load.

Guest physical layout (the harness owns the first MiB, see ``memspec.calls_hw``)::

    0x1000 GDT   0x2000 IDT   0x3000 TSS   0x4000 vector stubs   0x5000 handlers
    0x6000 user snippets (U/S=1)   0x7000 user stack (U/S=1)   0x8000 kernel stack
    0x9000 scratch   0xA000.. the harness's PDPT, PD, PT
    0x10000..0x4FFFF compiled program code   0x50000..0x8FFFF one result slot per call

All of RAM is mapped at ``PHYS`` (root slot 511), so the harness reaches any
table by its physical address; the harness's code, IDT and stacks live there too.
An exception handler writes the vector, error code, CR2, RIP and CS of a fault
into the current call's slot (``r14``) and resumes at the next call (``r15``).
"""

from __future__ import annotations

import bisect
import ctypes
import errno as _errno
import fcntl
import mmap
import os
import re
import signal
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, INITIAL_CR3, RAM_SIZE
from memspec.consts import CREG
from memspec.errors import SessionFailed, TargetError
from memspec.program import Call, Program, Ref, eval_args
from memspec.records import OK, Observation, Outcome, RunResult, RunStatus

from .base import Session, Target

# --- /dev/kvm ioctls (include/uapi/linux/kvm.h) ------------------------------

_KVMIO = 0xAE


def _io(n: int) -> int:
    return (_KVMIO << 8) | n


def _iow(n: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (_KVMIO << 8) | n


def _ior(n: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (_KVMIO << 8) | n


def _iowr(n: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (_KVMIO << 8) | n


KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, 8)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, 32)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, 144)
KVM_SET_REGS = _iow(0x82, 144)
KVM_GET_SREGS = _ior(0x83, 312)
KVM_SET_SREGS = _iow(0x84, 312)
KVM_SET_CPUID2 = _iow(0x90, 8)

EXIT_MMIO, EXIT_HLT, EXIT_SHUTDOWN, EXIT_FAIL_ENTRY, EXIT_INTR, EXIT_INTERNAL_ERROR = 6, 5, 8, 9, 10, 17
EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 4: "DEBUG", 5: "HLT", 6: "MMIO", 8: "SHUTDOWN",
              9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR", 24: "SYSTEM_EVENT"}

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
ERRCODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
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


def _q(v: int) -> bytes:
    return struct.pack("<Q", v & U64)


def _d(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


# A few x86-64 encodings, by name (Intel SDM Vol. 2).
def mov_r14(v: int) -> bytes: return b"\x49\xbe" + _q(v)
def mov_r15(v: int) -> bytes: return b"\x49\xbf" + _q(v)
def mov_rbx(v: int) -> bytes: return b"\x48\xbb" + _q(v)
def mov_rax(v: int) -> bytes: return b"\x48\xb8" + _q(v)
def store_abs(addr: int) -> bytes: return b"\x48\xa3" + _q(addr)          # mov [moffs64], rax
def load_abs(addr: int) -> bytes: return b"\x48\xa1" + _q(addr)           # mov rax, [moffs64]


LOAD_RBX = b"\x48\x8b\x03"            # mov rax, [rbx]
STORE_CC_RBX = b"\xc6\x03\xcc"        # mov byte [rbx], 0xcc
# A write: `xor ecx, ecx; lock xadd [rbx], rcx` is a write access (faults report W = 1) that
# leaves memory as it was and hands back the qword; then the byte 0xCC is stored through the
# same translation, and rax = that qword with its low byte 0xCC.  No load follows the store:
# a store that changes an entry of its own walk (a self-referencing table) may make a later
# access fault (SDM §4.10.4.2 lets the processor use either the old or the new entry).
WRITE_RBX = (b"\x31\xc9" b"\xf0\x48\x0f\xc1\x0b" + STORE_CC_RBX
             + b"\x48\x89\xc8" b"\xb0\xcc")
CALL_RBX = b"\xff\xd3"
INVLPG_RBX = b"\x0f\x01\x3b"
MOV_CR3_RAX, MOV_CR4_RAX, MOV_CR0_RAX = b"\x0f\x22\xd8", b"\x0f\x22\xe0", b"\x0f\x22\xc0"
MOV_RAX_CR3 = b"\x0f\x20\xd8"
WRMSR = b"\x0f\x30"
WRPKRU = b"\x0f\x01\xef"
INVPCID_RAX_RBX = b"\x66\x0f\x38\x82\x03"
IRETQ = b"\x48\xcf"
HLT = b"\xf4"
STATUS_RETURNED = b"\x49\xc7\x06" + _d(ST_RETURNED)    # mov qword [r14], 2
FLAGS_CLEAN = b"\x6a\x02\x9d"         # push 2; popfq (AC = 0 again)
STAC_CLAC = b"\x0f\x01\xcb\x0f\x01\xca"


def _flags_ac() -> bytes:
    return b"\x68" + _d(0x40002) + b"\x9d"     # push 0x40002; popfq


# --- host side of the VM -----------------------------------------------------------

_SEG = struct.Struct("<QIHBBBBBBBBBx")
_SEG_OFF = {"cs": 0, "ds": 24, "es": 48, "fs": 72, "gs": 96, "ss": 120, "tr": 144, "ldt": 168}
_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
         "r14", "r15", "rip", "rflags")


class KvmUnavailable(TargetError):
    """/dev/kvm cannot be used here; the message says why."""


class _GuestTimeout(Exception):
    pass


class _Refused(Exception):
    """A call this KVM cannot be judged on (the message says why)."""


def _ioctl(fd: int, req: int, buf: bytes | bytearray | int = 0) -> tuple[int, bytearray | None]:
    if isinstance(buf, int):
        return fcntl.ioctl(fd, req, buf), None
    b = bytearray(buf)
    r = fcntl.ioctl(fd, req, b, True)
    return r, b


def kvm_status() -> str | None:
    """None when /dev/kvm can run guests here, else the reason it cannot."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm cannot be opened: {e.strerror} ({_errno.errorcode.get(e.errno, e.errno)})"
    try:
        api = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if api != 12:
            return f"/dev/kvm speaks API version {api}, not 12"
    except OSError as e:
        return f"KVM_GET_API_VERSION failed: {e.strerror}"
    finally:
        os.close(fd)
    return None


class _Kvm:
    """The /dev/kvm system fd and what it reports (shared by every VM of a process)."""

    _shared: "_Kvm | None" = None

    def __init__(self) -> None:
        why = kvm_status()
        if why:
            raise KvmUnavailable(why)
        self.fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        self.run_size = fcntl.ioctl(self.fd, KVM_GET_VCPU_MMAP_SIZE, 0)
        n = 256
        _, b = _ioctl(self.fd, KVM_GET_SUPPORTED_CPUID, struct.pack("<II", n, 0) + bytes(40 * n))
        count = struct.unpack_from("<I", b)[0]
        self.cpuid = [list(struct.unpack_from("<7I", b, 8 + 40 * i)) for i in range(count)]

    @classmethod
    def get(cls) -> "_Kvm":
        if cls._shared is None:
            cls._shared = _Kvm()
        return cls._shared

    def leaf(self, fn: int, idx: int = 0) -> list[int] | None:
        for e in self.cpuid:
            if e[0] == fn and (e[1] == idx or not e[2] & 1):
                return e
        return None


def guest_cpuid(kvm: _Kvm) -> list[list[int]]:
    """KVM's supported CPUID, plus the bits KVM implements but does not advertise (SMEP, SMAP):
    without CPUID.7.EBX[7] / [20] a MOV to CR4 setting SMEP / SMAP raises #GP (kvm_is_valid_cr4)."""
    ents = [list(e) for e in kvm.cpuid]
    for e in ents:
        if e[0] == 7 and e[1] == 0:
            e[4] |= (1 << 7) | (1 << 20)
    return ents


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
    common = HANDLERS
    for v in range(256):
        stub = STUBS + 16 * v
        code = b"" if v in ERRCODE_VECTORS else b"\x6a\x00"       # push 0 (no error code)
        code += b"\x68" + _d(v)                                   # push vector
        code += b"\xe9" + struct.pack("<i", common - (stub + len(code) + 5))
        m[stub:stub + len(code)] = code
        handler = PHYS + stub
        dpl = 3 if v == 3 else 0           # INT3 from CPL 3: a fetch of the pattern succeeded
        _w64(m, IDT + 16 * v, (handler & 0xFFFF) | (KCS << 16) | ((0x8E00 | dpl << 13) << 32)
             | (((handler >> 16) & 0xFFFF) << 48))
        _w64(m, IDT + 16 * v + 8, handler >> 32)
    record = (b"\x49\x89\x46\x20"           # mov [r14+32], rax  (what a CPL 3 snippet loaded)
              b"\x58"                       # pop rax            (vector)
              b"\x0d\x00\x01\x00\x00"       # or eax, 0x100
              b"\x49\x89\x06"               # mov [r14], rax
              b"\x58"                       # pop rax            (error code)
              b"\x49\x89\x46\x10"           # mov [r14+16], rax
              b"\x48\x8b\x04\x24"           # mov rax, [rsp]     (RIP)
              b"\x49\x89\x46\x08"           # mov [r14+8], rax
              b"\x0f\x20\xd0"               # mov rax, cr2
              b"\x49\x89\x46\x18"           # mov [r14+24], rax
              b"\x48\x8b\x44\x24\x08"       # mov rax, [rsp+8]   (CS)
              b"\x48\xc1\xe0\x10"           # shl rax, 16
              b"\x49\x09\x06"               # or [r14], rax
              + b"\x48\xbc" + _q(KTOP)      # mov rsp, KTOP
              + b"\x41\xff\xe7")            # jmp r15
    m[common:common + len(record)] = record
    m[HANDLERS + 0x300] = 0xF4             # FATAL: where a fault in the harness's own code resumes
    for op, code in USER_SNIPPETS.items():
        m[UCODE + 0x40 * op:UCODE + 0x40 * op + len(code)] = code
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


FATAL = PHYS + HANDLERS + 0x300
READ, WRITE, EXEC = 0, 1, 2
# A CPL 3 snippet ends in HLT, which raises #GP(0) at CPL 3: the way back to the kernel
# (kvm-pvm answers `int n` from CPL 3 with #UD).  The handler keeps rax in the slot.
USER_SNIPPETS = {
    READ: LOAD_RBX + HLT,
    WRITE: WRITE_RBX + HLT,
    EXEC: CALL_RBX + HLT,                    # only reached if the fetched code returns
}
USER_DONE = {op: PHYS + UCODE + 0x40 * op + len(code) - 1 for op, code in USER_SNIPPETS.items()}


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
        r.update(rflags=2, rsp=KTOP, r14=PHYS + SCRATCH, r15=FATAL)
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


# --- kernel log (KVM's warnings are findings too) ------------------------------------

class KernelLog:
    """New lines of the kernel log (/dev/kmsg) that mention KVM, when the log is readable."""

    WORDS = ("kvm", "mmu", "WARNING", "BUG")
    # lines kvm-pvm prints for events the run already reports as an exit or an outcome
    # (an emulation failure, a triple fault): kept, but no finding by themselves
    ROUTINE = ("INTERNAL_ERROR in batch emul", "INTERNAL_ERROR after native exit", "triple fault delivering",
               "kvm-pvm:  D nent=", "kvm-pvm: loaded", "supports paging only in long mode",
               "trace dump vcpu", "kvm-pvm: deliver[")

    def __init__(self) -> None:
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = -1

    @property
    def readable(self) -> bool:
        return self.fd >= 0

    def new_lines(self) -> list[str]:
        out: list[str] = []
        while self.fd >= 0:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == _errno.EPIPE:      # overwritten records: go on with the next
                    continue
                break
            if not rec:
                break
            text = rec.decode("utf-8", "replace").split(";", 1)[-1].strip()
            other = re.search(r"\bpid (\d+)", text)
            if other and int(other.group(1)) != os.getpid():
                continue          # kvm-pvm names the process sometimes: another VMM's line
            if any(w in text for w in self.WORDS) and "__vm_enough_memory" not in text:
                out.append(text)
        return out


# --- compiling calls into guest code -----------------------------------------------

@dataclass
class _Compiled:
    """One call in a chunk: where its code starts, its slot, and how to read its outcome."""

    index: int
    kind: str            # "const" (answered without running), "none", "value", "access", "fault"
    start: int = 0
    slot: int = 0
    const: Outcome | None = None
    addr: int = 0
    op: int = 0
    cpl: int = 0
    resume_at: int = 0
    end: int = 0


@dataclass
class _Chunk:
    code: bytearray = field(default_factory=bytearray)
    calls: list[_Compiled] = field(default_factory=list)
    slots: int = 0
    descriptors: list[tuple[int, bytes]] = field(default_factory=list)
    ac_dirty: bool = False
    unemulated: list[int] = field(default_factory=list)    # RIPs KVM's emulator gave up on
    mmio: list[int] = field(default_factory=list)          # guest-physical addresses outside RAM touched

    def full(self) -> bool:
        return len(self.code) > CODE_END - CODE - 256 or self.slots >= NSLOTS - 1


def _canonical(la: int) -> bool:
    hi = la >> 47
    return hi == 0 or hi == (1 << 17) - 1


class _Machine:
    """The vCPU's architectural state as the harness drives it (what the model calls the CPU)."""

    def __init__(self, kvm: _Kvm, features: dict[str, Any], timeout: float, log: KernelLog):
        self.kvm = kvm
        self.features = features
        self.timeout = timeout
        self.log = log
        self.cpuid = guest_cpuid(kvm)
        self.vm: _Vm | None = None
        self.dirty: set[int] = set()         # qwords a program changed (set_pte, root[511])
        self.maxphy = int(features.get("maxphyaddr", 48))
        self.cr3 = INITIAL_CR3

    # -- lifecycle --

    def fresh(self) -> None:
        if self.vm is not None:
            self.vm.close()
        self.vm = _Vm(self.kvm, self.cpuid)
        self.dirty.clear()
        self.broken = False

    def discard(self) -> None:
        if self.vm is not None:
            self.vm.close()
        self.vm = None
        self.broken = False

    broken = False

    def initial_mode(self) -> tuple[int, int, int]:
        return (CR0_PG | CR0_PE | CR0_WP, CR4_PAE,
                EFER_LME | EFER_LMA | (EFER_NXE if self.features.get("nx", True) else 0))

    def start_program(self, fresh: bool = False) -> None:
        """Bring the VM to the state every program starts in: the initial mode and root, the
        pattern everywhere the last program wrote (put back by guest stores), the TLB flushed."""
        if fresh or self.vm is None or self.broken or not self._harness_intact():
            self.fresh()
        assert self.vm is not None
        cr0, cr4, efer = self.initial_mode()
        self.vm.set_control(cr0, INITIAL_CR3, cr4, efer)
        self.cr3 = INITIAL_CR3
        self.cr4_pke = False
        chunk = _Chunk()
        chunk.code += mov_rax(INITIAL_CR3) + MOV_CR3_RAX
        for pa in sorted(self.dirty):
            chunk.code += mov_rax((pa << 8) | 0xCC if pa != INITIAL_CR3 + 8 * HARNESS_SLOT else HARNESS_ENTRY)
            chunk.code += store_abs(PHYS + pa)
            if chunk.full():
                self._run_plain(chunk)
                chunk = _Chunk()
        chunk.code += mov_rax(INITIAL_CR3) + MOV_CR3_RAX
        self._run_plain(chunk)
        self.dirty.clear()

    def _harness_intact(self) -> bool:
        assert self.vm is not None
        img = _image()
        return (all(self.vm.mem[pg:pg + 4096] == img[pg:pg + 4096] for pg in STATIC_PAGES)
                and self.vm.r64(INITIAL_CR3 + 8 * HARNESS_SLOT) == HARNESS_ENTRY)

    def _run_plain(self, chunk: _Chunk) -> None:
        """Run harness-only code; anything but a clean halt means the harness itself broke."""
        status, msg, _ = self.run_chunk(chunk)
        if status is not RunStatus.OK:
            self.discard()
            raise RuntimeError(f"kvm harness: resetting the guest failed: {msg}")

    # -- running --

    def run_chunk(self, chunk: _Chunk) -> tuple[RunStatus, str, int]:
        """Run compiled code; (status, message, index of the call that was running if not OK)."""
        vm = self.vm
        assert vm is not None
        code = bytes(chunk.code) + HLT
        end = PHYS + CODE + len(code)
        vm.mem[CODE:CODE + len(code)] = code
        vm.mem[SLOTS:SLOTS + SLOT_SIZE * max(chunk.slots, 1)] = bytes(SLOT_SIZE * max(chunk.slots, 1))
        for pa, desc in chunk.descriptors:
            vm.mem[pa:pa + len(desc)] = desc
        vm.set_regs(rip=PHYS + CODE)
        by_slot = {c.slot: c for c in chunk.calls if c.kind in ("access", "fault")}
        resumes = 0
        while True:
            try:
                exit_reason = vm.run(self.timeout)
            except _GuestTimeout:
                at = self._where(chunk)
                self.broken = True
                return RunStatus.HANG, f"the guest did not halt within {self.timeout:g} s (KVM_RUN interrupted)", at
            except OSError as e:
                at = self._where(chunk)
                self.broken = True
                return RunStatus.ERROR, f"KVM_RUN failed: {e.strerror}", at
            if exit_reason == EXIT_MMIO and resumes < 64 * (chunk.slots + 1):
                # an access reached guest-physical memory outside RAM: no device answers, so a
                # read returns all ones (as an unclaimed bus read does) and a write is dropped
                phys, _data, size, is_write = struct.unpack_from("<Q8sIB", vm.run_mm, 32)
                if not is_write:
                    vm.run_mm[40:48] = b"\xff" * 8
                chunk.mmio.append(phys)
                resumes += 1
                continue
            if exit_reason != EXIT_INTERNAL_ERROR or resumes > 64 * (chunk.slots + 1):
                break
            if not self._skip_unemulated(chunk, by_slot):
                break
            resumes += 1
        if exit_reason == EXIT_HLT:
            rip = vm.get_regs()["rip"]
            if rip == end:
                if not self._harness_intact():
                    # code the program made the guest execute (paging entries fetched as
                    # instructions) overwrote the harness: later outcomes would be meaningless
                    self.broken = True
                    return (RunStatus.REFUSED, "the program's accesses overwrote the harness's own memory "
                            "(guest-physical memory below 1 MiB, which the model does not judge either)", -1)
                return RunStatus.OK, "", -1
            at = self._where(chunk)
            self.broken = True
            regs = vm.get_regs()
            cc = by_slot.get((regs["r14"] - PHYS - SLOTS) // SLOT_SIZE)
            if cc is not None and cc.kind == "access" and cc.op == EXEC and rip != FATAL + 1:
                # the fetch reached code that is not the pattern's INT3 (the harness's own pages,
                # or paging entries), which halted: the model does not judge that either
                return (RunStatus.REFUSED, f"the fetch at {cc.addr:#x} ran code outside the pattern, which "
                        f"halted at RIP {rip:#x}", cc.index)
            where = "in the harness's fault path (a fault in the harness's own code)" if rip == FATAL + 1 \
                else f"at RIP {rip:#x}"
            return RunStatus.CRASH, f"the guest halted {where}, not at the end of its code", at
        at = self._where(chunk)
        name = EXIT_NAMES.get(exit_reason, str(exit_reason))
        if exit_reason == EXIT_SHUTDOWN:
            msg = "KVM_EXIT_SHUTDOWN: the guest triple-faulted"
        elif exit_reason == EXIT_INTERNAL_ERROR:
            msg = f"KVM_EXIT_INTERNAL_ERROR ({vm.internal_error()})"
        else:
            msg = f"unexpected exit KVM_EXIT_{name}"
        self.broken = True
        return RunStatus.CRASH, msg, at

    def _skip_unemulated(self, chunk: _Chunk, by_slot: dict[int, "_Compiled"]) -> bool:
        """KVM_EXIT_INTERNAL_ERROR (suberror 1: the emulator cannot emulate an instruction) in the
        instruction a call is about: record it as that call's outcome and resume at the next call.
        A fetch whose target bytes KVM fetched but could not emulate (kvm-pvm does not emulate
        INT3 at CPL 0) passed its permission checks: that is the fetch's outcome."""
        vm = self.vm
        assert vm is not None
        sub = struct.unpack_from("<I", vm.run_mm, 32)[0]
        regs = vm.get_regs()
        slot = (regs["r14"] - PHYS - SLOTS) // SLOT_SIZE
        cc = by_slot.get(slot)
        if sub != 1 or cc is None or (regs["r14"] - PHYS - SLOTS) % SLOT_SIZE:
            return False
        rip = regs["rip"]
        if cc.kind == "access" and cc.op == EXEC and rip == cc.addr:
            # At CPL 0 KVM fetched the bytes and cannot emulate them (INT3); at CPL 3 the walk
            # succeeded and the page is guest-physical memory outside RAM, which KVM cannot
            # execute from.  Either way the fetch passed every paging check.
            status = ST_FETCHED
        elif PHYS + cc.start <= rip < PHYS + cc.end:
            status = ST_UNEMULATED
        else:
            return False
        struct.pack_into("<QQ", vm.mem, SLOTS + SLOT_SIZE * slot, status, rip)
        chunk.unemulated.append(rip)
        vm.set_regs(rip=regs["r15"], r14=regs["r14"], r15=regs["r15"])
        return True

    def _where(self, chunk: _Chunk) -> int:
        """The index of the call whose code the vCPU was in (or last resumed from)."""
        try:
            regs = self.vm.get_regs() if self.vm else None
        except OSError:
            regs = None
        if regs is None:
            return -1
        starts = [c.start for c in chunk.calls if c.kind != "const"]
        idx = [c.index for c in chunk.calls if c.kind != "const"]
        for addr in (regs["rip"], regs["r15"] - 1):
            off = addr - PHYS
            if CODE <= off < CODE + len(chunk.code) and starts:
                k = bisect.bisect_right(starts, off) - 1
                if k >= 0:
                    return idx[k]
        return -1

    def read_slot(self, slot: int) -> tuple[int, int, int, int, int]:
        assert self.vm is not None
        return struct.unpack_from("<5Q", self.vm.mem, SLOTS + SLOT_SIZE * slot)

    # -- compiling --

    def _slot(self, chunk: _Chunk) -> int:
        s = chunk.slots
        chunk.slots += 1
        return s

    def _guard(self, chunk: _Chunk, cc: _Compiled) -> None:
        """r14 = this call's slot, r15 = where the next call starts (patched after the body)."""
        cc.slot = self._slot(chunk)
        chunk.code += mov_r14(PHYS + SLOTS + SLOT_SIZE * cc.slot)
        cc.resume_at = len(chunk.code) + 2   # the imm64 of mov r15
        chunk.code += mov_r15(0)

    def _patch_resume(self, chunk: _Chunk, cc: _Compiled) -> None:
        struct.pack_into("<Q", chunk.code, cc.resume_at, PHYS + CODE + len(chunk.code))

    def compile(self, chunk: _Chunk, index: int, name: str, args: tuple[int, ...]) -> _Compiled:
        cc = _Compiled(index, "none", start=CODE + len(chunk.code))
        if chunk.ac_dirty:
            chunk.code += FLAGS_CLEAN
            chunk.ac_dirty = False
            cc.start = CODE + len(chunk.code)
        getattr(self, "_c_" + name)(chunk, cc, *args)
        cc.end = CODE + len(chunk.code)
        chunk.calls.append(cc)
        return cc

    def _const(self, cc: _Compiled, o: Outcome) -> None:
        cc.kind, cc.const = "const", o

    def _table_ok(self, table: int, idx: int) -> bool:
        return table % 4096 == 0 and HARNESS_LOW <= table < RAM_SIZE and 0 <= idx < HARNESS_SLOT

    def _c_set_pte(self, chunk: _Chunk, cc: _Compiled, table: int, idx: int, frame: int, flags: int) -> None:
        if not self._table_ok(table, idx) or not 0 <= frame | flags <= U64:
            return self._const(cc, EINVAL)
        pa = table + 8 * idx
        chunk.code += mov_rax(frame | flags) + store_abs(PHYS + pa)
        self.dirty.add(pa)

    def _c_read_pte(self, chunk: _Chunk, cc: _Compiled, table: int, idx: int) -> None:
        if not self._table_ok(table, idx):
            return self._const(cc, EINVAL)
        cc.kind, cc.slot = "value", self._slot(chunk)
        chunk.code += load_abs(PHYS + table + 8 * idx) + store_abs(PHYS + SLOTS + SLOT_SIZE * cc.slot + 8)

    def _c_mov_cr3(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        pcide = False      # CR4.PCIDE can never be set on this KVM (see the feature probe)
        v = value & ~CR3_NOFLUSH if pcide else value
        root = v & ((1 << self.maxphy) - 1) & ~0xFFF
        rsvd = v >> self.maxphy
        if not rsvd and not HARNESS_LOW <= root < RAM_SIZE:
            return self._const(cc, EINVAL)
        if HARNESS_LOW <= root < RAM_SIZE:
            chunk.code += mov_rax(HARNESS_ENTRY) + store_abs(PHYS + root + 8 * HARNESS_SLOT)
            self.dirty.add(root + 8 * HARNESS_SLOT)
        cc.kind = "fault"
        self._guard(chunk, cc)
        chunk.code += mov_rax(value) + MOV_CR3_RAX
        self._patch_resume(chunk, cc)

    def _c_mov_cr4(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        self._simple(chunk, cc, mov_rax(value) + MOV_CR4_RAX)

    def _c_mov_cr0(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        self._simple(chunk, cc, mov_rax(value) + MOV_CR0_RAX)

    def _c_wrmsr_efer(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        self._simple(chunk, cc, b"\xb9" + _d(0xC0000080) + b"\xb8" + _d(value) + b"\xba" + _d(value >> 32) + WRMSR)

    def _c_invlpg(self, chunk: _Chunk, cc: _Compiled, addr: int) -> None:
        if _canonical(addr) and (addr >> 39) & 0x1FF == HARNESS_SLOT:
            return self._const(cc, EINVAL)
        # INVLPG at CPL 0 raises nothing (a non-canonical operand is a no-op): no fault guard
        chunk.code += mov_rbx(addr) + INVLPG_RBX

    def _c_invpcid(self, chunk: _Chunk, cc: _Compiled, kind: int, pcid: int, addr: int) -> None:
        # the harness's slot is off limits, as for INVLPG; the CPU's own checks (#UD, #GP) come first
        if self.features.get("invpcid") and kind == 0 and pcid <= 0xFFF and _canonical(addr) \
                and (addr >> 39) & 0x1FF == HARNESS_SLOT:
            return self._const(cc, EINVAL)
        cc.kind = "fault"
        self._guard(chunk, cc)
        desc = SLOTS + SLOT_SIZE * cc.slot + 16
        chunk.descriptors.append((desc, struct.pack("<QQ", pcid & U64, addr & U64)))
        chunk.code += mov_rax(kind) + mov_rbx(PHYS + desc) + INVPCID_RAX_RBX
        self._patch_resume(chunk, cc)

    def _c_wrpkru(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        # PKRU is 32 bits: a wider value is the program's mistake once CR4.PKE allows WRPKRU
        if value >> 32 and self.cr4_pke:
            return self._const(cc, EINVAL)
        self._simple(chunk, cc, b"\xb8" + _d(value) + b"\x31\xc9\x31\xd2" + WRPKRU)

    cr4_pke = False      # CR4.PKE as the last boot set it

    def _simple(self, chunk: _Chunk, cc: _Compiled, body: bytes) -> None:
        cc.kind = "fault"
        self._guard(chunk, cc)
        chunk.code += body
        self._patch_resume(chunk, cc)

    def _c_access(self, chunk: _Chunk, cc: _Compiled, la: int, op: int, cpl: int, ac: int) -> None:
        if la % 8 or op not in (READ, WRITE, EXEC) or cpl not in (0, 3) or ac not in (0, 1) or not 0 <= la <= U64:
            return self._const(cc, EINVAL)
        if _canonical(la) and (la >> 39) & 0x1FF == HARNESS_SLOT:
            return self._const(cc, EINVAL)
        if cpl == 3 and _canonical(la) and (la >> 39) & 0x1FF in self.features.get("cpl3_reserved_slots", ()):
            raise _Refused(f"CPL 3 access at {la:#x}: kvm-pvm reserves root slot {(la >> 39) & 0x1FF} for "
                           "itself while guest user code runs natively (every access there is a not-present #PF)")
        cc.kind, cc.addr, cc.op, cc.cpl = "access", la, op, cpl
        self._guard(chunk, cc)
        if cpl == 0:
            if ac:
                chunk.code += _flags_ac()
                chunk.ac_dirty = True
            chunk.code += mov_rbx(la)
            if op == READ:
                chunk.code += LOAD_RBX + store_abs(PHYS + SLOTS + SLOT_SIZE * cc.slot + 8)
            elif op == WRITE:
                chunk.code += WRITE_RBX + store_abs(PHYS + SLOTS + SLOT_SIZE * cc.slot + 8)
            else:
                chunk.code += CALL_RBX + STATUS_RETURNED
        else:
            # iretq to the CPL 3 snippet: SS, RSP, RFLAGS (AC as asked), CS, RIP
            chunk.code += mov_rbx(la) + b"\x6a" + bytes([UDS]) + mov_rax(UTOP) + b"\x50"
            chunk.code += b"\x68" + _d(0x40002 if ac else 0x2) + b"\x6a" + bytes([UCS])
            chunk.code += mov_rax(PHYS + UCODE + 0x40 * op) + b"\x50" + IRETQ
        self._patch_resume(chunk, cc)

    def observe(self) -> Observation:
        """Every qword of the frames the program wrote that no longer holds the pattern (A/D
        included), read from guest memory: what the hw checkpoint comparison reads."""
        import numpy as np
        assert self.vm is not None
        entries: list[tuple[int, int]] = []
        for frame in sorted({pa & ~0xFFF for pa in self.dirty}):
            got = np.frombuffer(self.vm.mem, dtype="<u8", count=512, offset=frame)
            pas = np.arange(frame, frame + 0x1000, 8, dtype=np.uint64)
            want = (pas << np.uint64(8)) | np.uint64(0xCC)
            # root[511] holding the harness's own entry is the harness's, not the program's
            entries += [(int(pas[i]), int(got[i])) for i in np.nonzero(got != want)[0]
                        if not (i == HARNESS_SLOT and int(got[i]) == HARNESS_ENTRY)]
        return Observation(extra=(("entries", tuple(entries)),))

    # -- reading outcomes --

    def outcome(self, cc: _Compiled) -> Outcome:
        if cc.kind == "const":
            assert cc.const is not None
            return cc.const
        if cc.kind == "none":
            return OK
        status, value, err, cr2, rax = self.read_slot(cc.slot)
        if cc.kind == "value":
            return Outcome(value=value)
        path = (("path", PATH_CPL3 if cc.cpl == 3 else PATH_CPL0),) if cc.kind == "access" else ()
        if status & ST_EXC:
            vec = status & 0xFF
            cs = status >> 16
            if cc.kind == "access" and cc.cpl == 3 and vec == 13 and value == USER_DONE[cc.op] and cs == UCS:
                if cc.op == EXEC:
                    return Outcome(detail=path + (("returned", 1),))
                return Outcome(value=rax, detail=path)
            if cc.kind == "access" and cc.op == EXEC and vec == 3 and value == cc.addr + 1:
                return Outcome(detail=path)           # the fetch ran the int3 of the pattern
            name = VEC_NAMES.get(vec, f"#V{vec}")
            if vec == 14:
                return Outcome(signal="#PF", detail=(("cr2", cr2), ("errcode", err)) + path)
            # as the qemu target reports them: the vector's name, no error code but a #PF's
            return Outcome(signal=name, detail=path + (("cs", cs),) * (cs not in (KCS, UCS)))
        if status == ST_FETCHED:
            why = "INT3 not emulated" if cc.cpl == 0 else "fetch from memory outside RAM not emulated"
            return Outcome(detail=path + (("kvm", f"fetch passed its checks; {why} (KVM_EXIT_INTERNAL_ERROR)"),))
        if status == ST_UNEMULATED:
            return Outcome(signal="KVM_EXIT_INTERNAL_ERROR", detail=path + (("kvm", "emulation failure, suberror 1"),))
        if cc.kind == "fault":
            return OK
        if cc.op == EXEC:
            return Outcome(detail=path + (("returned", 1),))
        if cc.cpl == 3:
            return Outcome(signal="#?", detail=path + (("status", status),))
        return Outcome(value=value, detail=path)

    # -- boot: KVM_SET_SREGS between chunks --

    def boot(self, cr0: int, cr4: int, efer: int) -> tuple[Outcome, str]:
        """(outcome, error message if KVM refused a combination the features allow)."""
        if not (cr0 & CR0_PG and cr0 & CR0_PE and cr4 & CR4_PAE and efer & EFER_LME):
            return EINVAL, ""        # kvm-pvm runs long mode only; the model refuses these too
        if cr4 & ~CR4_KNOWN or efer & ~EFER_KNOWN or cr4 & CR4_PCIDE and self.cr3 & 0xFFF:
            return EINVAL, ""
        need = ((CR4_LA57, "la57"), (CR4_PCIDE, "pcid"), (CR4_SMEP, "smep"), (CR4_SMAP, "smap"), (CR4_PKE, "pku"))
        if any(cr4 & bit and not self.features.get(f) for bit, f in need) or \
                efer & EFER_NXE and not self.features.get("nx"):
            return EINVAL, ""
        assert self.vm is not None
        try:
            self.vm.set_control(cr0, self.vm.control()["cr3"], cr4, efer | EFER_LMA)
        except OSError as e:
            return EINVAL, f"KVM_SET_SREGS refused CR0={cr0:#x} CR4={cr4:#x} EFER={efer | EFER_LMA:#x}: {e.strerror}"
        self.cr4_pke = bool(cr4 & CR4_PKE)
        return OK, ""


EINVAL = Outcome(value=-1, errno="EINVAL")


# --- the feature probe ----------------------------------------------------------------

FEATURES = ("nx", "smep", "smap", "smap_stac", "page1g", "pku", "la57", "pcid", "invpcid", "legacy32", "pae32")
FEATURE_NAMES = {
    "nx": "NX (EFER.NXE, XD bit)", "smep": "SMEP", "smap": "SMAP (implicit, EFLAGS.AC by POPF)",
    "smap_stac": "SMAP STAC/CLAC", "page1g": "1 GiB pages", "pku": "PKU (protection keys)",
    "la57": "LA57 (5-level paging)", "pcid": "PCID (CR4.PCIDE)", "invpcid": "INVPCID",
    "legacy32": "32-bit paging", "pae32": "PAE paging (legacy, not long mode)",
}

_PROBED: dict[str, Any] | None = None


def probe_features(kvm: _Kvm, timeout: float = 2.0) -> dict[str, Any]:
    """What this KVM offers, found by running guests (cached per process)."""
    global _PROBED
    if _PROBED is not None:
        return _PROBED
    m = _Machine(kvm, {"maxphyaddr": 48, "nx": True}, timeout, KernelLog())
    f: dict[str, Any] = {}
    leaf = kvm.leaf(0x80000008)
    f["maxphyaddr"] = (leaf[3] & 0xFF) if leaf else 36
    ext = kvm.leaf(0x80000001)
    f["nx"] = bool(ext and ext[6] >> 20 & 1)
    T, D4, P4, PT4 = 0x200000, 0x201000, 0x202000, 0x203000    # root, PDPT, PD, PT for la 0x405000

    def run(calls: list[tuple[str, tuple[int, ...]]], boot: tuple[int, int, int] | None = None) -> list[Outcome]:
        m.start_program(fresh=True)
        if boot is not None:
            try:
                m.vm.set_control(boot[0], INITIAL_CR3, boot[1], boot[2])
            except OSError:
                return [Outcome(value=-1, errno="EINVAL")]
        chunk = _Chunk()
        ccs = [m.compile(chunk, i, n, a) for i, (n, a) in enumerate(calls)]
        status, msg, _ = m.run_chunk(chunk)
        if status is not RunStatus.OK:
            return [Outcome(signal="crash", detail=(("why", msg),))] * max(len(calls), 1)
        return [m.outcome(c) for c in ccs]

    user = P | RW | US
    tables = [("set_pte", (T, 0, D4 | user, 0)), ("set_pte", (D4, 0, P4 | user, 0)), ("set_pte", (P4, 2, PT4 | user, 0)),
              ("mov_cr3", (T,))]
    leaf7 = [e for e in guest_cpuid(kvm) if e[0] == 7 and e[1] == 0]
    ebx7 = leaf7[0][4] if leaf7 else 0
    ecx7 = leaf7[0][5] if leaf7 else 0
    # SMEP: a supervisor fetch from a user page faults with P|I/D once CR4.SMEP is set
    r = run(tables + [("set_pte", (PT4, 5, 0x300000 | user, 0)), ("mov_cr4", (CR4_PAE | CR4_SMEP,)),
                      ("access", (0x405000, EXEC, 0, 0))])
    f["smep"] = bool(ebx7 >> 7 & 1) and r[-2].ok and r[-1].signal == "#PF" and dict(r[-1].detail)["errcode"] == 0x11
    r = run(tables + [("set_pte", (PT4, 5, 0x300000 | user, 0)), ("mov_cr4", (CR4_PAE | CR4_SMAP,)),
                      ("access", (0x405000, READ, 0, 0)), ("access", (0x405000, READ, 0, 1))])
    f["smap"] = bool(ebx7 >> 20 & 1) and r[-3].ok and r[-2].signal == "#PF" and r[-1].value is not None
    # STAC/CLAC: the instructions themselves (KVM's emulator may not implement them)
    m.start_program(fresh=True)
    chunk = _Chunk()
    chunk.code += STAC_CLAC
    status, msg, _ = m.run_chunk(chunk)
    f["smap_stac"] = status is RunStatus.OK
    if not f["smap_stac"]:
        f["smap_stac_why"] = msg
    # 1 GiB pages: a PDPTE with PS = 1 must map, not raise a reserved-bit fault
    r = run([("set_pte", (T, 0, D4 | user, 0)), ("set_pte", (D4, 1, 0 | user | PS, 0)), ("mov_cr3", (T,)),
             ("access", (0x40000000 + 0x300000, READ, 0, 0))])
    f["page1g"] = r[-1].value is not None
    r = run(tables + [("mov_cr4", (CR4_PAE | CR4_PKE,)), ("wrpkru", (0,))])
    f["pku"] = r[-2].ok and r[-1].ok
    r = run(tables + [("mov_cr4", (CR4_PAE | CR4_PCIDE,))])
    f["pcid"] = r[-1].ok
    r = run(tables + [("invpcid", (3, 0, 0))])
    f["invpcid"] = r[-1].ok
    cr0, cr4, efer = m.initial_mode()
    r = run([], boot=(cr0, cr4 | CR4_LA57, efer))
    f["la57"] = not r or r[0].ok and bool(ecx7 >> 16 & 1)
    if f["la57"]:
        f["la57"] = False     # the harness builds 4-level roots only; 5-level would need a PML5 slot
        f["la57_why"] = "KVM accepted CR4.LA57 but the harness does not build 5-level tables"
    # kvm-pvm keeps part of the upper half for itself while guest user code runs natively
    f["cpl3_reserved_slots"] = []
    for slot in (256, 257, 300, 510):
        r = run([("set_pte", (T, slot, D4 | user, 0)), ("set_pte", (D4, 0, P4 | user, 0)),
                 ("set_pte", (P4, 2, PT4 | user, 0)), ("set_pte", (PT4, 5, 0x300000 | user, 0)), ("mov_cr3", (T,)),
                 ("access", (0xFFFF << 48 | slot << 39 | 0x405000, READ, 3, 0))])
        if r[-1].value is None:
            f["cpl3_reserved_slots"].append(slot)
    f["legacy32"], f["pae32"] = _probe_legacy(kvm, m.cpuid, timeout)
    m.discard()
    _PROBED = f
    return f


def _probe_legacy(kvm: _Kvm, cpuid: list[list[int]], timeout: float) -> tuple[bool, bool]:
    """32-bit and PAE paging in protected mode: a read through a present PDE must not shut the VM down."""
    results = []
    for pae in (False, True):
        vm = _Vm(kvm, cpuid)
        try:
            gdt = 0x1000
            _w64(vm.mem, gdt + 8, 0x00CF9A000000FFFF)
            _w64(vm.mem, gdt + 16, 0x00CF92000000FFFF)
            vm.mem[0x5000:0x5003] = b"\x8b\x03\xf4"          # mov eax, [ebx]; hlt
            root = 0x100000
            if pae:
                struct.pack_into("<Q", vm.mem, root, 0x101000 | P)
                struct.pack_into("<Q", vm.mem, 0x101000, 0 | P | RW | PS)
            else:
                struct.pack_into("<I", vm.mem, root, 0 | P | RW | PS)
            s = vm.sregs
            _SEG.pack_into(s, _SEG_OFF["cs"], 0, 0xFFFFFFFF, 8, 11, 1, 0, 1, 1, 0, 1, 0, 0)
            for n in ("ds", "es", "fs", "gs", "ss"):
                _SEG.pack_into(s, _SEG_OFF[n], 0, 0xFFFFFFFF, 16, 3, 1, 0, 1, 1, 0, 1, 0, 0)
            _SEG.pack_into(s, _SEG_OFF["tr"], 0x3000, 0x67, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0)
            struct.pack_into("<QH", s, 192, gdt, 0x17)
            struct.pack_into("<5Q", s, 224, CR0_PG | CR0_PE | CR0_WP, 0, root, 0x20 if pae else 0x10, 0)
            struct.pack_into("<Q", s, 264, 0)
            fcntl.ioctl(vm.cpu, KVM_SET_SREGS, bytes(s))
            vm.set_regs(rip=0x5000, rbx=0x203000, rsp=0x8000, r14=0, r15=0)
            results.append(vm.run(timeout) == EXIT_HLT and vm.get_regs()["rip"] == 0x5003)
        except (OSError, _GuestTimeout):
            results.append(False)
        finally:
            vm.close()
    return results[0], results[1]


# --- the target ----------------------------------------------------------------------

class KvmTarget(Target):
    """Linux KVM's MMU (see the module docstring).  Options: ``fresh`` (a new VM per program)."""

    name = "kvm"
    layers = ("hw",)

    def __init__(self, timeout: float = 10.0, fresh: bool = False, **options: Any) -> None:
        super().__init__(timeout=timeout)
        self.fresh = fresh
        why = kvm_status()
        if why:
            raise KvmUnavailable(f"target 'kvm' is not available: {why}")
        self.kvm = _Kvm.get()
        self.features = probe_features(self.kvm)
        self.log = KernelLog()
        self.machine = _Machine(self.kvm, self.features, timeout, self.log)
        # KVM's kernel-log lines seen while programs ran (the last 1000); the facts hold this
        # very list, so a report written at the end of a run lists them
        self.kernel_log: list[str] = []

    # -- what the model needs, what is missing --

    def facts(self) -> dict[str, Any]:
        f = self.features
        return {
            "maxphyaddr": f["maxphyaddr"], "la57": f["la57"], "page1g": f["page1g"], "pcid": f["pcid"],
            "invpcid": f["invpcid"], "smep": f["smep"], "smap": f["smap"], "pku": f["pku"], "nx": f["nx"],
            "ram": RAM_SIZE, "harness_low": HARNESS_LOW, "harness_entry4": HARNESS_ENTRY,
            "harness_entry5": HARNESS_ENTRY, "strict_tlb": False,
            # the vCPU's CPUID enumerates no CET (MOV to CR4.CET raises #GP: suite/hw/20-cr4-reserved.mst)
            "cet": False,
            # root slots where a CPL 3 access cannot be staged (kvm-pvm keeps them for itself while
            # guest user code runs natively): generators give those slots CPL 0 accesses only
            "cpl3_reserved_slots": list(f.get("cpl3_reserved_slots", ())),
            "kvm_smap_stac": f["smap_stac"], "kvm_legacy32": f["legacy32"], "kvm_pae32": f["pae32"],
            "kvm_kernel_log_readable": self.log.readable, "kvm_kernel_log": self.kernel_log,
        }

    def unsupported(self) -> list[str]:
        out = [FEATURE_NAMES[k] for k in FEATURES if not self.features.get(k)]
        for slot in self.features.get("cpl3_reserved_slots", ()):
            out.append(f"CPL 3 accesses in root slot {slot} (reserved by kvm-pvm; such programs are refused)")
        return out

    # -- running --

    def run(self, program: Program, observe: str = "end") -> RunResult:
        m = self.machine
        outcomes: list[Outcome] = []
        env: dict[str, int] = {}
        why = self._refuse_statically(program)
        if why:
            return RunResult((), (), RunStatus.REFUSED, why)
        try:
            m.start_program(fresh=self.fresh)
        except (RuntimeError, OSError) as e:
            return RunResult((), (), RunStatus.ERROR, f"kvm harness could not start the program: {e}")
        calls = list(program.calls)
        i = 0
        while i < len(calls):
            chunk = _Chunk()
            pending: list[tuple[Call, _Compiled]] = []
            bound_here: set[str] = set()
            while i < len(calls):
                c = calls[i]
                if c.name == "boot":
                    break
                if any(isinstance(a, Ref) and a.name in bound_here for a in c.args) or chunk.full():
                    break
                try:
                    cc = m.compile(chunk, i, c.name, tuple(int(x) for x in eval_args(c, env)))
                except _Refused as e:
                    return self._finish(program, outcomes, RunStatus.REFUSED, f"call {i + 1} refused: {e}")
                pending.append((c, cc))
                if c.result:
                    bound_here.add(c.result)
                i += 1
            if pending:
                status, msg, at = m.run_chunk(chunk)
                if status is not RunStatus.OK:
                    for c, cc in pending:
                        if at >= 0 and cc.index < at:
                            outcomes.append(m.outcome(cc))
                    return self._finish(program, outcomes, status,
                                        f"{msg} (at call {at + 1 if at >= 0 else '?'})")
                for c, cc in pending:
                    o = m.outcome(cc)
                    outcomes.append(o)
                    if c.result and o.value is not None:
                        env[c.result] = o.value
            if i < len(calls) and calls[i].name == "boot":
                c = calls[i]
                o, err = m.boot(*(int(x) for x in eval_args(c, env)))
                if err:
                    return self._finish(program, outcomes, RunStatus.ERROR, f"call {i + 1}: {err}")
                outcomes.append(o)
                i += 1
        obs = ((len(outcomes) - 1, m.observe()),) if outcomes and observe != "none" and not m.broken else ()
        return self._finish(program, outcomes, RunStatus.OK, "", obs)

    def _refuse_statically(self, program: Program) -> str:
        """Refuse a program before running it if a call with literal arguments cannot be judged here."""
        reserved = self.features.get("cpl3_reserved_slots", ())
        if not reserved:
            return ""
        for i, c in enumerate(program.calls):
            if c.name != "access" or any(isinstance(a, Ref) for a in c.args):
                continue
            la, _op, cpl = (int(x) for x in eval_args(c, {})[:3])
            if cpl == 3 and _canonical(la) and (la >> 39) & 0x1FF in reserved:
                return (f"call {i + 1} refused: CPL 3 access at {la:#x}: kvm-pvm reserves root slot "
                        f"{(la >> 39) & 0x1FF} for itself while guest user code runs natively")
        return ""

    def _finish(self, program: Program, outcomes: list[Outcome], status: RunStatus, msg: str,
                observations: tuple[tuple[int, Observation], ...] = ()) -> RunResult:
        """The run's result; KVM's kernel-log lines from this program are kept, and any that no
        outcome already accounts for (an instruction reported as not emulated) is a finding."""
        lines = self.log.new_lines()
        self.kernel_log.extend(lines)
        del self.kernel_log[:-1000]
        # /dev/kmsg does not say which process a line is from: another KVM user running at the
        # same time can add lines.  Routine lines are kept in kernel_log; the rest (WARNING,
        # BUG, shadow-MMU complaints) make the run an error with the lines as its message.
        lines = [ln for ln in lines if not any(r in ln for r in KernelLog.ROUTINE)]
        if lines:
            if status is RunStatus.OK:
                status, msg = RunStatus.ERROR, "KVM logged during this program: " + " | ".join(lines[:4])
            else:
                msg += "; kernel log: " + " | ".join(lines[:4])
        return RunResult(tuple(outcomes), observations, status, msg)

    def session(self, layer: str = "hw") -> "KvmSession":
        return KvmSession(self)

    def close(self) -> None:
        self.machine.discard()


class KvmSession(Session):
    """One call at a time (state machines): each call is its own KVM_RUN on a live VM."""

    def __init__(self, target: KvmTarget):
        self.t = target
        self.m = target.machine
        self.n = 0
        self.refused = ""       # why the VM was given up after a refused call, if it was
        try:
            self.m.start_program(fresh=target.fresh)
        except (RuntimeError, OSError) as e:
            raise SessionFailed(RunStatus.ERROR, f"kvm harness could not start: {e}") from None

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        self.n += 1
        ints = tuple(int(a) for a in args)
        if (self.m.vm is None or self.m.broken) and self.refused:
            # a refusal (not KVM's failure) ended the VM: the rest of the session is not run either
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n} not run: the VM was given up after {self.refused}")
        if self.m.vm is None or self.m.broken:
            raise SessionFailed(RunStatus.ERROR, f"call {self.n}: the VM is gone after an earlier failure")
        if call.name == "boot":
            o, err = self.m.boot(*ints)
            if err:
                raise SessionFailed(RunStatus.ERROR, f"call {self.n}: {err}")
            return o
        chunk = _Chunk()
        try:
            cc = self.m.compile(chunk, 0, call.name, ints)
        except _Refused as e:
            # unsupported, not a failure: the state machine counts it and goes on without the step
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n} refused: {e}") from None
        if cc.kind == "const":
            return self.m.outcome(cc)
        status, msg, _ = self.m.run_chunk(chunk)
        if status is not RunStatus.OK:
            if status is RunStatus.REFUSED:
                self.refused = f"call {self.n} was refused ({msg})"
            raise SessionFailed(status, f"call {self.n}: {msg}")
        return self.m.outcome(cc)

    def observe(self) -> Observation:
        return self.m.observe() if self.m.vm is not None and not self.m.broken else Observation()


__all__ = ["KvmTarget", "KvmSession", "KvmUnavailable", "kvm_status", "probe_features", "FEATURE_NAMES",
           "PATH_CPL0", "PATH_CPL3", "HARNESS_ENTRY"]
