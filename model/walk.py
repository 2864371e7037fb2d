"""The x86-64 linear-address translation, one function per level (Intel SDM Vol. 3A §4.5).

``walk(read, mode, root, la)`` follows SDM §4.5.4 (4-level) and §4.5.5 (5-level):
each level reads one entry, checks P, then the reserved bits, then either maps a
page (PS = 1, or the PTE) or names the next table.  Structural failures are
values (``PageFault``); access rights are checked afterwards over the whole path
(``check_access``, §4.6), since the SDM combines the U/S, R/W and XD bits of
every level.

Worked example: with 4-level paging, la = 0x405008 uses PML4E 0, PDPTE 0,
PDE 2, PTE 5; a 2 MiB PDE with XD = 1 and NXE = 1 forbids fetches:
``check_access`` returns errcode ``P|ID`` with clause ``sdm.access.xd-fetch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypeVar

from .pte import EXEC, PAGE_SIZES, PKEY_MASK, PKEY_SHIFT, READ, WRITE, Mode, Pte, addr_mask, bits

Read = Callable[[int], int]
F = TypeVar("F")        # the fault value of a nested step (never an int): the 2-D walk's EPT violation
_IGNORED = ((1 << 59) - (1 << 52)) | 0xE00      # bits 58:52 and 11:9

# plain ints of the IntFlag bits for the hot path (IntFlag arithmetic is slow)
_P, _RW, _US, _PS, _G, _D, _XD = (int(Pte.P), int(Pte.RW), int(Pte.US), int(Pte.PS), int(Pte.G), int(Pte.D),
                                  int(Pte.XD))


@dataclass(frozen=True, slots=True)
class Use:
    """One paging-structure entry used by a walk: where it is, what it held, at which level."""

    addr: int
    value: int
    level: int


@dataclass(frozen=True, slots=True)
class Path:
    """A completed walk: the entries used, the page it maps and the rights combined over all levels."""

    uses: tuple[Use, ...]
    base: int        # physical address of the page
    size: int        # 4 KiB, 2 MiB or 1 GiB
    user: bool       # U/S = 1 at every level (§4.6: a user-mode address)
    writable: bool   # R/W = 1 at every level
    xd: bool         # XD = 1 at some level (only meaningful with NXE = 1)
    glob: bool       # G = 1 in the leaf
    pkey: int
    dirty: bool      # D = 1 in the leaf
    # the OR of every entry's value (``_path`` knows it; -1: not known, worked out when asked)
    ored: int = field(default=-1, repr=False, compare=False)

    def pa(self, la: int) -> int:
        return self.base | (la & (self.size - 1))


@dataclass(frozen=True, slots=True)
class PageFault:
    """A #PF as a value: error code, CR2 and the clause that decided it."""

    errcode: int
    cr2: int
    clause: str
    uses: tuple[Use, ...] = ()


# ---------------------------------------------------------------------------
# canonical addresses (§3.3.7.1, §4.5.1): bits 63:47 (63:56 with LA57) all equal

def canonical(la: int, mode: Mode) -> bool:
    top = 56 if mode.la57 else 47
    hi = la >> top
    return hi == 0 or hi == (1 << (64 - top)) - 1


def index(la: int, level: int) -> int:
    """Bits of la that select the entry at ``level``: PML5 56:48, PML4 47:39, PDPT 38:30, PD 29:21, PT 20:12."""
    return (la >> (12 + 9 * (level - 1))) & 0x1FF


# ---------------------------------------------------------------------------
# one function per level: (entry, mode) -> None (go on) or the clause of a fault.
# Each returns (fault clause or None, rsvd?); the walk driver does the bookkeeping.

def pml5e(e: int, mode: Mode) -> tuple[str | None, bool]:
    """SDM Table 4-14: a PML5E references a PML4 table; its PS bit is reserved."""
    if not e & _P:
        return "sdm.walk.pml5e.not-present", False
    if e & _PS:
        return "sdm.walk.pml5e.rsvd-ps", True
    if e & mode.rsvd:             # rsvd_high(mode), read off the mode
        return _rsvd_clause(e, mode, "sdm.walk.pml5e.rsvd-maxphy"), True
    return None, False


def pml4e(e: int, mode: Mode) -> tuple[str | None, bool]:
    """SDM Table 4-15: a PML4E references a PDPT; its PS bit is reserved."""
    if not e & _P:
        return "sdm.walk.pml4e.not-present", False
    if e & _PS:
        return "sdm.walk.pml4e.rsvd-ps", True
    if e & mode.rsvd:             # rsvd_high(mode), read off the mode
        return _rsvd_clause(e, mode, "sdm.walk.pml4e.rsvd-maxphy"), True
    return None, False


def pdpte(e: int, mode: Mode, page1g: bool) -> tuple[str | None, bool]:
    """SDM Tables 4-16/4-17: PS = 1 maps a 1 GiB page (bits 29:13 reserved); else references a PD.
    Without 1 GiB-page support (CPUID.80000001H:EDX.Page1GB = 0) PS is reserved."""
    if not e & _P:
        return "sdm.walk.pdpte.not-present", False
    if e & _PS:
        if not page1g:
            return "sdm.walk.pdpte.rsvd-ps-no-1g", True
        if e & bits(29, 13):
            return "sdm.walk.pdpte.rsvd-1g-low", True
    if e & mode.rsvd:             # rsvd_high(mode), read off the mode
        return _rsvd_clause(e, mode, "sdm.walk.pdpte.rsvd-maxphy"), True
    return None, False


def pde(e: int, mode: Mode) -> tuple[str | None, bool]:
    """SDM Tables 4-18/4-19: PS = 1 maps a 2 MiB page (bits 20:13 reserved); else references a PT."""
    if not e & _P:
        return "sdm.walk.pde.not-present", False
    if e & _PS and e & bits(20, 13):
        return "sdm.walk.pde.rsvd-2m-low", True
    if e & mode.rsvd:             # rsvd_high(mode), read off the mode
        return _rsvd_clause(e, mode, "sdm.walk.pde.rsvd-maxphy"), True
    return None, False


def pte(e: int, mode: Mode) -> tuple[str | None, bool]:
    """SDM Table 4-20: a PTE maps a 4 KiB page; bit 7 is PAT, not PS."""
    if not e & _P:
        return "sdm.walk.pte.not-present", False
    if e & mode.rsvd:             # rsvd_high(mode), read off the mode
        return _rsvd_clause(e, mode, "sdm.walk.pte.rsvd-maxphy"), True
    return None, False


def _rsvd_clause(e: int, mode: Mode, maxphy_clause: str) -> str:
    # the XD bit with NXE = 0 is its own clause (a common walker bug); bits 51:M the other
    beyond = bits(51, mode.maxphy) if mode.maxphy < 52 else 0
    if not mode.nxe and e & _XD and not e & beyond:
        return "sdm.walk.rsvd.xd-without-nxe"
    return maxphy_clause


# ---------------------------------------------------------------------------
# the walk (§4.5.4/§4.5.5)

def walk(read: Read, mode: Mode, root: int, la: int, acc: int, cpl: int, page1g: bool = True,
         nested: Callable[[int], int | F] | None = None) -> Path | PageFault | F:
    """Translate ``la``: read entries with ``read(physical address)``; structural faults only.

    ``nested`` makes this the guest stage of a 2-D walk (SDM Vol. 3C §29.3.3): each entry's address
    is guest-physical, and ``nested(gpa)`` gives the host address to read or refuses it with a fault
    value, which is the walk's result (QEMU's ptw_translate in mmu_translate)."""
    uses: list[Use] = []
    table = root & addr_mask(mode.maxphy)
    for level in range(mode.levels, 0, -1):
        addr = table | (index(la, level) << 3)
        if nested is None:
            e = read(addr)
        else:
            hpa = nested(addr)
            if not isinstance(hpa, int):
                return hpa
            e = read(hpa)
        uses.append(Use(addr, e, level))
        if level == 5:
            fault, rsvd = pml5e(e, mode)
        elif level == 4:
            fault, rsvd = pml4e(e, mode)
        elif level == 3:
            fault, rsvd = pdpte(e, mode, page1g)
        elif level == 2:
            fault, rsvd = pde(e, mode)
        else:
            fault, rsvd = pte(e, mode)
        if fault is not None:
            return PageFault(errcode(mode, acc, cpl, present=rsvd, rsvd=rsvd), la, fault, tuple(uses))
        if level == 1 or (level in (2, 3) and e & _PS):
            return _path(tuple(uses), mode, level)
        table = e & addr_mask(mode.maxphy)
    raise AssertionError("unreachable")


class WalkMemo:
    """``walk`` remembered by what it read: the same mode, root, address, access and entry values give
    the same ``Path`` or ``PageFault`` (both frozen), so a walk seen before is found again from the
    entries alone, without building its ``Use``s, rights and result anew.

    Kept as a tree per (mode, root, address, access, CPL, 1 GiB pages): each node the address of the
    entry read there and, by that entry's value, the next node (the next level's entry) or the walk's
    result (a not-present entry or a leaf ends the path; one with a reserved bit set is read past,
    which only makes the path more specific).  Those values and the mode are all ``walk`` reads, so
    going down the tree reads exactly the entries the key of a flat memo would hold.  For the
    non-nested walk with a pure ``read`` (the hw model's memory) only."""

    __slots__ = ("memo", "_amask", "_results")

    LIMIT = 4096        # distinct walks kept; past it the memo starts again

    def __init__(self) -> None:
        # (id(mode), root, la, acc, cpl, page1g) -> (mode, address of the top entry, {value: node or result})
        self.memo: dict[tuple, tuple[Mode, int, dict]] = {}
        self._amask = (-1, 0)       # (MAXPHYADDR, addr_mask of it): the last mode's
        self._results = 0

    def walk(self, read: Read, mode: Mode, root: int, la: int, acc: int, cpl: int, page1g: bool = True,
             mem: dict[int, int] | None = None) -> Path | PageFault:
        """``walk(read, ...)``, found again when seen before.  ``mem``: qwords ``read`` answers as they are
        there (the hw model's written entries), looked up first: ``read`` is asked only for the others."""
        maxphy, amask = self._amask
        if maxphy != mode.maxphy:
            amask = addr_mask(mode.maxphy)
            self._amask = (mode.maxphy, amask)
        get = mem.get if mem is not None else None
        # the mode by identity (hashing a Mode works out its fields' hash on every lookup): the entry
        # keeps its mode alive, so the id is not another's while the entry is there
        key = (id(mode), root & amask, la, acc, cpl, page1g)
        top = self.memo.get(key)
        if top is not None and top[0] is mode:
            pa, kids = top[1], top[2]
            while True:
                e = get(pa) if get is not None else None
                if e is None:
                    e = read(pa)
                nxt = kids.get(e)
                if nxt is None:
                    break
                if type(nxt) is not tuple:
                    return nxt          # the walk's result
                pa, kids = nxt
        res = walk(read, mode, root, la, acc, cpl, page1g)
        self._remember(key, mode, amask, root, la, get, read, res)
        return res

    def _remember(self, key: tuple, mode: Mode, amask: int, root: int, la: int, get, read: Read,
                  res: Path | PageFault) -> None:
        """``res`` at the end of the path of entries ``walk`` reads for ``key``, nodes made as needed."""
        if len(self.memo) >= self.LIMIT:
            self.memo.clear()
            self._results = 0
        elif self._results >= 4 * self.LIMIT:     # (many values of the entries under few keys)
            self.memo.clear()
            self._results = 0
        level = mode.levels
        pa = (root & amask) | (((la >> (3 + 9 * level)) & 0x1FF) << 3)
        top = self.memo.get(key)
        if top is None or top[0] is not mode:
            top = self.memo[key] = (mode, pa, {})
        kids = top[2]
        while True:
            e = get(pa) if get is not None else None
            if e is None:
                e = read(pa)
            if not e & _P or level == 1 or (e & _PS and level < 4):
                kids[e] = res
                self._results += 1
                return
            level -= 1
            nxt = kids.get(e)
            if nxt is None:
                nxt = kids[e] = ((e & amask) | (((la >> (3 + 9 * level)) & 0x1FF) << 3), {})
            pa, kids = nxt


def _path(uses: tuple[Use, ...], mode: Mode, level: int) -> Path:
    leaf = uses[-1].value
    size = PAGE_SIZES[level]
    every, some = -1, 0             # U/S and R/W count if set at every level, XD if set at some (§4.6)
    for u in uses:
        every &= u.value
        some |= u.value
    return Path(
        uses=uses,
        base=leaf & addr_mask(mode.maxphy) & ~(size - 1),
        size=size,
        user=bool(every & _US),
        writable=bool(every & _RW),
        xd=bool(some & _XD),
        glob=bool(leaf & _G),
        pkey=(leaf & PKEY_MASK) >> PKEY_SHIFT,
        dirty=bool(leaf & _D),
        ored=some,
    )


def errcode(mode: Mode, acc: int, cpl: int, present: bool, rsvd: bool = False, pk: bool = False) -> int:
    """§4.7: P, W/R, U/S, RSVD, I/D, PK.  I/D is set for fetches only if SMEP = 1 or NXE = 1 (PAE is on)."""
    code = 0
    if present:
        code |= 1                       # P
    if acc == WRITE:
        code |= 2                       # W/R
    if cpl == 3:
        code |= 4                       # U/S
    if rsvd:
        code |= 8                       # RSVD
    if acc == EXEC and (mode.smep or mode.nxe):
        code |= 16                      # I/D
    if pk:
        code |= 32                      # PK
    return code


# ---------------------------------------------------------------------------
# access rights (§4.6.1) and protection keys (§4.6.2)

def check_access(path: Path, mode: Mode, la: int, acc: int, cpl: int, ac: int) -> tuple[PageFault | None, str]:
    """None if the access is allowed (with the clause that allowed it), else the #PF and its clause.

    Supervisor-mode access (CPL < 3):
      read:  user address -> SMAP = 1 and AC = 0 forbids (sdm.access.smap-read)
      write: user address -> SMAP = 1 and AC = 0 forbids; then WP = 1 needs R/W = 1 at all levels
      fetch: user address -> SMEP = 1 forbids; NXE = 1 and XD anywhere forbids
    User-mode access (CPL = 3): needs U/S = 1 at all levels; writes need R/W = 1 at all levels
      regardless of WP; fetches forbidden by XD (NXE = 1).
    Protection keys (CR4.PKE = 1, user address, data access): PKRU.AD[key] forbids; PKRU.WD[key]
      forbids user writes, and supervisor writes when WP = 1.
    """
    def fault(clause: str, pk: bool = False) -> tuple[PageFault, str]:
        return PageFault(errcode(mode, acc, cpl, present=True, pk=pk), la, clause, path.uses), clause

    if cpl == 3:
        if not path.user:
            return fault({READ: "sdm.access.user-read-supervisor", WRITE: "sdm.access.user-write-supervisor",
                          EXEC: "sdm.access.user-fetch-supervisor"}[acc])
        if acc == WRITE and not path.writable:
            return fault("sdm.access.user-write-readonly")
        if acc == EXEC and mode.nxe and path.xd:
            return fault("sdm.access.xd-fetch")
    else:
        if acc == EXEC:
            if path.user and mode.smep:
                return fault("sdm.access.smep-fetch")
            if mode.nxe and path.xd:
                return fault("sdm.access.xd-fetch")
        else:
            if path.user and mode.smap and not ac:
                return fault("sdm.access.smap-read" if acc == READ else "sdm.access.smap-write")
            if acc == WRITE and mode.wp and not path.writable:
                return fault("sdm.access.wp-supervisor-write")
    if mode.pke and path.user and acc != EXEC:
        ad = (mode.pkru >> (2 * path.pkey)) & 1
        wd = (mode.pkru >> (2 * path.pkey + 1)) & 1
        if ad:
            return fault("sdm.pkeys.access-disable", pk=True)
        if acc == WRITE and wd and (cpl == 3 or mode.wp):
            return fault("sdm.pkeys.write-disable", pk=True)
    return None, _allowed_clause(path, mode, acc, cpl, ac)


def _allowed_clause(path: Path, mode: Mode, acc: int, cpl: int, ac: int) -> str:
    """The most specific clause that allowed this access (for the report's clause coverage)."""
    denies = (mode.pkru >> (2 * path.pkey)) & 3
    if mode.pke and denies and acc == EXEC and path.user:
        return "sdm.pkeys.fetch-unaffected"
    if mode.pke and denies and not path.user:
        return "sdm.pkeys.supervisor-page-unaffected"
    if not mode.pke and path.pkey:
        return "sdm.pkeys.ignored-without-pke"
    ored = path.ored
    if ored < 0:
        ored = 0
        for u in path.uses:
            ored |= u.value
    if ored & _IGNORED:
        return "sdm.walk.ignored-bits"
    if path.size == 1 << 12 and path.uses[-1].value & _PS:
        return "sdm.walk.pte.pat-not-ps"
    if cpl < 3 and acc == WRITE and not mode.wp and not path.writable:
        return "sdm.access.wp0-supervisor-write"
    if cpl < 3 and acc != EXEC and path.size > 1 << 12:
        return "sdm.walk.pdpte.ps-1g" if path.size == 1 << 30 else "sdm.walk.pde.ps-2m"
    if cpl == 3 and acc == EXEC and mode.smep:
        return "sdm.access.smep-cpl3-unaffected"
    if cpl < 3 and acc != EXEC and mode.smap and not path.user:
        return "sdm.access.smap-supervisor-page-unaffected"
    if cpl < 3 and acc != EXEC and not mode.smap and path.user:
        return "sdm.access.supervisor-data-user-no-smap"
    if cpl == 3:
        return {READ: "sdm.access.user-read-user", WRITE: "sdm.access.user-write-writable",
                EXEC: "sdm.access.user-fetch-user"}[acc]
    if acc == EXEC:
        return "sdm.access.supervisor-fetch"
    if path.user and mode.smap:
        return "sdm.access.smap-ac-override"
    if acc == WRITE and not mode.wp and not path.writable:
        return "sdm.access.wp0-supervisor-write"
    if path.size == 1 << 30:
        return "sdm.walk.pdpte.ps-1g"
    if path.size == 1 << 21:
        return "sdm.walk.pde.ps-2m"
    return "sdm.walk.pte.maps-4k" if acc == READ else "sdm.access.supervisor-write-writable"


# the same translation for many addresses at once (numpy), with this module's walk as its reference
from .walkbatch import walk_batch  # noqa: E402,F401
