"""A self-contained HTML report: one file, no scripts, no network.

It reads the run's results only (the same dictionary as report.json, see
docs/report.md), so it can also be rebuilt from a saved report::

    python -m memspec.reports.html memspec-out/report.json memspec-out/report.html

Sections: summary per target; the clause table (exercised / passed / failed /
not applicable per target, with citations); each counterexample as a program
with the failing call marked, expected vs observed and its replay command;
coverage (clauses per layer, and the model's line and branch coverage when the
run measured it); plots drawn as inline SVG (programs per second and clauses
exercised over time, checks and failures by class).
"""

from __future__ import annotations

import html
import json
import re
import sys
from typing import Any, Iterable

from memspec.atomic import write_text

_FAILING = ("fail", "crash", "hang", "error")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f24;background:#fff}
header{background:#24292f;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header .meta{color:#c9d1d9;font-size:12px;margin-top:4px;word-break:break-all}
nav{position:sticky;top:0;background:#f6f8fa;border-bottom:1px solid #d0d7de;padding:6px 24px;z-index:1}
nav a{margin-right:16px;color:#0969da;text-decoration:none}
main{padding:0 24px 40px}
h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:2px 8px;border-radius:10px;display:inline-block}
.banner{font-size:16px;padding:10px 14px;border-radius:6px;margin:16px 0}
.ok{background:#dafbe1;color:#116329}
.bad{background:#ffebe9;color:#a40e26}
.na{background:#eaeef2;color:#57606a}
.warn{background:#fff8c5;color:#7d4e00}
.unk{background:#ddf4ff;color:#0550ae}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px;overflow-x:auto}
pre .hit{background:#ffebe9;display:block;font-weight:600}
.cite{color:#57606a;font-size:12px}
.cx{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;margin:14px 0}
.cx h3{margin:4px 0}
.ev td:first-child{font-weight:600;white-space:nowrap}
figure{display:inline-block;margin:8px 24px 8px 0}
figcaption{font-size:12px;color:#57606a;text-align:center}
.small{font-size:12px;color:#57606a}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def anchor(kind: str, name: str) -> str:
    """A stable element id: letters, digits and -_. only."""
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# ---------------------------------------------------------------------------
# clause status per target

def clause_status(t: dict[str, Any], cid: str) -> tuple[str, str, str]:
    """(status, css class, detail) of clause ``cid`` on target ``t`` (a report.json target)."""
    failures = [f for f in t.get("failures", []) if f.get("clause") == cid]
    counts = t.get("clauses", {}).get(cid)
    if failures:
        if all(f.get("expected_difference") for f in failures):
            return "expected difference", "warn", failures[0]["expected_difference"]
        return "failed", "bad", ", ".join(sorted({f.get("verdict", "fail") for f in failures}))
    if counts:
        bad = sum(counts.get(k, 0) for k in _FAILING)
        n = counts.get("exercised", 0)
        if bad:
            return "failed", "bad", f"{bad} of {n} checks"
        if counts.get("pass", 0) == 0 and counts.get("impl-defined", 0) == 0 and counts.get("unknown", 0):
            return "unknown", "unk", f"{n} checks the model could not decide"
        parts = [f"{counts[k]} {k}" for k in ("pass", "impl-defined", "unknown", "unsupported") if counts.get(k)]
        return "passed", "ok", f"exercised {n}: " + ", ".join(parts)
    na = t.get("not_applicable_clauses", {})
    if cid in na:
        return "not applicable", "na", f"{na[cid]} programs use calls the target does not implement"
    if cid in t.get("not_observable", {}):
        return "not observable", "na", t["not_observable"][cid]
    return "not exercised", "na", "no program of this run reached it"


def _layers(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for t in report.get("targets", []):
        for layer in t.get("layers", []):
            if layer not in out:
                out.append(layer)
    return out


def _clauses_for(report: dict[str, Any]) -> list[str]:
    layers = set(_layers(report))
    cat = report.get("catalogue", {})
    ids = {cid for cid, c in cat.items() if c.get("layer") in layers}
    for t in report.get("targets", []):
        ids |= set(t.get("clauses", {})) | {f["clause"] for f in t.get("failures", [])}
    return sorted(ids)


# ---------------------------------------------------------------------------
# SVG plots

def _nice_max(v: float) -> float:
    """The smallest round number >= v for an axis end (12 -> 12, 13 -> 15, 0.7 -> 0.8)."""
    if v <= 0:
        return 1.0
    for e in range(-3, 13):
        for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            c = m * 10 ** e
            if c >= v:
                return float(f"{c:.6g}")
    return float(v)


def line_chart(title: str, series: list[tuple[str, list[tuple[float, float]]]], xlabel: str, ylabel: str,
               width: int = 420, height: int = 220) -> str:
    """An SVG line chart of one or more series of (x, y) points."""
    colours = ("#0969da", "#cf222e", "#1a7f37", "#8250df")
    pts = [p for _, s in series for p in s]
    left, right, top, bottom = 52, 12, 26, 40
    w, h = width - left - right, height - top - bottom
    xmax = _nice_max(max((p[0] for p in pts), default=1.0))
    ymax = _nice_max(max((p[1] for p in pts), default=1.0))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{_e(title)}" viewBox="0 0 {width} {height}">',
           f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="600">{_e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#d0d7de"/>']
    for i in range(5):
        yv = ymax * i / 4
        y = top + h - h * i / 4
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{_fmt_num(yv)}</text>')
        xv = xmax * i / 4
        x = left + w * i / 4
        out.append(f'<text x="{x:.1f}" y="{top + h + 14}" text-anchor="middle" font-size="10">{_fmt_num(xv)}</text>')
    out.append(f'<text x="{left + w / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="11">{_e(xlabel)}</text>')
    out.append(f'<text x="12" y="{top + h / 2:.0f}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 12 {top + h / 2:.0f})">{_e(ylabel)}</text>')
    for k, (name, s) in enumerate(series):
        if not s:
            continue
        c = colours[k % len(colours)]
        coords = " ".join(f"{left + w * x / xmax:.1f},{top + h - h * y / ymax:.1f}" for x, y in s)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{coords}"/>')
        if len(series) > 1:
            out.append(f'<text x="{left + 6}" y="{top + 14 + 13 * k}" font-size="11" fill="{c}">{_e(name)}</text>')
    if not pts:
        out.append(f'<text x="{left + w / 2:.0f}" y="{top + h / 2:.0f}" text-anchor="middle" font-size="12" '
                   'fill="#57606a">no samples</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, bars: list[tuple[str, float, str]], width: int = 420) -> str:
    """A horizontal SVG bar chart of (label, value, colour)."""
    row = 22
    left, top = 150, 26
    height = top + row * max(1, len(bars)) + 10
    vmax = _nice_max(max((b[1] for b in bars), default=1.0))
    w = width - left - 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{_e(title)}" viewBox="0 0 {width} {height}">',
           f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="600">{_e(title)}</text>']
    for i, (label, v, colour) in enumerate(bars):
        y = top + i * row
        bw = w * v / vmax if vmax else 0
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="11">{_e(label)}</text>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 6}" fill="{colour}"/>')
        out.append(f'<text x="{left + bw + 4:.1f}" y="{y + 14}" font-size="11">{_fmt_num(v)}</text>')
    if not bars:
        out.append(f'<text x="{width / 2:.0f}" y="{top + 14}" text-anchor="middle" font-size="12" fill="#57606a">none</text>')
    out.append("</svg>")
    return "".join(out)


def _fmt_num(v: float) -> str:
    if v == int(v):
        return str(int(v))
    return f"{v:.2f}".rstrip("0").rstrip(".")


_VERDICT_COLOUR = {"pass": "#2da44e", "impl-defined": "#54aeff", "unknown": "#8c959f", "unsupported": "#d4a72c",
                   "fail": "#cf222e", "crash": "#a40e26", "hang": "#bc4c00", "error": "#8250df"}


def _rates(timeline: list[list[float]]) -> list[tuple[float, float]]:
    """Programs per second between successive samples [t, programs, clauses, failures]."""
    out: list[tuple[float, float]] = []
    for a, b in zip(timeline, timeline[1:]):
        dt = b[0] - a[0]
        if dt > 0:
            out.append((b[0], (b[1] - a[1]) / dt))
    return out


# ---------------------------------------------------------------------------
# sections

def _summary(report: dict[str, Any], cx_ids: dict[tuple[int, str], str]) -> str:
    rows = []
    for i, t in enumerate(report.get("targets", [])):
        unexplained = [f for f in t.get("failures", []) if not f.get("expected_difference")]
        first = cx_ids.get((i, unexplained[0]["clause"])) if unexplained else None
        n_failed = f'<a href="#{first}">{len(unexplained)}</a>' if first else str(len(unexplained))
        verdict = ('<span class="verdict bad">FAIL</span>' if unexplained else '<span class="verdict ok">PASS</span>')
        m = t.get("machine") or {}
        machine = f"{m.get('examples', 0)} examples, {m.get('result', '?')}" if m else "not run"
        rows.append(
            f'<tr id="{anchor("target", str(i))}"><td><code>{_e(t["name"])}</code></td><td>{_e(", ".join(t.get("layers", [])))}</td>'
            f"<td>{verdict}</td><td class=num>{t.get('programs', 0)}</td><td class=num>{t.get('calls', 0)}</td>"
            f"<td class=num>{t.get('clauses_exercised', len(t.get('clauses', {})))}</td>"
            f"<td class=num>{n_failed}</td><td class=num>{len(t.get('failures', [])) - len(unexplained)}</td>"
            f"<td class=num>{t.get('not_applicable', 0)}</td><td>{_e(machine)}</td></tr>")
        extra = []
        if t.get("stopped"):
            extra.append("STOPPED: " + t["stopped"])
        if t.get("unsupported"):
            extra.append("unsupported by this target: " + ", ".join(t["unsupported"]))
        facts = ""
        if t.get("facts"):
            items = "".join(f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(json.dumps(v))[:300]}</code></td></tr>"
                            for k, v in sorted(t["facts"].items()))
            facts = (f'<details><summary>{len(t["facts"])} host facts judged with</summary>'
                     f'<table class="small">{items}</table></details>')
        if extra or facts:
            rows.append(f'<tr><td colspan="10" class="small">{_e("; ".join(extra))}{facts}</td></tr>')
    return ("<table><tr><th>target</th><th>layers</th><th>verdict</th><th>programs</th><th>calls</th>"
            "<th>clauses exercised</th><th>failures</th><th>expected differences</th>"
            "<th>programs not applicable</th><th>state machine</th></tr>" + "".join(rows) + "</table>")


def exit_code(report: dict[str, Any]) -> int:
    """The exit code the run ended with (report.json's ``exit_code``; older reports: derived)."""
    if isinstance(report.get("exit_code"), int):
        return report["exit_code"]
    if report.get("interrupted"):
        return 130
    return 1 if report.get("summary", {}).get("unexplained_failures", 0) else 0


def _failure_list(report: dict[str, Any], cx_ids: dict[tuple[int, str], str]) -> str:
    """Every unexplained failure, one line each, linking to its counterexample: the first thing a reader sees."""
    items = []
    for i, t in enumerate(report.get("targets", [])):
        for f in t.get("failures", []):
            if f.get("expected_difference"):
                continue
            link = cx_ids.get((i, f["clause"]))
            name = f'<a href="#{link}"><code>{_e(f["clause"])}</code></a>' if link else f'<code>{_e(f["clause"])}</code>'
            items.append(f'<li>{_e(f.get("verdict", "fail").upper())} {name} on <code>{_e(_short(t["name"]))}</code>'
                         f' <span class="small">(seen {f.get("count", 1)}×) {_e(f.get("statement", ""))}</span></li>')
    if not items:
        return ""
    return f'<ol id="failures">{"".join(items)}</ol>'


def _impl_choices(report: dict[str, Any]) -> str:
    """Where C and POSIX let an allocator choose: each library's answer, one column per target."""
    t = report.get("impl_choices") or {}
    cols = t.get("columns") or []
    if not cols:
        return ""
    head = "".join(f"<th><code>{_e(c)}</code></th>" for c in cols)
    rows = "".join(f'<tr><td>{_e(r["choice"])}<div class="small"><code>{_e(r["program"].strip()[:120])}</code></div></td>'
                   + "".join(f'<td>{_e(r["values"].get(c, ""))}</td>' for c in cols) + "</tr>"
                   for r in t.get("rows", []))
    return ('<section id="choices"><h2>Implementation choices</h2><p class="small">Measured by probe programs run on '
            'each malloc target, one column per library: where C23 §7.24.3 and POSIX.1-2024 leave the choice to the '
            'library, and how it meets absurd sizes. Whether an answer conforms is judged by the clauses below.</p>'
            f"<table><tr><th>choice (probe)</th>{head}</tr>{rows}</table></section>")


def _clause_table(report: dict[str, Any], cx_ids: dict[tuple[int, str], str]) -> str:
    targets = report.get("targets", [])
    cat = report.get("catalogue", {})
    head = "".join(f'<th><a href="#{anchor("target", str(i))}">{_e(_short(t["name"]))}</a></th>'
                   for i, t in enumerate(targets))
    rows = []
    failing = {f["clause"] for t in targets for f in t.get("failures", []) if not f.get("expected_difference")}
    for cid in sorted(_clauses_for(report), key=lambda c: c not in failing):   # stable: alphabetical within each
        c = cat.get(cid, {})
        cells = []
        for i, t in enumerate(targets):
            status, cls, detail = clause_status(t, cid)
            link = cx_ids.get((i, cid))
            label = f'<a href="#{link}">{_e(status)}</a>' if link else _e(status)
            cells.append(f'<td><span class="verdict {cls}">{label}</span><div class="small">{_e(detail)}</div></td>')
        differs = f'<div class="small">kernel differs: {_e(c["kernel_differs"])}</div>' if c.get("kernel_differs") else ""
        rows.append(f'<tr id="{anchor("clause", cid)}"><td><code>{_e(cid)}</code><div class="small">{_e(c.get("layer", "?"))}</div></td>'
                    f'<td>{_e(c.get("statement", ""))}<div class="cite">{_e(c.get("citation", ""))}</div>{differs}</td>'
                    + "".join(cells) + "</tr>")
    return (f"<table><tr><th>clause</th><th>statement and citation</th>{head}</tr>" + "".join(rows) + "</table>")


def _short(name: str, n: int = 40) -> str:
    """Long target names keep their start and their end (where options such as --bug=... are)."""
    if len(name) <= n:
        return name
    head = max(4, n // 3)
    return name[:head] + "…" + name[-(n - head - 1):]


def _program_block(program: str, index: int) -> str:
    lines = []
    k = 0
    for line in program.rstrip("\n").splitlines():
        if line.startswith("#"):
            lines.append(f'<span class="small">{_e(line)}</span>')
            continue
        text = _e(line)
        if k == index:
            lines.append(f'<span class="hit">{text}    ← fails here</span>')
        else:
            lines.append(text)
        k += 1
    return "<pre>" + "\n".join(lines) + "</pre>"


def _maps(ctx: dict[str, Any]) -> str:
    out = []
    for key, title in (("maps_before", "memory maps before the failing call (model)"),
                       ("maps_expected", "memory maps the model expects"),
                       ("maps_observed", "memory maps the target reported")):
        v = ctx.get(key)
        if not v:
            continue
        rows = []
        for proc, ranges in v.items():
            for r in ranges:
                s, e, perms = r
                rows.append(f"{proc:6s} {int(s):#014x}-{int(e):#014x} {perms}")
        out.append(f"<div class=small>{_e(title)}</div><pre>{_e(chr(10).join(rows) or '(nothing mapped)')}</pre>")
    other = {k: v for k, v in ctx.items() if k not in ("maps_before", "maps_expected", "maps_observed")}
    if other:
        out.append(f"<div class=small>context</div><pre>{_e(json.dumps(other, indent=1, default=str)[:4000])}</pre>")
    return "".join(out)


def _counterexamples(report: dict[str, Any], cx_ids: dict[tuple[int, str], str]) -> str:
    out = []
    n = 0
    for i, t in enumerate(report.get("targets", [])):
        for f in t.get("failures", []):
            n += 1
            ident = f"cx-{n}"
            cx_ids.setdefault((i, f["clause"]), ident)
            tag = ('<span class="verdict warn">expected difference</span>' if f.get("expected_difference")
                   else f'<span class="verdict bad">{_e(f.get("verdict", "fail").upper())}</span>')
            exp_diff = (f'<tr><td>why allowed</td><td>{_e(f["expected_difference"])}</td></tr>'
                        if f.get("expected_difference") else "") + (
                f'<tr><td>excused by</td><td><code>{_e(f["excused_by"])}</code></td></tr>' if f.get("excused_by") else "")
            out.append(
                f'<div class="cx" id="{ident}"><h3>{tag} <a href="#{anchor("clause", f["clause"])}"><code>{_e(f["clause"])}</code></a>'
                f' <span class="small">on <code>{_e(t["name"])}</code>, seen {f.get("count", 1)}×</span></h3>'
                f'<div>{_e(f.get("statement", ""))}</div><div class="cite">{_e(f.get("citation", ""))}</div>'
                f'{_program_block(f.get("program", ""), f.get("call_index", -1))}'
                f'<table class="ev"><tr><td>failing call</td><td><code>{_e(f.get("call_text", ""))}</code> '
                f'(call {f.get("call_index", -1) + 1})</td></tr>'
                f'<tr><td>expected</td><td><code>{_e(f.get("expected", ""))}</code></td></tr>'
                f'<tr><td>observed</td><td><code>{_e(f.get("observed", ""))}</code></td></tr>'
                f'<tr><td>why</td><td>{_e(f.get("note", ""))}</td></tr>{exp_diff}'
                f'<tr><td>replay</td><td><code>{_e(f.get("replay", ""))}</code></td></tr></table>'
                f'{_maps(f.get("context") or {})}</div>')
    if not out:
        return '<p class="banner ok">No counterexamples: every judged call agreed with the model.</p>'
    return "".join(out)


def _coverage(report: dict[str, Any]) -> str:
    cat = report.get("catalogue", {})
    rows = []
    for i, t in enumerate(report.get("targets", [])):
        for layer in t.get("layers", []):
            ids = [cid for cid, c in cat.items() if c.get("layer") == layer]
            statuses = [clause_status(t, cid)[0] for cid in ids]
            ex = sum(1 for s in statuses if s in ("passed", "failed", "unknown", "expected difference"))
            na = statuses.count("not applicable")
            pct = 100.0 * ex / len(ids) if ids else 0.0
            rows.append(f"<tr><td><code>{_e(_short(t['name']))}</code></td><td>{_e(layer)}</td>"
                        f"<td class=num>{ex} / {len(ids)}</td><td class=num>{pct:.0f}%</td><td class=num>{na}</td>"
                        f"<td class=num>{len(ids) - ex - na}</td></tr>")
    out = ["<h3>Clauses</h3><table><tr><th>target</th><th>layer</th><th>clauses exercised</th><th>share</th>"
           "<th>not applicable</th><th>not exercised</th></tr>" + "".join(rows) + "</table>"]
    cov = report.get("coverage") or {}
    if cov.get("files"):
        tot = cov.get("totals", {})
        out.append(f"<h3>Model code</h3><p>Measured over <code>{_e(cov.get('package', 'memspec.model'))}</code> "
                   f"during this run: lines {_pct(tot.get('covered_lines'), tot.get('num_statements'))}, "
                   f"branches {_pct(tot.get('covered_branches'), tot.get('num_branches'))}.</p>")
        frows = []
        for name, s in sorted(cov["files"].items()):
            frows.append(f"<tr><td><code>{_e(name)}</code></td>"
                         f"<td class=num>{_pct(s.get('covered_lines'), s.get('num_statements'))}</td>"
                         f"<td class=num>{_pct(s.get('covered_branches'), s.get('num_branches'))}</td></tr>")
        out.append("<table><tr><th>file</th><th>lines</th><th>branches</th></tr>" + "".join(frows) + "</table>")
    else:
        out.append('<h3>Model code</h3><p class="small">Not measured in this run: add <code>--coverage</code> to '
                   '<code>memspec check</code> to measure line and branch coverage of the model.</p>')
    return "".join(out)


def _pct(a: Any, b: Any) -> str:
    if not b:
        return "n/a"
    return f"{100.0 * (a or 0) / b:.1f}% ({a or 0}/{b})"


def _plots(report: dict[str, Any]) -> str:
    figs = []
    targets = report.get("targets", [])
    rate_series = [(_short(t["name"], 24), _rates(t.get("timeline", []))) for t in targets]
    clause_series = [(_short(t["name"], 24), [(p[0], p[2]) for p in t.get("timeline", [])]) for t in targets]
    figs.append(line_chart("Programs per second", rate_series, "seconds into the target's run", "programs/s"))
    figs.append(line_chart("Clauses exercised over time", clause_series, "seconds into the target's run", "clauses"))
    totals: dict[str, int] = {}
    for t in targets:
        for counts in t.get("clauses", {}).values():
            for k, v in counts.items():
                if k != "exercised":
                    totals[k] = totals.get(k, 0) + v
    figs.append(bar_chart("Checks by verdict", [(k, v, _VERDICT_COLOUR.get(k, "#57606a"))
                                                for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]))
    classes: dict[str, int] = {}
    for t in targets:
        for f in t.get("failures", []):
            key = f"{f.get('verdict', 'fail')} · {f['clause'].split('.')[0]}.{f['clause'].split('.')[1] if '.' in f['clause'] else ''}"
            classes[key] = classes.get(key, 0) + f.get("count", 1)
    figs.append(bar_chart("Failures by class (verdict · clause family)",
                          [(k, v, _VERDICT_COLOUR.get(k.split(" ")[0], "#cf222e"))
                           for k, v in sorted(classes.items(), key=lambda kv: -kv[1])]))
    captions = ("between progress samples", "distinct clauses with at least one check",
                "all checks of the run", "each failure signature, weighted by how often it was seen")
    return "".join(f"<figure>{svg}<figcaption>{_e(c)}</figcaption></figure>" for svg, c in zip(figs, captions))


# ---------------------------------------------------------------------------

def render(report: dict[str, Any]) -> str:
    """The whole page for a report dictionary (report.json's content)."""
    s = report.get("summary", {})
    failed = s.get("unexplained_failures", 0)
    code = exit_code(report)
    banner = (f'<p class="banner bad">FAIL: {failed} conformance failure{"s" if failed != 1 else ""} '
              f'(exit code {code}).</p>' if failed else
              f'<p class="banner {"ok" if code == 0 else "warn"}">'
              f'{"PASS" if code == 0 else "NO FAILURES SO FAR"}: no unexplained conformance failures '
              f'(exit code {code}).</p>')
    if report.get("interrupted"):
        by = report.get("interrupted_by") or "an interrupt"
        banner += f'<p class="banner warn">The run was ended by {_e(by)}: this report is partial.</p>'
    cx_ids: dict[tuple[int, str], str] = {}
    counterexamples = _counterexamples(report, cx_ids)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>memspec report: {'FAIL' if failed else 'PASS'}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header><h1>memspec conformance report</h1><div class="meta">{_e(report.get("command", ""))} · '
        f'seed {_e(report.get("seed", ""))} · started {_e(report.get("started", ""))} · '
        f'{_e(report.get("duration_s", ""))} s · memspec {_e(report.get("memspec", ""))} · '
        f'report schema {_e(report.get("schema", ""))}</div></header>',
        '<nav><a href="#summary">Summary</a><a href="#counterexamples">Counterexamples</a>'
        + ('<a href="#choices">Choices</a>' if report.get("impl_choices") else "")
        + '<a href="#clauses">Clauses</a><a href="#coverage">Coverage</a><a href="#plots">Plots</a></nav>',
        "<main>",
        f'<section id="summary"><h2>Summary</h2>{banner}{_failure_list(report, cx_ids)}{_summary(report, cx_ids)}</section>',
        f'<section id="counterexamples"><h2>Counterexamples</h2>{counterexamples}</section>',
        _impl_choices(report),
        f'<section id="clauses"><h2>Clauses</h2><p class="small">One row per clause of the layers judged, failures first. '
        f'<b>passed</b>: every check agreed with the model; <b>failed</b>: links to the counterexample; '
        f'<b>not applicable</b>: only programs using calls the target does not implement would reach it; '
        f'<b>not exercised</b>: no program of this run reached it. Neither of the last two is ever a pass.</p>'
        f'{_clause_table(report, cx_ids)}</section>',
        f'<section id="coverage"><h2>Coverage</h2>{_coverage(report)}</section>',
        f'<section id="plots"><h2>Plots</h2>{_plots(report)}</section>',
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(results: Any, path: str) -> None:
    """Write report.html for a run's ``RunResults`` (or an already converted report dictionary)."""
    if isinstance(results, dict):
        report = results
    else:
        from .json_report import to_dict
        report = json.loads(json.dumps(to_dict(results), default=str))
    write_text(path, render(report))


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m memspec.reports.html REPORT.json OUT.html", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        report = json.load(f)
    write(report, args[1])
    print(f"wrote {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
