"""benchmarks/bench_sweep.py: where the anchor's source comes from, and why it is unavailable when
it cannot be had (no network needed: the clone is from a local repository or from nowhere)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ..conftest import load_benchmark

bench = load_benchmark("bench_sweep.py")


def test_a_given_tree_without_access_c_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("KVM_UNIT_TESTS", raising=False)
    src, why = bench.find_source(str(tmp_path), "", str(tmp_path))
    assert src is None and "no x86/access.c" in why


def test_no_tree_and_no_url_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv("KVM_UNIT_TESTS", raising=False)
    src, why = bench.find_source(None, "", str(tmp_path))
    assert src is None and "--kvm-unit-tests DIR" in why


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_an_unreachable_upstream_is_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("KVM_UNIT_TESTS", raising=False)
    url = "file://" + str(tmp_path / "nowhere.git")
    src, why = bench.find_source(None, url, str(tmp_path))
    assert src is None
    assert url in why and "not reachable" in why


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("gcc") is None or shutil.which("make") is None,
                    reason="git, gcc or make is not installed")
def test_a_reachable_upstream_is_cloned(tmp_path, monkeypatch):
    monkeypatch.delenv("KVM_UNIT_TESTS", raising=False)
    up = tmp_path / "upstream"
    (up / "x86").mkdir(parents=True)
    (up / "x86" / "access.c").write_text("int main(void) { return 0; }\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-q", "-m", "x"]):
        subprocess.run(cmd, cwd=up, check=True, env=env, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    src, why = bench.find_source(None, "file://" + str(up), str(work))
    assert why == "" and src is not None
    assert os.path.isfile(os.path.join(src, "x86", "access.c"))
