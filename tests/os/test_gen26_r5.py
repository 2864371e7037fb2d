"""Issue #26, fifth round: the os generator's commit-limit scenario
(specs/gen_os_scenarios.py) and the directed programs specs/suite/os/63-*.mst to 70-*.mst.  Each
broken model of tests/os/broken_gen26_r5.py is caught by them -- by a one-program replay here, and by
``memspec check`` at its default settings in the slow test -- and each passed ``check`` at default
settings with the generator and suite of the commit before (0 failures: measured, see the slow
test's parameters)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from memspec.commands.cli import main
from memspec.model.mm import Config
from memspec.program import load, parse
from memspec.specs import gen_os_scenarios
from memspec.targets.model import ModelTarget

HERE = Path(__file__).resolve().parent
SUITE = HERE.parent.parent / "specs" / "suite" / "os"
PAGE = 4096


def _broken():
    spec = importlib.util.spec_from_file_location("broken_gen26_r5", HERE / "broken_gen26_r5.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod



# the commit scenario's shape, its facts and its weight: tests/os/test_commit_scenario.py


def test_commit_scenario_stays_out_after_mlockall_and_memory_limit() -> None:
    class G:
        r = None
        calls = [parse("mlockall(MCL_CURRENT)\n").calls[0]]
    gen_os_scenarios.commit_scenario(G(), {})
    assert len(G.calls) == 1


@pytest.mark.parametrize("bug, program, clause", [
    ("pipe-validate-late", "63-shared-validate-pipe.mst", "linux.mmap.eopnotsupp-validate"),
    ("collapse-small-einval", "65-collapse-without-block.mst", "linux.madvise.collapse"),
    ("mprotect-one-byte-ignored", "68-byte-lengths.mst", "posix.mmap.prot-enforced-write"),
    ("mbind-default-reports-holes", "69-mbind-default-hole.mst", "linux.numa.mbind-sets-policy"),
    ("exit-leaks-descriptors", "70-exit-drops-descriptors.mst", "seed.fault.step4-frame"),
    ("mlockall-limit-inclusive", "71-mlockall-at-limit.mst", "posix.mlockall.locks"),
])
def test_each_directed_program_catches_its_broken_model(bug, program, clause, capsys) -> None:
    path = SUITE / program
    prog = parse(path.read_text())
    assert ModelTarget().run(prog).outcomes != _broken().target(bug).run(prog).outcomes
    assert main(["replay", "--target", f'py:{HERE / "broken_gen26_r5.py"}:target("{bug}")', str(path)]) == 1
    assert f"FAIL {clause}" in capsys.readouterr().out


def test_the_commit_scenario_catches_the_heuristic_read_as_always(tmp_path, capsys) -> None:
    f = tmp_path / "commit.mst"
    n = (Config().ram_pages + 1) * PAGE
    f.write_text(f"# memspec-program: 1\na = mmap(NULL, {n:#x}, PROT_READ, MAP_SHARED|MAP_ANONYMOUS, -1, 0)\n"
                 f"munmap(a, {n:#x})\n")
    assert main(["replay", "--target", f'py:{HERE / "broken_gen26_r5.py"}:target("commit-unchecked")', str(f)]) == 1
    assert "FAIL linux.mmap.enomem-overcommit" in capsys.readouterr().out


# bug, the clauses it may fail, and what the generator and suite of the commit before gave at default
# settings (measured: memspec check -q --target py:tests/os/broken_gen26_r5.py:target("BUG") --layer os:
# 0 failures for each)
@pytest.mark.slow
@pytest.mark.parametrize("bug, clauses", [
    ("collapse-small-einval", ("linux.madvise.collapse",)),
    ("mprotect-one-byte-ignored", ("posix.mmap.prot-enforced-write",)),
    ("mbind-default-reports-holes", ("linux.numa.mbind-sets-policy",)),
    ("exit-leaks-descriptors", ("seed.fault.step4-frame",)),
    ("mlockall-limit-inclusive", ("posix.mlockall.locks",)),
])
def test_check_at_default_settings_catches_it(bug, clauses, tmp_path) -> None:
    out = tmp_path / "out"
    status = main(["check", "-q", "--target", f'py:{HERE / "broken_gen26_r5.py"}:target("{bug}")', "--layer", "os",
                   "--out", str(out)])
    assert status == 1
    fails = [f for t in json.loads((out / "report.json").read_text())["targets"] for f in t["failures"]]
    mine = [f for f in fails if f["clause"] in clauses]
    assert mine, [f["clause"] for f in fails]
    assert len(load(mine[0]["file"]).calls) <= 12, mine[0]["program"]
