"""hw-layer clauses (declared with ``catalogue.declare("hw", ...)``)."""

from __future__ import annotations

from .catalogue import declare  # noqa: F401
