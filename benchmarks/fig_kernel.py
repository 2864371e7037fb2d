"""kernel_diff_vs_raw: calls judged per second on the ``linux`` target vs the same calls raw through ctypes.

Numerator: a POSIX program of N rounds of ``mmap`` (anonymous, 4 KiB), ``mprotect``
and ``munmap`` runs on the ``linux`` target as users get it (the native agent where gcc
builds it: the program's calls pipelined, each outcome read as the agent answers; else the
forked Python child) while the model judges every call as its outcome arrives, in a second
process (``fuzz/judge_process.JudgeProcess.judge_stream`` on the target's ``stream``,
invariants on).  The breakdown times the run alone, the judging alone, the stream judged in
this process, and the Python child's run alone (``linux-py``).
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
NUMERATOR = "calls judged/s: a mmap/mprotect/munmap program run on `linux` (the native agent), judged call by call by the model in a second process as the outcomes stream in"
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


def judged(target, prog, facts, jp) -> tuple[float, float, float, float]:
    """(judged calls/s overall, calls/s of the target run alone, calls/s of the judging alone,
    judged calls/s with the judge in this process).

    Overall: the program's outcomes forwarded as the target writes them (its ``stream``) to the
    judge in a second process (``jp``), which judges them on the other core.  Then, for the
    breakdown, the program run alone, that run judged alone, and the stream judged here, in the
    process that reads the target's answers (the numerator before the judge had its own process)."""
    from memspec.specs.judge import judge
    n = len(prog.calls)
    t0 = time.perf_counter()
    j = jp.judge_stream(prog, target.stream(prog))
    t1 = time.perf_counter()
    if j.failure is not None:
        raise Unavailable(f"the judged run failed ({j.failure.clause}): fix that before timing it")
    run = target.run(prog)
    t2 = time.perf_counter()
    judge(prog, run, target.name, facts)
    t3 = time.perf_counter()
    judge(prog, target.stream(prog), target.name, facts)
    t4 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1), n / (t3 - t2), n / (t4 - t3)


def setup(quick: bool) -> Pair:
    if not sys.platform.startswith("linux"):
        raise Unavailable("the linux target needs Linux")
    from memspec.targets.registry import make_target
    n = 300 if quick else 1000
    prog = program(n)
    target = make_target("linux", timeout=60.0)     # as users get it: the native agent where gcc builds it
    if not hasattr(target, "stream"):
        raise Unavailable(f"the linux target ({type(target).__name__}) cannot stream a run")
    python_child = make_target("linux-py", timeout=60.0)
    facts = target.facts()
    from memspec.fuzz.judge_process import JudgeProcess
    from memspec.specs.judge import judge
    judge(prog, target.run(prog), target.name, facts)     # the judge's imports and caches, before the fork
    jp = JudgeProcess(lambda p, r: judge(p, r, target.name, facts))
    parts: dict[str, list[float]] = {"target_only": [], "judge_only": [], "judged_in_one_process": [],
                                     "linux_py_target_only": []}

    def numerator() -> float:
        rate, run_only, judge_only, here = judged(target, prog, facts, jp)
        parts["target_only"].append(run_only)
        parts["judge_only"].append(judge_only)
        parts["judged_in_one_process"].append(here)
        t0 = time.perf_counter()
        python_child.run(prog)
        parts["linux_py_target_only"].append(n * 3 / (time.perf_counter() - t0))
        return rate

    def profile() -> None:
        # this process's side: the judging, and the target's reading of the answers (the agent's
        # own side is C; linux-py's child loop is profiled by benchmarks/bench_compiled.py's runs)
        from memspec.specs.judge import judge
        judge(prog, target.stream(prog), target.name, facts)

    def close() -> None:
        jp.close()
        target.close()
        python_child.close()

    return Pair(numerator, lambda: raw_rate(n), close=close, profile=profile, parts=parts,
                note=f"{n} rounds of mmap + mprotect + munmap ({3 * n} calls) per sample, on `{target.name}` "
                     f"({type(target).__name__})")
