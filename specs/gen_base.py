"""What the generators of layers whose arguments are plain numbers (hw, virt) share."""

from __future__ import annotations

from memspec.calls import CALLS
from memspec.program import Call, Flags, Int

from .choose import Chooser


class CallEmitter:
    """The calls a target implements (``ok``) and ``emit``, which writes numbers as ``Int`` (page-sized
    ones in hex) and names the results it is asked to keep (``v1``, ``v2``, ...).  A call the target
    lacks is left out, so a program never asks for what the target declared it cannot run."""

    def __init__(self, r: Chooser, calls: frozenset[str] | None):
        self.r = r
        self.allowed = calls
        self.calls: list[Call] = []
        self.names = 0

    def ok(self, name: str) -> bool:
        return self.allowed is None or name in self.allowed

    def emit(self, name: str, *args: object, result: bool = False) -> None:
        if not self.ok(name):
            return
        conv = tuple(a if isinstance(a, (Int, Flags)) else Int(int(a), hex=int(a) >= 4096)  # type: ignore[call-overload]
                     for a in args)
        res = None
        if result and CALLS[name].returns != "none":
            self.names += 1
            res = "v" + str(self.names)
        self.calls.append(Call(name, conv, res))


__all__ = ["CallEmitter"]
