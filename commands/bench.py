"""``memspec bench``: speed figures, each measured against its denominator in the same run.

A *figure* (``benchmarks/fig_*.py``) is a ratio: a memspec rate (the numerator)
over a bare rate of the same work without memspec (the denominator).  Both sides
are sampled in the same process, interleaved (num, den, den, num, ...) so that
load from other work on the machine hits both alike, and repeated; the table
shows medians with min/max and the ratio of the medians.  A figure whose peer is
missing (no unicorn, not Linux) is reported as ``unavailable: reason``, never as
a number.

A *curve* (``benchmarks/scale_*.py``) is per-operation cost as the state grows
(10, 1,000, 65,000 mappings; 2^10 and 2^20 frames), model and kernel side by side.

Output: a table on stdout, ``bench.json`` (figures and curves, with the commit, so
runs can be compared across commits) and ``scaling.png`` (plus ``scaling.svg``
with labels) in ``--out``.

Figure modules define ``NAME``, ``GOAL``, ``UNIT``, ``NUMERATOR``, ``DENOMINATOR`` and
``setup(quick) -> Pair``; curve modules define ``curves(quick, repeat) -> list[Curve]``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from memspec.errors import UsageError


class Unavailable(Exception):
    """The figure's peer is not on this machine; the message says what is missing."""


@dataclass
class Pair:
    """One figure's two sides.  Each callable does one sample and returns a rate (units per second)."""

    numerator: Callable[[], float]
    denominator: Callable[[], float]
    close: Callable[[], None] = lambda: None
    note: str = ""
    # what a cProfile run of the numerator should execute (defaults to ``numerator``)
    profile: Callable[[], Any] | None = None
    # the numerator's own breakdown, sampled alongside it (e.g. target run alone, judging alone)
    parts: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Curve:
    """Per-operation cost (seconds) at growing sizes, one series per implementation."""

    name: str          # e.g. "mmap+munmap"
    x_label: str       # e.g. "mappings"
    limit: float       # allowed growth from the smallest to the largest size (2.0 = "<= 2x")
    series: dict[str, list[tuple[int, list[float]]]] = field(default_factory=dict)   # series -> [(x, samples)]
    notes: list[str] = field(default_factory=list)

    def medians(self, series: str) -> list[tuple[int, float]]:
        return [(x, statistics.median(s)) for x, s in self.series[series]]

    def growth(self, series: str) -> float | None:
        m = self.medians(series)
        if len(m) < 2 or m[0][1] <= 0:
            return None
        return m[-1][1] / m[0][1]


class JudgedBeside:
    """A figure's judged side: ``prog`` run on ``target`` as a stream, judged in a second process as
    its outcomes come (``fuzz/judge_process.JudgeProcess``, forked once, after one judgement here
    has made the judge's imports and caches); ``sample(n)`` times that, then for the breakdown the
    run alone, the judging alone, and both one after the other in this process, into ``parts``
    as units per second (``n`` units in the program)."""

    def __init__(self, target: Any, prog: Any, facts: dict[str, Any], one_process: str = "one_process") -> None:
        from memspec.fuzz.judge_process import JudgeProcess
        from memspec.specs.judge import judge
        self.target, self.prog, self.facts, self._judge = target, prog, facts, judge
        judge(prog, target.run(prog), target.name, facts)
        self.jp = JudgeProcess(lambda p, r: judge(p, r, target.name, facts))
        self.one_process = one_process
        self.parts: dict[str, list[float]] = {"target_only": [], "judge_only": [], one_process: []}

    def sample(self, n: int) -> float:
        target, prog, facts, judge = self.target, self.prog, self.facts, self._judge
        t0 = time.perf_counter()
        j = self.jp.judge_stream(prog, lambda: target.stream(prog))     # the job goes first, then the run starts
        t1 = time.perf_counter()
        if j.failure is not None:
            raise Unavailable(f"the judged run failed ({j.failure.clause}): fix that before timing it")
        run = target.run(prog)
        t2 = time.perf_counter()
        judge(prog, run, target.name, facts)
        t3 = time.perf_counter()
        self.parts["target_only"].append(n / (t2 - t1))
        self.parts["judge_only"].append(n / (t3 - t2))
        self.parts[self.one_process].append(n / (t3 - t1))     # run, then judge, in this process
        return n / (t1 - t0)

    def profile(self) -> None:
        """This process's side is the run and the forwarding: the judging is profiled here instead."""
        self._judge(self.prog, self.target.run(self.prog), self.target.name, self.facts)

    def close(self) -> None:
        self.jp.close()


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def benchmarks_dir() -> str:
    d = os.path.join(repo_root(), "benchmarks")
    if not os.path.isdir(d):
        raise UsageError("memspec bench runs the benchmarks/ folder of a source checkout; "
                         "install memspec with `pip install -e .` from the repository")
    return d


def load_module(filename: str) -> ModuleType:
    path = os.path.join(benchmarks_dir(), filename)
    name = "memspec_bench_" + os.path.splitext(filename)[0]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def figure_modules() -> list[str]:
    return sorted(f for f in os.listdir(benchmarks_dir()) if f.startswith("fig_") and f.endswith(".py"))


def curve_modules() -> list[str]:
    return sorted(f for f in os.listdir(benchmarks_dir()) if f.startswith("scale_") and f.endswith(".py"))


# -- figures -----------------------------------------------------------------------------------

# -- the machine's parallel capacity -------------------------------------------------------------

# each spinner: a fresh interpreter (the probe measures the machine, not this process: a fork of a
# large process pays copy-on-write faults its spin would count), told when to spin, answering how long
_SPINNER = ("import sys, time\n"
            "for line in sys.stdin:\n"
            "    n = int(line)\n"
            "    t = time.perf_counter()\n"
            "    x = 0\n"
            "    for i in range(n):\n"
            "        x += i\n"
            "    print(time.perf_counter() - t, flush=True)\n")


def cores_worth(alone: float, together: float, processes: int = 2) -> float:
    """How many cores' worth of work ``processes`` CPU-bound processes got: each alone took
    ``alone`` seconds, all of them started together were done after ``together``."""
    return processes * alone / together if together > 0 else 0.0


def parallel_capacity(spin: int = 300_000, tries: int = 3) -> float:
    """Cores' worth that two CPU-bound processes get right now (2.0: two whole cores; 1.0: they
    share one).  Figures that run the target and the judge side by side move with it; a shared or
    oversubscribed host can give anything in between, minute to minute.  Two spinners: one spins
    alone, then both at once; each times its own loop."""
    if (os.cpu_count() or 1) < 2:
        return 1.0
    procs = [subprocess.Popen([sys.executable, "-c", _SPINNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, bufsize=1) for _ in range(2)]
    try:
        def run(ps: list) -> float:
            for q in ps:
                q.stdin.write(f"{spin}\n")
            return max(float(q.stdout.readline()) for q in ps)
        run(procs[:1])                          # warm: the loop's code and the interpreter's caches
        got = [cores_worth(run(procs[:1]), run(procs)) for _ in range(tries)]
    except (OSError, ValueError):
        return 0.0
    finally:
        for q in procs:
            q.stdin.close()
            q.wait()
    return min(statistics.median(got), 2.0)


def _summary(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}


def measure_figure(mod: ModuleType, quick: bool, repeat: int, profile: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"figure": mod.NAME, "goal": mod.GOAL, "unit": mod.UNIT,
                           "numerator_what": mod.NUMERATOR, "denominator_what": mod.DENOMINATOR}
    t0 = time.perf_counter()
    row["cores"] = parallel_capacity()         # what two processes of this figure could get, just before it
    try:
        pair = mod.setup(quick)
    except Unavailable as e:
        row.update(status="unavailable", reason=str(e), numerator=None, denominator=None, ratio=None)
        return row
    except Exception as e:      # noqa: BLE001 -- a crash in memspec is reported on its row; the others still run
        row.update(status="error", reason=_crash(e), numerator=None, denominator=None, ratio=None)
        return row
    try:
        pair.numerator()          # warm-up: imports, caches, first-use costs
        pair.denominator()
        num: list[float] = []
        den: list[float] = []
        for r in range(repeat):
            # alternate which side goes first, so a drift in machine load does not favour one side
            if r % 2 == 0:
                num.append(pair.numerator())
                den.append(pair.denominator())
            else:
                den.append(pair.denominator())
                num.append(pair.numerator())
        ratio = statistics.median(num) / statistics.median(den)
        ratios = [a / b for a, b in zip(num, den)]
        row.update(status="met" if ratio >= mod.GOAL else "missed", numerator=_summary(num),
                   denominator=_summary(den), ratio=ratio, ratio_min=min(ratios), ratio_max=max(ratios),
                   note=pair.note)
        if pair.parts:
            row["parts"] = {k: _summary(v) for k, v in pair.parts.items() if v}
        if profile and ratio < mod.GOAL:
            row["profile"] = profile_lines(pair.profile or pair.numerator)
    except Unavailable as e:
        row.update(status="unavailable", reason=str(e), numerator=None, denominator=None, ratio=None)
    except Exception as e:      # noqa: BLE001
        row.update(status="error", reason=_crash(e), numerator=None, denominator=None, ratio=None)
    finally:
        pair.close()
    row["seconds"] = time.perf_counter() - t0
    return row


def _crash(e: BaseException) -> str:
    import traceback
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {os.path.relpath(tb[-1].filename, repo_root())}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def profile_lines(fn: Callable[[], Any], top: int = 14) -> list[str]:
    """The top functions by own time of one run of ``fn`` (cProfile), as printable lines."""
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0)
    root = repo_root() + os.sep
    return [ln.replace(root, "") for ln in lines[start:] if ln.strip()]


# -- table ---------------------------------------------------------------------------------------

def _rate(x: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _side(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    return f"{_rate(s['median'])} [{_rate(s['min'])}-{_rate(s['max'])}]"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    head = f"{'figure':<26} {'numerator/s med [min-max]':<28} {'denominator/s med [min-max]':<28} {'ratio':>7} {'goal':>6}  status"
    out = [head, "-" * len(head)]
    for r in rows:
        if r["status"] in ("unavailable", "error"):
            out.append(f"{r['figure']:<26} {r['status'] + ': ' + r['reason']}")
            continue
        out.append(f"{r['figure']:<26} {_side(r['numerator']):<28} {_side(r['denominator']):<28} "
                   f"{r['ratio']:>7.3f} {r['goal']:>6.2f}  {r['status']}"
                   + ("" if r["status"] == "met" else f" (x{r['goal'] / r['ratio']:.1f} short)")
                   + (f"; two processes got {r['cores']:.1f} cores" if "cores" in r else ""))
        if r.get("parts"):
            out.append(f"{'':<26}   numerator alone: " + ", ".join(
                f"{k.replace('_', ' ')} {_rate(v['median'])}/s" for k, v in r["parts"].items()))
    return out


def curve_lines(curves: list[Curve]) -> list[str]:
    out = []
    for c in curves:
        out.append(f"{c.name} (per-op time vs {c.x_label}; goal: largest <= {c.limit:g}x smallest)")
        for s in c.series:
            m = c.medians(s)
            g = c.growth(s)
            pts = "  ".join(f"{x:>9,}: {_us(t)}" for x, t in m)
            out.append(f"  {s:<22} {pts}   growth x{g:.2f}" if g is not None else f"  {s:<22} {pts}")
        for n in c.notes:
            out.append(f"  note: {n}")
    return out


def check_line(c: dict[str, Any]) -> str:
    if c["status"] in ("unavailable", "error"):
        return f"{c['check']}: {c['status']}: {c['reason']}"
    if c["unit"] == "bytes":
        return (f"{c['check']}: {c['value'] / 2**20:.1f} MiB resident (limit {c['limit'] / 2**20:.0f} MiB) {c['status']}"
                + "".join(f"; {k} {v / 2**20:.1f} MiB" for k, v in c.get("detail", {}).items() if k.endswith("_bytes")))
    return f"{c['check']}: {c['value']} {c['unit']} (limit {c['limit']}) {c['status']}"


def _us(t: float) -> str:
    if t >= 1e-3:
        return f"{t * 1e3:8.2f} ms"
    return f"{t * 1e6:8.2f} us"


# -- output --------------------------------------------------------------------------------------

def markdown(result: dict[str, Any]) -> str:
    """The figures and curves as Markdown tables (written as bench.md, for the README)."""
    out: list[str] = []
    if result["figures"]:
        out += ["| figure | numerator (median [min-max]) | denominator (median [min-max]) | ratio | goal | status "
                "| cores' worth |", "|---|---|---|---|---|---|---|"]
    for r in result["figures"]:
        if r["status"] in ("unavailable", "error"):
            out.append(f"| {r['figure']} | {r['status']}: {r['reason']} | | | {r['goal']} | {r['status']} | |")
            continue
        status = r["status"] if r["status"] == "met" else f"missed (x{r['goal'] / r['ratio']:.1f} short)"
        out.append(f"| {r['figure']} | {_side(r['numerator'])} {r['unit']} | {_side(r['denominator'])} {r['unit']} "
                   f"| {r['ratio']:.3f} | ≥ {r['goal']} | {status} | {r['cores']:.1f} |" if "cores" in r else
                   f"| {r['ratio']:.3f} | ≥ {r['goal']} | {status} | |")
    if result["curves"]:
        out += ["", "| curve | series | per-op time at each size (median) | growth | goal |",
                "|---|---|---|---|---|"]
        for c in result["curves"]:
            for name, pts in c["series"].items():
                cells = ", ".join(f"{p['x']:,}: {_us(p['median']).strip()}" for p in pts)
                g = c["growth"][name]
                ok = "" if g is None else ("met" if g <= c["limit"] else "missed")
                out.append(f"| {c['name']} | {name} | {cells} | x{g:.2f} | ≤ x{c['limit']:g} {ok} |"
                           if g is not None else f"| {c['name']} | {name} | {cells} | | |")
    for c in result.get("checks", []):
        out += ["", check_line(c)]
    return "\n".join(out).strip("\n") + "\n"


def _commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", repo_root(), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def curve_to_json(c: Curve) -> dict[str, Any]:
    return {"name": c.name, "x_label": c.x_label, "limit": c.limit, "notes": c.notes,
            "series": {s: [{"x": x, **_summary(v)} for x, v in pts] for s, pts in c.series.items()},
            "growth": {s: c.growth(s) for s in c.series}}


def run(quick: bool, out: str, only: list[str] | None, repeat: int | None, profile: bool = True,
        print_: Callable[[str], None] = print) -> dict[str, Any]:
    t_start = time.perf_counter()
    repeat = repeat or (3 if quick else 7)
    mods = [load_module(f) for f in figure_modules()]
    names = [m.NAME for m in mods]
    cmods = [load_module(f) for f in curve_modules()]
    cnames = [m.NAME for m in cmods]
    if only:
        unknown = [o for o in only if o not in names and o not in cnames]
        if unknown:
            raise UsageError(f"unknown figure {unknown[0]!r}; figures: {', '.join(names + cnames)}")
        mods = [m for m in mods if m.NAME in only]
        cmods = [m for m in cmods if m.NAME in only]
    cores_at_start = parallel_capacity()
    print_(f"{os.cpu_count()} CPUs; two CPU-bound processes get {cores_at_start:.1f} cores' worth right now "
           "(figures that judge beside the run move with it)")
    rows = []
    for m in mods:
        print_(f"measuring {m.NAME} ({repeat} repeats) ...")
        rows.append(measure_figure(m, quick, repeat, profile=profile and not quick))
    curves: list[Curve] = []
    checks: list[dict[str, Any]] = []
    for m in cmods:
        print_(f"measuring curves of {m.NAME} ...")
        try:
            curves += m.curves(quick, repeat)
            if hasattr(m, "checks"):
                checks += m.checks(quick)
        except Exception as e:      # noqa: BLE001
            checks.append({"check": m.NAME, "status": "error", "reason": _crash(e)})
    result = {
        "memspec_bench": 1, "quick": quick, "repeat": repeat, "commit": _commit(),
        "machine": {"python": platform.python_version(), "system": platform.system(), "release": platform.release(),
                    "cpus": os.cpu_count(), "cores_worth": {"start": cores_at_start, "end": parallel_capacity()}},
        "figures": rows, "curves": [curve_to_json(c) for c in curves], "checks": checks,
        "seconds": None,
    }
    os.makedirs(out, exist_ok=True)
    print_("")
    for ln in table_lines(rows):
        print_(ln)
    if curves:
        print_("")
        for ln in curve_lines(curves):
            print_(ln)
    for c in checks:
        print_(check_line(c))
    for r in rows:
        if r.get("profile"):
            print_(f"\nprofile of {r['figure']}'s numerator (top functions by own time):")
            for ln in r["profile"]:
                print_("  " + ln)
    if curves:
        bench_plot = load_module("plot.py")
        png, svg = os.path.join(out, "scaling.png"), os.path.join(out, "scaling.svg")
        how = bench_plot.plot(curves, png, svg)
        result["plot"] = {"png": png, "svg": svg, "how": how}
    result["seconds"] = time.perf_counter() - t_start
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write(markdown(result))
    path = os.path.join(out, "bench.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)
    print_(f"\nwrote {path}" + (f", {result['plot']['png']}, {result['plot']['svg']}" if curves else "")
           + f" in {result['seconds']:.1f} s")
    return result
