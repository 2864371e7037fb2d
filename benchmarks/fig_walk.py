"""walk_batch_vs_numpy: addresses translated per second by the model's walker vs a bare numpy walk.

The page tables map 4 GiB with 4 KiB pages (PML4 -> one PDPT -> 4 PDs -> 2048 PTs),
held as one numpy array of 64-bit words standing for physical memory.  The
addresses are 1M random user addresses in that range (read accesses at CPL 3).

Denominator: a bare numpy 4-level index walk: per level, index bits of every
address, gather the entries, check P, take the next table's address.
Numerator: the model's batch translation path (``walk_batch`` in ``model/walk.py``)
if it has one; until then the model's scalar ``walk`` + ``check_access`` per
address over a sample of the addresses (the row's note says so).
"""

from __future__ import annotations

import time

import numpy as np

from memspec.commands.bench import Pair

NAME = "walk_batch_vs_numpy"
GOAL = 0.5
UNIT = "translations/s"
NUMERATOR = "addresses translated/s by the model's batch path (1M addresses)"
DENOMINATOR = "a bare numpy 4-level index walk over the same addresses"

PAGE = 4096
P, RW, US = 1, 2, 4
ADDR = 0x000F_FFFF_FFFF_F000
ROOT, PDPT, PD0, PT0 = 1, 2, 3, 7          # page numbers of the tables in ``mem``
N_PT = 2048


def tables() -> np.ndarray:
    words = (PT0 + N_PT) * (PAGE // 8)
    mem = np.zeros(words, dtype=np.uint64)
    f = np.uint64(P | RW | US)
    mem[ROOT * 512] = np.uint64(PDPT * PAGE) | f
    for k in range(4):
        mem[PDPT * 512 + k] = np.uint64((PD0 + k) * PAGE) | f
    pts = np.arange(N_PT, dtype=np.uint64)
    mem[PD0 * 512 + np.arange(N_PT)] = (pts + np.uint64(PT0)) * np.uint64(PAGE) | f
    # leaf i maps frame 0x100000 + i (frames beyond the tables; their contents are never read)
    leaves = np.arange(N_PT * 512, dtype=np.uint64)
    mem[PT0 * 512:(PT0 + N_PT) * 512] = (leaves + np.uint64(0x100000)) * np.uint64(PAGE) | f
    return mem


def numpy_walk(mem: np.ndarray, root: int, la: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    table = np.full(la.shape, root, dtype=np.uint64)
    ok = np.ones(la.shape, dtype=bool)
    mask = np.uint64(ADDR)
    for shift in (39, 30, 21, 12):
        idx = (la >> np.uint64(shift)) & np.uint64(0x1FF)
        e = mem[((table | (idx << np.uint64(3))) >> np.uint64(3)).astype(np.intp)]
        ok &= (e & np.uint64(P)) != 0
        table = e & mask
    return table | (la & np.uint64(PAGE - 1)), ok


def setup(quick: bool) -> Pair:
    from memspec.model import walk as W
    from memspec.model.pte import CR0_PE, CR0_PG, CR0_WP, CR4_PAE, EFER_LMA, EFER_LME, EFER_NXE, Mode
    mem = tables()
    n = 1 << 20
    la = np.random.default_rng(12).integers(0, 4 << 30, n, dtype=np.uint64)
    mode = Mode(cr0=CR0_PE | CR0_PG | CR0_WP, cr4=CR4_PAE, efer=EFER_LME | EFER_LMA | EFER_NXE)
    root = ROOT * PAGE
    sample = [int(x) for x in la[: (5_000 if quick else 20_000)]]
    want, _ = numpy_walk(mem, root, la[: len(sample)])

    def read(pa: int) -> int:
        return int(mem[pa >> 3])

    batch = getattr(W, "walk_batch", None)
    if batch is not None:
        def model_rate() -> float:
            t0 = time.perf_counter()
            batch(mem, mode, root, la)
            return n / (time.perf_counter() - t0)
        note = "the model's walk_batch over all 1M addresses"
    else:
        def model_rate() -> float:
            t0 = time.perf_counter()
            for i, a in enumerate(sample):
                path = W.walk(read, mode, root, a, 0, 3)
                fault, _ = W.check_access(path, mode, a, 0, 3, 0)
                if fault is not None or path.pa(a) != int(want[i]):
                    raise AssertionError(f"model walk disagrees with the numpy walk at {a:#x}")
            return len(sample) / (time.perf_counter() - t0)
        note = (f"model/walk.py has no batch path yet: the numerator is the scalar walk() + check_access() "
                f"per address over {len(sample):,} of the addresses")

    def numpy_rate() -> float:
        t0 = time.perf_counter()
        numpy_walk(mem, root, la)
        return n / (time.perf_counter() - t0)

    return Pair(model_rate, numpy_rate, note=note)
