"""check_overlap: programs judged per second with the judge overlapping the run, against max(run, judge).

The ``linux`` target runs each program in a process of the native agent, so while it runs the
harness only waits.  ``memspec check`` judges program k while program k+1 runs there: the
agent is sent program k+1 and runs it in its own process while this process judges program k
(fuzz/pipeline.RunAhead, ``judge_in="here"``, the default for a target that can ``start`` a
program).  Numerator: a stream of seeded random os programs, run and judged that way.  The
breakdown also times the other way, the judge in a second process up to ``RUN_AHEAD`` programs
behind the run (``second_process``: what ``compare`` and the fuzz loop do, and check on a target
that cannot start a program).  Denominator: the rate the stream would have if its wall time were
max(run, judge): the same programs run one after the other (all runs timed together),
then judged one after the other (all judging timed together), n / max(the two).  A ratio
near 1 means the two overlap fully; the plain loop would give run x judge / (run + judge)
of it, 0.5 when the two are equal.

Run as a script (``python benchmarks/fig_pipeline.py [N]``) it prints the same comparison for
the three loops that judge beside the run -- check's, compare's (linux and the model on the
same programs) and the fuzz driver's Python loop -- each with and without overlap in the same
run, interleaved, with the run alone, the judging alone and the ratio of each wall time to
max(run, judge).  The machine may be loaded by other work: compare the ratios within one run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from memspec.commands.bench import Pair, Unavailable

NAME = "check_overlap"
GOAL = 0.9
UNIT = "programs/s"
NUMERATOR = "os programs run on `linux` (the native agent) and judged, the next one running in the agent's process while this one is judged here"
DENOMINATOR = "n / max(time to run them all, time to judge them all), each measured alone"


def _linux() -> Any:
    if not sys.platform.startswith("linux"):
        raise Unavailable("the linux target needs Linux")
    from memspec.targets.registry import make_target
    return make_target("linux")        # as users get it: the native agent where gcc builds it


def setup(quick: bool) -> Pair:
    from memspec.fuzz.layers import random_programs
    from memspec.fuzz.pipeline import RUN_AHEAD, RunAhead
    from memspec.specs.judge import judge
    target = _linux()
    facts = target.facts()
    programs = list(random_programs("os", 40 if quick else 150, 7, target.calls, facts))
    n = len(programs)
    parts: dict[str, list[float]] = {"run_only": [], "judge_only": [], "second_process": []}

    def stream(judge_in: str | None) -> float:
        t0 = time.perf_counter()
        with RunAhead(target, programs, judge=lambda p, r: judge(p, r, target.name, facts), depth=RUN_AHEAD,
                      judge_in=judge_in) as ra:
            for _ in ra:
                pass
        return n / (time.perf_counter() - t0)

    def overlapped() -> float:
        rate = stream(None)         # as check does: here, where the target can start a program
        parts["second_process"].append(stream("process"))
        return rate

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


# -- the three loops, as a script -------------------------------------------------


def _timed(f: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _check_case(n: int) -> dict[str, Callable[[], Any]]:
    from memspec.fuzz.layers import random_programs
    from memspec.fuzz.pipeline import RUN_AHEAD, RunAhead
    from memspec.specs.judge import judge
    target = _linux()
    facts = target.facts()
    programs = list(random_programs("os", n, 7, target.calls, facts))
    runs: list[Any] = []

    def loop(ahead: bool) -> None:
        with RunAhead(target, programs, ahead=ahead, judge=lambda p, r: judge(p, r, target.name, facts),
                      depth=RUN_AHEAD) as ra:
            for _ in ra:
                pass
    return {"with": lambda: loop(True), "without": lambda: loop(False),
            "run": lambda: runs.__setitem__(slice(None), [target.run(p) for _, p in programs]),
            "judge": lambda: [judge(p, r, target.name, facts) for (_, p), r in zip(programs, runs)]}


def _compare_case(n: int) -> dict[str, Callable[[], Any]]:
    from memspec.commands.compare import _EveryTarget, _Ran
    from memspec.fuzz.layers import random_programs
    from memspec.fuzz.pipeline import RUN_AHEAD, RunAhead
    from memspec.fuzz.threeway import threeway
    from memspec.targets.model import ModelTarget
    targets = [_linux(), ModelTarget()]
    facts = {t.name: t.facts() for t in targets}
    calls = targets[0].calls
    programs = list(random_programs("os", n, 7, calls, facts["linux"]))
    each = _EveryTarget(targets)
    runs: list[Any] = []

    def compared(program: Any, ran: dict[str, Any]) -> Any:
        return threeway(program, [_Ran(t, ran[t.name], facts[t.name]) for t in targets], facts)

    def loop(ahead: bool) -> None:
        with RunAhead(each, programs, ahead=ahead, judge=compared, depth=RUN_AHEAD) as ra:
            for _ in ra:
                pass
    # the model target's run is in-process work: it counts as judging, with the comparison
    return {"with": lambda: loop(True), "without": lambda: loop(False),
            "run": lambda: runs.__setitem__(slice(None), [{"linux": targets[0].run(p)} for _, p in programs]),
            "judge": lambda: [compared(p, {**r, "model": targets[1].run(p)}) for (_, p), r in zip(programs, runs)]}


def _fuzz_case(n: int) -> dict[str, Callable[[], Any]]:
    from memspec.commands.fuzz_driver import Fuzzer, FuzzOptions
    from memspec.specs.judge import judge
    _linux()
    seen: list[Any] = []
    runs: list[Any] = []
    state: dict[str, Any] = {}

    def loop(ahead: bool) -> None:
        root = tempfile.mkdtemp(prefix="fig-pipeline-")
        f = Fuzzer(FuzzOptions(target="linux", layer="os", seconds=3600, seed=7, corpus=root + "/c",
                               findings=root + "/f", quiet=True, overlap=ahead, suite_seeds=False))
        judged = f.judged

        def note(data: bytes, program: Any, j: Any, keep: Any) -> None:
            if ahead:
                seen.append(program)
            judged(data, program, j, keep)
        f.judged = note                 # type: ignore[method-assign]
        if ahead:
            seen.clear()
            state["f"] = f
        f.run_python(limit=n)
        if not ahead:
            f.target.close()

    def run_alone() -> None:
        f = state["f"]
        runs[:] = [f.target.run(p) for p in seen]

    def judge_alone() -> None:
        f = state["f"]
        for p, r in zip(seen, runs):
            judge(p, r, f.target.name, f.facts, invariants=True)
    return {"with": lambda: loop(True), "without": lambda: loop(False), "run": run_alone, "judge": judge_alone}


def main(n: int = 60, repeat: int = 3) -> None:
    print(f"judging beside the run: {n} seeded random os programs on linux, {repeat} samples, interleaved; "
          "medians in seconds")
    print(f"{'loop':8s} {'with':>7s} {'without':>8s} {'run':>7s} {'judge':>7s} {'with/max':>9s} {'without/max':>12s}")
    for name, make in (("check", _check_case), ("compare", _compare_case), ("fuzz", _fuzz_case)):
        case = make(n)
        t: dict[str, list[float]] = {k: [] for k in ("with", "without", "run", "judge")}
        for i in range(repeat):
            order = ("with", "without") if i % 2 == 0 else ("without", "with")
            for k in order:
                t[k].append(_timed(case[k]))
                if k == "with":             # run and judge alone, on the programs that loop ran
                    t["run"].append(_timed(case["run"]))
                    t["judge"].append(_timed(case["judge"]))
        m = {k: statistics.median(v) for k, v in t.items()}
        bound = max(m["run"], m["judge"])
        print(f"{name:8s} {m['with']:7.2f} {m['without']:8.2f} {m['run']:7.2f} {m['judge']:7.2f} "
              f"{m['with'] / bound:9.2f} {m['without'] / bound:12.2f}", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
