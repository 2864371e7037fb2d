"""The rules of the calls that observe the state without changing it (and mbind, which sets
the NUMA policy they observe): pfn_of, thp_mapped, minflt, majflt, get_node, mbind.

Frame numbers come from /proc/PID/pagemap, huge mappings from the PMD, fault counts from
getrusage(2), nodes from move_pages(2) (mm/mempolicy.c for mbind).  What the model cannot
know exactly (a frame number, whether a fault got a huge page, faults of the process's own
runtime) it bounds, and it adopts what the target reports.

Worked example: after ``store(a, 1)`` and ``p = fork()``, ``pfn_of(a)`` in the parent and
in the child is the same frame (``seed.cow.shared-until-write``).
"""

from __future__ import annotations

from dataclasses import replace

from memspec.consts import PAGE_SIZE
from memspec.records import Outcome

from .. import pressure
from ..expect import Expect, exactly
from ..rules import Rule
from .state import HPAGE, U64, Mm, OsState, page_align


def one_of_values(clause: str, values: tuple[int, ...]) -> Expect:
    outs = tuple(Outcome(value=v) for v in values)
    return Expect(clause, outs[0], " or ".join(str(v) for v in values), outs, impl_defined=True)


def expect_pfn_of(sys: OsState, mm: Mm, addr: int) -> Expect:
    return pressure.pfn_expect(sys, mm, addr & U64)


def apply_pfn_of(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
    pressure.pfn_adopt(sys, mm, addr & U64, o)


def expect_thp_mapped(sys: OsState, mm: Mm, addr: int) -> Expect:
    base = (addr & U64) & ~(HPAGE - 1)
    if base in mm.huge:
        return exactly("linux.thp.fault-huge", Outcome(value=1))
    if base in mm.thp_maybe:
        return one_of_values("linux.thp.fault-huge", (1, 0))
    if base in mm.thp_split:
        # split_huge_pmd maps the huge folio by PTEs; the folio itself is split later (or never)
        return one_of_values("linux.thp.split-keeps-data", (1, 0))
    return exactly("linux.thp.not-eligible-small", Outcome(value=0))


def apply_thp_mapped(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
    base = (addr & U64) & ~(HPAGE - 1)
    if base in mm.thp_maybe:
        mm.thp_maybe.discard(base)
        if o.value == 1:
            pressure.materialize_huge(sys, mm, base)
        else:
            for p in range(base, base + HPAGE, PAGE_SIZE):
                if p not in mm.pte:
                    mm.maybe.discard(p)


def expect_minflt(sys: OsState, mm: Mm) -> Expect:
    lo = mm.minflt
    hi = mm.minflt + mm.minflt_maybe + (0 if sys.config.thp_certain or not _noisy(sys, ) else 10 ** 9)

    def allowed(o: Outcome) -> str | None:
        if not o.ok or o.value is None:
            return f"expected a count, observed {o.describe()}"
        if o.value < lo:
            return f"at least {lo} minor faults must have happened, observed {o.value}"
        if o.value > hi:
            return f"at most {hi} minor faults, observed {o.value}"
        return None
    return Expect("seed.fault.cow-minor" if mm.cow_faults else "seed.fault.minor-counted", Outcome(value=lo),
                  f"between {lo} and {hi}",
                  predicate=allowed, impl_defined=True)


def _noisy(sys: OsState) -> bool:
    # a real process faults on its own (the interpreter, the harness): counts are lower bounds
    return bool(sys.config.quiet_ranges)


def expect_majflt(sys: OsState, mm: Mm) -> Expect:
    lo = mm.majflt

    def allowed(o: Outcome) -> str | None:
        if not o.ok or o.value is None:
            return f"expected a count, observed {o.describe()}"
        if o.value < lo:
            return f"at least {lo} major faults must have happened, observed {o.value}"
        if not _noisy(sys, ) and o.value != lo:
            return f"expected {lo} major faults, observed {o.value}"
        return None
    return Expect("seed.fault.major-counted", Outcome(value=lo), f"at least {lo}", predicate=allowed,
                  impl_defined=True)


def expect_get_node(sys: OsState, mm: Mm, addr: int) -> Expect:
    return pressure.node_expect(sys, mm, addr & U64)


def expect_mbind(sys: OsState, mm: Mm, addr: int, length: int, mode: int, nodemask: int) -> Expect:
    return pressure.mbind_expect(sys, mm, addr, length, mode, nodemask)


def apply_mbind(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, length: int, mode: int, nodemask: int) -> None:
    if o.ok and page_align(length):
        end = addr + page_align(length)
        for s, e, v in list(mm.mapped_pages(addr, end)):
            mm.vmas.set(s, e, replace(v, policy=(mode, nodemask)))


RULES = {
    "pfn_of": Rule(expect_pfn_of, apply_pfn_of),
    "thp_mapped": Rule(expect_thp_mapped, apply_thp_mapped),
    "minflt": Rule(expect_minflt),
    "majflt": Rule(expect_majflt),
    "get_node": Rule(expect_get_node),
    "mbind": Rule(expect_mbind, apply_mbind),
}
