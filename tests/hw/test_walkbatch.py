"""walk_batch (numpy) against the scalar walk + check_access: the same SDM rules on random tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model.pte import (CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PKE, CR4_SMAP, CR4_SMEP, EFER_LMA,
                               EFER_LME, EFER_NXE, EXEC, READ, WRITE, Mode)
from memspec.model.walk import PageFault, check_access, walk
from memspec.model.walkbatch import CLAUSES, walk_batch

WORDS = 16 * 512            # 16 pages of physical memory hold every table
FLAGS = (1, 2, 4, 0x80, 0x100, 1 << 63, 1 << 59, 3 << 59, 1 << 45, 1 << 13, 1 << 22, 0x20, 0x40, 0xE00)


def scalar(mem, mode, root, la, acc, cpl, ac, page1g):
    def read(pa):
        return int(mem[pa >> 3]) if (pa >> 3) < mem.shape[0] else 0
    path = walk(read, mode, root, la, acc, cpl, page1g)
    if isinstance(path, PageFault):
        return True, path.errcode, path.clause, 0
    f, clause = check_access(path, mode, la, acc, cpl, ac)
    if f is not None:
        return True, f.errcode, f.clause, 0
    return False, 0, "", path.pa(la)


@st.composite
def machines(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mem = np.zeros(WORDS, dtype=np.uint64)
    # entries point at the 16 pages (so walks go on), with random flag bits, some beyond the memory
    frames = rng.integers(0, 18, WORDS).astype(np.uint64) << np.uint64(12)
    flags = np.zeros(WORDS, dtype=np.uint64)
    for bit in FLAGS:
        flags |= np.where(rng.random(WORDS) < (0.9 if bit in (1, 2, 4) else 0.08), np.uint64(bit & (2**64 - 1)), np.uint64(0))
    mem[:] = frames | flags
    cr4 = CR4_PAE | draw(st.sampled_from([0, CR4_SMEP, CR4_SMAP, CR4_PKE, CR4_SMEP | CR4_SMAP | CR4_PKE, CR4_LA57]))
    efer = EFER_LME | EFER_LMA | draw(st.sampled_from([0, EFER_NXE]))
    cr0 = CR0_PE | CR0_PG | draw(st.sampled_from([0, CR0_WP]))
    mode = Mode(cr0=cr0, cr4=cr4, efer=efer, pkru=draw(st.integers(0, 2**32 - 1)),
                maxphy=draw(st.sampled_from([36, 40, 46, 52])))
    la = rng.integers(0, 2**57, 300, dtype=np.uint64)
    return mem, mode, la


@settings(max_examples=60, deadline=None)
@given(machines(), st.sampled_from([READ, WRITE, EXEC]), st.sampled_from([0, 3]), st.integers(0, 1), st.booleans())
def test_batch_equals_scalar(m, acc, cpl, ac, page1g) -> None:
    mem, mode, la = m
    root = 0x1000
    r = walk_batch(mem, mode, root, la, acc, cpl, ac, page1g)
    for i, a in enumerate(la.tolist()):
        fault, code, clause, pa = scalar(mem, mode, root, a, acc, cpl, ac, page1g)
        assert bool(r.fault[i]) == fault, (hex(a), clause, r.clause_of(i))
        if fault:
            assert (int(r.errcode[i]), r.clause_of(i)) == (code, clause), hex(a)
        else:
            assert int(r.pa[i]) == pa and r.clause_of(i) == ""


def test_a_broken_batch_is_caught() -> None:
    """The property above can fail: a batch that ignores U/S at the PDE disagrees on some machine."""
    mem = np.zeros(WORDS, dtype=np.uint64)
    mem[0x1000 >> 3] = 0x2000 | 7
    mem[0x2000 >> 3] = 0x3000 | 7
    mem[0x3000 >> 3] = 0x4000 | 3          # PDE without U/S
    mem[0x4000 >> 3] = 0x5000 | 7
    mode = Mode(cr0=CR0_PE | CR0_PG | CR0_WP, cr4=CR4_PAE, efer=EFER_LME | EFER_LMA | EFER_NXE)
    r = walk_batch(mem, mode, 0x1000, np.array([0x0], dtype=np.uint64), READ, 3)
    assert r.fault[0] and r.clause_of(0) == "sdm.access.user-read-supervisor" and r.errcode[0] == 5
    assert scalar(mem, mode, 0x1000, 0, READ, 3, 0, True)[:3] == (True, 5, "sdm.access.user-read-supervisor")
    mem[0x3000 >> 3] |= 4                  # with U/S everywhere the read translates
    r = walk_batch(mem, mode, 0x1000, np.array([0x123], dtype=np.uint64), READ, 3)
    assert not r.fault[0] and r.pa[0] == 0x5123


def test_every_batch_clause_is_in_the_catalogue() -> None:
    from memspec.specs.catalogue import all_clauses
    cat = all_clauses()
    assert [c for c in CLAUSES if c and c not in cat] == []


@pytest.mark.parametrize("levels", [4, 5])
def test_large_batches_agree_with_the_bench_tables(levels) -> None:
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "fig_walk", os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "fig_walk.py"))
    fw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fw)
    mem = fw.tables()
    la = np.random.default_rng(3).integers(0, 4 << 30, 50_000, dtype=np.uint64)
    want, ok = fw.numpy_walk(mem, fw.ROOT * 4096, la)
    if levels == 4:
        mode = Mode(cr0=CR0_PE | CR0_PG | CR0_WP, cr4=CR4_PAE, efer=EFER_LME | EFER_LMA | EFER_NXE)
        r = walk_batch(mem, mode, fw.ROOT * 4096, la)
        assert ok.all() and not r.fault.any() and (r.pa == want).all()
    else:   # the same root as a PML5 table: its entry 0 is the PDPT pointer, so walks fail deeper
        mode = Mode(cr0=CR0_PE | CR0_PG | CR0_WP, cr4=CR4_PAE | CR4_LA57, efer=EFER_LME | EFER_LMA | EFER_NXE)
        r = walk_batch(mem, mode, fw.ROOT * 4096, la)
        for i in range(0, 50_000, 5000):
            assert bool(r.fault[i]) == scalar(mem, mode, fw.ROOT * 4096, int(la[i]), READ, 3, 0, True)[0]


@st.composite
def clean_machines(draw):
    """Tables where every walk completes with 4 KiB pages (the batch's fast path), rights random."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mem = np.zeros(8 * 512, dtype=np.uint64)
    # PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PTs 0x4000-0x7000: all 512 entries of each present
    for table, nxt in ((1, lambda i: 2), (2, lambda i: 3), (3, lambda i: 4 + i % 4), (4, None), (5, None), (6, None),
                       (7, None)):
        for i in range(512):
            frame = (nxt(i) if nxt else 0x100 + i) << 12
            flags = 1 | int(rng.integers(0, 2)) * 2 | int(rng.integers(0, 8) != 0) * 4
            if rng.random() < 0.1:
                flags |= 1 << 63
            if nxt is None:
                flags |= int(rng.integers(0, 16)) << 59
            mem[table * 512 + i] = frame | flags
    mode = Mode(cr0=CR0_PE | CR0_PG | draw(st.sampled_from([0, CR0_WP])),
                cr4=CR4_PAE | draw(st.sampled_from([0, CR4_SMEP, CR4_SMAP, CR4_PKE, CR4_SMEP | CR4_SMAP | CR4_PKE])),
                efer=EFER_LME | EFER_LMA | EFER_NXE, pkru=draw(st.integers(0, 2**32 - 1)))
    la = rng.integers(0, 1 << 30, 400, dtype=np.uint64)
    return mem, mode, la


@settings(max_examples=40, deadline=None)
@given(clean_machines(), st.sampled_from([READ, WRITE, EXEC]), st.sampled_from([0, 3]), st.integers(0, 1))
def test_the_fast_path_equals_scalar(m, acc, cpl, ac) -> None:
    from memspec.model import walkbatch
    mem, mode, la = m
    assert walkbatch._clean_walk(mem, mode, 0x1000, la) is not None      # the fast path is the one taken
    r = walk_batch(mem, mode, 0x1000, la, acc, cpl, ac)
    for i, a in enumerate(la.tolist()):
        fault, code, clause, pa = scalar(mem, mode, 0x1000, a, acc, cpl, ac, True)
        assert (bool(r.fault[i]), int(r.errcode[i]), r.clause_of(i), int(r.pa[i])) == (fault, code, clause, pa), hex(a)
