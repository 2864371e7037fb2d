"""qemu_diff_vs_unicorn: judged translations per second on the ``qemu`` target vs bare unicorn.

Both sides come from ``benchmarks/bench_hw.py`` (the hw layer's own benchmark):
the bare side writes a PTE, writes CR3 and runs one guest load with nothing but
unicorn calls; the judged side runs the same steps as ``set_pte`` + ``mov_cr3`` +
``access`` program calls on the ``qemu`` target (its ``stream``: a chunk of calls at a time)
while the hw model judges each call in a second process as the outcomes arrive
(``fuzz/judge_process.JudgeProcess``, as ``check`` judges).  The breakdown times the run
alone, the judging alone, and both one after the other in this process (``one_process``).
One unit is one PTE change plus one checked translation.
"""

from __future__ import annotations

from memspec.commands.bench import JudgedBeside, Pair, Unavailable, load_module

NAME = "qemu_diff_vs_unicorn"
GOAL = 0.7
UNIT = "translations/s"
NUMERATOR = "translations judged/s on `qemu` (set_pte + mov_cr3 + access as a program, judged by the hw model in a second process as they run)"
DENOMINATOR = "bare unicorn: PTE write + CR3 write + one guest load"


def setup(quick: bool) -> Pair:
    try:
        import unicorn  # noqa: F401
    except ImportError:
        raise Unavailable("unicorn is not installed (pip install memspec[qemu])") from None
    try:
        hw = load_module("bench_hw.py")
    except FileNotFoundError:
        raise Unavailable("benchmarks/bench_hw.py (the hw layer's benchmark) is missing") from None
    from memspec.errors import TargetError
    try:
        q = hw.QemuTarget()
    except TargetError as e:
        raise Unavailable(f"the qemu target refused to start: {e}") from None
    n = 500 if quick else 3000
    hw.bare_rate(q, 200)       # warm QEMU's translation cache, as bench_hw does
    from memspec.program import parse
    prog = parse(hw.program_text(n))      # parsed once, outside the timing (bench_hw times it the same way)
    beside = JudgedBeside(q, prog, q.facts())

    def close() -> None:
        beside.close()
        q.close()

    return Pair(lambda: beside.sample(n), lambda: hw.bare_rate(q, n), close=close, profile=beside.profile,
                parts=beside.parts,
                note=f"{n} PTE changes + checked translations per sample; judged in a second process as the outcomes stream")
