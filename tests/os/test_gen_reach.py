"""The os generator reaches what the judge can catch (issue #26, third round): vocabularies drawn as
swarms (a program uses a few advice, flag, protection and whence values again and again), ranges at
the exact limits of the address space, the file offset asked for after a write, mremap beside a
neighbour, 2 MiB-aligned ranges faulted and observed, advice over memory with bytes on it.  Bugs
that need those shapes (tests/os/broken_reach.py) are caught by ``memspec check`` at its default
settings, and each was missed by the generator before (measured, see the parameters)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.program import Flags, Int, Program, Ref, load
from memspec.specs import gen_os
from memspec.specs.choose import ByteChooser

HERE = Path(__file__).resolve().parent
PAGE = 4096


def _programs(n: int = 300, facts: dict | None = None) -> list[Program]:
    rng = random.Random(26)
    return [gen_os.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), None, facts) for _ in range(n)]


def _calls(progs, name):
    return [c for p in progs for c in p.calls if c.name == name]


def test_vocabulary_swarm_draws_a_subset_and_keeps_the_plain_values() -> None:
    full = gen_os.OsGen(ByteChooser(bytes([99] * 64)), None)
    assert full.advice == gen_os.ADVICE and full.map_extra == gen_os.MAP_EXTRA
    sizes = []
    rng = random.Random(3)
    for _ in range(200):
        g = gen_os.OsGen(ByteChooser(bytes(rng.randrange(256) for _ in range(128))), None)
        assert set(g.advice) <= set(gen_os.ADVICE) and g.advice
        assert (62, ()) in g.map_extra and ("PROT_READ", "PROT_WRITE") in g.prots
        sizes.append(len(set(g.advice)))
    # about a third of the programs draw their advice from a few values
    assert 30 <= sum(s < len(set(gen_os.ADVICE)) for s in sizes) <= 120, sizes


def test_a_swarm_program_repeats_its_advice() -> None:
    # in a program whose advice vocabulary is small, the advice met is from it (and met repeatedly)
    rng = random.Random(5)
    repeated = 0
    for _ in range(400):
        r = ByteChooser(bytes(rng.randrange(256) for _ in range(512)))
        g = gen_os.OsGen(r, None)
        while len(g.calls) < 40 and not r.exhausted:
            g.step()
        advs = [c.args[2].names[0] for c in g.calls if c.name == "madvise" and isinstance(c.args[2], Flags)
                and c.args[2].names[0] not in gen_os.INJECT_ADVICE]
        assert set(advs) <= set(g.advice) | set(gen_os.DISCARD_ADVICE) | {
            "MADV_DONTNEED", "MADV_FREE", "MADV_DONTFORK", "MADV_REMOVE", "MADV_PAGEOUT", "MADV_COLD",
            "MADV_WILLNEED", "MADV_POPULATE_WRITE", "MADV_GUARD_INSTALL", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE",
            "MADV_COLLAPSE"}
        if len(set(g.advice)) <= 8 and len(advs) >= 3 and len(set(advs)) < len(advs):
            repeated += 1
    assert repeated >= 5, repeated       # 9 of 400


def test_edge_ranges_end_exactly_at_task_size_and_at_two_to_the_64() -> None:
    progs = _programs(1500)
    ranged = [c for p in progs for c in p.calls
              if c.name in ("munmap", "mprotect", "madvise", "mlock", "munlock", "msync", "mincore", "mseal", "mbind")
              and isinstance(c.args[0], Int) and isinstance(c.args[1], Int)]
    ends = {c.args[0].value + c.args[1].value for c in ranged}
    assert gen_os.TASK_SIZE in ends and 1 << 64 in ends
    assert any(c.args[0].value == gen_os.TASK_SIZE for c in ranged)        # starting at it
    # lengths whose page alignment wraps to 0
    assert any((c.args[1].value + PAGE - 1) % (1 << 64) < PAGE and c.args[1].value for c in ranged)
    # an mmap ending exactly at TASK_SIZE
    assert any(isinstance(c.args[0], Int) and c.args[0].value + c.args[1].value == gen_os.TASK_SIZE
               for c in _calls(progs, "mmap"))
    # the target's own TASK_SIZE when it declares one (uml's is smaller)
    small = _programs(600, {"task_size": 0x7FFFBFFFF000 - 0x10000000000})
    assert any(isinstance(c.args[0], Int) and isinstance(c.args[1], Int)
               and c.args[0].value + c.args[1].value == 0x7FFFBFFFF000 - 0x10000000000
               for p in small for c in p.calls if c.name in ("munmap", "mprotect", "madvise", "mlock", "munlock",
                                                             "msync", "mincore", "mseal", "mbind", "mmap"))


def test_memfd_and_shm_names_at_their_limits() -> None:
    progs = _programs(600)
    memfd = {len(c.args[0].value) for c in _calls(progs, "memfd_create")}
    assert {249, 250} <= memfd
    shm = {len(c.args[0].value.lstrip("/")) for c in _calls(progs, "shm_open")}
    assert {255, 256} <= shm


def test_the_offset_is_asked_for_after_a_write_and_a_pwrite() -> None:
    after = {"write": 0, "pwrite": 0}
    for p in _programs(600):
        for c, d in zip(p.calls, p.calls[1:]):
            if c.name in after and d.name == "lseek" and d.args[0] == c.args[0] and d.args[1] == Int(0) \
                    and d.args[2] == Flags(("SEEK_CUR",)):
                after[c.name] += 1
    assert after["write"] >= 5 and after["pwrite"] >= 5, after


def test_grow_scenarios_meet_a_neighbour() -> None:
    # an mremap of a mapping with another mapping after it, then loads of both
    found = 0
    for p in _programs(600):
        names = {c.result: c.args[0] for c in p.calls if c.name == "mmap" and isinstance(c.args[0], Int)}
        for i, c in enumerate(p.calls):
            if c.name == "mremap" and isinstance(c.args[0], Ref) and c.args[0].name in names:
                a = names[c.args[0].name].value
                if any(0 < v.value - a <= 6 * PAGE for v in names.values()) and \
                        any(d.name == "load" for d in p.calls[i + 1:]):
                    found += 1
                    break
    assert found >= 10, found


def test_thp_scenarios_are_2mib_aligned_and_observed() -> None:
    found = 0
    for p in _programs(600):
        bases = {c.result for c in p.calls if c.name == "mmap" and isinstance(c.args[0], Int)
                 and c.args[0].value % gen_os.HPAGE == 0 and c.args[1].value >= gen_os.HPAGE - PAGE}
        seen = [c for c in p.calls if c.name == "thp_mapped" and isinstance(c.args[0], Ref) and c.args[0].name in bases]
        if seen and any(c.name == "madvise" and c.args[2] == Flags(("MADV_HUGEPAGE",)) for c in p.calls):
            found += 1
    assert found >= 10, found


# bug, the clause it fails, and what the generator before this round gave at default settings
# (measured: memspec check -q --target py:tests/os/broken_reach.py:target("BUG") --layer os, with
# specs/gen_os.py of the commit before)
@pytest.mark.slow
@pytest.mark.parametrize("bug, clause", [
    # before: 0 failures; since the fourth round also met by the directed 61-argument-edges.mst (the
    # random programs' edge ranges alone -- 5 % of the ranges -- met it at seed 0 in one generator and
    # not in the next: too brittle to rely on)
    ("munmap-refuses-task-end", "posix.munmap.unmapped-ok"),
    ("memfd-name-248", "linux.memfd_create.creates"),             # before: 0 failures
])
def test_check_at_default_settings_catches_a_bug_that_needs_the_reach(bug, clause, tmp_path) -> None:
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_reach.py"}:target("{bug}")', "--layer", "os",
                   "--out", str(out)])
    assert status == 1
    fails = [f for t in json.loads((out / "report.json").read_text())["targets"] for f in t["failures"]]
    mine = [f for f in fails if clause is None or f["clause"] == clause]
    assert mine, [f["clause"] for f in fails]
    small = load(mine[0]["file"])
    assert len(small.calls) <= 12, mine[0]["program"]
