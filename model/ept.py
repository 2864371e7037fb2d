"""The EPT paging-structure format and the EPT walk (Intel SDM Vol. 3C §29.3.2, §29.3.3).

An EPT entry (Tables 29-1..29-6) has read, write and execute bits 2:0 (the entry is
*present* if any of them is 1), a memory type in bits 5:3 and ignore-PAT in bit 6
(leaf entries), page size in bit 7 (PDPTE: 1 GiB, PDE: 2 MiB; reserved in the
PML4E/PML5E), accessed in bit 8 and dirty in bit 9 (leaf; only with EPTP[6] = 1),
the next table or the frame in bits (M-1):12.

The walk reads one entry per level with the hw walker's indexing (``walk.index``)
and records each entry used as a ``walk.Use``; it ends in one of three values:

* ``EptPath`` -- the translation: host frame, page size, and the logical AND of
  the R, W and X bits over every level (§29.3.3.2: an access is allowed only if
  every entry allows it);
* ``EptViolation`` -- an entry with bits 2:0 = 0 (§29.3.3.2), or (later, from
  ``ept_rights``) an access the combined rights forbid;
* ``EptMisconfig`` -- a present entry configured with settings reserved
  (§29.3.3.1): W without R, execute-only without CPU support, reserved bits,
  a reserved memory type (2, 3 or 7) in a leaf.

Worked example: EPT PML4E ``0x201000|R|W|X``, PDPTE ``0x202000|R|W|X``, PDE
``0x800000|R|MT_WB|PS`` translates gpa ``0x200008`` to hpa ``0x800008`` with
rights R only: a write is an EPT violation with exit-qualification bits
``W`` (1) and ``readable`` (3); a PDE ``0x800000|W|PS`` (W without R) is an EPT
misconfiguration instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from .pte import EXEC, READ, WRITE, bits
from .walk import Use, index

Read = Callable[[int], int]


class Ept(enum.IntFlag):
    """Bits of an EPT paging-structure entry (SDM Vol. 3C Tables 29-1..29-6)."""

    R = 1 << 0
    W = 1 << 1
    X = 1 << 2       # supervisor-mode execute with mode-based execute control
    IPAT = 1 << 6    # ignore PAT memory type (leaf)
    PS = 1 << 7      # maps a page (PDPTE: 1 GiB, PDE: 2 MiB)
    A = 1 << 8       # accessed (EPTP[6] = 1)
    D = 1 << 9       # dirty (leaf; EPTP[6] = 1)
    XU = 1 << 10     # user-mode execute (mode-based execute control)
    SVE = 1 << 63    # suppress #VE


MT_SHIFT = 3
MT_MASK = 0x7 << MT_SHIFT
RESERVED_MEMORY_TYPES = (2, 3, 7)           # §29.3.3.1: leaf memory type 2, 3 or 7 misconfigures
MEMORY_TYPES = {0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB"}


class Qual(enum.IntFlag):
    """Exit qualification of an EPT violation (SDM Vol. 3C §28.2.1, Table 28-7)."""

    READ = 1 << 0            # the access causing the violation was a data read
    WRITE = 1 << 1           # ... a data write (guest paging-structure A/D updates count as writes)
    # bit 0 and bit 1 both: a guest paging-structure access under EPT A/D (Table 28-7 note 1)
    FETCH = 1 << 2           # ... an instruction fetch
    # bit 6: AND of bit 10 (user execute) with mode-based execute control, undefined without it
    READABLE = 1 << 3        # AND of bit 0 over the EPT entries used to translate the gpa
    WRITABLE = 1 << 4        # AND of bit 1
    EXECUTABLE = 1 << 5      # AND of bit 2
    GLA_VALID = 1 << 7       # the guest-linear-address field is valid
    FINAL = 1 << 8           # with bit 7: the access was to the final translation (0: to a guest paging entry)
    # bits 9-11 (with bits 7 and 8): the linear address's U/S, R/W and XD, only with "advanced VM-exit
    # information for EPT violations" (IA32_VMX_EPT_VPID_CAP[22]); reserved (0) without it


# Bits the model leaves either way in an EPT violation's exit qualification, per case (Table 28-7):
QUAL_UNDEFINED_NO_MBEC = 1 << 6        # undefined when mode-based execute control is 0 (the harness's case)
QUAL_ADVANCED = 0x7 << 9               # U/S, R/W, XD of the linear address (advanced VM-exit information)


@dataclass(frozen=True, slots=True)
class Eptp:
    """The EPT pointer (SDM Vol. 3C §25.6.11, Table 25-9): memory type 2:0, walk length - 1 in 5:3,
    A/D enable in 6, the PML4 (PML5) table in (M-1):12."""

    value: int

    @property
    def memtype(self) -> int:
        return self.value & 0x7

    @property
    def levels(self) -> int:
        return ((self.value >> 3) & 0x7) + 1

    @property
    def ad(self) -> bool:
        return bool(self.value & (1 << 6))

    def root(self, maxphy: int) -> int:
        return self.value & bits(maxphy - 1, 12)

    def invalid(self, maxphy: int, wl5: bool, ad_ok: bool = True, uc_ok: bool = True, wb_ok: bool = True,
                wl4: bool = True, sss_ok: bool = False) -> str | None:
        """Why a VM entry with this EPTP fails (§27.2.1.1), or None: IA32_VMX_EPT_VPID_CAP (App. A.10) gives memory
        types UC (bit 8), WB (14), walk lengths 4 (6) and 5 (7), A/D (21) -- the target's facts, never CPUID's LA57;
        EPTP bit 7 (supervisor shadow-stack rights, Table 25-9) is valid only with CET shadow stacks (``sss_ok``)."""
        if not {0: uc_ok, 6: wb_ok}.get(self.memtype, False):
            return "memory type must be one the CPU supports (UC (0) or WB (6))"
        if not {4: wl4, 5: wl5}.get(self.levels, False):
            return f"page-walk length {self.levels} not supported"
        if self.ad and not ad_ok:
            return "EPT A/D flags not supported"
        if self.value & bits(11, 8) or self.value & bits(63, maxphy) or self.value & (1 << 7) and not sss_ok:
            return "reserved bits set"
        return None


@dataclass(frozen=True, slots=True)
class EptPath:
    """A completed EPT walk: entries used, host frame, page size, combined rights and memory type."""

    uses: tuple[Use, ...]
    base: int
    size: int
    r: bool
    w: bool
    x: bool
    memtype: int
    ipat: bool

    def hpa(self, gpa: int) -> int:
        return self.base | (gpa & (self.size - 1))

    def allows(self, acc: int) -> bool:
        return {READ: self.r, WRITE: self.w, EXEC: self.x}[acc]


@dataclass(frozen=True, slots=True)
class EptViolation:
    """An EPT violation as a value: the gpa, the entries walked, the clause, and the rights ANDed
    over the entries used (Table 28-7 bits 5:3; a not-present entry contributes zeros)."""

    gpa: int
    uses: tuple[Use, ...]
    clause: str
    r: bool = False
    w: bool = False
    x: bool = False

    def qualification(self, acc: int, gla: int | None, final: bool, paging_write: bool = False) -> int:
        """Table 28-7.  ``paging_write``: the access was the guest walk's own access to a guest paging entry
        with EPT A/D on (EPTP[6] = 1), which counts as a write (§29.3.3.2); Table 28-7 note 1: "If such
        an access causes an EPT violation, the processor sets both bit 0 and bit 1".  Worked example: an
        EPT-read-only guest PTE page under EPTP[6] = 1 exits with READ|WRITE|READABLE|GLA_VALID (0x8b)."""
        q = {READ: Qual.READ, WRITE: Qual.WRITE, EXEC: Qual.FETCH}[acc]
        if paging_write:
            q = Qual.READ | Qual.WRITE
        q |= (Qual.READABLE if self.r else 0) | (Qual.WRITABLE if self.w else 0) | (Qual.EXECUTABLE if self.x else 0)
        if gla is not None:
            q |= Qual.GLA_VALID | (Qual.FINAL if final else 0)
        return int(q)


@dataclass(frozen=True, slots=True)
class EptMisconfig:
    """An EPT misconfiguration as a value (§29.3.3.1): the gpa, the entries walked, the clause."""

    gpa: int
    uses: tuple[Use, ...]
    clause: str


LEVEL = {5: "pml5e", 4: "pml4e", 3: "pdpte", 2: "pde", 1: "pte"}
# plain ints for the walk's hot path (IntFlag arithmetic is slow)
_R, _W, _X, _PS = int(Ept.R), int(Ept.W), int(Ept.X), int(Ept.PS)


def present(e: int) -> bool:
    """§29.3.2: an EPT entry is present if any of bits 2:0 is 1."""
    return bool(e & 0x7)


def misconfigured(e: int, level: int, maxphy: int, xonly: bool, page1g: bool, page2m: bool = True) -> str | None:
    """The clause of the misconfiguration a present entry causes at ``level``, or None (§29.3.3.1).

    ``EPT_W`` without ``EPT_R`` misconfigures; so does ``EPT_X`` alone on a CPU without
    execute-only support; so do bits 51:M, bit 7 of a PML4E/PML5E, bits 6:3 of a
    non-leaf entry, bits 29:12 (1 GiB) / 20:12 (2 MiB) of a large page, and memory
    types 2, 3, 7 in a leaf."""
    if e & _W and not e & _R:
        return "sdm.ept.misconfig.write-without-read"
    if e & 0x7 == _X and not xonly:
        return "sdm.ept.misconfig.execute-only-unsupported"
    if maxphy < 52 and e & bits(51, maxphy):
        return "sdm.ept.misconfig.rsvd-maxphy"
    leaf = level == 1 or (level in (2, 3) and e & _PS)
    if level >= 4 and e & _PS:
        return "sdm.ept.misconfig.rsvd-ps"
    if level == 3 and e & _PS and not page1g:
        return "sdm.ept.misconfig.rsvd-ps"
    if level == 2 and e & _PS and not page2m:      # bit 7 of a PDE is reserved without 2-MByte EPT pages
        return "sdm.ept.misconfig.rsvd-ps"
    if not leaf and e & bits(6, 3):
        return "sdm.ept.misconfig.rsvd-nonleaf"
    if leaf and level == 3 and e & bits(29, 12):
        return "sdm.ept.misconfig.rsvd-large-low"
    if leaf and level == 2 and e & bits(20, 12):
        return "sdm.ept.misconfig.rsvd-large-low"
    if leaf and (e & MT_MASK) >> MT_SHIFT in RESERVED_MEMORY_TYPES:
        return "sdm.ept.misconfig.memory-type"
    return None


def ept_walk(read: Read, root: int, levels: int, gpa: int, maxphy: int = 52, xonly: bool = True,
             page1g: bool = True, page2m: bool = True) -> EptPath | EptViolation | EptMisconfig:
    """Translate ``gpa`` through the EPT tables at ``root``: one step per level (SDM §29.3.2).

    The gpa is indexed like a linear address (bits 47:39, 38:30, 29:21, 20:12; 56:48
    with a 5-level walk).  Rights are not checked here (see ``ept_rights``)."""
    uses: list[Use] = []
    amask = bits(maxphy - 1, 12)
    table = root & amask
    r = w = x = True
    for level in range(levels, 0, -1):
        addr = table | (index(gpa, level) << 3)
        e = read(addr)
        uses.append(Use(addr, e, level))
        if not present(e):
            return EptViolation(gpa, tuple(uses), f"sdm.ept.violation.{LEVEL[level]}-not-present")
        bad = misconfigured(e, level, maxphy, xonly, page1g, page2m)
        if bad is not None:
            return EptMisconfig(gpa, tuple(uses), bad)
        r, w, x = r and bool(e & _R), w and bool(e & _W), x and bool(e & _X)
        if level == 1 or (level in (2, 3) and e & _PS):
            size = {1: 1 << 12, 2: 1 << 21, 3: 1 << 30}[level]
            return EptPath(tuple(uses), e & amask & ~(size - 1), size, r, w, x,
                           (e & MT_MASK) >> MT_SHIFT, bool(e & 0x40))
        table = e & amask
    raise AssertionError("unreachable")


def ept_rights(path: EptPath, acc: int, gpa: int) -> EptViolation | None:
    """§29.3.3.2: a read needs R, a write W, a fetch X, in every entry used (their AND)."""
    if path.allows(acc):
        return None
    clause = {READ: "sdm.ept.violation.read", WRITE: "sdm.ept.violation.write", EXEC: "sdm.ept.violation.execute"}[acc]
    return EptViolation(gpa, path.uses, clause, path.r, path.w, path.x)


def decode_ept(e: int, level: int) -> str:
    """``0x800087`` at level 2 -> ``'R|W|X|PS MT=0(UC) frame=0x800000'`` (for failure reports)."""
    names = [f.name for f in Ept if f.name and e & f]
    leaf = level == 1 or (level in (2, 3) and e & Ept.PS)
    mt = (e & MT_MASK) >> MT_SHIFT
    extra = f" MT={mt}({MEMORY_TYPES.get(mt, 'reserved')})" if leaf else ""
    return f"{'|'.join(names) or '0'}{extra} frame={e & bits(51, 12):#x}"
