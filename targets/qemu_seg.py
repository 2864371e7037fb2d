"""QEMU's segmentation (unicorn 2.1.4): the ``qemu`` target's machines for the segmentation calls.

One unicorn CPU per mode, made on first use: ``UC_MODE_16`` (real-address mode),
``UC_MODE_32`` (protected mode, paging off) and ``UC_MODE_64`` (64-bit mode with an
identity map of the unit's RAM).  Each has ``SEG_RAM`` of guest RAM holding the
pattern of ``memspec.calls_hw`` above ``SEG_LOW``, and below it the harness: probe
code, the GDT (``SEG_HARNESS_GDT`` plus the program's descriptors), a stack and the
page tables.  Calls run real guest instructions, so QEMU's own checks decide:

* ``load_seg``: ``mov Sreg, ax`` at the asked CPL (QEMU's CPL is the hflags field,
  found by calibration: an IRET to CPL 3 and back by patching the saved context);
* ``seg_access``: ``mov``/``movzx`` (read) or ``xadd`` of 0 (write: the value read
  is written back), through DS ``[eax]``, ES/FS/GS with their prefix, and SS as
  ``[ebp]`` (the stack segment by default); 16-bit code uses the 0x66/0x67 prefixes;
* ``wrmsr_segbase``: ``wrmsr`` to IA32_FS_BASE / IA32_GS_BASE;
* ``set_desc``/``read_desc``/``lgdt``: the GDT in guest memory and GDTR.

Exceptions come through a ``UC_HOOK_INTR`` hook; their error code is read from the
saved CPU state at an offset found by calibration with loads whose #GP/#NP error
codes are known; the machine refuses to run if calibration fails.  unicorn has no
A20 gate (no port 0x92); ``SEG_REAL`` (A20 masked) runs on a 16-bit machine whose
QEMU ``a20_mask`` field (found by calibration: the one field whose masking makes
FFFF:8010 read physical 0x8000) has bit 20 cleared; without it, ``SEG_REAL`` is
unsupported (fact ``a20_gate``).
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from memspec.calls_hw import (SEG_CODE32, SEG_CODE64, SEG_DATA, SEG_GDT_ENTRIES, SEG_GDT_LIMIT, SEG_GDT_PROGRAM,
                              SEG_HARNESS_GDT, SEG_LOW, SEG_RAM)
from memspec.errors import TargetError
from memspec.records import Outcome

try:
    import unicorn as _uc
    from unicorn import x86_const as _x
except ImportError:  # pragma: no cover - reported by the qemu target
    _uc = None
    _x = None

OK = Outcome()
EINVAL = Outcome(value=-1, errno="EINVAL")
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
REAL, REAL_A20, PROTECTED, LONG = 0, 1, 2, 3
ES, CS, SS, DS, FS, GS = 0, 1, 2, 3, 4, 5
DATA_SREGS = (ES, SS, DS, FS, GS)
DESC_FLAGS = (1 << 12) | (1 << 15) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 23)
MSR_BASE = {FS: 0xC0000100, GS: 0xC0000101}
VECTORS = {6: "#UD", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF"}
WITH_CODE = (8, 10, 11, 12, 13, 14)

def emulate(uc: Any, start: int, end: int, count: int = 0) -> Outcome | None:
    """``emu_start`` with unicorn's own failures as outcomes (None when emulation ran to the end or
    into the exception hook): an invalid opcode ends emulation instead of reaching the hook, so it
    is #UD here; any other unicorn error is the harness's (#HARNESS) and leaves the CPU state dirty."""
    try:
        uc.emu_start(start, end, count=count)
    except _uc.UcError as e:
        if e.errno == _uc.UC_ERR_INSN_INVALID:
            return Outcome(signal="#UD")
        return Outcome(signal="#HARNESS", detail=(("error", str(e)),))
    return None


# the harness's pages (physical, below SEG_LOW)
CODE, GDT, STACK, PML4, PDPT, PD = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000
SEG_PREFIX = {ES: b"\x26", DS: b"", FS: b"\x64", GS: b"\x65", SS: b""}


def _probe_code(bits: int, sreg: int, op: int, size: int) -> bytes:
    """One instruction: read (``mov``/``movzx`` into EBX/RBX) or ``xadd`` of EBX (= 0) at sreg:offset,
    offset in EAX/RAX, or in EBP/RBP for SS (whose default segment is SS)."""
    modrm = b"\x5d\x00" if sreg == SS else b"\x18"
    pre = SEG_PREFIX[sreg] + (b"\x67" if bits == 16 else b"")
    o32 = b"\x66" if bits == 16 else b""            # a 32-bit operand in 16-bit code
    o16 = b"" if bits == 16 else b"\x66"            # a 16-bit operand in 32/64-bit code
    if op == 0:
        body = {1: o32 + b"\x0f\xb6", 2: o32 + b"\x0f\xb7", 4: o32 + b"\x8b", 8: b"\x48\x8b"}[size]
    else:
        body = {1: b"\x0f\xc0", 2: o16 + b"\x0f\xc1", 4: o32 + b"\x0f\xc1", 8: b"\x48\x0f\xc1"}[size]
    return pre + body + modrm


class CalibrationFailed(TargetError):
    pass


class SegMachine:
    """One unicorn CPU in one mode with the segmentation harness installed."""

    def __init__(self, mode: int, layout: dict[str, Any] | None = None, a20_field: int | None = None):
        if _uc is None:
            raise TargetError("the qemu target needs the unicorn package: pip install unicorn==2.1.4 "
                              "(from a memspec clone: pip install -e '.[qemu]')")
        self.mode = mode
        self.bits = 16 if mode in (REAL, REAL_A20) else 32 if mode == PROTECTED else 64
        uc_mode = {16: _uc.UC_MODE_16, 32: _uc.UC_MODE_32, 64: _uc.UC_MODE_64}[self.bits]
        self.uc = uc = _uc.Uc(_uc.UC_ARCH_X86, uc_mode)
        uc.mem_map(0, SEG_RAM)
        self._fill()
        self.slots: dict[tuple, tuple[int, int]] = {}
        self._install_code()
        self._write_gdt()
        self._setup_cpu()
        self.exc: int | None = None
        self.errcode = 0
        self.dirty = False
        self.cpl = 0
        self.ctx = uc.context_save()
        self.ctx_ptr = ctypes.cast(self.ctx.context, ctypes.c_void_p).value
        uc.hook_add(_uc.UC_HOOK_INTR, self._on_intr)
        self.layout = layout if layout is not None else self._calibrate()
        self._verify()
        if a20_field is not None:
            # mask address bit 20 before any data access, so no TLB entry was filled without it
            uc.context_update(self.ctx)
            ctypes.c_int32.from_address(self.ctx_ptr + a20_field).value = ~(1 << 20)
            uc.context_restore(self.ctx)
        self.clean = uc.context_save()

    # -- set-up -----------------------------------------------------------------------------------

    def _fill(self) -> None:
        import numpy as np
        pa = np.arange(SEG_LOW, SEG_RAM, 8, dtype=np.uint64)
        self.uc.mem_write(SEG_LOW, ((pa << np.uint64(8)) | np.uint64(0xCC)).tobytes())

    def _q(self, pa: int, v: int) -> None:
        self.uc.mem_write(pa, struct.pack("<Q", v & U64))

    def _install_code(self) -> None:
        code: list[tuple[tuple, bytes]] = [(("load", s), bytes([0x8E, 0xC0 | s << 3])) for s in range(6)]
        sizes = (1, 2, 4, 8) if self.bits == 64 else (1, 2, 4)
        code += [(("access", s, op, n), _probe_code(self.bits, s, op, n)) for s in DATA_SREGS for op in (0, 1)
                 for n in sizes]
        code += [(("wrmsr",), b"\x0f\x30"), (("iret",), b"\x48\xcf" if self.bits == 64 else b"\xcf"),
                 (("nop",), b"\x90")]
        at = CODE
        for key, b in code:
            self.uc.mem_write(at, b)
            self.slots[key] = (at, len(b))
            at += 16

    def _write_gdt(self) -> None:
        for i in range(SEG_GDT_ENTRIES):
            self._q(GDT + 8 * i, SEG_HARNESS_GDT.get(i, 0))

    def _setup_cpu(self) -> None:
        uc, r = self.uc, _x
        if self.bits == 16:
            for reg in (r.UC_X86_REG_CS, r.UC_X86_REG_DS, r.UC_X86_REG_ES, r.UC_X86_REG_FS, r.UC_X86_REG_GS,
                        r.UC_X86_REG_SS):
                uc.reg_write(reg, 0)
            uc.reg_write(r.UC_X86_REG_GDTR, (0, GDT, SEG_GDT_LIMIT, 0))
            uc.reg_write(r.UC_X86_REG_ESP, STACK + 0xF00)
            return
        uc.reg_write(r.UC_X86_REG_GDTR, (0, GDT, SEG_GDT_LIMIT, 0))
        if self.bits == 64:
            self._q(PML4, PDPT | 0x7)
            self._q(PDPT, PD | 0x7)
            for i in range(SEG_RAM >> 21):
                self._q(PD + 8 * i, (i << 21) | 0x87)      # 2 MiB, P|RW|US|PS: identity
            uc.reg_write(r.UC_X86_REG_CR3, PML4)
            uc.reg_write(r.UC_X86_REG_CR4, 0x20)
            uc.reg_write(r.UC_X86_REG_MSR, (0xC0000080, 0x500))
            uc.reg_write(r.UC_X86_REG_CR0, 0x80000011)
        else:
            uc.reg_write(r.UC_X86_REG_CR0, 0x11)
        uc.reg_write(r.UC_X86_REG_CS, SEG_CODE64 if self.bits == 64 else SEG_CODE32)
        for reg in (r.UC_X86_REG_SS, r.UC_X86_REG_DS, r.UC_X86_REG_ES, r.UC_X86_REG_FS, r.UC_X86_REG_GS):
            uc.reg_write(reg, SEG_DATA)
        uc.reg_write(r.UC_X86_REG_ESP, STACK + 0xF00)
        uc.reg_write(r.UC_X86_REG_EFLAGS, 0x2)

    def _raw(self) -> bytes:
        return ctypes.string_at(self.ctx_ptr, self.ctx.size)

    def _on_intr(self, uc: Any, intno: int, _data: Any) -> None:
        self.exc = intno
        if intno in WITH_CODE and self.layout is not None:
            uc.context_update(self.ctx)
            self.errcode = ctypes.c_uint32.from_address(self.ctx_ptr + self.layout["errcode"]).value
        self.dirty = True
        uc.emu_stop()

    # -- calibration (32-bit machine) -------------------------------------------------------------

    layout: dict[str, Any] | None = None

    def _calibrate(self) -> dict[str, Any]:
        """Find the error-code, pending-exception and CPL (hflags) fields of a saved context."""
        if self.bits != 32:
            raise CalibrationFailed("calibration runs on the protected-mode machine")
        uc = self.uc
        uc.context_update(self.ctx)
        clean = self._raw()
        # loads with known faults: GDT[1] zero (system), GDT[2] not-present data, SS null, index 4095
        self._q(GDT + 8, 0)
        self._q(GDT + 16, 0x00CF13000000FFFF)
        want = [(DS, 0x08, 13, 0x08), (DS, 0x10, 11, 0x10), (SS, 0x00, 13, 0), (DS, 0xFFFB, 13, 0xFFF8)]
        ctxs = []
        oldexc: list[int] = []
        for sreg, sel, vec, _code in want:
            if ctxs:
                self._restore(clean_fields=oldexc)
            self.exc = None
            uc.reg_write(_x.UC_X86_REG_EAX, sel)
            at, n = self.slots[("load", sreg)]
            uc.emu_start(at, at + n)
            if self.exc != vec:
                raise CalibrationFailed(f"MOV {sreg}, {sel:#x} gave exception {self.exc}, expected {vec}")
            uc.context_update(self.ctx)
            ctxs.append(self._raw())
            if len(ctxs) == 1:
                # QEMU's "exception in progress" field: -1 when clean, the vector after the hook took it;
                # left set, the next fault would escalate to #DF
                oldexc = [off for off in range(0, len(clean) - 4, 4)
                          if struct.unpack_from("<i", clean, off)[0] == -1
                          and struct.unpack_from("<i", ctxs[0], off)[0] == 13]
                if not oldexc:
                    raise CalibrationFailed("no pending-exception field found")
        cands = [off for off in range(0, len(clean) - 4, 4)
                 if [struct.unpack_from("<I", c, off)[0] for c in ctxs] == [w[3] for w in want]]
        if not cands:
            raise CalibrationFailed("no context field holds the error codes 0x8, 0x10, 0, 0xfff8")
        layout: dict[str, Any] = {"errcode": cands[0], "oldexc": oldexc}
        self._restore(clean_fields=oldexc)
        self._write_gdt()
        # CPL: IRET to a DPL-3 code segment, then the hflags field is the one whose low 2 bits went 0 -> 3
        uc.context_update(self.ctx)
        before = self._raw()
        at0 = uc.context_save()
        at, n = self.slots[("nop",)]
        frame = struct.pack("<5I", at, 27 << 3 | 3, 0x2, STACK + 0xE00, 28 << 3 | 3)
        uc.mem_write(STACK + 0x800, frame)
        uc.reg_write(_x.UC_X86_REG_ESP, STACK + 0x800)
        self.exc = None
        iret, _ = self.slots[("iret",)]
        uc.emu_start(iret, at, count=1)
        if self.exc is not None or uc.reg_read(_x.UC_X86_REG_CS) != 27 << 3 | 3:
            raise CalibrationFailed(f"IRET to CPL 3 failed (exception {self.exc})")
        uc.context_update(self.ctx)
        after = self._raw()
        hf = [off for off in range(0, len(before) - 4, 4)
              if struct.unpack_from("<I", before, off)[0] & 3 == 0
              and struct.unpack_from("<I", before, off)[0] ^ struct.unpack_from("<I", after, off)[0] == 3]
        if not hf:
            raise CalibrationFailed("no hflags field with the CPL found")
        layout["cpl"] = hf
        uc.context_restore(at0)
        return layout

    def _restore(self, clean_fields: list[int] | None = None, cpl: int | None = None) -> None:
        """Put a fresh context in place: no exception pending; CPL as asked (hflags bits 1:0)."""
        uc = self.uc
        uc.context_update(self.ctx)
        p = self.ctx_ptr
        fields = clean_fields if clean_fields is not None else (self.layout or {}).get("oldexc", ())
        for off in fields:
            ctypes.c_int32.from_address(p + off).value = -1
        if cpl is not None:
            for off in self.layout["cpl"]:
                cur = ctypes.c_uint32.from_address(p + off)
                cur.value = (cur.value & ~3 & U32) | cpl
        uc.context_restore(self.ctx)
        self.dirty = False

    def _verify(self) -> None:
        """Known faults through this machine: the error code and the CPL must read back right."""
        if self.bits == 16:
            o = self.call("load_seg", (CS, 0, 0))
            if o.signal != "#UD":
                raise CalibrationFailed(f"MOV CS in real mode gave {o}")
            self.reset()
            return
        self._q(GDT + 8, 0x00CF13000000FFFF)          # GDT[1]: data, not present
        self._q(GDT + 16, 0x00CF93000000FFFF)         # GDT[2]: data, DPL 0
        checks = [((DS, 0x08, 0), ("#NP", 0x08)), ((DS, 0x13, 0), ("#GP", 0x10)), ((DS, 0x10, 3), ("#GP", 0x10)),
                  ((DS, 0x10, 0), (None, None)), ((SS, 0x10, 3), ("#GP", 0x10)), ((DS, 0x08, 0), ("#NP", 0x08))]
        for args, (sig, code) in checks:
            o = self.call("load_seg", args)
            if o.signal != sig or (code is not None and dict(o.detail).get("errcode") != code):
                raise CalibrationFailed(f"load_seg{args} gave {o.signal} {dict(o.detail)}, expected {sig} {code}")
        self.reset()

    # -- running ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the mode's start: GDT as the harness left it, registers flat, CPL 0."""
        self._write_gdt()
        if hasattr(self, "clean"):
            self.uc.context_restore(self.clean)
        else:
            self._restore(cpl=0)
        self.dirty = False
        self.cpl = 0

    def _run(self, key: tuple, cpl: int = 0, **regs: int) -> Outcome | None:
        if self.dirty or cpl != self.cpl:
            self._restore(cpl=cpl if self.layout and self.layout.get("cpl") else None)
            self.cpl = cpl
        uc = self.uc
        for name, v in regs.items():
            uc.reg_write(getattr(_x, "UC_X86_REG_" + name.upper()), v & (U64 if self.bits == 64 else U32))
        at, n = self.slots[key]
        self.exc = None
        failed = emulate(uc, at, at + n)
        if failed is not None:
            self.dirty = True
            return failed
        if self.exc is None:
            return None
        name = VECTORS.get(self.exc, f"#V{self.exc}")
        if self.exc in WITH_CODE:
            return Outcome(signal=name, detail=(("errcode", self.errcode),))
        return Outcome(signal=name)

    def call(self, name: str, a: tuple[int, ...]) -> Outcome:
        uc = self.uc
        if name == "set_desc":
            index, base, limit, type_, dpl, flags = a
            if not (1 <= index < SEG_GDT_PROGRAM and 0 <= base <= U32 and 0 <= limit < 1 << 20 and 0 <= type_ < 16
                    and 0 <= dpl <= 3 and 0 <= flags and not flags & ~DESC_FLAGS):
                return EINVAL
            hi = ((base >> 16) & 0xFF) | type_ << 8 | dpl << 13 | ((limit >> 16) & 0xF) << 16 | (base >> 24) << 24 | flags
            self._q(GDT + 8 * index, (limit & 0xFFFF) | (base & 0xFFFF) << 16 | hi << 32)
            return OK
        if name == "read_desc":
            (index,) = a
            if not 0 <= index < SEG_GDT_ENTRIES:
                return EINVAL
            return Outcome(value=struct.unpack("<Q", uc.mem_read(GDT + 8 * index, 8))[0])
        if name == "lgdt":
            (limit,) = a
            if not 0 <= limit <= SEG_GDT_LIMIT:
                return EINVAL
            if self.dirty:
                self._restore()
            uc.reg_write(_x.UC_X86_REG_GDTR, (0, GDT, limit, 0))
            return OK
        if name == "load_seg":
            sreg, sel, cpl = a
            real = self.bits == 16
            if not (0 <= sreg <= 5 and 0 <= sel <= 0xFFFF and (cpl == 0 if real else 0 <= cpl <= 3)):
                return EINVAL
            o = self._run(("load", sreg), cpl, eax=sel)
            return OK if o is None else o
        if name == "seg_access":
            sreg, offset, op, size = a
            top = U64 if self.bits == 64 else U32
            sizes = (1, 2, 4, 8) if self.bits == 64 else (1, 2, 4)
            if sreg not in DATA_SREGS or not 0 <= offset <= top or op not in (0, 1) or size not in sizes:
                return EINVAL
            where = {"ebp" if self.bits != 64 else "rbp": offset} if sreg == SS else \
                {"eax" if self.bits != 64 else "rax": offset}
            o = self._run(("access", sreg, op, size), self.cpl, rbx=0, **where) if self.bits == 64 else \
                self._run(("access", sreg, op, size), self.cpl, ebx=0, **where)
            if o is not None:
                return o
            mask = (1 << (8 * size)) - 1
            return Outcome(value=uc.reg_read(_x.UC_X86_REG_RBX if self.bits == 64 else _x.UC_X86_REG_EBX) & mask)
        if name == "wrmsr_segbase":
            sreg, base = a
            if self.bits != 64 or sreg not in (FS, GS) or not 0 <= base <= U64:
                return EINVAL
            o = self._run(("wrmsr",), 0, rcx=MSR_BASE[sreg], rax=base & U32, rdx=base >> 32)
            return OK if o is None else o
        raise TargetError(f"the qemu segmentation unit does not implement {name}()")


def find_a20_field(layout: dict[str, Any]) -> int | None:
    """The context offset of QEMU's ``a20_mask`` (-1 when A20 is enabled): each candidate is tried on a
    fresh real-mode machine (an empty TLB), and must make FFFF:8010 read physical 0x8000 while
    1234:0010 still reads 0x12350."""
    probe = SegMachine(REAL_A20, layout)
    probe.uc.context_update(probe.ctx)
    raw = probe._raw()
    cands = [off for off in range(0, len(raw) - 4, 4)
             if struct.unpack_from("<i", raw, off)[0] == -1 and off not in layout["oldexc"]]
    for off in cands[:16]:
        m = SegMachine(REAL, layout, a20_field=off)
        m.reset()
        ok = m.call("load_seg", (DS, 0xFFFF, 0)).ok and m.call("seg_access", (DS, 0x8010, 0, 4)).value == 0x8000CC
        ok = ok and m.call("load_seg", (DS, 0x1234, 0)).ok and m.call("seg_access", (DS, 0x10, 0, 4)).value == 0x12350CC
        if ok:
            return off
    return None


class SegUnit:
    """The ``qemu`` target's segmentation unit: the machine of the current mode (SEG_LONG at first)."""

    def __init__(self) -> None:
        self.machines: dict[int, SegMachine] = {}
        self.mode = LONG
        self.used = False
        self._a20: int | None = None
        self._a20_known = False

    def a20_field(self) -> int | None:
        if not self._a20_known:
            self._a20 = find_a20_field(self.machine(PROTECTED).layout)
            self._a20_known = True
        return self._a20

    def facts(self) -> dict[str, Any]:
        return {"a20_gate": self.a20_field() is not None, "seg_ram": SEG_RAM, "seg_low": SEG_LOW}

    def machine(self, mode: int) -> SegMachine:
        m = self.machines.get(mode)
        if m is None:
            if PROTECTED not in self.machines:
                self.machines[PROTECTED] = SegMachine(PROTECTED)
            layout = self.machines[PROTECTED].layout
            m = self.machines.get(mode) or SegMachine(mode, layout, self.a20_field() if mode == REAL else None)
            self.machines[mode] = m
        return m

    def reset(self) -> None:
        if self.used:
            for m in self.machines.values():
                m.reset()
        self.mode = LONG
        self.used = False

    def call(self, name: str, a: tuple[int, ...]) -> Outcome:
        self.used = True
        if name == "seg_mode":
            (mode,) = a
            if mode not in (REAL, REAL_A20, PROTECTED, LONG) or (mode == REAL and self.a20_field() is None):
                return EINVAL
            self.machine(mode).reset()
            self.mode = mode
            return OK
        m = self.machine(self.mode)
        return m.call(name, a)


__all__ = ["SegUnit", "SegMachine", "CalibrationFailed", "find_a20_field"]
