"""The os judge's lean hot path (issue #20) decides as its plain forms do.

``reference_lean.PlainSystem`` is the reference model with the plain forms: mmap's VMA made afresh,
munmap's and mprotect's rules as they were, mprotect's apply with ``dataclasses.replace``, ``unmap``
and ``pages_in`` without their early exits, mmap's placement worked out on every call, every
invariant in the full recount.  On random os programs (the codec's, the fuzzer's, and programs of
mmap / mprotect / munmap over a few pages, which split, join and re-protect VMAs) the two models are
asked the same questions and adopt the same outcomes: every answer (clause, default, description,
the verdict on a set of outcomes), the state after every call (VMAs, page tables, TLB, pages,
footprint) and the invariants' findings are the same.  The VMA tree's in-place replacement is held
to its remove-and-insert, bookkeeping and all.
"""

from __future__ import annotations

from typing import Any

import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.fuzz.codec_os import decode
from memspec.fuzz.layers import random_programs
from memspec.model import intervals
from memspec.model import invariants as inv
from memspec.model.intervals import merged
from memspec.model.mm import Config, System, _registers
from memspec.model.os.footprint import VmaTree
from memspec.model.os.state import Vma
from memspec.model.pages import Page
from memspec.program import Program, bind_result, eval_args, parse
from memspec.records import Outcome
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

_spec = importlib.util.spec_from_file_location("_reference_lean", Path(__file__).resolve().parent / "reference_lean.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)  # type: ignore[union-attr]

W = 0x100000000000      # a window of the model's own (no quiet range: any address is the model's)
FACTS = {"base_maps": 230, "quiet_ranges": [[0x100000000000, 0x104000000000]]}    # as the linux target declares


def _page(p) -> tuple:
    return (p.kind, p.pfn, p.mapcount, p.refs, p.ptes, getattr(p, "obj", None), getattr(p, "pgoff", None)) \
        if isinstance(p, Page) else ("zero",)


def snapshot(s: System) -> dict:
    """Everything of the state the two forms could leave differently."""
    out: dict = {"objects": sorted(s.objects), "used": s.frames.used(), "stats": dict(s.stats),
                 "touched_objs": sorted(s.touched_objs), "frames_touched": sorted((_page(p) for p in s.frames.touched), key=repr),
                 "lru": [_page(p) for p in s.lru], "killed": list(s.killed)}
    for name, mm in sorted(s.procs.items()):
        out[name] = (
            list(mm.vmas.items()), len(mm.vmas),
            sorted(((a, t.write, t.read, t.exec, _page(t.page)) for a, t in mm.pte.items()), key=repr),
            sorted(((a, t.write, t.read, t.exec, _page(t.page)) for a, t in mm.tlb.items()), key=repr),
            sorted(((a, _page(p)) for a, p in mm.anon.items()), key=repr),
            sorted(mm.maybe), sorted(mm.flushed), sorted(mm.huge), sorted(mm.thp_maybe), sorted(mm.thp_split),
            sorted(mm.guard), sorted(mm.last_ref.items()), mm.minflt, mm.minflt_maybe, mm.majflt,
            sorted(mm.touched), sorted((_page(p) for p in mm.touched_pages), key=repr), merged(mm.touched_ranges),
            sorted(mm.touched_objs))
    return out


def _candidates(a, b) -> list[Outcome]:
    """Outcomes to ask both answers about: each default, a success and the errnos these calls give,
    and addresses around the default (free or not, aligned or not)."""
    outs = [a.default, b.default, Outcome(value=0), Outcome(value=-1, errno="ENOMEM"),
            Outcome(value=-1, errno="EINVAL"), Outcome(value=-1, errno="EPERM"), Outcome(value=-1, errno="EACCES"),
            Outcome(signal="SIGSEGV")]
    v = a.default.value
    if isinstance(v, int) and v > 0x10000:
        outs += [Outcome(value=v + d) for d in (-0x2000, -0x1000, 1, 0x1000, 0x40000000)]
    return outs


def _same_answer(a, b, where: str) -> None:
    assert (a.clause, a.default, a.describe, a.unknown, a.impl_defined, a.covers, a.allowed) == \
        (b.clause, b.default, b.describe, b.unknown, b.impl_defined, b.covers, b.allowed), where
    for o in _candidates(a, b):
        assert a.judge(o) == b.judge(o), (where, o)
        if a.judge(o) is not None:
            assert a.blame(o) == b.blame(o), (where, o)


def run_both(program: Program, facts: dict, seed: int, full_every: int = 5, plain_model: type | None = None,
             other: float = 0.25, more: Any = None, state: Any = None) -> int:
    """Step ``program`` through the lean model and the plain one (``plain_model``, by default
    ``reference_lean.PlainSystem``), adopting the same outcome (the default, or with odds ``other``
    another the answer allows, among its candidates and ``more(call name)``); compare after every
    call (the states as ``state`` gives them, by default ``snapshot``).  The calls made."""
    rng = random.Random(seed)
    state = state or snapshot
    lean, plain = System(Config.from_facts(facts)), (plain_model or ref.PlainSystem)(Config.from_facts(facts))
    env: dict[str, int] = {}
    made = 0
    for i, c in enumerate(program.calls):
        try:
            args = eval_args(c, env)
        except KeyError:
            break
        proc = c.proc or "main"
        if proc not in lean.procs:
            break
        where = f"call {i}: {c.name}{args}"
        ea, eb = lean.expect(proc, c.name, args), plain.expect(proc, c.name, args)
        _same_answer(ea, eb, where)
        o = ea.default
        if rng.random() < other:
            extra = more(c.name) if more is not None else []
            others = [x for x in _candidates(ea, eb) + extra if ea.judge(x) is None and x != o]
            if others:
                o = rng.choice(others)
        lean.apply(proc, c.name, args, o)
        plain.apply(proc, c.name, args, o)
        lean.bind(proc, c.name, c.result, o)
        plain.bind(proc, c.name, c.result, o)
        if c.result and o.value is not None and c.name != "fork":
            bind_result(env, c, o.value)
        assert state(lean) == state(plain), where
        full = i % full_every == full_every - 1
        assert lean.invariants(full=full) == plain.invariants(full=full), where
        made += 1
    assert lean.invariants() == plain.invariants()
    return made


def _map_programs(seed: int, n: int, calls: int = 40) -> list[Program]:
    """mmap / mprotect / munmap over a window of 16 pages: hints, MAP_FIXED, partial ranges, holes."""
    rng = random.Random(seed)
    prots = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_EXEC", "PROT_READ|PROT_EXEC"]
    out = []
    for _ in range(n):
        lines = []
        for k in range(calls):
            at, pages = W + rng.randrange(16) * 4096, rng.randrange(1, 5)
            r = rng.random()
            if r < 0.3:
                hint = rng.choice(["NULL", hex(at)])
                fixed = "|MAP_FIXED" if hint != "NULL" and rng.random() < 0.5 else ""
                share = rng.choice(["MAP_PRIVATE", "MAP_SHARED"])
                lines.append(f"m{k} = mmap({hint}, {pages * 4096}, {rng.choice(prots)}, {share}|MAP_ANONYMOUS{fixed}, -1, 0)")
            elif r < 0.65:
                lines.append(f"mprotect({hex(at + rng.choice([0, 0, 0, 1]))}, {pages * 4096 - rng.choice([0, 1])}, "
                             f"{rng.choice(prots)})")
            elif r < 0.85:
                lines.append(f"munmap({hex(at)}, {pages * 4096 - rng.choice([0, 0, 1])})")
            else:
                lines.append(f"store({hex(at)}, {k})" if rng.random() < 0.6 else f"l{k} = load({hex(at)})")
        out.append(parse("\n".join(lines) + "\n"))
    return out


def _codec_programs(seed: int, n: int) -> list[Program]:
    rng = random.Random(seed)
    return [decode(bytes(rng.randrange(256) for _ in range(rng.randrange(50, 600)))) for _ in range(n)]


def test_the_kernel_figures_program_is_judged_alike():
    """fig_kernel's program (rounds of mmap, mprotect, munmap of one page) with the linux target's facts."""
    lines = []
    for i in range(40):
        lines += [f"a{i} = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)",
                  f"mprotect(a{i}, 4096, PROT_READ)", f"munmap(a{i}, 4096)"]
    assert run_both(parse("\n".join(lines) + "\n"), FACTS, 0) == 120


@pytest.mark.parametrize("facts", [{}, FACTS], ids=["alone", "linux-facts"])
def test_map_programs_are_judged_alike(facts):
    made = sum(run_both(p, facts, i) for i, p in enumerate(_map_programs(1, 60)))
    assert made > 1500


def test_codec_programs_are_judged_alike():
    made = sum(run_both(p, {}, i) for i, p in enumerate(_codec_programs(11, 150)))
    assert made > 2000


def test_fuzzer_programs_are_judged_alike():
    made = sum(run_both(p, FACTS, i) for i, (_, p) in enumerate(random_programs("os", 150, 4, None)))
    assert made > 1000


def test_whole_judgements_are_the_same():
    """The judge over the model target's runs, with each model as the judge's: the same checks."""
    t = ModelTarget()
    for p in _map_programs(7, 15) + _codec_programs(8, 25):
        run = t.run(p)
        a, b = judge(p, run, "model", model=System(Config())), judge(p, run, "model", model=ref.PlainSystem(Config()))
        assert a.checks == b.checks


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(System.rules)), st.lists(st.one_of(
    st.integers(-(1 << 70), 1 << 70), st.sampled_from([-1, 0, (1 << 32) - 1, 1 << 32, (1 << 64) - 1, 1 << 64]),
    st.text(max_size=2)), max_size=8))
def test_arguments_reach_the_rules_as_registers_as_before(name, args):
    """The registers a rule gets (unsigned longs and descriptors masked), copied only when one changes."""
    assert _registers(name, tuple(args)) == ref.registers(name, tuple(args))


# -- the VMA tree's in-place replacement ----------------------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from(["set", "same", "remove"]), st.integers(0, 30), st.integers(1, 6),
                         st.sampled_from([None, 1, 2])), max_size=50)


def _apply(tree: VmaTree, ops) -> list:
    """Run ``ops`` (``same``: set an interval the tree holds, exactly, to another value); after each,
    the tree and what it recorded (then forgotten, as the invariants' check forgets it)."""
    seen = []
    for op, start, length, obj in ops:
        v = Vma(3, obj is not None, obj)
        if op == "remove":
            tree.remove(start, start + length)
        else:
            if op == "same":
                items = list(tree.items())
                if items:
                    start, end, _ = items[start % len(items)]
                    length = end - start
            tree.set(start, start + length, v)
        seen.append((list(tree.items()), tree.known_len, merged(tree.ranges), sorted(tree.objs)))
        tree.ranges.clear()
        tree.objs.clear()
    return seen


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_setting_a_vma_in_place_is_remove_and_insert(ops):
    for load in (intervals.LOAD, 2):       # one chunk, and chunks of at most 4 intervals
        kept, intervals.LOAD = intervals.LOAD, load
        try:
            assert _apply(VmaTree(), ops) == _apply(ref.NoSwap(), ops)
        finally:
            intervals.LOAD = kept


def test_the_laws_left_out_of_a_recount_find_nothing_without_pages():
    """The full recount of a state without pages, PTEs, TLB entries, huge mappings or objects leaves
    out the laws that read only those: after every call of random programs that leave such a state,
    each of them, run, finds nothing; and a single entry of any of those tables brings them back."""
    assert inv._OF_PAGES == {inv.private_pages_mapped, inv.mapcounts_match_mappers, inv.cow_pages_read_only,
                             inv.isolation, inv.page_table_agrees_with_vmas, inv.no_stale_tlb}
    bare = 0
    for p in _map_programs(3, 20):
        s, env = System(Config()), {}
        for c in p.calls:
            args = eval_args(c, env)
            o = s.expect("main", c.name, args).default
            s.apply("main", c.name, args, o)
            if c.result and o.value is not None:
                bind_result(env, c, o.value)
            if not inv._holds_pages(s):
                bare += 1
                assert all(f(s, None) == [] for f in inv._OF_PAGES)
    assert bare > 100
    for fill in ("pte", "anon", "tlb", "huge", "objects"):
        s = System(Config())
        mm = s.procs["main"]
        if fill == "huge":
            mm.huge.add(W)
        elif fill == "objects":
            s.new_object("anon-shared", 4096)
        else:
            getattr(mm, fill)[W] = Page("anon", pfn=1) if fill == "anon" else _pte()
        assert inv._holds_pages(s), fill


def _pte():
    from memspec.model.os.state import Pte
    return Pte(Page("anon", pfn=1), False)


@pytest.mark.parametrize("corrupt", ["clean", "unaligned", "overlap", "freed-object", "frames", "locked"])
def test_the_recount_of_a_state_without_pages_finds_what_every_law_finds(corrupt, monkeypatch):
    """A state of VMAs alone, broken in each way a law left in its recount can see (and not at all):
    the one-pass recount finds what all ten laws find, in the same order."""
    s = System(Config())
    mm = s.procs["main"]
    for a in (W, W + 0x3000):
        args = (a, 0x2000, 3, 0x32, -1, 0)          # MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED
        s.apply("main", "mmap", args, s.expect("main", "mmap", args).default)
    if corrupt == "unaligned":
        mm.vmas.set(W + 0x10000, W + 0x10800, Vma(3, False))
    elif corrupt == "overlap":      # behind the tree's methods: [W + 0x1000, W + 0x2800) over [W, W + 0x2000)
        mm.vmas._cs[0].insert(1, W + 0x1000)
        mm.vmas._ce[0].insert(1, W + 0x2800)
        mm.vmas._cv[0].insert(1, Vma(3, False))
    elif corrupt == "freed-object":
        mm.vmas.set(W + 0x10000, W + 0x11000, Vma(3, True, 99))
    elif corrupt == "frames":
        s.frames.ram_pages = -1
    elif corrupt == "locked":
        s.locked_evictions.append([f"main@{W:#x}"])
    assert not inv._holds_pages(s)
    lean = inv.check_all(s)
    monkeypatch.setattr(inv, "_OF_PAGES", frozenset())     # every law, one by one
    assert lean == inv.check_all(s)
    assert (lean == []) == (corrupt == "clean"), lean
