"""A mutant whose ``check`` run is stopped at the time limit while it is still confirming and
shrinking failures, but has already saved one, is a kill (benchmarks/mutation.py
``_saved_finding``): the saved program is what check reports, and the benchmark replays it on
the unmutated model like any other kill.  A run that saved nothing, or only a flaky finding,
stays a timeout."""

from __future__ import annotations

import os
import time

from ..conftest import load_benchmark

mutation = load_benchmark("mutation.py")

FOUND = """# memspec-program: 1
# target: mutant
# layer: os
# clause: {clause}
# verdict: {verdict}
a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
munmap(a+1, 0x1000)
"""


def _save(out, name, clause, verdict, mtime):
    folder = os.path.join(out, "counterexamples", "mutant")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(FOUND.format(clause=clause, verdict=verdict))
    os.utime(path, (mtime, mtime))
    return path


def test_the_first_saved_finding_is_the_kill(tmp_path) -> None:
    out = str(tmp_path / "out")
    t0 = time.time() - 100
    _save(out, "b.mst", "posix.munmap.einval-len0", "fail", t0 + 50)
    first = _save(out, "a.mst", "posix.munmap.einval-unaligned", "fail", t0 + 20)
    path, clause, calls, at = mutation._saved_finding(out, t0)
    assert (path, clause, calls) == (first, "posix.munmap.einval-unaligned", 2)
    assert 19 <= at <= 21


def test_nothing_saved_or_only_flaky_is_no_kill(tmp_path) -> None:
    out = str(tmp_path / "out")
    assert mutation._saved_finding(out, time.time()) is None
    _save(out, "a.mst", "posix.munmap.einval-unaligned", "flaky", time.time())
    assert mutation._saved_finding(out, time.time() - 10) is None
