"""A harness that judges others must itself be judged.

1. Clause mutants: for every os clause the suite exercises, a target that gets
   exactly that clause wrong (and nothing else) must fail the check, naming it.
2. Invariants: each of the model's invariants fires on a deliberately broken model.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from memspec.fuzz.layers import random_programs
from memspec.specs.directed import suite_programs
from memspec.model.expect import Expect
from memspec.model.mm import Config, System, Vma, page_align
from memspec.model.os import mappings
from memspec.model.rules import replaced
from memspec.program import Program, parse
from memspec.records import Outcome
from memspec.specs.judge import judge
from memspec.targets.model import ModelSession, ModelTarget


def wrong(o: Outcome) -> Outcome:
    """An outcome no clause allows where ``o`` is the right one."""
    if o.signal:
        return Outcome(value=0)
    if o.errno:
        return Outcome(value=-1, errno="EFAULT" if o.errno != "EFAULT" else "EINVAL")
    if o.value is None:
        return Outcome(signal="SIGSEGV")
    return Outcome(value=o.value ^ 1)


class MutantSystem(System):
    """The reference model, except that every outcome decided by one clause is wrong."""

    def __init__(self, clause: str):
        super().__init__(Config())
        self.mutant_clause = clause

    def expect(self, proc, name, args) -> Expect:
        e = super().expect(proc, name, args)
        if e.clause == self.mutant_clause and not e.unknown:
            for bad in (wrong(e.default), Outcome(value=-1, errno="EFAULT"), Outcome(signal="SIGBUS")):
                if e.judge(bad) is not None:     # an outcome the clause does not allow
                    return replace(e, default=bad)
        return e


class MutantTarget(ModelTarget):
    def __init__(self, clause: str):
        super().__init__()
        self.clause = clause
        self.name = f"mutant[{clause}]"

    def session(self, layer: str = "os") -> ModelSession:
        s = ModelSession(layer)
        s.system = MutantSystem(self.clause)
        return s


def os_programs() -> list[Program]:
    progs = [p for _, p in suite_programs("os")]
    progs += [p for _, p in random_programs("os", 60, 7, None)]
    return progs


def exercised_call_clauses() -> set[str]:
    t = ModelTarget()
    seen: set[str] = set()
    for p in os_programs():
        j = judge(p, t.run(p), "model")
        assert j.failure is None, (j.failure, p)
        seen |= {c.clause for c in j.checks if c.at == "call" and c.verdict.value != "unknown"}
    return seen


def test_the_reference_model_passes_its_own_suite() -> None:
    assert len(exercised_call_clauses()) >= 30


# Clauses the programs reach only as one side of a choice the model target answers the other way
# (map_pages stops at the limit, so the map-count choices of the following mmap/munmap are
# always decided by the ENOMEM branch): a mutant of their default is never played.  Their
# violations are caught by tests/os/test_map_pages.py's broken limits instead.
ONLY_AS_A_CHOICE = {"linux.mmap.enomem-max-map-count", "linux.munmap.enomem-max-map-count"}


def test_every_exercised_clause_catches_a_target_that_gets_it_wrong() -> None:
    clauses = sorted(exercised_call_clauses() - ONLY_AS_A_CHOICE)
    missed = []
    programs = os_programs()
    for cid in clauses:
        t = MutantTarget(cid)
        caught = False
        for p in programs:
            f = judge(p, t.run(p), t.name).failure
            if f is not None:
                assert f.clause == cid or f.at == "checkpoint", (cid, f)
                caught = caught or f.clause == cid
            if caught:
                break
        if not caught:
            missed.append(cid)
    assert not missed, f"clauses whose violation went unnoticed: {missed}"


def test_a_wrong_memory_map_is_caught_at_the_checkpoint() -> None:
    class MapLiar(ModelSession):
        def observe(self):
            obs = super().observe()
            maps = tuple((p, tuple(replace(m, perms="rwxp") for m in ms)) for p, ms in obs.maps)
            return replace(obs, maps=maps)

    class T(ModelTarget):
        def session(self, layer="os"):
            return MapLiar(layer)

    p = parse("a = mmap(0x100000000000, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nload(a)")
    f = judge(p, T().run(p), "liar").failure
    assert f is not None and f.at == "checkpoint"
    assert f.clause == "linux.mmap.hint-used-when-free" or f.clause.startswith("posix.mmap")
    assert "r--p" in f.expected and "rwxp" in f.observed


# --- invariants -----------------------------------------------------------------

def _unaligned_vma(sys, proc, mm, o, addr, length, prot, flags, fd, offset):
    mappings.apply_mmap(sys, proc, mm, o, addr, length, prot, flags, fd, offset)
    if o.ok and length % 4096:
        s, e, v = mm.vmas.find(o.value)
        mm.vmas.set(s, s + length, v)     # forgets to round the end up to a page


class UnalignedVma(System):
    rules = replaced(System.rules, "mmap", apply=_unaligned_vma)


def _overlapping_vmas(sys, proc, mm, o, addr, length, prot, flags, fd, offset):
    if o.ok and mm.vmas.find(o.value) is not None:
        # inserts without removing what was there (a broken VMA tree)
        mm.vmas._starts.insert(0, o.value)
        mm.vmas._ends.insert(0, o.value + page_align(length))
        mm.vmas._values.insert(0, Vma(prot, False))
        return
    mappings.apply_mmap(sys, proc, mm, o, addr, length, prot, flags, fd, offset)


class OverlappingVmas(System):
    rules = replaced(System.rules, "mmap", apply=_overlapping_vmas)


class LeakySharedObjects(System):
    def collect(self, objs):
        pass                                  # never frees a shared object


class StalePrivateContents(System):
    def unmap(self, mm, start, end):
        gone = {v.obj for _, _, v in mm.vmas.overlapping(start, end) if v.obj is not None}
        mm.vmas.remove(start, end)            # forgets mm.drop_private
        self.collect(gone)


W = "0x100000000000"
INVARIANT_CASES = [
    (UnalignedVma, f"a = mmap({W}, 100, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)", "memspec.inv.vma-page-aligned"),
    (OverlappingVmas, f"a = mmap({W}, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                      f"b = mmap({W}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)",
     "memspec.inv.vmas-disjoint"),
    (LeakySharedObjects, f"s = mmap({W}, 0x1000, PROT_READ, MAP_SHARED|MAP_ANONYMOUS, -1, 0)\nmunmap(s, 0x1000)",
     "memspec.inv.shared-object-exists"),
    (StalePrivateContents, f"a = mmap({W}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                           "store(a, 1)\nmunmap(a, 0x1000)", "memspec.inv.private-pages-mapped"),
]


@pytest.mark.parametrize("broken, text, clause", INVARIANT_CASES, ids=[c[2] for c in INVARIANT_CASES])
def test_each_invariant_catches_a_broken_model(broken, text, clause) -> None:
    p = parse(text)
    run = ModelTarget().run(p)
    assert judge(p, run, "model").failure is None
    f = judge(p, run, "model", model=broken(Config())).failure
    assert f is not None and f.at == "invariant" and f.clause == clause, f


def test_invariants_off_means_not_checked() -> None:
    p = parse(INVARIANT_CASES[0][1])
    run = ModelTarget().run(p)
    assert judge(p, run, "model", invariants=False, model=UnalignedVma(Config())).failure is None


