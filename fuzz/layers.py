"""The four layers as typed records: each layer's parts, by direct reference.

A ``Layer`` names everything the commands need to judge a layer: the model factory, the clause
modules, the directed suite, the generator (``specs/gen_<layer>.py``; the fuzz codec is it driven by
fuzzer bytes, the state machine draws through it too), the state machine and the checkpoint
comparison.  Every part is imported here, so a missing or misspelt part is an error when this
module is imported -- never a layer that quietly checks less.  ``LAYERS`` is the one table; the
model's factories and the judge's comparisons are the same objects their own modules hold.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator

from memspec.model.registry import FACTORIES
from memspec.program import Program
from memspec.specs import (clauses_aslr, clauses_hw, clauses_os, clauses_phys, clauses_seg, clauses_virt,
                           gen_hw, gen_os, gen_phys, gen_virt, machine_hw, machine_os, machine_phys, machine_virt)
from memspec.specs.judge import COMPARE
from memspec.specs.directed import suite_programs

from . import codec_hw, codec_os, codec_phys, codec_virt


@dataclass(frozen=True)
class Layer:
    name: str
    new_model: Callable[[dict[str, Any]], Any]              # facts -> the layer's reference model
    clauses: tuple[ModuleType, ...]                          # the modules declaring its clauses
    codec: ModuleType                                        # fuzzer bytes -> program (``decode``)
    machine: Callable[..., Any]                              # (target, facts) -> a Hypothesis state machine class
    compare: Callable[[Any, Any, int], Any]                  # checkpoint: (model, observation, index) -> Check | None
    generator: ModuleType                                    # (chooser, calls, facts) -> program (``program``)

    def suite(self, capabilities: bool = False) -> Iterator[tuple[str, Program]]:
        return suite_programs(self.name, capabilities)

    def decode(self, data: bytes, calls: frozenset[str] | None, facts: dict[str, Any] | None = None) -> Program:
        """A program from fuzzer bytes; a codec that declares ``USES_FACTS`` also gets the target's
        facts, so that it never generates what the target declared it cannot run."""
        if facts is not None and getattr(self.codec, "USES_FACTS", False):
            return self.codec.decode(data, calls, facts=facts)
        return self.codec.decode(data, calls)


LAYERS: dict[str, Layer] = {
    "phys": Layer("phys", FACTORIES["phys"], (clauses_phys,), codec_phys, machine_phys.machine, COMPARE["phys"],
                  gen_phys),
    "hw": Layer("hw", FACTORIES["hw"], (clauses_hw, clauses_seg), codec_hw, machine_hw.machine, COMPARE["hw"], gen_hw),
    "os": Layer("os", FACTORIES["os"], (clauses_os, clauses_aslr), codec_os, machine_os.machine, COMPARE["os"], gen_os),
    "virt": Layer("virt", FACTORIES["virt"], (clauses_virt,), codec_virt, machine_virt.machine, COMPARE["virt"],
                  gen_virt),
}


def layer(name: str) -> Layer:
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"no layer {name!r} (layers: {', '.join(LAYERS)})") from None


def random_programs(name: str, n: int, seed: int, calls: frozenset[str] | None,
                    facts: dict[str, Any] | None = None) -> Iterator[tuple[str, Program]]:
    """``n`` programs decoded from seeded random bytes (empty decodings skipped)."""
    lay = layer(name)
    rng = random.Random(f"{seed}:{name}")
    for i in range(n):
        data = bytes(rng.randrange(256) for _ in range(256))
        p = lay.decode(data, calls, facts)
        if p.calls:
            yield f"random #{i} (seed {seed})", p


__all__ = ["Layer", "LAYERS", "layer", "random_programs"]
