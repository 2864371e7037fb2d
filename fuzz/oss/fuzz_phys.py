"""OSS-Fuzz / ClusterFuzzLite fuzz target: phys-layer programs judged on the reference model.

Against the model itself a disagreement cannot happen; what this finds is a crash
of the harness or the model (an exception), or a broken model invariant, on any
program the codec can produce.  Set MEMSPEC_TARGET to judge another target.
"""

import os
import sys

import atheris

with atheris.instrument_imports(include=["memspec"]):
    from memspec.commands.fuzz_entry import make_test_one_input


def main() -> None:
    one = make_test_one_input(os.environ.get("MEMSPEC_TARGET", "model"), "phys")
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
