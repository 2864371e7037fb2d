"""Scenarios of the os generator (specs/gen_os.py) kept in a module of their own: shapes a single
random step almost never makes, each a few calls that end in an observation.

- ``commit_scenario``: a mapping of exactly the overcommit heuristic's limit, or a page more
  (mm/util.c __vm_enough_memory, vm.overcommit_memory 0: a charge of more pages than RAM plus
  swap is ENOMEM), charged three ways -- private writable anonymous memory, shared anonymous
  memory (its shmem object is charged even read-only) and a private writable mapping of a memfd
  -- sometimes with MAP_NORESERVE (no charge); unmapped at once.  The sizes come from the
  target's ``ram_pages`` and ``swap_pages`` facts (the model's defaults when it declares none).
- ``hole_lock_scenario``: mlock, mlock2 or munlock over a mapping split in two VMAs (mprotect)
  and a page past its end: ENOMEM, yet mm/mlock.c apply_vma_lock_flags changed the VMAs before
  the hole, which MADV_DONTNEED (EINVAL over a locked VMA), mincore and loads then show.

Both run in main (the process the linux targets fork from) and need only calls every os target has.
"""

from __future__ import annotations

from typing import Any

from memspec.program import Call, Flags, Int, Ref, Str

PAGE = 4096
COMMIT_SCENARIO_WEIGHT = 6      # of gen_os.STEPS: a mapping at the overcommit limit (``commit_scenario``)
HOLE_LOCK_SCENARIO_WEIGHT = 6   # of gen_os.STEPS: (un)lock over two VMAs and a hole (``hole_lock_scenario``)
RAM_PAGES_DEFAULT = 1 << 22     # model/os/state.py Config.ram_pages when the target declares no ``ram_pages``
# how a commit-limit mapping is charged: (weight, kind, prot, flags)
COMMIT_KINDS = [(40, "anon", ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS")),
                (30, "anon", ("PROT_READ",), ("MAP_SHARED", "MAP_ANONYMOUS")),
                (30, "memfd", ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE",))]
COMMIT_NEEDS = ("mmap", "munmap")
HOLE_LOCK_NEEDS = ("mmap", "mlock")


def _hex(v: int) -> Int:
    return Int(v, hex=abs(v) >= 4096)


def commit_scenario(g: Any, facts: dict[str, Any]) -> None:
    """A private writable, shared or memfd mapping of RAM + swap pages, or one more, with a NULL hint,
    then its munmap (whatever the answer: an address or -1).  Left out where a huge mapping could
    be populated or locked for real (an earlier mlockall: MCL_FUTURE) and where the program changed
    the model's RAM (memory_limit): there the facts no longer give the limit."""
    r = g.r
    if any(c.name in ("mlockall", "memory_limit") for c in g.calls):
        return
    ram = int(facts.get("ram_pages") or RAM_PAGES_DEFAULT)
    swap = max(0, int(facts.get("swap_pages") or 0))
    pages = ram + swap + r.choice([0, 1, 1])
    kinds = [(w, (k, p, f)) for w, k, p, f in COMMIT_KINDS if k == "anon" or g.ok("memfd_create")]
    kind, prot, flags = r.weighted(kinds)
    if r.chance(20):
        flags = flags + ("MAP_NORESERVE",)
    fd: Int | Ref = Int(-1)
    if kind == "memfd":
        name = g.name()
        g.calls.append(Call("memfd_create", (Str("commit"), Int(0)), name, None))
        fd = Ref(name)
    base = g.name()
    length = _hex(pages * PAGE)
    g.calls.append(Call("mmap", (Flags(("NULL",)), length, Flags(prot), Flags(flags), fd, Int(0)), base, None))
    g.calls.append(Call("munmap", (Ref(base), length), None, None))


def hole_lock_scenario(g: Any) -> None:
    """A mapping of 2 to 4 pages in the window with a byte on each, its second page made read-only
    (two VMAs) most of the time, then mlock, mlock2 or munlock of the mapping and the page after it
    (never mapped: the scenario slots are 16 pages apart) or of the mapping alone; then, page by
    page, MADV_DONTNEED or a load, and mincore of the mapping.  munlock comes after an mlock of the
    whole mapping so that there is something to unlock."""
    r = g.r
    c = g.calls.append
    pages = r.integer(2, 4)
    base = g.map_in_window(pages, ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS"), Int(-1))
    from .gen_os import pattern      # the address-derived byte every store of the generator writes
    for i in range(pages if g.ok("store") else 0):
        at = Ref(base, i * PAGE) if i else Ref(base)
        c(Call("store", (at, Int(pattern(at))), None, None))
    if g.ok("mprotect") and r.chance(75):
        c(Call("mprotect", (Ref(base, PAGE), _hex(PAGE), Flags(("PROT_READ",))), None, None))
    span = (pages + (1 if r.chance(80) else 0)) * PAGE
    how = r.weighted([(50, "mlock"), (20, "mlock2"), (30, "munlock")])
    if how == "mlock2" and not g.ok("mlock2"):
        how = "mlock"
    if how == "munlock" and not g.ok("munlock"):
        how = "mlock"
    if how == "munlock":
        c(Call("mlock", (Ref(base), _hex(pages * PAGE)), None, None))
    args = (Ref(base), _hex(span)) + ((Int(0),) if how == "mlock2" else ())
    c(Call(how, args, g.name(), None))
    for i in sorted({r.integer(0, pages - 1) for _ in range(pages)}):
        at = Ref(base, i * PAGE) if i else Ref(base)
        if g.ok("madvise") and r.chance(60):
            c(Call("madvise", (at, _hex(PAGE), Flags(("MADV_DONTNEED",))), g.name(), None))
        if g.ok("load"):
            c(Call("load", (at,), g.name(), None))
    if g.ok("mincore"):
        c(Call("mincore", (Ref(base), _hex(pages * PAGE)), g.name(), None))
