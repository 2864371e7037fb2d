"""Model soak: is the reference model total on every layer?

Random bytes go through each layer's fuzz codec (``fuzz/codec_<layer>.py``); the
program runs on the ``model`` target and the model judges its own outcomes.  Every
well-formed program must get a verdict: an exception raised anywhere (model, judge,
codec), an execution over the per-run time limit, or a verdict other than ``pass``
(the model refusing what it did itself) is a bug of ours.  Each distinct one (by
exception type and the frame that raised it) is counted, and its first input is
saved as a program file (text form, replayable with ``memspec replay``) with the
traceback in its header.

    python benchmarks/soak.py --layer phys --seconds 900
    python benchmarks/soak.py --execs 1000000 --seconds 3600 --out memspec-out/soak --json soak.json

Layers run one after another (default: all four), each for ``--execs`` executions or
``--seconds`` seconds, whichever ends first.  Figures are printed per layer.  Run it
under ``nice``: it is a long job, not a CI test.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

LAYERS = ("phys", "hw", "os", "virt")


class _Overtime(Exception):
    """One execution took longer than --exec-timeout."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Overtime()


@dataclass
class LayerFigures:
    layer: str
    execs: int = 0
    seconds: float = 0.0
    calls: int = 0
    exceptions: int = 0          # executions that raised (incl. overtime)
    distinct: int = 0            # distinct places raised
    not_pass: int = 0            # executions whose verdict was not pass (the model refusing itself)
    empty: int = 0               # inputs that decoded to no call
    verdicts: dict[str, int] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0


def _where(tb: str) -> str:
    """The raising frame's 'File ..., line ...' and the exception type: what makes two crashes one."""
    lines = tb.strip().splitlines()
    frames = [ln.strip() for ln in lines if ln.strip().startswith("File ")]
    kind = lines[-1].split(":")[0] if lines else "?"
    return f"{frames[-1] if frames else '?'} {kind}"


def _save(out: str, layer: str, program: Any, data: bytes, what: str, detail: str) -> str:
    from memspec.program import Program, format_program
    key = hashlib.sha1(what.encode()).hexdigest()[:12]
    path = os.path.join(out, f"soak-{layer}-{key}.mst")
    if os.path.exists(path):
        return path
    header = {"memspec-program": "1", "target": "model", "layer": layer, "soak": what,
              "input-hex": data.hex()}
    text = format_program(Program(program.calls, ()).with_header(**header)) if program is not None else ""
    tail = "".join(f"# {ln}\n" for ln in detail.strip().splitlines())
    with open(path + ".tmp", "w") as f:
        f.write(text if program is not None else f"# input-hex: {data.hex()}\n")
        f.write(tail)
    os.replace(path + ".tmp", path)
    return path


def soak_layer(layer: str, execs: int, seconds: float, out: str, seed: int = 0,
               exec_timeout: float = 10.0, quiet: bool = False) -> LayerFigures:
    from memspec.fuzz.differential import execute
    from memspec.targets.registry import make_target

    target = make_target("model")
    facts = target.facts()
    codec = importlib.import_module(f"memspec.fuzz.codec_{layer}")
    rng = random.Random(seed)
    fig = LayerFigures(layer)
    seen: dict[str, str] = {}
    os.makedirs(out, exist_ok=True)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    started = time.monotonic()
    deadline = started + seconds
    last_print = started
    try:
        while fig.execs < execs and time.monotonic() < deadline:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(4, 512)))
            program = None
            signal.setitimer(signal.ITIMER_REAL, exec_timeout)
            try:
                program = codec.decode(data, target.calls)
                if not program.calls:
                    fig.empty += 1
                    continue
                j = execute(target, program, facts)
                v = j.failure.verdict.value if j.failure is not None else (
                    "pass" if j.status.value == "ok" else j.status.value)
                fig.verdicts[v] = fig.verdicts.get(v, 0) + 1
                fig.calls += len(program.calls)
                if j.failure is not None:
                    fig.not_pass += 1
                    f = j.failure
                    what = f"verdict {f.verdict.value} {f.clause}"
                    if what not in seen:
                        seen[what] = _save(out, layer, program, data, what,
                                           f"{f.clause}: expected {f.expected}; observed {f.observed}")
                        fig.saved.append(seen[what])
            except KeyboardInterrupt:
                raise
            except (Exception, _Overtime) as e:   # noqa: BLE001 -- counting them is the point
                signal.setitimer(signal.ITIMER_REAL, 0)
                fig.exceptions += 1
                tb = traceback.format_exc() if not isinstance(e, _Overtime) else f"overtime: over {exec_timeout} s"
                what = _where(tb) if not isinstance(e, _Overtime) else "overtime"
                if what not in seen:
                    seen[what] = _save(out, layer, program, data, what, tb)
                    fig.saved.append(seen[what])
                    if not quiet:
                        print(f"  [{layer}] new crash {what} -> {seen[what]}", file=sys.stderr, flush=True)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                fig.execs += 1
            now = time.monotonic()
            if not quiet and now - last_print > 60:
                last_print = now
                print(f"  [{layer}] {fig.execs} execs, {fig.execs / (now - started):.1f}/s, "
                      f"{fig.exceptions} exceptions, {fig.not_pass} not pass", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGALRM, old)
        fig.seconds = time.monotonic() - started
        fig.distinct = len(seen)
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layer", action="append", choices=LAYERS, help="layer to soak (repeatable; default all four)")
    p.add_argument("--execs", type=int, default=1_000_000, help="executions per layer (default 1000000)")
    p.add_argument("--seconds", type=float, default=3600.0, help="seconds per layer (default 3600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="memspec-out/soak", help="folder for crashing inputs")
    p.add_argument("--exec-timeout", type=float, default=10.0, help="seconds one execution may take")
    p.add_argument("--mem-limit", type=int, default=4096, help="address-space limit in MiB (0: none)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--quiet", "-q", action="store_true")
    a = p.parse_args(argv)
    if a.mem_limit:
        lim = a.mem_limit << 20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (lim if hard == resource.RLIM_INFINITY else min(lim, hard), hard))
    figures = []
    for layer in a.layer or LAYERS:
        f = soak_layer(layer, a.execs, a.seconds, a.out, a.seed, a.exec_timeout, a.quiet)
        figures.append(f)
        print(f"{layer:5s} {f.execs:9d} execs {f.seconds:8.1f} s {f.rate:8.1f}/s  {f.calls:10d} calls  "
              f"exceptions {f.exceptions} ({f.distinct} distinct incl. not-pass)  not-pass {f.not_pass}  "
              f"empty {f.empty}  verdicts {json.dumps(f.verdicts, sort_keys=True)}", flush=True)
        for path in f.saved:
            print(f"      saved {path}", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump([dict(asdict(f), rate=f.rate) for f in figures], fh, indent=1)
    return 1 if any(f.exceptions or f.not_pass for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
