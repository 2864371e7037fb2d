"""Target ``model``: the reference model itself, in process, taking its own default choices."""

from __future__ import annotations

from memspec.model.mm import Config, System
from memspec.program import Call
from memspec.records import Mapping, Observation, Outcome

from .base import Session, Target


class ModelSession(Session):
    def __init__(self, config: Config | None = None):
        self.system = System(config)

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        proc = call.proc or "main"
        exp = self.system.expect(proc, call.name, args)
        o = exp.default
        self.system.apply(proc, call.name, args, o)
        if call.name == "fork" and call.result:
            self.system.bind_proc(call.result)
        return o

    def observe(self) -> Observation:
        return Observation(tuple(
            (p, tuple(Mapping(s, e, perms) for s, e, perms in self.system.maps(p)))
            for p in self.system.procs))


class ModelTarget(Target):
    name = "model"

    def session(self) -> ModelSession:
        return ModelSession()
