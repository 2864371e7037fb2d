"""A broken os implementation that ignores vm.max_map_count when a call splits a VMA (mprotect,
mlock, mlock2, munlock, madvise, mseal; model/os/splits.py): the reference model with the limit lifted
for those calls, served in process as a ``py:`` target
(``py:tests/os/broken_split_limit.py:target("splits-ignore-limit")``).  A fake for testing the
rules and the judge, never a target of its own."""

from __future__ import annotations

import dataclasses
from typing import Any

from memspec.model.mm import System
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget

SPLITTING = ("mprotect", "mlock", "mlock2", "munlock", "madvise", "mseal")


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


def merge_slack(system: System, proc: str) -> int:
    """The model's splits.merge_slack of a process (for the tests)."""
    from memspec.model.os.splits import merge_slack as slack
    return slack(system.procs[proc])


BUGS = {"splits-ignore-limit": SplitsIgnoreLimit}
CLASSES = {**BUGS, "reference": System}


def target(bug: str, **facts: Any) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", CLASSES[bug], facts)
