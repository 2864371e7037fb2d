"""phys-layer clauses (declared with ``catalogue.declare("phys", ...)``)."""

from __future__ import annotations

from .catalogue import declare  # noqa: F401
