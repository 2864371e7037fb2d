"""qemu_system_vs_unicorn: hw probes per second through full-system QEMU and through unicorn.

The same programs -- the directed hw suite and seeded random hw programs from the
codec -- run on the ``qemu-system`` target (memspec's test kernel under
``qemu-system-x86_64 -accel tcg``, one boot for the whole run, one serial
exchange per program) and on the ``qemu`` target (unicorn, in process).  A probe
is one program call.  Reported per target: target-only rate (running the
programs) and judged rate (running plus judging by the hw model), and the
one-off start-up cost (boot, or unicorn calibration).  Usage::

    python benchmarks/bench_qemu_system.py [RANDOM_PROGRAMS] [ROUNDS]
"""

from __future__ import annotations

import random
import sys
import time

from memspec.specs.directed import suite_programs
from memspec.fuzz import codec_hw
from memspec.records import RunStatus
from memspec.specs.judge import judge
from memspec.targets.registry import make_target


def programs(n_random: int) -> list:
    out = [p for _o, p in suite_programs("hw")]
    rng = random.Random("bench-qemu-system")
    for _ in range(n_random):
        p = codec_hw.decode(bytes(rng.randrange(256) for _ in range(256)), None)
        if p.calls:
            out.append(p)
    return out


def measure(name: str, progs: list, rounds: int) -> dict:
    t0 = time.perf_counter()
    target = make_target(name, timeout=10.0)
    facts = target.facts()
    startup = time.perf_counter() - t0
    try:
        calls = sum(len(p.calls) for p in progs)
        runs = []
        t1 = time.perf_counter()
        for _ in range(rounds):
            runs = [target.run(p) for p in progs]
        t_run = (time.perf_counter() - t1) / rounds
        bad = [r for r in runs if r.status is not RunStatus.OK]
        t2 = time.perf_counter()
        for p, r in zip(progs, runs):
            judge(p, r, target.name, facts)
        t_judge = time.perf_counter() - t2
    finally:
        target.close()
    return {"target": name, "startup_s": startup, "programs": len(progs), "calls": calls,
            "probes_per_s": calls / t_run, "judged_probes_per_s": calls / (t_run + t_judge),
            "not_ok": len(bad)}


def main() -> None:
    n_random = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    progs = programs(n_random)
    # programs that kill the guest on purpose (QEMU accepting CR writes it should refuse) would
    # measure reboots, not probes: a warm-up pass keeps only those every target finishes
    warm = make_target("qemu-system", timeout=10.0)
    try:
        progs = [p for p in progs if warm.run(p).status is RunStatus.OK]
    finally:
        warm.close()
    rows = [measure(name, progs, rounds) for name in ("qemu-system", "qemu")]
    print(f"{len(progs)} hw programs, {rows[0]['calls']} probes per round, {rounds} rounds")
    print(f"{'target':<12} {'start-up s':>10} {'probes/s':>10} {'judged/s':>10} {'not ok':>7}")
    for r in rows:
        print(f"{r['target']:<12} {r['startup_s']:>10.2f} {r['probes_per_s']:>10.0f} "
              f"{r['judged_probes_per_s']:>10.0f} {r['not_ok']:>7}")
    print(f"qemu-system / qemu (target only): {rows[0]['probes_per_s'] / rows[1]['probes_per_s']:.2f}")


if __name__ == "__main__":
    main()
