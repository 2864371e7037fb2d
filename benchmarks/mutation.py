"""Mutation-score benchmark: how many mutants of memspec's own model does memspec catch?

    python benchmarks/mutation.py --layer os [--sample 100] [--seed 0] [--check-programs N]
                                  [--fuzz-seconds S] [--jobs 1] [--limit 300] [--out FILE.json]
    python benchmarks/mutation.py --layer os --list            # every mutant id of the layer
    python benchmarks/mutation.py --show ID                    # the mutated line of one mutant

No hand-written bugs: an AST mutator changes one thing in one module of a layer's
reference model (a comparison, an arithmetic or bit operator, an integer constant, a
condition negated, a statement dropped, the return values of two branches swapped).
Each mutant is named ``FILE:LINE:COL:OPERATOR`` (FILE relative to model/), so it is
rebuilt from its id alone; the sample is drawn from the layer's mutants by ``--seed``.

Each mutant runs in its own interpreter: a copy of the model package with the one file
mutated is written to a temporary folder under another package name, and
``memspec check --target py:benchmarks/mutation.py:MutantTarget()`` judges it with the
unmutated model (the mutant only answers the calls, as the ``model`` target does).
A time limit per mutant (``--limit``) ends a mutant that hangs.  Mutants ``check``
does not kill may then be fuzzed (``memspec fuzz --stop-on-finding`` for
``--fuzz-seconds``).  Verdicts: ``killed`` (a failure with its clause, time to detect
and reproducer length), ``survived``, ``crashed`` (the harness died), ``non-viable``
(the mutated model package does not even import -- e.g. a rule table whose check at import
fails -- so no target exists to judge: left out of the rate, as PIT's NON_VIABLE and
Stryker's compile-error mutants are), ``timeout``, ``stale`` (the module changed since the sample was drawn:
no verdict, left out), ``false-kill`` (the kill's reproducer, replayed on the unmutated
model served the same way, fails too: the model's own failure, not the mutant's; left out).  Mutants listed in benchmarks/mutation_equivalent.toml
(inspected by hand: no program can tell them from the model) are left out of the rate.
Results go to ``--out`` as JSON (written atomically, after every mutant), and a
Markdown table is printed.  Run from the repository root; not part of CI.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import copy
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from typing import Any, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "model")
PACKAGE = "memspec_mutant_model"          # the mutated copy's package name
OVERLAY_ENV = "MEMSPEC_MUTANT_OVERLAY"    # the folder holding the mutated copy
EQUIVALENT = os.path.join(ROOT, "benchmarks", "mutation_equivalent.toml")

# The modules of each layer's model (relative to model/).  Shared helpers (expect, rules,
# intervals) and the invariants, which a target never runs, are not mutated.
LAYER_FILES: dict[str, tuple[str, ...]] = {
    "os": ("mm.py", "fault.py", "fault_runs.py", "pressure.py", "pages.py", "os/access.py", "os/advice.py",
           "os/fileio.py", "os/files.py", "os/footprint.py", "os/locking.py", "os/mappings.py",
           "os/observation.py", "os/open_answers.py", "os/pressure_events.py",
           "os/processes.py", "os/sealing.py", "os/state.py", "os/bulk.py", "os/splits.py", "os/limits.py"),
    "phys": ("phys.py", "allocator.py", "buddy.py", "dma.py", "frames.py", "gc.py", "heap.py",
             "numa.py", "slab.py", "vmalloc.py"),
    "hw": ("paging.py", "paging_state.py", "paging_control.py", "paging_invalidation.py", "paging_access.py",
           "paging_ad.py", "pte.py", "seg.py", "segunit.py", "tlb.py", "walk.py", "walkbatch.py", "hw_removed.py"),
    "virt": ("virt.py", "ept.py", "kpti.py", "walk2d.py"),
}

# comparison flips: the boundary moved and the comparison negated
CMP_FLIPS: dict[str, tuple[str, ...]] = {
    "Lt": ("LtE", "GtE"), "LtE": ("Lt", "Gt"), "Gt": ("GtE", "LtE"), "GtE": ("Gt", "Lt"),
    "Eq": ("NotEq",), "NotEq": ("Eq",), "Is": ("IsNot",), "IsNot": ("Is",),
    "In": ("NotIn",), "NotIn": ("In",),
}
# arithmetic and bit operators
BIN_SWAPS: dict[str, tuple[str, ...]] = {
    "Add": ("Sub",), "Sub": ("Add",), "BitAnd": ("BitOr",), "BitOr": ("BitAnd",),
    "LShift": ("RShift",), "RShift": ("LShift",), "BitXor": ("BitOr",),
    "Mult": ("FloorDiv",), "FloorDiv": ("Mult",), "Mod": ("FloorDiv",),
}
SIMPLE_STMTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Raise,
                ast.Delete)
OPERATORS = ("cmp", "bin", "const", "not", "drop", "swapret")


@dataclass(frozen=True, order=True)
class Mutant:
    file: str       # relative to model/, e.g. "os/mappings.py"
    line: int
    col: int
    op: str         # e.g. "cmp.Lt>GtE.0", "bin.Add>Sub", "const.4>5", "not", "drop", "swapret"

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.col}:{self.op}"

    @staticmethod
    def parse(text: str) -> "Mutant":
        file, line, col, op = text.split(":", 3)
        return Mutant(file, int(line), int(col), op)


# -- finding mutation points ----------------------------------------------------------------

def _skipped(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, ``if TYPE_CHECKING`` blocks."""
    skip: set[int] = set()

    def mark(n: ast.AST | None) -> None:
        if n is not None:
            skip.update(id(x) for x in ast.walk(n))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            mark(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                mark(a.annotation)
            for a in (node.args.vararg, node.args.kwarg):
                if a is not None:
                    mark(a.annotation)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            mark(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mark(node)
    return skip


def _in_function(tree: ast.Module) -> set[int]:
    """ids of the statements directly in a function's body (at any depth of blocks)."""
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if n is not fn and isinstance(n, ast.stmt):
                    inside.add(id(n))
    return inside


def _returns_pair(node: ast.If, follower: ast.stmt | None) -> tuple[ast.Return, ast.Return] | None:
    """The two returns ``swapret`` exchanges: the last statement of the ``if`` body and the
    last of its ``else`` (or the statement right after the ``if``), both returning a value."""
    a = node.body[-1] if node.body else None
    b = node.orelse[-1] if node.orelse else (follower if not node.orelse else None)
    if isinstance(a, ast.Return) and isinstance(b, ast.Return) and a.value is not None \
            and b.value is not None and ast.dump(a.value) != ast.dump(b.value):
        return a, b
    return None


def _followers(tree: ast.Module) -> dict[int, ast.stmt]:
    nxt: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                for s, t in zip(block, block[1:]):
                    nxt[id(s)] = t
    return nxt


def _points(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """(node, op) for every mutation of ``tree``, in a fixed order."""
    skip = _skipped(tree)
    inside = _in_function(tree)
    nxt = _followers(tree)
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno"):
            continue
        if isinstance(node, ast.Compare):
            for i, o in enumerate(node.ops):
                for new in CMP_FLIPS.get(type(o).__name__, ()):
                    yield node, f"cmp.{type(o).__name__}>{new}.{i}"
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            for new in BIN_SWAPS.get(type(node.op).__name__, ()):
                yield node, f"bin.{type(node.op).__name__}>{new}"
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            n = node.value
            for new in dict.fromkeys((n + 1, n - 1, 0)):
                if new != n:
                    yield node, f"const.{n}>{new}"
        if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)) and id(node.test) not in skip:
            yield node, "not"
        if isinstance(node, SIMPLE_STMTS) and id(node) in inside \
                and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            yield node, "drop"
        if isinstance(node, ast.If) and id(node) in inside and _returns_pair(node, nxt.get(id(node))):
            yield node, "swapret"


def _key(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset    # type: ignore[attr-defined]


def mutants_of(layer: str, files: tuple[str, ...] | None = None) -> list[Mutant]:
    """Every mutant of a layer's model (or of ``files`` of it), in a fixed order (file, then
    the order of the module's syntax tree, then operator)."""
    return [m for rel in LAYER_FILES[layer] if files is None or rel in files for m in _file_mutants(rel)]


@functools.lru_cache(maxsize=None)
def _file_mutants(rel: str) -> tuple[Mutant, ...]:
    out: dict[Mutant, None] = {}
    for node, op in _points(ast.parse(_read(rel))):
        # two nodes at one position with one operator (never seen in the model): the first
        out.setdefault(Mutant(rel, *_key(node), op))
    return tuple(out)


def _read(rel: str) -> str:
    with open(os.path.join(MODEL, rel)) as f:
        return f.read()


# -- applying one mutant --------------------------------------------------------------------

class MutantNotFound(ValueError):
    pass


def mutate(m: Mutant) -> str:
    """The source of ``m.file`` with the mutant applied (the rest of the module unparsed as is)."""
    tree = ast.parse(_read(m.file))
    nxt = _followers(tree)
    for node, op in _points(tree):
        if op == m.op and _key(node) == (m.line, m.col):
            _apply(node, op, nxt.get(id(node)))
            return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    raise MutantNotFound(f"no mutation {m.op} at {m.file}:{m.line}:{m.col}")


def _apply(node: ast.AST, op: str, follower: ast.stmt | None) -> None:
    kind, _, arg = op.partition(".")
    if kind == "cmp":
        change, _, index = arg.partition(".")
        new = change.split(">")[1]
        node.ops[int(index)] = getattr(ast, new)()                 # type: ignore[attr-defined]
    elif kind == "bin":
        node.op = getattr(ast, arg.split(">")[1])()                 # type: ignore[attr-defined]
    elif kind == "const":
        node.value = int(arg.split(">")[1])                         # type: ignore[attr-defined]
    elif kind == "not":
        node.test = ast.UnaryOp(ast.Not(), node.test)               # type: ignore[attr-defined]
    elif kind == "drop":
        # the statement becomes ``pass`` (a block never ends up empty)
        node.__class__ = ast.Pass
        for f in list(node._fields):
            if hasattr(node, f):
                delattr(node, f)
    elif kind == "swapret":
        pair = _returns_pair(node, follower)                       # type: ignore[arg-type]
        assert pair is not None
        a, b = pair
        a.value, b.value = copy.deepcopy(b.value), copy.deepcopy(a.value)
    else:
        raise ValueError(f"unknown operator {op!r}")


def mutated_line(m: Mutant) -> tuple[str, str]:
    """(original line, the mutated statement as unparsed) -- for inspecting a mutant by hand."""
    original = _read(m.file).splitlines()[m.line - 1].strip()
    tree = ast.parse(mutate(m))
    orig_tree = ast.parse(_read(m.file))
    # the first top-level statement that differs, unparsed
    for a, b in zip(orig_tree.body, tree.body):
        if ast.dump(a) != ast.dump(b):
            inner = _first_difference(a, b)
            return original, ast.unparse(inner)
    return original, "(no difference)"


def _first_difference(a: ast.AST, b: ast.AST) -> ast.AST:
    """The smallest statement of ``b`` that differs from its counterpart in ``a``."""
    for field in ("body", "orelse", "finalbody", "handlers"):
        xa, xb = getattr(a, field, None), getattr(b, field, None)
        if isinstance(xa, list) and isinstance(xb, list):
            for sa, sb in zip(xa, xb):
                if ast.dump(sa) != ast.dump(sb):
                    if isinstance(sb, (ast.If, ast.While, ast.For, ast.With, ast.Try)) \
                            and ast.dump(getattr(sa, "test", sa)) == ast.dump(getattr(sb, "test", sb)) \
                            and type(sa) is type(sb):
                        return _first_difference(sa, sb)
                    if isinstance(sb, (ast.FunctionDef, ast.ClassDef)):
                        return _first_difference(sa, sb)
                    return sb
    return b


def write_overlay(m: Mutant | None, folder: str) -> str:
    """A copy of the model package under ``PACKAGE`` in ``folder``, with ``m`` applied."""
    dest = os.path.join(folder, PACKAGE)
    shutil.copytree(MODEL, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if m is not None:
        with open(os.path.join(dest, m.file), "w") as f:
            f.write(mutate(m))
    return folder


# -- the target a mutant is served as (loaded by ``py:benchmarks/mutation.py:MutantTarget()``) --

def MutantTarget() -> Any:
    """The ``model`` target, with the model taken from the mutated copy in $MEMSPEC_MUTANT_OVERLAY.
    An exception of the mutated model is a crash of the target (``memspec.target.alive``)."""
    import importlib

    from memspec.errors import SessionFailed
    from memspec.records import Mapping, Observation, RunStatus
    from memspec.targets.base import Session
    from memspec.targets.model import ModelTarget

    folder = os.environ[OVERLAY_ENV]
    if folder not in sys.path:
        sys.path.insert(0, folder)
    registry = importlib.import_module(f"{PACKAGE}.registry")
    mm = importlib.import_module(f"{PACKAGE}.mm")

    class MutantSession(Session):
        def __init__(self, layer: str) -> None:
            self.system = self._guard(registry.new_model, layer, None)

        @staticmethod
        def _guard(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as e:  # noqa: BLE001 -- the mutant's failure is its verdict
                raise SessionFailed(RunStatus.CRASH, f"mutant raised {type(e).__name__}: {e}") from None

        def call(self, call: Any, args: tuple[int | str, ...]) -> Any:
            def step() -> Any:
                proc = call.proc or "main"
                o = self.system.expect(proc, call.name, args).default
                self.system.apply(proc, call.name, args, o)
                self.system.bind(proc, call.name, call.result, o)
                return o
            return self._guard(step)

        def observe(self) -> Observation:
            def look() -> Observation:
                if not isinstance(self.system, mm.System):
                    show = getattr(self.system, "observe", None)
                    return Observation(extra=tuple(sorted(show().items()))) if show else Observation()
                return Observation(tuple(
                    (p, tuple(Mapping(s, e, perms) for s, e, perms in self.system.maps(p)))
                    for p in self.system.procs))
            return self._guard(look)

    class _MutantTarget(ModelTarget):
        name = "mutant"

        def facts(self) -> dict[str, Any]:
            # what the served model is, as a real target declares its machine: the reference
            # model's defaults (read from the unmutated Config: a mutant that changes them then
            # disagrees with what it declared), so the os generator's limit scenarios aim at them
            from memspec.model.os.state import Config
            c = Config()
            return {"ram_pages": c.ram_pages, "swap_pages": c.swap_pages, "overcommit_memory": c.overcommit_memory}

        def session(self, layer: str = "os") -> Session:
            return MutantSession(layer)

    return _MutantTarget()


# -- running one mutant ---------------------------------------------------------------------

TARGET = "py:" + os.path.relpath(os.path.abspath(__file__), ROOT) + ":MutantTarget()"


def _run(argv: list[str], env: dict[str, str], limit: float) -> tuple[int | None, float, str]:
    """Run a memspec command in its own process group; (exit code or None on timeout, s, stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=limit)
        return p.returncode, time.monotonic() - t0, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return None, time.monotonic() - t0, ""


def _import_error(d: str, env: dict[str, str], limit: float) -> str | None:
    """The last line of the error the mutated package raises when it is imported (the two
    modules ``MutantTarget`` loads before any call), or None when it imports."""
    probe = (f"import sys; sys.path.insert(0, {d!r}); "
             f"import {PACKAGE}.registry, {PACKAGE}.mm")
    code, _, err = _run([sys.executable, "-c", probe], env, limit)
    if code == 0 or code is None:
        return None
    return ((err.strip().splitlines() or [""])[-1])[-300:]


def _fails_unmutated(program: str, d: str, limit: float) -> bool:
    """Whether the saved ``program`` also fails on the unmutated model served the same way: a
    kill that is not the mutant's (a failure of the model itself, e.g. one being edited)."""
    base = os.path.join(d, "unmutated")
    if not os.path.isdir(base):
        os.makedirs(base)
        write_overlay(None, base)
    env = dict(os.environ, **{OVERLAY_ENV: base, "PYTHONDONTWRITEBYTECODE": "1"})
    code, _, _ = _run([sys.executable, "-m", "memspec.commands.cli", "replay", "--target", TARGET, program],
                      env, limit)
    return code == 1


def _confirm(res: dict[str, Any], program: str | None, d: str, limit: float) -> dict[str, Any]:
    """A kill stands only if its reproducer passes on the unmutated model; else ``false-kill``."""
    if program and os.path.exists(program):
        if _fails_unmutated(program, d, limit):
            res["verdict"] = "false-kill"
    else:
        res["unconfirmed"] = True      # no saved reproducer to replay
    return res


def _saved_finding(out: str, t0: float) -> tuple[str, str, int, float] | None:
    """The first finding ``check`` saved (confirmed and shrunk) before it was stopped: (path,
    clause, calls, seconds from the start to the file's writing), or None."""
    found = []
    for root, _, names in os.walk(os.path.join(out, "counterexamples")):
        for n in names:
            if n.endswith(".mst"):
                path = os.path.join(root, n)
                found.append((os.path.getmtime(path), path))
    for mtime, path in sorted(found):
        with open(path) as f:
            lines = f.read().splitlines()
        head = dict(ln[2:].split(": ", 1) for ln in lines if ln.startswith("# ") and ": " in ln)
        if head.get("verdict") == "flaky":
            continue
        calls = sum(1 for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
        return path, head.get("clause", ""), calls, round(mtime - t0, 2)
    return None


def _first_detection(target: dict[str, Any]) -> float | None:
    """Seconds into the run at which the first failure was counted (the report's timeline)."""
    for row in target.get("timeline", []):
        if len(row) > 3 and row[3] > 0:
            return float(row[0])
    return None


def judge_mutant(m: Mutant | None, layer: str, seed: int, programs: int | None,
                 fuzz_seconds: float, limit: float, prior: dict[str, Any] | None = None) -> dict[str, Any]:
    """Serve one mutant (None: the unmutated model) as a target; check it, then fuzz it if alive.
    With ``prior`` (this mutant's result of an earlier run, survived by check) only fuzz."""
    res: dict[str, Any] = {"id": m.id if m else "(unmutated)"}
    if prior is not None:
        res.update(prior)
    with tempfile.TemporaryDirectory(prefix="memspec-mutant-") as d:
        try:
            write_overlay(m, d)
        except MutantNotFound as e:
            # the module changed since the sample was drawn (someone edited the model): no
            # verdict, left out of the rate
            res.update(verdict="stale", stage="mutate", error=str(e))
            return res
        env = dict(os.environ, **{OVERLAY_ENV: d, "PYTHONDONTWRITEBYTECODE": "1"})
        if prior is not None:
            return _fuzz(res, d, env, layer, seed, fuzz_seconds, limit)
        load_error = _import_error(d, env, limit)
        if load_error is not None:
            res.update(verdict="non-viable", stage="import", error=load_error)
            return res
        out = os.path.join(d, "out")
        argv = [sys.executable, "-m", "memspec.commands.cli", "check", "--target", TARGET,
                "--layer", layer, "--seed", str(seed), "--out", out, "--quiet"]
        if programs is not None:
            argv += ["--programs", str(programs)]
        t0 = time.time()
        code, secs, err = _run(argv, env, limit)
        res["check_s"] = round(secs, 2)
        report = os.path.join(out, "report.json")
        if code is None:
            late = _saved_finding(out, t0)
            if late is not None:
                # the run was still confirming and shrinking other failures at the limit, but one
                # failure was already confirmed, shrunk and saved: a kill (replayed below like any)
                path, clause, calls, at = late
                res.update(verdict="killed", stage="check", clause=clause, detect_s=at, repro_calls=calls,
                           late=True)
                return _confirm(res, path, d, limit)
            res.update(verdict="timeout", stage="check")
            return res
        if not os.path.exists(report):
            res.update(verdict="crashed", stage="check", error=err.strip().splitlines()[-1:] or [""])
            res["error"] = res["error"][0][-300:]
            return res
        with open(report) as f:
            rep = json.load(f)
        t = rep["targets"][0]
        fails = t.get("failures", [])
        if fails:
            first = fails[0]
            res.update(verdict="killed", stage="check", clause=first.get("clause", ""),
                       detect_s=_first_detection(t), repro_calls=_repro_len(first),
                       failures=len(fails))
            return _confirm(res, first.get("file") or None, d, limit)
        res.update(verdict="survived", stage="check", programs=t.get("programs"))
        return _fuzz(res, d, env, layer, seed, fuzz_seconds, limit)


def _fuzz(res: dict[str, Any], d: str, env: dict[str, str], layer: str, seed: int,
          fuzz_seconds: float, limit: float) -> dict[str, Any]:
    """The fuzz stage for a mutant check left alive: ``memspec fuzz --stop-on-finding``."""
    if fuzz_seconds <= 0:
        return res
    summary = os.path.join(d, "fuzz.json")
    argv = [sys.executable, "-m", "memspec.commands.cli", "fuzz", "--target", TARGET,
            "--layer", layer, "--time", str(fuzz_seconds), "--seed", str(seed),
            "--engine", "python", "--stop-on-finding", "--quiet",
            "--corpus", os.path.join(d, "corpus"), "--findings", os.path.join(d, "findings"),
            "--summary-json", summary]
    code, secs, err = _run(argv, env, fuzz_seconds + limit)
    res["fuzz_s"] = round(secs, 2)
    if code is None:
        res.update(verdict="timeout", stage="fuzz")
    elif os.path.exists(summary):
        with open(summary) as f:
            s = json.load(f)
        ff = s.get("first_finding")
        if ff:
            res.update(verdict="killed", stage="fuzz", clause=ff.get("clause", ""),
                       detect_s=ff.get("seconds"), repro_calls=ff.get("calls"))
            found = sorted(os.path.join(r, n) for r, _, ns in os.walk(os.path.join(d, "findings"))
                           for n in ns if n.endswith(".mst"))
            return _confirm(res, found[0] if found else None, d, limit)
    else:
        res.update(fuzz_error=(err.strip().splitlines() or [""])[-1][-300:])
    return res


def _repro_len(failure: dict[str, Any]) -> int | None:
    """Calls in a failure's (minimised) reproducer, as the report gives it."""
    for key in ("minimised", "reproducer", "program"):
        v = failure.get(key)
        if isinstance(v, str):
            return len([ln for ln in v.splitlines() if ln.strip() and not ln.lstrip().startswith("#")])
        if isinstance(v, list):
            return len(v)
    for key in ("calls", "length", "repro_calls"):
        if isinstance(failure.get(key), int):
            return failure[key]
    return None


# -- the benchmark --------------------------------------------------------------------------

def equivalent_ids() -> dict[str, str]:
    """Mutant id -> why it is equivalent (benchmarks/mutation_equivalent.toml).  Each entry
    keeps its id as inspected (what older results name) and, when the model has been edited
    since, the id re-anchored where its ``source`` line now is (one line with that text)."""
    out: dict[str, str] = {}
    for e in equivalent_entries():
        out[e["id"]] = e["reason"]
        now = reanchor(e)
        if now:
            out[now] = e["reason"]
    return out


def equivalent_entries() -> list[dict[str, Any]]:
    if not os.path.exists(EQUIVALENT):
        return []
    with open(EQUIVALENT, "rb") as f:
        return list(tomllib.load(f).get("equivalent", []))


def reanchor(entry: dict[str, Any]) -> str | None:
    """The id of ``entry``'s mutant in the model as it is now: its line, else the one line
    holding its ``source`` text; None when that text is gone or not unique."""
    m = Mutant.parse(entry["id"])
    lines = [ln.strip() for ln in _read(m.file).splitlines()]
    src = entry.get("source", "")
    if 0 < m.line <= len(lines) and lines[m.line - 1] == src:
        return m.id
    at = [i for i, ln in enumerate(lines, 1) if ln == src]
    return Mutant(m.file, at[0], m.col, m.op).id if len(at) == 1 else None


def sample(layer: str, n: int, seed: int) -> list[Mutant]:
    """``n`` mutants of the layer: the first ``n`` of its mutants shuffled by ``seed`` (so a
    smaller sample is the start of a larger one with the same seed)."""
    everything = mutants_of(layer)
    random.Random(seed).shuffle(everything)
    return everything[:n]


def model_digest(layer: str) -> str:
    """A digest of the layer's model modules: two runs with the same digest mutated the same code."""
    h = hashlib.sha256()
    for rel in LAYER_FILES[layer]:
        h.update(rel.encode() + b"\0" + _read(rel).encode() + b"\0")
    return h.hexdigest()[:16]


def _write_atomic(path: str, data: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mutation-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def summarise(results: list[dict[str, Any]], equivalent: dict[str, str]) -> dict[str, Any]:
    done = [r for r in results if r["id"] != "(unmutated)"]
    eq = [r for r in done if r["id"] in equivalent]
    judged = [r for r in done if r["id"] not in equivalent]
    stale = [r for r in judged if r["verdict"] == "stale"]
    false_kills = [r for r in judged if r["verdict"] == "false-kill"]
    non_viable = [r for r in judged if r["verdict"] == "non-viable"]
    judged = [r for r in judged if r["verdict"] not in ("stale", "false-kill", "non-viable")]
    by = {v: [r for r in judged if r["verdict"] == v] for v in ("killed", "survived", "crashed", "timeout")}
    by_check = [r for r in by["killed"] if r["stage"] == "check"]
    n = len(judged)

    def pct(k: int) -> float | None:
        return round(100.0 * k / n, 1) if n else None

    by_op: dict[str, list[int]] = {}
    for r in judged:
        counts = by_op.setdefault(Mutant.parse(r["id"]).op.split(".")[0], [0, 0])
        counts[0] += r["verdict"] == "killed"
        counts[1] += 1
    detect = [r["detect_s"] for r in by_check if r.get("detect_s") is not None]
    repro = [r["repro_calls"] for r in by["killed"] if r.get("repro_calls") is not None]
    return {
        "mutants": len(done), "equivalent": len(eq), "stale": len(stale), "false_kills": len(false_kills),
        "non_viable": len(non_viable), "judged": n,
        "killed_by_check": len(by_check), "killed_by_fuzz": len(by["killed"]) - len(by_check),
        "survived": len(by["survived"]), "crashed": len(by["crashed"]), "timeout": len(by["timeout"]),
        "kill_rate_check_pct": pct(len(by_check)),
        "kill_rate_check_fuzz_pct": pct(len(by["killed"])),
        "detected_pct": pct(len(by["killed"]) + len(by["crashed"]) + len(by["timeout"])),
        "detect_s_median": round(statistics.median(detect), 3) if detect else None,
        "detect_s_max": max(detect) if detect else None,
        "repro_calls_median": statistics.median(repro) if repro else None,
        "repro_calls_max": max(repro) if repro else None,
        "killed_by_crash": sum(r.get("clause") == "memspec.target.alive" for r in by["killed"]),
        "killed_late": sum(bool(r.get("late")) for r in by["killed"]),
        "by_operator": {op: {"killed": k, "judged": j} for op, (k, j) in sorted(by_op.items())},
        "check_s_mean": round(statistics.mean(r["check_s"] for r in done if "check_s" in r), 1)
        if any("check_s" in r for r in done) else None,
    }


def table(layer: str, s: dict[str, Any]) -> str:
    return "\n".join([
        "| layer | mutants | equivalent | stale | killed by check | + fuzz | crashed | timeout | survived "
        "| check kill % | check+fuzz kill % | median detect s | median repro calls |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {layer} | {s['mutants']} | {s['equivalent']} | {s.get('stale', 0)} | {s['killed_by_check']} "
        f"| {s['killed_by_fuzz']} "
        f"| {s['crashed']} | {s['timeout']} | {s['survived']} | {s['kill_rate_check_pct']} "
        f"| {s['kill_rate_check_fuzz_pct']} | {s['detect_s_median']} | {s['repro_calls_median']} |",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", choices=sorted(LAYER_FILES), default="os")
    ap.add_argument("--sample", type=int, default=300, help="mutants drawn (default 300)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample and of check/fuzz")
    ap.add_argument("--check-programs", type=int, default=None,
                    help="random programs of check (default: check's own default)")
    ap.add_argument("--fuzz-seconds", type=float, default=0.0,
                    help="fuzz each mutant check leaves alive this long (default 0: no fuzz)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--limit", type=float, default=300.0, help="time limit per mutant and stage, s")
    ap.add_argument("--fuzz-survivors-of", metavar="FILE",
                    help="only fuzz --sample of the mutants an earlier run's FILE lists as survived by "
                         "check (not the equivalent ones), --fuzz-seconds each; all results written to --out")
    ap.add_argument("--only", action="append", default=[], help="judge this mutant id (repeatable)")
    ap.add_argument("--baseline", action="store_true", help="also judge the unmutated model first")
    ap.add_argument("--out", default="memspec-out/mutation.json")
    ap.add_argument("--summarise", metavar="FILE",
                    help="recompute FILE's summary with the current equivalent list, print its table")
    ap.add_argument("--list", action="store_true", help="print every mutant id of the layer")
    ap.add_argument("--show", metavar="ID", help="print a mutant's original and mutated line")
    a = ap.parse_args(argv)

    if a.show:
        before, after = mutated_line(Mutant.parse(a.show))
        print(f"- {before}\n+ {after}")
        return 0
    if a.summarise:
        with open(a.summarise) as f:
            doc = json.load(f)
        doc["summary"] = summarise(doc["results"], equivalent_ids())
        _write_atomic(a.summarise, doc)
        print(table(doc["layer"], doc["summary"]))
        return 0
    if a.list:
        for m in mutants_of(a.layer):
            print(m.id)
        return 0
    todo: list[Mutant | None] = [Mutant.parse(i) for i in a.only] if a.only else sample(a.layer, a.sample, a.seed)
    equivalent = equivalent_ids()
    priors: dict[str, dict[str, Any]] = {}
    earlier: list[dict[str, Any]] = []
    if a.fuzz_survivors_of:
        with open(a.fuzz_survivors_of) as f:
            earlier = json.load(f)["results"]
        alive = sorted(r["id"] for r in earlier if r["verdict"] == "survived" and r.get("stage") == "check"
                       and "fuzz_s" not in r and r["id"] not in equivalent and r["id"] != "(unmutated)")
        random.Random(a.seed).shuffle(alive)
        chosen = set(alive[:a.sample])      # --sample of them, drawn by --seed
        priors = {r["id"]: r for r in earlier if r["id"] in chosen}
        earlier = [r for r in earlier if r["id"] not in chosen]
        todo = [Mutant.parse(i) for i in sorted(chosen)]
    if a.baseline:
        todo.insert(0, None)
    print(f"{a.layer}: {len(mutants_of(a.layer))} mutants, judging {len(todo)}", file=sys.stderr)
    doc: dict[str, Any] = {"layer": a.layer, "seed": a.seed, "sample": a.sample,
                           "check_programs": a.check_programs, "fuzz_seconds": a.fuzz_seconds,
                           "limit": a.limit, "command": " ".join(["python", "benchmarks/mutation.py"]
                                                                 + (argv if argv is not None else sys.argv[1:])),
                           "results": list(earlier)}
    doc["model_digest"] = model_digest(a.layer)
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futures = {pool.submit(judge_mutant, m, a.layer, a.seed, a.check_programs, a.fuzz_seconds, a.limit,
                               priors.get(m.id) if m else None): m
                   for m in todo}
        for i, fut in enumerate(cf.as_completed(futures), 1):
            r = fut.result()
            doc["results"].append(r)
            doc["results"].sort(key=lambda r: r["id"])
            doc["summary"] = summarise(doc["results"], equivalent)
            doc["elapsed_s"] = round(time.monotonic() - t0, 1)
            _write_atomic(a.out, doc)
            print(f"[{i}/{len(todo)}] {r['id']}: {r['verdict']} {r.get('stage', '')} "
                  f"{r.get('clause', '')} {r.get('check_s', '')}s", file=sys.stderr)
    doc["model_digest_end"] = model_digest(a.layer)
    _write_atomic(a.out, doc)
    if doc["model_digest_end"] != doc["model_digest"]:
        print("warning: the model changed during the run (model_digest differs at the end)", file=sys.stderr)
    print(table(a.layer, doc["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
