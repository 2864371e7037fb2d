"""Build the C example once per test session, with the system C compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

C_MODEL_DIR = Path(__file__).resolve().parents[2] / "examples" / "c-model"


def build_c_model(dest: Path) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.fail("no C compiler: install one (Debian: apt-get install -y gcc) to build examples/c-model")
    out = dest / "memspec_model"
    proc = subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                           str(C_MODEL_DIR / "memspec_model.c")], capture_output=True, text=True)
    assert proc.returncode == 0, f"examples/c-model does not build cleanly:\n{proc.stderr}"
    return out


@pytest.fixture(scope="session")
def c_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_c_model(tmp_path_factory.mktemp("c-model"))
