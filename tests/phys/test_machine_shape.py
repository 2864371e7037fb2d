"""The phys state machine names the nodes of the machine the target declares (issue #26)."""

from __future__ import annotations

from memspec.specs.machine_phys import machine
from memspec.targets.model import ModelTarget


def _nodes(facts, rule: str) -> tuple:
    cls = machine(ModelTarget(), facts)
    strategy = getattr(cls, rule).hypothesis_stateful_rule.arguments["node"]
    return tuple(getattr(strategy, "wrapped_strategy", strategy).elements)


def test_the_nodes_drawn_are_the_declared_ones() -> None:
    three = {"phys_machine": {"node_frames": [2048, 3072, 1024], "dma_frames": 1024}}
    assert _nodes(three, "buddy_alloc") == (-1, 0, 1, 2)
    assert _nodes(three, "buddy_state") == (-1, 0, 1, 2)
    assert _nodes(three, "migrate") == (0, 1, 2)
    one = {"phys_machine": {"node_frames": [4096], "dma_frames": 1024}}
    assert _nodes(one, "migrate") == (0,)
