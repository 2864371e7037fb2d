"""Experiment: NUMA first-touch vs bind (and interleave): remote accesses after a thread migrates.

``run(out_dir)`` drives the phys-layer model (``model.phys`` with its NUMA
policies and counters, ``model.numa``) through its calls on a two-node machine:
a thread on node 0 first touches ``PAGES`` pages, runs ``ROUNDS`` rounds over
them, migrates to node 1 (the scheduler moved it), and runs ``ROUNDS`` more.
Policies compared:

* first touch (MPOL_DEFAULT): the pages land on node 0; after the move every access is remote;
* bind to node 0 (MPOL_BIND, mask 1) -- the same placement, and the same remote
  accesses: binding memory alone does not follow the thread;
* bind to node 1 (the node the thread will run on): remote before the move, local after;
* interleave over both nodes: half of the accesses remote before and after;
* first touch without migration (numactl --cpunodebind with --membind): the baseline, all local.

The model's NUMA_LOCAL/NUMA_REMOTE counters give the numbers (clause
``seed.numa.first-touch-migration``, after ``seed.numa.remote-after-migration``).
"""

from __future__ import annotations

from typing import Any

from memspec.consts import MPOL, NUMASTAT
from memspec.model.frames import Machine
from memspec.model.phys import PhysModel
from memspec.records import Outcome

from .tlb import plot_lines

PAGES = 64
ROUNDS = 4
POLICIES = {
    "first touch, migrates": (MPOL["MPOL_DEFAULT"], 0, True),
    "bind node 0, migrates": (MPOL["MPOL_BIND"], 1, True),
    "bind node 1, migrates": (MPOL["MPOL_BIND"], 2, True),
    "interleave, migrates": (MPOL["MPOL_INTERLEAVE"], 3, True),
    "first touch, pinned": (MPOL["MPOL_DEFAULT"], 0, False),
}


def _do(m: PhysModel, name: str, *args: int) -> Outcome:
    exp = m.expect("main", name, args)
    o = exp.default
    m.apply("main", name, args, o)
    return o


def scenario(mode: int, mask: int, migrates: bool) -> dict[str, Any]:
    m = PhysModel(Machine(node_frames=(4096, 4096), dma_frames=0, distances=((10, 21), (21, 10)), reserved=()))
    _do(m, "migrate_thread", 0)
    _do(m, "set_mempolicy", mode, mask)
    nodes = []
    for p in range(PAGES):
        o = _do(m, "numa_touch", p)
        nodes.append(m.machine.node_of(o.value) if o.ok and o.value is not None and o.value >= 0 else -1)
    local0 = _do(m, "numa_stat", NUMASTAT["NUMA_LOCAL"]).value or 0
    remote0 = _do(m, "numa_stat", NUMASTAT["NUMA_REMOTE"]).value or 0
    timeline = []
    for phase in (0, 1):
        if phase == 1 and migrates:
            _do(m, "migrate_thread", 1)
        for _ in range(ROUNDS):
            for p in range(PAGES):
                _do(m, "numa_touch", p)
            timeline.append((_do(m, "numa_stat", NUMASTAT["NUMA_REMOTE"]).value or 0) - remote0)
    local = (_do(m, "numa_stat", NUMASTAT["NUMA_LOCAL"]).value or 0) - local0
    remote = (_do(m, "numa_stat", NUMASTAT["NUMA_REMOTE"]).value or 0) - remote0
    bad = m.invariants()
    if bad:
        raise AssertionError(f"phys model invariant broken during the experiment: {bad[0]}")
    before = timeline[ROUNDS - 1]
    return {"on_node0": nodes.count(0), "on_node1": nodes.count(1), "local": local, "remote": remote,
            "remote_before_move": before, "remote_after_move": remote - before, "timeline": timeline}


def run(out_dir: str) -> dict[str, Any]:
    """Print the table, write the plot into ``out_dir``; return every number."""
    res = {name: scenario(*p) for name, p in POLICIES.items()}
    n = PAGES * ROUNDS
    print(f"{PAGES} pages first touched on node 0, {ROUNDS} rounds of accesses, then the thread moves to node 1 "
          f"and runs {ROUNDS} more rounds ({n} accesses per phase)")
    print(f"{'policy':>24} {'node0':>6} {'node1':>6} {'remote before':>14} {'remote after':>13} {'remote %':>9}")
    for name, r in res.items():
        print(f"{name:>24} {r['on_node0']:>6} {r['on_node1']:>6} {r['remote_before_move']:>14} "
              f"{r['remote_after_move']:>13} {100 * r['remote'] / (2 * n):>8.1f}%")
    ft, pin = res["first touch, migrates"], res["first touch, pinned"]
    print(f"seed.numa.first-touch-migration: seed says naive first-touch allocation produces remote accesses when "
          f"threads migrate; model: first touch {ft['remote_before_move']} remote before the move, "
          f"{ft['remote_after_move']} of {n} after; pinned thread {pin['remote']} remote; binding memory to node 0 "
          f"does not help a thread that moves ({res['bind node 0, migrates']['remote_after_move']} remote after)")
    rounds = list(range(1, 2 * ROUNDS + 1))
    plot = plot_lines(out_dir, "numa_remote", "Cumulative remote accesses (thread moves to node 1 after round "
                      f"{ROUNDS})", "round", "remote accesses",
                      [(name, rounds, r["timeline"]) for name, r in res.items()])
    print(f"\nplot: {plot}")
    return {"results": res, "accesses_per_phase": n, "plot": plot}
