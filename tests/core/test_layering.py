"""Imports go downward only (docs/architecture.md): every import of every module, function-local
ones included, read from the source, against the rule of its part.

    core (memspec/)  <-  model  <-  specs  <-  fuzz  <-  commands
    core  <-  targets (and the model, for the in-process targets that run it)
    core  <-  reports (they read run results only)
    nothing imports the commands

and the model's modules import one another without a cycle (none hidden in a function either).
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# source folder -> the package it installs as (pyproject.toml's package-dir)
FOLDERS = {"memspec": "memspec", "model": "memspec.model", "specs": "memspec.specs", "fuzz": "memspec.fuzz",
           "targets": "memspec.targets", "reports": "memspec.reports", "commands": "memspec.commands"}

PARTS = ("model", "specs", "fuzz", "targets", "reports", "commands")

ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "specs": {"core", "model", "specs"},
    "fuzz": {"core", "model", "specs", "fuzz"},
    "targets": {"core", "model", "targets"},
    "reports": {"core", "reports"},
    "commands": {"core", "model", "specs", "fuzz", "targets", "reports", "commands"},
}

# Scripts that are entry points (nothing imports them; they are run): OSS-Fuzz's fuzz targets.
ENTRY_SCRIPTS = ("fuzz/oss/",)


def part_of(module: str) -> str | None:
    """The part a dotted module name belongs to, or None for anything outside memspec."""
    if module != "memspec" and not module.startswith("memspec."):
        return None
    for p in PARTS:
        if module == f"memspec.{p}" or module.startswith(f"memspec.{p}."):
            return p
    return "core"


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)
    folder, rest = rel.split(os.sep, 1)
    dotted = rest[:-3].replace(os.sep, ".")
    if dotted == "__init__":
        return FOLDERS[folder]
    return FOLDERS[folder] + "." + dotted.removesuffix(".__init__")


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement anywhere in ``source`` names (top level, in functions, in
    classes), as absolute dotted names, with its line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                base = base[:keep]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.append((node.lineno, prefix))
            out += [(node.lineno, f"{prefix}.{a.name}") for a in node.names]
    return out


def violations(path: str, source: str | None = None) -> list[str]:
    module = module_name(path)
    me = part_of(module)
    assert me is not None
    if source is None:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    bad = []
    for line, name in imports_of(source, module, path.endswith("__init__.py")):
        other = part_of(name)
        if other is not None and other not in ALLOWED[me]:
            bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {me} imports {name} ({other})")
    return bad


def sources() -> list[str]:
    out = []
    for folder in FOLDERS:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            rel = os.path.relpath(dirpath, ROOT) + os.sep
            if any(rel.startswith(e) for e in ENTRY_SCRIPTS):
                continue
            out += [os.path.join(dirpath, f) for f in files if f.endswith(".py")]
    return sorted(out)


def test_every_import_goes_downward() -> None:
    files = sources()
    assert len(files) > 80, "the walk found too few modules to be checking anything"
    bad = [v for f in files for v in violations(f)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


@pytest.mark.parametrize("where, text", [
    ("model/mm.py", "from memspec.specs.catalogue import get\n"),                       # model -> specs
    ("model/mm.py", "def f():\n    from ..targets import registry\n"),                  # function-local, relative
    ("targets/linux.py", "import memspec.specs.judge\n"),                                 # targets -> specs
    ("targets/linux.py", "from memspec.fuzz.layers import LAYERS\n"),                    # targets -> fuzz
    ("reports/html.py", "from memspec.model.mm import System\n"),                        # reports -> model
    ("specs/judge.py", "class C:\n    def m(self):\n        from memspec.commands.check import Checker\n"),
    ("fuzz/layers.py", "from memspec.targets.registry import make_target\n"),            # fuzz -> targets
    ("memspec/program.py", "from memspec import commands\n"),                            # core -> commands
    ("memspec/program.py", "from .results import RunResults\nfrom memspec.model import mm\n"),  # core -> model
])
def test_an_upward_import_is_caught(where, text) -> None:
    assert violations(os.path.join(ROOT, where), text), f"{text!r} in {where} was not caught"


@pytest.mark.parametrize("where, text", [
    ("commands/check.py", "from memspec.targets.registry import make_target\nfrom memspec.reports import html\n"),
    ("fuzz/layers.py", "from memspec.specs.judge import COMPARE\nfrom memspec.model.registry import FACTORIES\n"),
    ("targets/model.py", "from memspec.model.registry import new_model\n"),
    ("reports/html.py", "from memspec.results import RunResults\n"),
    ("model/mm.py", "import numpy\nfrom memspec.records import Outcome\n"),
])
def test_a_downward_import_is_allowed(where, text) -> None:
    assert violations(os.path.join(ROOT, where), text) == []


def test_nothing_imports_the_commands() -> None:
    users = []
    for f in sources():
        module = module_name(f)
        if part_of(module) == "commands":
            continue
        with open(f, encoding="utf-8") as fh:
            names = [n for _, n in imports_of(fh.read(), module, f.endswith("__init__.py"))]
        if any(part_of(n) == "commands" for n in names):
            users.append(os.path.relpath(f, ROOT))
    assert users == []


# --- no import cycle among the model's modules ----------------------------------------------------

def model_sources() -> dict[str, str]:
    """Every model module's dotted name -> its file."""
    return {module_name(f): f for f in sources() if part_of(module_name(f)) == "model"}


def model_imports(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The model modules an import anywhere in ``source`` loads (``from . import fault`` loads
    ``fault``, not the package; ``from .pages import Page`` loads ``pages``)."""
    out: set[str] = set()

    def module_of(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [module_of(a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else module_of(prefix)
                       for a in node.names]
        else:
            continue
        out |= {t for t in targets if t is not None and t != module}
    return out


def import_cycle(overrides: dict[str, str] | None = None) -> list[str] | None:
    """A cycle of imports among the model's modules (as a path that returns to its start), or None.
    ``overrides`` replaces the source of some files (relative paths) to show the check works."""
    files = model_sources()
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        rel = os.path.relpath(path, ROOT)
        if overrides and rel in overrides:
            source = overrides[rel]
        else:
            with open(path, encoding="utf-8") as fh:
                source = fh.read()
        graph[module] = model_imports(source, module, path.endswith("__init__.py"), known)
    state: dict[str, int] = {}      # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_model_has_no_import_cycle() -> None:
    assert len(model_sources()) > 20, "the walk found too few model modules to be checking anything"
    cycle = import_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("where, text", [
    ("model/invariants.py", "from .mm import System\n"),                                  # top level
    ("model/os/state.py", "def f():\n    from ..fault import do_page_fault\n"),            # function-local
    ("model/pages.py", "class C:\n    def m(self):\n        import memspec.model.mm\n"),  # absolute, in a method
])
def test_an_import_cycle_is_caught(where, text) -> None:
    assert import_cycle({where: text}) is not None, f"{text!r} in {where} made no cycle"
