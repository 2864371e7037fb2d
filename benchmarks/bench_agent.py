"""The native agent against the ``linux`` target: programs per second, run only (no judging).

Four workloads, each on ``linux-py`` (a forked Python child per program, ctypes system calls)
and on ``linux-agent`` (the C agent, one process per program, the line protocol, a program's
calls pipelined: what the ``linux`` target runs where gcc builds the agent); with
``--qemu-user`` also on ``qemu-user`` (the agent under qemu-x86_64):

* ``suite``:  the os directed suite's programs that every target runs (the same list);
* ``mmap``:   the one-call program of ``linux_program_vs_fork`` (an anonymous mmap, then the
  final memory map), the figure whose numerator is the linux target;
* ``kernel``: kernel_diff_vs_raw's program (1000 rounds of mmap + mprotect + munmap), run alone:
  calls/s, the figure's "target only" part;
* ``fork``:   bare fork + _exit + waitpid from Python (linux_program_vs_fork's denominator).

Usage::

    python benchmarks/bench_agent.py [REPEATS] [--qemu-user]

prints the best of REPEATS (default 5) per workload and target, and the agent's speed-up; for
``kernel`` also the median, and the CPU time per call of this process (writing the requests,
reading and decoding the answers) and of the agent's processes (getrusage of the children).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time

from memspec.program import parse
from memspec.records import RunStatus
from memspec.specs.directed import suite_programs
from memspec.targets.registry import make_target

MMAP = parse("a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
ROUNDS = 1000


def kernel_program(n: int = ROUNDS):
    """kernel_diff_vs_raw's program (benchmarks/fig_kernel.py): n rounds of mmap, mprotect, munmap."""
    return parse("".join(f"a{i} = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                         f"mprotect(a{i}, 4096, PROT_READ)\nmunmap(a{i}, 4096)\n" for i in range(n)))


def kernel_rate(name: str, repeats: int) -> tuple[float, float, float, float]:
    """(best calls/s, median calls/s, this process's CPU us a call, the target's processes' CPU us
    a call) of the program run alone, on a target of its own: its processes' CPU is counted once
    they are waited for, when it is closed."""
    prog = kernel_program()
    n = len(prog.calls)
    before = children_cpu()
    target = make_target(name, timeout=30.0)
    target.run(prog)
    rates, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        r = target.run(prog)
        rates.append(n / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / n * 1e6)
        if r.status is not RunStatus.OK:
            raise SystemExit(f"{target.name}: {r.status.name} {r.message}")
    target.close()
    theirs = (children_cpu() - before) / ((repeats + 1) * n) * 1e6
    return max(rates), statistics.median(rates), statistics.median(cpu), theirs


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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
    names = ["linux-py", "linux-agent"] + (["qemu-user"] if "--qemu-user" in argv else [])
    targets = {n: make_target(n, timeout=30.0) for n in names}
    common = [p for _, p in suite_programs("os")
              if all(all(c.name in t.calls for c in p.calls) for t in targets.values())]
    print(f"{len(common)} suite programs every target runs; best of {repeats}")
    out: dict[str, dict[str, float]] = {}
    kernel: dict[str, tuple[float, float, float, float]] = {}
    for n, t in targets.items():
        out[n] = {"suite": rate(t, common, repeats), "mmap": rate(t, [MMAP] * 60, repeats)}
        t.close()
    for n in names:
        kernel[n] = kernel_rate(n, repeats)
    fork = max(fork_rate(60) for _ in range(repeats))
    for w in ("suite", "mmap"):
        row = "  ".join(f"{n} {out[n][w]:8.1f}" for n in names)
        print(f"{w:6s} programs/s: {row}  agent/linux-py x{out['linux-agent'][w] / out['linux-py'][w]:.2f}")
    for n in names:
        best, median, here, agent = kernel[n]
        print(f"kernel calls/s on {n:11s}: best {best:9.0f}  median {median:9.0f}  "
              f"CPU a call: this process {here:5.2f} us, the target's processes {agent:5.2f} us")
    print(f"fork   {fork:8.1f}/s: mmap program vs fork: linux-py {out['linux-py']['mmap'] / fork:.2f}, "
          f"linux-agent {out['linux-agent']['mmap'] / fork:.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


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
