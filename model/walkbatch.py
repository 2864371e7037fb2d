"""The linear-address translation of ``walk.py`` for many addresses at once, over numpy arrays.

``walk_batch(mem, mode, root, la, acc, cpl)`` applies the same SDM rules as the scalar
``walk`` + ``check_access`` (Intel SDM Vol. 3A §4.5.4/§4.5.5 for the structure, §4.6 for the
rights, §4.6.2 for protection keys, §4.7 for the error code), one level at a time for every
address that is still walking: gather the entries, test P, then the reserved bits, then take
the leaf (PS = 1 at the PDPTE or PDE, or the PTE) or the next table.  The scalar walk is its
reference: ``tests/hw/test_walkbatch.py`` checks both agree on random tables.

``mem`` is physical memory as 64-bit words (``mem[pa >> 3]``); an entry outside it reads as 0
(not present).  ``acc``, ``cpl`` and ``ac`` are the same for the whole batch.  The result
gives, per address, the physical address (where no fault), whether it faulted, the #PF error
code and the index of the deciding clause in ``CLAUSES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pte import EXEC, PKEY_SHIFT, READ, WRITE, Mode, addr_mask, bits, rsvd_high

_P, _RW, _US, _PS, _XD = 1, 2, 4, 0x80, 1 << 63

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
)
_ID = {c: i for i, c in enumerate(CLAUSES)}
_LEVEL_NAME = {5: "pml5e", 4: "pml4e", 3: "pdpte", 2: "pde", 1: "pte"}


@dataclass
class BatchResult:
    pa: np.ndarray          # uint64: the translated physical address (0 where faulted)
    fault: np.ndarray       # bool
    errcode: np.ndarray     # uint32: the #PF error code where faulted
    clause: np.ndarray      # uint8: index into CLAUSES

    def clause_of(self, i: int) -> str:
        return CLAUSES[int(self.clause[i])]


def _u(v: int) -> np.uint64:
    return np.uint64(v & 0xFFFF_FFFF_FFFF_FFFF)


def walk_batch(mem: np.ndarray, mode: Mode, root: int, la: np.ndarray, acc: int = READ, cpl: int = 3,
               ac: int = 0, page1g: bool = True) -> BatchResult:
    la = np.asarray(la, dtype=np.uint64)
    n = la.shape[0]
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
        _check_rights(mode, acc, cpl, ac, fault, present, clause, user, writable, xd, leaf)
        return _result(mode, acc, cpl, pa, fault, present, np.zeros(n, dtype=bool), clause)
    return _general(mem, mode, root, la, acc, cpl, ac, page1g)


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


def _result(mode: Mode, acc: int, cpl: int, pa: np.ndarray, fault: np.ndarray, present: np.ndarray,
            rsvd: np.ndarray, clause: np.ndarray) -> BatchResult:
    """§4.7: the error code of every faulting address; pa is 0 where an address faulted."""
    if not fault.any():
        return BatchResult(pa, fault, np.zeros(pa.shape[0], dtype=np.uint32), clause)
    pk = fault & ((clause == _ID["sdm.pkeys.access-disable"]) | (clause == _ID["sdm.pkeys.write-disable"]))
    base = (2 if acc == WRITE else 0) | (4 if cpl == 3 else 0) | (16 if acc == EXEC and (mode.smep or mode.nxe) else 0)
    err = np.where(fault, base | present.astype(np.uint32) | (rsvd.astype(np.uint32) << np.uint32(3))
                   | (pk.astype(np.uint32) << np.uint32(5)), 0).astype(np.uint32)
    pa = pa.copy()
    pa[fault] = 0
    return BatchResult(pa, fault, err, clause)


def _general(mem: np.ndarray, mode: Mode, root: int, la: np.ndarray, acc: int, cpl: int, ac: int,
             page1g: bool) -> BatchResult:
    """Every case: addresses leave the walk at the level where they fault or map a large page."""
    n = la.shape[0]
    amask = _u(addr_mask(mode.maxphy))
    high = _u(rsvd_high(mode))
    beyond = _u(bits(51, mode.maxphy) if mode.maxphy < 52 else 0)
    pa = np.zeros(n, dtype=np.uint64)
    fault = np.zeros(n, dtype=bool)
    present = np.zeros(n, dtype=bool)      # the P bit of the error code
    rsvd = np.zeros(n, dtype=bool)
    clause = np.zeros(n, dtype=np.uint8)
    user = np.ones(n, dtype=bool)
    writable = np.ones(n, dtype=bool)
    xd = np.zeros(n, dtype=bool)
    leaf = np.zeros(n, dtype=np.uint64)
    active = np.arange(n)
    table = np.full(n, _u(root) & amask, dtype=np.uint64)
    words = mem.shape[0]
    for level in range(mode.levels, 0, -1):
        if active.size == 0:
            break
        idx = (la[active] >> np.uint64(12 + 9 * (level - 1))) & np.uint64(0x1FF)
        w = (table[active] | (idx << np.uint64(3))) >> np.uint64(3)
        inside = w < np.uint64(words)
        e = np.zeros(active.size, dtype=np.uint64)
        e[inside] = mem[w[inside].astype(np.intp)]
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
        r = ok & ((e & high) != 0)
        if r.any():
            xd_only = r & ((e & np.uint64(_XD)) != 0) & ((e & beyond) == 0) & (not mode.nxe)
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
            pa[d] = (e[done] & amask & ~(size - np.uint64(1))) | (la[d] & (size - np.uint64(1)))
        table[active] = e & amask
        active = active[ok & ~done]
    _check_rights(mode, acc, cpl, ac, fault, present, clause, user, writable, xd, leaf)
    return _result(mode, acc, cpl, pa, fault, present, rsvd, clause)


def _check_rights(mode: Mode, acc: int, cpl: int, ac: int, fault: np.ndarray, present: np.ndarray,
                  clause: np.ndarray, user: np.ndarray, writable: np.ndarray, xd: np.ndarray,
                  leaf: np.ndarray) -> None:
    """§4.6.1 and §4.6.2 for the addresses that translated, first failing rule wins (as check_access)."""
    live = ~fault

    def deny(mask: np.ndarray, name: str) -> None:
        nonlocal live
        m = live & mask
        if m.any():
            fault[m] = True
            present[m] = True
            clause[m] = _ID[name]
            live = live & ~m

    if cpl == 3:
        deny(~user, {READ: "sdm.access.user-read-supervisor", WRITE: "sdm.access.user-write-supervisor",
                     EXEC: "sdm.access.user-fetch-supervisor"}[acc])
        if acc == WRITE:
            deny(~writable, "sdm.access.user-write-readonly")
        if acc == EXEC and mode.nxe:
            deny(xd, "sdm.access.xd-fetch")
    elif acc == EXEC:
        if mode.smep:
            deny(user, "sdm.access.smep-fetch")
        if mode.nxe:
            deny(xd, "sdm.access.xd-fetch")
    else:
        if mode.smap and not ac:
            deny(user, "sdm.access.smap-read" if acc == READ else "sdm.access.smap-write")
        if acc == WRITE and mode.wp:
            deny(~writable, "sdm.access.wp-supervisor-write")
    if mode.pke and acc != EXEC:
        key = ((leaf >> np.uint64(PKEY_SHIFT)) & np.uint64(0xF)).astype(np.uint32)
        rights = (np.uint32(mode.pkru) >> (np.uint32(2) * key)) & np.uint32(3)
        deny(user & ((rights & np.uint32(1)) != 0), "sdm.pkeys.access-disable")
        if acc == WRITE and (cpl == 3 or mode.wp):
            deny(user & ((rights & np.uint32(2)) != 0), "sdm.pkeys.write-disable")


__all__ = ["walk_batch", "BatchResult", "CLAUSES"]
