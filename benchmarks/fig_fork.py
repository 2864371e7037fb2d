"""linux_program_vs_fork: programs per second on the ``linux`` target vs a bare fork from Python.

Numerator: one-call programs (an anonymous ``mmap``) run on the ``linux`` target,
a fresh forked child per program, outcome and final memory map read back (the
target's ``run``; no judging).  Denominator: ``os.fork()`` + ``os._exit(0)`` in the
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
NUMERATOR = "programs/s run on `linux` (a fresh child per program, outcome and memory map read back)"
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
    from memspec.targets.linux import LinuxTarget
    n = 15 if quick else 60
    prog = parse("a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    target = LinuxTarget(timeout=30.0)

    def programs() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            r = target.run(prog)
            if r.status is not RunStatus.OK:
                raise Unavailable(f"the linux target did not run the program: {r.message}")
        return n / (time.perf_counter() - t0)

    def profile() -> None:
        # the child's side, in process: what each program pays besides the fork
        from memspec.targets import linux_child as L
        for _ in range(n):
            fd = os.open(os.devnull, os.O_WRONLY)
            L.child_batch(prog, "end", fd)

    return Pair(programs, lambda: fork_rate(n), profile=profile)
