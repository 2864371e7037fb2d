"""The heap's alignment and failure rules (model/phys.py, model/heap.py): C23 §7.24.3 after DR 445
for small blocks, POSIX's ENOMEM for every allocator, glibc's own rules for glibc only."""

from __future__ import annotations

import pytest

from memspec.model.heap import fundamental_align
from memspec.program import parse
from memspec.records import Outcome, RunResult, Verdict
from memspec.specs.judge import judge


def verdict(text: str, outcomes: list[Outcome], rules: str = "glibc"):
    j = judge(parse(text), RunResult(tuple(outcomes)), "t", {"malloc_rules": rules})
    f = j.failure
    return (f.clause, f.verdict) if f else None


def test_fundamental_align():
    assert [fundamental_align(n) for n in (0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 17, 4096)] == \
        [1, 1, 2, 2, 4, 4, 8, 8, 8, 16, 16, 16]


@pytest.mark.parametrize("size, addr, clause", [
    (8, 0x1008, None),                                      # malloc(8) may be 8-aligned
    (1, 0x1001, None),                                      # malloc(1): any address
    (12, 0x1004, "c23.malloc.aligned-small-size"),          # an 8-byte object fits in 12 bytes
    (16, 0x1008, "c11.malloc.aligned-max-align-t"),
    (0, 0x1003, None),                                      # malloc(0): a unique pointer, nothing more
])
def test_small_blocks_need_only_the_alignment_that_fits(size, addr, clause):
    got = verdict(f"p = malloc({size})\n", [Outcome(value=addr)])
    assert got == (None if clause is None else (clause, Verdict.FAIL))


def test_huge_requests_glibc_rule_and_posix_rule():
    text = "p = malloc(0xffffffffffffffff)\n"
    assert verdict(text, [Outcome(value=0, errno="ENOMEM")], "glibc") is None
    assert verdict(text, [Outcome(value=0, errno="ENOMEM")], "posix") is None
    assert verdict(text, [Outcome(value=0)], "glibc") == ("glibc.malloc.enomem-over-ptrdiff-max", Verdict.FAIL)
    assert verdict(text, [Outcome(value=0)], "posix") == ("posix.malloc.enomem", Verdict.FAIL)
    assert verdict("p = calloc(0x100000000, 0x100000000)\n", [Outcome(value=0)], "posix") == \
        ("posix.calloc.enomem", Verdict.FAIL)
    assert verdict("p = malloc(16)\nq = realloc(p, 0x8000000000000000)\n",
                   [Outcome(value=0x1000), Outcome(value=0)], "posix") == ("posix.realloc.enomem", Verdict.FAIL)


def test_memalign_errno_is_glibcs_own():
    # memalign is in neither C nor POSIX: another allocator's NULL needs no errno
    assert verdict("p = memalign(4096, 0x7fffffffffffffff)\n", [Outcome(value=0)], "posix") is None
    assert verdict("p = memalign(24, 100)\n", [Outcome(value=0x1010)], "posix") is None   # undefined: unknown
    assert verdict("p = memalign(24, 100)\n", [Outcome(value=0x1010)], "glibc") == \
        ("glibc.memalign.rounds-up", Verdict.FAIL)
    assert verdict("p = memalign(64, 0)\n", [Outcome(value=0x1008)], "posix") == \
        ("glibc.memalign.rounds-up", Verdict.FAIL)
