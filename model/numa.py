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

The rules of the NUMA calls (``RULES``): ``numa_touch`` of a new page may take any free
frame of the first zone, in the policy's node order, that has one (the clause of the
policy: ``numa.first-touch.local``, ``numa.preferred.node-first``, ``numa.bind.no-spill``,
``numa.interleave.round-robin``); under MPOL_BIND with every allowed node full it fails
(``numa.bind.enomem``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from memspec.consts import MPOL, NUMASTAT
from memspec.records import Outcome

from .allocator import K_EINVAL, OK0
from .buddy import Buddy
from .expect import Expect, exactly
from .frames import Machine, Owner
from .rules import Rule

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


# -- the NUMA calls' rules -------------------------------------------------------------


class Kernel(Protocol):
    """What the NUMA rules read and change of the phys model."""

    machine: Machine
    buddy: Buddy
    numa: NumaState


def expect_set_mempolicy(m: Kernel, mode: int, nodemask: int = 0) -> Expect:
    online = (1 << m.machine.nodes) - 1
    eff = nodemask & online
    if mode not in (DEFAULT, PREFERRED, BIND, INTERLEAVE, LOCAL) or nodemask < 0:
        return exactly("numa.set_mempolicy.einval-mode", K_EINVAL)
    if mode in (DEFAULT, LOCAL) and nodemask:
        return exactly("numa.set_mempolicy.einval-default-mask", K_EINVAL)
    if mode in (BIND, INTERLEAVE) and not eff or mode == PREFERRED and nodemask and not eff:
        return exactly("numa.set_mempolicy.einval-empty", K_EINVAL)
    return exactly("numa.set_mempolicy.ok", OK0)


def apply_set_mempolicy(m: Kernel, o: Outcome, mode: int, nodemask: int = 0) -> None:
    if o.ok:
        m.numa.mode = mode
        m.numa.mask = nodemask & ((1 << m.machine.nodes) - 1)
        m.numa.il_prev = -1


def expect_migrate_thread(m: Kernel, node: int) -> Expect:
    if 0 <= node < m.machine.nodes:
        return exactly("numa.migrate.ok", OK0)
    return exactly("numa.migrate.einval", K_EINVAL)


def apply_migrate_thread(m: Kernel, o: Outcome, node: int) -> None:
    if o.ok and 0 <= node < m.machine.nodes:
        m.numa.cpu_node = node


def expect_numa_touch(m: Kernel, page: int) -> Expect:
    if page < 0 or page >= MAX_PAGE:
        return exactly("numa.touch.einval", K_EINVAL)
    if page in m.numa.pages:
        return exactly("numa.first-touch.stays", Outcome(value=m.numa.pages[page]))
    intended, nodes, strict, clause = m.numa.plan(m.machine.fallback)
    return m.buddy.block_expect(m.buddy.zonelist(nodes), 0, clause,
                                "numa.bind.enomem" if strict else "linux.buddy.enomem-when-exhausted", clause,
                                what="a free frame")


def apply_numa_touch(m: Kernel, o: Outcome, page: int) -> None:
    st = m.numa
    if page < 0 or page >= MAX_PAGE:
        return
    if page not in st.pages:
        if not o.ok or o.value is None or o.value < 0:
            return
        intended, _, _, _ = st.plan(m.machine.fallback)
        pfn = o.value
        m.buddy.take(pfn, 0, Owner.ANON)
        st.pages[page] = pfn
        node = m.machine.node_of(pfn)
        st.counters[HIT if node == intended else MISS] += 1
        if st.mode == INTERLEAVE:
            st.il_prev = intended
            if node == intended:
                st.counters[INTERLEAVE_HIT] += 1
        if st.mode == BIND:
            st.bound.append((pfn, st.mask))
    node = m.machine.node_of(st.pages[page])
    st.counters[LOCAL_ACCESS if node == st.cpu_node else REMOTE_ACCESS] += 1


def expect_numa_stat(m: Kernel, counter: int) -> Expect:
    if not 0 <= counter < len(m.numa.counters):
        return exactly("numa.stat.einval", K_EINVAL)
    return exactly("seed.numa.remote-after-migration" if counter in (LOCAL_ACCESS, REMOTE_ACCESS)
                   else "numa.stat.counts", Outcome(value=m.numa.counters[counter]))


def bind_never_off_node(m: Kernel) -> list[tuple[str, str]]:
    """Every frame allocated under MPOL_BIND is on a node of the mask it was bound to (numa.bind.no-spill)."""
    for pfn, mask in m.numa.bound:
        node = m.machine.node_of(pfn)
        if not mask >> node & 1:
            return [("numa.bind.no-spill", f"frame {pfn} on node {node} was allocated under MPOL_BIND to {mask:#x}")]
    return []


RULES = {
    "set_mempolicy": Rule(expect_set_mempolicy, apply_set_mempolicy),
    "migrate_thread": Rule(expect_migrate_thread, apply_migrate_thread),
    "numa_touch": Rule(expect_numa_touch, apply_numa_touch),
    "numa_stat": Rule(expect_numa_stat),
}
