"""The os judge's one-call forms (issue #20) decide as expect, judge and apply do, one by one.

``specs.step.os_judged`` answers a call, judges the outcome and adopts it if allowed in one call; for
mmap, munmap and mprotect's common forms one function each does all three (``specs.step.STEPS``: the range's
VMAs found once, the passing outcome recognised without the answer's judge, the VMA tree changed
without unmap's walk of a process without per-page state).  On random programs -- mmap / mprotect /
munmap over a few pages with stores, seals, shared and file mappings, huge pages, forks, locks,
machines near their limits -- ``os_judged`` on the model gives the answer and the verdict the plain model
(``test_lean_mmap.PlainerSystem``: every lean form undone) gives through expect and judge, for the
default outcome, another the answer allows, and one it refuses; and the same state, footprint and
invariant findings after every call.  Whole judgements, of runs as the model made them and of runs
with outcomes changed, are the same.  Each fallback of the one-call forms is needed: the forms
without one (a mutant of its source) are caught by the same comparison.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from memspec.fuzz.layers import random_programs
from memspec.model.mm import Config, System
from memspec.model.os import mappings as M
from memspec.model.rules import replaced
from memspec.program import Program, bind_result, eval_args, parse
from memspec.records import Outcome, RunResult
from memspec.specs import step as S
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_lean_steps_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


lean_judge = _load("test_lean_judge")
lean_mmap = _load("test_lean_mmap")
Plain = lean_mmap.PlainerSystem
W = lean_judge.W

FOCUS = frozenset({"mmap", "munmap", "mprotect", "store", "load", "mseal", "fork", "madvise", "mlock", "mlockall",
                   "munlockall", "memfd_create", "ftruncate", "shm_open", "open_file", "close", "mremap"})


def _outcomes(exp, rng: random.Random) -> Outcome:
    """The default (mostly), another outcome the answer allows, or one it refuses."""
    o = exp.default
    r = rng.random()
    if r < 0.3:
        cands = lean_judge._candidates(exp, exp)
        allowed = [x for x in cands if exp.judge(x) is None and x != o]
        refused = [x for x in cands if exp.judge(x) is not None]
        pool = refused if r < 0.08 else allowed
        if pool:
            o = rng.choice(pool)
    return o


def step_both(program: Program, facts: dict, seed: int, full_every: int = 6) -> int:
    """Step ``program`` through ``os_judged`` on the model and expect, judge and apply on the plain one,
    with the same outcome; compare after every call.  The calls made."""
    rng = random.Random(seed)
    lean, plain = System(Config.from_facts(facts)), Plain(Config.from_facts(facts))
    assert S.fused(type(lean)) and not S.fused(type(plain))
    env: dict[str, int] = {}
    made = 0
    for i, c in enumerate(program.calls):
        try:
            args = eval_args(c, env)
        except KeyError:
            break
        proc = c.proc or "main"
        where = f"call {i}: {proc}: {c.name}{args}"
        eb = plain.expect(proc, c.name, args)
        o = _outcomes(eb, rng)
        why_b = eb.judge(o)
        ea, why_a = S.os_judged(lean, proc, c.name, args, o)
        assert (ea.clause, ea.default, ea.describe, ea.unknown, ea.impl_defined, ea.covers, ea.allowed) == \
            (eb.clause, eb.default, eb.describe, eb.unknown, eb.impl_defined, eb.covers, eb.allowed), where
        assert why_a == why_b, (where, o)
        if why_b is None:
            plain.apply(proc, c.name, args, o)
            lean.bind(proc, c.name, c.result, o)
            plain.bind(proc, c.name, c.result, o)
        if c.result and c.name != "fork":       # (refused: the default's value names it, for the calls after)
            bind_result(env, c, o.value if why_b is None else eb.default.value)
        assert lean_judge.snapshot(lean) == lean_judge.snapshot(plain), where
        full = i % full_every == full_every - 1
        assert lean.invariants(full=full) == plain.invariants(full=full), where
        made += 1
    assert lean.invariants() == plain.invariants()
    return made


def _kernel_program(rounds: int) -> Program:
    lines = []
    for i in range(rounds):
        lines += [f"a{i} = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)",
                  f"mprotect(a{i}, 4096, PROT_READ)", f"munmap(a{i}, 4096)"]
    return parse("\n".join(lines) + "\n")


def _range_programs(seed: int, n: int, calls: int = 40) -> list[Program]:
    """mmap (NULL or at a page of a small window), then mprotect and munmap of whole mappings (mostly)
    and of parts of them, with stores, seals, shared and read-only file mappings, a huge page, locks and
    a fork now and then."""
    rng = random.Random(seed)
    prots = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_EXEC", "PROT_READ|PROT_WRITE|PROT_EXEC"]
    odd = ["PROT_READ|PROT_SEM", "PROT_READ|PROT_GROWSDOWN", "0x40", "PROT_GROWSDOWN|PROT_GROWSUP"]
    out = []
    for _ in range(n):
        has_fd = rng.random() < 0.4
        lines = [f"fd = open_file(0x8000, {rng.choice(['O_RDONLY', 'O_RDWR'])})"] if has_fd else []
        if rng.random() < 0.25:       # a huge page (with thp madvise, or always)
            lines += [f"h = mmap({W + (1 << 30):#x}, 0x200000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)",
                      "madvise(h, 0x200000, MADV_HUGEPAGE)", "store(h, 1)"]
        live: list[tuple[str, int]] = [("h", 0x200000)] if lines and lines[-1] == "store(h, 1)" else []
        procs = ["main"]
        for k in range(calls):
            r = rng.random()
            pages = rng.randrange(1, 5)
            ref, size = rng.choice(live) if live and rng.random() < 0.8 else (hex(W + rng.randrange(16) * 4096), 4096 * pages)
            whole = rng.random() < 0.6
            off = 0 if whole else rng.choice([0, 4096, 4096, 1])
            length = size if whole else rng.choice([4096, size - 4096, size - 1, 0])
            at = ref if not off else (f"{ref}+{off}" if not ref.startswith("0x") else hex(int(ref, 16) + off))
            pre = rng.choice(procs) + ": " if len(procs) > 1 and rng.random() < 0.5 else ""
            if pre == "main: ":
                pre = ""
            if r < 0.3:
                kinds = ["MAP_PRIVATE|MAP_ANONYMOUS"] * 3 + ["MAP_SHARED|MAP_ANONYMOUS"] + ["MAP_SHARED", "MAP_PRIVATE"] * has_fd
                kind = rng.choice(kinds)
                fd = "fd" if "ANON" not in kind else "-1"
                hint = "NULL" if rng.random() < 0.6 else hex(W + rng.randrange(16) * 4096)
                fixed = "|MAP_FIXED" if hint != "NULL" and rng.random() < 0.4 else ""
                lines.append(f"{pre}m{k} = mmap({hint}, {pages * 4096}, {rng.choice(prots)}, {kind}{fixed}, {fd}, 0)")
                live.append((f"m{k}", pages * 4096))
                if rng.random() < 0.15:
                    lines.append(f"{pre}mseal(m{k}, {pages * 4096}, 0)")
            elif r < 0.55:
                prot = rng.choice(odd) if rng.random() < 0.1 else rng.choice(prots)
                lines.append(f"{pre}mprotect({at}, {length}, {prot})")
            elif r < 0.75:
                lines.append(f"{pre}munmap({at}, {length})")
            elif r < 0.85:
                lines.append(f"{pre}store({ref}, {k})")
            elif r < 0.88:
                lines.append(f"{pre}mseal({ref}, {size}, 0)")
            elif r < 0.91 and len(procs) < 3:
                lines.append(f"p{k} = fork()")
                procs.append(f"p{k}")
            elif r < 0.94:
                lines.append(f"{pre}mlock({ref}, {size})")
            else:
                lines.append(f"{pre}l{k} = load({ref})")
        out.append(parse("\n".join(lines) + "\n"))
    return out


MACHINES = lean_mmap.MACHINES + [{"thp": "always"}, {"max_map_count": 20, "quiet_ranges": [[W, W + (1 << 30)]]}]


# -- the tests ----------------------------------------------------------------------------------------

def test_the_kernel_figures_program_is_judged_alike():
    for facts in MACHINES:
        assert step_both(_kernel_program(40), facts, 0) == 120


def test_range_programs_are_judged_alike_on_every_machine():
    made = 0
    for m, facts in enumerate(MACHINES):
        made += sum(step_both(p, facts, i) for i, p in enumerate(_range_programs(m, 8)))
    assert made > 2500


def test_the_earlier_programs_are_judged_alike():
    made = sum(step_both(p, lean_judge.FACTS, i) for i, p in enumerate(lean_judge._map_programs(15, 25)))
    for m, facts in enumerate(lean_mmap.MACHINES):
        made += sum(step_both(p, facts, i) for i, p in enumerate(lean_mmap._anon_programs(40 + m, 4)))
    assert made > 2000


def test_codec_and_fuzzer_programs_are_judged_alike():
    made = sum(step_both(p, {}, i) for i, p in enumerate(lean_judge._codec_programs(17, 60)))
    made += sum(step_both(p, lean_judge.FACTS, i) for i, (_, p) in enumerate(random_programs("os", 60, 9, FOCUS)))
    assert made > 1500


def _changed(run: RunResult, rng: random.Random) -> RunResult:
    """``run`` with one outcome of its calls changed (an address moved, an errno, a signal)."""
    outs = list(run.outcomes)
    if outs:
        k = rng.randrange(len(outs))
        o = outs[k]
        outs[k] = rng.choice([Outcome(value=(o.value or 0) + 0x1000), Outcome(value=-1, errno="ENOMEM"),
                              Outcome(value=0), Outcome(signal="SIGSEGV")])
    return replace(run, outcomes=outs)


def test_whole_judgements_are_the_same():
    """The judge over the model target's runs, and over the same runs with an outcome changed, with each
    model as the judge's: the same checks, context and all (the failures among them too)."""
    rng = random.Random(5)
    t = ModelTarget()
    failed = 0
    for p in _range_programs(31, 25) + lean_judge._map_programs(32, 10) + [_kernel_program(20)]:
        run = t.run(p)
        for r in (run, _changed(run, rng), _changed(run, rng)):
            a, b = judge(p, r, "model", model=System(Config())), judge(p, r, "model", model=Plain(Config()))
            assert a.checks == b.checks
            assert a.context == b.context
            failed += a.failure is not None
    assert failed > 10


def test_the_common_calls_take_their_one_call_forms():
    """mmap, munmap and mprotect's common forms are answered by ``STEPS`` (else this file would test
    nothing new); a replaced rule is not, and a subclass with its own unmap is judged one step at a time."""

    class OwnUnmap(System):
        def unmap(self, mm, start, end):
            super().unmap(mm, start, end)

    class OwnRule(System):
        rules = replaced(System.rules, "munmap", expect=M.expect_munmap)

    assert S.fused(System) and not S.fused(OwnUnmap) and S.fused(OwnRule)
    taken = []
    kept = dict(S.STEPS)
    args = (0, 4096, 3, M.ANON_PRIVATE, -1, 0)
    try:
        for name, (rule, f) in kept.items():
            S.STEPS[name] = (rule, lambda *a, f=f, name=name: taken.append(name) or f(*a))
        for s in (System(Config()), OwnRule(Config())):
            o = s.expect("main", "mmap", args).default
            assert S.os_judged(s, "main", "mmap", args, o)[1] is None
            assert S.os_judged(s, "main", "mmap", args, o)[1] is not None      # (now mapped: refused)
            assert S.os_judged(s, "main", "mprotect", (o.value, 4096, 1), Outcome(value=0))[1] is None
            assert S.os_judged(s, "main", "munmap", (o.value, 4096), Outcome(value=0))[1] is None
            assert s.procs["main"].vmas.find(o.value) is None
    finally:
        S.STEPS.update(kept)
    assert taken == ["mmap", "mmap", "mprotect", "munmap"] + ["mmap", "mmap", "mprotect"]


# -- each fallback is needed --------------------------------------------------------------------------

# (the one-call form, a fallback of its source, the form without it)
MUTANTS = [
    ("step_munmap", "or _paged(mm):", ":"),
    ("step_munmap", "if v.sealed or s < addr and end < t:", "if s < addr and end < t:"),
    ("step_munmap", "if v.sealed or s < addr and end < t:", "if v.sealed:"),
    ("step_mprotect", "if s != cursor or v.sealed or", "if v.sealed or"),
    ("step_mprotect", "s != cursor or v.sealed or prot", "s != cursor or prot"),
    ("step_mprotect", "(not v.may_write or not v.shared and not v.prot & PROT_W)", "not v.may_write"),
    ("step_mprotect", "(not v.may_write or not v.shared and not v.prot & PROT_W)",
     "(not v.shared and not v.prot & PROT_W)"),
    ("step_mprotect", "prot & ~(PROT_RWX | PROT_SEM) or", ""),
    ("step_mprotect", "if not hits or cursor != end:", "if cursor != end:"),
    ("step_mprotect", "if mm.pte or mm.anon or mm.maybe or mm.last_ref:", "if False:"),
    ("step_mmap", "e is not mm.last_placement[1] or", ""),
]


def _mutant(name: str, old: str, new: str):
    src = textwrap.dedent(inspect.getsource(getattr(S, name)))
    assert src.count(old) == 1, (name, old)
    ns: dict = {}
    exec(compile(src.replace(old, new), f"<mutant of {name}>", "exec"), vars(S).copy(), ns)
    return ns[name]


# short programs that reach each fallback for sure: (facts, program)
RW, ANON = "PROT_READ|PROT_WRITE", "MAP_PRIVATE|MAP_ANONYMOUS"
DIRECTED = [
    ({}, "fd = open_file(0x8000, O_RDONLY)\nm = mmap(NULL, 0x2000, PROT_READ, MAP_SHARED, fd, 0)\n"
         "mprotect(m, 0x2000, PROT_READ|PROT_WRITE)\nmunmap(m, 0x2000)\n"),
    ({}, f"m = mmap(NULL, 0x1000, {RW}, {ANON}, -1, 0)\nmseal(m, 0x1000, 0)\nmprotect(m, 0x1000, PROT_READ)\n"
         "munmap(m, 0x1000)\n"),
    ({"max_map_count": 12}, f"m = mmap(NULL, 0x3000, {RW}, {ANON}, -1, 0)\nmunmap(m+4096, 4096)\n"),
    ({"rlimit_data": 1 << 22}, f"m = mmap(NULL, 0x1000, PROT_READ, {ANON}, -1, 0)\nmprotect(m, 0x1000, {RW})\n"),
    ({}, f"m = mmap(NULL, 0x1000, {RW}, {ANON}, -1, 0)\nmprotect(m, 0x1000, 0x40)\nmprotect(m, 0, PROT_READ)\n"
         "store(m, 1)\nmprotect(m, 0x1000, PROT_READ)\nmunmap(m, 0x1000)\n"),
]


def _caught() -> bool:
    programs = [(parse(text), facts, 0) for facts, text in DIRECTED]
    programs += [(p, facts, i) for m, facts in enumerate(MACHINES) for i, p in enumerate(_range_programs(60 + m, 8))]
    programs += [(p, {}, i) for i, p in enumerate(lean_judge._map_programs(61, 12))]
    programs += [(p, facts, i) for m, facts in enumerate(lean_mmap.MACHINES)
                 for i, p in enumerate(lean_mmap._anon_programs(70 + m, 2))]
    try:
        for p, facts, i in programs:
            step_both(p, facts, i)
    except Exception:       # a difference, or a form that breaks on what it should have left alone
        return True
    return False


@pytest.mark.parametrize("name, old, new", MUTANTS, ids=[f"{m[0]}:{k}" for k, m in enumerate(MUTANTS)])
def test_a_one_call_form_without_a_fallback_is_caught(name, old, new, monkeypatch):
    call = name.removeprefix("step_")
    monkeypatch.setitem(S.STEPS, call, (M.RULES[call], _mutant(name, old, new)))
    assert _caught()


def test_the_unmutated_forms_pass_the_same_programs():
    assert not _caught()


def _stale_page_mapped_over(step=None) -> None:
    """mmap's placement over a free range where the process still holds per-page state (a broken model
    may leave it behind: a page in ``maybe``, a reference time): unmap, as apply_mmap asks it, drops it
    there; so does the one-call form."""
    args = (0, 4096, 3, M.ANON_PRIVATE, -1, 0)
    lean, plain = System(Config()), Plain(Config())
    at = plain.expect("main", "mmap", args).default
    for s in (lean, plain):
        mm = s.procs["main"]
        mm.maybe.add(at.value)
        mm.last_ref[at.value] = 7
    if step is not None:
        S.STEPS["mmap"] = (M.RULES["mmap"], step)
    try:
        assert S.os_judged(lean, "main", "mmap", args, at)[1] is None
    finally:
        S.STEPS["mmap"] = (M.RULES["mmap"], S.step_mmap)
    plain.apply("main", "mmap", args, at)
    assert lean_judge.snapshot(lean) == lean_judge.snapshot(plain)


def test_a_mapping_over_stale_page_state_drops_it_as_unmap_does():
    _stale_page_mapped_over()
    with pytest.raises(AssertionError):
        _stale_page_mapped_over(_mutant("step_mmap", "or _paged(mm):", ":"))


def _straddled_huge_base(step=None) -> None:
    """mprotect of a whole VMA that a huge mapping's 2 MiB reach past (a base in ``thp_maybe`` whose
    VMA was split around it: no per-page state left): apply_mprotect splits it (split_huge), and so
    does the one-call form."""
    base = W + (1 << 30)
    lean, plain = System(Config()), Plain(Config())
    for s in (lean, plain):
        for a in (base, base + (1 << 20)):
            args = (a, 1 << 20, 3, M.ANON_PRIVATE | M.MAP_FIXED, -1, 0)
            s.apply("main", "mmap", args, s.expect("main", "mmap", args).default)
        s.procs["main"].thp_maybe.add(base)
    if step is not None:
        S.STEPS["mprotect"] = (M.RULES["mprotect"], step)
    try:
        assert S.os_judged(lean, "main", "mprotect", (base, 1 << 20, 1), Outcome(value=0))[1] is None
    finally:
        S.STEPS["mprotect"] = (M.RULES["mprotect"], S.step_mprotect)
    plain.apply("main", "mprotect", (base, 1 << 20, 1), Outcome(value=0))
    assert lean_judge.snapshot(lean) == lean_judge.snapshot(plain)


def test_a_whole_vma_within_a_huge_mapping_splits_it_as_apply_does():
    _straddled_huge_base()
    with pytest.raises(AssertionError):
        _straddled_huge_base(_mutant("step_mprotect", "or \\\n        mm.huge or mm.thp_maybe else", "else"))
