"""ASLR: the statistical claims catch too little randomness, and the kernel passes them."""

from __future__ import annotations

import random

from memspec.model.aslr import AslrConfig, judge_layouts
from memspec.targets.aslr import config, parse_layout, sample_layouts


def layouts(rng: random.Random, n: int, mmap_bits: int = 28, stack_bits: int = 22, brk_bits: int = 13,
            vdso_bits: int = 20) -> list[dict[str, int]]:
    def r(bits: int) -> int:
        return rng.getrandbits(bits) << 12 if bits else 0
    return [{"mmap": 0x7F0000000000 - r(mmap_bits), "stack": 0x7FFF00000000 - r(stack_bits),
             "brk": 0x555555554000 + r(brk_bits), "vdso": 0x7FF000000000 - r(vdso_bits)} for _ in range(n)]


def verdicts(cfg: AslrConfig, lays: list[dict[str, int]]) -> dict[str, bool]:
    return {v.clause: v.ok for v in judge_layouts(cfg, lays)}


def test_full_randomness_passes_and_each_shortfall_fails_its_clause() -> None:
    rng = random.Random(1)
    cfg = AslrConfig(2, 28)
    assert all(verdicts(cfg, layouts(rng, 64)).values())
    assert not verdicts(cfg, layouts(rng, 64, mmap_bits=8))["linux.aslr.mmap-base-bits"]
    assert not verdicts(cfg, layouts(rng, 64, stack_bits=16))["linux.aslr.stack-bits"]
    assert not verdicts(cfg, layouts(rng, 64, brk_bits=0))["linux.aslr.brk-bits"]
    assert not verdicts(cfg, layouts(rng, 64, vdso_bits=0))["linux.aslr.vdso-randomised"]


def test_no_randomize_requires_identical_layouts_and_alignment_is_checked() -> None:
    rng = random.Random(2)
    fixed = AslrConfig(2, 28, no_randomize=True)
    assert verdicts(fixed, layouts(rng, 8, 0, 0, 0, 0))["linux.aslr.no-randomize-fixed"]
    assert not verdicts(fixed, layouts(rng, 8))["linux.aslr.no-randomize-fixed"]
    lays = layouts(rng, 8)
    lays[3]["mmap"] += 8
    assert not verdicts(AslrConfig(2, 28), lays)["linux.aslr.page-aligned"]


def test_brk_is_only_claimed_when_randomize_va_space_is_2() -> None:
    rng = random.Random(3)
    assert "linux.aslr.brk-bits" not in verdicts(AslrConfig(1, 28), layouts(rng, 16, brk_bits=0))


def test_layout_parser_reads_the_regions() -> None:
    maps = ("555555554000-555555556000 r--p 00000000 00:00 0 /usr/bin/python3\n"
            "555555600000-555555621000 rw-p 00000000 00:00 0 [heap]\n"
            "7ffff7fc3000-7ffff7fc7000 r--p 00000000 00:00 0 [vvar]\n"
            "7ffff7fc7000-7ffff7fc9000 r-xp 00000000 00:00 0 [vdso]\n"
            "7ffff7fc9000-7ffff7ffd000 r--p 00000000 00:00 0 /usr/lib/ld.so\n"
            "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]\n")
    lay = parse_layout(maps)
    assert lay == {"stack": 0x7FFFFFFFF000, "brk": 0x555555600000, "vdso": 0x7FFFF7FC7000, "mmap": 0x7FFFF7FFD000}


def test_the_running_kernel_randomises_as_configured() -> None:
    cfg = config()
    on = judge_layouts(AslrConfig(cfg["randomize_va_space"], cfg["mmap_rnd_bits"]), sample_layouts(40))
    off = judge_layouts(AslrConfig(cfg["randomize_va_space"], cfg["mmap_rnd_bits"], True), sample_layouts(6, True))
    bad = [v for v in on + off if not v.ok]
    assert not bad, bad
