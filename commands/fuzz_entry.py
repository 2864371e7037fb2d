"""A standalone atheris/libFuzzer entry point, for OSS-Fuzz-style builds and plain runs.

    python -m memspec.commands.fuzz_entry [libFuzzer flags] [CORPUS_DIR ...]

Environment: MEMSPEC_TARGET (default ``model``), MEMSPEC_LAYER (default: the
target's first layer).  Each input decodes into a program of the layer; the
program runs on the target and the model judges it (half the mutations keep the program's
structure: libFuzzer's custom-mutator hook calls ``fuzz/mutate.py``); any disagreement raises
``Disagreement`` whose message is the clause, expected vs observed and the
program text -- libFuzzer then saves the input as a crash file, and
``memspec fuzz`` (which keeps going instead) is the interactive alternative.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from memspec.program import Program, format_program
from memspec.targets.registry import make_target

from memspec.fuzz.differential import execute
from memspec.fuzz.layers import layer as layer_of
from memspec.fuzz.mutate import libfuzzer_mutator, mutator_for


class Disagreement(AssertionError):
    """The target and the model disagree; the message is a readable reproducer."""


Mutate = Callable[[bytes, int], bytes]                  # libFuzzer's byte mutation: (data, max_size) -> data
CustomMutator = Callable[[bytes, int, int], bytes]     # (data, max_size, seed) -> data


def make_entry(target_spec: str, layer: str | None = None
               ) -> tuple[Callable[[bytes], None], Callable[[Mutate], CustomMutator]]:
    """The libFuzzer test function for ``target_spec`` and a maker of its custom mutator (given
    libFuzzer's own byte mutation, ``atheris.Mutate``: half the mutations keep the program's
    structure, ``fuzz/mutate.py``), over one target."""
    target = make_target(target_spec)
    layer = layer or target.layers[0]
    lay = layer_of(layer)
    facts = target.facts()

    def decode(data: bytes) -> Program:
        return lay.decode(data, target.calls, facts)      # never what the target declared it cannot run

    def test_one_input(data: bytes) -> None:
        program = decode(data)
        if not program.calls:
            return
        j = execute(target, program, facts)
        f = j.failure
        if f is not None and f.verdict.value != "unsupported":
            raise Disagreement(f"{f.clause} at call {f.index + 1} on {target.name}: expected {f.expected}, "
                               f"observed {f.observed}\n{f.note}\n\n"
                               + format_program(program.with_header(target=target.name, clause=f.clause)))

    def custom_mutator(byte_mutate: Mutate) -> CustomMutator:
        return libfuzzer_mutator(mutator_for(lay, target.calls, facts), decode, byte_mutate)

    return test_one_input, custom_mutator


def make_test_one_input(target_spec: str, layer: str | None = None) -> Callable[[bytes], None]:
    return make_entry(target_spec, layer)[0]


def main(argv: list[str] | None = None) -> None:
    import atheris
    one, custom_mutator = make_entry(os.environ.get("MEMSPEC_TARGET", "model"), os.environ.get("MEMSPEC_LAYER") or None)
    atheris.instrument_all()
    # atheris.Mutate is looked up at each call: the module's own is a stub until Fuzz() runs
    atheris.Setup(sys.argv if argv is None else argv, one,
                  custom_mutator=custom_mutator(lambda data, max_size: atheris.Mutate(data, max_size)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
