"""The linear-address translation of ``walk.py`` for many accesses at once, over numpy arrays.

``walk_batch(mem, mode, root, la, acc, cpl, ac)`` applies the same SDM rules as the scalar
``walk`` + ``check_access`` (Intel SDM Vol. 3A §4.5.4/§4.5.5 for the structure, §4.6 for the
rights, §4.6.2 for protection keys, §4.7 for the error code, §4.8 for the accessed and dirty
flags), one level at a time for every access that is still walking: gather the entries, test
P, then the reserved bits, then take the leaf (PS = 1 at the PDPTE or PDE, or the PTE) or the
next table.  The scalar walk is its reference: ``tests/hw/test_walkbatch.py`` and
``tests/sweep/test_walkbatch_modes.py`` check both agree on random tables and modes.

Every access may have its own control state (``Modes``: CR0.WP, CR4.SMEP/SMAP/PKE, EFER.NXE,
PKRU), access type, CPL and EFLAGS.AC; the paging depth and MAXPHYADDR are one per batch.
``mem`` is physical memory as 64-bit words (``mem[pa >> 3]``); an entry outside it reads as 0
(not present).  ``walk_paths`` takes the entries each access's walk reads instead of a memory
(``entries[i, k]`` is the entry at level ``levels - k``): the form of a sweep, where every
access has its own tree.  ``walk_paths_legacy`` is the same for 32-bit and PAE paging (§4.3, §4.4;
scalar reference ``walk_legacy.py``, property-tested in ``tests/sweep/test_walkbatch_legacy.py``).

The result gives, per access, the physical address (where allowed), whether it faulted (#PF),
whether it raised #GP(0) first (a non-canonical address, SDM Vol. 1 §3.3.7.1, when asked to
check), the #PF error code, the index of the deciding clause in ``CLAUSES``, and the accessed
and dirty flags of the entries used as the access leaves them (two bits per level).

Worked example: a 2 MiB PDE with XD = 1 and NXE = 1 forbids fetches at CPL 3: errcode
``P|U|ID`` (0x15), clause ``sdm.access.xd-fetch``; with NXE = 0 the same PDE has a reserved
bit set: errcode ``P|U|RSVD`` (0xd) -- ID is clear, since neither NXE nor SMEP is set --
clause ``sdm.walk.rsvd.xd-without-nxe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .pte import CR0_WP, CR4_PKE, CR4_SMAP, CR4_SMEP, EFER_NXE, EXEC, PKEY_SHIFT, READ, WRITE, Mode, addr_mask, bits, rsvd_high

_P, _RW, _US, _A, _D, _PS, _XD = 1, 2, 4, 0x20, 0x40, 0x80, 1 << 63

# the clauses a batch can end in (the scalar walk's names); a result's ``clause`` indexes this
CLAUSES = (
    "",                                                     # no fault (the scalar path names a finer clause)
    "sdm.walk.pml5e.not-present", "sdm.walk.pml4e.not-present", "sdm.walk.pdpte.not-present",
    "sdm.walk.pde.not-present", "sdm.walk.pte.not-present",
    "sdm.walk.pml5e.rsvd-ps", "sdm.walk.pml4e.rsvd-ps", "sdm.walk.pdpte.rsvd-ps-no-1g",
    "sdm.walk.pdpte.rsvd-1g-low", "sdm.walk.pde.rsvd-2m-low",
    "sdm.walk.pml5e.rsvd-maxphy", "sdm.walk.pml4e.rsvd-maxphy", "sdm.walk.pdpte.rsvd-maxphy",
    "sdm.walk.pde.rsvd-maxphy", "sdm.walk.pte.rsvd-maxphy", "sdm.walk.rsvd.xd-without-nxe",
    "sdm.access.user-read-supervisor", "sdm.access.user-write-supervisor", "sdm.access.user-fetch-supervisor",
    "sdm.access.user-write-readonly", "sdm.access.xd-fetch", "sdm.access.smep-fetch",
    "sdm.access.smap-read", "sdm.access.smap-write", "sdm.access.wp-supervisor-write",
    "sdm.pkeys.access-disable", "sdm.pkeys.write-disable",
    "sdm.canonical.gp",
    # 32-bit paging (§4.3) and PAE paging (§4.4): walk_paths_legacy
    "sdm.walk32.pde.not-present", "sdm.walk32.pde.rsvd-4m", "sdm.walk32.pte.not-present",
    "sdm.pae.pdpte.rsvd-gp", "sdm.pae.pdpte.not-present", "sdm.pae.pde.not-present", "sdm.pae.pde.rsvd-2m-low",
    "sdm.pae.pde.rsvd-maxphy", "sdm.pae.pte.not-present", "sdm.pae.pte.rsvd-maxphy", "sdm.pae.rsvd.xd-without-nxe",
)
_ID = {c: i for i, c in enumerate(CLAUSES)}
_LEVEL_NAME = {5: "pml5e", 4: "pml4e", 3: "pdpte", 2: "pde", 1: "pte"}

# Read(level, active indexes, table physical addresses of those) -> the entries the walk reads
Read = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Modes:
    """The control state that paging reads, one value per access (bool / uint32 arrays of length n)."""

    wp: np.ndarray
    nxe: np.ndarray
    smep: np.ndarray
    smap: np.ndarray
    pke: np.ndarray
    pkru: np.ndarray

    @classmethod
    def of(cls, mode: Mode, n: int) -> "Modes":
        """One Mode for every access."""
        def b(v: bool) -> np.ndarray:
            return np.full(n, v, dtype=bool)
        return cls(b(mode.wp), b(mode.nxe), b(mode.smep), b(mode.smap), b(mode.pke),
                   np.full(n, mode.pkru & 0xFFFF_FFFF, dtype=np.uint32))

    @classmethod
    def from_regs(cls, cr0: np.ndarray, cr4: np.ndarray, efer: np.ndarray, pkru: np.ndarray) -> "Modes":
        """From per-access register values (CR0, CR4, IA32_EFER as uint64; PKRU)."""
        def bit(reg: np.ndarray, mask: int) -> np.ndarray:
            return (np.asarray(reg, dtype=np.uint64) & np.uint64(mask)) != 0
        return cls(bit(cr0, CR0_WP), bit(efer, EFER_NXE), bit(cr4, CR4_SMEP), bit(cr4, CR4_SMAP), bit(cr4, CR4_PKE),
                   np.asarray(pkru, dtype=np.uint64).astype(np.uint32))


@dataclass
class BatchResult:
    pa: np.ndarray          # uint64: the translated physical address (0 where faulted)
    fault: np.ndarray       # bool: #PF
    errcode: np.ndarray     # uint32: the #PF error code where faulted
    clause: np.ndarray      # uint8: index into CLAUSES
    gp: np.ndarray | None = None        # bool: #GP(0) for a non-canonical address (when checked)
    ad: np.ndarray | None = None        # uint16: A (bit 2(L-1)) and D (bit 2(L-1)+1) of the level-L entry
    #                                     as an allowed access leaves them; 0 for levels not used
    used: np.ndarray | None = None      # uint16: bit L-1 set where the walk read the level-L entry
    pk_also: np.ndarray | None = None   # bool: a paging-rights #PF where protection keys deny too: the
    #                                     SDM does not order the two, so PK may be set (model/paging.py)

    def clause_of(self, i: int) -> str:
        return CLAUSES[int(self.clause[i])]


def _u(v: int) -> np.uint64:
    return np.uint64(v & 0xFFFF_FFFF_FFFF_FFFF)


def _arr(v, n: int, dtype) -> np.ndarray:
    a = np.asarray(v, dtype=dtype)
    return np.broadcast_to(a, (n,)) if a.ndim == 0 else a


def walk_batch(mem: np.ndarray, mode: Mode | Modes, root: int, la: np.ndarray, acc=READ, cpl=3, ac=0,
               page1g: bool = True, *, levels: int | None = None, maxphy: int | None = None,
               canonical_check: bool = False) -> BatchResult:
    """Translate every ``la`` through the tables in ``mem`` from ``root``.  ``acc``, ``cpl`` and ``ac``
    are scalars or per-access arrays; ``mode`` one ``Mode`` or per-access ``Modes`` (then ``levels``
    and ``maxphy`` are given)."""
    la = np.asarray(la, dtype=np.uint64)
    n = la.shape[0]
    scalar = isinstance(mode, Mode) and np.ndim(acc) == 0 and np.ndim(cpl) == 0 and np.ndim(ac) == 0
    if scalar and not canonical_check:
        assert isinstance(mode, Mode)
        fast = _clean_walk(mem, mode, root, la)
        if fast is not None:
            # no structural fault and only 4 KiB pages: the rights are the AND (U/S, R/W) and OR (XD)
            # of the entries used, as in §4.6.1
            pa, all_of, any_of, leaf = fast
            fault = np.zeros(n, dtype=bool)
            present = np.zeros(n, dtype=bool)
            clause = np.zeros(n, dtype=np.uint8)
            user = (all_of & np.uint64(_US)) != 0
            writable = (all_of & np.uint64(_RW)) != 0
            xd = (any_of & np.uint64(_XD)) != 0
            m = Modes.of(mode, n)
            a, c, f = _arr(acc, n, np.uint8), _arr(cpl, n, np.uint8), _arr(ac, n, np.uint8)
            _check_rights(m, a, c, f, fault, present, clause, user, writable, xd, leaf)
            return _result(m, a, c, pa, fault, present, np.zeros(n, dtype=bool), clause)
    if isinstance(mode, Mode):
        levels, maxphy, modes = mode.levels, mode.maxphy, Modes.of(mode, n)
    else:
        assert levels is not None and maxphy is not None, "per-access Modes need levels and maxphy"
        modes = mode
    words = mem.shape[0]

    def read(level: int, active: np.ndarray, table: np.ndarray) -> np.ndarray:
        idx = (la[active] >> np.uint64(12 + 9 * (level - 1))) & np.uint64(0x1FF)
        w = (table | (idx << np.uint64(3))) >> np.uint64(3)
        inside = w < np.uint64(words)
        e = np.zeros(active.size, dtype=np.uint64)
        e[inside] = mem[w[inside].astype(np.intp)]
        return e

    return _general(read, la, modes, _arr(acc, n, np.uint8), _arr(cpl, n, np.uint8), _arr(ac, n, np.uint8),
                    levels, maxphy, page1g, root, canonical_check)


def walk_paths(entries: np.ndarray, la: np.ndarray, modes: Modes, acc, cpl, ac, *, levels: int, maxphy: int,
               page1g: bool = True, canonical_check: bool = True) -> BatchResult:
    """The walk of every access through its own tree, given as the entries it reads: ``entries[i, k]``
    is access i's entry at level ``levels - k`` (its address fields are not followed: each access's
    next table is its own)."""
    la = np.asarray(la, dtype=np.uint64)
    n = la.shape[0]
    entries = np.asarray(entries, dtype=np.uint64)
    assert entries.shape == (n, levels), (entries.shape, n, levels)

    def read(level: int, active: np.ndarray, _table: np.ndarray) -> np.ndarray:
        return entries[active, levels - level]

    return _general(read, la, modes, _arr(acc, n, np.uint8), _arr(cpl, n, np.uint8), _arr(ac, n, np.uint8),
                    levels, maxphy, page1g, 0, canonical_check)


def walk_paths_legacy(entries: np.ndarray, la: np.ndarray, modes: Modes, acc, cpl, ac, *, paging: str,
                      maxphy: int, pse=True) -> BatchResult:
    """``walk_paths`` for 32-bit paging (``paging="32bit"``: ``entries[i]`` = PDE, PTE; ``pse`` is
    CR4.PSE, per access or one) and PAE paging (``"pae"``: PDPTE, PDE, PTE), the rules of
    ``model/walk_legacy.py``.  A PAE PDPTE with P = 1 and a reserved bit gives #GP(0) (``gp``: the MOV to
    CR3 that loads it fails, §4.4.1); the path form knows the access's own PDPTE only, the other three
    are taken to be valid.  Protection keys do not apply (§4.6.2) and 32-bit paging has no NXE (§4.3),
    whatever ``modes`` say."""
    la = np.asarray(la, dtype=np.uint64)
    n = la.shape[0]
    entries = np.asarray(entries, dtype=np.uint64)
    levels = 2 if paging == "32bit" else 3
    assert entries.shape == (n, levels), (entries.shape, n, levels)
    no = np.zeros(n, dtype=bool)
    m = Modes(modes.wp, modes.nxe & (paging == "pae"), modes.smep, modes.smap, no, np.zeros(n, dtype=np.uint32))
    acc, cpl, ac = _arr(acc, n, np.uint8), _arr(cpl, n, np.uint8), _arr(ac, n, np.uint8)
    fault = np.zeros(n, dtype=bool)
    present = np.zeros(n, dtype=bool)
    rsvd = np.zeros(n, dtype=bool)
    clause = np.zeros(n, dtype=np.uint8)
    gp = np.zeros(n, dtype=bool)
    used = np.zeros(n, dtype=np.uint16)
    leaf_level = np.zeros(n, dtype=np.uint8)
    pa = np.zeros(n, dtype=np.uint64)
    u64 = np.uint64

    def end(mask: np.ndarray, name: str, is_rsvd: bool) -> None:
        mask = mask & ~fault & ~gp
        fault[mask] = True
        clause[mask] = _ID[name]
        rsvd[mask] = is_rsvd
        present[mask] = is_rsvd

    if paging == "32bit":
        pde = entries[:, 0] & u64(0xFFFFFFFF)
        pte = entries[:, 1] & u64(0xFFFFFFFF)
        used |= np.uint16(2)
        end((pde & u64(_P)) == 0, "sdm.walk32.pde.not-present", False)
        big = ((pde & u64(_PS)) != 0) & np.asarray(pse, dtype=bool)
        mm = min(maxphy, 40)                        # PSE-36: M = min(MAXPHYADDR, 40)
        end(big & ((pde & _u((1 << 21) | (bits(20, mm - 19) if mm < 40 else 0))) != 0), "sdm.walk32.pde.rsvd-4m", True)
        small = ~fault & ~big
        used[small] |= np.uint16(1)
        end(small & ((pte & u64(_P)) == 0), "sdm.walk32.pte.not-present", False)
        high = (pde >> u64(13)) & _u((1 << (mm - 32)) - 1) if mm > 32 else np.zeros(n, dtype=np.uint64)
        pa = np.where(big, (pde & u64(0xFFC00000)) | (high << u64(32)) | (la & u64(0x3FFFFF)),
                      (pte & u64(0xFFFFF000)) | (la & u64(0xFFF)))
        leaf_level = np.where(big, 2, 1).astype(np.uint8)
        leaf = np.where(big, pde, pte)
        rights_all = np.where(big, pde, pde & pte)
        rights_any = np.where(big, pde, pde | pte)
        seen = np.stack([pde, pte], axis=1)
    else:
        pdpte, pde, pte = entries[:, 0], entries[:, 1], entries[:, 2]
        amask = _u(bits(maxphy - 1, 12))
        # §4.4.1: MOV to CR3 loads the PDPTEs; a present one with a reserved bit (2:1, 8:5, 63:M) is #GP(0)
        gp = ((pdpte & u64(_P)) != 0) & ((pdpte & _u(0x6 | 0x1E0 | bits(63, maxphy))) != 0)
        clause[gp] = _ID["sdm.pae.pdpte.rsvd-gp"]
        used[~gp] |= np.uint16(4)
        end((pdpte & u64(_P)) == 0, "sdm.pae.pdpte.not-present", False)
        high = np.where(m.nxe, _u(bits(62, maxphy)), _u(bits(62, maxphy) | _XD))

        def check_high(e: np.ndarray, at: np.ndarray, name: str) -> None:
            r = at & ((e & high) != 0)
            xd_only = r & ((e & _u(_XD)) != 0) & ((e & _u(bits(62, maxphy))) == 0) & ~m.nxe
            end(xd_only, "sdm.pae.rsvd.xd-without-nxe", True)
            end(r, name, True)

        at = ~fault & ~gp
        used[at] |= np.uint16(2)
        end(at & ((pde & u64(_P)) == 0), "sdm.pae.pde.not-present", False)
        ps = (pde & u64(_PS)) != 0
        end(at & ps & ((pde & _u(bits(20, 13))) != 0), "sdm.pae.pde.rsvd-2m-low", True)
        check_high(pde, at, "sdm.pae.pde.rsvd-maxphy")
        small = ~fault & ~gp & ~ps
        used[small] |= np.uint16(1)
        end(small & ((pte & u64(_P)) == 0), "sdm.pae.pte.not-present", False)
        check_high(pte, small & ~fault, "sdm.pae.pte.rsvd-maxphy")
        pa = np.where(ps, (pde & amask & ~u64((1 << 21) - 1)) | (la & u64((1 << 21) - 1)),
                      (pte & amask) | (la & u64(0xFFF)))
        leaf_level = np.where(ps, 2, 1).astype(np.uint8)
        leaf = np.where(ps, pde, pte)
        # the PDPTE carries no rights (Table 4-8)
        rights_all = np.where(ps, pde, pde & pte)
        rights_any = np.where(ps, pde, pde | pte)
        seen = np.stack([np.zeros(n, dtype=np.uint64), pde, pte], axis=1)
    user = (rights_all & u64(_US)) != 0
    writable = (rights_all & u64(_RW)) != 0
    xd = (rights_any & _u(_XD)) != 0
    walked = ~fault & ~gp
    leaf_level = np.where(walked, leaf_level, 0).astype(np.uint8)
    pa = np.where(walked, pa, np.uint64(0))
    _check_rights(m, acc, cpl, ac, fault, present, clause, user, writable, xd, leaf, skip=gp)
    # §4.8: A in the PDE and PTE used, D in the leaf for a write; a PAE PDPTE has no A (its bits 5, 6
    # are reserved), so its flags stay as they were: 0 in any PDPTE that loaded
    ad = _accessed_dirty(seen, levels, leaf_level, ~fault & ~gp, acc == WRITE)
    if levels == 3:
        ad &= np.uint16(0xF)
    return _result(m, acc, cpl, pa, fault, present, rsvd, clause, gp, ad, used, np.zeros(n, dtype=bool))


def _clean_walk(mem: np.ndarray, mode: Mode, root: int, la: np.ndarray):
    """The walk of every address when none of them faults structurally and all map 4 KiB pages:
    (pa, AND of the entries, OR of the entries, leaf); None as soon as one address needs more."""
    amask = _u(addr_mask(mode.maxphy))
    words = np.uint64(mem.shape[0])
    one = np.uint64(_P)
    table: np.ndarray | np.uint64 = _u(root) & amask
    all_of = any_of = e = None
    for level in range(mode.levels, 0, -1):
        w = (table | (((la >> np.uint64(12 + 9 * (level - 1))) & np.uint64(0x1FF)) << np.uint64(3))) >> np.uint64(3)
        if w.size and w.max() >= words:
            return None
        e = mem[w.astype(np.intp)]
        # P = 1, no reserved bit (bits 51:M, XD without NXE, PS where it is reserved), no large page
        check = _u(_P | rsvd_high(mode) | (_PS if level != 1 else 0))
        if ((e & check) != one).any():
            return None
        all_of = e if all_of is None else all_of & e
        any_of = e if any_of is None else any_of | e
        table = e & amask
    assert e is not None and all_of is not None and any_of is not None
    return table | (la & np.uint64(0xFFF)), all_of, any_of, e


def _result(modes: Modes, acc: np.ndarray, cpl: np.ndarray, pa: np.ndarray, fault: np.ndarray, present: np.ndarray,
            rsvd: np.ndarray, clause: np.ndarray, gp: np.ndarray | None = None, ad: np.ndarray | None = None,
            used: np.ndarray | None = None, pk_also: np.ndarray | None = None) -> BatchResult:
    """§4.7: the error code of every faulting access (P, W/R, U/S, RSVD, I/D, PK); pa is 0 where an
    access faulted."""
    if not fault.any():
        return BatchResult(pa, fault, np.zeros(pa.shape[0], dtype=np.uint32), clause, gp, ad, used, pk_also)
    pk = fault & ((clause == _ID["sdm.pkeys.access-disable"]) | (clause == _ID["sdm.pkeys.write-disable"]))
    fetch = acc == EXEC
    code = (present.astype(np.uint32)
            | ((acc == WRITE).astype(np.uint32) << np.uint32(1))
            | ((cpl == 3).astype(np.uint32) << np.uint32(2))
            | (rsvd.astype(np.uint32) << np.uint32(3))
            # I/D: fetches only, and only with SMEP = 1 or NXE = 1
            | ((fetch & (modes.smep | modes.nxe)).astype(np.uint32) << np.uint32(4))
            | (pk.astype(np.uint32) << np.uint32(5)))
    err = np.where(fault, code, 0).astype(np.uint32)
    pa = pa.copy()
    pa[fault] = 0
    return BatchResult(pa, fault, err, clause, gp, ad, used, pk_also)


def _canonical(la: np.ndarray, levels: int) -> np.ndarray:
    """§3.3.7.1, §4.5.1: bits 63:47 (63:56 with 5-level paging) all equal."""
    top = np.uint64(56 if levels == 5 else 47)
    hi = la >> top
    return (hi == 0) | (hi == (np.uint64(0xFFFF_FFFF_FFFF_FFFF) >> top))


def _general(read: Read, la: np.ndarray, modes: Modes, acc: np.ndarray, cpl: np.ndarray, ac: np.ndarray,
             levels: int, maxphy: int, page1g: bool, root: int, canonical_check: bool) -> BatchResult:
    """Every case: accesses leave the walk at the level where they fault or map a large page."""
    n = la.shape[0]
    amask = _u(addr_mask(maxphy))
    beyond = _u(bits(51, maxphy) if maxphy < 52 else 0)
    pa = np.zeros(n, dtype=np.uint64)
    fault = np.zeros(n, dtype=bool)
    present = np.zeros(n, dtype=bool)      # the P bit of the error code
    rsvd = np.zeros(n, dtype=bool)
    clause = np.zeros(n, dtype=np.uint8)
    user = np.ones(n, dtype=bool)
    writable = np.ones(n, dtype=bool)
    xd = np.zeros(n, dtype=bool)
    leaf = np.zeros(n, dtype=np.uint64)
    leaf_level = np.zeros(n, dtype=np.uint8)
    seen = np.zeros((n, levels), dtype=np.uint64)       # the entries read, top level first
    used = np.zeros(n, dtype=np.uint16)
    gp = np.zeros(n, dtype=bool)
    if canonical_check:
        # SDM Vol. 1 §3.3.7.1: a non-canonical address raises #GP(0) before any walk
        gp = ~_canonical(la, levels)
        clause[gp] = _ID["sdm.canonical.gp"]
    active = np.nonzero(~gp)[0]
    table = np.full(n, _u(root) & amask, dtype=np.uint64)
    # bits 51:M are reserved in every entry, bit 63 (XD) where NXE = 0 (per access)
    high = np.where(modes.nxe, beyond, beyond | _u(_XD))
    for level in range(levels, 0, -1):
        if active.size == 0:
            break
        e = read(level, active, table[active])
        seen[active, levels - level] = e
        used[active] |= np.uint16(1 << (level - 1))
        name = _LEVEL_NAME[level]
        # §4.5.4: P = 0 ends the walk (error code P = 0)
        bad = (e & np.uint64(_P)) == 0
        code = np.full(active.size, _ID[f"sdm.walk.{name}.not-present"], dtype=np.uint8)
        is_rsvd = np.zeros(active.size, dtype=bool)
        ps = (e & np.uint64(_PS)) != 0
        ok = ~bad
        # reserved bits, in the scalar walk's order: PS where reserved, low bits of a large page, bits 51:M / XD
        if level in (5, 4):
            r = ok & ps
            code[r], is_rsvd[r], ok = _ID[f"sdm.walk.{name}.rsvd-ps"], True, ok & ~r
        elif level == 3:
            if not page1g:
                r = ok & ps
                code[r], is_rsvd[r], ok = _ID["sdm.walk.pdpte.rsvd-ps-no-1g"], True, ok & ~r
            r = ok & ps & ((e & _u(bits(29, 13))) != 0)
            code[r], is_rsvd[r], ok = _ID["sdm.walk.pdpte.rsvd-1g-low"], True, ok & ~r
        elif level == 2:
            r = ok & ps & ((e & _u(bits(20, 13))) != 0)
            code[r], is_rsvd[r], ok = _ID["sdm.walk.pde.rsvd-2m-low"], True, ok & ~r
        r = ok & ((e & high[active]) != 0)
        if r.any():
            # the XD bit with NXE = 0 and no bit 51:M is its own clause (walk._rsvd_clause)
            xd_only = r & ((e & np.uint64(_XD)) != 0) & ((e & beyond) == 0) & ~modes.nxe[active]
            code[r] = _ID[f"sdm.walk.{name}.rsvd-maxphy"]
            code[xd_only] = _ID["sdm.walk.rsvd.xd-without-nxe"]
            is_rsvd[r] = True
            ok &= ~r
        failed = ~ok
        if failed.any():
            f = active[failed]
            fault[f] = True
            clause[f] = code[failed]
            rsvd[f] = is_rsvd[failed]
            present[f] = is_rsvd[failed]
        user[active] &= (e & np.uint64(_US)) != 0
        writable[active] &= (e & np.uint64(_RW)) != 0
        xd[active] |= (e & np.uint64(_XD)) != 0
        done = ok & (ps if level in (2, 3) else np.full(active.size, level == 1))
        if done.any():
            d = active[done]
            size = np.uint64(1 << (12 + 9 * (level - 1)))
            leaf[d] = e[done]
            leaf_level[d] = level
            pa[d] = (e[done] & amask & ~(size - np.uint64(1))) | (la[d] & (size - np.uint64(1)))
        table[active] = e & amask
        active = active[ok & ~done]
    structural = fault.copy()
    pk_denies = _check_rights(modes, acc, cpl, ac, fault, present, clause, user, writable, xd, leaf, skip=gp)
    ad = _accessed_dirty(seen, levels, leaf_level, ~fault & ~gp, acc == WRITE)
    pk_ids = (clause == _ID["sdm.pkeys.access-disable"]) | (clause == _ID["sdm.pkeys.write-disable"])
    pk_also = fault & ~structural & ~gp & pk_denies & ~pk_ids
    return _result(modes, acc, cpl, pa, fault, present, rsvd, clause, gp, ad, used, pk_also)


def _accessed_dirty(seen: np.ndarray, levels: int, leaf_level: np.ndarray, allowed: np.ndarray,
                    write: np.ndarray) -> np.ndarray:
    """§4.8: an allowed access sets A in every paging-structure entry it used and, for a write, D in
    the entry that maps the page (D of a non-leaf entry is ignored and left as it was).  Packed two
    bits per level: A at bit 2(L-1), D at bit 2(L-1)+1; only for allowed accesses."""
    n = seen.shape[0]
    ad = np.zeros(n, dtype=np.uint16)
    for k in range(levels):
        level = levels - k
        e = seen[:, k]
        on_path = allowed & (leaf_level <= level)
        is_leaf = leaf_level == level
        d = ((e & np.uint64(_D)) != 0) | (is_leaf & write)
        bits2 = np.uint16(1) | (d.astype(np.uint16) << np.uint16(1))
        ad |= np.where(on_path, bits2 << np.uint16(2 * (level - 1)), np.uint16(0)).astype(np.uint16)
    return ad


def _check_rights(modes: Modes, acc: np.ndarray, cpl: np.ndarray, ac: np.ndarray, fault: np.ndarray,
                  present: np.ndarray, clause: np.ndarray, user: np.ndarray, writable: np.ndarray, xd: np.ndarray,
                  leaf: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
    """§4.6.1 and §4.6.2 for the accesses that translated, first failing rule wins (as check_access).
    Returns where protection keys deny, whichever rule won."""
    live = ~fault if skip is None else ~fault & ~skip

    def deny(mask: np.ndarray, name: str) -> None:
        nonlocal live
        m = live & mask
        if m.any():
            fault[m] = True
            present[m] = True
            clause[m] = _ID[name]
            live = live & ~m

    rd, wr, fx = acc == READ, acc == WRITE, acc == EXEC
    u3 = cpl == 3
    sup = ~u3
    # user-mode accesses (CPL = 3): U/S = 1 at every level; writes need R/W = 1 regardless of WP
    nu = u3 & ~user
    deny(nu & rd, "sdm.access.user-read-supervisor")
    deny(nu & wr, "sdm.access.user-write-supervisor")
    deny(nu & fx, "sdm.access.user-fetch-supervisor")
    deny(u3 & wr & ~writable, "sdm.access.user-write-readonly")
    deny(u3 & fx & modes.nxe & xd, "sdm.access.xd-fetch")
    # supervisor-mode fetches: SMEP forbids user addresses, then XD (NXE = 1)
    deny(sup & fx & modes.smep & user, "sdm.access.smep-fetch")
    deny(sup & fx & modes.nxe & xd, "sdm.access.xd-fetch")
    # supervisor-mode data: SMAP (AC = 0) forbids user addresses, then WP = 1 needs R/W = 1
    smap = sup & modes.smap & (ac == 0) & user
    deny(smap & rd, "sdm.access.smap-read")
    deny(smap & wr, "sdm.access.smap-write")
    deny(sup & wr & modes.wp & ~writable, "sdm.access.wp-supervisor-write")
    # §4.6.2: protection keys of user addresses, data accesses only
    pk = modes.pke & user & ~fx
    denies = np.zeros(fault.shape[0], dtype=bool)
    if pk.any():
        key = ((leaf >> np.uint64(PKEY_SHIFT)) & np.uint64(0xF)).astype(np.uint32)
        rights = (modes.pkru.astype(np.uint32) >> (np.uint32(2) * key)) & np.uint32(3)
        ad_ = pk & ((rights & np.uint32(1)) != 0)
        wd_ = pk & wr & (u3 | modes.wp) & ((rights & np.uint32(2)) != 0)
        deny(ad_, "sdm.pkeys.access-disable")
        deny(wd_, "sdm.pkeys.write-disable")
        denies = ad_ | wd_
    return denies


__all__ = ["walk_batch", "walk_paths", "walk_paths_legacy", "Modes", "BatchResult", "CLAUSES"]
