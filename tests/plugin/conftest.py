from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def c_model_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.fail("no C compiler: install one (Debian: apt-get install -y gcc) to build examples/c-model")
    out = tmp_path_factory.mktemp("c-model-plugin") / "memspec_model"
    subprocess.run([cc, "-O2", "-std=c99", "-o", str(out), str(ROOT / "examples" / "c-model" / "memspec_model.c")],
                   check=True)
    return out
