"""``memspec check --target malloc:NAME`` passes on glibc's malloc and on the three malloc
libraries Debian ships (tools/test.sh installs them): no unexplained failure, each library's
known and cited differences (specs/differences-malloc.toml) reported apart, and the
implementation-choice table measured on it.  A missing library fails with the command that
installs it: it is never skipped."""

from __future__ import annotations

import json

import pytest

from ..conftest import missing_peer

from memspec.errors import UsageError
from memspec.targets.libc import malloc_target

LIBRARIES = ("glibc", "jemalloc", "mimalloc", "tcmalloc")


@pytest.mark.parametrize("name", LIBRARIES)
def test_check_passes_with_the_choice_table(name, memspec_cli, tmp_path):
    try:
        malloc_target(name).close()
    except UsageError as e:    # the message names the Debian package to install
        missing_peer(f"malloc:{name}", f"{e} (tools/test.sh installs it)")
    out = tmp_path / "out"
    p = memspec_cli("check", "--target", f"malloc:{name}", "--programs", "40", "--machine-examples", "5",
                    "--confirm", "1", "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    (t,) = report["targets"]
    unexplained = [(f["clause"], f["program"]) for f in t["failures"] if not f["expected_difference"]]
    assert p.returncode == 0 and unexplained == [], (p.returncode, unexplained, p.stderr[-3000:])
    assert t["programs"] > 40 and t["machine"]["result"] == "pass"
    for cid in ("c11.malloc.disjoint", "c11.calloc.zeroed", "c11.realloc.preserves-contents", "c11.free.null-noop"):
        assert cid in t["clauses"], cid
    # the implementation-choice table, measured on this library (text summary, JSON and HTML)
    table = report["impl_choices"]
    assert table["columns"] == [f"malloc:{name}"]
    values = {r["id"]: r["values"][f"malloc:{name}"] for r in table["rows"]}
    assert values["malloc0"].startswith(("unique pointer", "NULL")), values
    assert values["realloc0"].startswith(("frees p", "returns")), values
    assert values["huge-size-max"].startswith("NULL"), values
    assert all(v and not v.startswith(("crash", "hang")) for v in values.values()), values
    assert "implementation choices" in p.stdout and "malloc(0)" in p.stdout
    assert "Implementation choices" in (out / "report.html").read_text()


@pytest.mark.slow   # bound by wall-clock time (8 s): CI runs it, a plain local run skips it
def test_a_huge_calloc_fails_under_the_memory_limit_instead_of_hanging():
    """tcmalloc clears calloc's memory itself: calloc(3, 0x100000000) used to write 12 GiB of
    zeros and run into the time limit.  The child's address-space limit makes it fail at once."""
    import time

    from memspec.program import parse
    from memspec.records import RunStatus
    for name in ("glibc", "tcmalloc"):
        t = malloc_target(name, timeout=10.0)
        try:
            t0 = time.monotonic()
            r = t.run(parse("p = calloc(3, 0x100000000)\nq = calloc(1, 0x40000000)\nfree(q)\n"))
            assert r.status is RunStatus.OK and time.monotonic() - t0 < 8, (name, r)
            assert r.outcomes[0].value == 0 and r.outcomes[0].errno == "ENOMEM", name
            assert r.outcomes[1].value, name        # 1 GiB is within the limit
            assert t.facts()["mem_limit"] == 2 << 30
        finally:
            t.close()
