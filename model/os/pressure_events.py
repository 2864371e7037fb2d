"""The rules of the memory-pressure events, which only the model target implements:
memory_limit, set_swappiness, reclaim, tick, wss, oom, khugepaged.

Each event drives one mechanism of ``model.pressure`` (reclaim with a clock, swap, the OOM
killer, Denning working sets, khugepaged's collapse) and answers what it did.

Worked example: with two resident pages of which one was referenced since the last pass,
``reclaim(1)`` is 1 and evicts the other (``seed.swap.clock-second-chance``).
"""

from __future__ import annotations

from dataclasses import replace

from memspec.records import Outcome

from .. import pressure
from ..expect import Expect, errno, exactly
from ..rules import Rule
from .state import Mm, OsState


def expect_memory_limit(sys: OsState, mm: Mm, ram_pages: int, swap_pages: int) -> Expect:
    if ram_pages <= 0 or swap_pages < 0:
        return errno("memspec.pressure.event", "EINVAL")
    return exactly("memspec.pressure.event", Outcome(value=0))


def apply_memory_limit(sys: OsState, proc: str, mm: Mm, o: Outcome, ram_pages: int, swap_pages: int) -> None:
    if o.ok:
        pressure.set_limits(sys, ram_pages, swap_pages)


def expect_set_swappiness(sys: OsState, mm: Mm, value: int) -> Expect:
    if not 0 <= value <= 200:
        return errno("linux.swap.swappiness-range", "EINVAL")
    return exactly("linux.swap.swappiness-range", Outcome(value=0))


def apply_set_swappiness(sys: OsState, proc: str, mm: Mm, o: Outcome, value: int) -> None:
    if o.ok:
        sys.swappiness = value


def expect_reclaim(sys: OsState, mm: Mm, pages: int) -> Expect:
    n = len(pressure.reclaim_plan(sys, max(pages, 0)))
    locked = any(p.pfn is not None and pressure.is_locked(sys, p) for p in sys.lru)

    def blame(o: Outcome) -> str:
        # more pages than the evictable ones: a locked page must have gone
        return "posix.mlock.never-evicted" if locked and o.value is not None and o.value > n \
            else "seed.swap.clock-second-chance"
    e = exactly("seed.swap.clock-second-chance", Outcome(value=n))
    return replace(e, blame_by=blame)


def apply_reclaim(sys: OsState, proc: str, mm: Mm, o: Outcome, pages: int) -> None:
    pressure.reclaim(sys, max(pages, 0))


def expect_tick(sys: OsState, mm: Mm) -> Expect:
    return exactly("memspec.pressure.event", Outcome(value=0))


def apply_tick(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    mm.vtime += 1


def expect_wss(sys: OsState, mm: Mm, tau: int) -> Expect:
    return exactly("seed.wss.denning", Outcome(value=len(pressure.working_set(mm, tau))))


def expect_oom(sys: OsState, mm: Mm) -> Expect:
    return pressure.oom_expect(sys)


def apply_oom(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    if o.ok and o.value is not None:
        pressure.oom_kill_pid(sys, o.value)


def expect_khugepaged(sys: OsState, mm: Mm) -> Expect:
    return exactly("linux.thp.khugepaged-collapse", Outcome(value=len(pressure.collapse_candidates(sys, mm))))


def apply_khugepaged(sys: OsState, proc: str, mm: Mm, o: Outcome) -> None:
    pressure.collapse(sys, mm)


RULES = {
    "memory_limit": Rule(expect_memory_limit, apply_memory_limit),
    "set_swappiness": Rule(expect_set_swappiness, apply_set_swappiness),
    "reclaim": Rule(expect_reclaim, apply_reclaim),
    "tick": Rule(expect_tick, apply_tick),
    "wss": Rule(expect_wss),
    "oom": Rule(expect_oom, apply_oom),
    "khugepaged": Rule(expect_khugepaged, apply_khugepaged),
}
