"""The os generator's commit-limit scenario (specs/gen_os_scenarios.py) aims at the target's own
overcommit limit, handed over by the os codec (fuzz/codec_os.py declares USES_FACTS): a mapping of
exactly RAM + swap pages, or one page more, only where the target declares RAM, swap and the
heuristic (vm.overcommit_memory 0) -- never on a target that declares no RAM (the C example model,
the model target, a cmd: or py: target that says nothing), never under mode 1 or 2, never on a
kernel whose heuristic guessed from free memory.  Broken models of tests/os/broken_commit.py are
caught by ``memspec check`` at its default settings, naming the commit clause."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.fuzz import codec_os
from memspec.fuzz.layers import layer
from memspec.model.mm import Config, System
from memspec.program import Flags, Int, Program, Ref, load, parse
from memspec.specs import gen_os, gen_os_scenarios
from memspec.specs.choose import ByteChooser
from memspec.specs.gen_os_scenarios import commit_limit
from memspec.targets.model import OsModelTarget

from ..conftest import load_test_module, report_failures

HERE = Path(__file__).resolve().parent
PAGE = 4096
RAM = 123457
MODE0 = {"ram_pages": RAM, "swap_pages": 0, "overcommit_memory": 0, "overcommit_ratio": 50,
         "kernel": "6.18.44-fc-v1300", "page_size": PAGE}


def _broken():
    return load_test_module(str(HERE / "broken_commit.py"), "broken_commit")


@pytest.mark.parametrize("facts, limit", [
    (MODE0, RAM),
    ({**MODE0, "swap_pages": 1000}, RAM + 1000),                 # swap counts
    ({**MODE0, "overcommit_memory": 1}, None),                   # always: no limit
    ({**MODE0, "overcommit_memory": 2}, None),                   # never: a limit no fact gives
    ({**MODE0, "overcommit_memory": 2, "overcommit_ratio": 100}, None),
    ({k: v for k, v in MODE0.items() if k != "ram_pages"}, None),          # no RAM declared
    ({k: v for k, v in MODE0.items() if k != "swap_pages"}, None),         # swap not known
    ({k: v for k, v in MODE0.items() if k != "overcommit_memory"}, None),  # the policy not known
    ({k: v for k, v in MODE0.items() if k not in ("kernel", "page_size")}, RAM),   # a protocol target's own
    ({**MODE0, "ram_pages": 0}, None),
    ({**MODE0, "swap_pages": -1}, None),
    ({**MODE0, "swap_pages": None}, None),
    ({**MODE0, "ram_pages": "many"}, None),
    ({**MODE0, "kernel": "5.1.21"}, None),                       # the older heuristic: free memory
    ({**MODE0, "kernel": "5.2.0"}, RAM),
    ({**MODE0, "kernel": "4.19.0-25-amd64"}, None),
    ({**MODE0, "kernel": "unknown"}, None),
    ({**MODE0, "page_size": 16384}, None),
    ({}, None),
    (None, None),
])
def test_commit_limit_is_ram_plus_swap_only_where_the_facts_say_so(facts, limit) -> None:
    assert commit_limit(facts) == limit


def _scenario_pages(programs: list[Program], candidates: set[int]) -> list[int]:
    """Pages of each commit-scenario mapping: a NULL-hint mmap of one of ``candidates`` pages
    followed at once by its munmap."""
    found = []
    for p in programs:
        for i, c in enumerate(p.calls[:-1]):
            if c.name == "mmap" and isinstance(c.args[1], Int) and c.args[1].value // PAGE in candidates:
                nxt = p.calls[i + 1]
                assert c.args[0] == Flags(("NULL",)) and c.args[1].value % PAGE == 0
                assert nxt.name == "munmap" and nxt.args == (Ref(c.result), c.args[1])
                found.append(c.args[1].value // PAGE)
    return found


def _decoded(facts: dict | None, n: int = 150, seed: int = 11) -> list[Program]:
    rng = random.Random(seed)
    return [codec_os.decode(bytes(rng.randrange(256) for _ in range(256)), None, facts) for _ in range(n)]


@pytest.mark.parametrize("facts, limit", [
    (MODE0, RAM),
    ({**MODE0, "swap_pages": 1000}, RAM + 1000),
    ({**MODE0, "overcommit_memory": 1}, None),
    ({**MODE0, "overcommit_memory": 2}, None),
    ({k: v for k, v in MODE0.items() if k != "ram_pages"}, None),
    ({k: v for k, v in MODE0.items() if k != "swap_pages"}, None),
    ({**MODE0, "kernel": "4.19.0"}, None),
    (None, None),
])
def test_the_codec_hands_the_facts_to_the_scenario(facts, limit) -> None:
    assert codec_os.USES_FACTS
    ram, swap = RAM, (facts or {}).get("swap_pages") or 0
    # every length the scenario could have aimed at: these facts' RAM + swap, and the model's defaults
    candidates = {ram + swap, ram + swap + 1, Config().ram_pages, Config().ram_pages + 1}
    programs = _decoded(facts)
    found = _scenario_pages(programs, candidates)
    if limit is None:
        assert found == []
        assert not any(c.name == "memfd_create" and c.args[0].value == "commit" for p in programs for c in p.calls)
        return
    assert found[::2] == [limit] * (len(found) // 2) and found[1::2] == [limit + 1] * (len(found) // 2), found
    assert 10 <= len(found) <= 60, len(found)       # weight 6 of the steps: about one program in twelve


def test_layer_decode_passes_the_facts_and_text_still_round_trips() -> None:
    data = bytes(random.Random(2).randrange(256) for _ in range(256))
    lay = layer("os")
    assert lay.decode(data, None, MODE0) == codec_os.decode(data, None, MODE0) == gen_os.program(ByteChooser(data), None, MODE0)
    with_scenario = next(p for p in _decoded(MODE0) if _scenario_pages([p], {RAM, RAM + 1}))
    assert codec_os.decode(codec_os.encode(with_scenario)) == with_scenario
    assert codec_os.decode(codec_os.encode(with_scenario), None, MODE0) == with_scenario


def test_each_kind_of_charge_and_noreserve_are_drawn_and_the_scenario_stays_out_after_mlockall() -> None:
    rng = random.Random(5)
    kinds, seen_noreserve = set(), False
    for _ in range(80):
        g = gen_os.OsGen(ByteChooser(bytes(rng.randrange(256) for _ in range(64))), None, MODE0)
        gen_os_scenarios.commit_scenario(g, MODE0)
        mmaps = [c for c in g.calls if c.name == "mmap"]
        # exactly the limit, then a page more: both sides of the boundary every time
        assert [c.args[1].value // PAGE for c in mmaps] == [RAM, RAM + 1]
        for mmap in mmaps:
            kinds.add((mmap.args[2].names, tuple(n for n in mmap.args[3].names if n != "MAP_NORESERVE")))
            seen_noreserve |= "MAP_NORESERVE" in mmap.args[3].names
    assert kinds == {(("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE", "MAP_ANONYMOUS")),
                     (("PROT_READ",), ("MAP_SHARED", "MAP_ANONYMOUS")), (("PROT_READ", "PROT_WRITE"), ("MAP_PRIVATE",))}
    assert seen_noreserve
    for before in ("mlockall", "memory_limit"):
        g = gen_os.OsGen(ByteChooser(bytes([7] * 64)), None, MODE0)
        g.more(before, None)
        n = len(g.calls)
        assert n and g.calls[-1].name == before
        gen_os_scenarios.commit_scenario(g, MODE0)
        assert len(g.calls) == n


def test_the_model_places_the_limit_and_refuses_a_page_more() -> None:
    # the generated shapes, judged by the model that declares the same facts (the scenario's claim)
    for swap in (0, 1000):
        facts = {**MODE0, "swap_pages": swap}
        target = OsModelTarget("model", System, facts)
        for p in _decoded(facts, 60):
            for i, c in enumerate(p.calls):
                if c.name == "mmap" and isinstance(c.args[1], Int) and c.args[1].value // PAGE in (RAM + swap, RAM + swap + 1):
                    o = target.run(Program(p.calls[:i + 1])).outcomes[i]
                    charged = "MAP_NORESERVE" not in c.args[3].names
                    refused = charged and c.args[1].value // PAGE > RAM + swap
                    assert (o.errno == "ENOMEM") == refused, (c, o)


# bug, the facts the broken model declares besides broken_commit.FACTS, the clause its failure names
@pytest.mark.slow
@pytest.mark.parametrize("bug, facts, clauses", [
    ("one-page-over", {}, ("linux.mmap.enomem-overcommit",)),
    # a refused mapping the model places fails the placement clause, beside which the report names the
    # commit clause the target's errno belongs to
    ("limit-inclusive", {}, ("posix.mmap.new-range-free", "posix.mmap.maps-range")),
    ("swap-ignored", {"swap_pages": 1000}, ("posix.mmap.new-range-free", "posix.mmap.maps-range")),
])
def test_check_at_default_settings_catches_a_moved_limit(bug, facts, clauses, tmp_path) -> None:
    out = tmp_path / "out"
    extra = "".join(f", {k}={v!r}" for k, v in facts.items())
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_commit.py"}:target("{bug}"{extra})', "--layer", "os",
                   "--out", str(out)])
    assert status == 1
    fails = report_failures(str(out))
    mine = [f for f in fails if f["clause"] in clauses]
    assert mine, [f["clause"] for f in fails]
    small = load(mine[0]["file"])
    limit = _broken().FACTS["ram_pages"] + facts.get("swap_pages", 0)
    assert any(c.name == "mmap" and c.args[1].value // PAGE in (limit, limit + 1) for c in small.calls), mine[0]["program"]
    assert len(small.calls) <= 4, mine[0]["program"]


def test_each_broken_model_differs_from_the_model_where_its_docstring_says() -> None:
    bad = _broken()
    ram = bad.FACTS["ram_pages"]

    def outcome(bug: str | None, pages: int, swap: int = 0, flags: str = "MAP_PRIVATE|MAP_ANONYMOUS") -> str | None:
        """mmap's errno (None: placed) on the model, or on the broken model ``bug``, with ``swap``."""
        prog = parse(f"a = mmap(NULL, {pages * PAGE:#x}, PROT_READ|PROT_WRITE, {flags}, -1, 0)\n")
        facts = {**bad.FACTS, "swap_pages": swap}
        target = OsModelTarget("model", System, facts) if bug is None else bad.target(bug, swap_pages=swap)
        o = target.run(prog).outcomes[0]
        assert (o.errno is None) == (o.value not in (None, -1))
        return o.errno

    placed, refused = None, "ENOMEM"
    assert outcome(None, ram) == outcome("one-page-over", ram) == outcome("swap-ignored", ram) == placed
    assert outcome("limit-inclusive", ram) == refused
    assert outcome(None, ram + 1) == outcome("limit-inclusive", ram + 1) == outcome("swap-ignored", ram + 1) == refused
    assert outcome("one-page-over", ram + 1) == placed
    assert outcome(None, ram + 1, flags="MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE") == placed      # no charge
    # swap counts in the model; the swap-ignored model refuses what swap covers, and is the model without swap
    assert outcome(None, ram + 1000, 1000) == placed and outcome("swap-ignored", ram + 1000, 1000) == refused
    assert outcome(None, ram + 1001, 1000) == outcome("swap-ignored", ram + 1001, 1000) == refused
