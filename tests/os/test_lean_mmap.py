"""The os judge's leaner mmap, VMA tree and step check (issue #20) decide as their plain forms do.

``PlainerSystem`` is ``reference_lean.PlainSystem`` with these plain forms too: mmap's rule asked
through every check of ``_mmap_check`` and ``_mmap_check_late`` (no answer of its own for the common
anonymous private mapping, ``mappings._anon_private``), its placement's first fit found over
``IntervalMap.gaps`` (not ``fit_below``), and a VMA tree whose ``remove`` goes through
``IntervalMap.remove``.  On random programs -- mmap of anonymous private memory at every length
that matters (0, a page, past the task size), with and without a hint, an offset, MAP_FIXED,
mlockall(MCL_FUTURE) in force, on machines near vm.max_map_count, RLIMIT_AS / RLIMIT_DATA and the
commit limit, alone and with the linux target's facts -- the two models give every answer alike
(clause, default, description, verdict on a set of outcomes), and the same state, footprint and
invariant findings after every call; whole judgements are the same.  ``fit_below`` is held to the
first fit over ``gaps`` on random trees of one chunk and of many; the register cache
(``mm._registers``) to the plain conversion, asked again and again.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model import intervals
from memspec.model.intervals import IntervalMap
from memspec.model.mm import Config, System, _registers
from memspec.model.os import mappings as M
from memspec.model.os import splits
from memspec.model.os.footprint import VmaTree
from memspec.model.os.state import Mm, OsState
from memspec.model.rules import replaced
from memspec.program import Program, parse
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_lean_mmap_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


ref = _load("reference_lean")
lean_judge = _load("test_lean_judge")


# -- the plain forms ------------------------------------------------------------------------------

def plain_expect_mmap(sys: OsState, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int,
                      offset: int):
    """mappings.expect_mmap without its answer for the common anonymous private mapping."""
    e = M._expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)
    own = splits.own_mappings(sys)
    if own and not e.unknown and e.clause not in M._BEFORE_MAP_COUNT and M._map_count_near(sys, mm, 0):
        return M.or_errno(e, M.MAP_COUNT, "ENOMEM")
    if not own and not e.unknown and e.clause not in M._BEFORE_MAP_COUNT and len(mm.vmas) > sys.config.max_map_count:
        return M.or_errno(e, M.MAP_COUNT, "ENOMEM")
    return e


def plain_pick(sys: OsState, mm: Mm, hint: int, plen: int, lo: int, hi: int) -> int | None:
    """mappings._pick over ``gaps``, top down, as it was."""
    if hint and hint + plen <= hi and not mm.vmas.any_overlap(hint, hint + plen):
        return hint
    top = min(hi, sys.config.mmap_base)
    for glo, ghi in mm.vmas.gaps(lo, top):
        if ghi - glo >= plen:
            return ghi - plen
    for glo, ghi in mm.vmas.gaps(lo, hi):
        if ghi - glo >= plen:
            return ghi - plen
    return None


class PlainRemove(ref.NoSwap):
    """The VMA tree's ``remove`` as it was: IntervalMap.remove, then the range and objects recorded."""

    def remove(self, start: int, end: int) -> list:
        if start < end:
            self.ranges.append((start, end))
        hits = IntervalMap.remove(self, start, end)
        for _, _, v in hits:
            if v is not None and v.obj is not None:
                self.objs.add(v.obj)
        return hits


def _plainer_tree(mm: Mm) -> None:
    t = mm.vmas
    if type(t) is not PlainRemove and isinstance(t, VmaTree):
        plain = PlainRemove(t.ranges, t.objs)
        plain._cs, plain._ce, plain._cv, plain._heads, plain._n, plain.known_len = \
            t._cs, t._ce, t._cv, t._heads, t._n, t.known_len
        mm.vmas = plain


class PlainerSystem(ref.PlainSystem):
    rules = replaced(ref.PlainSystem.rules, "mmap", expect=plain_expect_mmap)

    def __init__(self, config=None) -> None:
        super().__init__(config)
        for mm in self.procs.values():
            _plainer_tree(mm)

    def expect(self, proc, name, args):
        kept, M._pick = M._pick, plain_pick
        try:
            return super().expect(proc, name, args)
        finally:
            M._pick = kept

    def bind(self, proc, name, result, outcome) -> None:
        super().bind(proc, name, result, outcome)
        for mm in self.procs.values():
            _plainer_tree(mm)


# -- programs ---------------------------------------------------------------------------------------

W = lean_judge.W
TASK = 0x7FFFFFFFF000
LENGTHS = [0, 1, 4096, 4097, 0x3000, 1 << 20, 1 << 40, TASK - 4096, TASK, TASK + 1, (1 << 64) - 1]
PROTS = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_EXEC", "PROT_READ|PROT_WRITE|PROT_EXEC", "0x10"]
MACHINES = [
    {},
    lean_judge.FACTS,
    {"max_map_count": 12},                                        # alone, over the limit
    {"max_map_count": 90, "base_maps": 20},                       # near the limit, with mappings of its own
    {"rlimit_as": 1 << 24, "rlimit_data": 1 << 22},
    {"ram_pages": 64, "swap_pages": 0},                           # the commit charge (overcommit 0)
    {"overcommit_memory": 2, "ram_pages": 256, "overcommit_ratio": 50},
    {"privileged": False, "memlock_soft": 8192, "quiet_ranges": [[W, W + (1 << 30)]]},
]


def _anon_programs(seed: int, n: int, calls: int = 40) -> list[Program]:
    """mmap of anonymous private memory (mostly the common form, sometimes a hint, an offset or
    another flag), unmapped and re-protected, with mlockall(MCL_FUTURE) in force now and then (a
    mapping populated then -- or by MAP_LOCKED, MAP_POPULATE -- is never longer than 1 MiB)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines, live, populated = [], [], False
        for k in range(calls):
            r = rng.random()
            if r < 0.55:
                addr = "NULL" if rng.random() < 0.85 else hex(W + rng.randrange(32) * 4096)
                flags = "MAP_PRIVATE|MAP_ANONYMOUS" + ("" if rng.random() < 0.85 else rng.choice(
                    ["|MAP_FIXED", "|MAP_LOCKED", "|MAP_NORESERVE", "|MAP_POPULATE", "|MAP_32BIT"]))
                length = rng.choice(LENGTHS) if rng.random() < 0.3 else rng.randrange(1, 6) * 4096
                if (populated or "LOCKED" in flags or "POPULATE" in flags) and 1 << 20 < length <= TASK + 1:
                    length = 1 << 20
                offset = 0 if rng.random() < 0.9 else rng.choice([4096, 1])
                lines.append(f"m{k} = mmap({addr}, {length}, {rng.choice(PROTS)}, {flags}, -1, {offset})")
                live.append(f"m{k}")
            elif r < 0.7 and live:
                lines.append(f"munmap({live.pop(rng.randrange(len(live)))}, {rng.randrange(1, 4) * 4096})")
            elif r < 0.8 and live:
                lines.append(f"mprotect({rng.choice(live)}, 4096, {rng.choice(PROTS[:5])})")
            elif r < 0.87:
                lines.append(rng.choice(["mlockall(MCL_FUTURE)", "mlockall(MCL_FUTURE|MCL_ONFAULT)", "munlockall()"]))
                populated = lines[-1] == "mlockall(MCL_FUTURE)" or populated and lines[-1] != "munlockall()"
            elif live:
                lines.append(f"store({rng.choice(live)}, {k})")
        out.append(parse("\n".join(lines) + "\n"))
    return out


def run_both(program: Program, facts: dict, seed: int) -> int:
    """``test_lean_judge.run_both`` with ``PlainerSystem`` as the plain model."""
    return lean_judge.run_both(program, facts, seed, full_every=7, plain_model=PlainerSystem)


# -- the tests ----------------------------------------------------------------------------------------

def test_the_kernel_figures_program_is_judged_alike():
    lines = []
    for i in range(40):
        lines += [f"a{i} = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)",
                  f"mprotect(a{i}, 4096, PROT_READ)", f"munmap(a{i}, 4096)"]
    p = parse("\n".join(lines) + "\n")
    for facts in MACHINES:
        assert run_both(p, facts, 0) == 120


def test_anonymous_private_mappings_are_answered_alike_on_every_machine():
    made = 0
    for m, facts in enumerate(MACHINES):
        made += sum(run_both(p, facts, i) for i, p in enumerate(_anon_programs(m, 12)))
    assert made > 3000


def test_the_earlier_programs_are_judged_alike():
    made = sum(run_both(p, lean_judge.FACTS, i) for i, p in enumerate(lean_judge._map_programs(5, 30)))
    made += sum(run_both(p, {}, i) for i, p in enumerate(lean_judge._codec_programs(13, 60)))
    assert made > 1500


def test_whole_judgements_are_the_same():
    t = ModelTarget()
    for p in _anon_programs(21, 10) + lean_judge._map_programs(9, 10):
        run = t.run(p)
        a, b = judge(p, run, "model", model=System(Config())), judge(p, run, "model", model=PlainerSystem(Config()))
        assert a.checks == b.checks


def test_the_common_mapping_takes_the_short_answer():
    """The answer of its own is what the common form gets (else this file would test nothing new)."""
    s = System(Config())
    asked = []
    kept = M._anon_private
    M._anon_private = lambda *a: asked.append(a) or kept(*a)
    try:
        s.expect("main", "mmap", (0, 4096, 3, M.ANON_PRIVATE, -1, 0))
    finally:
        M._anon_private = kept
    assert len(asked) == 1


TREES = st.lists(st.tuples(st.integers(0, 60), st.integers(1, 6)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(TREES, st.integers(0, 70), st.integers(0, 70), st.integers(0, 12))
def test_fit_below_is_the_first_fit_over_gaps(ranges, lo, hi, size):
    for load in (intervals.LOAD, 2):        # one chunk, and chunks of at most 4 intervals
        kept, intervals.LOAD = intervals.LOAD, load
        try:
            t: IntervalMap = IntervalMap()
            for s, n in ranges:
                t.set(s, s + n, (s, n))
            want = next((ghi - size for glo, ghi in t.gaps(lo, hi) if ghi - glo >= size), None)
            assert t.fit_below(lo, hi, size) == want
        finally:
            intervals.LOAD = kept


OPS = st.lists(st.tuples(st.sampled_from(["set", "remove"]), st.integers(0, 30), st.integers(0, 6),
                         st.sampled_from([None, 1, 2])), max_size=50)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_the_trees_remove_records_what_it_did(ops):
    from memspec.model.os.state import Vma
    for load in (intervals.LOAD, 2):
        kept, intervals.LOAD = intervals.LOAD, load
        try:
            trees = (VmaTree(), PlainRemove())
            for op, start, length, obj in ops:
                seen = []
                for t in trees:
                    if op == "remove":
                        got = t.remove(start, start + length)
                    else:
                        got = t.set(start, start + length, Vma(3, obj is not None, obj))
                    seen.append((got, list(t.items()), len(t), t.known_len, list(t.ranges), sorted(t.objs)))
                assert seen[0] == seen[1]
        finally:
            intervals.LOAD = kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["mmap", "munmap", "mprotect", "close", "read"]), st.lists(
    st.one_of(st.integers(-(1 << 70), 1 << 70), st.sampled_from([-1, 0, (1 << 32) - 1, 1 << 32, (1 << 64) - 1]),
              st.text(max_size=2)), max_size=7)), min_size=1, max_size=6), st.integers(1, 4))
def test_registers_asked_again_are_the_plain_ones(questions, again):
    """The registers kept per call and argument values are what the plain conversion gives, each time."""
    for _ in range(again):
        for name, args in questions:
            got = _registers(name, tuple(args))
            assert got == ref.registers(name, tuple(args))
            assert [type(x) for x in got] == [type(x) for x in ref.registers(name, tuple(args))]
