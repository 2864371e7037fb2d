"""walk_paths_legacy (32-bit and PAE paging) against the scalar walks of model/walk_legacy.py with
check_access and §4.8's A/D updates, on random entries, modes, access types, CPLs and AC; and a
mutant of each mode's key rule that the comparison catches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model.pte import CR0_PE, CR0_PG, CR0_WP, CR4_PAE, CR4_PKE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_NXE, Mode
from memspec.model.walk import PageFault, check_access
from memspec.model.walk_legacy import accessed_dirty, load_pdptes, rights_mode, walk32, walk_pae
from memspec.model.walkbatch import Modes, walk_paths_legacy

FLAGS32 = (1, 2, 4, 0x20, 0x40, 0x80, 0x100, 1 << 13, 1 << 17, 1 << 21, 0xE00)
FLAGS_PAE = (1, 2, 4, 0x20, 0x40, 0x80, 0x100, 1 << 63, 1 << 62, 1 << 59, 1 << 51, 1 << 45, 1 << 39, 1 << 13,
             1 << 8, 0xE00)
ROOT = 0x1000


def scalar(paging, entries, la, mode, acc, cpl, ac):
    """(gp, fault, errcode, clause, pa, ad) by the scalar walk over a memory of this access's tree."""
    mem: dict[int, int] = {}
    if paging == "32bit":
        mem[ROOT + 4 * (la >> 22)] = entries[0]
        mem[(entries[0] & 0xFFFFF000) + 4 * ((la >> 12) & 0x3FF)] = entries[1]
        res = walk32(lambda pa: mem.get(pa, 0), mode, ROOT, la, acc, cpl)
    else:
        mem[ROOT + 8 * (la >> 30)] = entries[0]
        pdptes = load_pdptes(lambda pa: mem.get(pa, 0), mode, ROOT)
        if isinstance(pdptes, str):
            return True, False, 0, pdptes, 0, 0
        amask = ((1 << mode.maxphy) - 1) & ~0xFFF
        mem[(entries[0] & amask) + 8 * ((la >> 21) & 0x1FF)] = entries[1]
        mem[(entries[1] & amask) + 8 * ((la >> 12) & 0x1FF)] = entries[2]
        res = walk_pae(lambda pa: mem.get(pa, 0), mode, pdptes, ROOT, la, acc, cpl)
    if isinstance(res, PageFault):
        return False, True, res.errcode, res.clause, 0, 0
    f, _ = check_access(res, rights_mode(mode), la, acc, cpl, ac)
    if f is not None:
        return False, True, f.errcode, f.clause, 0, 0
    sets = accessed_dirty(res, acc)
    ad = 0
    for u in res.uses:
        if u.addr in sets:
            ad |= ((u.value | sets[u.addr]) >> 5 & 3) << (2 * (u.level - 1))
    return False, False, 0, "", res.pa(la), ad


def draw(rng, paging, n):
    levels = 2 if paging == "32bit" else 3
    flags = np.zeros((n, levels), dtype=np.uint64)
    for bit in (FLAGS32 if paging == "32bit" else FLAGS_PAE):
        p = 0.85 if bit in (1, 2, 4) else 0.1
        flags |= np.where(rng.random((n, levels)) < p, np.uint64(bit), np.uint64(0))
    frames = rng.integers(1, 1 << 20, (n, levels)).astype(np.uint64) << np.uint64(12)
    entries = flags | frames
    if paging == "pae":
        # PDPTEs mostly clean (a reserved bit is #GP), sometimes not
        clean = rng.random(n) < 0.8
        entries[:, 0] = np.where(clean, entries[:, 0] & ~np.uint64(0xFFF0_0000_0000_01E6), entries[:, 0])
    cr0 = CR0_PE | CR0_PG | np.where(rng.random(n) < 0.5, CR0_WP, 0).astype(np.uint64)
    cr4 = np.full(n, CR4_PAE if paging == "pae" else 0, dtype=np.uint64)
    for bit in (CR4_SMEP, CR4_SMAP, CR4_PKE, CR4_PSE):
        cr4 |= np.where(rng.random(n) < (0.8 if bit == CR4_PSE else 0.5), bit, 0).astype(np.uint64)
    efer = np.where(rng.random(n) < 0.6, EFER_NXE, 0).astype(np.uint64)
    pkru = rng.integers(0, 2**32, n, dtype=np.uint64)
    acc = rng.integers(0, 3, n).astype(np.uint8)
    cpl = np.where(rng.random(n) < 0.5, 3, 0).astype(np.uint8)
    ac = rng.integers(0, 2, n).astype(np.uint8)
    la = rng.integers(0, 1 << 32, n, dtype=np.uint64) & ~np.uint64(7)
    return entries, (cr0, cr4, efer, pkru), acc, cpl, ac, la


def compare(paging, seed, maxphy, batch=walk_paths_legacy):
    rng = np.random.default_rng(seed)
    n = 400
    entries, regs, acc, cpl, ac, la = draw(rng, paging, n)
    r = batch(entries, la, Modes.from_regs(*regs), acc, cpl, ac, paging=paging, maxphy=maxphy,
              pse=(regs[1] & np.uint64(CR4_PSE)) != 0)
    for i in range(n):
        mode = Mode(int(regs[0][i]), int(regs[1][i]), int(regs[2][i]), int(regs[3][i]), maxphy)
        want = scalar(paging, [int(x) for x in entries[i]], int(la[i]), mode, int(acc[i]), int(cpl[i]), int(ac[i]))
        got = (bool(r.gp[i]), bool(r.fault[i]), int(r.errcode[i]), r.clause_of(i), int(r.pa[i]), int(r.ad[i]))
        assert got == want, (i, hex(int(la[i])), [hex(int(x)) for x in entries[i]], mode)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([32, 36, 40, 46]))
def test_32bit_batch_equals_scalar(seed, maxphy) -> None:
    compare("32bit", seed, maxphy)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([36, 40, 46, 52]))
def test_pae_batch_equals_scalar(seed, maxphy) -> None:
    compare("pae", seed, maxphy)


def test_the_worked_examples() -> None:
    """32-bit: a 4 MiB PDE maps la 0x401008 at 0x801008; bit 21 set is a reserved-bit #PF (0xd at CPL 3);
    bit 13 is pa bit 32 (PSE-36).  PAE: R/W set in a present PDPTE is #GP at MOV CR3."""
    regs32 = [np.array([v], dtype=np.uint64) for v in (CR0_PE | CR0_PG, CR4_PSE, 0, 0)]
    la = np.array([0x401008], dtype=np.uint64)
    for pde, fault, code, pa in ((0x008000E7, False, 0, 0x801008), (0x00A000E7, True, 0xD, 0),
                                 (0x008020E7, False, 0, 0x1_0080_1008)):
        r = walk_paths_legacy(np.array([[pde, 0]], dtype=np.uint64), la, Modes.from_regs(*regs32), 0, 3, 0,
                              paging="32bit", maxphy=40, pse=True)
        assert (bool(r.fault[0]), int(r.errcode[0]), int(r.pa[0])) == (fault, code, pa)
    regs = [np.array([v], dtype=np.uint64) for v in (CR0_PE | CR0_PG, CR4_PAE, EFER_NXE, 0)]
    r = walk_paths_legacy(np.array([[0x3001 | 2, 0x4007, 0x5007]], dtype=np.uint64), la, Modes.from_regs(*regs),
                          0, 3, 0, paging="pae", maxphy=40)
    assert r.gp[0] and r.clause_of(0) == "sdm.pae.pdpte.rsvd-gp"


def _no_pdpte_gp(entries, la, modes, acc, cpl, ac, *, paging, maxphy, pse=True):
    """A mutant: PAE PDPTE reserved bits ignored (as a walker without PDPTE registers might)."""
    e = np.array(entries, dtype=np.uint64)
    e[:, 0] &= ~np.uint64(0xFFF0_0000_0000_01E6)
    return walk_paths_legacy(e, la, modes, acc, cpl, ac, paging=paging, maxphy=maxphy, pse=pse)


def _pse_ignored(entries, la, modes, acc, cpl, ac, *, paging, maxphy, pse=True):
    """A mutant: CR4.PSE ignored (every PDE with PS = 1 maps 4 MiB)."""
    return walk_paths_legacy(entries, la, modes, acc, cpl, ac, paging=paging, maxphy=maxphy, pse=True)


@pytest.mark.parametrize("paging, mutant", [("pae", _no_pdpte_gp), ("32bit", _pse_ignored)])
def test_the_comparison_catches_a_mutant(paging, mutant) -> None:
    with pytest.raises(AssertionError):
        compare(paging, 7, 40, batch=mutant)
