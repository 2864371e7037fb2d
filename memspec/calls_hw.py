"""Calls of the hw layer (x86-64 paging, MMU, TLB): registered with ``memspec.calls.register``."""

from __future__ import annotations

from .calls import CallSpec, Param as P, register  # noqa: F401
