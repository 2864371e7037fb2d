"""os-layer codec: fuzzer bytes -> the os layer's generator (``specs/gen_os.py``) driven by the
byte chooser, with the target's facts: its task size, RLIMIT_MEMLOCK and overcommit limit
(RAM, swap, vm.overcommit_memory) set where the generator's edges are, and a fact the target does
not declare is one the generator does not aim at (specs/gen_os_scenarios.py ``commit_limit``).
``encode`` is the inverse for text: ``decode(encode(p)) == p``, so a text reproducer seeds a corpus
as it is."""

from __future__ import annotations

from typing import Any

from memspec.program import Program
from memspec.specs import gen_os

from .bytes import decode as _decode, encode_text

USES_FACTS = True            # decode() takes the target's facts (fuzz/layers.py Layer.decode passes them)


def decode(data: bytes, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """Bytes -> program (total: every input gives a valid program, possibly empty); ``facts``: the
    target's (``task_size``, ``memlock_soft``, and ``ram_pages``, ``swap_pages``,
    ``overcommit_memory``, ``kernel`` for the commit-limit scenario)."""
    return _decode(data, "os", gen_os.program, calls, facts)


def encode(program: Program) -> bytes:
    """Program -> bytes that ``decode`` maps back to the same program."""
    return encode_text(program)
