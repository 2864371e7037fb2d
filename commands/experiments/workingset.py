"""Experiment: Denning's working-set size |W(t, τ)| over time, measured through the os model.

``run(out_dir)`` drives the os-layer reference model (``model.mm``) like a target
would be driven: one process maps 64 pages and loads from them following a phased
reference string (three phases: a 6-page loop, a 20-page scan, a 10-page hot set
with 10% strays); after every reference it asks the model ``wss(tau)`` for three
window sizes.  It prints a table at sample times, writes a plot of |W(t, τ)| over
virtual time and returns the numbers.

What it shows (clause ``seed.wss.working-set-over-time``, after ``seed.wss.denning``):
|W(t, τ)| is monotone in τ at every t, sits at each phase's locality size once τ
covers the phase's loop, and spikes at phase changes as the old locality ages out
of the window.  The model's answers are checked against W(t, τ) computed directly
from the reference string (they must be equal).
"""

from __future__ import annotations

import random
from typing import Any

from memspec.consts import CONSTANTS
from memspec.program import Call, Int
from memspec.targets.model import ModelSession

from .tlb import plot_lines

TAUS = (10, 50, 200)
PAGES = 64
BASE_FLAGS = ("PROT_READ|PROT_WRITE", "MAP_PRIVATE|MAP_ANONYMOUS")


def reference_string(seed: int = 5) -> list[int]:
    rng = random.Random(seed)
    refs = [i % 6 for i in range(300)]                                  # phase 1: a 6-page loop
    refs += [6 + i % 20 for i in range(300)]                            # phase 2: a 20-page scan
    refs += [30 + rng.randrange(10) if rng.random() < 0.9 else rng.randrange(PAGES) for _ in range(300)]
    return refs


def direct_wss(refs: list[int], t: int, tau: int) -> int:
    """|W(t, τ)| from the definition: distinct pages among references t-τ+1 .. t (1-based time)."""
    return len(set(refs[max(0, t - tau):t]))


def _v(name: str) -> int:
    v = 0
    for n in name.split("|"):
        v |= CONSTANTS[n]
    return v


def measure(refs: list[int]) -> dict[int, list[int]]:
    s = ModelSession("os")
    o = s.call(Call("mmap", ()), (0, PAGES * 4096, _v(BASE_FLAGS[0]), _v(BASE_FLAGS[1]), -1, 0))
    if not o.ok or o.value is None:
        raise AssertionError(f"the os model refused the mapping: {o.describe()}")
    base = o.value
    out: dict[int, list[int]] = {tau: [] for tau in TAUS}
    for p in refs:
        r = s.call(Call("load", (Int(base + 4096 * p),)), (base + 4096 * p,))
        if not r.ok:
            raise AssertionError(f"load of page {p} failed in the model: {r.describe()}")
        for tau in TAUS:
            out[tau].append(s.call(Call("wss", (Int(tau),)), (tau,)).value or 0)
    return out


def run(out_dir: str) -> dict[str, Any]:
    """Print the table, write the plot into ``out_dir``; return every number."""
    refs = reference_string()
    w = measure(refs)
    mismatches = [(t, tau) for tau in TAUS for t in range(1, len(refs) + 1)
                  if w[tau][t - 1] != direct_wss(refs, t, tau)]
    monotone = all(w[TAUS[i]][t] <= w[TAUS[i + 1]][t] for i in range(len(TAUS) - 1) for t in range(len(refs)))
    print(f"|W(t, tau)| from the os model (wss), {len(refs)} references over {PAGES} pages in three phases")
    print(f"{'t':>5} {'phase':>6} " + " ".join(f"{'tau=' + str(t):>8}" for t in TAUS))
    for t in list(range(25, len(refs) + 1, 75)) + [len(refs)]:
        print(f"{t:>5} {1 + (t - 1) // 300:>6} " + " ".join(f"{w[tau][t - 1]:>8}" for tau in TAUS))
    settled = {ph: {tau: w[tau][300 * ph + 290 - 1] for tau in TAUS} for ph in range(3)}
    print("seed.wss.working-set-over-time: seed cites Denning's working set (pages referenced in a window); "
          f"model at the end of each phase (tau=50): {settled[0][50]}, {settled[1][50]}, {settled[2][50]} pages "
          f"(locality sizes 6, 20, ~10 plus strays); monotone in tau: {monotone}; equal to the definition at every t: "
          f"{not mismatches}")
    plot = plot_lines(out_dir, "working_set", "Working-set size |W(t, tau)| over virtual time (os model)",
                      "virtual time t", "|W(t, tau)| pages",
                      [(f"tau = {tau}", list(range(1, len(refs) + 1)), w[tau]) for tau in TAUS])
    print(f"\nplot: {plot}")
    return {"wss": w, "refs": refs, "monotone": monotone, "mismatches": mismatches, "settled": settled, "plot": plot}
