"""Broken os implementations of vm.max_map_count, for map_pages (model/os/bulk.py): the reference
model with the limit moved, served in process as ``py:`` targets
(``py:tests/os/broken_map_count.py:target("limit-off-by-3")``).  Fakes for testing the rule and the
judge, never targets of their own."""

from __future__ import annotations

from typing import Any

from memspec.model.expect import Expect
from memspec.model.mm import System
from memspec.model.os import bulk
from memspec.model.rules import replaced
from memspec.records import Outcome
from memspec.targets.model import OsModelTarget


def _off_by_3(sys, mm, addr, n, prot):
    """The limit is three mappings too high: the page that should fail and the two after it map."""
    e = bulk.expect_map_pages(sys, mm, addr, n, prot)
    o = e.default
    if o.errno == "ENOMEM" and o.value is not None:
        k = o.value + 3
        o = Outcome(value=n) if k >= n else Outcome(value=k, errno="ENOMEM")
    return Expect(e.clause, o, o.describe(), (o,))


class LimitOffBy3(System):
    """map_pages stops three pages late: the process ends with vm.max_map_count + 4 mappings."""

    rules = replaced(System.rules, "map_pages", expect=_off_by_3)


def _uncounted(sys, mm, addr, n, prot):
    """VMAs are not counted: every page of the call maps."""
    o = Outcome(value=n)
    return Expect(bulk.LIMIT, o, o.describe(), (o,))


class MapsNotCounted(System):
    """map_pages never meets vm.max_map_count."""

    rules = replaced(System.rules, "map_pages", expect=_uncounted)


BUGS = {"limit-off-by-3": LimitOffBy3, "maps-not-counted": MapsNotCounted}
# the reference model served the same way (with the same facts), for comparison
CLASSES = {**BUGS, "reference": System}


def target(bug: str, **facts: Any) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", CLASSES[bug], facts)
