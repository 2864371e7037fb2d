"""Target family ``py:FILE.py:EXPR``: a target written in Python, loaded in process.

``EXPR`` is evaluated in the namespace of ``FILE.py`` and must give a ``Target``
(an instance, or a class that takes no arguments), e.g.
``py:tests/hw/broken_hw.py:BrokenTarget(DirtyOnRead)``.  This is the fast way to
judge (or fuzz) an implementation written in Python: no process boundary per call.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from memspec.errors import UsageError

from .base import Target


def load_target(spec: str, **options: Any) -> Target:
    path, sep, expr = spec.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise UsageError(f"py: target must be FILE.py:EXPR, got {spec!r}")
    if not os.path.isfile(path):
        raise UsageError(f"py: target file {path!r} does not exist")
    name = "memspec_user_target_" + os.path.splitext(os.path.basename(path))[0]
    mod = sys.modules.get(name)
    if mod is None or getattr(mod, "__file__", None) != os.path.abspath(path):
        s = importlib.util.spec_from_file_location(name, os.path.abspath(path))
        assert s is not None and s.loader is not None
        mod = importlib.util.module_from_spec(s)
        sys.modules[name] = mod
        s.loader.exec_module(mod)
    try:
        obj = eval(expr, vars(mod))   # noqa: S307 -- the user's own file and expression
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"py: target {expr!r} in {path}: {type(e).__name__}: {e}") from None
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, Target):
        raise UsageError(f"py: {expr!r} in {path} is not a memspec Target")
    if getattr(obj, "name", "?") in ("?", ""):
        obj.name = f"py:{os.path.basename(path)}:{expr}"
    obj.timeout = options.get("timeout", getattr(obj, "timeout", 10.0))
    if obj.time_limited_in_process is None:
        # a program of a target that runs here is interrupted at its time limit (Target.run)
        obj.time_limited_in_process = not obj.runs_elsewhere
    return obj
