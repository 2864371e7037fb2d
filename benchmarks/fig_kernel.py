"""kernel_diff_vs_raw: calls judged per second on the ``linux`` target vs the same calls raw through ctypes.

Numerator: a POSIX program of N rounds of ``mmap`` (anonymous, 4 KiB), ``mprotect``
and ``munmap`` runs on the ``linux`` target (one forked child runs the whole program
and streams back each call's outcome and the final memory map) while the model
judges every call as its outcome arrives (``specs.judge.judge`` on ``LinuxTarget.stream``,
invariants on).
Denominator: the same 3N calls made raw in this process through ctypes
(libc ``mmap``/``mprotect``/``munmap`` with declared argument types), no judging.
"""

from __future__ import annotations

import ctypes
import sys
import time

from memspec.commands.bench import Pair, Unavailable

NAME = "kernel_diff_vs_raw"
GOAL = 0.3
UNIT = "calls/s"
NUMERATOR = "calls judged/s: a mmap/mprotect/munmap program run on `linux`, judged call by call by the model as the outcomes stream in"
DENOMINATOR = "the same calls issued raw through ctypes in this process, no judging"

PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20


def program(n: int):
    from memspec.program import parse
    lines = []
    for i in range(n):
        lines += [f"a{i} = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)",
                  f"mprotect(a{i}, 4096, PROT_READ)", f"munmap(a{i}, 4096)"]
    return parse("\n".join(lines) + "\n")


def libc_calls() -> tuple:
    libc = ctypes.CDLL(None, use_errno=True)
    mmap, mprotect, munmap = libc.mmap, libc.mprotect, libc.munmap
    mmap.restype = ctypes.c_void_p
    mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    mprotect.restype = munmap.restype = ctypes.c_int
    mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return mmap, mprotect, munmap


def raw_rate(n: int) -> float:
    mmap, mprotect, munmap = libc_calls()
    t0 = time.perf_counter()
    for _ in range(n):
        a = mmap(None, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        mprotect(a, 4096, PROT_READ)
        munmap(a, 4096)
    return 3 * n / (time.perf_counter() - t0)


def judged(target, prog, facts) -> tuple[float, float, float]:
    """(judged calls/s overall, calls/s of the target run alone, calls/s of the judging alone).

    Overall: the program's outcomes judged as the child writes them (``LinuxTarget.stream``),
    the judge on this process's core while the child runs on the other.  Then, for the
    breakdown, the program run alone and that run judged alone."""
    from memspec.specs.judge import judge
    n = len(prog.calls)
    t0 = time.perf_counter()
    j = judge(prog, target.stream(prog), target.name, facts)
    t1 = time.perf_counter()
    if j.failure is not None:
        raise Unavailable(f"the judged run failed ({j.failure.clause}): fix that before timing it")
    run = target.run(prog)
    t2 = time.perf_counter()
    judge(prog, run, target.name, facts)
    t3 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1), n / (t3 - t2)


def setup(quick: bool) -> Pair:
    if not sys.platform.startswith("linux"):
        raise Unavailable("the linux target needs Linux")
    from memspec.targets.linux import LinuxTarget
    n = 300 if quick else 1000
    prog = program(n)
    target = LinuxTarget(timeout=60.0)
    facts = target.facts()
    parts: dict[str, list[float]] = {"target_only": [], "judge_only": []}

    def numerator() -> float:
        rate, run_only, judge_only = judged(target, prog, facts)
        parts["target_only"].append(run_only)
        parts["judge_only"].append(judge_only)
        return rate

    def profile() -> None:
        # the judging half runs in this process; the target half is profiled in-process too
        # (the child's loop, without the fork), so one profile shows both
        import os
        from memspec.specs.judge import judge
        from memspec.targets import linux_child as L
        run = target.run(prog)
        judge(prog, run, target.name, facts)
        runner = L.Runner()
        try:
            L.run_calls(runner, prog, "end", os.open(os.devnull, os.O_WRONLY))
        finally:
            runner.k.cleanup()

    return Pair(numerator, lambda: raw_rate(n), profile=profile, parts=parts,
                note=f"{n} rounds of mmap + mprotect + munmap ({3 * n} calls) per sample")
