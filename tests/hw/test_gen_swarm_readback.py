"""Swarm testing and read-back in the hw generator (issue #26): programs drawing from a random subset
of the operations (long runs of a few kinds), and leaf changes followed by reads of the page, the
pages beside it and the entry."""

from __future__ import annotations

import random

from memspec.program import eval_args
from memspec.specs import gen_hw
from memspec.specs.choose import ByteChooser


def _programs(n: int = 300):
    rng = random.Random(26)
    return [gen_hw.program(ByteChooser(bytes(rng.randrange(256) for _ in range(300))), None) for _ in range(n)]


def _few_kinds(monkeypatch, percent: int) -> int:
    """Programs with 12 or more operations after the tree is built, of at most 3 distinct calls."""
    monkeypatch.setattr(gen_hw, "SWARM_PERCENT", percent)
    monkeypatch.setattr(gen_hw, "PCID_PERCENT", 0)
    n = 0
    for p in _programs():
        names = [c.name for c in p.calls]
        tail = names[names.index("mov_cr3") + 1:] if "mov_cr3" in names else []
        n += len(tail) >= 12 and len(set(tail)) <= 3
    return n


def test_swarm_programs_are_long_runs_of_a_few_operations(monkeypatch) -> None:
    percent = gen_hw.SWARM_PERCENT
    without, with_swarm = _few_kinds(monkeypatch, 0), _few_kinds(monkeypatch, percent)
    assert with_swarm >= 2 * without + 10, (without, with_swarm)     # measured: 4 and 64 of 300


def test_a_changed_leaf_is_read_back_with_its_neighbours() -> None:
    shaped = 0
    for p in _programs():
        calls = [(c.name, eval_args(c, {})) for c in p.calls]
        for i in range(len(calls) - 4):
            name, args = calls[i]
            if name != "set_pte":
                continue
            j = i + 1 + (calls[i + 1][0] == "invlpg")
            reads = calls[j:j + 4]
            las = [a[0] for n, a in reads if n == "access"]
            if len(las) >= 2 and reads[-1][0] == "read_pte" and reads[-1][1][:2] == args[:2] \
                    and any(abs(x - las[0]) in (0x1000, 0x200000, 0x40000000) for x in las[1:]):
                shaped += 1
                break
    assert shaped >= 20, shaped
