"""The two paging modes outside IA-32e mode: 32-bit paging (Intel SDM Vol. 3A §4.3) and PAE paging
(§4.4), one function per level as in ``walk.py``, whose rights check (``check_access``, §4.6) they share.

32-bit paging (CR0.PG = 1, CR4.PAE = 0): two levels of 1024 32-bit entries.  CR3[31:12] names the
page directory; the PDE is selected by la[31:22].  With CR4.PSE = 1 a PDE with PS = 1 maps a 4-MByte
page: pa[31:22] = PDE[31:22] and, with PSE-36, pa[M-1:32] = PDE[M-20:13], where M = min(MAXPHYADDR, 40);
bit 21 and bits 20:(M-19) of such a PDE are reserved (Table 4-4).  With PSE = 0, PS is ignored.  A
PTE (la[21:12]) maps a 4-KByte page (Table 4-6).  No other entry has a reserved bit, no entry has
an XD bit (IA32_EFER.NXE has no effect: the error code's I/D is set only with SMEP, §4.7), and there
are no protection keys (§4.6.2: 4-level and 5-level paging only).

PAE paging (CR4.PAE = 1, IA32_EFER.LMA = 0): CR3[31:5] names a table of four 64-bit PDPTEs, which
MOV to CR3 loads into the PDPTE registers (§4.4.1): a PDPTE with P = 1 and a reserved bit set
(bits 2:1, 8:5, 63:M: a PDPTE has no R/W, U/S, A or XD) makes the MOV raise #GP(0), not a later
#PF (``load_pdptes``).  The walk then uses the register selected by la[31:30]; P = 0 there is a
not-present #PF.  PDEs (la[29:21]) and PTEs (la[20:12]) are 64-bit: bits 62:M reserved, bit 63 is
XD with NXE = 1 and reserved without; a PDE with PS = 1 maps a 2-MByte page (bits 20:13 reserved).
The PDPTE's own bits take no part in the rights (Table 4-8) and it gets no A flag.

Worked example: 32-bit paging, CR4.PSE = 1, PDE 1 = 0x008000E7 (P|RW|US|A|D|PS, frame 0x800000):
la 0x401008 maps pa 0x801008; with bit 21 set as well (0x00A000E7) the read faults with
errcode P|U|RSVD (0xd) at CPL 3, clause ``sdm.walk32.pde.rsvd-4m``.
"""

from __future__ import annotations

from .pte import CR4_PAE, CR4_PKE, CR4_PSE, EFER_LMA, EFER_NXE, Mode, bits
from .walk import Path, PageFault, Read, Use, errcode

_P, _RW, _US, _PS, _G, _D, _XD = 1, 2, 4, 0x80, 0x100, 0x40, 1 << 63


def paging_mode(mode: Mode) -> str:
    """``32bit``, ``pae``, ``4level`` or ``5level`` from CR4.PAE, IA32_EFER.LMA and CR4.LA57 (§4.1.1)."""
    if not mode.cr4 & CR4_PAE:
        return "32bit"
    if not mode.efer & EFER_LMA:
        return "pae"
    return "5level" if mode.la57 else "4level"


def rights_mode(mode: Mode) -> Mode:
    """The mode ``check_access`` and ``errcode`` see in these modes: no protection keys
    (``sdm.pkeys.ia32e-only``) and, with 32-bit paging, no NXE (``sdm.walk32.no-xd``)."""
    efer = mode.efer & ~EFER_NXE if not mode.cr4 & CR4_PAE else mode.efer
    return Mode(mode.cr0, mode.cr4 & ~CR4_PKE, efer, 0, mode.maxphy)


# ---------------------------------------------------------------------------
# 32-bit paging (§4.3)

def pse36_width(maxphy: int) -> int:
    """M for 4-MByte pages: min(MAXPHYADDR, 40) (§4.3, Table 4-4)."""
    return min(maxphy, 40)


def pde32(e: int, mode: Mode) -> tuple[str | None, bool]:
    """Table 4-4/4-5: P = 0 ends the walk; with CR4.PSE = 1 and PS = 1, bit 21 and bits 20:(M-19) of
    the 4-MByte PDE are reserved."""
    if not e & _P:
        return "sdm.walk32.pde.not-present", False
    if e & _PS and mode.cr4 & CR4_PSE:
        m = pse36_width(mode.maxphy)
        if e & ((1 << 21) | (bits(20, m - 19) if m < 40 else 0)):
            return "sdm.walk32.pde.rsvd-4m", True
    return None, False


def walk32(read: Read, mode: Mode, cr3: int, la: int, acc: int, cpl: int) -> Path | PageFault:
    """Translate a 32-bit ``la``; ``read(pa)`` gives the 32-bit entry at ``pa``.  Structural faults only."""
    rm = rights_mode(mode)
    pde_addr = (cr3 & 0xFFFFF000) | ((la >> 22) & 0x3FF) << 2
    pde = read(pde_addr) & 0xFFFFFFFF
    uses = [Use(pde_addr, pde, 2)]
    fault, rsvd = pde32(pde, mode)
    if fault is not None:
        return PageFault(errcode(rm, acc, cpl, present=rsvd, rsvd=rsvd), la, fault, tuple(uses))
    # with CR4.PSE = 0 the PS bit is ignored (sdm.walk32.pde.pse-off-ignores-ps)
    if pde & _PS and mode.cr4 & CR4_PSE:
        # sdm.walk32.pde.ps-4m: pa[31:22] from bits 31:22, pa[M-1:32] from bits (M-20):13 (PSE-36)
        m = pse36_width(mode.maxphy)
        high = (pde >> 13) & ((1 << (m - 32)) - 1) if m > 32 else 0
        return _path(uses, (pde & 0xFFC00000) | (high << 32), 1 << 22)
    pte_addr = (pde & 0xFFFFF000) | ((la >> 12) & 0x3FF) << 2
    pte = read(pte_addr) & 0xFFFFFFFF
    uses.append(Use(pte_addr, pte, 1))
    if not pte & _P:
        return PageFault(errcode(rm, acc, cpl, present=False), la, "sdm.walk32.pte.not-present", tuple(uses))
    # sdm.walk32.pte.maps-4k: no reserved bit in a PTE (bit 7 is PAT)
    return _path(uses, pte & 0xFFFFF000, 1 << 12)


# ---------------------------------------------------------------------------
# PAE paging (§4.4)

def pdpte_rsvd(e: int, maxphy: int) -> int:
    """Table 4-8: the reserved bits of a present PDPTE: 2:1, 8:5 and 63:MAXPHYADDR."""
    return e & (0x6 | 0x1E0 | bits(63, maxphy))


def load_pdptes(read: Read, mode: Mode, cr3: int) -> tuple[int, int, int, int] | str:
    """MOV to CR3 with PAE paging (§4.4.1): the four PDPTEs at CR3[31:5], or the clause of the #GP(0)
    a present PDPTE with a reserved bit raises (``sdm.pae.pdpte.rsvd-gp``)."""
    base = cr3 & 0xFFFFFFE0
    ents = tuple(read(base + 8 * i) for i in range(4))
    for e in ents:
        if e & _P and pdpte_rsvd(e, mode.maxphy):
            return "sdm.pae.pdpte.rsvd-gp"
    return ents  # type: ignore[return-value]


def _pae_high(mode: Mode) -> int:
    """Bits 62:M of a PAE PDE or PTE, and bit 63 without NXE (Tables 4-9..4-11)."""
    return bits(62, mode.maxphy) | (0 if mode.nxe else _XD)


def _pae_rsvd_clause(e: int, mode: Mode, clause: str) -> str:
    if not mode.nxe and e & _XD and not e & bits(62, mode.maxphy):
        return "sdm.pae.rsvd.xd-without-nxe"
    return clause


def pde_pae(e: int, mode: Mode) -> tuple[str | None, bool]:
    """Tables 4-9/4-10: P = 0 ends the walk; PS = 1 maps a 2-MByte page, bits 20:13 reserved;
    bits 62:M reserved, bit 63 without NXE."""
    if not e & _P:
        return "sdm.pae.pde.not-present", False
    if e & _PS and e & bits(20, 13):
        return "sdm.pae.pde.rsvd-2m-low", True
    if e & _pae_high(mode):
        return _pae_rsvd_clause(e, mode, "sdm.pae.pde.rsvd-maxphy"), True
    return None, False


def pte_pae(e: int, mode: Mode) -> tuple[str | None, bool]:
    """Table 4-11: P = 0 ends the walk; bits 62:M reserved, bit 63 without NXE."""
    if not e & _P:
        return "sdm.pae.pte.not-present", False
    if e & _pae_high(mode):
        return _pae_rsvd_clause(e, mode, "sdm.pae.pte.rsvd-maxphy"), True
    return None, False


def walk_pae(read: Read, mode: Mode, pdptes: tuple[int, ...], pdpt_addr: int, la: int, acc: int,
             cpl: int) -> Path | PageFault:
    """Translate a 32-bit ``la`` through the PDPTE registers ``pdptes`` (from ``load_pdptes``; the
    PDPTE's address ``pdpt_addr + 8 * la[31:30]`` is only recorded).  Structural faults only."""
    rm = rights_mode(mode)
    i = (la >> 30) & 3
    pdpte = pdptes[i]
    uses = [Use(pdpt_addr + 8 * i, pdpte, 3)]
    if not pdpte & _P:
        return PageFault(errcode(rm, acc, cpl, present=False), la, "sdm.pae.pdpte.not-present", tuple(uses))
    amask = bits(mode.maxphy - 1, 12)
    pde_addr = (pdpte & amask) | ((la >> 21) & 0x1FF) << 3
    pde = read(pde_addr)
    uses.append(Use(pde_addr, pde, 2))
    fault, rsvd = pde_pae(pde, mode)
    if fault is not None:
        return PageFault(errcode(rm, acc, cpl, present=rsvd, rsvd=rsvd), la, fault, tuple(uses))
    if pde & _PS:
        # sdm.pae.pde.ps-2m
        return _path(uses, pde & amask & ~((1 << 21) - 1), 1 << 21)
    pte_addr = (pde & amask) | ((la >> 12) & 0x1FF) << 3
    pte = read(pte_addr)
    uses.append(Use(pte_addr, pte, 1))
    fault, rsvd = pte_pae(pte, mode)
    if fault is not None:
        return PageFault(errcode(rm, acc, cpl, present=rsvd, rsvd=rsvd), la, fault, tuple(uses))
    # sdm.pae.pte.maps-4k
    return _path(uses, pte & amask, 1 << 12)


def _path(uses: list[Use], base: int, size: int) -> Path:
    """§4.6.1 over the entries that carry rights: the PDE and PTE (a PAE PDPTE has none, Table 4-8:
    ``sdm.pae.pdpte.no-rights``)."""
    rights = [u for u in uses if u.level < 3]
    every, some = -1, 0
    for u in rights:
        every &= u.value
        some |= u.value
    leaf = uses[-1].value
    return Path(uses=tuple(uses), base=base, size=size, user=bool(every & _US), writable=bool(every & _RW),
                xd=bool(some & _XD), glob=bool(leaf & _G), pkey=0, dirty=bool(leaf & _D))


def accessed_dirty(path: Path, acc: int) -> dict[int, int]:
    """§4.8 after an allowed access: A in the PDE and PTE used (not in a PAE PDPTE: it has no A flag),
    D in the entry that maps the page for a write.  {entry address: bits to set}."""
    out = {}
    for u in path.uses:
        if u.level == 3:
            continue
        out[u.addr] = 0x20 | (0x40 if u is path.uses[-1] and acc == 1 else 0)
    return out


__all__ = ["paging_mode", "rights_mode", "walk32", "load_pdptes", "walk_pae", "pdpte_rsvd", "pde32", "pde_pae",
           "pte_pae", "pse36_width", "accessed_dirty"]
