"""The os judge's one-pass recount and its LRU membership decide as their plain forms do.

* ``invariants._clean`` (every law of ``CHECKS`` in one pass over the state) and ``_quiet`` (a
  small state of VMAs alone, after a step) stand for the law-by-law recount only where it finds
  nothing: after every call of random programs (the fuzzer's, the codec's, mmap / mprotect /
  munmap rounds) the one-pass test says "clean" exactly when every law finds nothing; on those
  states broken in each way a law can see, never "clean" where a law finds something, and the
  full check and the step's check give the findings of the laws run one by one.
* ``OsState.lru_add``/``lru_del`` find a page on the LRU through a set of ids: the LRU after every
  call is the one the list scan gave (``PlainLru``), page for page and in order.
* ``mappings``' mprotect asks ``state.reprotected``, found by the VMA's identity: the VMA
  ``vma_with`` gives.
"""

from __future__ import annotations

import copy
import random

import pytest

from memspec.fuzz.codec_os import decode
from memspec.fuzz.layers import random_programs
from memspec.model import invariants as inv
from memspec.model.mm import Config, System
from memspec.model.os.state import Pte, Vma, new_vma, reprotected, vma_with
from memspec.model.pages import ZERO_PAGE, MemObject, Page
from memspec.program import Program, bind_result, eval_args, parse
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

W = 0x100000000000
FACTS = {"base_maps": 230, "quiet_ranges": [[0x100000000000, 0x104000000000]]}


class PlainLru(System):
    """The LRU's membership found by scanning the list, as before the set of ids."""

    def lru_add(self, page: Page) -> None:
        page.lru_seq = self.next_seq()
        page.referenced = True
        if page not in self.lru:
            self.lru.append(page)

    def lru_del(self, page: Page) -> None:
        try:
            self.lru.remove(page)
        except ValueError:
            pass


def _map_programs(seed: int, n: int, calls: int = 40) -> list[Program]:
    """mmap / mprotect / munmap / store / load / mlock / fork over a window of 16 pages."""
    rng = random.Random(seed)
    prots = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_EXEC"]
    out = []
    for _ in range(n):
        lines = []
        for k in range(calls):
            at, pages = W + rng.randrange(16) * 4096, rng.choice([1, 2, 3, 4, 24])
            r = rng.random()
            if r < 0.3:
                hint = rng.choice(["NULL", hex(at)])
                fixed = "|MAP_FIXED" if hint != "NULL" and rng.random() < 0.5 else ""
                fixed += "|MAP_POPULATE" if rng.random() < 0.4 else ""
                share = rng.choice(["MAP_PRIVATE", "MAP_SHARED"])
                lines.append(f"m{k} = mmap({hint}, {pages * 4096}, {rng.choice(prots)}, {share}|MAP_ANONYMOUS{fixed}, -1, 0)")
            elif r < 0.5:
                lines.append(f"mprotect({hex(at)}, {pages * 4096}, {rng.choice(prots)})")
            elif r < 0.6:
                lines.append(f"munmap({hex(at)}, {pages * 4096})")
            elif r < 0.65:
                lines.append(f"mlock({hex(at)}, {pages * 4096})")
            else:
                lines.append(f"store({hex(at)}, {k})" if rng.random() < 0.6 else f"l{k} = load({hex(at)})")
        out.append(parse("\n".join(lines) + "\n"))
    return out


def _programs() -> list[tuple[dict, Program]]:
    rng = random.Random(5)
    codec = [decode(bytes(rng.randrange(256) for _ in range(rng.randrange(50, 600)))) for _ in range(60)]
    return ([(FACTS, p) for _, p in random_programs("os", 80, 3, None)] + [({}, p) for p in codec]
            + [({}, p) for p in _map_programs(2, 25)])


def _states(model: type = System):
    """(model, where) after every call of the programs, each adopting the model's own default."""
    for k, (facts, p) in enumerate(_programs()):
        s, env = model(Config.from_facts(facts)), {}
        for i, c in enumerate(p.calls):
            try:
                args = eval_args(c, env)
            except KeyError:
                break
            proc = c.proc or "main"
            if proc not in s.procs:
                break
            o = s.expect(proc, c.name, args).default
            s.apply(proc, c.name, args, o)
            s.bind(proc, c.name, c.result, o)
            if c.result and o.value is not None and c.name != "fork":
                bind_result(env, c, o.value)
            yield s, f"program {k}, call {i}: {c.name}{args}"


def _laws(s: System) -> list[tuple[str, str]]:
    """Every law, one by one, in CHECKS' order (the findings of the first that finds any)."""
    for f in inv.CHECKS:
        bad = f(s, None)
        if bad:
            return bad
    return []


def test_the_one_pass_recount_is_clean_exactly_where_every_law_is():
    seen = {"clean": 0, "pages": 0, "objects": 0, "forks": 0}
    for s, where in _states():
        assert inv._clean(s) == (_laws(s) == []), where
        seen["clean"] += inv._clean(s)
        seen["pages"] += inv._holds_pages(s)
        seen["objects"] += bool(s.objects)
        seen["forks"] += len(s.procs) > 1
    assert min(seen.values()) > 100, seen


# -- broken states -------------------------------------------------------------------------------

def _pages(s: System) -> list[Page]:
    return inv._all_pages(s)


def _corrupt(s: System, rng: random.Random) -> str:
    """Break the state in one of the ways a law can see (behind the tables' bookkeeping, as a
    broken model would); the name of the way, or '' when the state has nothing to break that way."""
    name, mm = rng.choice(sorted(s.procs.items()))
    pages, ptes, vmas = _pages(s), sorted(mm.pte.items()), list(mm.vmas.items())
    way = rng.choice(["mapcount", "pfn-none", "pfn-twice", "owner", "pte-write", "zero-write", "anon-gone",
                      "pte-outside", "tlb-stale", "tlb-write", "huge", "vma-freed-obj", "object-orphan",
                      "locked", "frames", "unaligned", "vma-shared", "kind", "origin", "tlb-zero-write"])
    if way == "mapcount" and pages:
        rng.choice(pages).mapcount += rng.choice([1, -1])
    elif way == "pfn-none" and pages:
        rng.choice(pages).pfn = None
    elif way == "pfn-twice" and len(pages) > 1:
        a, b = rng.sample(pages, 2)
        a.pfn = b.pfn
    elif way == "owner" and pages:
        p = rng.choice(pages)
        if p.pfn is not None:
            s.frames.owner[p.pfn] = Page("anon")
    elif way == "pte-write" and ptes:
        ptes[rng.randrange(len(ptes))][1].write = True
    elif way == "zero-write" and ptes:
        dict.__setitem__(mm.pte, ptes[0][0], Pte(ZERO_PAGE, True))
    elif way == "anon-gone" and mm.anon:
        dict.__delitem__(mm.anon, rng.choice(sorted(mm.anon)))
    elif way == "pte-outside":
        dict.__setitem__(mm.pte, 0x1000, Pte(ZERO_PAGE, False))
    elif way == "tlb-stale" and ptes:
        a, t = ptes[rng.randrange(len(ptes))]
        dict.__setitem__(mm.tlb, a, Pte(Page("anon", pfn=None), t.write))
    elif way == "tlb-write" and ptes:
        a, t = ptes[rng.randrange(len(ptes))]
        dict.__setitem__(mm.tlb, a, Pte(t.page, True))
    elif way == "tlb-zero-write" and ptes:
        a, _ = ptes[rng.randrange(len(ptes))]
        dict.__setitem__(mm.pte, a, Pte(ZERO_PAGE, True))
        dict.__setitem__(mm.tlb, a, Pte(ZERO_PAGE, True))
    elif way == "huge" and vmas:
        mm.huge.add(vmas[0][0] & ~((2 << 20) - 1))
    elif way == "vma-freed-obj":
        mm.vmas.set(W + 0x8000000, W + 0x8001000, Vma(3, True, 9999))
    elif way == "object-orphan":
        s.objects[9998] = MemObject(9998, "anon-shared", 4096)
    elif way == "locked":
        s.locked_evictions.append([f"{name}@{W:#x}"])
    elif way == "frames":
        s.frames.ram_pages = max(0, s.frames.used() - 1)
    elif way == "unaligned":
        mm.vmas.set(W + 0x9000000, W + 0x9000800, Vma(3, False))
    elif way == "vma-shared" and mm.anon:
        a = rng.choice(sorted(mm.anon))
        hit = mm.vmas.find(a)
        if hit is None:
            return ""
        mm.vmas.set(hit[0], hit[1], vma_with(hit[2], shared=True))
    elif way == "kind" and pages:
        rng.choice(pages).kind = rng.choice(["anon", "shmem"])
    elif way == "origin" and vmas:
        s0, e0, v0 = rng.choice(vmas)
        mm.vmas.set(s0, e0, vma_with(v0, origin=v0.origin + 4096))
    else:
        return ""
    return way


def test_a_broken_state_is_never_clean_where_a_law_finds_something(monkeypatch):
    """Every reached state broken once or twice: the one-pass test is clean only where every law is;
    the full check and the step's check find what the laws one by one find."""
    rng = random.Random(9)
    found: dict[str, int] = {}
    for live, where in _states():
        if rng.random() > 0.5 or not live.procs:
            continue
        s = copy.deepcopy(live, {id(ZERO_PAGE): ZERO_PAGE})     # (the program goes on from the state as it was)
        ways = [w for w in (_corrupt(s, rng) for _ in range(rng.choice([1, 1, 2]))) if w]
        laws = _laws(s)
        assert not (inv._clean(s) and laws), (where, ways, laws)
        if laws:
            for w in ways:
                found[w] = found.get(w, 0) + 1
        lean = (inv.check_all(s), inv.check_step(s))
        with monkeypatch.context() as m:
            m.setattr(inv, "_OF_PAGES", frozenset())        # the plain forms: every law, one by one
            assert lean == (inv.check_all(s), inv.check_step(s)), (where, ways)
        assert lean[0] == laws, (where, ways)
    assert len(found) >= 18 and min(found.values()) >= 5, found


@pytest.mark.parametrize("bad", ["unaligned", "overlap", "object", "frames", "locked", "page"])
def test_the_step_check_of_a_small_state_of_vmas_alone_finds_what_every_law_finds(bad, monkeypatch):
    monkeypatch.setattr(inv, "SMALL", 48)          # (as the judge has it unless MEMSPEC_INVARIANT_RECOUNT=0)
    s = System(Config())
    mm = s.procs["main"]
    for a in (W, W + 0x3000):
        args = (a, 0x2000, 3, 0x32, -1, 0)          # MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED
        s.apply("main", "mmap", args, s.expect("main", "mmap", args).default)
    s.invariants()
    assert inv._quiet(s)
    if bad == "unaligned":
        mm.vmas.set(W + 0x10000, W + 0x10800, Vma(3, False))
    elif bad == "overlap":
        mm.vmas._cs[0].insert(1, W + 0x1000)
        mm.vmas._ce[0].insert(1, W + 0x2800)
        mm.vmas._cv[0].insert(1, Vma(3, False))
    elif bad == "object":
        mm.vmas.set(W + 0x10000, W + 0x11000, Vma(3, True, 99))
    elif bad == "frames":
        s.frames.ram_pages = -1
    elif bad == "locked":
        s.locked_evictions.append([f"main@{W:#x}"])
    else:
        dict.__setitem__(mm.pte, W, Pte(ZERO_PAGE, True))
    assert not inv._quiet(s)
    laws = _laws(s)
    assert laws
    with monkeypatch.context() as m:
        m.setattr(inv, "_OF_PAGES", frozenset())
        plain = inv.check_step(s)
    assert inv.check_step(s) == plain


def _laws_over(s: System, fp) -> list[tuple[str, str]]:
    for f in inv.CHECKS:
        bad = f(s, fp)
        if bad:
            return bad
    return []


def test_the_one_pass_step_check_is_clean_exactly_where_every_law_is_over_the_footprint():
    """After every call (each state's footprint that call's): the one-pass check of the footprint
    is clean exactly where every law's footprint form is; broken as above after the footprint is
    taken, never clean where a law finds something; and the step's check (footprint forms, no small
    states recounted) gives the laws' findings."""
    rng = random.Random(4)
    seen = {"clean": 0, "broken": 0, "addrs": 0}
    for live, where in _states():
        if not live.procs:
            continue
        s = copy.deepcopy(live, {id(ZERO_PAGE): ZERO_PAGE})
        inv.reset(live)
        fp = inv.footprint(s)
        assert inv._clean_step(s, fp) == (_laws_over(s, fp) == []), where
        seen["clean"] += inv._clean_step(s, fp)
        seen["addrs"] += sum(map(len, fp.addrs.values())) > 8
        if rng.random() < 0.5:
            ways = [w for w in (_corrupt(s, rng) for _ in range(rng.choice([1, 1, 2]))) if w]
            laws = _laws_over(s, fp)
            assert not (inv._clean_step(s, fp) and laws), (where, ways, laws)
            seen["broken"] += bool(laws)
        kept = inv.SMALL
        inv.SMALL = 0
        try:
            other = copy.deepcopy(s, {id(ZERO_PAGE): ZERO_PAGE})
            for t in (s, other):        # the processes checked last: the step's check is a footprint one
                t.checked_procs = {n: id(m) for n, m in t.procs.items()}
            lean = inv.check_step(other)
            kept_pages, inv._OF_PAGES = inv._OF_PAGES, frozenset()
            try:
                # (the two copies' pages hash apart: a law may name the same breakage from another page)
                plain = inv.check_step(s)
                assert bool(lean) == bool(plain) and {c for c, _ in lean} == {c for c, _ in plain}, where
            finally:
                inv._OF_PAGES = kept_pages
        finally:
            inv.SMALL = kept
    assert seen["clean"] > 3000 and seen["broken"] > 200 and seen["addrs"] > 30, seen


# -- the LRU ---------------------------------------------------------------------------------------

def _lru(s: System) -> list[tuple]:
    return [(p.kind, p.pfn, p.mapcount, p.lru_seq, p.referenced) for p in s.lru]


def test_the_lru_is_the_list_scans():
    plain = _states(PlainLru)
    n = 0
    for (lean, where), (old, _) in zip(_states(), plain):
        assert _lru(lean) == _lru(old), where
        assert lean.on_lru == {id(p) for p in lean.lru} and len(lean.lru) == len(lean.on_lru), where
        assert lean.frames.used() == old.frames.used() and lean.stats == old.stats, where
        n += bool(lean.lru)
    assert n > 300


def test_whole_judgements_are_the_same():
    """The judge over the model target's runs, with the lean model and the plain ones as the judge's."""
    t = ModelTarget()
    for facts, p in _programs()[::3]:
        run = t.run(p)
        a = judge(p, run, "model", model=System(Config()))
        b = judge(p, run, "model", model=PlainLru(Config()))
        assert a.checks == b.checks and a.context == b.context


def test_mprotect_asks_the_vma_vma_with_gives():
    rng = random.Random(1)
    vmas = [new_vma(p, sh, None, 0, False, "posix.mmap.maps-range", False, False, True, False, False)
            for p in range(8) for sh in (False, True)]
    for _ in range(2000):
        v = rng.choice(vmas)
        prot, xo, clause = rng.randrange(8), rng.random() < 0.2, rng.choice(["posix.mprotect.sets-prot",
                                                                              "linux.mprotect.enomem-hole-partial"])
        w = reprotected(v, prot, xo, clause)
        assert w == vma_with(v, prot=prot, exec_only=xo, clause=clause)
        assert reprotected(v, prot, xo, clause) is w
        vmas.append(w)


def test_arguments_are_evaluated_as_each_argument_alone():
    """``eval_args`` (its common kinds of argument inline) gives what ``eval_arg`` gives each argument."""
    from memspec.program import eval_arg
    n = 0
    for facts, p in _programs():
        env: dict[str, int] = {}
        for k, c in enumerate(p.calls):
            try:
                want = tuple(eval_arg(a, env) for a in c.args)
            except KeyError:
                with pytest.raises(KeyError):
                    eval_args(c, env)
                continue
            assert eval_args(c, env) == want and [type(x) for x in eval_args(c, env)] == [type(x) for x in want]
            if c.result:
                bind_result(env, c, 0x100000000000 + k * 4096)
            n += any(type(a).__name__ == "Ref" for a in c.args)
    assert n > 200
