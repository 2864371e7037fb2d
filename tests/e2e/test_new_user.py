"""Rough edges a new user met in a first afternoon (issue "What a new user meets"): each test
here failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ..conftest import missing_peer

PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_server.py")


def _report(out: str) -> dict:
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


# -- output locations are checked before any work -----------------------------------------------

@pytest.mark.parametrize("args", [
    ("check", "--target", "model", "--out", "{file}"),
    ("check", "--target", "model", "--out", "{file}/sub"),
    ("compare", "--target", "model", "--target", "model", "--out", "{file}"),
    ("fuzz", "--target", "model", "--time", "5", "--corpus", "{file}/c"),
    ("fuzz", "--target", "model", "--time", "5", "--findings", "{file}"),
    ("experiment", "buddy", "--out", "{file}"),
    ("check", "--target", "model", "--out", "/proc/nope"),
])
def test_an_unwritable_output_is_one_line_and_exit_2_before_any_work(memspec_cli, tmp_path, args) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    argv = [a.replace("{file}", str(blocker)) for a in args]
    t0 = time.monotonic()
    r = memspec_cli(*argv)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and ("cannot write" in err[0] or "not a directory" in err[0]), r.stderr
    assert time.monotonic() - t0 < 30          # refused at once, not after the run


def test_an_unwritable_folder_is_refused(memspec_cli, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    # root bypasses directory modes: run the command as an unprivileged user where we are root
    # (setpriv is util-linux's, an essential package of Debian: always there)
    pre = [] if os.geteuid() != 0 else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    tmp_path.chmod(0o755)
    r = subprocess.run(pre + [PY, "-m", "memspec.commands.cli", "check", "--target", "model", "--out", str(ro / "out")],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot write" in r.stderr and "Traceback" not in r.stderr


# -- SIGTERM is Ctrl-C's twin: a partial report and exit 143 -------------------------------------

@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_sigterm_writes_a_partial_report_and_exits_143(tmp_path) -> None:
    out = str(tmp_path / "out")
    p = subprocess.Popen([PY, "-m", "memspec.commands.cli", "check", "--target", "model", "--programs", "100000",
                          "--out", out, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 143, stdout + stderr
    rep = _report(out)
    assert rep["interrupted"] is True and rep["interrupted_by"] == "SIGTERM" and rep["exit_code"] == 143
    with open(os.path.join(out, "report.html")) as f:
        page = f.read()
    assert "exit code 143" in page and "partial" in page and "exit code 1)" not in page


def test_the_html_banner_gives_the_real_exit_code_after_ctrl_c() -> None:
    from memspec.reports.html import render
    page = render({"summary": {"unexplained_failures": 2}, "interrupted": True, "interrupted_by": "SIGINT",
                   "exit_code": 130, "targets": []})
    assert "exit code 130" in page and "exit code 1)" not in page
    # an older report without exit_code: derived, and still not "1" for an interrupted run
    page = render({"summary": {"unexplained_failures": 2}, "interrupted": True, "targets": []})
    assert "exit code 130" in page


# -- reports are readable by others (the umask decides, not mkstemp) -----------------------------

def test_reports_follow_the_umask(memspec_cli, tmp_path) -> None:
    from memspec.atomic import write_text
    old = os.umask(0o022)
    try:
        write_text(str(tmp_path / "r.json"), "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o644
    old = os.umask(0o077)
    try:
        write_text(str(tmp_path / "s.json"), "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "s.json").st_mode) == 0o600


# -- the HTML report puts failures first ---------------------------------------------------------

def _failing_report() -> dict:
    cat = {f"a.clause-{i:03d}": {"layer": "os", "statement": f"s{i}", "citation": "c"} for i in range(200)}
    cat["z.failing"] = {"layer": "os", "statement": "the failing one", "citation": "POSIX"}
    fail = {"clause": "z.failing", "verdict": "fail", "statement": "the failing one", "program": "a = munmap(0, 0)\n",
            "call_index": 0, "call_text": "a = munmap(0, 0)", "expected": "-1 EINVAL", "observed": "0", "count": 2,
            "replay": "memspec replay x.mst --target t"}
    return {"summary": {"unexplained_failures": 1}, "catalogue": cat, "exit_code": 1,
            "targets": [{"name": "t", "layers": ["os"], "failures": [fail],
                         "clauses": {c: {"exercised": 1, "pass": 1} for c in cat}}]}


def test_html_failures_come_first() -> None:
    from memspec.reports.html import render
    page = render(_failing_report())
    first_failure = page.index("z.failing")
    assert first_failure < page.index("a.clause-000"), "a failing clause sits below passing ones"
    assert page.index('id="failures"') < page.index('id="clauses"')
    assert page.index('id="counterexamples"') < page.index('id="clauses"')
    # the summary list links to the counterexample
    assert 'href="#cx-1"' in page[:page.index('id="counterexamples"')]


# -- replay: one row per call, a reason for every verdict, the hw error code kept ---------------

def test_replay_prints_each_call_once(memspec_cli, tmp_path) -> None:
    f = tmp_path / "p.mst"
    f.write_text("# memspec-program: 1\n# target: model\n"
                 "a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                 "store(a+0x1000, 0x41)\nx = load(a+0x1000)\n")
    r = memspec_cli("replay", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.strip().startswith("3 ")]
    assert len(rows) == 1, r.stdout
    assert "checkpoint after call 3" in r.stdout


def test_replay_of_a_crash_says_why(memspec_cli, tmp_path) -> None:
    f = tmp_path / "p.mst"
    f.write_text("# memspec-program: 1\n"
                 "a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                 "munmap(a, 0x2000)\n")
    r = memspec_cli("replay", str(f), "--target", f"cmd:{PY} {FAKE} crash-at-2", "--timeout", "20")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "CRASH" in r.stdout
    why = [line for line in r.stdout.splitlines() if line.strip().startswith("why:")]
    assert why and why[0].strip() != "why:", r.stdout


def test_a_fault_outcome_shows_its_error_code() -> None:
    from memspec.records import Outcome
    o = Outcome(signal="#PF", detail=(("cr2", 0x1000), ("errcode", 3)))
    assert o.describe() == "#PF errcode=0x3 cr2=0x1000"
    assert Outcome(signal="SIGSEGV").describe() == "SIGSEGV"


# -- compare: every row says why ----------------------------------------------------------------

def test_compare_rows_that_the_model_did_not_judge_say_why() -> None:
    from memspec.commands.compare import render_markdown, render_text
    d = {"call": 3, "text": "x = load(a)", "clause": "", "citation": "", "after_divergence": False,
         "all_allowed": False, "model_sides_with": [], "explained": {"a": "", "b": ""},
         "not_judged": "a: judging stopped at call 2 (fail posix.x); b: judging stopped at call 2 (fail posix.x)",
         "answers": [{"target": "a", "observed": "0", "verdict": "not judged", "expected": ""},
                     {"target": "b", "observed": "1", "verdict": "not judged", "expected": ""}]}
    rep = {"layer": "os", "targets": ["a", "b"], "command": "memspec compare", "programs": [
        {"origin": "random 1", "disagreements": [d]}]}
    from memspec.commands.compare import _summarise
    rep["summary"] = _summarise(rep)
    text = render_text(rep)
    assert "judging stopped at call 2" in text and "under ?" not in text
    md = render_markdown(rep)
    assert "(not judged)" in md and "judging stopped at call 2" in md


def test_threeway_names_where_judging_stopped() -> None:
    from memspec.fuzz.threeway import _why_not_judged
    from memspec.records import Check, Judgement, Outcome, RunResult, RunStatus, Verdict
    j = Judgement(target="t", checks=[Check("posix.x", Verdict.FAIL, 1)])
    run = RunResult(status=RunStatus.OK, outcomes=[Outcome(0)] * 4)
    assert "stopped at call 2" in _why_not_judged(j, run, 3)
    j2 = Judgement(target="t")
    short = RunResult(status=RunStatus.CRASH, outcomes=[Outcome(0)], message="killed by SIGKILL")
    assert "run ended before this call" in _why_not_judged(j2, short, 2)


# -- help texts ---------------------------------------------------------------------------------

def test_experiment_help_lists_the_experiments(memspec_cli) -> None:
    r = memspec_cli("experiment", "--help")
    assert r.returncode == 0
    for name in ("buddy", "tlb", "replacement", "workingset", "kpti", "numa", "aslr"):
        assert f"  {name}" in r.stdout, name
    bad = memspec_cli("experiment", "nope")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_check_and_fuzz_help_explain_their_outputs(memspec_cli) -> None:
    assert "report.html" in memspec_cli("check", "--help").stdout
    fz = memspec_cli("fuzz", "--help").stdout
    assert "refused" in fz and "--target" in fz and "seed of the" in fz


def test_tlb_plot_labels_sizes_in_binary_units(tmp_path) -> None:
    from memspec.commands.experiments.tlb import _human, plot_lines
    path = plot_lines(str(tmp_path), "t", "title", "working set", "misses",
                      [("4 KiB", [4096, 1 << 20, 1 << 30], [1, 2, 3]), ("2 MiB", [4096, 1 << 20, 1 << 30], [0, 1, 2])],
                      logx=True, xticks=_human)
    if path.endswith(".svg"):
        body = open(path).read()
        assert "1 MiB" in body and "1 GiB" in body and "e+" not in body


# -- progress in a log, and a run's own counterexamples only -----------------------------------

def test_check_logs_progress_lines_when_not_on_a_terminal(tmp_path, capsys) -> None:
    from memspec.commands.check import Checker, CheckOptions
    out = str(tmp_path / "out")
    Checker(CheckOptions(targets=["model"], out=out, programs=12, machine_examples=0, suite=False,
                         log_every=0.0)).run()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[") and "programs" in line]
    assert len(lines) >= 5, err          # whole lines, not carriage-return redraws
    assert "\r" not in err


def test_a_run_clears_the_previous_runs_counterexamples(memspec_cli, tmp_path) -> None:
    out = tmp_path / "out"
    stale = out / "counterexamples" / "linux" / "posix.mprotect.sets-prot-2.mst"
    stale.parent.mkdir(parents=True)
    stale.write_text("# memspec-program: 1\nmunmap(0, 0)\n")
    (out / "keep.txt").write_text("the user's own file\n")
    r = memspec_cli("check", "--target", "model", "--programs", "2", "--machine-examples", "0", "--no-suite",
                    "--out", str(out), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not stale.exists()
    assert (out / "keep.txt").exists()


# -- a program of another layer is one clear error on every target ------------------------------

HW_PROGRAM = ("# memspec-program: 1\nset_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)\nmov_cr3(0x200000)\n"
              "access(0x1000, ACC_READ, 0, 0)\n")
OS_PROGRAM = ("# memspec-program: 1\na = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              "munmap(a, 0x1000)\n")


@pytest.mark.parametrize("target,text", [("linux", HW_PROGRAM), ("libc", HW_PROGRAM), ("qemu", OS_PROGRAM),
                                         ("libc", OS_PROGRAM)])
def test_replaying_a_program_of_another_layer_is_a_usage_error(memspec_cli, tmp_path, target, text) -> None:
    f = tmp_path / "p.mst"
    f.write_text(text)
    r = memspec_cli("replay", str(f), "--target", target)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "layer" in r.stderr and "Traceback" not in r.stderr and "PASS" not in r.stdout


def test_a_program_mixing_layers_is_refused(memspec_cli, tmp_path) -> None:
    f = tmp_path / "p.mst"
    f.write_text(OS_PROGRAM + "mov_cr3(0x200000)\n")
    r = memspec_cli("replay", str(f), "--target", "model")
    assert r.returncode == 2 and "layer" in r.stderr and "Traceback" not in r.stderr, r.stdout + r.stderr


# -- a cmd: target that misbehaves costs a bounded time, and leaves nothing running --------------

def _fake(mode: str, tag: str) -> str:
    # the tag makes this run's processes findable (and killable) by their command line
    return f"cmd:{PY} {FAKE} {mode} --tag={tag}"


def _left_running(tag: str) -> list[str]:
    r = subprocess.run(["pgrep", "-f", f"tag={tag}"], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr      # 1: none found
    return r.stdout.split()


@pytest.mark.parametrize("mode, words", [
    ("hang-at-2", "hang"),
    ("half-at-2", "bytes of a line"),
    ("slow-at-2", "hang"),
    ("garbage-at-2", "garbage"),
    # a 100 MiB line: garbage once it is whole, a hang while it trickles in (the pipe's speed decides)
    ("bigline-at-2", "longer than|bytes of a line"),
    ("forks-at-2", "hang"),
])
@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_a_target_that_keeps_failing_is_stopped_with_one_verdict(memspec_cli, tmp_path, mode, words) -> None:
    out = str(tmp_path / "out")
    tag = f"{mode}-{os.getpid()}-{time.monotonic_ns()}"
    t0 = time.monotonic()
    r = memspec_cli("check", "--target", _fake(mode, tag), "--programs", "20", "--machine-examples", "0",
                    "--no-suite", "--timeout", "2", "--out", out, "-q", timeout=240)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stdout + r.stderr
    t = _report(out)["targets"][0]
    seen = t["failures"][0]["observed"] + " " + t["failures"][0]["verdict"] if t["failures"] else ""
    assert any(w in seen for w in words.split("|")), t["failures"]
    assert "stopped after 3 programs in a row" in t["stopped"], t
    assert t["programs"] < 20
    assert took < 120, f"{took:.0f} s: every program paid its whole time limit"
    time.sleep(0.5)
    assert not _left_running(tag), "target processes outlived the run"


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_a_target_flooding_stderr_is_judged_normally(memspec_cli, tmp_path) -> None:
    out = str(tmp_path / "out")
    r = memspec_cli("check", "--target", _fake("stderr-flood", "flood"), "--programs", "10", "--machine-examples", "0",
                    "--no-suite", "--timeout", "5", "--out", out, "-q", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    t = _report(out)["targets"][0]
    assert t["programs"] == 10 and not t["failures"]


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_sigterm_ends_the_targets_processes_too(tmp_path) -> None:
    out = str(tmp_path / "out")
    tag = f"term-{os.getpid()}-{time.monotonic_ns()}"
    p = subprocess.Popen([PY, "-m", "memspec.commands.cli", "check", "--target", _fake("forks-at-2", tag), "--programs", "5",
                          "--no-suite", "--timeout", "60", "--out", out, "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_left_running(tag)) < 100 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_left_running(tag)) >= 100, "the fake target did not fork"
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 143, stdout + stderr
    time.sleep(0.5)
    assert not _left_running(tag), "the target's processes outlived memspec"
    assert _report(out)["interrupted_by"] == "SIGTERM"


def test_a_target_echoing_memspecs_hello_is_a_harness_error(memspec_cli, tmp_path) -> None:
    r = memspec_cli("check", "--target", "cmd:/bin/cat", "--out", str(tmp_path / "out"), "-q", timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "client's hello" in r.stderr


def test_a_target_that_dies_only_on_some_programs_is_not_stopped(tmp_path) -> None:
    """An emulator that dies on the programs that write an illegal value, and runs the rest: the
    canary (a program it ran before) still runs, so judging goes on."""
    from memspec.commands.check import Checker, CheckOptions
    from memspec.program import parse
    from memspec.records import Outcome, RunResult, RunStatus
    from memspec.targets.registry import make_target

    model = make_target("model")

    class DiesOnMunmap:
        name, layers, calls, timeout = "dies-on-munmap", model.layers, model.calls, 1.0

        def facts(self): return model.facts()
        def unsupported(self): return []
        def close(self): pass

        def run(self, program, observe="end"):
            if any(c.name == "munmap" for c in program.calls):
                return RunResult(status=RunStatus.CRASH, outcomes=[], message="killed by SIGSEGV")
            return model.run(program, observe=observe)

    import memspec.commands.check as check_mod
    progs = [("p%d" % i, parse("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                               + ("munmap(a, 0x1000)\n" if 2 <= i <= 6 else ""))) for i in range(10)]
    c = Checker(CheckOptions(targets=["x"], out=str(tmp_path), programs=0, machine_examples=0, suite=False, quiet=True))
    orig = check_mod.random_programs
    check_mod.random_programs = lambda *a, **k: iter(progs)
    try:
        from memspec.specs.catalogue import all_clauses as catalogue
        c.check_target(DiesOnMunmap(), "os", catalogue())
    finally:
        check_mod.random_programs = orig
    t = c.results.targets[0]
    assert not t.stopped and t.programs == 10, t.stopped
    assert any(f.verdict == "crash" for f in t.failures)


# -- fuzz under libFuzzer: memspec's progress and summary, libFuzzer's lines only with -v --------

def _atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:     # CI (MEMSPEC_REQUIRE_PEERS=1) fails here; a local run skips with the reason
        missing_peer("atheris", "pip install -e '.[dev]' installs it (libFuzzer's engine for memspec fuzz)")


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_fuzz_under_libfuzzer_shows_memspecs_lines_and_a_summary_when_stopped(tmp_path, sig, code) -> None:
    _atheris()
    corpus, findings = tmp_path / "c", tmp_path / "f"
    p = subprocess.Popen([PY, "-m", "memspec.commands.cli", "fuzz", "--target", "model", "--layer", "os", "--time", "120",
                          "--engine", "atheris", "--corpus", str(corpus), "--findings", str(findings)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = findings / "libfuzzer-os.log"
    deadline = time.monotonic() + 120        # libFuzzer has loaded the corpus and started ("INITED")
    while time.monotonic() < deadline and not (log.exists() and "INITED" in log.read_text(errors="replace")):
        time.sleep(0.5)
    time.sleep(7)                            # a progress line every 5 s in a log: at least two by now
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "INFO:" not in err and "__sanitizer" not in err and "WARNING:" not in err, err
    progress = [line for line in err.splitlines() if line.startswith("#") and "exec/s" in line]
    assert len(progress) >= 2, err
    assert "done:" in err and "saved" in err, err
    assert log.exists() and "INFO:" in log.read_text()


@pytest.mark.slow     # waits on time limits / shrinks a failing machine: CI runs it
def test_fuzz_verbose_shows_libfuzzers_lines(tmp_path) -> None:
    _atheris()
    r = subprocess.run([PY, "-m", "memspec.commands.cli", "fuzz", "--target", "model", "--layer", "os", "--time", "6",
                        "--engine", "atheris", "-v", "--corpus", str(tmp_path / "c"), "--findings", str(tmp_path / "f")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "INFO:" in r.stderr and "done:" in r.stderr


def test_the_report_lists_the_facts_it_judged_with() -> None:
    from memspec.commands.check import summary_lines
    from memspec.reports.html import render
    from memspec.results import RunResults, TargetResults
    r = RunResults(command="memspec check", seed=0, started="now")
    r.targets.append(TargetResults(name="linux", layers=["os"], facts={"exec_only": False, "thp": "never",
                                                                        "memlock_soft": 8 << 20}))
    text = "\n".join(summary_lines(r))
    assert "facts judged with:" in text and "exec_only=False" in text and "memlock_soft=0x800000" in text
    page = render({"targets": [{"name": "linux", "layers": ["os"], "facts": {"exec_only": False}}], "summary": {}})
    assert "host facts judged with" in page and "exec_only" in page
