"""Address-space layout randomisation as an allowed set with a randomness claim.

Linux x86-64 (arch/x86/mm/mmap.c, fs/binfmt_elf.c, Documentation/admin-guide/
sysctl/kernel.rst randomize_va_space) randomises, per exec:

* the mmap base by ``mmap_rnd_bits`` random bits at page granularity
  (``arch_mmap_rnd``: ``(get_random_long() & ((1 << mmap_rnd_bits) - 1)) << PAGE_SHIFT``);
* the stack top by 22 bits of pages (``STACK_RND_MASK`` = 0x3fffff);
* the brk start by up to 32 MiB (``arch_randomize_brk``: 0x02000000), only when
  ``randomize_va_space`` is 2;
* nothing at all under ``personality(ADDR_NO_RANDOMIZE)`` or when
  ``randomize_va_space`` is 0.

The claim for a region with k random bits: over N independent samples each of
those bits takes both values.  If a bit is uniformly random, the chance it shows
one value in all N samples is 2^(1-N); the test's false-alarm probability is at
most k * 2^(1-N) (the union bound) -- for k = 28 and N = 64, below 1e-17.
Worked example: 64 layouts whose mmap bases differ only in bits 12..19 fail
``linux.aslr.mmap-base-bits`` (8 bits seen, 28 configured).
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_SHIFT = 12
STACK_RND_BITS = 22
BRK_RND_BITS = 13          # 32 MiB of pages: 2^25 / 2^12


@dataclass(frozen=True, slots=True)
class AslrConfig:
    randomize_va_space: int = 2
    mmap_rnd_bits: int = 28
    no_randomize: bool = False     # personality(ADDR_NO_RANDOMIZE) in the sampled processes

    @property
    def active(self) -> bool:
        return self.randomize_va_space > 0 and not self.no_randomize


@dataclass(frozen=True, slots=True)
class RegionClaim:
    region: str            # "mmap", "stack", "brk", "vdso"
    clause: str
    bits: tuple[int, ...]  # the bit positions that must vary (empty: must not vary at all)
    exact_bits: bool = True   # False: "randomised", at least 8 of the listed bits must vary


def claims(c: AslrConfig) -> list[RegionClaim]:
    """What the configuration promises about each region's base address."""
    if not c.active:
        return [RegionClaim(r, "linux.aslr.no-randomize-fixed", ()) for r in ("mmap", "stack", "brk", "vdso")]
    out = [
        RegionClaim("mmap", "linux.aslr.mmap-base-bits", tuple(range(PAGE_SHIFT, PAGE_SHIFT + c.mmap_rnd_bits))),
        RegionClaim("stack", "linux.aslr.stack-bits", tuple(range(PAGE_SHIFT, PAGE_SHIFT + STACK_RND_BITS))),
        RegionClaim("vdso", "linux.aslr.vdso-randomised", tuple(range(PAGE_SHIFT, PAGE_SHIFT + 20)), exact_bits=False),
    ]
    if c.randomize_va_space >= 2:
        out.append(RegionClaim("brk", "linux.aslr.brk-bits", tuple(range(PAGE_SHIFT, PAGE_SHIFT + BRK_RND_BITS))))
    return out


def varying_bits(samples: list[int]) -> int:
    """The bits that took both values across the samples (a mask)."""
    mask = 0
    for s in samples[1:]:
        mask |= s ^ samples[0]
    return mask


@dataclass(frozen=True, slots=True)
class Verdict:
    region: str
    clause: str
    ok: bool
    samples: int
    configured_bits: int
    observed_bits: int
    false_alarm: float     # upper bound on P(fail | the claim holds)
    detail: str


def judge_region(claim: RegionClaim, samples: list[int]) -> Verdict:
    n = len(samples)
    varying = varying_bits(samples)
    observed = bin(varying).count("1")
    aligned = all(s % (1 << PAGE_SHIFT) == 0 for s in samples)
    if not claim.bits:
        ok = varying == 0
        return Verdict(claim.region, claim.clause, ok, n, 0, observed, 0.0,
                       "identical in every sample" if ok else f"{observed} bits varied: {varying:#x}")
    want = 0
    for b in claim.bits:
        want |= 1 << b
    missing = want & ~varying
    if claim.exact_bits:
        ok = missing == 0 and aligned
        alarm = min(1.0, len(claim.bits) * 2.0 ** (1 - n))
        detail = ("all configured bits varied" if not missing else f"bits never varied: {missing:#x}")
    else:
        ok = bin(want & varying).count("1") >= 8 and aligned
        alarm = min(1.0, len(claim.bits) * 2.0 ** (1 - n))
        detail = f"{bin(want & varying).count('1')} of {len(claim.bits)} candidate bits varied"
    if not aligned:
        detail += "; a base was not page aligned (linux.aslr.page-aligned)"
    return Verdict(claim.region, claim.clause, ok, n, len(claim.bits), observed, alarm, detail)


def judge_layouts(c: AslrConfig, layouts: list[dict[str, int]]) -> list[Verdict]:
    """Judge sampled layouts (one dict region -> base address per exec'd process)."""
    out = []
    for claim in claims(c):
        samples = [lay[claim.region] for lay in layouts if claim.region in lay]
        if len(samples) < 2:
            out.append(Verdict(claim.region, claim.clause, True, len(samples), len(claim.bits), 0, 1.0,
                               "unknown: fewer than two samples show this region"))
            continue
        out.append(judge_region(claim, samples))
    bases = [v for lay in layouts for k, v in lay.items() if k in ("mmap", "stack", "brk", "vdso")]
    bad = [b for b in bases if b % (1 << PAGE_SHIFT)]
    out.append(Verdict("all", "linux.aslr.page-aligned", not bad, len(bases), 0, 0, 0.0,
                       "every base page aligned" if not bad else f"unaligned: {', '.join(hex(b) for b in bad[:3])}"))
    return out
