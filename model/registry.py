"""One model factory per layer: ``new_model(layer, facts)``.

Each layer's model follows ``model.expect.LayerModel``; its module provides
``new_model(facts: dict) -> model``.  Modules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

FACTORIES: dict[str, str] = {
    "os": "memspec.model.mm:new_model",
    "phys": "memspec.model.phys:new_model",
    "hw": "memspec.model.paging:new_model",
    "virt": "memspec.model.virt:new_model",
}


def new_model(layer: str, facts: dict[str, Any] | None = None) -> Any:
    try:
        where = FACTORIES[layer]
    except KeyError:
        raise KeyError(f"no model for layer {layer!r} (have: {', '.join(sorted(FACTORIES))})") from None
    mod, fn = where.split(":")
    return getattr(importlib.import_module(mod), fn)(facts or {})
