"""Seeded broken allocators (tests/broken/malloc_bugs.c), preloaded like jemalloc & co.:
``memspec check --target malloc:/path/to/lib.so`` must catch each bug, by the clause it
breaks, with a short counterexample; the faithful wrapper built from the same file passes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from memspec.commands.check import Checker, CheckOptions
from memspec.program import parse

SOURCE = Path(__file__).resolve().parents[1] / "broken" / "malloc_bugs.c"

# build define -> the clauses that may report it (the first one is the law it breaks)
BUGS = {
    "OVERLAP": ("c11.malloc.disjoint",),
    "MISALIGN": ("posix.posix_memalign.aligned", "c11.aligned_alloc.aligned", "glibc.memalign.rounds-up"),
    "REALLOC_TAIL": ("c11.realloc.preserves-contents",),
    "CALLOC_DIRTY": ("c11.calloc.zeroed",),
}


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> dict[str, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("the broken allocators are built with gcc: apt-get install gcc (tools/test.sh does)")
    out = tmp_path_factory.mktemp("malloc-bugs")
    built = {}
    for bug in (*BUGS, "NONE"):
        so = out / f"{bug.lower()}.so"
        subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-DBUG_{bug}", "-o", str(so),
                        str(SOURCE), "-ldl"], check=True)
        built[bug] = so
    return built


def check(so: Path, out: Path, programs: int = 10):
    opts = CheckOptions(targets=[f"malloc:{so}"], out=str(out), programs=programs, machine_examples=0, confirm=1,
                        shrink_budget=80, quiet=True)
    return Checker(opts).run()


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_seeded_bug_is_caught_with_a_short_program(bug, libs, tmp_path):
    results = check(libs[bug], tmp_path)
    (t,) = results.targets
    failures = t.unexplained()
    assert failures, f"{bug} was not caught"
    clauses = {f.clause for f in failures}
    assert BUGS[bug][0] in clauses or clauses & set(BUGS[bug]), (bug, clauses)
    best = min((f for f in failures if f.clause in BUGS[bug]), key=lambda f: len(parse(f.program).calls))
    calls = parse(best.program).calls
    assert len(calls) <= 6, f"{bug}: the counterexample is not minimal:\n{best.program}"
    assert best.verdict == "fail" and best.replay.startswith("memspec replay ")
    # the saved counterexample replays to the same failure
    assert Path(best.file).read_text(encoding="utf-8") == best.program


def test_the_faithful_wrapper_passes(libs, tmp_path):
    results = check(libs["NONE"], tmp_path, programs=30)
    (t,) = results.targets
    assert t.failures == [], [(f.clause, f.program) for f in t.failures]
    assert t.programs > 0 and "c11.calloc.zeroed" in t.clauses
    # the implementation-choice table has the wrapper's column, measured (glibc underneath)
    row = {r["id"]: r["values"][t.name] for r in results.impl_choices["rows"]}
    assert row["malloc0"] == "unique pointer, usable size 24" and row["realloc0"] == "frees p, returns NULL"


def test_a_hanging_allocator_is_a_verdict_within_the_time_limit(tmp_path):
    """A preloaded allocator that never returns: the call is reported as a hang after the target's
    time limit, the child's process group is killed, and the next program runs normally."""
    import time

    from memspec.records import RunStatus
    from memspec.targets.libc import malloc_target
    gcc = shutil.which("gcc") or pytest.fail("apt-get install gcc")
    so = tmp_path / "hang.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-DBUG_HANG", "-o", str(so), str(SOURCE), "-ldl"], check=True)
    t = malloc_target(str(so), timeout=1.0)
    try:
        t0 = time.monotonic()
        r = t.run(parse("a = malloc(16)\nb = malloc(666)\nc = malloc(16)\n"))
        assert time.monotonic() - t0 < 5
        assert r.status is RunStatus.HANG and "call 2" in r.message and len(r.outcomes) == 1
        assert t.run(parse("a = malloc(16)\nfree(a)\n")).status is RunStatus.OK
    finally:
        t.close()
