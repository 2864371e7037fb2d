"""Differential soak of the os layer on the running kernel: the model against ``linux`` (or ``linux-agent``).

Random programs of the os codec (``fuzz.layers.random_programs``), and as many mutants of
them (``fuzz/mutate.py``: a changed argument draws from its constant group, so every advice
and flag value of the call table is reached), run on the ``linux`` target (``--target linux-agent``: the same
kernel driven by the static C agent, about four times faster) and are judged by
the model with the target's facts.  Each disagreement is grouped by signature (clause, verdict,
call); the first program of each is saved, with the observed and expected outcomes in its
header, for ``memspec replay``.  Refusals (the harness would not touch memory that is not the
program's) and programs using calls the target lacks are counted apart, never as agreement.

    python benchmarks/soak_linux.py --programs 100000 --seconds 36000 --out memspec-out/soak-linux
    python benchmarks/soak_linux.py --seconds 300 --json soak.json
    python benchmarks/soak_linux.py --target linux-agent --programs 100000 --seconds 4800 --json soak.json

It is a long job, not a CI test: run it under ``nice``.  The figures (programs, agreeing,
disagreeing by signature, refused) go to stdout and, with --json, to a file (rewritten every
1000 programs while the run goes on, so a stopped run still leaves its figures).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from typing import Any

from memspec.fuzz.differential import execute
from memspec.fuzz.layers import layer, random_programs
from memspec.fuzz.mutate import mutator_for
from memspec.program import format_program
from memspec.records import RunStatus
from memspec.targets.registry import make_target


TARGETS = ("linux", "linux-agent")


def _dump(path: str | None, figures: dict[str, Any], sigs: Counter, t0: float) -> None:
    if not path:
        return
    figures["seconds"] = round(time.monotonic() - t0, 1)
    figures["signatures"] = dict(sigs.most_common())
    with open(path + ".part", "w") as fh:
        json.dump(figures, fh, indent=2)
    os.replace(path + ".part", path)


def soak(programs: int, seconds: float, seed: int, out: str | None, target_name: str = "linux",
         json_path: str | None = None) -> dict[str, Any]:
    target = make_target(target_name)
    facts = target.facts()
    lay = layer("os")
    mutator = mutator_for(lay, target.calls, facts, random.Random(seed))
    figures: dict[str, Any] = {"programs": 0, "agree": 0, "refused": 0, "not_applicable": 0, "other": 0,
                               "disagreements": 0, "signatures": {}, "seconds": 0.0, "seed": seed,
                               "target": target_name}
    sigs: Counter = Counter()
    t0 = time.monotonic()
    try:
        for i, (name, p) in enumerate(random_programs("os", programs, seed, target.calls, facts)):
            if figures["programs"] >= programs or time.monotonic() - t0 > seconds:
                break
            for prog in (p, mutator.mutate(p)) if i % 2 else (p,):
                if any(c.name not in target.calls for c in prog.calls):
                    figures["not_applicable"] += 1
                    continue
                figures["programs"] += 1
                if figures["programs"] % 1000 == 0:
                    _dump(json_path, figures, sigs, t0)
                j = execute(target, prog, facts)
                if j.status == RunStatus.REFUSED:
                    figures["refused"] += 1
                elif j.failure is None:
                    figures["agree"] += 1
                elif j.failure is not None:
                    f = j.failure
                    sig = f"{f.clause} {f.verdict.name.lower()} {prog.calls[f.index].name if 0 <= f.index < len(prog.calls) else f.at}"
                    figures["disagreements"] += 1
                    sigs[sig] += 1
                    if sigs[sig] == 1 and out:
                        os.makedirs(out, exist_ok=True)
                        path = os.path.join(out, f"{len(sigs):03d}-{f.clause}.mst")
                        with open(path, "w") as fh:
                            fh.write(f"# soak_linux --target {target_name} seed {seed}, {name}\n# {sig}\n# expected: {f.expected}\n"
                                     f"# observed: {f.observed}\n")
                            fh.write(format_program(prog))
                else:
                    figures["other"] += 1
    finally:
        target.close() if hasattr(target, "close") else None
    figures["seconds"] = round(time.monotonic() - t0, 1)
    figures["signatures"] = dict(sigs.most_common())
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", choices=TARGETS, default="linux")
    ap.add_argument("--out", default="memspec-out/soak-linux")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    fig = soak(a.programs, a.seconds, a.seed, a.out, a.target, a.json)
    print(f"{a.target}: {fig['programs']} programs in {fig['seconds']} s: {fig['agree']} agree, {fig['disagreements']} disagree "
          f"({len(fig['signatures'])} signatures), {fig['refused']} refused, {fig['not_applicable']} not applicable")
    for sig, n in fig["signatures"].items():
        print(f"  {n:6d}  {sig}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(fig, fh, indent=2)
    return 1 if fig["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
