"""Issue #26, virt generator round 5: runs of argument edges (``specs/gen_virt_edges.py``), a fetch
from the guest root table's page that the nested stage refuses, a cached leaf moved and INVEPT
all-context followed by a read-back, and 5-level EPT guests.  Each broken model below is caught by ``memspec check --layer virt`` at default settings
(seed 0) and was missed by the generator before these features (its check passes them); here, to stay
cheap, the one random program of check's seed-0 stream that first catches it is judged directly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from memspec.fuzz.layers import random_programs
from memspec.program import format_program
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("broken_virt_gen_26", HERE / "broken_virt_gen.py")
broken = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(broken)  # type: ignore[union-attr]


def _nth_random(n: int, target) -> object:
    """Program ``random #n`` of ``check``'s seed-0 stream for ``target``."""
    for name, p in random_programs("virt", n + 1, 0, target.calls, target.facts()):
        if name.startswith(f"random #{n} "):
            return p
    raise AssertionError(f"no random #{n}")


def test_edges_appear_in_check_programs() -> None:
    texts = [format_program(p) for _, p in random_programs("virt", 120, 0, None)]
    lines = [ln for t in texts for ln in t.splitlines()]
    assert sum("vm_boot(-1," in ln or "vm_boot(4," in ln for ln in lines) >= 2
    assert sum(ln.startswith(("set_epte(0x2000000,", "set_npte(0x2000000,")) or "read_epte(0x2000000," in ln
               for ln in lines) >= 2
    assert sum(", 511," in ln or ", 511)" in ln or ", 512" in ln or ", -1" in ln for ln in lines) >= 10
    # a fetch from the guest root table's page under a nested leaf without X
    assert sum("set_epte(0x203000, 16, 0x410000, EPT_R|EPT_W|EPT_MT_WB)" in t for t in texts) >= 2


def test_edge_programs_pass_on_the_model() -> None:
    t = ModelTarget()
    for _, p in random_programs("virt", 40, 5, None):
        j = judge(p, t.run(p), "model")
        assert j.passed, (format_program(p), j.failure)


@pytest.mark.parametrize("bug, n, clause", [
    # set_epte/read_epte(RAM_SIZE, ...) taken: a run of edges reaches the table argument's hi + 1
    ("TableEndInclusive", 3, "memspec.virt.table-args"),
    # user_access(-1) answered with a #PF: the KPTI edges (KPTI_ARG_EDGE_PERCENT)
    ("KptiAddressWraps", 26, "memspec.kpti.mode-args"),
    # a fetch from the guest root table's page reported at the harness's gpa (ROOT_PAGE_PERCENT, ``root_page``)
    ("HarnessExitForEveryRootPageViolation", 10, "sdm.ept.violation.execute"),
    # INVEPT all-context a no-op: a cached leaf moved, INVEPT all-context, the page read again and the
    # leaf read back (``invept_all``): the fresh walk's A bit is due, the broken model leaves it unsure
    ("InveptAllKeepsMappings", 25, "sdm.ept.ad.readback"),
    # a 5-level EPT walk that ignores the PML5 index: a guest page at gpa 2^48 + x (FIVE_LEVEL_PERCENT)
    ("Ept5LevelPml5IndexIgnored", 6, "sdm.ept.violation.pml5e-not-present"),
    # a guest table on the first page of RAM refused: the run of edges maps gpa SPARE_GPA there
    ("GpteFirstRamPageRefused", 10, "memspec.virt.set-gpte"),
])
def test_the_first_check_program_that_catches_the_bug(bug, n, clause) -> None:
    target = broken.target(bug)
    p = _nth_random(n, target)
    j = judge(p, target.run(p), target.name, target.facts())
    assert not j.passed and j.failure.clause == clause, j.failure
    m = broken.target("VirtModel")
    assert judge(p, m.run(p), m.name, m.facts()).passed


def test_five_level_guests_reach_a_not_present_pml5e() -> None:
    """A 5-level EPT guest (FIVE_LEVEL_PERCENT) maps a page at gpa 2^48 + x, in the PML5 slot left not present."""
    t = ModelTarget()
    seen = 0
    for _, p in random_programs("virt", 200, 0, None):
        text = format_program(p)
        if "EPTP_WL5" in text and "set_epte(0x205000, 1, 0, 0)" in text:
            j = judge(p, t.run(p), "model")
            assert j.passed, j.failure
            seen += "sdm.ept.violation.pml5e-not-present" in {c.clause for c in j.checks}
    assert seen >= 1
