"""NUMA memory policies (set_mempolicy(2), numa(7); mm/mempolicy.c).

Laws:

* MPOL_DEFAULT / MPOL_LOCAL -- *first touch*: a page's frame comes from the
  node of the CPU that first touches it, falling back to other nodes by
  distance when that node is full (the fallback is counted as a NUMA miss);
* MPOL_PREFERRED -- the given node first (the lowest node of the mask), then fallback;
* MPOL_BIND -- only the nodes of the mask, nearest first; when they are full
  the allocation fails rather than spill to another node;
* MPOL_INTERLEAVE -- successive pages go round-robin over the mask's nodes;
* a page stays on the frame it got; a thread that migrates to another node
  makes its later accesses to that page remote, and the counters show it
  (the seed's "naive first-touch allocation can produce remote-memory access
  when threads migrate").

Worked example: ``numa_touch(0)`` on node 0 gets a node-0 frame; after
``migrate_thread(1)``, ``numa_touch(0)`` is one remote access
(``numa_stat(NUMA_REMOTE) == 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memspec.consts import MPOL, NUMASTAT

DEFAULT, PREFERRED, BIND, INTERLEAVE, LOCAL = (MPOL[n] for n in (
    "MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_LOCAL"))
LOCAL_ACCESS, REMOTE_ACCESS, HIT, MISS, INTERLEAVE_HIT = (NUMASTAT[n] for n in (
    "NUMA_LOCAL", "NUMA_REMOTE", "NUMA_HIT", "NUMA_MISS", "NUMA_INTERLEAVE_HIT"))
MAX_PAGE = 1 << 36


def mask_nodes(mask: int) -> list[int]:
    return [n for n in range(mask.bit_length()) if mask >> n & 1]


@dataclass(slots=True)
class NumaState:
    mode: int = DEFAULT
    mask: int = 0
    il_prev: int = -1
    cpu_node: int = 0
    pages: dict[int, int] = field(default_factory=dict)          # user page -> pfn
    counters: list[int] = field(default_factory=lambda: [0] * 5)
    bound: list[tuple[int, int]] = field(default_factory=list)   # (pfn, mask) allocated under MPOL_BIND

    def plan(self, fallback) -> tuple[int, list[int], bool, str]:
        """(intended node, nodes to try in order, strict?, clause) for the next page."""
        if self.mode == PREFERRED and self.mask:
            first = mask_nodes(self.mask)[0]
            return first, fallback(first), False, "numa.preferred.node-first"
        if self.mode == BIND:
            allowed = [n for n in fallback(self.cpu_node) if self.mask >> n & 1]
            return allowed[0], allowed, True, "numa.bind.no-spill"
        if self.mode == INTERLEAVE:
            nodes = mask_nodes(self.mask)
            nxt = next((n for n in nodes if n > self.il_prev), nodes[0])
            return nxt, fallback(nxt), False, "numa.interleave.round-robin"
        return self.cpu_node, fallback(self.cpu_node), False, "numa.first-touch.local"
