"""`memspec bench --quick` runs and writes every figure with numerator, denominator and ratio.

No speed assertions: the numbers depend on the machine and its load.  A figure whose
peer is missing must say so (``unavailable`` with a reason) instead of giving numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from memspec.commands import bench


@pytest.mark.slow
def test_bench_quick_writes_every_figure(tmp_path) -> None:
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "bench", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "bench.json").read_text())
    want = {bench.load_module(f).NAME for f in bench.figure_modules()}
    assert want >= {"kernel_diff_vs_raw", "qemu_diff_vs_unicorn", "fuzz_invariant_overhead", "pbt_model_share",
                    "walk_batch_vs_numpy", "linux_program_vs_fork"}
    rows = {row["figure"]: row for row in data["figures"]}
    assert set(rows) == want
    for name, row in rows.items():
        assert "numerator" in row and "denominator" in row and "ratio" in row, name
        if row["status"] == "unavailable":
            assert row["reason"], name
            assert row["ratio"] is None
            continue
        assert row["status"] in ("met", "missed"), (name, row.get("reason"))
        for side in ("numerator", "denominator"):
            s = row[side]
            assert s["min"] <= s["median"] <= s["max"] and s["min"] > 0, (name, side)
        assert row["ratio"] == pytest.approx(row["numerator"]["median"] / row["denominator"]["median"])
        assert name in r.stdout
        assert 0 < row["cores"] <= 2.0, name
    assert 0 < data["machine"]["cores_worth"]["start"] <= 2.0
    assert "cores' worth right now" in r.stdout
    curves = {c["name"] for c in data["curves"]}
    assert {"mmap+munmap", "mprotect", "fault", "buddy alloc+free"} <= curves
    for c in data["curves"]:
        for pts in c["series"].values():
            assert [p["x"] for p in pts] == sorted(p["x"] for p in pts)
    assert (out / "scaling.svg").exists()
    if _has_matplotlib():
        assert (out / "scaling.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert data["plot"]["how"] == "matplotlib"
    else:
        assert not (out / "scaling.png").exists()
        assert "needs the plot extra" in r.stdout


def test_cores_worth_reads_two_processes_sharing_one_core_as_one() -> None:
    assert bench.cores_worth(1.0, 1.0) == pytest.approx(2.0)      # both done in the time of one: two cores
    assert bench.cores_worth(1.0, 2.0) == pytest.approx(1.0)      # twice as long: one core shared
    assert bench.cores_worth(1.0, 1.6) == pytest.approx(1.25)
    assert bench.cores_worth(1.0, 0.0) == 0.0


def test_parallel_capacity_is_one_core_without_a_second_cpu(monkeypatch) -> None:
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 1)
    assert bench.parallel_capacity() == 1.0


def test_parallel_capacity_measures_this_machine() -> None:
    got = bench.parallel_capacity(spin=50_000, tries=3)
    assert 0 < got <= 2.0


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _curves() -> list[bench.Curve]:
    c = bench.Curve("mprotect", "mappings", 2.0)
    c.series = {"model": [(10, [1e-6, 2e-6]), (1000, [3e-6]), (65000, [5e-6])],
                "kernel": [(10, [4e-7]), (1000, [5e-7]), (65000, [6e-7])]}
    return [c, bench.Curve("empty", "frames", 2.0)]


def test_plot_draws_the_png_with_matplotlib(tmp_path) -> None:
    if not _has_matplotlib():
        pytest.fail("matplotlib (the plot extra, in dev) is not installed: pip install -e '.[dev]'")
    plot = bench.load_module("plot.py")
    png, svg = tmp_path / "s.png", tmp_path / "s.svg"
    assert plot.plot(_curves(), str(png), str(svg)) == "matplotlib"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = svg.read_text()
    assert text.startswith("<svg") and "mprotect" in text and "kernel" in text and text.count("<polyline") == 2


def test_plot_without_matplotlib_writes_the_svg_and_says_the_png_needs_the_extra(tmp_path, monkeypatch,
                                                                                    capsys) -> None:
    plot = bench.load_module("plot.py")
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib -> ImportError
    png, svg = tmp_path / "s.png", tmp_path / "s.svg"
    png.write_bytes(b"an older run's figure")
    how = plot.plot(_curves(), str(png), str(svg))
    assert "needs the plot extra" in how and "memspec[plot]" in how
    assert how in capsys.readouterr().out
    assert not png.exists()                   # a stale PNG must not pass for this run's
    assert svg.read_text().count("<polyline") == 2


def test_only_rejects_an_unknown_figure(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "bench", "--quick", "--only", "no_such_figure",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "unknown figure 'no_such_figure'" in r.stderr


def test_unavailable_figure_is_reported_not_measured(tmp_path) -> None:
    class Missing:
        NAME, GOAL, UNIT, NUMERATOR, DENOMINATOR = "missing_peer", 0.5, "x/s", "n", "d"

        @staticmethod
        def setup(quick: bool):
            raise bench.Unavailable("the peer is not installed")

    row = bench.measure_figure(Missing, True, 2)
    assert row["status"] == "unavailable" and row["reason"] == "the peer is not installed"
    assert row["numerator"] is None and row["ratio"] is None
    assert "unavailable: the peer is not installed" in "\n".join(bench.table_lines([row]))
    assert os.path.isdir(bench.benchmarks_dir())


def test_a_crashing_figure_is_an_error_row(tmp_path) -> None:
    class Crashes:
        NAME, GOAL, UNIT, NUMERATOR, DENOMINATOR = "crashes", 0.5, "x/s", "n", "d"

        @staticmethod
        def setup(quick: bool):
            return bench.Pair(lambda: 1 / 0, lambda: 1.0)

    row = bench.measure_figure(Crashes, True, 2)
    assert row["status"] == "error" and row["reason"].startswith("ZeroDivisionError")
    assert row["ratio"] is None
