"""The native agent against the ``linux`` target: programs per second, run only (no judging).

Three workloads, each on ``linux`` (a forked Python child per program, ctypes system calls)
and on ``linux-agent`` (the C agent, one process per program, the line protocol); with
``--qemu-user`` also on ``qemu-user`` (the agent under qemu-x86_64):

* ``suite``: the os directed suite's programs that every target runs (the same list);
* ``mmap``:  the one-call program of ``linux_program_vs_fork`` (an anonymous mmap, then the
  final memory map), the figure whose numerator is the linux target;
* ``fork``:  bare fork + _exit + waitpid from Python (that figure's denominator).

Usage::

    python benchmarks/bench_agent.py [REPEATS] [--qemu-user]

prints the best of REPEATS (default 5) per workload and target, and the agent's speed-up.
"""

from __future__ import annotations

import os
import sys
import time

from memspec.program import parse
from memspec.records import RunStatus
from memspec.specs.directed import suite_programs
from memspec.targets.registry import make_target

MMAP = parse("a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")


def rate(target, programs, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in programs:
            r = target.run(p)
            if r.status not in (RunStatus.OK, RunStatus.REFUSED):
                raise SystemExit(f"{target.name}: {r.status.name} {r.message}")
        best = max(best, len(programs) / (time.perf_counter() - t0))
    return best


def main(argv: list[str]) -> None:
    repeats = int(next((a for a in argv if a.isdigit()), "5"))
    names = ["linux", "linux-agent"] + (["qemu-user"] if "--qemu-user" in argv else [])
    targets = {n: make_target(n, timeout=30.0) for n in names}
    common = [p for _, p in suite_programs("os")
              if all(all(c.name in t.calls for c in p.calls) for t in targets.values())]
    print(f"{len(common)} suite programs every target runs; best of {repeats}")
    out: dict[str, dict[str, float]] = {}
    for n, t in targets.items():
        out[n] = {"suite": rate(t, common, repeats), "mmap": rate(t, [MMAP] * 60, repeats)}
    fork = max(fork_rate(60) for _ in range(repeats))
    for w in ("suite", "mmap"):
        row = "  ".join(f"{n} {out[n][w]:8.1f}" for n in names)
        print(f"{w:6s} programs/s: {row}  agent/linux x{out['linux-agent'][w] / out['linux'][w]:.2f}")
    print(f"fork   {fork:8.1f}/s: mmap program vs fork: linux {out['linux']['mmap'] / fork:.2f}, "
          f"linux-agent {out['linux-agent']['mmap'] / fork:.2f}")
    for t in targets.values():
        t.close()


def fork_rate(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return n / (time.perf_counter() - t0)

if __name__ == "__main__":
    main(sys.argv[1:])
