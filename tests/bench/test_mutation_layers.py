"""Every module of the os model, and every model module the hw and virt layers' modules import, is mutated by the benchmark (benchmarks/mutation.py LAYER_FILES):
a module split out of another (os/limits.py out of os/mappings.py) must be added, or its rules
silently leave the measure.  The shared helpers (expect, rules, intervals) and the invariants are
outside model/os and left out on purpose (docs/bug-finding.md)."""

from __future__ import annotations

import os

from ..conftest import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

mutation = load_benchmark("mutation.py")


def test_every_os_module_is_in_the_os_layer() -> None:
    here = sorted(f"os/{n}" for n in os.listdir(os.path.join(ROOT, "model", "os"))
                  if n.endswith(".py") and n != "__init__.py")
    missing = [m for m in here if m not in mutation.LAYER_FILES["os"]]
    assert not missing, missing
    assert all(os.path.exists(os.path.join(ROOT, "model", f)) for f in mutation.LAYER_FILES["os"])


# shared by every layer, left out of the measure on purpose (docs/bug-finding.md)
SHARED = {"blame.py", "expect.py", "rules.py", "intervals.py", "invariants.py", "registry.py"}


def _imported(rel: str) -> set[str]:
    import ast
    with open(os.path.join(ROOT, "model", rel), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 1 and "." not in node.module:
                out.add(node.module + ".py")
            elif node.module.startswith("memspec.model.") and node.module.count(".") == 2:
                out.add(node.module.rsplit(".", 1)[1] + ".py")
    return out


def test_every_model_module_an_hw_or_virt_module_imports_is_in_a_layer() -> None:
    """A helper split out of an hw module (hw_removed.py out of tlb.py and paging.py) is mutated too."""
    layered = {f for files in mutation.LAYER_FILES.values() for f in files}
    for layer in ("hw", "virt"):
        for rel in mutation.LAYER_FILES[layer]:
            missing = sorted(_imported(rel) - layered - SHARED)
            assert not missing, (layer, rel, missing)
    assert "hw_removed.py" in mutation.LAYER_FILES["hw"]
