"""walk_batch and walk_paths with a mode, access type, CPL and AC per access, against the scalar walk
(walk + check_access, the canonical check and §4.8's A/D updates) on random tables and modes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model.pte import (CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PKE, CR4_SMAP, CR4_SMEP, EFER_LMA,
                               EFER_LME, EFER_NXE, WRITE, Mode)
from memspec.model.walk import PageFault, canonical, check_access, walk
from memspec.model.walkbatch import Modes, walk_batch, walk_paths

WORDS = 16 * 512
FLAGS = (1, 2, 4, 0x20, 0x40, 0x80, 0x100, 1 << 63, 1 << 59, 3 << 59, 1 << 45, 1 << 51, 1 << 13, 1 << 22, 0xE00)


def scalar(read, mode, root, la, acc, cpl, ac, page1g):
    """(gp, fault, errcode, clause, pa, ad, pk_also) by the scalar reference (pk_also: the hw model's
    Paging._pk_also for a paging-rights #PF)."""
    if not canonical(la, mode):
        return True, False, 0, "sdm.canonical.gp", 0, 0, False
    path = walk(read, mode, root, la, acc, cpl, page1g)
    if isinstance(path, PageFault):
        return False, True, path.errcode, path.clause, 0, 0, False
    f, _ = check_access(path, mode, la, acc, cpl, ac)
    if f is not None:
        rights = (mode.pkru >> (2 * path.pkey)) & 3
        pk = mode.pke and path.user and acc != 2 and bool(rights & 1 or (acc == WRITE and rights & 2 and
                                                                          (cpl == 3 or mode.wp)))
        return False, True, f.errcode, f.clause, 0, 0, pk and not f.clause.startswith("sdm.pkeys.")
    ad = 0
    for u in path.uses:
        d = bool(u.value & 0x40) or (u is path.uses[-1] and acc == WRITE)
        ad |= (1 | (int(d) << 1)) << (2 * (u.level - 1))
    return False, False, 0, "", path.pa(la), ad, False


@st.composite
def machines(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mem = np.zeros(WORDS, dtype=np.uint64)
    frames = rng.integers(0, 18, WORDS).astype(np.uint64) << np.uint64(12)
    flags = np.zeros(WORDS, dtype=np.uint64)
    for bit in FLAGS:
        p = 0.9 if bit in (1, 2, 4) else 0.08
        flags |= np.where(rng.random(WORDS) < p, np.uint64(bit & (2**64 - 1)), np.uint64(0))
    mem[:] = frames | flags
    n = 300
    la57 = draw(st.booleans())
    cr0 = CR0_PE | CR0_PG | np.where(rng.random(n) < 0.5, CR0_WP, 0).astype(np.uint64)
    cr4 = np.full(n, CR4_PAE | (CR4_LA57 if la57 else 0), dtype=np.uint64)
    for bit in (CR4_SMEP, CR4_SMAP, CR4_PKE):
        cr4 |= np.where(rng.random(n) < 0.5, bit, 0).astype(np.uint64)
    efer = EFER_LME | EFER_LMA | np.where(rng.random(n) < 0.6, EFER_NXE, 0).astype(np.uint64)
    pkru = rng.integers(0, 2**32, n, dtype=np.uint64)
    acc = rng.integers(0, 3, n).astype(np.uint8)
    cpl = np.where(rng.random(n) < 0.5, 3, 0).astype(np.uint8)
    ac = rng.integers(0, 2, n).astype(np.uint8)
    la = rng.integers(0, 2**57, n, dtype=np.uint64)
    # a third of the addresses sign-extended (canonical), the rest mostly not
    sign = rng.random(n) < 0.3
    top = 56 if la57 else 47
    la = np.where(sign, la & np.uint64((1 << top) - 1), la)
    maxphy = draw(st.sampled_from([36, 40, 46, 48, 52]))
    return mem, (cr0, cr4, efer, pkru), acc, cpl, ac, la, 5 if la57 else 4, maxphy


@settings(max_examples=40, deadline=None)
@given(machines(), st.booleans())
def test_per_access_modes_equal_scalar(m, page1g) -> None:
    mem, regs, acc, cpl, ac, la, levels, maxphy = m
    modes = Modes.from_regs(*regs)
    root = 0x1000
    r = walk_batch(mem, modes, root, la, acc, cpl, ac, page1g, levels=levels, maxphy=maxphy, canonical_check=True)

    def read(pa):
        return int(mem[pa >> 3]) if (pa >> 3) < mem.shape[0] else 0

    for i in range(la.shape[0]):
        mode = Mode(int(regs[0][i]), int(regs[1][i]), int(regs[2][i]), int(regs[3][i]), maxphy)
        want = scalar(read, mode, root, int(la[i]), int(acc[i]), int(cpl[i]), int(ac[i]), page1g)
        got = (bool(r.gp[i]), bool(r.fault[i]), int(r.errcode[i]), r.clause_of(i), int(r.pa[i]), int(r.ad[i]),
               bool(r.pk_also[i]))
        assert got == want, (i, hex(int(la[i])), mode)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([4, 5]), st.sampled_from([40, 48, 52]))
def test_path_form_equals_scalar(seed, levels, maxphy) -> None:
    """walk_paths: every access with its own tree (a chain of private tables), as a sweep builds them."""
    rng = np.random.default_rng(seed)
    n = 400
    flags = np.zeros((n, levels), dtype=np.uint64)
    for bit in FLAGS:
        p = 0.85 if bit in (1, 2, 4) else 0.1
        flags |= np.where(rng.random((n, levels)) < p, np.uint64(bit & (2**64 - 1)), np.uint64(0))
    cr0 = CR0_PE | CR0_PG | np.where(rng.random(n) < 0.5, CR0_WP, 0).astype(np.uint64)
    cr4 = np.full(n, CR4_PAE | (CR4_LA57 if levels == 5 else 0), dtype=np.uint64)
    for bit in (CR4_SMEP, CR4_SMAP, CR4_PKE):
        cr4 |= np.where(rng.random(n) < 0.5, bit, 0).astype(np.uint64)
    efer = EFER_LME | EFER_LMA | np.where(rng.random(n) < 0.6, EFER_NXE, 0).astype(np.uint64)
    pkru = rng.integers(0, 2**32, n, dtype=np.uint64)
    acc = rng.integers(0, 3, n).astype(np.uint8)
    cpl = np.where(rng.random(n) < 0.5, 3, 0).astype(np.uint8)
    ac = rng.integers(0, 2, n).astype(np.uint8)
    la = rng.integers(0, 1 << (56 if levels == 5 else 47), n, dtype=np.uint64) & ~np.uint64(7)
    la[rng.random(n) < 0.1] |= np.uint64(1 << 60)
    # item i's tables at (i * levels + k + 1) pages; the leaf frame is the flags' own frame bits
    entries = flags.copy()
    for k in range(levels - 1):
        entries[:, k] = (flags[:, k] & ~np.uint64(((1 << 52) - 1) & ~0xFFF)) | \
            ((np.arange(n, dtype=np.uint64) * np.uint64(levels) + np.uint64(k + 2)) << np.uint64(12))
    r = walk_paths(entries, la, Modes.from_regs(cr0, cr4, efer, pkru), acc, cpl, ac, levels=levels, maxphy=maxphy)
    for i in range(n):
        root = (i * levels + 1) << 12
        mem = {}
        table = root
        for k in range(levels):
            level = levels - k
            mem[table + 8 * ((int(la[i]) >> (12 + 9 * (level - 1))) & 0x1FF)] = int(entries[i, k])
            table = ((i * levels + k + 2) << 12)
        mode = Mode(int(cr0[i]), int(cr4[i]), int(efer[i]), int(pkru[i]), maxphy)
        want = scalar(lambda pa: mem.get(pa, 0), mode, root, int(la[i]), int(acc[i]), int(cpl[i]), int(ac[i]), True)
        got = (bool(r.gp[i]), bool(r.fault[i]), int(r.errcode[i]), r.clause_of(i), int(r.pa[i]), int(r.ad[i]),
               bool(r.pk_also[i]))
        assert got == want, (i, hex(int(la[i])), [hex(int(x)) for x in entries[i]], mode)


def test_a_batch_that_ignores_smap_is_caught() -> None:
    """The properties above can fail: the SMAP rule is what decides this access."""
    entries = np.array([[0x2000 | 0x7, 0x3000 | 0x7, 0x4000 | 0x7, 0x300000 | 0x7]], dtype=np.uint64)
    regs = (np.array([CR0_PE | CR0_PG | CR0_WP], dtype=np.uint64), np.array([CR4_PAE | CR4_SMAP], dtype=np.uint64),
            np.array([EFER_LME | EFER_LMA | EFER_NXE], dtype=np.uint64), np.array([0], dtype=np.uint64))
    r = walk_paths(entries, np.array([0x8], dtype=np.uint64), Modes.from_regs(*regs), 0, 0, 0, levels=4, maxphy=48)
    assert r.fault[0] and r.clause_of(0) == "sdm.access.smap-read" and r.errcode[0] == 1
    r = walk_paths(entries, np.array([0x8], dtype=np.uint64), Modes.from_regs(*regs), 0, 0, 1, levels=4, maxphy=48)
    assert not r.fault[0] and r.pa[0] == 0x300008 and r.ad[0] == 0b01010101    # AC = 1: allowed, A everywhere
