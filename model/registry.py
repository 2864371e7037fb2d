"""One model factory per layer: ``new_model(layer, facts)``.

Each layer's model follows ``model.expect.LayerModel``; its module provides
``new_model(facts: dict) -> model``.  The factories are direct references (a
misspelt module or function fails at import, never at the first run of a layer).
"""

from __future__ import annotations

from typing import Any, Callable

from . import mm, paging, phys, virt

FACTORIES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "os": mm.new_model,
    "phys": phys.new_model,
    "hw": paging.new_model,
    "virt": virt.new_model,
}


def new_model(layer: str, facts: dict[str, Any] | None = None) -> Any:
    try:
        factory = FACTORIES[layer]
    except KeyError:
        raise KeyError(f"no model for layer {layer!r} (have: {', '.join(sorted(FACTORIES))})") from None
    return factory(facts or {})
