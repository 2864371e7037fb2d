"""Calls of the virt layer (EPT/RVI, KPTI): registered with ``memspec.calls.register``."""

from __future__ import annotations

from .calls import CallSpec, Param as P, register  # noqa: F401
