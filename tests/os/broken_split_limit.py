"""A broken os implementation that ignores vm.max_map_count when a call splits a VMA (mprotect,
mlock, mlock2, munlock, madvise; model/os/splits.py): the reference model with the limit lifted
for those calls, served in process as a ``py:`` target
(``py:tests/os/broken_split_limit.py:target("splits-ignore-limit")``).  A fake for testing the
rules and the judge, never a target of its own."""

from __future__ import annotations

import dataclasses
from typing import Any

from memspec.model.mm import Config, System
from memspec.model.rules import replaced
from memspec.targets.model import ModelSession, ModelTarget

SPLITTING = ("mprotect", "mlock", "mlock2", "munlock", "madvise")


def _unlimited(fn):
    """``fn`` asked as if vm.max_map_count were far away."""
    def call(sys, *args):
        saved = sys.config
        sys.config = dataclasses.replace(saved, max_map_count=1 << 40)
        try:
            return fn(sys, *args)
        finally:
            sys.config = saved
    return call


def _rules():
    rules = System.rules
    for name in SPLITTING:
        rules = replaced(rules, name, expect=_unlimited(rules[name].expect), apply=_unlimited(rules[name].apply))
    return rules


class SplitsIgnoreLimit(System):
    """Splits never meet vm.max_map_count (mmap and munmap still do)."""

    rules = _rules()


BUGS = {"splits-ignore-limit": SplitsIgnoreLimit}
CLASSES = {**BUGS, "reference": System}


class _Session(ModelSession):
    def __init__(self, cls, facts: dict[str, Any]):
        self.system = cls(Config.from_facts(facts))


class BrokenOs(ModelTarget):
    layers = ("os",)

    def __init__(self, bug: str, facts: dict[str, Any] | None = None):
        super().__init__()
        self.bug = bug
        self.name = f"broken-os:{bug}"
        self._facts = dict(facts or {})

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def session(self, layer: str = "os") -> _Session:
        return _Session(CLASSES[self.bug], self._facts)


def target(bug: str, **facts: Any) -> BrokenOs:
    return BrokenOs(bug, facts)
