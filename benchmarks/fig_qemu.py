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

import time

from memspec.commands.bench import Pair, Unavailable, load_module

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
    from memspec.fuzz.judge_process import JudgeProcess
    from memspec.program import parse
    from memspec.specs.judge import judge
    prog = parse(hw.program_text(n))      # parsed once, outside the timing (bench_hw times it the same way)
    facts = q.facts()
    judge(prog, q.run(prog), "qemu", facts)     # the judge's imports and caches, before the fork
    # the judge in a second process, as `check` runs it, forked once
    jp = JudgeProcess(lambda p, r: judge(p, r, "qemu", facts))
    parts: dict[str, list[float]] = {"target_only": [], "judge_only": [], "one_process": []}

    def judged() -> float:
        t0 = time.perf_counter()
        j = jp.judge_stream(prog, q.stream(prog))
        t1 = time.perf_counter()
        if j.failure is not None:
            raise Unavailable(f"the judged run failed ({j.failure.clause}): fix that before timing it")
        run = q.run(prog)
        t2 = time.perf_counter()
        judge(prog, run, "qemu", facts)
        t3 = time.perf_counter()
        parts["target_only"].append(n / (t2 - t1))
        parts["judge_only"].append(n / (t3 - t2))
        parts["one_process"].append(n / (t3 - t1))     # run, then judge, in this process
        return n / (t1 - t0)

    def profile() -> None:
        # this process's side is the run and the forwarding; the judging is profiled where it runs here
        judge(prog, q.run(prog), "qemu", facts)

    def close() -> None:
        jp.close()
        q.close()

    return Pair(judged, lambda: hw.bare_rate(q, n), close=close, profile=profile, parts=parts,
                note=f"{n} PTE changes + checked translations per sample; judged in a second process as the outcomes stream")
