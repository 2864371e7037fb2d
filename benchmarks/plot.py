"""Scaling plots for ``memspec bench``: one panel per curve, log-log, one line per series.

matplotlib is not a dependency.  When it is importable it draws ``scaling.png``;
otherwise this module rasterises the panels itself and writes the PNG with zlib
(axes, grid lines at powers of ten, coloured series with point markers, and
labels in a small built-in bitmap font).  ``scaling.svg`` is always written,
with the same panels and full text labels.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
PANEL_W, PANEL_H, COLS = 420, 300, 2
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 62, 14, 30, 44


def plot(curves: list[Any], png_path: str, svg_path: str) -> str:
    _svg(curves, svg_path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _png(curves, png_path)
        return "built-in PNG writer (matplotlib not installed); labelled copy in SVG"
    rows = (len(curves) + COLS - 1) // COLS
    fig, axes = plt.subplots(rows, COLS, figsize=(5 * COLS, 3.6 * rows), squeeze=False)
    for ax, c in zip(axes.flat, curves):
        for s in c.series:
            pts = c.medians(s)
            ax.loglog([x for x, _ in pts], [t * 1e6 for _, t in pts], marker="o", label=s)
        ax.set_title(c.name)
        ax.set_xlabel(c.x_label)
        ax.set_ylabel("us per op")
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


# -- PNG (no dependencies) -------------------------------------------------------------------------

# A 3x5 bitmap font: each glyph is five rows of three bits, top row first.
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", "a": "010101111101101", "b": "110101110101110",
    "c": "011100100100011", "d": "110101101101110", "e": "111100110100111", "f": "111100110100100",
    "g": "011100101101011", "h": "101101111101101", "i": "111010010010111", "j": "001001001101010",
    "k": "101101110101101", "l": "100100100100111", "m": "101111111101101", "n": "110101101101101",
    "o": "010101101101010", "p": "110101110100100", "q": "010101101110011", "r": "110101110101101",
    "s": "011100010001110", "t": "111010010010010", "u": "101101101101111", "v": "101101101101010",
    "w": "101101111111101", "x": "101101010101101", "y": "101101010010010", "z": "111001010100111",
    "+": "000010111010000", "-": "000000111000000", ".": "000000000000010", ",": "000000000010100",
    ":": "000010000010000", "(": "010100100100010", ")": "010001001001010", "/": "001001010100100",
    "=": "000111000111000", "^": "010101000000000", " ": "000000000000000", "_": "000000000000111",
}


class _Canvas:
    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x: int, y: int, c: tuple[int, int, int]) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def line(self, x0: int, y0: int, x1: int, y1: int, c: tuple[int, int, int], thick: int = 1) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            for t in range(thick):
                self.dot(x0, y0 + t, c)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def box(self, x: int, y: int, w: int, h: int, c: tuple[int, int, int]) -> None:
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                self.dot(xx, yy, c)

    def text(self, x: int, y: int, s: str, c: tuple[int, int, int] = (0, 0, 0), anchor: str = "start") -> None:
        s = s.lower()
        width = 4 * len(s)
        if anchor == "middle":
            x -= width // 2
        elif anchor == "end":
            x -= width
        for ch in s:
            g = _FONT.get(ch, _FONT["_"])
            for r in range(5):
                for col in range(3):
                    if g[r * 3 + col] == "1":
                        self.dot(x + col, y + r, c)
            x += 4

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _png(curves: list[Any], path: str) -> None:
    W, H = _size(curves)
    cv = _Canvas(W, H)
    grid, axis = (225, 225, 225), (0, 0, 0)
    for c, ox, oy, series, (x0, x1, y0, y1), at in _panels(curves):
        cv.text(ox + PANEL_W // 2, oy + 10, f"{c.name} (goal x{c.limit:g})", anchor="middle")
        left, right = ox + MARGIN_L, ox + PANEL_W - MARGIN_R
        top, bottom = oy + MARGIN_T, oy + PANEL_H - MARGIN_B
        for e in range(int(y0), int(y1) + 1):
            _, py = at(10 ** x0, 10.0 ** e)
            cv.line(left, py, right, py, grid)
            cv.text(left - 4, py - 2, _us_label(e), anchor="end")
        for e in range(int(x0), int(x1) + 1):
            px, _ = at(10.0 ** e, 10 ** y0)
            cv.line(px, top, px, bottom, grid)
            cv.text(px, bottom + 5, f"{10 ** e:,}", anchor="middle")
        cv.line(left, bottom, right, bottom, axis)
        cv.line(left, top, left, bottom, axis)
        cv.text(ox + PANEL_W // 2, bottom + 16, c.x_label, anchor="middle")
        for k, (s, pts) in enumerate(series):
            col = COLOURS[k % len(COLOURS)]
            for (xa, ta), (xb, tb) in zip(pts, pts[1:]):
                a, b = at(xa, ta)
                p, q = at(xb, tb)
                cv.line(a, b, p, q, col, thick=2)
            for x, t in pts:
                a, b = at(x, t)
                cv.box(a - 2, b - 2, 5, 5, col)
            ly = top + 6 + 9 * k
            cv.box(left + 6, ly + 1, 10, 3, col)
            cv.text(left + 20, ly, s, col)
    with open(path, "wb") as f:
        f.write(cv.png())
