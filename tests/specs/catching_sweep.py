"""The os state machine's catching power over the deliberately broken os models: each broken model
run as the target of ``specs/machine_os.machine`` (the reference model judging), for a few seeds of
a fixed number of examples of a fixed number of steps, generation only (no shrinking).  A run is
caught when the machine raises a ``ConformanceFailure``.

    python tests/specs/catching_sweep.py [--seeds 3] [--examples 200] [--steps 25] [--jobs 2] [--json OUT]
                                         [--only BUG ...]

The models: ``tests/broken/broken_server.py`` and every ``tests/os/broken_*.py`` (each file's
``BUGS``; the reference classes some files also serve are left out).  Not a test (nothing is
asserted): a measurement to run before and after a change to the machine, whose caught models
must not shrink.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path):
    name = "_sweep_" + path.parent.name + "_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def model_files() -> list[Path]:
    return [ROOT / "tests" / "broken" / "broken_server.py"] + sorted((ROOT / "tests" / "os").glob("broken_*.py"))


def models() -> list[tuple[str, str]]:
    """(file stem, bug) of every broken os model."""
    return [(path.stem, bug) for path in model_files() for bug in _load(path).BUGS]


def _target(stem: str, bug: str):
    from memspec.targets.model import OsModelTarget
    path = next(p for p in model_files() if p.stem == stem)
    mod = _load(path)
    if stem == "broken_server":
        return OsModelTarget(f"broken:{bug}", mod.BUGS[bug])
    return mod.target(bug)


def run_one(job: tuple[str, str, int, int, int]) -> dict:
    """One broken model, one seed: the first failure's clause (None: not caught) and the time."""
    import hypothesis.core
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    from memspec.specs import machine_os
    from memspec.specs.failures import ConformanceFailure

    stem, bug, seed, examples, steps = job
    hypothesis.core.global_force_seed = seed
    cls = machine_os.machine(_target(stem, bug))
    s = settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                 derandomize=False, phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                 report_multiple_bugs=False, print_blob=False)
    t0 = time.perf_counter()
    clause = error = None
    try:
        run_state_machine_as_test(cls, settings=s)
    except ConformanceFailure as e:
        clause = e.clause
    except Exception as e:   # noqa: BLE001 -- a crash of the machine is reported, not a catch
        error = f"{type(e).__name__}: {e}"[:200]
    return {"file": stem, "bug": bug, "seed": seed, "clause": clause, "error": error,
            "seconds": round(time.perf_counter() - t0, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--only", nargs="*", help="bugs to run (default: every broken model)")
    a = ap.parse_args()
    jobs = [(stem, bug, seed, a.examples, a.steps) for stem, bug in models() for seed in range(a.seeds)
            if not a.only or bug in a.only]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as pool:
        results = list(pool.map(run_one, jobs))
    caught = {(r["file"], r["bug"]) for r in results if r["clause"]}
    for r in results:
        what = r["clause"] or ("ERROR " + r["error"] if r["error"] else "-")
        print(f'{r["file"]:24} {r["bug"]:32} seed {r["seed"]}  {what}  ({r["seconds"]} s)')
    print(f"{sum(1 for r in results if r['clause'])} of {len(results)} runs caught ({len(caught)} of "
          f"{len(models())} models) in {time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
