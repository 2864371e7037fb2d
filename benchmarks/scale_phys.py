"""Scale of the phys layer, and the model's memory: buddy alloc/free and invariants as the machine grows.

* ``buddy alloc+free``: one order-0 ``buddy_alloc`` and its ``buddy_free`` through the
  phys model's ``expect`` + ``apply`` (what the judge does per call), on a machine of
  2^10, 2^15 and 2^20 frames with 256 order-0 blocks held;
* ``phys invariants``: one full ``PhysModel.invariants()`` call (the recount the judge
  runs at checkpoints and at the end of a program) on the same machines;
* ``phys invariants per step``: one ``PhysModel.invariants(full=False)`` call after one
  ``buddy_alloc`` or ``buddy_free`` (the footprint check the judge runs after every step).

The memory check builds, in a fresh interpreter, a model of a 4 GiB machine: the
os layer with 2^20 frames of RAM and 65,000 one-page mappings with a resident
page each, plus the phys layer's frame table and buddy allocator over 2^20 frames,
and reports the growth of resident memory (VmRSS) over the bare interpreter
with memspec imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from memspec.commands.bench import Curve

NAME = "phys_scale"
HELD = 256


def machine(frames: int):
    from memspec.model.frames import Machine
    return Machine(node_frames=(frames,), dma_frames=0, distances=((10,),), reserved=())


def phys_state(frames: int):
    from memspec.model.phys import PhysModel
    m = PhysModel(machine(frames))
    for _ in range(HELD):
        _do(m, "buddy_alloc", (0,))
    return m


def _do(m, name: str, args: tuple):
    e = m.expect("main", name, args)
    m.apply("main", name, args, e.default)
    return e.default


def ops(m, k: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for _ in range(k):
        pfn = _do(m, "buddy_alloc", (0,)).value
        _do(m, "buddy_free", (pfn,))
    alloc = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    bad = m.invariants()
    inv = time.perf_counter() - t0
    if bad:
        raise AssertionError(f"phys model invariant broken in the benchmark state: {bad[0]}")
    step = 0.0
    for _ in range(k):
        pfn = _do(m, "buddy_alloc", (0,)).value
        t0 = time.perf_counter()
        bad = m.invariants(full=False)
        step += time.perf_counter() - t0
        _do(m, "buddy_free", (pfn,))
        t0 = time.perf_counter()
        bad += m.invariants(full=False)
        step += time.perf_counter() - t0
        if bad:
            raise AssertionError(f"phys model invariant broken in the benchmark state: {bad[0]}")
    return {"buddy alloc+free": alloc, "phys invariants": inv, "phys invariants per step": step / (2 * k)}


def curves(quick: bool, repeat: int) -> list[Curve]:
    sizes = (1 << 10, 1 << 15, 1 << 20)
    series: dict[str, list[tuple[int, list[float]]]] = {"buddy alloc+free": [], "phys invariants": [],
                                                        "phys invariants per step": []}
    for n in sizes:
        m = phys_state(n)
        got: dict[str, list[float]] = {k: [] for k in series}
        for _ in range(repeat):
            for k, t in ops(m, 50 if quick else 200).items():
                got[k].append(t)
        for k in series:
            series[k].append((n, got[k]))
    return [Curve("buddy alloc+free", "frames", 2.0, {"model": series["buddy alloc+free"]}),
            Curve("phys invariants (one full check)", "frames", float(sizes[-1] // sizes[0]), {"model": series["phys invariants"]},
                  ["the recount the judge runs at checkpoints and at the end of a program: one numpy pass over "
                   "the frame table, so its goal is to grow no faster than the machine"]),
            Curve("phys invariants per step (incremental)", "frames", 2.0,
                  {"model": series["phys invariants per step"]},
                  ["what the judge runs after every step: the invariants over the step's footprint (frames "
                   "claimed and released, the 2^MAX_ORDER windows of the free blocks pushed and popped); "
                   "the goal: at 1M frames <= 2x its cost at 1k frames"])]


MEMORY_PROBE = r"""
import json, sys
def rss():
    with open("/proc/self/status") as f:
        d = dict(l.split(":", 1) for l in f if ":" in l)
    return int(d["VmRSS"].split()[0]) * 1024, int(d["VmHWM"].split()[0]) * 1024
sys.path.insert(0, sys.argv[1])
import memspec.model.mm, memspec.model.phys, memspec.model.fault, numpy  # noqa
from memspec.commands import bench
os_mod = bench.load_module("scale_os.py")
phys_mod = bench.load_module("scale_phys.py")
before, _ = rss()
s, _ = os_mod.model_state(int(sys.argv[2]))
after_os, _ = rss()
p = phys_mod.phys_state(1 << 20)
after, hwm = rss()
print(json.dumps({"before": before, "after_os": after_os, "after": after, "hwm": hwm,
                  "vmas": len(s.procs["main"].vmas), "frames_phys": len(p.frames.owner),
                  "ram_pages_os": s.frames.ram_pages}))
"""


def checks(quick: bool) -> list[dict]:
    n = 65000
    if not sys.platform.startswith("linux"):
        return [{"check": "model_memory_4gib_65k_mappings", "status": "unavailable", "reason": "reads /proc/self/status"}]
    from memspec.commands.bench import repo_root
    r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, repo_root(), str(n)], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        return [{"check": "model_memory_4gib_65k_mappings", "status": "unavailable",
                 "reason": (r.stderr.strip().splitlines() or ["probe failed"])[-1]}]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    grown = d["after"] - d["before"]
    limit = 64 << 20
    return [{"check": "model_memory_4gib_65k_mappings", "value": grown, "unit": "bytes", "limit": limit,
             "status": "met" if grown <= limit else "missed",
             "detail": {"os_layer_bytes": d["after_os"] - d["before"], "phys_layer_bytes": d["after"] - d["after_os"],
                        "interpreter_bytes": d["before"], "peak_rss": d["hwm"], "mappings": d["vmas"],
                        "frames": d["frames_phys"]}}]
