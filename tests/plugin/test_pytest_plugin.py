"""The pytest plugin, run the way a user's project runs it (pytester, in a subprocess)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT

pytest_plugins = ["pytester"]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    # Load the plugin explicitly: the test must not depend on how memspec was installed.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def go(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "memspec.commands.pytest_plugin", "-p", "no:cacheprovider", *args,
                                             timeout=300)
    return go


def test_clean_target_every_clause_passes_or_is_skipped_with_a_reason(run, c_model_bin: Path) -> None:
    r = run(f"--memspec-target=cmd:{c_model_bin}", "--memspec-programs=20", "--memspec-examples=3", "-v", "-rs")
    outcomes = r.parseoutcomes()
    assert r.ret == 0, r.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 20
    # clause IDs are the test names
    # (in collection order: clause IDs sorted)
    r.stdout.fnmatch_lines(["*memspec-os[[]cmd:*memspec_model[]]::posix.fork.private-copy PASSED*",
                            "*memspec-os[[]cmd:*memspec_model[]]::posix.mmap.einval-len0 PASSED*"])
    # what the target does not implement is skipped as not applicable, not passed
    r.stdout.fnmatch_lines(["SKIPPED*not applicable:*does not implement*"])


def test_a_broken_target_fails_the_clause_with_program_and_replay(run, pytester: pytest.Pytester,
                                                                  c_model_bin: Path) -> None:
    r = run(f"--memspec-target=cmd:{c_model_bin} --bug=len0-enomem", "--memspec-programs=5",
            "--memspec-examples=0")
    assert r.ret == 1
    out = r.stdout.str()
    r.stdout.fnmatch_lines(["FAILED memspec-os[[]cmd:*--bug=len0-enomem[]]::posix.mmap.einval-len0*"])
    for want in ("posix.mmap.einval-len0: mmap with length 0 fails with EINVAL", "expected: -1 EINVAL",
                 "observed: -1 ENOMEM", "  > ", "replay: memspec replay ", "report: ", "-os.html"):
        assert want in out, want
    # the reports are written too, under the project's root directory
    assert list((pytester.path / "memspec-out").glob("pytest-*-os.html"))


def test_ini_option_and_the_broken_model_server(run, pytester: pytest.Pytester) -> None:
    server = ROOT / "tests" / "broken" / "broken_server.py"
    pytester.makeini(f"""
        [pytest]
        memspec_target = cmd:{sys.executable} {server} prot-none-readable
        memspec_programs = 5
        memspec_examples = 0
    """)
    r = run()
    assert r.ret == 1
    r.stdout.fnmatch_lines(["FAILED memspec-os[[]cmd:*prot-none-readable[]]::posix.mmap.prot-none-sigsegv*"])


def test_all_layers_each_get_their_clause_tests(run, c_model_bin: Path) -> None:
    r = run(f"--memspec-target=cmd:{c_model_bin}", "--memspec-layer=all", "--memspec-programs=3",
            "--memspec-examples=0", "-v")
    assert r.ret == 0, r.stdout.str()
    r.stdout.fnmatch_lines(["*memspec-os[[]cmd:*]::posix.mmap.einval-len0 PASSED*"])
    r.stdout.fnmatch_lines(["*memspec-phys[[]cmd:*]::linux.buddy.free-unallocated PASSED*"])
    bad = run(f"--memspec-target=cmd:{c_model_bin}", "--memspec-layer=hw")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "does not implement layer 'hw'" in bad.stderr.str()


def test_inert_without_a_target(run, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert len('ab') == 2\n")
    r = run("-v")
    r.assert_outcomes(passed=1)
    assert "memspec-" not in r.stdout.str()


def test_a_target_that_cannot_start_is_a_usage_error(run) -> None:
    r = run("--memspec-target=cmd:./no-such-implementation")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot start target" in r.stderr.str()


def test_registered_as_a_pytest11_entry_point() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"]["memspec"] == "memspec.commands.pytest_plugin"
