"""check_overlap: programs judged per second with the judge overlapping the run, against max(run, judge).

The ``linux`` target runs each program in a forked child, so while it runs the harness
only waits.  ``memspec check`` judges program k while program k+1 runs
(fuzz/pipeline.RunAhead).  Numerator: a stream of seeded random os programs, run and
judged that way.  Denominator: the rate the stream would have if its wall time were
max(run, judge): the same programs run one after the other (all runs timed together),
then judged one after the other (all judging timed together), n / max(the two).  A ratio
near 1 means the two overlap fully; the plain loop would give run x judge / (run + judge)
of it, 0.5 when the two are equal.
"""

from __future__ import annotations

import sys
import time

from memspec.commands.bench import Pair, Unavailable

NAME = "check_overlap"
GOAL = 0.9
UNIT = "programs/s"
NUMERATOR = "os programs run on `linux` and judged, the next one running while this one is judged"
DENOMINATOR = "n / max(time to run them all, time to judge them all), each measured alone"


def setup(quick: bool) -> Pair:
    if not sys.platform.startswith("linux"):
        raise Unavailable("the linux target needs Linux")
    from memspec.fuzz.layers import random_programs
    from memspec.fuzz.pipeline import RunAhead
    from memspec.specs.judge import judge
    from memspec.targets.linux import LinuxTarget
    target = LinuxTarget()
    facts = target.facts()
    programs = list(random_programs("os", 40 if quick else 150, 7, target.calls, facts))
    n = len(programs)
    parts: dict[str, list[float]] = {"run_only": [], "judge_only": []}

    def overlapped() -> float:
        t0 = time.perf_counter()
        with RunAhead(target, programs) as ra:
            for _tag, program, run in ra:
                judge(program, run, target.name, facts)
        return n / (time.perf_counter() - t0)

    def bound() -> float:
        t0 = time.perf_counter()
        runs = [target.run(p) for _, p in programs]
        t1 = time.perf_counter()
        for (_, p), run in zip(programs, runs):
            judge(p, run, target.name, facts)
        t2 = time.perf_counter()
        parts["run_only"].append(n / (t1 - t0))
        parts["judge_only"].append(n / (t2 - t1))
        return n / max(t1 - t0, t2 - t1)

    return Pair(overlapped, bound, parts=parts, note=f"{n} seeded random os programs per sample")
