"""Experiment: TLB reach with 4 KiB, 2 MiB and 1 GiB pages, and TLB misses over a working-set sweep.

``run(out_dir)`` prints two tables and writes a plot (PNG with matplotlib if it is
installed, else an SVG drawn here), and returns the numbers:

* **reach** -- what a TLB of E entries covers with each page size (E x page size),
  the ratio between consecutive sizes (the seed's "factor of 512", clause
  ``seed.tlb.huge-512x``), the entries a working set needs and the paging-structure
  references one miss costs (4, 3, 2: the levels the hw walker reads; ``model.walk``);
* **sweep** -- a fully associative LRU TLB of ``ENTRIES`` entries under uniformly
  random 8-byte loads over working sets from 64 KiB to 16 GiB: misses per 1000
  loads and page-walk memory references per 1000 loads, per page size (clause
  ``seed.tlb.large-working-set-misses``).  The miss curve bends where the working
  set passes the reach, 512 times later for each larger page size.

``plot_lines`` is the plot writer every experiment of this package shares.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from memspec.model.pte import CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME, Mode, Pte
from memspec.model.walk import Path, walk

PAGE_SIZES = {"4 KiB": 1 << 12, "2 MiB": 1 << 21, "1 GiB": 1 << 30}
ENTRIES = 64                 # a first-level data TLB (the sweep)
STLB_ENTRIES = 1536          # a second-level TLB of a recent x86 core (the reach table)
LOADS = 20000
SEED_CLAIM = 512


# -- plots -------------------------------------------------------------------------------------

_COLOURS = ("crimson", "steelblue", "darkgreen", "darkorange", "purple", "black")


def plot_lines(out_dir: str, name: str, title: str, xlabel: str, ylabel: str,
               series: Sequence[tuple[str, Sequence[float], Sequence[float]]], logx: bool = False,
               logy: bool = False, xticks: Callable[[float], str] | None = None) -> str:
    """Write a line chart ``name``.png (matplotlib) or ``name``.svg (drawn here); return its path.
    ``xticks`` formats the x values (e.g. bytes as KiB/MiB/GiB): ticks then sit at the data's own x
    values.  The legend sits right of the plot area, never over the lines."""
    os.makedirs(out_dir, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = os.path.join(out_dir, name + ".svg")
        _svg_lines(path, title, xlabel, ylabel, series, logx, logy, xticks)
        return path
    path = os.path.join(out_dir, name + ".png")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (label, xs, ys), colour in zip(series, _COLOURS * 4):
        ax.plot(xs, ys, label=label, color=colour, marker="o", ms=3)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("symlog" if logy else "linear")
    if xticks is not None:
        ticks = _tick_values(sorted({x for _, xs, _ in series for x in xs}))
        ax.set_xticks(ticks, [xticks(t) for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _tick_values(xs: Sequence[float], most: int = 9) -> list[float]:
    """At most ``most`` of the data's x values, evenly spread, first and last included."""
    if len(xs) <= most:
        return list(xs)
    step = (len(xs) - 1) / (most - 1)
    return [xs[round(i * step)] for i in range(most)]


def _svg_lines(path: str, title: str, xlabel: str, ylabel: str,
               series: Sequence[tuple[str, Sequence[float], Sequence[float]]], logx: bool, logy: bool,
               xticks: Callable[[float], str] | None = None) -> None:
    w, h, pad = 760, 420, 64
    legend_w = 140                       # the legend's own column, right of the plot area

    def tx(v: float) -> float:
        return math.log10(v) if logx else v

    def ty(v: float) -> float:
        return math.log10(1 + v) if logy else v

    xs = [tx(x) for _, s, _ in series for x in s]
    ys = [ty(y) for _, _, s in series for y in s]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def px_of(x: float) -> float:
        return pad + (w - 2 * pad) * (tx(x) - x0) / (x1 - x0)

    def pt(x: float, y: float) -> str:
        return (f"{px_of(x):.1f},"
                f"{h - pad - (h - 2 * pad) * (ty(y) - y0) / (y1 - y0):.1f}")

    def fmt(v: float) -> str:
        return f"{v:.3g}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + legend_w}" height="{h}" font-family="sans-serif" '
           f'font-size="12">',
           f'<rect width="{w + legend_w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">{_esc(title)}</text>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 16}" text-anchor="middle">{_esc(xlabel)}'
           f'{" (log)" if logx and xticks is None else ""}</text>',
           f'<text x="16" y="{h / 2}" text-anchor="middle" transform="rotate(-90 16 {h / 2})">'
           f'{_esc(ylabel)}{" (log)" if logy else ""}</text>']
    for i in range(5):
        fx = x0 + (x1 - x0) * i / 4
        fy = y0 + (y1 - y0) * i / 4
        xv = 10 ** fx if logx else fx
        yv = 10 ** fy - 1 if logy else fy
        px = pad + (w - 2 * pad) * i / 4
        py = h - pad - (h - 2 * pad) * i / 4
        if xticks is None:
            out.append(f'<text x="{px:.1f}" y="{h - pad + 16}" text-anchor="middle">{fmt(xv)}</text>')
        out.append(f'<text x="{pad - 6}" y="{py + 4:.1f}" text-anchor="end">{fmt(yv)}</text>')
        out.append(f'<line x1="{pad}" y1="{py:.1f}" x2="{w - pad}" y2="{py:.1f}" stroke="#ddd"/>')
    if xticks is not None:
        for x in _tick_values(sorted({x for _, s, _ in series for x in s})):
            out.append(f'<text x="{px_of(x):.1f}" y="{h - pad + 16}" text-anchor="middle">{_esc(xticks(x))}</text>')
    for k, ((label, sx, sy), colour) in enumerate(zip(series, _COLOURS * 4)):
        pts = " ".join(pt(x, y) for x, y in zip(sx, sy))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{pts}"/>')
        ly = pad + 18 * k
        out.append(f'<line x1="{w - pad + 16}" y1="{ly - 4}" x2="{w - pad + 36}" y2="{ly - 4}" stroke="{colour}" '
                   f'stroke-width="2"/>')
        out.append(f'<text x="{w - pad + 42}" y="{ly}" text-anchor="start" fill="{colour}">{_esc(label)}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the numbers ------------------------------------------------------------------------------

def walk_refs(size: int) -> int:
    """Paging-structure reads of one TLB miss, from the hw walker itself: a 4-level walk to a page
    of ``size`` (4 KiB: PML4E, PDPTE, PDE, PTE; 2 MiB: no PTE; 1 GiB: no PDE either)."""
    mem = {0x200000: 0x201000 | Pte.P | Pte.RW, 0x201000: 0x202000 | Pte.P | Pte.RW,
           0x202000: 0x203000 | Pte.P | Pte.RW, 0x203000: 0x300000 | Pte.P | Pte.RW}
    if size == 1 << 30:
        mem[0x201000] = Pte.P | Pte.RW | Pte.PS
    elif size == 1 << 21:
        mem[0x202000] = Pte.P | Pte.RW | Pte.PS
    mode = Mode(CR0_PG | CR0_PE, CR4_PAE, EFER_LME | EFER_LMA)
    res = walk(lambda a: mem.get(a, 0), mode, 0x200000, 0, 0, 0)
    assert isinstance(res, Path) and res.size == size
    return len(res.uses)


def reach_table(entries: int = STLB_ENTRIES, working_set: int = 1 << 30) -> list[dict[str, Any]]:
    rows = []
    prev = None
    for name, size in PAGE_SIZES.items():
        reach = entries * size
        rows.append({"page": name, "page_bytes": size, "entries": entries, "reach_bytes": reach,
                     "ratio_to_smaller": reach // prev if prev else 1,
                     "entries_for_1GiB_working_set": max(1, working_set // size),
                     "refs_per_miss": walk_refs(size)})
        prev = reach
    return rows


def lru_misses(pages: np.ndarray, entries: int, warm: int = 0) -> int:
    """Misses of a fully associative LRU TLB over ``pages``, not counting the first ``warm`` loads."""
    tlb: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for i, p in enumerate(pages.tolist()):
        if p in tlb:
            tlb.move_to_end(p)
            continue
        misses += i >= warm
        tlb[p] = None
        if len(tlb) > entries:
            tlb.popitem(last=False)
    return misses


def sweep(entries: int = ENTRIES, loads: int = LOADS, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    sizes = [1 << k for k in range(16, 35)]          # 64 KiB .. 16 GiB
    rows = []
    for ws in sizes:
        addrs = rng.integers(0, ws // 8, size=loads, dtype=np.int64) * 8
        row: dict[str, Any] = {"working_set": ws}
        for name, size in PAGE_SIZES.items():
            pages = addrs // size
            m = lru_misses(np.concatenate([pages[: loads // 4], pages]), entries, warm=loads // 4)
            row[name] = round(1000 * m / loads, 2)
            row[name + " refs"] = round(1000 * m / loads * walk_refs(size), 1)
        rows.append(row)
    return rows


def _human(n: int) -> str:
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            v = n / (1 << k)
            return f"{v:g} {unit}"
    return f"{n} B"


def run(out_dir: str) -> dict[str, Any]:
    """Print the tables, write the plot into ``out_dir``; return every number."""
    reach = reach_table()
    rows = sweep()
    print(f"TLB reach with {STLB_ENTRIES} entries")
    print(f"{'page':>6} {'reach':>10} {'x smaller':>10} {'entries for 1 GiB':>18} {'refs/miss':>9}")
    for r in reach:
        print(f"{r['page']:>6} {_human(r['reach_bytes']):>10} {r['ratio_to_smaller']:>10} "
              f"{r['entries_for_1GiB_working_set']:>18} {r['refs_per_miss']:>9}")
    ratio = reach[1]["reach_bytes"] // reach[0]["reach_bytes"]
    print(f"seed.tlb.huge-512x: seed says 2 MB pages cut TLB pressure by a factor of {SEED_CLAIM}; "
          f"model: 2 MiB reach / 4 KiB reach = {ratio}, entries needed for 1 GiB: "
          f"{reach[0]['entries_for_1GiB_working_set']} -> {reach[1]['entries_for_1GiB_working_set']} "
          f"(x{reach[0]['entries_for_1GiB_working_set'] // reach[1]['entries_for_1GiB_working_set']})")
    print(f"\nTLB misses per 1000 random loads, {ENTRIES}-entry LRU TLB (walk references per 1000 in brackets)")
    print(f"{'working set':>12} " + " ".join(f"{n:>16}" for n in PAGE_SIZES))
    for r in rows:
        print(f"{_human(r['working_set']):>12} " + " ".join(
            f"{r[n]:>7.1f} [{r[n + ' refs']:>6.0f}]" for n in PAGE_SIZES))
    knee = {n: next((r["working_set"] for r in rows if r[n] > 100), None) for n in PAGE_SIZES}
    print("seed.tlb.large-working-set-misses: misses pass 10% at working sets of " +
          ", ".join(f"{_human(v) if v else '> 16 GiB'} ({n})" for n, v in knee.items()))
    plot = plot_lines(out_dir, "tlb_misses", f"TLB misses, {ENTRIES}-entry LRU TLB, random loads",
                      "working set", "misses per 1000 loads",
                      [(n, [r["working_set"] for r in rows], [r[n] for r in rows]) for n in PAGE_SIZES], logx=True,
                      xticks=_human)
    print(f"\nplot: {plot}")
    return {"reach": reach, "ratio_2m_4k": ratio, "ratio_1g_2m": reach[2]["reach_bytes"] // reach[1]["reach_bytes"],
            "sweep": rows, "knee": knee, "plot": plot, "seed_claim": SEED_CLAIM}
