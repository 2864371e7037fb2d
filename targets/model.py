"""Target ``model``: the reference model itself, in process, taking its own default choices."""

from __future__ import annotations

from typing import Any

from memspec.model.mm import Config, System
from memspec.model.phys import PhysModel
from memspec.model.registry import new_model
from memspec.program import Call
from memspec.records import Mapping, Observation, Outcome

from .base import Session, Target


class ModelSession(Session):
    def __init__(self, layer: str = "os", facts: dict[str, Any] | None = None):
        self.system = new_model(layer, facts)

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        proc = call.proc or "main"
        exp = self.system.expect(proc, call.name, args)
        o = exp.default
        self.system.apply(proc, call.name, args, o)
        self.system.bind(proc, call.name, call.result, o)
        return o

    def observe(self) -> Observation:
        if not isinstance(self.system, System):
            # layers whose model can show kernel-visible state (the phys layer's buddyinfo)
            show = getattr(self.system, "observe", None)
            return Observation(extra=tuple(sorted(show().items()))) if show else Observation()
        return Observation(tuple(
            (p, tuple(Mapping(s, e, perms) for s, e, perms in self.system.maps(p)))
            for p in self.system.procs))


class ModelTarget(Target):
    name = "model"

    layers = ("os", "phys", "hw", "virt")
    capabilities = frozenset({"segmentation"})
    time_limited_in_process = True

    def session(self, layer: str = "os") -> ModelSession:
        return ModelSession(layer)


class OsModelTarget(ModelTarget):
    """The os layer served by a given model class -- ``System`` or a subclass of it, such as a
    deliberately broken model a test judges -- built from the given facts, under its own name."""

    layers = ("os",)

    def __init__(self, name: str, system: type[System] = System, facts: dict[str, Any] | None = None):
        super().__init__()
        self.name = name
        self.system = system
        self.known = dict(facts or {})

    def facts(self) -> dict[str, Any]:
        return dict(self.known)

    def session(self, layer: str = "os") -> ModelSession:
        s = ModelSession.__new__(ModelSession)
        s.system = self.system(Config.from_facts(self.known))
        return s


class PhysModelTarget(ModelTarget):
    """The phys layer served by a given model class -- ``PhysModel`` or a subclass of it, such as
    a deliberately broken allocator a test judges -- under its own name, optionally implementing
    only some of the layer's calls."""

    layers = ("phys",)
    capabilities = frozenset()

    def __init__(self, name: str, system: type[PhysModel] = PhysModel, calls: frozenset[str] | None = None):
        super().__init__()
        self.name = name
        self.system = system
        if calls is not None:
            self.calls = calls

    def session(self, layer: str = "phys") -> ModelSession:
        s = ModelSession.__new__(ModelSession)
        s.system = self.system()
        return s
