"""benchmarks/soak.py runs (a tiny budget), counts executions, and saves a crashing input as a program."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

import memspec.fuzz.differential as differential

HERE = os.path.dirname(os.path.abspath(__file__))
SOAK = os.path.join(HERE, "..", "..", "benchmarks", "soak.py")


def _soak():
    spec = importlib.util.spec_from_file_location("memspec_soak", SOAK)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("layer", ["phys", "hw", "os", "virt"])
def test_a_short_soak_of_each_layer_counts_and_passes(layer, tmp_path):
    f = _soak().soak_layer(layer, execs=15, seconds=60, out=str(tmp_path), quiet=True)
    assert f.execs == 15 and f.seconds > 0
    assert f.exceptions == 0 and f.not_pass == 0, f.saved
    assert sum(f.verdicts.values()) + f.empty == 15


def test_a_crash_is_counted_and_its_program_saved(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise ZeroDivisionError("a model bug")
    monkeypatch.setattr(differential, "execute", broken)
    f = _soak().soak_layer("phys", execs=5, seconds=60, out=str(tmp_path), quiet=True)
    assert f.exceptions == f.execs - f.empty >= 1 and f.distinct == 1
    (path,) = f.saved
    text = open(path).read()
    assert "ZeroDivisionError" in text and "# layer: phys" in text
    from memspec.program import parse
    assert parse(text).calls                      # the saved file is a program memspec replay reads


def test_the_command_line_prints_figures(tmp_path, capsys):
    rc = _soak().main(["--layer", "hw", "--execs", "5", "--out", str(tmp_path), "--quiet",
                       "--json", str(tmp_path / "s.json"), "--mem-limit", "0"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("hw") and " 5 execs" in out.replace("  ", " ")
    assert (tmp_path / "s.json").exists()
