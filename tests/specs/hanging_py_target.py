"""A py: target that is the model in process, except that one call never returns: an
``mprotect`` loops forever (a deliberately broken implementation for the time-limit tests)."""

from memspec.program import Call
from memspec.records import Outcome
from memspec.targets.model import ModelSession, ModelTarget


class _Loops(ModelSession):
    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        if call.name == "mprotect":
            while True:
                try:
                    pass
                except Exception:    # noqa: BLE001 -- even a target that swallows exceptions is stopped
                    continue
        return super().call(call, args)


class HangsOnMprotect(ModelTarget):
    name = "hangs-on-mprotect"
    layers = ("os",)
    time_limited_in_process = None      # as a user's class leaves it: py: loading decides

    def session(self, layer: str = "os") -> _Loops:
        return _Loops(layer)
