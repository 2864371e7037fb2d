"""Scenarios of the os generator (specs/gen_os.py) kept in a module of their own: shapes a single
random step almost never makes.

- ``commit_scenario``: a mapping of exactly the overcommit heuristic's limit, then one of a page more
  (mm/util.c __vm_enough_memory, vm.overcommit_memory 0: a charge of more pages than RAM plus
  swap is ENOMEM), charged three ways -- private writable anonymous memory, shared anonymous
  memory (its shmem object is charged even read-only) and a private writable mapping of a memfd
  -- sometimes with MAP_NORESERVE (no charge); each unmapped at once.  The sizes come from the
  target's facts (``commit_limit``), which the os codec (fuzz/codec_os.py) hands the generator;
  a target that does not declare every fact the limit is computed from never gets the scenario.
It runs in main (the process the linux targets fork from).

Worked example: facts ``{"ram_pages": 6170943, "swap_pages": 0, "overcommit_memory": 0,
"kernel": "6.18.44"}`` give a limit of 6170943 pages: ``mmap(NULL, 0x5e293f000, PROT_READ|PROT_WRITE,
MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`` is placed, one page more is ENOMEM
(linux.mmap.enomem-overcommit).  The model target, which declares no facts, and a ``cmd:`` target
that declares no RAM get no such mapping.
"""

from __future__ import annotations

from typing import Any

from memspec.model.os.limits import GUESS_RAM_SWAP_SINCE
from memspec.model.os.state import kernel_version
from memspec.program import Call, Flags, Int, Ref, Str

PAGE = 4096
COMMIT_SCENARIO_WEIGHT = 6      # of gen_os.STEPS: a mapping at the overcommit limit (``commit_scenario``)
OVERCOMMIT_GUESS = 0            # include/uapi/linux/mman.h: vm.overcommit_memory 0, the heuristic
# how a commit-limit mapping is charged: (weight, kind, prot, flags)
COMMIT_KINDS = [(40, "anon", ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS")),
                (30, "anon", ("PROT_READ",), ("MAP_SHARED", "MAP_ANONYMOUS")),
                (30, "memfd", ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE",))]
COMMIT_NEEDS = ("mmap", "munmap")
NORESERVE_PERCENT = 20          # commit-limit mappings with MAP_NORESERVE (not charged under modes 0 and 1)


def _hex(v: int) -> Int:
    return Int(v, hex=abs(v) >= 4096)


def _fact(facts: dict[str, Any], key: str) -> int | None:
    v = facts.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def commit_limit(facts: dict[str, Any] | None) -> int | None:
    """The most pages one charge may take under the overcommit heuristic -- RAM plus swap
    (mm/util.c __vm_enough_memory, OVERCOMMIT_GUESS) -- from the target's own facts; None where
    they do not give it, and then no commit scenario: a false alarm on a user's machine costs more
    than a missed clause.  It needs ``ram_pages`` (> 0), ``swap_pages`` (>= 0: a declared 0 is a
    known 0, a missing one is not known) and ``overcommit_memory`` 0.  Mode 1 charges without a
    limit; mode 2's limit subtracts what the rest of the machine has committed, the admin and user
    reserves and hugetlb pages, or is vm.overcommit_kbytes -- none of them facts.  A ``kernel``
    older than GUESS_RAM_SWAP_SINCE (5.2) guessed from free memory, and pages of another size than 4 KiB are not
    the pages these facts count: None for both."""
    f = facts or {}
    ram, swap, mode = _fact(f, "ram_pages"), _fact(f, "swap_pages"), _fact(f, "overcommit_memory")
    if ram is None or swap is None or mode != OVERCOMMIT_GUESS or ram <= 0 or swap < 0:
        return None
    if "page_size" in f and _fact(f, "page_size") != PAGE:
        return None
    if f.get("kernel") is not None:
        version = kernel_version(str(f["kernel"]))
        if version is None or version < GUESS_RAM_SWAP_SINCE:
            return None
    return ram + swap


def commit_scenario(g: Any, facts: dict[str, Any]) -> None:
    """A mapping of exactly ``commit_limit(facts)`` pages, then one of a page more, each with a NULL
    hint, charged as one of COMMIT_KINDS (private writable, shared anonymous or memfd private, drawn
    for each) and unmapped at once (whatever the answer: an address or -1): both sides of the
    boundary in every scenario, so ``>=`` for ``>`` and a limit a page late are each met.  Nothing
    where the facts give no limit, where a huge mapping could be populated or locked for real (an
    earlier mlockall: MCL_FUTURE) and where the program changed the model's RAM (memory_limit):
    there the facts no longer give the limit."""
    limit = commit_limit(facts)
    if limit is None or any(c.name in ("mlockall", "memory_limit") for c in g.calls):
        return
    r = g.r
    kinds = [(w, (k, p, f)) for w, k, p, f in COMMIT_KINDS if k == "anon" or g.ok("memfd_create")]
    for pages in (limit, limit + 1):
        kind, prot, flags = r.weighted(kinds)
        if r.chance(NORESERVE_PERCENT):
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
