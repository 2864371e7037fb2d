"""Faults in runs (model/fault_runs.py, issue #20) leave exactly what the page-by-page fault path
leaves.

``PlainFaults`` is the model with its own ``next_seq`` (the same body), so ``fault_runs.lean`` sends
every populate, MADV_POPULATE_* and huge page through the fault path a page at a time.  On random
programs that populate ranges every way (mlock, mlock2, mlockall, MAP_POPULATE, MAP_LOCKED, mremap of
locked memory, MADV_POPULATE_READ/WRITE, huge pages made at a fault or seen by thp_mapped) among
stores, loads, guard markers, forks, DONTNEED, mbind, reclaim and memory limits, on machines with
frames nearly exhausted (with and without swap: reclaim and the OOM killer mid-range), NUMA with
policies, the commit limit, RLIMIT_MEMLOCK, THP always (certain), madvise and never, and the linux
target's facts, the two models give every answer alike and, after every call, the same state: the
frames page by page and in allocation order, the free list, the LRU in order with its sequence
numbers, every page's fields, PTEs, private pages and TLB entries in insertion order, counters and
fault statistics, the last #PF, loose frames, the footprint, the invariants' findings.  Each of the
run's fallbacks, left out, is caught by the same comparison.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from memspec.consts import PAGE_SIZE
from memspec.model import fault_runs
from memspec.model.intervals import merged
from memspec.model.mm import Config, System
from memspec.model.os.state import OsState
from memspec.model.pages import Page
from memspec.program import Program, bind_result, eval_args, parse

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_fault_runs_lean_judge", HERE / "test_lean_judge.py")
lean_judge = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lean_judge)  # type: ignore[union-attr]

W = 0x100000000000          # 2 MiB aligned: a mapping at W of 512 pages or more holds a huge page's range
WINDOW = 1536               # pages of the window the programs use (6 MiB)

MACHINES = {
    "alone": {},
    "linux": {"base_maps": 230, "quiet_ranges": [[0x100000000000, 0x104000000000]]},
    "few-frames-swap": {"ram_pages": 700, "swap_pages": 96},
    "few-frames-oom": {"ram_pages": 400, "swap_pages": 0},
    "numa": {"nodes": 4},
    "commit-never": {"overcommit_memory": 2, "overcommit_ratio": 50, "ram_pages": 3000, "swap_pages": 200},
    "memlock": {"privileged": False, "memlock_soft": 96 * PAGE_SIZE, "memlock_hard": 1 << 20},
    "thp-always": {"thp": "always", "thp_certain": True, "ram_pages": 2500, "swap_pages": 64},
    "thp-madvise": {"thp": "madvise"},
    "thp-never": {"thp": "never", "nodes": 2},
}


class PlainFaults(System):
    """The model with every fault taken a page at a time: its ``next_seq`` is its own (the same
    body), so ``fault_runs.lean`` refuses it the runs."""

    def next_seq(self) -> int:
        return OsState.next_seq(self)


# -- the whole state, pages by identity --------------------------------------------------------------

def _fields(p: Page) -> tuple:
    return (p.kind, None if p.data is None else bytes(p.data), p.pfn, p.mapcount, p.dirty, p.referenced, p.swap,
            p.obj, p.pgoff, p.node, p.lru_seq, p.lazyfree, p.inherited, p.refs, p.ptes)


def snapshot(s: System) -> dict:
    """Everything the two paths could leave differently; each page named by where it was first seen
    (the LRU in order, the frame table in allocation order, then each process's tables), so a page
    shared by two tables is one page in both models."""
    index: dict[int, int] = {}
    pages: list[Page] = []

    def ref(p):
        if not isinstance(p, Page):
            return "zero"
        k = index.get(id(p))
        if k is None:
            k = index[id(p)] = len(pages)
            pages.append(p)
        return k

    def later(p):                   # a page seen only in an unordered set: its fields, not its place
        return ref(p) if id(p) in index or not isinstance(p, Page) else ("?",) + _fields(p)

    f = s.frames
    out: dict = {"seq": s.seq, "stats": list(s.stats.items()), "killed": list(s.killed),
                 "lru": [ref(p) for p in s.lru], "on_lru": s.on_lru == {id(p) for p in s.lru},
                 "clock": s.clock_hand, "owner": [(pfn, ref(p)) for pfn, p in f.owner.items()],
                 "free": list(f._free), "next": f._next, "swap": [(k, ref(p)) for k, p in f.swap_used.items()],
                 "next_slot": f._next_slot, "limits": (f.ram_pages, f.swap_pages),
                 "last_fault": None if s.last_fault is None else (s.last_fault.errcode, s.last_fault.cr2,
                                                                  s.last_fault.clause)}
    for name, mm in sorted(s.procs.items()):
        out[name] = (
            list(mm.vmas.items()),
            [(a, ref(p)) for a, p in mm.anon.items()],
            [(a, ref(t.page), t.write, t.read, t.exec) for a, t in mm.pte.items()],
            [(a, ref(t.page), t.write, t.read, t.exec) for a, t in mm.tlb.items()],
            sorted(mm.maybe), sorted(mm.flushed), sorted(mm.huge), sorted(mm.thp_maybe), sorted(mm.thp_split),
            sorted(mm.guard), sorted(mm.last_ref.items()), mm.minflt, mm.minflt_maybe, mm.majflt, mm.cow_faults,
            mm.vtime, mm.memlock_soft, mm.mcl_future, list(mm.touched), merged(mm.touched_ranges),
            sorted(mm.touched_objs))
    for o in sorted(s.objects):
        obj = s.objects[o]
        out[f"obj{o}"] = (obj.kind, obj.size, [(k, ref(p)) for k, p in obj.pages.items()], sorted(obj.uncertain),
                          sorted(obj.disk))
    out["pages"] = [_fields(p) for p in pages]
    for name, mm in sorted(s.procs.items()):
        out[name + ".touched_pages"] = sorted((later(p) for p in mm.touched_pages), key=repr)
    out["frames_touched"] = sorted((later(p) for p in f.touched), key=repr)
    live = {id(p): k for k, p in enumerate(pages)}
    out["loose"] = (len(s.pfn_loose), sorted(((later(p), c) for p, c in s.pfn_loose.values()), key=repr))
    out["pfn_seen"] = sorted((pfn, later(p)) for pfn, p in s.pfn_seen.items())
    out["pfn_of_page"] = sorted((live[i], pfn) for i, (p, pfn) in s.pfn_of_page.items() if i in live)
    out["touched_objs"] = sorted(s.touched_objs)
    return out


# -- programs that populate ranges every way ------------------------------------------------------

PROTS = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_EXEC", "PROT_READ|PROT_EXEC",
         "PROT_READ|PROT_WRITE|PROT_EXEC"]
ADVICE = ["MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MADV_POPULATE_WRITE", "MADV_GUARD_INSTALL",
          "MADV_GUARD_REMOVE", "MADV_DONTNEED", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_WILLNEED",
          "MADV_COLLAPSE", "MADV_FREE"]


def _at(rng: random.Random) -> int:
    return W + rng.randrange(WINDOW) * PAGE_SIZE


def _pages(rng: random.Random) -> int:
    return rng.choice([1, 2, 3, 5, 8, 16, 40, 100, 300, 512, 1024])


def _call(rng: random.Random, k: int) -> str:
    r = rng.random()
    at, n = _at(rng), _pages(rng)
    if r < 0.22:
        base = rng.choice([W, W + (2 << 20), at])
        flags = rng.choice(["MAP_PRIVATE", "MAP_PRIVATE", "MAP_PRIVATE", "MAP_SHARED"]) + "|MAP_ANONYMOUS|MAP_FIXED"
        flags += rng.choice(["", "", "|MAP_POPULATE", "|MAP_LOCKED"])
        return f"m{k} = mmap({hex(base)}, {n * PAGE_SIZE}, {rng.choice(PROTS)}, {flags}, -1, 0)"
    if r < 0.36:
        return rng.choice([f"mlock({hex(at)}, {n * PAGE_SIZE})", f"munlock({hex(at)}, {n * PAGE_SIZE})",
                           f"mlock2({hex(at)}, {n * PAGE_SIZE}, {rng.choice([0, 0, 1])})"])
    if r < 0.40:
        return rng.choice(["mlockall(MCL_CURRENT)", "mlockall(MCL_CURRENT|MCL_FUTURE)", "munlockall()",
                           "mlockall(MCL_FUTURE)"])
    if r < 0.52:
        return f"madvise({hex(at)}, {n * PAGE_SIZE}, {rng.choice(ADVICE)})"
    if r < 0.70:
        return f"store({hex(at + rng.randrange(PAGE_SIZE))}, {k})" if rng.random() < 0.6 else f"l{k} = load({hex(at)})"
    if r < 0.74:
        return f"mbind({hex(at)}, {n * PAGE_SIZE}, {rng.choice([0, 1, 2, 3, 3])}, {rng.choice([1, 2, 5, 6, 15])})"
    if r < 0.77:
        return f"t{k} = thp_mapped({hex(at)})"
    if r < 0.80:
        return f"munmap({hex(at)}, {n * PAGE_SIZE})"
    if r < 0.83:
        return f"mprotect({hex(at)}, {n * PAGE_SIZE}, {rng.choice(PROTS)})"
    if r < 0.85:
        return f"memory_limit({rng.choice([300, 600, 1000, 2500])}, {rng.choice([0, 16, 200])})"
    if r < 0.87:
        return f"c{k} = reclaim({rng.choice([1, 8, 64])})"
    if r < 0.89:
        return f"p{k} = fork()"
    if r < 0.91:
        return f"x{k} = pfn_of({hex(at)})"
    if r < 0.93:
        return f"v{k} = mincore({hex(at)}, {n * PAGE_SIZE})"
    if r < 0.95:
        return f"n{k} = get_node({hex(at)})"
    if r < 0.97:
        return f"r{k} = mremap({hex(at)}, {n * PAGE_SIZE}, {(n + rng.choice([1, 16, 300])) * PAGE_SIZE}, 0, 0)"
    return rng.choice([f"f{k} = minflt()", f"j{k} = majflt()", "khugepaged()", f"set_memlock_limit({rng.choice([0, 4096, 1 << 20])})"])


def populate_programs(seed: int, n: int, calls: int = 30) -> list[Program]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = [f"m = mmap({hex(W)}, {rng.choice([64, 512, 1024, 1536]) * PAGE_SIZE}, PROT_READ|PROT_WRITE, "
                 f"MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)"]
        lines += [_call(rng, k) for k in range(calls)]
        out.append(parse("\n".join(lines) + "\n"))
    return out


def run_both(program: Program, facts: dict, seed: int, full_every: int = 4) -> int:
    """Step ``program`` through the model with runs and the page-by-page one, adopting the same
    outcome (the default, or now and then another the answer allows); compare every answer, the
    state after every call and the invariants' findings.  The calls made."""
    return lean_judge.run_both(program, facts, seed, full_every, plain_model=PlainFaults, other=0.3,
                               more=_observations, state=snapshot)


def _observations(name: str) -> list:
    from memspec.records import Outcome
    if name == "thp_mapped":
        return [Outcome(value=1), Outcome(value=0)]
    return []


@pytest.fixture
def counted(monkeypatch):
    """How many pages the runs did (anon_run, huge_run), and how many runs stopped short of their
    range's end."""
    seen = {"pages": 0, "short": 0, "huge": 0}
    anon, huge = fault_runs.anon_run, fault_runs.huge_run

    def anon_run(sys, mm, v, start, end, kind):
        stop = anon(sys, mm, v, start, end, kind)
        seen["pages"] += (stop - start) // PAGE_SIZE
        seen["short"] += start < stop < end
        return stop

    def huge_run(sys, mm, v, base, read):
        done = huge(sys, mm, v, base, read)
        seen["huge"] += done
        return done

    monkeypatch.setattr(fault_runs, "anon_run", anon_run)
    monkeypatch.setattr(fault_runs, "huge_run", huge_run)
    return seen


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_runs_leave_what_the_fault_path_leaves(machine, counted):
    facts = MACHINES[machine]
    made = sum(run_both(p, facts, i) for i, p in enumerate(populate_programs(sorted(MACHINES).index(machine), 24)))
    assert made > 400
    assert counted["pages"] > 2000, counted          # the runs were taken, not just allowed


def test_the_runs_are_taken_where_they_may_be(counted):
    """Over the machines, runs stop short (a page of state, the frames running out) and huge pages
    are made in one pass: the comparison above reaches both."""
    for machine in ("few-frames-swap", "thp-always"):
        for i, p in enumerate(populate_programs(5, 12)):
            run_both(p, MACHINES[machine], i)
    assert counted["short"] > 0 and counted["huge"] > 0, counted


def test_a_model_of_its_own_takes_the_plain_path():
    s, p = System(Config()), PlainFaults(Config())
    assert fault_runs.lean(s, s.procs["main"]) and not fault_runs.lean(p, p.procs["main"])


# -- each fallback, left out, is caught -------------------------------------------------------------

def _fresh_end_without(table: str):
    """fault_runs.fresh_end blind to one of the tables that make a page not fresh."""
    def fresh_end(mm, start, end):
        seen = [getattr(mm, t) for t in ("pte", "anon", "tlb", "guard") if t != table]
        p = start
        while p < end and not any(p in x for x in seen):
            p += PAGE_SIZE
        return p
    return fresh_end


def _caught(machines: list[str], directed: str = "", programs: int = 24) -> bool:
    """Whether the comparison fails on a directed program or one of the random ones."""
    for machine in machines:
        for i, p in enumerate(([parse(directed)] if directed else []) + populate_programs(17, programs)):
            try:
                run_both(p, MACHINES[machine], i)
            except AssertionError:
                return True
    return False


MAPPED = f"m = mmap({hex(W)}, {1024 * PAGE_SIZE}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
GUARDED = MAPPED + f"""store({hex(W + 3 * PAGE_SIZE)}, 1)
madvise({hex(W + 8 * PAGE_SIZE)}, {4 * PAGE_SIZE}, MADV_GUARD_INSTALL)
mlockall(MCL_CURRENT)
"""
ZERO_PAGES_IN_HUGE = MAPPED + f"""madvise({hex(W)}, {1024 * PAGE_SIZE}, MADV_HUGEPAGE)
a = load({hex(W + 5 * PAGE_SIZE)})
b = load({hex(W + 9 * PAGE_SIZE)})
t = thp_mapped({hex(W)})
"""


@pytest.mark.parametrize("table", ["pte", "anon", "guard"])
def test_a_run_over_pages_with_state_is_caught(monkeypatch, table):
    monkeypatch.setattr(fault_runs, "fresh_end", _fresh_end_without(table))
    assert _caught(["alone", "few-frames-swap"], GUARDED)


def test_a_run_past_the_free_frames_is_caught(monkeypatch):
    monkeypatch.setattr(fault_runs, "free_frames", lambda sys: 1 << 30)
    assert _caught(["few-frames-swap", "few-frames-oom"])


def test_a_run_blind_to_the_numa_policy_is_caught(monkeypatch):
    monkeypatch.setattr(fault_runs, "_nodes", lambda sys, v, pages: 0)
    assert _caught(["numa"])


def test_a_huge_page_over_mapped_pages_is_caught(monkeypatch):
    monkeypatch.setattr(fault_runs, "_unmapped", lambda mm, pages: True)
    assert _caught(["alone"], ZERO_PAGES_IN_HUGE)


def test_the_directed_programs_are_judged_alike():
    for machine in ("alone", "few-frames-swap"):
        for text in (GUARDED, ZERO_PAGES_IN_HUGE):
            assert run_both(parse(text), MACHINES[machine], 0) == len(parse(text).calls)


# -- mincore's vector a VMA at a time ---------------------------------------------------------------

def plain_mincore(sys, mm, addr: int, length: int):
    """advice.expect_mincore as it was: each page's VMA looked up for its residency, and three times
    more for the mlock clause."""
    from memspec.model.expect import Expect, errno, exactly
    from memspec.model.os import advice
    from memspec.model.os.state import PAGE_MASK, page_align
    from memspec.records import Outcome
    if addr & ~PAGE_MASK:
        return errno("posix.mincore.einval-unaligned", "EINVAL")
    plen = page_align(length)
    if addr + plen > sys.config.task_size + PAGE_SIZE or (length and plen == 0):
        return errno("posix.mincore.enomem-unmapped", "ENOMEM")
    if plen == 0:
        return exactly("posix.mincore.residency", Outcome(value=0))
    if not mm.vmas.covers(addr, addr + plen):
        return errno("posix.mincore.enomem-unmapped", "ENOMEM")
    sure, unsure = 0, 0
    for i, page in enumerate(range(addr, addr + plen, PAGE_SIZE)):
        r = advice._resident(sys, mm, mm.vmas.find(page)[2], page)
        if r is None:
            unsure |= 1 << i
        elif r:
            sure |= 1 << i
    clause = "posix.mincore.residency"
    if any(mm.vmas.find(p)[2].locked for p in range(addr, addr + plen, PAGE_SIZE)
           if mm.vmas.find(p) is not None and not mm.vmas.find(p)[2].onfault):
        clause = "posix.mlock.resident"
    if not unsure:
        return exactly(clause, Outcome(value=sure))
    return Expect(clause, Outcome(value=sure | unsure), f"{sure:#x} (pages {unsure:#x} either way)",
                  predicate=lambda o: None, impl_defined=True)


HUGE_MAYBE = ZERO_PAGES_IN_HUGE.replace(f"t = thp_mapped({hex(W)})\n", "")    # pages that may be present


def _mincore_alike() -> int:
    """Ask mincore of random ranges after every call of random programs, of both forms; the
    answers asked over mapped ranges."""
    from memspec.model.os import advice
    from memspec.records import Outcome
    rng = random.Random(3)
    asked = 0
    for machine in ("alone", "linux", "few-frames-swap"):
        for i, p in enumerate([parse(HUGE_MAYBE)] + populate_programs(23, 12)):
            s, env = System(Config.from_facts(MACHINES[machine])), {}
            for c in p.calls:
                try:
                    args = eval_args(c, env)
                except KeyError:
                    break
                o = s.expect("main", c.name, args).default
                s.apply("main", c.name, args, o)
                s.bind("main", c.name, c.result, o)
                if c.result and o.value is not None and c.name != "fork":
                    bind_result(env, c, o.value)
                if "main" not in s.procs:
                    break
                mm = s.procs["main"]
                for _ in range(3):
                    at, n = _at(rng) + rng.choice([0, 0, 0, 1]), rng.choice([0, 1, 3, 40, 600])
                    a, b = advice.expect_mincore(s, mm, at, n * PAGE_SIZE), plain_mincore(s, mm, at, n * PAGE_SIZE)
                    assert (a.clause, a.default, a.describe, a.impl_defined) == (b.clause, b.default, b.describe,
                                                                               b.impl_defined), (c, at, n)
                    if a.predicate is not None:
                        for v in (a.default.value, 0, (1 << n) - 1):
                            a.judge(Outcome(value=v))
                    asked += a.clause != "posix.mincore.enomem-unmapped"
    return asked


def test_mincore_reads_a_vma_at_a_time_as_a_page_at_a_time():
    assert _mincore_alike() > 300


@pytest.mark.parametrize("blind", ["pte", "maybe"])
def test_a_mincore_blind_to_a_table_is_caught(monkeypatch, blind):
    from memspec.model.os import advice
    real = advice._residency

    def residency(sys, mm, v, s, e):
        saved = getattr(mm, blind)
        setattr(mm, blind, {})
        try:
            return real(sys, mm, v, s, e)
        finally:
            setattr(mm, blind, saved)
    monkeypatch.setattr(advice, "_residency", residency)
    with pytest.raises(AssertionError):
        _mincore_alike()


def test_a_loose_frame_is_its_own_pages_alone():
    """OsState.pfn_loose names a page by its id and keeps the page: a page that got the id of a
    loose page since gone is not loose (pfn_of judges its frame exactly once adopted)."""
    from memspec.model import pressure
    s = System(Config())
    gone, new = Page("anon"), Page("anon")
    s.pfn_loose[id(new)] = (gone, "linux.thp.fault-huge")       # the entry of a page that had new's id
    assert pressure.loose_clause(s, new) is None
    s.pfn_loose[id(new)] = (new, "linux.thp.fault-huge")
    assert pressure.loose_clause(s, new) == "linux.thp.fault-huge"
