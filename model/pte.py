"""x86-64 paging-entry formats, control-register bits and page-fault error codes.

Intel SDM Vol. 3A §4.5 (Tables 4-14 to 4-20: formats of PML5E, PML4E, PDPTE, PDE
and PTE), §4.6 (access rights), §4.7 (Figure 4-12, the page-fault error code);
AMD APM Vol. 2 §5.3 (long-mode page translation) and §8.4.2 (#PF error code).

Worked example: the entry ``0x8000000000203067`` is ``P|RW|US|A|D`` with XD
and frame ``0x203000``; with EFER.NXE = 0 its XD bit is reserved
(``rsvd_mask(level=1, ...)`` includes bit 63).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import lru_cache

from memspec.consts import CREG


class Pte(enum.IntFlag):
    """Bits of a paging-structure entry (SDM Table 4-15 .. 4-20)."""

    P = 1 << 0       # present
    RW = 1 << 1      # writes allowed
    US = 1 << 2      # user-mode accesses allowed
    PWT = 1 << 3
    PCD = 1 << 4
    A = 1 << 5       # accessed (set by the processor, §4.8)
    D = 1 << 6       # dirty (leaf entries only, §4.8)
    PS = 1 << 7      # page size: maps a page (PDPTE: 1 GiB, PDE: 2 MiB); PAT in a PTE
    G = 1 << 8       # global (leaf, CR4.PGE = 1)
    PAT_LARGE = 1 << 12
    XD = 1 << 63     # execute-disable (EFER.NXE = 1)


PKEY_SHIFT = 59      # bits 62:59 hold the protection key of a leaf entry (§4.6.2)
PKEY_MASK = 0xF << PKEY_SHIFT


class ErrCode(enum.IntFlag):
    """The page-fault error code (SDM §4.7, Figure 4-12)."""

    P = 1 << 0       # 0: not-present page; 1: protection violation (or reserved bit)
    W = 1 << 1       # the access was a write
    U = 1 << 2       # the access was a user-mode access (CPL = 3)
    RSVD = 1 << 3    # a reserved bit was set in some paging-structure entry
    ID = 1 << 4      # instruction fetch (with SMEP = 1, or PAE and NXE = 1)
    PK = 1 << 5      # protection-key violation


CR0_PE, CR0_WP, CR0_PG = CREG["CR0_PE"], CREG["CR0_WP"], CREG["CR0_PG"]
CR4_PAE, CR4_PGE, CR4_LA57 = CREG["CR4_PAE"], CREG["CR4_PGE"], CREG["CR4_LA57"]
CR4_PCIDE, CR4_SMEP, CR4_SMAP, CR4_PKE = CREG["CR4_PCIDE"], CREG["CR4_SMEP"], CREG["CR4_SMAP"], CREG["CR4_PKE"]
CR4_PSE = CREG["CR4_PSE"]
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = CREG["EFER_SCE"], CREG["EFER_LME"], CREG["EFER_LMA"], CREG["EFER_NXE"]
CR3_NOFLUSH = CREG["CR3_NOFLUSH"]

READ, WRITE, EXEC = 0, 1, 2
ACCESS_NAMES = {READ: "read", WRITE: "write", EXEC: "fetch"}

LEVEL_NAMES = {5: "pml5e", 4: "pml4e", 3: "pdpte", 2: "pde", 1: "pte"}
PAGE_SIZES = {3: 1 << 30, 2: 1 << 21, 1: 1 << 12}


@lru_cache(maxsize=None)
def bits(hi: int, lo: int) -> int:
    """The mask of bits hi..lo inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


@lru_cache(maxsize=None)
def addr_mask(maxphy: int) -> int:
    """Bits (M-1):12 of an entry: the physical address of the next table or frame (§4.5.4)."""
    return bits(maxphy - 1, 12)


@dataclass(frozen=True, slots=True)
class Mode:
    """The control state that paging reads: CR0, CR4, EFER, PKRU and the CPU's limits.

    The bits a walk tests (``wp``, ``nxe``, ``smep`` ...) and the reserved-bit mask are
    worked out once, when the mode is made (a mode changes only with a control register;
    the walk reads them for every entry)."""

    cr0: int
    cr4: int
    efer: int
    pkru: int = 0
    maxphy: int = 52
    wp: bool = field(init=False, repr=False, compare=False)       # CR0.WP
    nxe: bool = field(init=False, repr=False, compare=False)      # EFER.NXE
    la57: bool = field(init=False, repr=False, compare=False)     # CR4.LA57
    levels: int = field(init=False, repr=False, compare=False)    # 5 with LA57, else 4
    smep: bool = field(init=False, repr=False, compare=False)     # CR4.SMEP
    smap: bool = field(init=False, repr=False, compare=False)     # CR4.SMAP
    pke: bool = field(init=False, repr=False, compare=False)      # CR4.PKE
    pge: bool = field(init=False, repr=False, compare=False)      # CR4.PGE
    pcide: bool = field(init=False, repr=False, compare=False)    # CR4.PCIDE
    rsvd: int = field(init=False, repr=False, compare=False)      # rsvd_high(mode), see below

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "wp", bool(self.cr0 & CR0_WP))
        put(self, "nxe", bool(self.efer & EFER_NXE))
        put(self, "la57", bool(self.cr4 & CR4_LA57))
        put(self, "levels", 5 if self.cr4 & CR4_LA57 else 4)
        put(self, "smep", bool(self.cr4 & CR4_SMEP))
        put(self, "smap", bool(self.cr4 & CR4_SMAP))
        put(self, "pke", bool(self.cr4 & CR4_PKE))
        put(self, "pge", bool(self.cr4 & CR4_PGE))
        put(self, "pcide", bool(self.cr4 & CR4_PCIDE))
        put(self, "rsvd", _rsvd_high(self.maxphy, bool(self.efer & EFER_NXE)))


def rsvd_high(mode: Mode) -> int:
    """Bits 51:M are reserved in every entry; bit 63 (XD) is reserved when EFER.NXE = 0 (§4.5.4)."""
    return mode.rsvd


@lru_cache(maxsize=None)
def _rsvd_high(maxphy: int, nxe: bool) -> int:
    m = bits(51, maxphy) if maxphy < 52 else 0
    if not nxe:
        m |= 1 << 63
    return m


def decode(entry: int, level: int) -> str:
    """``0x203067`` at level 1 -> ``'P|RW|US|A|D frame=0x203000'`` (for failure reports)."""
    names = [f.name for f in Pte if f.name and f is not Pte.PAT_LARGE and entry & f]
    if level == 1 and entry & Pte.PS:
        names = [n if n != "PS" else "PAT" for n in names]
    if entry & Pte.PS and level in (2, 3) and entry & Pte.PAT_LARGE:
        names.append("PAT")
    pk = (entry & PKEY_MASK) >> PKEY_SHIFT
    if pk:
        names.append(f"PK={pk}")
    return f"{'|'.join(names) or '0'} frame={entry & bits(51, 12):#x}"
