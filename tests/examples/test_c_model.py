"""The C example judged by `memspec check --target cmd:...`: clean, it passes; each
documented bug makes it fail with the clause that bug breaks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import C_MODEL_DIR

MEMSPEC = [sys.executable, "-m", "memspec.commands.cli"]


def check(tmp_path: Path, target: str, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "out"
    proc = subprocess.run(MEMSPEC + ["check", "-q", "--target", target, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), f"harness error (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads((out / "report.json").read_text())
    return proc.returncode, report, proc.stdout


def test_clean_c_model_passes_os(c_model: Path, tmp_path: Path) -> None:
    rc, report, text = check(tmp_path, f"cmd:{c_model}", "--programs", "40", "--machine-examples", "10")
    t = report["targets"][0]
    assert rc == 0, text
    assert t["failures"] == [] and t["layers"] == ["os"]
    for cid in ("posix.mmap.einval-len0", "posix.mprotect.sets-prot", "posix.fork.private-copy",
                "posix.mmap.shared-visible", "linux.x86.nx-enforced", "linux.proc-maps.matches"):
        assert t["clauses"][cid].get("pass", 0) > 0, cid
    # calls it does not implement are reported as not applicable, never passed
    assert t["not_applicable"] > 0
    assert not set(t["not_applicable_clauses"]) & set(t["clauses"])
    assert (tmp_path / "out" / "report.html").exists()


def test_clean_c_model_passes_phys_buddy(c_model: Path, tmp_path: Path) -> None:
    rc, report, text = check(tmp_path, f"cmd:{c_model}", "--layer", "phys", "--programs", "20",
                             "--machine-examples", "5")
    t = report["targets"][0]
    assert rc == 0, text
    assert t["layers"] == ["phys"]
    for cid in ("linux.buddy.free", "linux.buddy.free-unallocated", "linux.buddy.enomem-when-exhausted"):
        assert t["clauses"].get(cid, {}).get("pass", 0) > 0, cid
    # slab, heap, GC ... are not implemented by the example: not applicable
    assert any(cid.startswith(("bonwick.", "c11.", "jones.")) for cid in t["not_applicable_clauses"])


# bug -> (extra arguments, the clause the failure must name)
BUGS = {
    "mprotect-last-page": ((), "posix.mprotect.sets-prot"),
    "munmap-leaves-page": ((), "posix.access.unmapped-sigsegv"),
    "len0-enomem": ((), "posix.mmap.einval-len0"),
    "nx-ignored": ((), "linux.x86.nx-enforced"),
    "fork-shares-private": ((), "posix.fork.private-copy"),
    "buddy-double-free": (("--layer", "phys"), "linux.buddy.free-unallocated"),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_its_clause(c_model: Path, tmp_path: Path, bug: str) -> None:
    extra, clause = BUGS[bug]
    # the directed suite finds each of these; a few random programs ride along
    rc, report, text = check(tmp_path, f"cmd:{c_model} --bug={bug}", *extra, "--programs", "5",
                             "--machine-examples", "0")
    assert rc == 1, text
    failed = {f["clause"]: f for f in report["targets"][0]["failures"]}
    assert clause in failed, f"{bug}: expected a failure of {clause}, got {sorted(failed)}"
    f = failed[clause]
    assert f["replay"].startswith("memspec replay ") and Path(f["file"]).exists()
    # the replay command reproduces it
    replay = subprocess.run(MEMSPEC + ["replay", f["file"]], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 1, replay.stdout + replay.stderr


COALESCE = """\
# memspec-program: 1
# about: node 1 has eight order-10 blocks; take seven, split the eighth, free the piece: it merges back
a1 = buddy_alloc(10, 1, GFP_THISNODE)
a2 = buddy_alloc(10, 1, GFP_THISNODE)
a3 = buddy_alloc(10, 1, GFP_THISNODE)
a4 = buddy_alloc(10, 1, GFP_THISNODE)
a5 = buddy_alloc(10, 1, GFP_THISNODE)
a6 = buddy_alloc(10, 1, GFP_THISNODE)
a7 = buddy_alloc(10, 1, GFP_THISNODE)
s = buddy_alloc(0, 1, GFP_THISNODE)
buddy_free(s)
l = buddy_largest(1)
"""


def test_buddy_no_coalesce_found_by_a_directed_program(c_model: Path, tmp_path: Path) -> None:
    prog = tmp_path / "coalesce.mst"
    prog.write_text(COALESCE)
    ok = subprocess.run(MEMSPEC + ["replay", str(prog), "--target", f"cmd:{c_model}"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(MEMSPEC + ["replay", str(prog), "--target", f"cmd:{c_model} --bug=buddy-no-coalesce"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "linux.buddy.coalesce" in bad.stdout, bad.stdout + bad.stderr


def test_bug_list_matches_the_readme(c_model: Path) -> None:
    listed = subprocess.run([str(c_model), "--bugs"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert names == set(BUGS) | {"buddy-no-coalesce"}
    readme = (C_MODEL_DIR / "README.md").read_text()
    for name in names:
        assert f"`--bug={name}`" in readme, f"examples/c-model/README.md does not document {name}"


def test_unknown_bug_is_a_usage_error(c_model: Path) -> None:
    p = subprocess.run([str(c_model), "--bug=no-such-bug"], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown bug" in p.stderr


def test_hello_and_garbage(c_model: Path) -> None:
    """The example answers hello with its capabilities and garbage with an error message."""
    p = subprocess.run([str(c_model)], input='{"type":"hello","protocol":1}\nnot json\n{"type":"bye"}\n',
                       capture_output=True, text=True, timeout=10)
    hello, err = [json.loads(line) for line in p.stdout.splitlines()]
    assert hello["protocol"] == 1 and hello["layers"] == ["os", "phys"]
    assert {"mmap", "fork", "buddy_alloc"} <= set(hello["calls"]) and "kmalloc" not in hello["calls"]
    assert err["type"] == "error"
    assert re.search(r"cc .*memspec_model\.c", (C_MODEL_DIR / "README.md").read_text())


def test_same_seed_same_verdicts_and_exit_codes_for_ci(c_model: Path, tmp_path: Path) -> None:
    """What docs/ci.md promises: a fixed --seed gives the same run; 2 means nothing was judged."""
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        p = subprocess.run(MEMSPEC + ["check", "-q", "--target", f"cmd:{c_model}", "--seed", "3", "--programs", "10",
                                      "--machine-examples", "2", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        t = json.loads((out / "report.json").read_text())["targets"][0]
        runs.append((t["programs"], t["calls"], t["clauses"], t["not_applicable"]))
    assert runs[0] == runs[1]
    p = subprocess.run(MEMSPEC + ["check", "-q", "--target", f"cmd:{tmp_path}/no-such-binary", "--out",
                                  str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "cannot start" in p.stderr


@pytest.mark.xfail(strict=True, reason="open (issue 26, blame on target): the os generator now reads pages back "
                   "after mprotect, so the seeded bug is also seen directly by loads and stores, each a failure "
                   "under the access's clause; grouping them under the mprotect that caused them is not built yet")
def test_one_bug_is_one_failure_blamed_on_its_call(c_model: Path, tmp_path: Path) -> None:
    """A checkpoint that shows the seeded mprotect bug only after a later call (munmap) is blamed on
    the mprotect and its clause, not on the call it happened to follow: one bug, one failure."""
    rc, report, text = check(tmp_path, f"cmd:{c_model} --bug=mprotect-last-page", "--programs", "200",
                             "--machine-examples", "0")
    assert rc == 1, text
    fails = [f for f in report["targets"][0]["failures"] if f["clause"] != "linux.x86.exec-only-pkey"]
    assert [f["clause"] for f in fails] == ["posix.mprotect.sets-prot"], [(f["clause"], f["call_text"]) for f in fails]
    assert "mprotect(" in fails[0]["call_text"]


def test_a_checkpoint_failure_is_localised_to_the_call_that_caused_it(c_model: Path) -> None:
    from memspec.fuzz.differential import execute, localise
    from memspec.program import parse
    from memspec.targets.registry import make_target
    prog = parse("a = mmap(NULL, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                 "mprotect(a, 0x2000, PROT_READ)\n"
                 "b = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                 "munmap(b, 0x1000)\n")
    t = make_target(f"cmd:{c_model} --bug=mprotect-last-page")
    try:
        facts = t.facts()
        j = execute(t, prog, facts)
        assert j.failure is not None and j.failure.index == 3 and j.failure.at == "checkpoint"
        loc = localise(t, prog, facts, j)
        assert loc.failure is not None and loc.failure.index == 1, loc.failure
        assert loc.failure.clause == "posix.mprotect.sets-prot"
    finally:
        t.close()
