"""The directed suite and the cited differences: what every command judges with (the programs
themselves live in specs/suite/<layer>/).

``suite_programs(layer)`` yields the layer's directed programs (``specs/suite/<layer>/*.mst``);
``load_differences()`` the known, cited differences (``specs/differences*.toml``) and
``explained`` whether one of them explains a target's failure of a clause; ``lacks`` whether a
target's facts rule a program out (its ``# requires:`` header).
"""

from __future__ import annotations

import fnmatch
from importlib import resources
from typing import Any, Iterator

from memspec.program import Program, parse


def suite_programs(layer: str, capabilities: bool = False) -> Iterator[tuple[str, Program]]:
    """The directed programs for ``layer``, in name order.  A malformed file is a ``ProgramError``
    (a usage error).  ``capabilities`` adds the programs of the layer's optional parts, one folder
    each (``suite/hw/segmentation/``): they use calls only some targets implement."""
    base = resources.files("memspec.specs").joinpath("suite", layer)
    if not base.is_dir():
        return
    folders = [(f"suite/{layer}", base)]
    if capabilities:
        folders += [(f"suite/{layer}/{e.name}", e) for e in sorted(base.iterdir(), key=lambda e: e.name) if e.is_dir()]
    for where, folder in folders:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".mst"):
                yield f"{where}/{entry.name}", parse(entry.read_text(encoding="utf-8"), source=f"{where}/{entry.name}")


def load_differences() -> list[dict[str, str]]:
    """Known, cited differences (specs/differences.toml, and specs/differences-*.toml per family of
    targets): a failure they explain is reported apart."""
    import tomllib
    base = resources.files("memspec.specs")
    files = sorted((e for e in base.iterdir()
                    if e.name == "differences.toml" or (e.name.startswith("differences-") and e.name.endswith(".toml"))),
                   key=lambda e: e.name)
    out: list[dict[str, str]] = []
    for e in files:
        out += tomllib.loads(e.read_text(encoding="utf-8")).get("difference", [])
    return out


def explained(diffs: list[dict[str, str]], target: str, clause: str) -> str:
    """Why ``target`` may fail ``clause`` (a cited difference), or "" if nothing explains it."""
    for d in diffs:
        if fnmatch.fnmatch(target, d.get("target", "*")) and d.get("clause") == clause:
            return d.get("why", "listed in specs/differences.toml")
    return ""


def lacks(facts: dict[str, Any], requires: str | None) -> bool:
    """A program's ``# requires: pcid invpcid`` header names features; a target whose facts
    say it lacks one cannot run the program (not applicable, never passed)."""
    if not requires:
        return False
    feats = facts.get("features", facts)
    return any(feats.get(name) is False for name in requires.replace(",", " ").split())


__all__ = ["suite_programs", "load_differences", "explained", "lacks"]
