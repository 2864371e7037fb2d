"""benchmarks/bench_compiled.py: the copies it builds are whole packages, and it marks exactly the lines a
mypy report names (the timing itself needs mypyc and minutes of compiling: run by hand)."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import load_benchmark

bc = load_benchmark("bench_compiled.py")


def test_the_copy_is_a_whole_package_that_imports_from_itself(tmp_path) -> None:
    root = bc.lay_out(str(tmp_path))
    files = bc.sources(str(tmp_path))
    assert "memspec/model/mm.py" in files and "memspec/specs/judge.py" in files
    assert any(f.startswith("memspec/model/os/") for f in files)
    assert all(os.path.isfile(os.path.join(tmp_path, f)) for f in files)
    r = subprocess.run([sys.executable, "-c", "import memspec.model.mm as m, memspec.benchmarks_compiled_program as p; "
                        "print(m.__file__); print(len(p.program(2).calls))"],
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    where, calls = r.stdout.split()
    assert where == os.path.join(root, "model", "mm.py")
    assert calls == "6"


def test_mark_adds_type_ignore_to_the_reported_lines_only(tmp_path) -> None:
    (tmp_path / "memspec").mkdir()
    f = tmp_path / "memspec" / "a.py"
    f.write_text("x = 1\ny = 2  # why\nz = 3\n")
    report = ("memspec/a.py:2: error: Incompatible types  [assignment]\n"
              "memspec/a.py:3: note: a note is not an error\n"
              "memspec/a.py:2: error: a second error on the same line  [misc]\n")
    assert bc.mark(str(tmp_path), report) == 1
    assert f.read_text() == "x = 1\ny = 2  # why  # type: ignore\nz = 3\n"
    assert bc.mark(str(tmp_path), report) == 0          # marked once


def test_cython_setup_names_the_modules_and_keeps_signatures(tmp_path, monkeypatch) -> None:
    """--compiler cython: the setup script it writes compiles the judge's modules (no package
    ``__init__``: Cython would make the package a module) with ``binding`` on, which keeps the
    rules' signatures that model/rules.py reads with inspect."""
    ran: list[list[str]] = []
    monkeypatch.setattr(bc.subprocess, "run", lambda argv, **kw: ran.append(argv) or subprocess.CompletedProcess(argv, 0))
    bc.cythonize(str(tmp_path), ["memspec/model/mm.py", "memspec/model/os/__init__.py", "memspec/specs/judge.py"])
    text = (tmp_path / "setup_cython.py").read_text()
    scope: dict = {}
    listed = text[text.index("cythonize(") + len("cythonize("):text.index("]") + 1]
    exec(f"files = {listed}", scope)
    assert scope["files"] == ["memspec/model/mm.py", "memspec/specs/judge.py"]
    assert '"binding": True' in text
    assert ran and ran[0][1:3] == ["setup_cython.py", "build_ext"]
