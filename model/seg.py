"""x86 segmentation: real-address mode, protected-mode descriptors, 64-bit mode (SDM Vol. 3A ch. 3, 5, 20).

A logical address ``sreg:offset`` becomes a linear address through the segment
register's hidden part (base, limit, attributes), which ``MOV Sreg, r16`` fills
from a descriptor after the checks of SDM Vol. 2B MOV.  Every rule below names
its clause; faults are values (``SegFault``: vector and error code).

Worked examples:

* real mode, A20 masked: ``FFFF:0010`` is linear ``0xFFFF0 + 0x10 = 0x100000``,
  which wraps to physical 0 (sdm.seg.real.a20-wrap); with A20 enabled it reaches
  0x100000 (sdm.seg.real.a20-reach).
* protected mode, a data descriptor with base 0x200000, limit 0xFFF, G = 0,
  expand-up: ``DS:0xFFC`` (4 bytes) is linear 0x200FFC; ``DS:0xFFE`` (4 bytes)
  ends at 0x1001 > limit: #GP(0) (sdm.seg.limit.expand-up).  The same descriptor
  in SS gives #SS(0).
* loading SS with a selector whose RPL differs from CPL: #GP(selector & 0xFFFC)
  (sdm.seg.load.ss-rpl-cpl-gp).
* 64-bit mode: DS's base is treated as 0 and its limit is not checked
  (sdm.seg.long.base-ignored, sdm.seg.long.no-limit); ``FS:offset`` adds FS's
  base; a non-canonical result raises #GP(0), or #SS(0) through SS.
"""

from __future__ import annotations

from dataclasses import dataclass

# CPU modes of the segmentation unit (memspec.consts.SEGMODE)
REAL, REAL_A20, PROTECTED, LONG = 0, 1, 2, 3
MODES = (REAL, REAL_A20, PROTECTED, LONG)
# segment registers, numbered as in the MOV Sreg encoding (SDM Vol. 2B MOV, "Sreg")
ES, CS, SS, DS, FS, GS = 0, 1, 2, 3, 4, 5
SREG_NAMES = ("ES", "CS", "SS", "DS", "FS", "GS")
READ, WRITE = 0, 1

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SegFault:
    """A fault as a value: ``#GP``, ``#SS``, ``#NP`` or ``#UD`` with its error code (None for #UD)."""

    vector: str
    errcode: int | None
    clause: str


# --- descriptors (SDM Vol. 3A §3.4.5, Figure 3-8; Table 3-1) ----------------------------------


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One 8-byte code/data descriptor, field by field."""

    raw: int

    @property
    def base(self) -> int:
        """Base address 31:0 from bytes 2..4 and 7 (§3.4.5)."""
        return (self.raw >> 16) & 0xFFFFFF | ((self.raw >> 56) & 0xFF) << 24

    @property
    def limit_field(self) -> int:
        """Segment limit 19:0 from bytes 0..1 and bits 51:48."""
        return self.raw & 0xFFFF | ((self.raw >> 48) & 0xF) << 16

    @property
    def type(self) -> int:
        return (self.raw >> 40) & 0xF

    @property
    def s(self) -> bool:
        """S = 1: a code or data segment; S = 0: a system descriptor (LDT, TSS, gates)."""
        return bool(self.raw >> 44 & 1)

    @property
    def dpl(self) -> int:
        return (self.raw >> 45) & 3

    @property
    def p(self) -> bool:
        return bool(self.raw >> 47 & 1)

    @property
    def l(self) -> bool:
        return bool(self.raw >> 53 & 1)

    @property
    def db(self) -> bool:
        return bool(self.raw >> 54 & 1)

    @property
    def g(self) -> bool:
        return bool(self.raw >> 55 & 1)

    @property
    def limit(self) -> int:
        """The effective limit: "If the granularity flag is set, the segment limit is interpreted in
        4-KByte units" -- (limit << 12) | 0xFFF (§3.4.5, G flag; sdm.seg.limit.granularity)."""
        return (self.limit_field << 12) | 0xFFF if self.g else self.limit_field

    # Table 3-1: bit 11 (type bit 3) tells code from data; data: E W A, code: C R A
    @property
    def code(self) -> bool:
        return bool(self.type & 8)

    @property
    def expand_down(self) -> bool:
        return not self.code and bool(self.type & 4)

    @property
    def writable(self) -> bool:
        return not self.code and bool(self.type & 2)

    @property
    def readable(self) -> bool:
        return not self.code or bool(self.type & 2)

    @property
    def conforming(self) -> bool:
        return self.code and bool(self.type & 4)

    @property
    def accessed(self) -> bool:
        return bool(self.type & 1)

    def describe(self) -> str:
        if not self.s:
            return f"system descriptor type {self.type:#x}"
        kind = ("code " + ("X" + ("R" if self.type & 2 else "") + ("C" if self.type & 4 else ""))
                if self.code else "data " + ("RW" if self.type & 2 else "R") + (" expand-down" if self.type & 4 else ""))
        return (f"{kind} base={self.base:#x} limit={self.limit:#x} (G={int(self.g)}) DPL={self.dpl} P={int(self.p)} "
                f"D/B={int(self.db)} L={int(self.l)} A={int(self.accessed)}")


def make_descriptor(base: int, limit: int, type_: int, dpl: int, flags: int) -> int:
    """The raw descriptor for ``set_desc`` (flags are bits of the descriptor's high dword)."""
    hi = ((base >> 16) & 0xFF) | (type_ & 0xF) << 8 | (dpl & 3) << 13 | ((limit >> 16) & 0xF) << 16 | \
        (base >> 24 & 0xFF) << 24 | flags
    return (limit & 0xFFFF) | (base & 0xFFFF) << 16 | hi << 32


# --- segment registers: the visible selector and the hidden part (§3.4.3) ----------------------


@dataclass(frozen=True, slots=True)
class SegReg:
    selector: int
    base: int
    limit: int
    null: bool = False
    code: bool = False
    writable: bool = True
    readable: bool = True
    expand_down: bool = False
    big: bool = True            # D/B: the upper bound of an expand-down segment is 0xFFFFFFFF (else 0xFFFF)
    dpl: int = 0
    granular: bool = False      # the limit came from a descriptor with G = 1
    # bases a target may hold after a null load of FS/GS in 64-bit mode (vendors differ)
    alt_bases: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.null:
            return f"{self.selector:#x} (null)"
        kind = "code" if self.code else "data"
        attrs = ("W" if self.writable else "R") + (" expand-down" if self.expand_down else "")
        return f"{self.selector:#x} base={self.base:#x} limit={self.limit:#x} {kind} {attrs} DPL={self.dpl}"


def real_reg(selector: int) -> SegReg:
    """Real-address mode: "the segment selector ... is shifted left 4 bits to form the base" (§20.1.1);
    the limit stays 0xFFFF and no descriptor is read."""
    return SegReg(selector, (selector & 0xFFFF) << 4, 0xFFFF)


def flat(selector: int) -> SegReg:
    return SegReg(selector, 0, U32)


def from_descriptor(selector: int, d: Descriptor) -> SegReg:
    return SegReg(selector, d.base, d.limit, code=d.code, writable=d.writable, readable=d.readable,
                  expand_down=d.expand_down, big=d.db, dpl=d.dpl, granular=d.g)


def null_reg(selector: int, base: int = 0, alt: tuple[int, ...] = ()) -> SegReg:
    return SegReg(selector, base, 0, null=True, alt_bases=alt)


# --- loads: MOV Sreg, r16 (SDM Vol. 2B MOV, Operation; Vol. 3A §5.6, §5.7) --------------------


def load(mode: int, gdt: dict[int, int], gdt_limit: int, sreg: int, selector: int, cpl: int,
         old: SegReg) -> SegReg | SegFault:
    """The hidden part after ``MOV sreg, selector`` at ``cpl``, or the fault, in the MOV page's order."""
    if sreg == CS:
        # MOV: "#UD If attempt is made to load the CS register" (every mode)
        return SegFault("#UD", None, "sdm.seg.load.cs-ud")
    selector &= 0xFFFF
    if mode in (REAL, REAL_A20):
        return real_reg(selector)                                   # sdm.seg.real.load
    rpl, index, ti = selector & 3, selector >> 3, selector >> 2 & 1
    err = selector & 0xFFFC
    if index == 0 and not ti:
        if sreg == SS:
            # MOV, 64-Bit Mode Exceptions: #GP(0) for a null SS "when CPL = 3" and "when CPL < 3 and
            # CPL ≠ RPL"; otherwise 64-bit mode loads it
            if mode == LONG and cpl != 3:
                if rpl == cpl:
                    return null_reg(selector)                      # sdm.seg.load.null-ss-64
                return SegFault("#GP", 0, "sdm.seg.load.null-ss-64-rpl-gp")
            return SegFault("#GP", 0, "sdm.seg.load.null-ss-gp")
        if mode == LONG and sreg in (FS, GS):
            # the base after a null FS/GS load in 64-bit mode: zero or unchanged, by vendor
            return null_reg(selector, 0, (old.base,) if old.base else ())
        return null_reg(selector)                                  # sdm.seg.load.null-data
    # "IF segment selector index is outside descriptor table limits THEN #GP(selector)";
    # no LDT is loaded (LDTR null), so every TI = 1 selector is outside
    if ti or index * 8 + 7 > gdt_limit:
        return SegFault("#GP", err, "sdm.seg.load.beyond-limit-gp")
    d = Descriptor(gdt.get(index, 0))
    if sreg == SS:
        if rpl != cpl:
            return SegFault("#GP", err, "sdm.seg.load.ss-rpl-cpl-gp")
        if not d.s or not d.writable:
            return SegFault("#GP", err, "sdm.seg.load.ss-type-gp")
        if d.dpl != cpl:
            return SegFault("#GP", err, "sdm.seg.load.ss-dpl-cpl-gp")
        if not d.p:
            return SegFault("#SS", err, "sdm.seg.load.ss-not-present-ss")
        return from_descriptor(selector, d)
    # DS, ES, FS, GS: "IF segment is not a data or readable code segment ... THEN #GP(selector)"
    if not d.s:
        return SegFault("#GP", err, "sdm.seg.load.system-gp")
    if d.code and not d.readable:
        return SegFault("#GP", err, "sdm.seg.load.exec-only-gp")
    # "IF ((segment is a data or nonconforming code segment) AND ((RPL > DPL) or (CPL > DPL)))"
    if not d.conforming and (rpl > d.dpl or cpl > d.dpl):
        return SegFault("#GP", err, "sdm.seg.load.data-privilege-gp")
    if not d.p:
        return SegFault("#NP", err, "sdm.seg.load.not-present-np")
    return from_descriptor(selector, d)


def load_clause(mode: int, sreg: int, selector: int, gdt: dict[int, int]) -> str:
    """The clause a successful load exercised."""
    if mode in (REAL, REAL_A20):
        return "sdm.seg.real.load"
    if selector & 0xFFFC == 0:
        return "sdm.seg.load.null-ss-64" if sreg == SS else "sdm.seg.load.null-data"
    d = Descriptor(gdt.get(selector >> 3, 0))
    if d.conforming and sreg != SS and ((selector & 3) > d.dpl):
        return "sdm.seg.load.conforming-no-privilege"
    return "sdm.seg.load.ok"


# --- accesses (SDM Vol. 3A §3.4, §5.3 limit checking, §5.5/5.6; §3.2.4 64-bit mode) --------------


def limit_ok(reg: SegReg, offset: int, size: int) -> bool:
    """§5.3: "the effective limit ... expand-up: offsets 0 to limit; expand-down: limit + 1 to
    FFFFH (B = 0) or FFFFFFFFH (B = 1)"; every byte of the access must be inside."""
    last = offset + size - 1
    if reg.expand_down:
        upper = U32 if reg.big else 0xFFFF
        return reg.limit < offset and last <= upper
    return last <= reg.limit


def access(mode: int, reg: SegReg, sreg: int, offset: int, size: int, op: int) -> tuple[int, str] | SegFault:
    """(linear address, clause) of ``sreg:offset``, or the fault."""
    stack = sreg == SS
    if mode == LONG:
        # §3.2.4: "the processor treats the segment base of CS, DS, ES, SS as zero"; FS and GS
        # keep theirs; no limit or attribute checks, no null check (§5.4.1.1)
        la = (reg.base + offset) & U64 if sreg in (FS, GS) else offset & U64
        if not canonical(la):
            # Vol. 3A §6.15 (#GP, #SS): a non-canonical address; through SS it is #SS(0)
            if stack:
                return SegFault("#SS", 0, "sdm.seg.long.noncanonical-ss")
            return SegFault("#GP", 0, "sdm.seg.long.noncanonical-gp")
        if sreg in (FS, GS) and reg.base:
            return la, "sdm.seg.long.fs-gs-base"
        if reg.null:
            return la, "sdm.seg.long.null-usable"
        if reg.base and sreg not in (FS, GS):
            return la, "sdm.seg.long.base-ignored"
        if not limit_ok(reg, offset, size) or (op == WRITE and not reg.writable):
            return la, "sdm.seg.long.no-limit"
        return la, "sdm.seg.access.linear"
    if mode in (REAL, REAL_A20):
        if offset + size - 1 > reg.limit:
            # MOV, Real-Address Mode Exceptions: #GP / #SS "if a memory operand effective address is
            # outside the ... segment limit"
            return SegFault("#SS" if stack else "#GP", 0, "sdm.seg.real.limit")
        return reg.base + offset, "sdm.seg.real.linear"
    # protected mode
    if reg.null:
        # MOV, Protected Mode Exceptions: #GP(0) "If the DS, ES, FS, or GS register is used to access
        # memory and it contains a NULL segment selector"
        return SegFault("#GP", 0, "sdm.seg.access.null-gp")
    if op == WRITE and reg.code:
        return SegFault("#GP", 0, "sdm.seg.access.write-code-gp")
    if op == WRITE and not reg.writable:
        return SegFault("#GP", 0, "sdm.seg.access.write-readonly-gp")
    if not limit_ok(reg, offset, size):
        clause = ("sdm.seg.limit.expand-down" if reg.expand_down else
                  "sdm.seg.limit.granularity" if reg.granular else "sdm.seg.limit.expand-up")
        return SegFault("#SS" if stack else "#GP", 0, clause)
    clause = ("sdm.seg.limit.expand-down" if reg.expand_down else
              "sdm.seg.limit.granularity" if reg.granular and reg.limit != U32 else "sdm.seg.access.linear")
    return (reg.base + offset) & U32, clause


def canonical(la: int) -> bool:
    """Bits 63:47 all equal (4-level paging; the segmentation unit does not enable LA57)."""
    top = la >> 47
    return top == 0 or top == (1 << 17) - 1


def physical(mode: int, la: int, i: int) -> int:
    """The physical address of byte ``i`` of an access at linear ``la``: paging is off (real and
    protected mode) or an identity map (long mode).  With A20 masked, bit 20 is forced to 0
    ("A20M#", §20.1.1): the 8086's wrap at 1 MiB (sdm.seg.real.a20-wrap)."""
    if mode == REAL:
        return (la + i) & ~(1 << 20)
    if mode == PROTECTED:
        return (la + i) & U32
    return (la + i) & U64


def sreg_name(sreg: int) -> str:
    return SREG_NAMES[sreg] if 0 <= sreg < len(SREG_NAMES) else f"sreg{sreg}"


__all__ = ["Descriptor", "SegFault", "SegReg", "load", "load_clause", "access", "limit_ok", "canonical",
           "physical", "make_descriptor", "real_reg", "flat", "null_reg", "sreg_name", "MODES",
           "REAL", "REAL_A20", "PROTECTED", "LONG", "ES", "CS", "SS", "DS", "FS", "GS", "READ", "WRITE"]
