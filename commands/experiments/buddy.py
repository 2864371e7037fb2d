"""Experiment: the buddy allocator's internal and external fragmentation, from the model.

``run(out_dir)`` prints a table and writes a plot (PNG with matplotlib if it is
installed, else an SVG drawn here) and returns the numbers:

* internal fragmentation per request size: the block order the buddy allocator
  must use and the bytes wasted; it reproduces the seed's figure: **a 5 KB
  request gets an 8 KB block, 3 KB wasted** (clause ``seed.buddy.internal-frag-5k-8k``);
* a fragmentation curve: a seeded churn of order-0..3 allocations and frees on
  one node of the model's machine; after each step, the free pages, the largest
  free order, and the unusable free space index for an order-4 (64 KiB) request
  (Gorman & Whitcroft's measure: 1 - free pages in blocks >= order / free pages).

Only model results are read: the experiment drives ``model.phys`` through its
``expect``/``apply`` interface like any target would be judged.
"""

from __future__ import annotations

import os
import random
from typing import Any

from memspec.model.buddy import PAGE, internal_waste, order_for
from memspec.model.phys import PhysModel
from memspec.model.frames import Machine
from memspec.records import Outcome

SIZES_KB = (1, 3, 4, 5, 6, 8, 9, 12, 17, 33, 65, 129, 1000, 2049, 4096)
CURVE_ORDER = 4


def internal_table() -> list[dict[str, int]]:
    rows = []
    for kb in SIZES_KB:
        size = kb * 1024
        order = order_for(size)
        rows.append({"request_bytes": size, "order": order, "block_bytes": PAGE << order,
                     "wasted_bytes": internal_waste(size)})
    return rows


def fragmentation_curve(steps: int = 6000, seed: int = 1, node_frames: int = 4096) -> list[dict[str, float]]:
    """Churn on a one-node machine: mostly allocate (order 0..3) until 90% is used, then
    free and allocate at random around that level, so that freed holes scatter."""
    m = PhysModel(Machine(node_frames=(node_frames,), dma_frames=0, distances=((10,),), reserved=()))
    rng = random.Random(seed)
    live: list[int] = []
    out = []
    for step in range(steps):
        used = node_frames - m.buddy.free_pages(0)
        if live and (used > 0.9 * node_frames or rng.random() < 0.3):
            pfn = live.pop(rng.randrange(len(live)))
            m.apply("main", "buddy_free", (pfn,), Outcome(value=0))
        else:
            order = rng.choice((0, 0, 0, 1, 1, 2, 3))
            args = (order, 0, 0, 5)
            exp = m.expect("main", "buddy_alloc", args)
            m.apply("main", "buddy_alloc", args, exp.default)
            if exp.default.ok and exp.default.value is not None and exp.default.value >= 0:
                live.append(exp.default.value)
        out.append({"step": step, "free_pages": m.buddy.free_pages(0), "largest_order": m.buddy.largest(0),
                    "unusable_index": round(m.buddy.external_fragmentation(CURVE_ORDER, 0), 4)})
        bad = m.invariants() if step % 100 == 0 else []
        if bad:
            raise AssertionError(f"model invariant broken during the experiment: {bad[0]}")
    return out


def _svg(curve: list[dict[str, float]], path: str) -> None:
    w, h, pad = 720, 360, 50
    n = len(curve)

    def xy(i: int, v: float, top: float) -> str:
        return f"{pad + (w - 2 * pad) * i / max(n - 1, 1):.1f},{h - pad - (h - 2 * pad) * v / top:.1f}"

    top_free = max(c["free_pages"] for c in curve) or 1
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="20" text-anchor="middle">Buddy allocator: external fragmentation under churn</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">step</text>',
        f'<text x="{pad - 8}" y="{pad}" text-anchor="end">1.0</text>',
        f'<text x="{pad - 8}" y="{h - pad}" text-anchor="end">0</text>',
        '<polyline fill="none" stroke="crimson" stroke-width="1.5" points="'
        + " ".join(xy(i, c["unusable_index"], 1.0) for i, c in enumerate(curve)) + '"/>',
        '<polyline fill="none" stroke="steelblue" stroke-width="1" points="'
        + " ".join(xy(i, c["free_pages"], top_free) for i, c in enumerate(curve)) + '"/>',
        f'<text x="{w - pad}" y="{pad - 8}" text-anchor="end" fill="crimson">unusable free index, order {CURVE_ORDER}</text>',
        f'<text x="{w - pad}" y="{pad + 8}" text-anchor="end" fill="steelblue">free pages (max {top_free})</text>',
        "</svg>",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _plot(curve: list[dict[str, float]], out_dir: str) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = os.path.join(out_dir, "buddy_fragmentation.svg")
        _svg(curve, path)
        return path
    path = os.path.join(out_dir, "buddy_fragmentation.png")
    fig, ax = plt.subplots(figsize=(8, 4))
    steps = [c["step"] for c in curve]
    ax.plot(steps, [c["unusable_index"] for c in curve], color="crimson", label=f"unusable free index (order {CURVE_ORDER})")
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(steps, [c["free_pages"] for c in curve], color="steelblue", lw=0.8, label="free pages")
    fig.legend(loc="upper right")
    ax.set_title("Buddy allocator: external fragmentation under churn")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(out_dir: str) -> dict[str, Any]:
    """Print the tables, write the plot into ``out_dir``; return every number."""
    os.makedirs(out_dir, exist_ok=True)
    table = internal_table()
    curve = fragmentation_curve()
    plot = _plot(curve, out_dir)
    five = next(r for r in table if r["request_bytes"] == 5 * 1024)
    print("internal fragmentation (buddy, 4 KiB pages)")
    print(f"{'request':>10} {'order':>5} {'block':>10} {'wasted':>10}")
    for r in table:
        print(f"{r['request_bytes']:>10} {r['order']:>5} {r['block_bytes']:>10} {r['wasted_bytes']:>10}")
    print(f"seed.buddy.internal-frag-5k-8k: 5 KB -> {five['block_bytes'] // 1024} KB block, "
          f"{five['wasted_bytes'] // 1024} KB wasted")
    marks = [c for c in curve if c["step"] % 500 == 0 or c["step"] == len(curve) - 1]
    print(f"\nexternal fragmentation under churn (order-{CURVE_ORDER} requests)")
    print(f"{'step':>6} {'free':>6} {'largest':>8} {'unusable':>9}")
    for c in marks:
        print(f"{c['step']:>6} {c['free_pages']:>6} {c['largest_order']:>8} {c['unusable_index']:>9.3f}")
    print(f"\nplot: {plot}")
    return {"five_kb": five, "internal": table, "curve": curve, "plot": plot,
            "final_unusable_index": curve[-1]["unusable_index"],
            "max_unusable_index": max(c["unusable_index"] for c in curve)}
