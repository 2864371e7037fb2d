"""Experiment: page-replacement fault counts -- OPT, LRU, clock (second chance) and FIFO.

``run(out_dir)`` prints two tables, writes a plot and returns the numbers:

* **Belady's anomaly** on the classic reference string 1,2,3,4,1,2,5,1,2,3,4,5:
  FIFO faults 9 times with 3 frames and 10 times with 4 (clause
  ``belady.fifo-anomaly``); OPT, LRU and clock never fault more with more frames
  here (OPT and LRU are stack algorithms; clock is not in general);
* **a locality workload** -- a seeded reference string of 3000 references over 64
  pages in phases (80% of references to a phase's 8-page hot set): faults per
  algorithm and frame count.  OPT (Belady's MIN) is the lower bound; the seed says
  Linux approximates LRU with a clock over the MMU's access bits (clause
  ``seed.replacement.lru-clock``), and the table shows how close clock comes.

The clock is the second-chance rule of ``seed.swap.clock-second-chance``: the hand
skips (and clears) a referenced frame once and evicts the first unreferenced one.

Worked example: ``fifo([1,2,3,4,1,2,5,1,2,3,4,5], 3) == 9`` and ``... 4) == 10``.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from typing import Any, Sequence

from .tlb import plot_lines

BELADY = (1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5)


def fifo(refs: Sequence[int], frames: int) -> int:
    """Faults of FIFO: evict the page loaded longest ago."""
    q: deque[int] = deque()
    resident: set[int] = set()
    faults = 0
    for p in refs:
        if p in resident:
            continue
        faults += 1
        if len(q) == frames:
            resident.discard(q.popleft())
        q.append(p)
        resident.add(p)
    return faults


def lru(refs: Sequence[int], frames: int) -> int:
    """Faults of LRU: evict the page referenced longest ago."""
    od: OrderedDict[int, None] = OrderedDict()
    faults = 0
    for p in refs:
        if p in od:
            od.move_to_end(p)
            continue
        faults += 1
        if len(od) == frames:
            od.popitem(last=False)
        od[p] = None
    return faults


def clock(refs: Sequence[int], frames: int) -> int:
    """Faults of clock (second chance): a hit sets the frame's referenced bit; on a fault the hand
    clears set bits as it passes and replaces the first frame whose bit is clear."""
    slots: list[int | None] = [None] * frames
    ref = [False] * frames
    where: dict[int, int] = {}
    hand = 0
    faults = 0
    for p in refs:
        if p in where:
            ref[where[p]] = True
            continue
        faults += 1
        while slots[hand] is not None and ref[hand]:
            ref[hand] = False
            hand = (hand + 1) % frames
        old = slots[hand]
        if old is not None:
            del where[old]
        slots[hand] = p
        ref[hand] = False        # a new page starts unreferenced (the fault itself does not count)
        where[p] = hand
        hand = (hand + 1) % frames
    return faults


def opt(refs: Sequence[int], frames: int) -> int:
    """Faults of OPT (Belady's MIN): evict the page whose next use is farthest away (or never)."""
    nxt: list[int] = [0] * len(refs)
    last: dict[int, int] = {}
    for i in range(len(refs) - 1, -1, -1):
        nxt[i] = last.get(refs[i], 1 << 60)
        last[refs[i]] = i
    resident: dict[int, int] = {}     # page -> index of its next use
    faults = 0
    for i, p in enumerate(refs):
        if p in resident:
            resident[p] = nxt[i]
            continue
        faults += 1
        if len(resident) == frames:
            victim = max(resident, key=resident.__getitem__)
            del resident[victim]
        resident[p] = nxt[i]
    return faults


ALGORITHMS = {"OPT": opt, "LRU": lru, "clock": clock, "FIFO": fifo}


def locality_string(n: int = 3000, pages: int = 64, hot: int = 8, phase: int = 500, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % phase == 0:
            base = rng.randrange(pages)
        if rng.random() < 0.8:
            out.append((base + rng.randrange(hot)) % pages)
        else:
            out.append(rng.randrange(pages))
    return out


def run(out_dir: str) -> dict[str, Any]:
    """Print the tables, write the plot into ``out_dir``; return every number."""
    belady = {name: {f: alg(BELADY, f) for f in range(1, 7)} for name, alg in ALGORITHMS.items()}
    print("faults on 1,2,3,4,1,2,5,1,2,3,4,5")
    print(f"{'frames':>6} " + " ".join(f"{n:>6}" for n in ALGORITHMS))
    for f in range(1, 7):
        print(f"{f:>6} " + " ".join(f"{belady[n][f]:>6}" for n in ALGORITHMS))
    anomaly = belady["FIFO"][4] > belady["FIFO"][3]
    print(f"belady.fifo-anomaly: Belady et al. (1969): FIFO 9 faults with 3 frames, 10 with 4; "
          f"model: {belady['FIFO'][3]} and {belady['FIFO'][4]} -> anomaly {'reproduced' if anomaly else 'NOT reproduced'}")
    refs = locality_string()
    frames = [2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64]
    work = {name: [alg(refs, f) for f in frames] for name, alg in ALGORITHMS.items()}
    print(f"\nfaults on a phased locality string ({len(refs)} references, 64 pages, 8-page hot sets)")
    print(f"{'frames':>6} " + " ".join(f"{n:>6}" for n in ALGORITHMS) + f" {'clock/OPT':>10}")
    for i, f in enumerate(frames):
        print(f"{f:>6} " + " ".join(f"{work[n][i]:>6}" for n in ALGORITHMS) +
              f" {work['clock'][i] / max(work['OPT'][i], 1):>10.2f}")
    never_below_opt = all(work[n][i] >= work["OPT"][i] for n in ALGORITHMS for i in range(len(frames)))
    at8 = frames.index(8)
    print(f"seed.replacement.lru-clock: seed says Linux approximates LRU with a clock over access bits; model at 8 "
          f"frames: OPT {work['OPT'][at8]}, LRU {work['LRU'][at8]}, clock {work['clock'][at8]}, FIFO {work['FIFO'][at8]} "
          f"faults (clock within {100 * (work['clock'][at8] - work['LRU'][at8]) / work['LRU'][at8]:+.1f}% of LRU; "
          f"OPT is a lower bound everywhere: {never_below_opt})")
    plot = plot_lines(out_dir, "replacement_faults", "Page faults by replacement policy (phased locality string)",
                      "frames", "faults", [(n, frames, work[n]) for n in ALGORITHMS])
    print(f"\nplot: {plot}")
    return {"belady": belady, "anomaly": anomaly, "frames": frames, "locality": work,
            "opt_lower_bound": never_below_opt, "plot": plot}
