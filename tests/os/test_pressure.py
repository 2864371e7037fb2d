"""Memory pressure: the clock, swappiness, the OOM killer, working sets, THP, NUMA."""

from __future__ import annotations

from memspec.model.mm import new_model
from memspec.model.pressure import badness, reclaim_plan, working_set
from memspec.records import Outcome

A = 0x100000000000
RW, ANON_PRIV = 3, 0x22


def run(sys, *calls):
    out = []
    for proc, name, args in calls:
        o = sys.expect(proc, name, args).default
        sys.apply(proc, name, args, o)
        sys.bind(proc, name, "p2" if name == "fork" else None, o)
        out.append(o)
    return out


def test_clock_gives_referenced_pages_a_second_chance():
    s = new_model({})
    run(s, ("main", "memory_limit", (64, 16)), ("main", "mmap", (A, 0x3000, RW, ANON_PRIV, -1, 0)),
        ("main", "store", (A, 1)), ("main", "store", (A + 0x1000, 2)))
    first, second = (s.procs["main"].anon[a] for a in (A, A + 0x1000))
    first.referenced = True
    second.referenced = False
    assert reclaim_plan(s, 1) == [second]
    run(s, ("main", "reclaim", (1,)))
    assert not first.referenced and second.pfn is None and second.swap is not None
    assert run(s, ("main", "reclaim", (1,)))[0] == Outcome(value=1) and first.pfn is None


def test_swappiness_zero_takes_file_pages_first():
    s = new_model({})
    fd = run(s, ("main", "open_file", (0x1000, 2)))[0].value
    run(s, ("main", "memory_limit", (64, 16)), ("main", "set_swappiness", (0,)),
        ("main", "mmap", (A, 0x1000, RW, ANON_PRIV, -1, 0)), ("main", "mmap", (A + 0x10000, 0x1000, RW, 1, fd, 0)),
        ("main", "store", (A, 1)), ("main", "load", (A + 0x10000,)))
    (victim,) = reclaim_plan(s, 1)
    assert victim.kind == "file"
    s.swappiness = 200
    assert reclaim_plan(s, 1)[0].kind == "anon"


def test_no_swap_means_anon_unevictable_and_oom_picks_the_worst():
    s = new_model({})
    run(s, ("main", "mmap", (A, 0x4000, RW, ANON_PRIV, -1, 0)), ("main", "fork", ()),
        ("p2", "store", (A, 1)), ("p2", "store", (A + 0x1000, 1)), ("main", "store", (A, 1)))
    assert badness(s, s.procs["p2"]) == 2 and badness(s, s.procs["main"]) == 1
    pid = s.procs["p2"].pid
    assert s.expect("main", "oom", ()).default == Outcome(value=pid)
    run(s, ("main", "oom", ()))
    assert "p2" not in s.procs


def test_fault_without_memory_kills_the_faulting_worst_process():
    s = new_model({})
    run(s, ("main", "memory_limit", (2, 0)), ("main", "mmap", (A, 0x3000, RW, ANON_PRIV, -1, 0)),
        ("main", "store", (A, 1)), ("main", "store", (A + 0x1000, 1)))
    assert s.expect("main", "store", (A + 0x2000, 1)).default == Outcome(signal="SIGKILL")


def test_working_set_window():
    s = new_model({})
    run(s, ("main", "mmap", (A, 0x3000, RW, ANON_PRIV, -1, 0)), ("main", "store", (A, 1)),
        ("main", "tick", ()), ("main", "store", (A + 0x1000, 1)))
    mm = s.procs["main"]
    assert working_set(mm, 1) == {A + 0x1000}
    assert working_set(mm, 3) == {A, A + 0x1000}


def test_thp_collapse_and_split_keep_data():
    s = new_model({})
    H = A + 0x200000
    run(s, ("main", "mmap", (H, 0x200000, RW, ANON_PRIV, -1, 0)), ("main", "store", (H + 0x3000, 9)),
        ("main", "madvise", (H, 0x200000, 14)))
    assert run(s, ("main", "khugepaged", ()))[0] == Outcome(value=1)
    mm = s.procs["main"]
    assert H in mm.huge and len([p for p in mm.pte if H <= p < H + 0x200000]) == 512
    run(s, ("main", "mprotect", (H + 0x1000, 0x1000, 1)))
    assert H not in mm.huge and s.stats["thp_splits"] == 1
    assert run(s, ("main", "load", (H + 0x3000,)))[0] == Outcome(value=9)


def test_numa_policies_place_pages():
    s = new_model({"nodes": 2})
    run(s, ("main", "mmap", (A, 0x4000, RW, ANON_PRIV, -1, 0)), ("main", "mbind", (A, 0x1000, 2, 2)),
        ("main", "mbind", (A + 0x2000, 0x2000, 3, 3)))
    for a in (A, A + 0x1000, A + 0x2000, A + 0x3000):
        run(s, ("main", "store", (a, 1)))
    nodes = [s.expect("main", "get_node", (a,)).default.value for a in (A, A + 0x1000, A + 0x2000, A + 0x3000)]
    assert nodes[0] == 1 and nodes[1] == 0 and sorted(nodes[2:]) == [0, 1]
    assert s.expect("main", "mbind", (A, 0x1000, 2, 4)).default.errno == "EINVAL"
