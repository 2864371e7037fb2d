"""virt-layer clauses (declared with ``catalogue.declare("virt", ...)``)."""

from __future__ import annotations

from .catalogue import declare  # noqa: F401
