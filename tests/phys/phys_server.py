"""The phys-layer reference model behind the line protocol (for tests/phys/test_protocol.py)."""

import sys

from memspec.targets.serve import serve

sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer, name="phys-model", layers=("phys",)))
