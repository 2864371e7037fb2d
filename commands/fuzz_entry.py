"""A standalone atheris/libFuzzer entry point, for OSS-Fuzz-style builds and plain runs.

    python -m memspec.commands.fuzz_entry [libFuzzer flags] [CORPUS_DIR ...]

Environment: MEMSPEC_TARGET (default ``model``), MEMSPEC_LAYER (default: the
target's first layer).  Each input decodes into a program of the layer; the
program runs on the target and the model judges it; any disagreement raises
``Disagreement`` whose message is the clause, expected vs observed and the
program text -- libFuzzer then saves the input as a crash file, and
``memspec fuzz`` (which keeps going instead) is the interactive alternative.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from memspec.program import format_program
from memspec.targets.registry import make_target

from memspec.fuzz.differential import execute
from memspec.fuzz.layers import layer as layer_of


class Disagreement(AssertionError):
    """The target and the model disagree; the message is a readable reproducer."""


def make_test_one_input(target_spec: str, layer: str | None = None) -> Callable[[bytes], None]:
    target = make_target(target_spec)
    layer = layer or target.layers[0]
    lay = layer_of(layer)
    facts = target.facts()

    def test_one_input(data: bytes) -> None:
        program = lay.decode(data, target.calls, facts)      # never what the target declared it cannot run
        if not program.calls:
            return
        j = execute(target, program, facts)
        f = j.failure
        if f is not None and f.verdict.value != "unsupported":
            raise Disagreement(f"{f.clause} at call {f.index + 1} on {target.name}: expected {f.expected}, "
                               f"observed {f.observed}\n{f.note}\n\n"
                               + format_program(program.with_header(target=target.name, clause=f.clause)))

    return test_one_input


def main(argv: list[str] | None = None) -> None:
    import atheris
    one = make_test_one_input(os.environ.get("MEMSPEC_TARGET", "model"), os.environ.get("MEMSPEC_LAYER") or None)
    atheris.instrument_all()
    atheris.Setup(sys.argv if argv is None else argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
