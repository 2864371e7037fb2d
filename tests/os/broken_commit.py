"""Broken os implementations of the overcommit heuristic (mm/util.c __vm_enough_memory,
vm.overcommit_memory 0: a charge of more pages than RAM plus swap is ENOMEM), for the generator's
commit-limit scenario (specs/gen_os_scenarios.py): the reference model with the limit moved for
mmap, served in process as ``py:`` targets that declare the facts the limit is computed from
(``py:tests/os/broken_commit.py:target("limit-inclusive")``).  Fakes for testing the generator and
the judge, never targets of their own."""

from __future__ import annotations

from typing import Any

from memspec.model.mm import System
from memspec.model.os import mappings
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget

# a small machine (1 GiB, so the model's frame table stays cheap) that says which heuristic is in force
FACTS = {"ram_pages": 1 << 18, "swap_pages": 0, "overcommit_memory": 0, "kernel": "6.18.0"}


def _mmap_with_limit_moved(by: int, *, swap_counted: bool = True):
    """mmap's rule as if the heuristic's limit were RAM + swap + ``by`` pages (swap left out when
    not ``swap_counted``)."""
    def expect(sys, mm, *args):
        c = sys.config
        saved = c.swap_pages
        c.swap_pages = (saved if swap_counted else 0) + by
        try:
            return mappings.expect_mmap(sys, mm, *args)
        finally:
            c.swap_pages = saved
    return expect


class LimitInclusive(System):
    """A charge of exactly RAM plus swap pages is refused (``pages >= totalram_pages() +
    total_swap_pages``); the kernel refuses only more."""

    rules = replaced(System.rules, "mmap", expect=_mmap_with_limit_moved(-1))


class OnePageOver(System):
    """A charge of one page more than RAM plus swap is placed (the limit compared one page late)."""

    rules = replaced(System.rules, "mmap", expect=_mmap_with_limit_moved(+1))


class SwapIgnored(System):
    """The limit is RAM alone: a charge that swap would cover is refused (no different from the
    model on a machine without swap)."""

    rules = replaced(System.rules, "mmap", expect=_mmap_with_limit_moved(0, swap_counted=False))


BUGS = {"limit-inclusive": LimitInclusive, "one-page-over": OnePageOver, "swap-ignored": SwapIgnored}


def target(bug: str, **facts: Any) -> OsModelTarget:
    """The broken model ``bug`` declaring FACTS, with ``facts`` changed (``swap_pages=1000``)."""
    return OsModelTarget(f"broken-commit:{bug}", BUGS[bug], {**FACTS, **facts})
