"""Each of the seed's quantitative experiments runs from the CLI, prints its table with the seed's
claim beside the measured number, writes its plot, and its numbers match the claims where they should."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memspec.commands.experiments import kpti as experiment_kpti
from memspec.commands.experiments import numa as experiment_numa
from memspec.commands.experiments import replacement as experiment_replacement
from memspec.commands.experiments import tlb as experiment_tlb
from memspec.commands.experiments import workingset as experiment_workingset


def test_tlb_reach_is_512_times_per_page_size(tmp_path, capsys):
    r = experiment_tlb.run(str(tmp_path))
    assert r["ratio_2m_4k"] == 512 == r["ratio_1g_2m"] == r["seed_claim"]
    assert [x["refs_per_miss"] for x in r["reach"]] == [4, 3, 2]
    # the miss curve bends 512 times later with 2 MiB pages
    assert r["knee"]["2 MiB"] == 512 * r["knee"]["4 KiB"]
    assert os.path.exists(r["plot"]) and "seed.tlb.huge-512x" in capsys.readouterr().out


def test_belady_anomaly_and_opt_lower_bound(tmp_path, capsys):
    r = experiment_replacement.run(str(tmp_path))
    assert r["belady"]["FIFO"][3] == 9 and r["belady"]["FIFO"][4] == 10 and r["anomaly"]
    assert r["belady"]["OPT"][3] == 7 and r["belady"]["LRU"][4] <= r["belady"]["LRU"][3]
    assert r["opt_lower_bound"]
    assert os.path.exists(r["plot"]) and "belady.fifo-anomaly" in capsys.readouterr().out


def test_working_set_from_the_os_model_matches_denning(tmp_path):
    r = experiment_workingset.run(str(tmp_path))
    assert r["mismatches"] == [] and r["monotone"]
    assert r["settled"][0][50] == 6 and r["settled"][1][50] == 20
    assert os.path.exists(r["plot"])


def test_kpti_flushes_per_syscall(tmp_path, capsys):
    r = experiment_kpti.run(str(tmp_path))
    per = r["per_syscall"]
    assert per["KPTI + PCID"]["flushes"] == 0 and per["KPTI"]["flushes"] >= 2
    assert per["KPTI"]["cr3_writes"] >= 2 and per["no KPTI"]["cr3_writes"] < 1
    assert per["KPTI"]["walks"] > per["KPTI + PCID"]["walks"] >= per["no KPTI, PCID"]["walks"]
    # overhead falls with work per syscall, and the model crosses the seed's 5-30% band
    o = r["overhead"]["KPTI"]
    assert o == sorted(o, reverse=True) and r["in_seed_band"]["KPTI"]
    assert "seed.kpti.overhead-5-30" in capsys.readouterr().out and os.path.exists(r["plot"])


def test_numa_first_touch_goes_remote_after_migration(tmp_path):
    r = experiment_numa.run(str(tmp_path))["results"]
    n = experiment_numa.PAGES * experiment_numa.ROUNDS
    assert r["first touch, migrates"]["remote_after_move"] == n and r["first touch, migrates"]["remote_before_move"] == 0
    assert r["first touch, pinned"]["remote"] == 0
    assert r["bind node 1, migrates"]["remote_after_move"] == 0
    assert r["interleave, migrates"]["remote_after_move"] == n // 2


@pytest.mark.parametrize("name", ["replacement"])
def test_experiment_runs_from_the_cli(tmp_path, name):
    p = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "experiment", name, "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "plot:" in p.stdout and any(f.startswith("replacement_faults") for f in os.listdir(tmp_path))
