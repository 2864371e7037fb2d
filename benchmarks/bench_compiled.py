"""What compiling the os judge would give: mypyc (or Cython) over the os model and the judge, sources unchanged.

    python benchmarks/bench_compiled.py [--compiler mypyc|cython] [--repeat 5] [--calls 1000] [--keep DIR]

Issue #20 allows a compiled hot path if pure Python cannot reach its goals.  Before anyone
rewrites the model for a compiler, this measures what a compiler gives the code as it is:

1. two copies of the installed package are laid out as one ``memspec`` tree each (the
   repository maps its top-level folders into ``memspec.*``): one stays pure Python, the
   other has the os model and the judge (``COMPILED``) compiled by mypyc;
2. mypy's complaints about those modules are silenced line by line in the compiled copy only
   (``# type: ignore``): they are annotations mypy finds wrong or cannot follow, and mypyc
   checks the declared types at run time instead, so a wrong one would show as a TypeError
   in step 3, not as a wrong verdict;
3. in fresh interpreters, pure and compiled alternating, the ``linux`` target runs
   ``fig_kernel``'s program (N rounds of mmap/mprotect/munmap) once and the model judges
   that run (``specs.judge.judge``, invariants on) several times; the best rate counts.

It prints the judged calls per second of both and their ratio (the same run of this script:
a ratio, not an absolute figure, is what carries over between machines).  It needs mypy
(``pip install mypy``, which brings mypyc) and a C compiler; without them it says so and
exits with status 2.  Not part of ``memspec bench`` (a compile takes minutes).

``--compiler cython`` compiles the same modules with Cython instead (``pip install cython``),
as plain Python source (no ``.pxd``, no type declarations; step 2 is not needed): what a
compiler gives code that was not written for it, without mypyc's run-time type checks.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

SUBPACKAGES = ("commands", "fuzz", "model", "reports", "specs", "targets")
# the judge's hot path for the os layer: every module a judged os call runs through
# (model/expect.py is left interpreted: its records set their slots through the slots' own
# descriptors, a pure-Python speed-up that mypyc refuses, as it refuses memspec/records.py's)
COMPILED = ("model/mm.py", "model/os/*.py", "model/intervals.py", "model/invariants.py",
            "model/pages.py", "model/fault.py", "specs/judge.py", "specs/step.py")

# Run in each fresh interpreter: one run of the program on ``linux``, judged K times.
TIMER = r"""
import json, sys, time
from memspec.benchmarks_compiled_program import program
from memspec.specs.judge import judge
from memspec.targets.linux import LinuxTarget
import memspec.model.mm as mm
n, k = int(sys.argv[1]), int(sys.argv[2])
prog = program(n)
t = LinuxTarget(timeout=60.0)
facts = t.facts()
run = t.run(prog)
best = 0.0
for _ in range(k):
    t0 = time.perf_counter()
    j = judge(prog, run, t.name, facts)
    dt = time.perf_counter() - t0
    assert j.failure is None, j.failure
    best = max(best, len(prog.calls) / dt)
t.close()
print(json.dumps({"rate": best, "compiled": mm.__file__.endswith(".so")}))
"""

def _fig_kernel_program() -> str:
    """The source of ``fig_kernel.program`` (the figure's program), to write into each copy."""
    spec = importlib.util.spec_from_file_location("fig_kernel", os.path.join(os.path.dirname(__file__), "fig_kernel.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return inspect.getsource(mod.program)


def lay_out(dest: str) -> str:
    """One ``memspec`` tree under ``dest`` holding the installed package and its mapped folders."""
    import memspec
    root = os.path.join(dest, "memspec")
    shutil.copytree(os.path.dirname(memspec.__file__), root,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    for sub in SUBPACKAGES:
        src = os.path.dirname(importlib.import_module(f"memspec.{sub}").__file__)
        there = os.path.join(root, sub)
        if os.path.islink(there):
            os.unlink(there)
        if not os.path.exists(there):
            shutil.copytree(src, there, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    with open(os.path.join(root, "benchmarks_compiled_program.py"), "w", encoding="utf-8") as f:
        f.write(_fig_kernel_program())
    return root


def sources(tree: str) -> list[str]:
    import glob
    out: list[str] = []
    for pattern in COMPILED:
        out += sorted(glob.glob(os.path.join("memspec", pattern), root_dir=tree))
    return out


def mark(tree: str, report: str) -> int:
    """Mark each line a mypy report calls an error with ``# type: ignore``; how many were marked."""
    lines: dict[str, set[int]] = {}
    for m in re.finditer(r"^(\S+\.py):(\d+): error", report, re.M):
        lines.setdefault(m.group(1), set()).add(int(m.group(2)))
    marked = 0
    for path, numbers in lines.items():
        full = os.path.join(tree, path)
        with open(full, encoding="utf-8") as f:
            text = f.read().split("\n")
        for n in numbers:
            if "# type: ignore" not in text[n - 1]:
                text[n - 1] += "  # type: ignore"
                marked += 1
        with open(full, "w", encoding="utf-8") as f:
            f.write("\n".join(text))
    return marked


def silence(tree: str, files: list[str]) -> int:
    """Mark every line mypy complains about; how many lines were marked."""
    marked = 0
    for _ in range(3):          # a marked line can reveal another one
        r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                            *files], cwd=tree, capture_output=True, text=True)
        got = mark(tree, r.stdout)
        if not got:
            break
        marked += got
    return marked


def rate(tree: str, calls: int, judgings: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    r = subprocess.run([sys.executable, "-c", TIMER, str(calls // 3), str(judgings)], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"timing run failed in {tree}:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


CYTHON_SETUP = """
from setuptools import setup
from Cython.Build import cythonize
# binding: the rules' functions keep their signatures (model/rules.py reads them)
setup(ext_modules=cythonize({files!r}, compiler_directives={{"language_level": 3, "binding": True}}, quiet=True))
"""


def cythonize(tree: str, files: list[str]) -> subprocess.CompletedProcess:
    """Compile ``files`` (package modules, not ``__init__``) in ``tree`` with Cython, in place."""
    files = [f for f in files if not f.endswith("__init__.py")]
    with open(os.path.join(tree, "setup_cython.py"), "w", encoding="utf-8") as f:
        f.write(CYTHON_SETUP.format(files=files))
    print(f"compiling {len(files)} modules with Cython ...", flush=True)
    return subprocess.run([sys.executable, "setup_cython.py", "build_ext", "--inplace", "-j", str(os.cpu_count() or 1)],
                          cwd=tree, capture_output=True, text=True)


def compile_mypyc(tree: str, files: list[str]) -> subprocess.CompletedProcess:
    marked = silence(tree, files)
    print(f"compiling {len(files)} modules with mypyc ({marked} lines mypy rejects marked '# type: ignore') ...",
          flush=True)
    for _ in range(4):
        r = subprocess.run([sys.executable, "-m", "mypyc", "--ignore-missing-imports", "--follow-imports=silent",
                            *files], cwd=tree, capture_output=True, text=True)
        # mypyc's own type check asks a little more than mypy's (a module-level name whose type it
        # cannot infer before use): those lines are marked too, and the compile tried again
        if r.returncode == 0 or not mark(tree, r.stdout):
            break
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timing runs per variant, alternating (default 5)")
    ap.add_argument("--calls", type=int, default=1000, help="calls in the judged program (default 1000)")
    ap.add_argument("--judgings", type=int, default=3, help="judgings of the run per timing run; the best counts")
    ap.add_argument("--compiler", choices=("mypyc", "cython"), default="mypyc",
                    help="what compiles the judge's modules (default mypyc)")
    ap.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (default: a temporary folder)")
    a = ap.parse_args(argv)
    need = {"mypyc": ("mypyc", "mypy with mypyc (pip install mypy)"), "cython": ("Cython", "Cython (pip install cython)")}
    module, what = need[a.compiler]
    if importlib.util.find_spec(module) is None:
        print(f"bench_compiled: needs {what} and a C compiler", file=sys.stderr)
        return 2
    base = a.keep or tempfile.mkdtemp(prefix="memspec-compiled-")
    pure, compiled = os.path.join(base, "pure"), os.path.join(base, "compiled")
    for d in (pure, compiled):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        lay_out(d)
    files = sources(compiled)
    r = cythonize(compiled, files) if a.compiler == "cython" else compile_mypyc(compiled, files)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:], sep="\n", file=sys.stderr)
        return 1
    got: dict[str, list[float]] = {"pure": [], "compiled": []}
    for i in range(a.repeat):
        for name, tree in (("pure", pure), ("compiled", compiled)):
            out = rate(tree, a.calls, a.judgings)
            assert out["compiled"] == (name == "compiled"), out
            got[name].append(out["rate"])
            print(f"  [{i + 1}/{a.repeat}] {name:8} {out['rate']:9.0f} judged calls/s", flush=True)
    p, c = statistics.median(got["pure"]), statistics.median(got["compiled"])
    print(f"judging alone, median of {a.repeat}: pure {p:.0f} calls/s, compiled {c:.0f} calls/s, "
          f"ratio {c / p:.2f}")
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
