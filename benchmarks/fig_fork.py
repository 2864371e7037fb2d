"""linux_program_vs_fork: programs per second on the ``linux`` target vs a bare fork from Python.

Numerator: one-call programs (an anonymous ``mmap``) run on the ``linux`` target as
users get it (the native agent where gcc builds it: a fresh C process per program; else
the forked Python child), outcome and final memory map read back (the target's ``run``;
no judging).  The breakdown times the Python child (``linux-py``) on the same program.  Denominator: ``os.fork()`` + ``os._exit(0)`` in the
child + ``os.waitpid`` in the parent.
"""

from __future__ import annotations

import os
import sys
import time

from memspec.commands.bench import Pair, Unavailable

NAME = "linux_program_vs_fork"
GOAL = 0.8
UNIT = "programs/s"
NUMERATOR = "programs/s run on `linux` (a fresh process per program, outcome and memory map read back)"
DENOMINATOR = "bare fork + _exit + waitpid from Python"


def fork_rate(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return n / (time.perf_counter() - t0)


def setup(quick: bool) -> Pair:
    if not sys.platform.startswith("linux"):
        raise Unavailable("the linux target needs Linux")
    from memspec.program import parse
    from memspec.records import RunStatus
    from memspec.targets.registry import make_target
    n = 15 if quick else 60
    prog = parse("a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    target = make_target("linux", timeout=30.0)
    python_child = make_target("linux-py", timeout=30.0)
    parts: dict[str, list[float]] = {"linux_py": []}

    def rate(t) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            r = t.run(prog)
            if r.status is not RunStatus.OK:
                raise Unavailable(f"the {t.name} target did not run the program: {r.message}")
        return n / (time.perf_counter() - t0)

    def programs() -> float:
        parts["linux_py"].append(rate(python_child))
        return rate(target)

    def profile() -> None:
        # this process's side of the runs (the agent's is C: see benchmarks/bench_agent.py)
        for _ in range(n):
            target.run(prog)

    def close() -> None:
        target.close()
        python_child.close()

    return Pair(programs, lambda: fork_rate(n), close=close, profile=profile, parts=parts,
                note=f"{n} one-call programs per sample on `{target.name}` ({type(target).__name__})")
