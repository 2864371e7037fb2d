"""WalkMemo (the hw model's remembered walks) against the plain walk, while the tables change."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.model.pte import (CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PKE, CR4_SMAP, CR4_SMEP, EFER_LMA,
                               EFER_LME, EFER_NXE, EXEC, READ, WRITE, Mode)
from memspec.model.walk import Path, WalkMemo, walk

PAGES = 12                  # tables live in the first 12 pages of physical memory
FLAGS = (1, 2, 4, 0x20, 0x40, 0x80, 0x100, 1 << 63, 1 << 59, 1 << 45, 1 << 13, 1 << 22, 0xE00)


def _entry(rng: random.Random) -> int:
    e = rng.randrange(PAGES + 2) << 12          # some point past the tables (the pattern-free zero there)
    for bit in FLAGS:
        if rng.random() < (0.85 if bit in (1, 2, 4) else 0.1):
            e |= bit
    return e


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, CR4_SMEP | CR4_SMAP, CR4_PKE, CR4_LA57]),
       st.sampled_from([0, EFER_NXE]), st.sampled_from([36, 46, 52]), st.booleans())
def test_memo_equals_walk_as_entries_change(seed: int, cr4: int, nxe: int, maxphy: int, page1g: bool) -> None:
    rng = random.Random(seed)
    mem: dict[int, int] = {}
    indices = rng.sample(range(511), 4)     # every table has entries at the same few indices
    for t in range(PAGES):
        for i in indices:
            mem[t * 4096 + 8 * i] = _entry(rng)
    mode = Mode(cr0=CR0_PE | CR0_PG | rng.choice([0, CR0_WP]), cr4=CR4_PAE | cr4, efer=EFER_LME | EFER_LMA | nxe,
                maxphy=maxphy)
    # few addresses, built from those indices, so walks go deep (many to a page) and repeat (memo hits)
    las = [sum(rng.choice(indices) << (12 + 9 * k) for k in range(5)) & ((1 << 57) - 1) | 8 * rng.randrange(4)
           for _ in range(6)]
    memo = WalkMemo()
    read = lambda pa: mem.get(pa, 0)        # noqa: E731
    for step in range(300):
        if rng.random() < 0.3:              # an entry rewritten: the next walks must see it
            addr = rng.choice(sorted(mem))
            mem[addr] = _entry(rng) if rng.random() < 0.7 else mem[addr] ^ rng.choice(FLAGS)
        la, acc, cpl = rng.choice(las), rng.choice([READ, WRITE, EXEC]), rng.choice([0, 3])
        root = rng.choice([0, 0x1000])
        want = walk(read, mode, root, la, acc, cpl, page1g)
        got = memo.walk(read, mode, root, la, acc, cpl, page1g)
        assert got == want, (step, hex(la), acc, cpl)


def test_a_rewritten_leaf_is_walked_again() -> None:
    """The memo keys on every entry down the path: the PTE's new frame is seen, and the old walk comes
    back (the same object) when the old value does."""
    mem = {0x0: 0x1000 | 7, 0x1000: 0x2000 | 7, 0x2000: 0x3000 | 7, 0x3000 + 8 * 5: 0x5000 | 7}
    read = lambda pa: mem.get(pa, 0)        # noqa: E731
    mode = Mode(cr0=CR0_PE | CR0_PG | CR0_WP, cr4=CR4_PAE, efer=EFER_LME | EFER_LMA | EFER_NXE)
    memo = WalkMemo()
    la = 0x5008
    first = memo.walk(read, mode, 0, la, READ, 0)
    assert isinstance(first, Path) and first.pa(la) == 0x5008
    mem[0x3000 + 8 * 5] = 0x6000 | 7
    assert memo.walk(read, mode, 0, la, READ, 0).pa(la) == 0x6008
    mem[0x2000] = 0x3000 | 6                # the PDE no longer present: a fault, not the cached path
    assert not isinstance(memo.walk(read, mode, 0, la, READ, 0), Path)
    mem[0x2000] = 0x3000 | 7
    mem[0x3000 + 8 * 5] = 0x5000 | 7
    assert memo.walk(read, mode, 0, la, READ, 0) is first
