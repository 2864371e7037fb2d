"""Detection benchmark: how fast does `memspec fuzz` find each seeded bug?

    python benchmarks/detect.py [--seeds 5] [--time 60] [--jobs 2] [--only SUBSTR] [--out FILE.json]

For every deliberately broken implementation in tests/ (os bugs served over the
protocol, phys and hw broken models loaded in process), and for each seed, runs
`memspec fuzz --stop-on-finding` with a time limit and records the seconds and
executions to the first finding and the size of its minimised reproducer.  Prints
a Markdown table (median time-to-detect, detection rate, reproducer sizes) and
writes the raw results as JSON.  Run from the repository root.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _names(path: str, var: str) -> list[str]:
    """Names in a module-level dict or list literal ``var`` of ``path`` (without importing it)."""
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == var for t in node.targets):
            if isinstance(node.value, ast.Dict):
                return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
            if isinstance(node.value, (ast.List, ast.Tuple)):
                return [e.id for e in node.value.elts if isinstance(e, ast.Name)]
    return []


def bugs() -> list[tuple[str, str, str]]:
    """(name, layer, target spec) for every seeded bug."""
    out = []
    for b in _names("tests/broken/broken_server.py", "BUGS"):
        out.append((f"os:{b}", "os", f"cmd:{sys.executable} tests/broken/broken_server.py {b}"))
    tree = ast.parse(open(os.path.join(ROOT, "tests/phys/broken_phys.py")).read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "PhysModel" for b in node.bases):
            out.append((f"phys:{node.name}", "phys", f"py:tests/phys/broken_phys.py:BrokenModelTarget({node.name})"))
    for c in _names("tests/hw/broken_hw.py", "BROKEN"):
        out.append((f"hw:{c}", "hw", f"py:tests/hw/broken_hw.py:BrokenTarget({c})"))
    return out


def run_one(name: str, layer: str, target: str, seed: int, seconds: float, suite_seeds: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as d:
        summary = os.path.join(d, "summary.json")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "fuzz", "--target", target, "--layer", layer,
                            "--time", str(seconds), "--seed", str(seed), "--stop-on-finding", "--quiet",
                            "--corpus", os.path.join(d, "corpus"), "--findings", os.path.join(d, "findings"),
                            "--summary-json", summary] + ([] if suite_seeds else ["--no-suite-seeds"]),
                           cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300)
        wall = time.monotonic() - t0
        res = {"bug": name, "seed": seed, "wall": round(wall, 2), "rc": r.returncode}
        if os.path.exists(summary):
            s = json.load(open(summary))
            res.update(execs=s["execs"], first=s["first_finding"])
        else:
            res.update(error=(r.stderr or r.stdout)[-400:])
        return res


def table(results: list[dict], seconds: float) -> str:
    rows = ["| bug | detected | median s | median execs | reproducer calls | clause |", "|---|---|---|---|---|---|"]
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["bug"], []).append(r)
    for bug, rs in sorted(by.items()):
        hits = [r for r in rs if r.get("first")]
        if hits:
            med_t = statistics.median(r["first"]["seconds"] for r in hits)
            med_x = statistics.median(r["first"]["execs"] for r in hits)
            sizes = sorted({r["first"]["calls"] for r in hits})
            clause = hits[0]["first"]["clause"]
            rows.append(f"| {bug} | {len(hits)}/{len(rs)} | {med_t:.1f} | {med_x:.0f} | "
                        f"{'–'.join(map(str, (sizes[0], sizes[-1]))) if len(sizes) > 1 else sizes[0]} | `{clause}` |")
        else:
            rows.append(f"| {bug} | 0/{len(rs)} | > {seconds:g} | – | – | – |")
    all_t = [r["first"]["seconds"] for r in results if r.get("first")]
    rate = len(all_t) / max(len(results), 1)
    rows.append("")
    rows.append(f"{len(by)} bugs × {len(results) // max(len(by), 1)} seeds: detection rate {rate:.0%}, "
                f"median time-to-detect {statistics.median(all_t) if all_t else float('nan'):.1f} s (limit {seconds:g} s)")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--time", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="memspec-out/detect.json")
    ap.add_argument("--no-suite-seeds", action="store_true", help="fuzz from random inputs only (no directed-suite seeds)")
    a = ap.parse_args()
    work = [(n, layer, t, s) for n, layer, t in bugs() if a.only in n for s in range(1, a.seeds + 1)]
    results = []
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        futs = [ex.submit(run_one, n, layer, t, s, a.time, not a.no_suite_seeds) for n, layer, t, s in work]
        for f in cf.as_completed(futs):
            r = f.result()
            results.append(r)
            first = r.get("first")
            print(f"{r['bug']:40s} seed {r['seed']}: " + (f"{first['seconds']:6.1f} s, {first['execs']} execs, "
                  f"{first['calls']} calls, {first['clause']}" if first else f"not found ({r.get('error', '')[-120:]})"),
                  flush=True)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(table(results, a.time))
    return 0


if __name__ == "__main__":
    sys.exit(main())
