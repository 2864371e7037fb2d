"""kernel_diff_vs_raw: calls judged per second on the ``linux`` target vs the same calls raw through ctypes.

Numerator: a POSIX program of N rounds of ``mmap`` (anonymous, 4 KiB), ``mprotect``
and ``munmap`` runs on the ``linux`` target as users get it (the native agent where gcc
builds it: the program's calls pipelined, each outcome read as the agent answers; else the
forked Python child) while the model judges every call as its outcome arrives, in a second
process (``fuzz/judge_process.JudgeProcess.judge_stream`` on the target's ``stream``,
invariants on).  The breakdown times the run alone, the judging alone, the two one after the
other in this process, the stream judged in this process as it comes, and the Python child's
run alone (``linux-py``).
Denominator: the same 3N calls made raw in this process through ctypes
(libc ``mmap``/``mprotect``/``munmap`` with declared argument types), no judging.
"""

from __future__ import annotations

import ctypes
import sys
import time

from memspec.commands.bench import JudgedBeside, Pair, Unavailable

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
    from memspec.specs.judge import judge
    calls = len(prog.calls)
    beside = JudgedBeside(target, prog, facts, one_process="run_then_judge")
    parts = beside.parts
    parts["judged_in_one_process"] = []         # the stream judged here, as it comes: no second process
    parts["linux_py_target_only"] = []

    def numerator() -> float:
        rate = beside.sample(calls)
        t0 = time.perf_counter()
        judge(prog, target.stream(prog), target.name, facts)
        t1 = time.perf_counter()
        python_child.run(prog)
        parts["judged_in_one_process"].append(calls / (t1 - t0))
        parts["linux_py_target_only"].append(calls / (time.perf_counter() - t1))
        return rate

    def profile() -> None:
        # this process's side: the judging, and the target's reading of the answers (the agent's
        # own side is C; linux-py's child loop is profiled by benchmarks/bench_compiled.py's runs)
        from memspec.specs.judge import judge
        judge(prog, target.stream(prog), target.name, facts)

    def close() -> None:
        beside.close()
        target.close()
        python_child.close()

    return Pair(numerator, lambda: raw_rate(n), close=close, profile=profile, parts=parts,
                note=f"{n} rounds of mmap + mprotect + munmap ({3 * n} calls) per sample, on `{target.name}` "
                     f"({type(target).__name__})")
