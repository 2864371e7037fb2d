"""Every module of the os model is mutated by the benchmark (benchmarks/mutation.py LAYER_FILES):
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
