"""The release artefacts: ``python -m build`` makes an sdist and a wheel that ``twine check``
accepts; the wheel holds every module and data file of the package and nothing at the
top level but ``memspec``; installed into a fresh venv it runs ``memspec check --target
model``; an editable install of a clone imports ``memspec.model`` from ``model/``.

Built once per session into a temporary folder, from a copy of the tracked files (what a
fresh clone has), so the checkout gets no build/ or egg-info of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PKG_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]   # memspec.model -> model
# scripts that are built on their own (OSS-Fuzz's compile_python_fuzzer), not modules of the package
NOT_IN_WHEEL = ("fuzz/oss/",)


def run(cmd: list[str], cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p


def tracked_files() -> list[str]:
    """The repository's files as a clone has them: git's list (with new files not yet ignored), when there is one."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
        return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]
    skip = {".git", ".venv", "build", "dist", "memspec-out", ".hypothesis", "__pycache__"}
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and not p.name.endswith(".pyc")
            and ".egg-info" not in str(p)]


def need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        pytest.fail(f"the packaging tests need {module!r}: pip install -e '.[dev]' (the dev extra has build and twine)")


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("build")
    base = tmp_path_factory.mktemp("dist")
    src = base / "src"
    for f in tracked_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    built = run([sys.executable, "-m", "build", "--outdir", str(base / "out"), str(src)], cwd=base, timeout=900)
    wheels = sorted((base / "out").glob("memspec-*-py3-none-any.whl"))
    sdists = sorted((base / "out").glob("memspec-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(os.listdir(base / "out"))
    (base / "build.log").write_text(built.stdout + built.stderr)
    return {"base": base, "src": src, "wheel": wheels[0], "sdist": sdists[0], "log": base / "build.log"}


def test_build_gives_no_setuptools_warning(dist: dict[str, Path]) -> None:
    """Warnings of today are tomorrow's missing files: a data folder that is not a listed
    package "would be ignored", a deprecated field stops building on a later setuptools."""
    log = dist["log"].read_text()
    for warning in ("Package would be ignored", "is deprecated", "SetuptoolsDeprecationWarning"):
        assert warning not in log, f"python -m build warns: {warning!r} (see {dist['log']})"


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    need("twine")
    p = run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])], cwd=dist["base"])
    assert p.stdout.count("PASSED") == 2, p.stdout


def expected_wheel_files() -> set[str]:
    """Every tracked file under a package's folder, at its installed path."""
    want = set()
    for f in tracked_files():
        if f.startswith(NOT_IN_WHEEL) or f.endswith((".pyc", ".gitignore")):
            continue
        for pkg, folder in PKG_DIRS.items():
            if f.startswith(folder + "/"):
                want.add(pkg.replace(".", "/") + f[len(folder):])
    return want


def test_wheel_holds_every_module_and_data_file_under_memspec_only(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        top_level = z.read(f"{info}/top_level.txt").decode().split()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    files = {n for n in names if not n.startswith(info + "/")}
    # nothing beside memspec/: no top-level model, specs, fuzz, targets or reports package
    assert {n.split("/")[0] for n in files} == {"memspec"}, sorted({n.split("/")[0] for n in files})
    assert top_level == ["memspec"]
    want = expected_wheel_files()
    assert not want - files, f"missing from the wheel: {sorted(want - files)[:20]}"
    assert not files - want, f"in the wheel but not in the repository: {sorted(files - want)[:20]}"
    # the parts a run needs, named (a check on the check above)
    for path in ("memspec/model/walk.py", "memspec/specs/machine_phys.py", "memspec/fuzz/codec_os.py",
                 "memspec/targets/model.py", "memspec/reports/html.py", "memspec/specs/differences.toml",
                 "memspec/fuzz/dict/os.dict", "memspec/targets/testkernel/kernel.c"):
        assert path in files, path
    for layer in ("os", "phys", "hw", "virt"):
        assert any(n.startswith(f"memspec/specs/suite/{layer}/") and n.endswith(".mst") for n in files), layer
    assert any(n.startswith("memspec/specs/suite/hw/segmentation/") for n in files)
    assert any(n.startswith("memspec/fuzz/corpus/") for n in files)
    assert "memspec = memspec.commands.cli:main" in entry_points and "memspec = memspec.commands.pytest_plugin" in entry_points


def test_sdist_carries_docs_examples_and_tests(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for path in ("README.md", "pyproject.toml", "docs/protocol.md", "docs/ci.md", "examples/c-model/memspec_model.c",
                 "tests/packaging/test_dist.py", "tools/test.sh", "model/walk.py", "specs/differences.toml"):
        assert path in names, path
    assert not any(n.endswith(".pyc") or "/__pycache__/" in n or n.startswith("memspec-out/") for n in names)


def fresh_venv(where: Path) -> Path:
    run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    return where / "bin"


def clean_env() -> dict[str, str]:
    """The environment without this test run's own Python paths."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def test_wheel_installs_in_a_fresh_venv_and_checks_the_model(dist: dict[str, Path]) -> None:
    base = dist["base"]
    bin_ = fresh_venv(base / "venv-wheel")
    run([str(bin_ / "python"), "-m", "pip", "install", "-q", str(dist["wheel"])], cwd=base, env=clean_env())
    work = base / "elsewhere"          # not the repository: imports come from site-packages only
    work.mkdir()
    p = run([str(bin_ / "python"), "-c",
             "import importlib.util, memspec, memspec.model, memspec.specs, memspec.fuzz, memspec.targets, "
             "memspec.reports; print(memspec.__file__); "
             "print([m for m in ('model', 'specs', 'fuzz', 'targets', 'reports') if importlib.util.find_spec(m)])"],
            cwd=work, env=clean_env())
    where, stray = p.stdout.splitlines()
    assert where.startswith(str(base / "venv-wheel")), where
    assert stray == "[]", f"top-level modules installed: {stray}"
    out = work / "out"
    p = run([str(bin_ / "memspec"), "check", "--target", "model", "--out", str(out)], cwd=work, env=clean_env())
    report = json.loads((out / "report.json").read_text())
    t = report["targets"][0]
    assert t["failures"] == [] and t["programs"] > 0 and t["calls"] > 0
    assert (out / "report.html").exists() and (out / "report.xml").exists()


def test_editable_install_of_a_clone_imports_from_its_folders(dist: dict[str, Path]) -> None:
    base, src = dist["base"], dist["src"]
    bin_ = fresh_venv(base / "venv-editable")
    run([str(bin_ / "python"), "-m", "pip", "install", "-q", "-e", str(src)], cwd=base, env=clean_env())
    work = base / "elsewhere-editable"
    work.mkdir()
    p = run([str(bin_ / "python"), "-c",
             "import importlib.util, memspec.model.walk, memspec.specs; print(memspec.model.walk.__file__); "
             "print(importlib.util.find_spec('model'))"], cwd=work, env=clean_env())
    walk, top = p.stdout.splitlines()
    assert Path(walk) == src / "model" / "walk.py" and top == "None", p.stdout
    run([str(bin_ / "memspec"), "clauses", "--layer", "phys"], cwd=work, env=clean_env())
