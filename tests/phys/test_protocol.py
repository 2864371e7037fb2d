"""Through the protocol the same phys checks run on any allocator: here the model behind ``cmd:``."""

from __future__ import annotations

import os
import shlex
import sys

from memspec.specs.directed import suite_programs
from memspec.specs.judge import judge
from memspec.targets.registry import make_target

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "phys_server.py")


def test_phys_suite_passes_through_the_protocol():
    t = make_target(f"cmd:{shlex.quote(sys.executable)} {shlex.quote(SERVER)}")
    try:
        n = 0
        for name, p in suite_programs("phys"):
            j = judge(p, t.run(p), t.name, t.facts())
            assert j.passed, (name, j.failure)
            n += 1
        assert n >= 13
    finally:
        t.close()
