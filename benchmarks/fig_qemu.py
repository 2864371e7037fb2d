"""qemu_diff_vs_unicorn: judged translations per second on the ``qemu`` target vs bare unicorn.

Both sides come from ``benchmarks/bench_hw.py`` (the hw layer's own benchmark):
the bare side writes a PTE, writes CR3 and runs one guest load with nothing but
unicorn calls; the judged side runs the same steps as ``set_pte`` + ``mov_cr3`` +
``access`` program calls on the ``qemu`` target and judges each with the hw model.
One unit is one PTE change plus one checked translation.
"""

from __future__ import annotations

from memspec.commands.bench import Pair, Unavailable, load_module

NAME = "qemu_diff_vs_unicorn"
GOAL = 0.7
UNIT = "translations/s"
NUMERATOR = "translations judged/s on `qemu` (set_pte + mov_cr3 + access as a program, judged by the hw model)"
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

    parts: dict[str, list[float]] = {"target_only": []}

    def judged() -> float:
        try:
            rate, target_only = hw.judged_rate(q, n)
            parts["target_only"].append(target_only)
            return rate
        except SystemExit as e:     # bench_hw reports a failed judgement this way
            raise Unavailable(str(e)) from None

    from memspec.program import parse
    from memspec.specs.judge import judge
    prog = parse(hw.program_text(n))      # parsed once, outside the profile (bench_hw times it the same way)

    def profile() -> None:
        judge(prog, q.run(prog), "qemu", q.facts())

    return Pair(judged, lambda: hw.bare_rate(q, n), close=q.close, profile=profile, parts=parts,
                note=f"{n} PTE changes + checked translations per sample")
