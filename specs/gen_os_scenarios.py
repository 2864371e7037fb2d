"""Scenarios of the os generator (specs/gen_os.py) kept in a module of their own: shapes a single
random step almost never makes.

- ``commit_scenario``: a mapping of exactly the overcommit heuristic's limit, or a page more
  (mm/util.c __vm_enough_memory, vm.overcommit_memory 0: a charge of more pages than RAM plus
  swap is ENOMEM), charged three ways -- private writable anonymous memory, shared anonymous
  memory (its shmem object is charged even read-only) and a private writable mapping of a memfd
  -- sometimes with MAP_NORESERVE (no charge); unmapped at once.  The sizes come from the
  target's ``ram_pages`` and ``swap_pages`` facts (the model's defaults when it declares none).
It runs in main (the process the linux targets fork from).  The os codec (fuzz/codec_os.py) does
not pass a target's facts to the generator, so ``memspec check`` draws the model's defaults: the
exact limit on the served model, an arbitrary large mapping (judged with the real facts) on Linux.
"""

from __future__ import annotations

from typing import Any

from memspec.program import Call, Flags, Int, Ref, Str

PAGE = 4096
COMMIT_SCENARIO_WEIGHT = 0      # of gen_os.STEPS: a mapping at the overcommit limit (``commit_scenario``);
# off: check does not hand the os generator the target's facts (fuzz/codec_os.py), so the scenario aims
# at the model's default RAM, and a target that declares no RAM (the C example model) is then judged
# against a limit it never claimed
RAM_PAGES_DEFAULT = 1 << 22     # model/os/state.py Config.ram_pages when the target declares no ``ram_pages``
# how a commit-limit mapping is charged: (weight, kind, prot, flags)
COMMIT_KINDS = [(40, "anon", ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS")),
                (30, "anon", ("PROT_READ",), ("MAP_SHARED", "MAP_ANONYMOUS")),
                (30, "memfd", ("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE",))]
COMMIT_NEEDS = ("mmap", "munmap")


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
