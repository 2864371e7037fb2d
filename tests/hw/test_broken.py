"""Each deliberately broken walker (tests/hw/broken_hw.py) is caught, with a minimal reproducer.

Random programs from the hw codec find the bug; the differential minimiser shrinks the
program while the same clause fails the same way; the correct model passes the result.
"""

from __future__ import annotations

import random

import pytest

from memspec.fuzz.codec_hw import decode
from memspec.fuzz.differential import failing_signature, shrink_failure
from memspec.program import format_program, parse
from memspec.targets.model import ModelTarget

from .broken_hw import BROKEN, BrokenTarget, FlushesGlobalOnCr3

# the SDM allows flushing more than required, so extra flushing only shows against the
# model's own (maximal-caching) TLB: the strict law, with a program that needs a global page
GLOBAL_SURVIVES = """\
boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE|CR4_PGE, EFER_LME|EFER_LMA|EFER_NXE)
set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)
set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)
set_pte(0x203000, 6, 0x301000, PTE_P|PTE_RW|PTE_US|PTE_G)
set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)
mov_cr3(0x200000)
a = access(0x406000, ACC_READ, 3)
b = access(0x405000, ACC_READ, 3)
set_pte(0x203000, 6, 0x311000, PTE_P|PTE_RW|PTE_US|PTE_G)
mov_cr3(0x200000)
c = access(0x406000, ACC_READ, 3)
"""


@pytest.mark.parametrize("cls", BROKEN, ids=lambda c: c.__name__)
def test_broken_walker_is_caught_with_a_minimal_reproducer(cls):
    strict = cls is FlushesGlobalOnCr3
    facts = {"strict_tlb": True} if strict else {}
    target = BrokenTarget(cls, facts)
    sig = None
    if strict:
        program = parse(GLOBAL_SURVIVES)
        sig = failing_signature(target, program, facts)
    else:
        rng = random.Random(1)
        for _ in range(400):
            program = decode(bytes(rng.randrange(256) for _ in range(256)))
            sig = failing_signature(target, program, facts)
            if sig is not None:
                break
    assert sig is not None, f"{cls.__name__} was not caught"
    small = shrink_failure(target, program, facts, sig, budget=300)
    assert failing_signature(target, small, facts) == sig
    assert len(small) <= 12, format_program(small)
    assert len(small) <= len(program)
    # the reproducer shows the bug, not a model problem: the correct model passes it
    assert failing_signature(ModelTarget(), small, facts) is None, format_program(small)
    if strict:
        assert sig.clause == "sdm.tlb.stale-before-invalidation"
    # without the strict law, extra flushing is allowed
    if strict:
        assert failing_signature(target, program, {}) is None


def test_checkpoint_comparison_catches_a_d_bugs_without_read_back():
    from .broken_hw import DirtyOnRead
    program = parse("""\
set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)
set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)
set_pte(0x202000, 2, 0x203000, PTE_P|PTE_RW|PTE_US)
set_pte(0x203000, 5, 0x300000, PTE_P|PTE_RW|PTE_US)
mov_cr3(0x200000)
a = access(0x405000, ACC_READ, 3)
""")
    sig = failing_signature(BrokenTarget(DirtyOnRead), program, {})
    assert sig is not None and sig.clause == "sdm.ad.no-dirty-on-read"
    assert failing_signature(ModelTarget(), program, {}) is None


@pytest.mark.parametrize("cls, suite_file, facts, clause", [
    ("CetWithoutWp", "34-cet.mst", {"cet": True}, "sdm.cr4.cet-without-wp-gp"),
    ("WpClearWithCet", "34-cet.mst", {"cet": True}, "sdm.cr0.wp-clear-cet-gp"),
    ("VmxeReserved", "37-cr4-vmxe.mst", {"vmx": True}, "sdm.cr4.load"),
])
def test_cr4_feature_rules_catch_a_broken_model(cls, suite_file, facts, clause):
    """The CET and VMXE rules (enabled by CPUID facts) each fail a model that breaks them; the
    correct model passes the same suite program under the same facts."""
    import os

    from memspec.model.paging import DEFAULT_FACTS
    from memspec.specs.judge import judge
    from . import broken_hw
    path = os.path.join(os.path.dirname(__file__), "..", "..", "specs", "suite", "hw", suite_file)
    program = parse(open(path).read())
    f = dict(DEFAULT_FACTS, **facts)
    assert judge(program, BrokenTarget(broken_hw.Paging, f).run(program), "model", f).failure is None
    bad = BrokenTarget(getattr(broken_hw, cls), f)
    failure = judge(program, bad.run(program), bad.name, f).failure
    assert failure is not None and failure.clause == clause, failure
