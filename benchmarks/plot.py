"""Scaling plots for ``memspec bench``: one panel per curve, log-log, one line per series.

``scaling.svg`` is always written (plain text, no dependency), with every panel and
its labels.  ``scaling.png`` is drawn by matplotlib, the ``plot`` extra
(``pip install 'memspec[plot]'``; ``dev`` includes it).  Without it no PNG is
written -- an old one in the folder is removed, so it cannot pass for this run's --
and the run says that the PNG needs the extra; the figures and the data are the same.
"""

from __future__ import annotations

import math
import os
from typing import Any

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
PANEL_W, PANEL_H, COLS = 420, 300, 2
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 62, 14, 30, 44
NO_PNG = ("no PNG written ({png}): it needs the plot extra (pip install 'memspec[plot]', which installs "
          "matplotlib); the same panels are in {svg}")


def plot(curves: list[Any], png_path: str, svg_path: str) -> str:
    _svg(curves, svg_path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if os.path.exists(png_path):
            os.remove(png_path)
        how = NO_PNG.format(png=png_path, svg=svg_path)
        print(how)
        return how
    rows = (len(curves) + COLS - 1) // COLS
    fig, axes = plt.subplots(rows, COLS, figsize=(5 * COLS, 3.6 * rows), squeeze=False)
    for ax, c in zip(axes.flat, curves):
        for s in c.series:
            pts = c.medians(s)
            ax.loglog([x for x, _ in pts], [t * 1e6 for _, t in pts], marker="o", label=s)
        ax.set_title(c.name)
        ax.set_xlabel(c.x_label)
        ax.set_ylabel("us per op")
        if c.series:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return "matplotlib"


# -- shared geometry -----------------------------------------------------------------------------

def _bounds(curves_pts: list[list[tuple[int, float]]]) -> tuple[float, float, float, float]:
    xs = [x for pts in curves_pts for x, _ in pts if x > 0]
    ys = [y for pts in curves_pts for _, y in pts if y > 0]
    if not xs or not ys:
        return 0.0, 1.0, -7.0, -6.0
    x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    return x0, max(x1, x0 + 1), y0, max(y1, y0 + 1)


def _panels(curves: list[Any]):
    for i, c in enumerate(curves):
        ox, oy = (i % COLS) * PANEL_W, (i // COLS) * PANEL_H
        series = [(s, [(x, t) for x, t in c.medians(s) if t > 0]) for s in c.series]
        x0, x1, y0, y1 = _bounds([p for _, p in series])
        w, h = PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B

        def at(x: float, y: float, ox=ox, oy=oy, x0=x0, x1=x1, y0=y0, y1=y1, w=w, h=h) -> tuple[int, int]:
            fx = (math.log10(x) - x0) / (x1 - x0)
            fy = (math.log10(y) - y0) / (y1 - y0)
            return ox + MARGIN_L + round(fx * w), oy + MARGIN_T + round((1 - fy) * h)

        yield c, ox, oy, series, (x0, x1, y0, y1), at


def _size(curves: list[Any]) -> tuple[int, int]:
    rows = max(1, (len(curves) + COLS - 1) // COLS)
    return PANEL_W * min(COLS, max(1, len(curves))), PANEL_H * rows


def _us_label(exp: int) -> str:
    v = 10.0 ** exp * 1e6
    if v >= 1e6:
        return f"{v / 1e6:g}s"
    return f"{v:g}us" if v < 1000 else f"{v / 1000:g}ms"


# -- SVG -------------------------------------------------------------------------------------------

def _svg(curves: list[Any], path: str) -> None:
    W, H = _size(curves)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="10">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for c, ox, oy, series, (x0, x1, y0, y1), at in _panels(curves):
        out.append(f'<text x="{ox + PANEL_W // 2}" y="{oy + 16}" text-anchor="middle" font-size="12">'
                   f'{_esc(c.name)} (goal: x{c.limit:g} growth)</text>')
        for e in range(int(y0), int(y1) + 1):
            _, py = at(10 ** x0, 10.0 ** e)
            out.append(f'<line x1="{ox + MARGIN_L}" x2="{ox + PANEL_W - MARGIN_R}" y1="{py}" y2="{py}" stroke="#ddd"/>')
            out.append(f'<text x="{ox + MARGIN_L - 4}" y="{py + 3}" text-anchor="end">{_us_label(e)}</text>')
        for e in range(int(x0), int(x1) + 1):
            px, _ = at(10.0 ** e, 10 ** y0)
            out.append(f'<line x1="{px}" x2="{px}" y1="{oy + MARGIN_T}" y2="{oy + PANEL_H - MARGIN_B}" stroke="#ddd"/>')
            out.append(f'<text x="{px}" y="{oy + PANEL_H - MARGIN_B + 12}" text-anchor="middle">{10 ** e:,}</text>')
        out.append(f'<text x="{ox + PANEL_W // 2}" y="{oy + PANEL_H - 8}" text-anchor="middle">{_esc(c.x_label)}</text>')
        for k, (s, pts) in enumerate(series):
            col = "#%02x%02x%02x" % COLOURS[k % len(COLOURS)]
            if pts:
                d = " ".join(f"{a},{b}" for a, b in (at(x, t) for x, t in pts))
                out.append(f'<polyline points="{d}" fill="none" stroke="{col}" stroke-width="2"/>')
                for x, t in pts:
                    a, b = at(x, t)
                    out.append(f'<circle cx="{a}" cy="{b}" r="3" fill="{col}"/>')
            ly = oy + MARGIN_T + 10 + 12 * k
            out.append(f'<rect x="{ox + MARGIN_L + 6}" y="{ly - 7}" width="10" height="3" fill="{col}"/>'
                       f'<text x="{ox + MARGIN_L + 20}" y="{ly}">{_esc(s)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
