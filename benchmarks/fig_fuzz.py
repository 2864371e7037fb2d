"""fuzz_invariant_overhead: ``memspec fuzz`` executions per second with all invariants on vs off.

The fuzz loop's body (``Fuzzer.run_one``: decode bytes into an os program, run it
on the ``model`` target, judge it, collect features) runs over one fixed list of
inputs, taken from a short fuzzing run, once with ``invariants=True`` and once
with ``invariants=False``.  The same inputs on both sides, so the ratio is the
cost of the invariants alone.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from memspec.commands.bench import Pair

NAME = "fuzz_invariant_overhead"
GOAL = 0.5
UNIT = "exec/s"
NUMERATOR = "`memspec fuzz` exec/s on the model target, all invariants on"
DENOMINATOR = "the same inputs with invariants off (--no-invariants)"


def inputs(fuzzer, n: int) -> list[bytes]:
    """What the fuzzer would feed itself: random bytes and mutations of what grew the corpus."""
    out = []
    for _ in range(n):
        data = fuzzer.next_input()
        fuzzer.run_one(data)
        out.append(data)
    return out


def setup(quick: bool) -> Pair:
    from memspec.commands.fuzz_driver import Fuzzer, FuzzOptions
    tmp = tempfile.mkdtemp(prefix="memspec-bench-")
    fuzzers = {}
    for inv in (True, False):
        fuzzers[inv] = Fuzzer(FuzzOptions(target="model", layer="os", seconds=1.0, out=tmp, corpus=f"{tmp}/corpus-{inv}",
                                          findings=f"{tmp}/findings", invariants=inv, quiet=True, seed=1))
    data = inputs(fuzzers[True], 40 if quick else 100)
    data = [d for d in data if fuzzers[True].codec.decode(d, fuzzers[True].target.calls).calls]

    def rate(inv: bool) -> float:
        f = fuzzers[inv]
        t0 = time.perf_counter()
        for d in data:
            f.run_one(d, add=False)
        return len(data) / (time.perf_counter() - t0)

    def close() -> None:
        for f in fuzzers.values():
            f.target.close()
        shutil.rmtree(tmp, ignore_errors=True)

    return Pair(lambda: rate(True), lambda: rate(False), close=close,
                note=f"{len(data)} inputs from a seeded fuzzing run, the same on both sides")
