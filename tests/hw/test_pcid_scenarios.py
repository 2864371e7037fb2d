"""The hw generator builds multi-address-space, PCID-tagged scenarios (issue #26): CR4.PCIDE on,
an access under one (root, PCID), a switch to another without flushing, a change of a leaf both
see, an INVPCID of one kind or a flushing switch back, the access again.  TLB bugs that only that
shape shows are caught by ``memspec check`` at its default settings (tests/hw/broken_pcid.py)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.fuzz.differential import failing_signature
from memspec.consts import GROUPS
from memspec.program import Program, eval_args, parse
from memspec.specs import gen_hw
from memspec.specs.choose import ByteChooser
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent
NOFLUSH = 1 << 63
PCIDE = GROUPS["creg"]["CR4_PCIDE"]


def _scenario_length(p: Program) -> int | None:
    """The length of the first run, from CR4.PCIDE being set to an access, that has: a CR3 load with a
    PCID, an access, a switch without flushing to another (root, PCID), a change of an entry, then an
    INVPCID or a switch, then an access.  None without one."""
    calls = [(c.name, eval_args(c, {})) for c in p.calls]
    for start, (name, args) in enumerate(calls):
        if name != "mov_cr4" or not args[0] & PCIDE:
            continue
        state, first = 0, None
        for k in range(start + 1, len(calls)):
            n, a = calls[k]
            if state == 0 and n == "mov_cr3" and a[0] & 0xFFF and not a[0] & NOFLUSH:
                state, first = 1, a[0]
            elif state == 1 and n == "access":
                state = 2
            elif state == 2 and n == "mov_cr3" and a[0] & NOFLUSH and a[0] & ~NOFLUSH != first:
                state = 3
            elif state == 3 and n == "set_pte":
                state = 4
            elif state == 4 and (n == "invpcid" or n == "mov_cr3" and a[0] & ~NOFLUSH == first):
                state = 5
            elif state == 5 and n == "access":
                return k - start + 2           # and the CR3 load before the mov_cr4
        return None
    return None


def test_pcid_scenarios_of_7_to_12_calls_appear() -> None:
    rng = random.Random(26)
    lengths = []
    for _ in range(300):
        p = gen_hw.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), None)
        n = _scenario_length(p)
        if n is not None:
            lengths.append(n)
    assert len(lengths) >= 35, len(lengths)          # 67 of 300 measured (the generator before issue #26: 0)
    assert all(7 <= n <= 12 for n in lengths), sorted(set(lengths))
    # and with INVPCID of every kind among them
    kinds = set()
    rng = random.Random(27)
    for _ in range(300):
        p = gen_hw.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), None)
        if _scenario_length(p):
            kinds |= {c.args[0].names[0] for c in p.calls if c.name == "invpcid"}
    assert kinds == set(gen_hw.INVPCID_KINDS), kinds


def test_a_noflush_switch_back_with_nothing_invalidated_is_generated() -> None:
    # the shape where the SDM lets PCID a's old translation answer (the generator avoided it while
    # the model refused it)
    rng = random.Random(28)
    found = 0
    for _ in range(300):
        p = gen_hw.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), None)
        if not _scenario_length(p):
            continue
        calls = [(c.name, eval_args(c, {})) for c in p.calls]
        for k, (n, a) in enumerate(calls):
            if n == "set_pte" and k + 2 < len(calls) and calls[k + 1][0] == "mov_cr3" and \
                    calls[k + 1][1][0] & NOFLUSH and calls[k + 2][0] == "access":
                found += 1
                break
    assert found >= 5, found          # 10 of 300 measured


def test_no_scenario_for_a_target_without_pcid() -> None:
    rng = random.Random(26)
    for _ in range(100):
        p = gen_hw.program(ByteChooser(bytes(rng.randrange(256) for _ in range(256))), None, {"pcid": False})
        assert _scenario_length(p) is None


def _check(bug: str, out: Path) -> tuple[int, list[dict]]:
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_pcid.py"}:target("{bug}")', "--layer", "hw",
                   "--out", str(out)])
    return status, [f for t in json.loads((out / "report.json").read_text())["targets"] for f in t["failures"]]


@pytest.mark.parametrize("bug", ["InvpcidSingleFlushesCurrent", "Cr3FlushesOldPcid"])
def test_check_at_default_settings_catches_a_pcid_bug(bug, tmp_path) -> None:
    status, fails = _check(bug, tmp_path / "out")
    assert status == 1 and fails
    # found by the random programs (the directed suite's PCID program does not show these bugs)
    assert any("# found_by: random" in f["program"] for f in fails)
    # every reproducer replays against the broken walker and passes on the model
    for f in fails:
        program = parse(open(f["file"]).read())
        assert failing_signature(ModelTarget(), program, {}) is None, f["program"]


def test_a_tlb_that_keeps_every_translation_the_sdm_lets_it_keep_passes(tmp_path) -> None:
    # the control: the same caching walker without the bug is not blamed for the scenarios
    status, fails = _check("_Caching", tmp_path / "out")
    assert status == 0, [(f["clause"], f["program"]) for f in fails]


STALE_ACROSS_SWITCH = """\
set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)
set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)
set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)
set_pte(0x204000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
mov_cr4(CR4_PAE|CR4_PCIDE)
mov_cr3(0x200001)
a = access(0x405000, ACC_READ, 0)
mov_cr3(0x8000000000204002)
set_pte(0x203000, 5, 0x310000, PTE_P|PTE_RW|PTE_US)
mov_cr3(0x8000000000200001)
b = access(0x405000, ACC_READ, 0)
"""


@pytest.mark.parametrize("tlb", ["_Caching", "_Refetching"])
def test_a_pcid_translation_may_survive_a_noflush_switch_away_and_back(tlb, tmp_path) -> None:
    # SDM Vol. 3A 4.10.1 / 4.10.4: nothing invalidated PCID 1's translation of 0x405000, so the
    # old frame may still answer: a TLB that keeps it is right, and so is one that walks again
    path = tmp_path / "p.mst"
    path.write_text(STALE_ACROSS_SWITCH)
    assert main(["replay", str(path), "--target", f'py:{HERE / "broken_pcid.py"}:target("{tlb}")']) == 0


SWITCHED = STALE_ACROSS_SWITCH.rsplit("mov_cr3(0x8000000000200001)", 1)[0]
ACCESS = "b = access(0x405000, ACC_READ, 0)\n"


@pytest.mark.parametrize("bug, tail, own", [
    ("InvpcidSingleFlushesCurrent", "invpcid(INVPCID_SINGLE, 1)\nmov_cr3(0x8000000000200001)\n", "sdm.invpcid.single"),
    ("Cr3FlushesOldPcid", "mov_cr3(0x200001)\n", "sdm.tlb.cr3-flush-pcid"),
    ("Cr3NeverFlushes", "mov_cr3(0x200001)\n", "sdm.tlb.cr3-flush-pcid"),
])
def test_a_tlb_that_keeps_what_an_invalidation_removed_is_caught_after_a_switch(bug, tail, own) -> None:
    # the same shape, with an invalidation of PCID 1 before its access: the old frame is no longer
    # allowed, and a TLB that answers with it fails (the correct caching TLB passes the same program)
    program = parse(SWITCHED + tail + ACCESS)
    sys.path.insert(0, str(HERE))
    import broken_pcid
    assert failing_signature(broken_pcid.target("_Caching"), program, {}) is None
    assert failing_signature(broken_pcid.target("_Refetching"), program, {}) is None
    sig = failing_signature(broken_pcid.target(bug), program, {})
    assert sig is not None and sig.call == "access" and sig.verdict == "fail", sig
    # named after the flush of the whole PCID that removed the old translation the TLB answered with
    # (model/blame.py, accesses row 1), not the leaf's translation
    assert sig.clause == own, sig
