"""A deliberately broken os target that reports an implementation version, for the versioned
differences tests: the reference model with mmap(len=0) answering ENOMEM instead of EINVAL
(tests/broken/broken_server.py's len0-wrong-errno), its version in ``facts()["impl_version"]``."""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Any

from memspec.targets.model import ModelSession, ModelTarget

_spec = importlib.util.spec_from_file_location(
    "memspec_test_broken_server", pathlib.Path(__file__).parents[1] / "broken" / "broken_server.py")
_broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_broken)


class VersionedBroken(ModelTarget):
    name = "broken-versioned"
    layers = ("os",)

    def __init__(self, version: str = "1.2.0") -> None:
        self.version = version

    def session(self, layer: str = "os") -> ModelSession:
        s = ModelSession(layer)
        s.system = _broken.Len0WrongErrno()
        return s

    def facts(self) -> dict[str, Any]:
        return dict(super().facts(), impl_version=self.version)
