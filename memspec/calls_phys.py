"""Calls of the phys layer (frames, buddy, slab, heaps, GC): registered with ``memspec.calls.register``."""

from __future__ import annotations

from .calls import CallSpec, Param as P, register  # noqa: F401
