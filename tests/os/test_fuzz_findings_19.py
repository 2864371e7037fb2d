"""Findings of fuzzing linux-agent (issue #19) and their fixes: MAP_32BIT's window is the second
GiB with a randomized start (model); at vm.max_map_count do_mmap's ENOMEM comes before the map
type (model); the agent keeps a heap of its own for after map_pages reached the limit (harness),
and both linux targets refuse a probe of MADV_DONTFORK memory that mremap moved (harness)."""

from __future__ import annotations

import os

import pytest

from memspec.consts import MAP, SANDBOX_WINDOW
from memspec.fuzz.differential import execute
from memspec.model.mm import Config, System
from memspec.program import parse
from memspec.records import Outcome, RunStatus, Verdict

from ..conftest import GCC, target_fixture

G = 1 << 30
ANON32 = MAP["MAP_PRIVATE"] | MAP["MAP_ANONYMOUS"] | MAP["MAP_32BIT"]


def test_map_32bit_searches_the_second_gib_only():
    s = System()
    small = s.expect("main", "mmap", (0, 0x100000, 1, ANON32, -1, 0))
    assert small.judge(Outcome(value=0x41abf000)) is None          # measured on linux-agent, 6.18
    assert small.judge(Outcome(value=0x10000000)) is not None      # the first GiB is not MAP_32BIT's
    assert small.judge(Outcome(value=-1, errno="ENOMEM")) is not None
    # more than 1 GiB never fits; nearly 1 GiB fits only if the randomized start fell low
    assert s.expect("main", "mmap", (0, G + 4096, 1, ANON32, -1, 0)).allowed == (Outcome(value=-1, errno="ENOMEM"),)
    near = s.expect("main", "mmap", (0, G - (16 << 20), 1, ANON32, -1, 0))
    assert near.judge(Outcome(value=-1, errno="ENOMEM")) is None and near.judge(Outcome(value=0x40800000)) is None


def test_map_32bit_allows_a_free_hint_below_2_gib_even_in_the_first_gib():
    # arch_get_unmapped_area (the bottom-up path MAP_32BIT takes) uses a free hint when
    # end - len >= addr, end being 2 GiB: measured on 6.18, a hint of 0x2fff gave 0x10000 (the
    # hint rounded up to the LSM's mmap_min_addr); found by `check --target linux --seed 7`
    s = System()
    e = s.expect("main", "mmap", (0x2FFF, 0x1000, 0, ANON32, 0, 0))
    assert e.judge(Outcome(value=0x10000)) is None and e.judge(Outcome(value=0x2000)) is None
    assert e.judge(Outcome(value=0x41abf000)) is None                 # not demanded: the target's own
    assert e.judge(Outcome(value=0x20000000)) is not None             # neither the hint nor the window
    # a hint whose range would end above 2 GiB is not used
    high = s.expect("main", "mmap", (0x7FFFF000, 0x2000, 0, ANON32, 0, 0))
    assert high.judge(Outcome(value=0x7FFFF000)) is not None


SHARED_VALIDATE_ANON = MAP["MAP_SHARED_VALIDATE"] | MAP["MAP_ANONYMOUS"]


def test_at_the_limit_mmap_is_enomem_before_the_map_type_is_looked_at():
    alone = System(Config.from_facts({"max_map_count": 3}))
    for k in range(4):
        alone.apply("main", "mmap", (0x100100000000 + k * 0x10000, 4096, 1, 0x32, -1, 0),
                    Outcome(value=0x100100000000 + k * 0x10000))
    e = alone.expect("main", "mmap", (0, 4096, 1, SHARED_VALIDATE_ANON, -1, 0))
    assert e.allowed == (Outcome(value=-1, errno="ENOMEM"),) and e.clause == "linux.mmap.enomem-max-map-count"
    # below the limit the map type decides
    below = System(Config.from_facts({"max_map_count": 300}))
    assert below.expect("main", "mmap", (0, 4096, 1, SHARED_VALIDATE_ANON, -1, 0)).default.errno == "EINVAL"
    # near the limit on a target with mappings of its own: either answer
    band = System(Config.from_facts({"max_map_count": 150, "base_maps": 100, "quiet_ranges": [list(SANDBOX_WINDOW)]}))
    e = band.expect("main", "mmap", (0, 4096, 1, SHARED_VALIDATE_ANON, -1, 0))
    assert e.judge(Outcome(value=-1, errno="ENOMEM")) is None and e.judge(Outcome(value=-1, errno="EINVAL")) is None
    assert e.judge(Outcome(value=-1, errno="EACCES")) is not None


linux_only = pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")
agent = target_fixture("linux-agent", GCC)
linux = target_fixture("linux")

DONTFORK_MOVED = """a = mmap(0x100100000000, 0x1000, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
e = madvise(a, 0x1000, MADV_DONTFORK)
b = mremap(a, 0x1000, 0x1000, MREMAP_MAYMOVE|MREMAP_FIXED, 0x100110000000)
fetch(b)
"""


@linux_only
@pytest.mark.parametrize("name", ["agent", "linux"])
def test_a_probe_of_dontfork_memory_that_mremap_moved_is_refused(name, request):
    t = request.getfixturevalue(name)
    j = execute(t, parse(DONTFORK_MOVED), t.facts())
    assert j.failure is None, j.failure
    refused = [c for c in j.checks if c.verdict == Verdict.UNSUPPORTED]
    assert refused and "MADV_DONTFORK" in (j.message or "") + " ".join(str(c.observed) for c in refused)


@linux_only
def test_the_agent_reads_its_maps_at_the_limit(agent):
    # a checkpoint at vm.max_map_count + 1 mappings: the agent used to die of "out of memory"
    prog = parse("n = map_pages(0x100200000000, 70000, PROT_READ)\n"
                 "a = mmap(0x100100000000, 0x4000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    j = execute(agent, prog, agent.facts())
    assert j.status == RunStatus.OK and j.failure is None, (j.status, j.failure, j.message)


EOF_PROG = """fd = {kind}
ftruncate(fd, 0x100)
s = mmap(0x100008500000, 0x2000, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)
store(s+0x200, 0x41)
store(s+0x800, 0x43)
pwrite(fd, 0x300, 0x42, 1)
a = load(s+0x200)
b = load(s+0x800)
pwrite(fd, 0x1800, 0x44, 1)
c = load(s+0x800)
"""
FILE, MEMFD = "open_file(0x100, O_RDWR)", 'memfd_create("z", 0)'


S = 0x100008500000


def _step(s: System, name: str, args: tuple) -> Outcome:
    o = s.expect("main", name, args).default
    s.apply("main", name, args, o)
    return o


def _eof_loads(facts, kind):
    """The program's three loads, as the model expects them, each with its Expect."""
    s = System(Config.from_facts(facts))
    fd = _step(s, "open_file", (0x100, 2)) if kind == FILE else _step(s, "memfd_create", ("z", 0))
    fd = fd.value
    _step(s, "ftruncate", (fd, 0x100))
    _step(s, "mmap", (S, 0x2000, 3, MAP["MAP_SHARED"], fd, 0))
    _step(s, "store", (S + 0x200, 0x41))
    _step(s, "store", (S + 0x800, 0x43))
    _step(s, "pwrite", (fd, 0x300, 0x42, 1))
    a = s.expect("main", "load", (S + 0x200,))
    b = s.expect("main", "load", (S + 0x800,))
    _step(s, "pwrite", (fd, 0x1800, 0x44, 1))
    c = s.expect("main", "load", (S + 0x800,))
    return a, b, c


@pytest.mark.parametrize("facts, kind, zeroed", [
    ({}, FILE, True),                                   # the model alone: Linux 6.18 on ext4
    ({"eof_zero_on_write": False}, FILE, False),        # a folder on tmpfs (probed)
    ({"kernel": "6.1.0"}, FILE, False),                 # not probed: decided by the release
    ({}, MEMFD, False),                                 # tmpfs: shmem_write_end only sets i_size
])
def test_a_write_past_the_end_zeroes_the_old_eof_tail_of_a_disk_file(facts, kind, zeroed):
    a, b, c = _eof_loads(facts, kind)
    want = (0, 0x43, 0) if zeroed else (0x41, 0x43, 0x43)
    assert (a.default.value, b.default.value, c.default.value) == want
    # a kernel that keeps the bytes where the model zeroes them, or zeroes them where it keeps
    # them, is caught at the load
    assert a.judge(Outcome(value=0x41 if zeroed else 0)) is not None
    assert c.judge(Outcome(value=0x43 if zeroed else 0)) is not None


@linux_only
@pytest.mark.parametrize("name", ["agent", "linux"])
@pytest.mark.parametrize("kind", [FILE, MEMFD])
def test_the_linux_targets_agree(name, kind, request):
    t = request.getfixturevalue(name)
    j = execute(t, parse(EOF_PROG.format(kind=kind)), t.facts())
    bad = j.failure
    assert bad is None or bad.clause == "seed.fault.major-counted", bad
    assert [c for c in j.checks if c.index == 6 and c.at == "call" and c.verdict == Verdict.FAIL] == []
