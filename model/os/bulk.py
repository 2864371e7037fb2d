"""The rule of map_pages: many one-page mappings in one call, the way to reach vm.max_map_count.

Program text has no loop, and the limit (65,530 mappings by default) is far beyond what a program
of single calls makes.  ``map_pages(addr, n, prot)`` is n calls of
``mmap(addr + 2*k pages, 4096, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)`` for
k = 0, 1, ..., stopping at the first that fails: every other page, so that no two of them touch and
each is a VMA of its own.  Its outcome is the number of pages mapped, with the failing mmap's errno
beside it when one failed (``Outcome(value=k, errno="ENOMEM")``).

The rule is mmap's own (``mappings.expect_mmap`` and ``mappings.apply_mmap``) asked once per page,
with the one thing that grows from page to page, the number of mappings, counted here:
mm/mmap.c do_mmap refuses a page with ENOMEM when ``mm->map_count > sysctl_max_map_count``, before
it looks at the address (clause ``linux.mmap.max-map-count-reached``).  The count is the model's
VMAs plus the fact ``base_maps`` (the target's own mappings).  A target with mappings of its own
the model does not see (one that reports quiet ranges, as the linux targets do) moves them while it
runs, so there the answer is a choice within 64 mappings of the limit either way (as
``mappings._map_count_near`` allows for mmap, munmap and mremap); the model alone (no quiet
ranges) counts exactly, and the page after vm.max_map_count + 1 mappings must fail -- unless
some of its VMAs are neighbours the kernel would have merged (``splits.merge_slack``), which
lowers the kernel's count by up to that many.

The pages do not touch each other, so page k's other checks (its address, what is mapped there)
do not depend on the pages before it; the limits that grow with the pages mapped (RLIMIT_AS,
locked memory after mlockall(MCL_FUTURE)) are not followed page by page: with either in force the
answer is unknown.

Worked example: with vm.max_map_count 65530, base_maps 0 and no mapping yet, ``map_pages(W, 70000,
PROT_READ)`` maps 65,531 pages and the next is ENOMEM: the outcome is ``65531`` with ``ENOMEM``.
"""

from __future__ import annotations

from memspec.consts import MAP, MAP_PAGES_MAX, PAGE_SIZE
from memspec.records import Outcome

from ..expect import Expect, errno
from ..rules import Rule
from . import mappings, splits
from .state import Mm, OsState

FLAGS = MAP["MAP_PRIVATE"] | MAP["MAP_ANONYMOUS"] | MAP["MAP_FIXED_NOREPLACE"]
LIMIT = "linux.mmap.max-map-count-reached"
COUNT_BAND = "linux.mmap.enomem-max-map-count"       # the band mmap's own rule allows near the limit
BAND = 64            # as mappings._map_count_near: the target's own mappings move while it runs
# errnos a page's rule that is a predicate is asked about (the ones mmap of an anonymous page can give)
CANDIDATES = ("ENOMEM", "EEXIST", "EPERM", "EINVAL", "EAGAIN", "EACCES")
# ENOMEM clauses of mmap's limits other than the map count
_OTHER_ENOMEM = {"linux.mmap.enomem-rlimit-as", "linux.mmap.enomem-rlimit-data", "linux.mmap.enomem-overcommit"}


def _page(sys: OsState, mm: Mm, a: int, prot: int, before: int, exact: bool,
          slack: int = 0) -> tuple[bool, list[str], Outcome, str]:
    """Page ``a``'s mmap with ``before`` mappings in the process: whether it may succeed, the errnos
    it may fail with, the model's own outcome and its clause.  ``slack``: how many fewer mappings
    the kernel may hold, having merged neighbours the model keeps apart (splits.merge_slack)."""
    c = sys.config
    # mm/mmap.c do_mmap: the map count is asked before the address is looked at
    if before - slack > c.max_map_count + (0 if exact else BAND):
        return False, ["ENOMEM"], Outcome(value=-1, errno="ENOMEM"), LIMIT
    e = mappings.expect_mmap(sys, mm, a, PAGE_SIZE, prot, FLAGS, -1, 0)
    ok = e.judge(Outcome(value=a)) is None
    if e.predicate is None:
        errs = [o.errno for o in (e.allowed if e.allowed is not None else (e.default,)) if o.errno]
    else:
        errs = [n for n in CANDIDATES if e.judge(Outcome(value=-1, errno=n)) is None]
    if exact and "ENOMEM" in errs and ok and COUNT_BAND in e.covers and not _OTHER_ENOMEM & set(e.covers):
        # mmap's rule allows ENOMEM near the limit for the target's own mappings; alone, the model counts exactly
        errs.remove("ENOMEM")
    default, clause = e.default, e.clause
    if before > c.max_map_count:
        default, clause = Outcome(value=-1, errno="ENOMEM"), LIMIT
        errs = errs if "ENOMEM" in errs else errs + ["ENOMEM"]
    elif not exact and before + BAND >= c.max_map_count and "ENOMEM" not in errs:
        errs.append("ENOMEM")
    return ok, errs, default, clause


def _bad_args(addr: int, n: int) -> bool:
    return n < 0 or n > MAP_PAGES_MAX or addr + 2 * n * PAGE_SIZE > 1 << 64


def expect_map_pages(sys: OsState, mm: Mm, addr: int, n: int, prot: int) -> Expect:
    c = sys.config
    if _bad_args(addr, n):
        return errno("memspec.map_pages.einval-n", "EINVAL")
    if c.rlimit_as >= 0 or mm.mcl_future:
        return Expect(LIMIT, Outcome(value=n), "any number of pages (RLIMIT_AS or mlockall(MCL_FUTURE) in force: "
                      "limits that grow page by page are not modelled)", unknown=True)
    exact = not c.quiet_ranges
    before = c.base_maps + len(mm.vmas)
    slack = splits.merge_slack(mm) if before + n > c.max_map_count else 0
    allowed: list[Outcome] = []
    default: Outcome | None = None
    clause = "linux.mmap.fixed-noreplace-maps"
    covers: dict[str, None] = {}
    for k in range(n):
        a = addr + 2 * k * PAGE_SIZE
        ok, errs, own, why = _page(sys, mm, a, prot, before + k, exact, slack)
        if errs or not ok:
            covers[why] = None
        allowed.extend(Outcome(value=k, errno=name) for name in errs)
        if default is None and own.errno:
            default, clause = Outcome(value=k, errno=own.errno), why
        if not ok:
            break
    else:
        allowed.append(Outcome(value=n))
    if default is None:
        default = Outcome(value=n)
    if len(allowed) == 1:
        return Expect(clause, default, _describe(allowed), tuple(allowed), covers=tuple(covers))
    return Expect(clause, default, _describe(allowed), tuple(allowed), impl_defined=True, covers=tuple(covers))


def _describe(allowed: list[Outcome]) -> str:
    """The allowed outcomes in a few words: a range of counts per errno."""
    by: dict[str | None, list[int]] = {}
    for o in allowed:
        by.setdefault(o.errno, []).append(o.value or 0)
    parts = []
    for name, ks in by.items():
        n = f"{ks[0]}" if len(ks) == 1 else f"{min(ks)} to {max(ks)}"
        parts.append(f"{n} pages mapped" + (f", then {name}" if name else ""))
    return " or ".join(parts)


def apply_map_pages(sys: OsState, proc: str, mm: Mm, o: Outcome, addr: int, n: int, prot: int) -> None:
    if o.signal or o.value is None or _bad_args(addr, n) or not 0 <= o.value <= n:
        return
    vma = None
    for k in range(o.value):
        a = addr + 2 * k * PAGE_SIZE
        if vma is None or mm.mcl_future or mm.vmas.any_overlap(a, a + PAGE_SIZE):
            mappings.apply_mmap(sys, proc, mm, Outcome(value=a), a, PAGE_SIZE, prot, FLAGS, -1, 0)
            hit = mm.vmas.find(a)
            vma = hit[2] if hit is not None else None
        else:
            # what apply_mmap makes of a free page of this call, made once: the same VMA, at this page
            mm.vmas.set(a, a + PAGE_SIZE, vma)


RULES = {"map_pages": Rule(expect_map_pages, apply_map_pages)}
