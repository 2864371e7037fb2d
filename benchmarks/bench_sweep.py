"""bench_sweep: permission combinations judged per second by ``memspec sweep`` on qemu-system, against
kvm-unit-tests' x86/access test on the same QEMU binary, measured in the same run.

memspec's figure: the sweep of the 4-level space on the ``qemu-system`` target (memspec's test kernel
under ``qemu-system-x86_64 -accel tcg``), one tree per access, batches pipelined with the judge; the
rate is combinations judged (run, answered and compared with the reference walk) per second of wall
time, over slices taken at several places of the space (each slice is the start of a block of the
outermost dimensions: variant x leaf size), median of the slices.

The anchor: kvm-unit-tests' ``x86/access_test.flat`` (``ac_test_run``: one combination of PTE/PDE
flags, control registers, PKRU and access type per ``ac_test_exec``), built from its source tree
(``--kvm-unit-tests DIR`` or ``$KVM_UNIT_TESTS``, else a shallow ``git clone`` of the upstream
repository when it is reachable; then ``./configure && make x86/access_test.flat``) and booted on
the same binary with ``-accel tcg -cpu max,phys-bits=48`` (memspec's CPU).  The test prints nothing
until its end (19 million combinations, over an hour), so the copy built here gets one line in its
main loop: ``progress N`` after every 65,536 combinations (one serial line per ~15 s; the work per
combination is unchanged), and its rate is read over ``--anchor-seconds`` of those lines.  Without
the source (none given and upstream unreachable; or gcc, or make, or that loop) the anchor is
reported unavailable with the reason, beside the figure measured earlier (~4,000 combinations/s
median under QEMU TCG 7.2), marked as not measured in this run.

On a shared machine both wall-time rates move with the load (and memspec's pipeline of QEMU and the
judge uses two cores where the anchor uses one), so the benchmark also gives both rates per CPU
second: the anchor's QEMU process (all its threads), and on memspec's side its QEMU process plus the
Python process that formats, parses and judges the batches (all its threads).

QEMU 7.2 fails many of the access test's combinations (the reserved-bit error code without P),
and the test prints a report of each failure (its flags, the error codes and the four entries) over
the serial port, which TCG emulates byte by byte.  That is the anchor as its users run it, and the
ratio is taken against it; the benchmark also builds and measures a copy whose ``ac_test_check``
counts the failure and prints nothing (the anchor's checking alone), and gives the ratio against
that copy too.  Usage::

    python benchmarks/bench_sweep.py [--combinations N] [--slices K] [--kvm-unit-tests DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

UPSTREAM = "https://gitlab.com/kvm-unit-tests/kvm-unit-tests.git"
CLONE_TIMEOUT = 180
EARLIER_ANCHOR = 4000           # combinations/s, kvm-unit-tests access test under QEMU TCG 7.2 (not this run)
ANCHOR_CPU = "max,phys-bits=48"
LOOP = "successes += ac_test_exec(&at, &pt_env);"
FAILED = "\t*success_ret = false;\n"     # ac_test_check, the first time a combination fails
QUIET = FAILED + "\treturn;\t\t/* memspec bench_sweep: no report of the failure */\n"
TICK = os.sysconf("SC_CLK_TCK")
PROGRESS = LOOP + '\n\t\tif (!(tests & 0xffff))\n\t\t\tprintf("progress %d\\n", tests);'



def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads (``/proc/PID/stat`` fields 14, 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure_sweep(combinations: int, slices: int, out: str) -> dict:
    import io
    from memspec.commands.sweep import Sweep, SweepOptions
    from memspec.targets.registry import make_target
    from memspec.targets.sweep import runner_for
    t0 = time.perf_counter()
    target = make_target("qemu-system", timeout=30.0)
    startup = time.perf_counter() - t0
    rates, cpu_rates, judged, differing = [], [], 0, 0
    try:
        runner = runner_for(target)
        # warm the guest first (the first translations of the kernel's code)
        Sweep(SweepOptions(target="qemu-system", out=os.path.join(out, "warm"), limit=4000, quiet=True),
              runner, err=io.StringIO()).run()
        for k in range(slices):
            opts = SweepOptions(target="qemu-system", out=os.path.join(out, f"slice{k}"),
                                limit=combinations // slices, quiet=True)
            sw = Sweep(opts, runner, err=io.StringIO())
            blocks = int(sw.space.radix[0] * sw.space.radix[1])
            # slice k starts at block k * blocks / slices of variant x leaf
            sw.summary.next_index = int(sw.space.place[1]) * (k * blocks // slices)
            guest = target.guest
            t, c, g = time.perf_counter(), time.process_time(), cpu_seconds(guest.proc.pid)
            s = sw.run()
            dt = time.perf_counter() - t
            if target.guest is guest:        # (a guest that died and was replaced has no CPU figure)
                cpu_rates.append(s.judged / (time.process_time() - c + cpu_seconds(guest.proc.pid) - g))
            rates.append(s.judged / dt)
            judged += s.judged
            differing += s.failed
    finally:
        target.close()
    return {"startup_s": round(startup, 2), "combinations": judged, "differing": differing,
            "slice_rates": [round(r) for r in rates], "rate_median": round(statistics.median(rates)),
            "cpu_rate_median": round(statistics.median(cpu_rates)) if cpu_rates else None}


def clone_source(url: str, work: str) -> tuple[str | None, str]:
    """A shallow clone of kvm-unit-tests from ``url`` into ``work``, or why there is none."""
    if shutil.which("git") is None:
        return None, "no kvm-unit-tests source tree given, and git is not installed to fetch it"
    dest = os.path.join(work, "kvm-unit-tests-src")
    try:
        p = subprocess.run(["git", "clone", "--quiet", "--depth", "1", url, dest], capture_output=True, text=True,
                           timeout=CLONE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"no kvm-unit-tests source tree given, and git clone {url} took over {CLONE_TIMEOUT} s"
    if p.returncode != 0:
        last = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["(no message)"]
        return None, f"no kvm-unit-tests source tree given, and {url} is not reachable: {last[0]}"
    return dest, ""


def find_source(given: str | None, url: str, work: str) -> tuple[str | None, str]:
    src = given or os.environ.get("KVM_UNIT_TESTS")
    if not src and url:
        src, why = clone_source(url, work)
        if src is None:
            return None, why
    if not src:
        return None, "no kvm-unit-tests source tree given (--kvm-unit-tests DIR or $KVM_UNIT_TESTS)"
    if not os.path.isfile(os.path.join(src, "x86", "access.c")):
        return None, f"{src} is not a kvm-unit-tests source tree (no x86/access.c)"
    for tool in ("gcc", "make"):
        if shutil.which(tool) is None:
            return None, f"{tool} is not installed"
    return src, ""


def build_anchor(src: str, work: str) -> tuple[dict[str, str], str]:
    """``access_test.flat`` as kvm-unit-tests has it (plus the progress line), and, where ``ac_test_check``
    can be found, a ``quiet`` one that counts a failing combination without printing its report."""
    tree = os.path.join(work, "kvm-unit-tests")
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True)
    access = os.path.join(tree, "x86", "access.c")
    text = open(access, encoding="utf-8").read()
    if text.count(LOOP) != 1:
        return {}, "x86/access.c has no single main loop line to report progress from"
    flats: dict[str, str] = {}
    variants = [("as-built", text.replace(LOOP, PROGRESS))]
    if text.count(FAILED) == 1:
        variants.append(("quiet", variants[0][1].replace(FAILED, QUIET)))
    cmds = [["./configure", "--arch=x86_64"], ["make", "-j2", "x86/access_test.flat"]]
    for name, body in variants:
        with open(access, "w", encoding="utf-8") as f:
            f.write(body)
        for cmd in cmds:
            p = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
            if p.returncode != 0:
                return flats, f"{' '.join(cmd)} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
        flats[name] = os.path.join(work, f"access_test.{name}.flat")
        shutil.copy(os.path.join(tree, "x86", "access_test.flat"), flats[name])
        cmds = cmds[1:]
    return flats, ""


def measure_anchor(flat: str, qemu: str, window: float) -> dict:
    cmd = [qemu, "--no-reboot", "-nodefaults", "-device", "pc-testdev", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
           "-display", "none", "-serial", "stdio", "-device", "pci-testdev", "-accel", "tcg", "-cpu", ANCHOR_CPU,
           "-m", "256", "-kernel", flat]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[float, int, float]] = []
    t0 = time.perf_counter()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            m = re.search(r"progress (\d+)$", line.strip())
            if m:
                marks.append((now, int(m.group(1)), cpu_seconds(proc.pid)))
                if now - marks[0][0] >= window:
                    break
            if now - t0 > window + 600:
                break
    finally:
        proc.kill()
        proc.wait()
    if len(marks) < 2:
        return {"error": f"the access test reported no progress within {window + 600:.0f} s"}
    (ta, na, ca), (tb, nb, cb) = marks[0], marks[-1]
    rates = [(n2 - n1) / (t2 - t1) for (t1, n1, _), (t2, n2, _) in zip(marks, marks[1:])]
    return {"cpu": ANCHOR_CPU, "tests": nb - na, "seconds": round(tb - ta, 2), "rate": round((nb - na) / (tb - ta)),
            "rate_median": round(statistics.median(rates)), "cpu_seconds": round(cb - ca, 2),
            "cpu_rate": round((nb - na) / (cb - ca)), "marks": [(round(t - ta, 2), n) for t, n, _ in marks]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--combinations", type=int, default=1_000_000, help="memspec combinations in all slices")
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--kvm-unit-tests", metavar="DIR",
                    help="kvm-unit-tests source tree (else $KVM_UNIT_TESTS, else a clone of --kvm-unit-tests-url)")
    ap.add_argument("--kvm-unit-tests-url", metavar="URL", default=UPSTREAM,
                    help=f"where to clone kvm-unit-tests from when no tree is given ('' for nowhere; default {UPSTREAM})")
    ap.add_argument("--anchor-seconds", type=float, default=120.0, metavar="S", help="the anchor's measuring window")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        print("qemu-system-x86_64 is not installed: nothing to measure", file=sys.stderr)
        return 2
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    result: dict = {"qemu": version, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="memspec-bench-sweep-") as work:
        src, why = find_source(a.kvm_unit_tests, a.kvm_unit_tests_url, work)
        flats: dict[str, str] = {}
        if src is not None:
            flats, why = build_anchor(src, work)
        # the anchor first: its figure is the denominator
        if "as-built" in flats:
            result["anchor"] = measure_anchor(flats["as-built"], qemu, a.anchor_seconds)
            if "error" in result["anchor"]:
                why = result["anchor"]["error"]
        if "rate" not in result.get("anchor", {}):
            result["anchor"] = {"unavailable": why, "earlier_rate": EARLIER_ANCHOR, "measured_in_this_run": False}
        elif "quiet" in flats:
            result["anchor_quiet"] = measure_anchor(flats["quiet"], qemu, a.anchor_seconds)
        result["memspec"] = measure_sweep(a.combinations, a.slices, work)
    result["load_after"] = os.getloadavg()
    m = result["memspec"]
    anchor = result["anchor"]
    print(f"{version}; load average {result['load_before'][0]:.1f} before, {result['load_after'][0]:.1f} after")
    print(f"memspec sweep (qemu-system, 4level): {m['rate_median']:,} combinations judged/s median over "
          f"{len(m['slice_rates'])} slices {m['slice_rates']} ({m['combinations']:,} combinations, "
          f"{m['differing']:,} differing; boot {m['startup_s']} s)")
    if "rate" in anchor:
        ratio = m["rate_median"] / anchor["rate_median"]
        result["ratio"] = round(ratio, 2)
        print(f"anchor kvm-unit-tests x86/access (-cpu {anchor['cpu']}): {anchor['tests']:,} combinations in "
              f"{anchor['seconds']} s = {anchor['rate']:,}/s (median of its 65,536-combination intervals "
              f"{anchor['rate_median']:,}/s), measured in this run")
        print(f"ratio: x{ratio:.1f} (goal x10)")
        quiet = result.get("anchor_quiet", {})
        if "rate" in quiet:
            result["ratio_quiet"] = round(m["rate_median"] / quiet["rate_median"], 2)
            print(f"anchor without its failure reports (ac_test_check counts, prints nothing): {quiet['tests']:,} "
                  f"combinations in {quiet['seconds']} s = {quiet['rate']:,}/s (median {quiet['rate_median']:,}/s); "
                  f"ratio x{result['ratio_quiet']:.1f}")
        if m["cpu_rate_median"]:
            cpu_ratio = m["cpu_rate_median"] / anchor["cpu_rate"]
            result["cpu_ratio"] = round(cpu_ratio, 2)
            print(f"per CPU second (QEMU's threads, plus memspec's own process on its side): memspec "
                  f"{m['cpu_rate_median']:,}/s, anchor {anchor['cpu_rate']:,}/s ({anchor['cpu_seconds']} CPU s): "
                  f"x{cpu_ratio:.1f}" + (f"; anchor without failure reports {quiet['cpu_rate']:,}/s: "
                                         f"x{m['cpu_rate_median'] / quiet['cpu_rate']:.1f}" if "rate" in quiet else ""))
    else:
        result["ratio_to_earlier"] = round(m["rate_median"] / EARLIER_ANCHOR, 2)
        print(f"anchor unavailable: {anchor['unavailable']}")
        print(f"earlier figure (NOT measured in this run): ~{EARLIER_ANCHOR:,} combinations/s median under QEMU TCG "
              f"7.2; against it x{m['rate_median'] / EARLIER_ANCHOR:.1f} (goal x10)")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
