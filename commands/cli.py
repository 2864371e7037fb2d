"""The ``memspec`` command line.

Exit codes (for CI): 0 pass, 1 conformance failure (or a reproduced failure for
``replay``), 2 usage or harness error, 130 interrupted by Ctrl-C, 143 ended by SIGTERM
(a partial report is written in both cases).

Ctrl-C and SIGTERM are taken however memspec was started.  A process that a shell without
job control starts in the background (``memspec check … &`` in a script, a CI job's
background step) inherits SIGINT ignored, and Python then installs no handler of its own:
a ``kill -INT`` would not stop the run at all.  So ``main`` installs both handlers itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap

from memspec import __version__
from memspec.errors import Terminated, TargetError, UsageError

EXPERIMENTS = {
    "buddy": "the buddy allocator's internal and external fragmentation (model)",
    "tlb": "TLB reach with 4 KiB, 2 MiB and 1 GiB pages; TLB misses over a working-set sweep",
    "replacement": "page-replacement faults: OPT, LRU, clock (second chance), FIFO; Belady's anomaly",
    "workingset": "Denning's working-set size |W(t, tau)| over time (os model)",
    "kpti": "TLB flushes, CR3 writes and walks per syscall with and without KPTI and PCID",
    "numa": "NUMA first-touch vs bind and interleave: remote accesses after a migration",
    "aslr": "observed randomisation of exec'd processes against the kernel's configuration",
}

EXAMPLES = """\
examples:
  memspec check --target linux                      judge the running kernel (os layer)
  memspec check --target model --target linux       two targets in one run
  memspec check --target cmd:"./my_impl --fast"     judge your implementation over the protocol
  memspec fuzz --target linux --time 60             coverage-guided fuzzing for 60 s
  memspec replay memspec-out/counterexamples/linux/posix.mmap.einval-len0.mst
  memspec sweep --target qemu-system --filter "cpl==3 and leaf==4k"   the x86 walk's permission space
  memspec clauses --layer os                        the clause catalogue, one per line
  memspec serve model                               the reference model as a protocol target
"""


def _positive_int(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


from memspec.calls import LAYERS  # noqa: E402 -- the one list of layers


def _overlap_option(p: argparse.ArgumentParser, where: str = "") -> None:
    p.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=True,
                   help="judge each program in a second process while the next one runs: wall time near "
                        f"max(run, judge) on two cores, the same verdicts as --no-overlap{where} (default on)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="memspec",
        description="Conformance and fuzzing harness for memory management: an executable reference model "
                    "judges kernels, MMUs and allocators.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"memspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("check", help="run the conformance check on one or more targets and write a report",
                       description="Run the directed suite, seeded random programs and the state machine of a layer "
                                   "on each target; the model judges every call. Writes report.json, report.xml "
                                   "(JUnit) and report.html to --out, and each counterexample as a replayable program "
                                   "under --out/counterexamples (the folder holds this run's counterexamples only).",
                       epilog="targets: model, linux, linux-agent, qemu-user, qemu, qemu-system, kvm, bochs[:CPU_MODEL], libc, malloc:NAME, cmd:PROGRAM, py:FILE:EXPR (repeat --target for several)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--target", "-t", action="append", required=True, metavar="T", help="target to judge (repeatable)")
    c.add_argument("--layer", "-l", choices=LAYERS, help="layer to check (default: the target's first layer)")
    c.add_argument("--seed", type=_positive_int, default=0, help="seed for random programs and the state machine (default 0)")
    c.add_argument("--out", default="memspec-out", metavar="DIR", help="report folder (default memspec-out)")
    c.add_argument("--programs", type=_positive_int, default=200, metavar="N", help="random programs per target (default 200)")
    c.add_argument("--machine-examples", type=_positive_int, default=20, metavar="N",
                   help="state-machine examples per target (default 20; 0 skips)")
    c.add_argument("--confirm", type=_positive_int, default=3, metavar="K", help="re-runs that must fail the same way (default 3)")
    c.add_argument("--timeout", type=_seconds, default=10.0, metavar="S", help="time limit per program (default 10 s)")
    c.add_argument("--no-suite", action="store_true", help="skip the directed suite (random programs and the state machine only)")
    _overlap_option(c)
    c.add_argument("--max-target-failures", type=_positive_int, default=3, metavar="N",
                   help="stop judging a target after N programs in a row crash, hang or answer garbage, with one verdict that says so "
                        "(default 3; 0 never stops)")
    c.add_argument("--db", metavar="DIR|redis://…",
                   help="Hypothesis example database shared across runs and workers (default: none; "
                        "env MEMSPEC_HYPOTHESIS_DB)")
    c.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    c.add_argument("--coverage", action="store_true", help="also measure line and branch coverage of the model (in report.html)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    m = sub.add_parser("compare", help="run the same programs on several targets and report where they disagree",
                       description="Run the layer's directed suite and seeded random programs (the calls every target "
                                   "implements) on each target, judge each run with the model, and list the calls where "
                                   "the targets answer differently, with the side the model (and its citation) takes. "
                                   "Writes compare.json and compare.md to --out; exits 1 when a disagreement rejects a "
                                   "target for a reason specs/differences.toml does not explain.",
                       epilog="example: memspec compare -t qemu -t qemu-system -t kvm -t bochs --layer hw")
    m.add_argument("--target", "-t", action="append", required=True, metavar="T", help="target (repeat: two or more)")
    m.add_argument("--layer", "-l", choices=LAYERS, help="layer (default: the first layer all targets implement)")
    m.add_argument("--programs", type=_positive_int, default=100, metavar="N", help="random programs (default 100)")
    m.add_argument("--seed", type=_positive_int, default=0, help="seed for the random programs (default 0)")
    m.add_argument("--out", default="memspec-out", metavar="DIR", help="report folder (default memspec-out)")
    m.add_argument("--timeout", type=_seconds, default=10.0, metavar="S", help="time limit per program (default 10 s)")
    m.add_argument("--no-suite", action="store_true", help="random programs only")
    m.add_argument("--quiet", "-q", action="store_true", help="no progress output and no summary on stderr")
    _overlap_option(m)

    f = sub.add_parser("fuzz", help="coverage-guided fuzzing of call sequences against a target",
                       description="Decode fuzzer bytes into programs of a layer, run each on the target, judge it with "
                                   "the model. New clauses and new model coverage grow the corpus; each distinct failure "
                                   "is confirmed, minimised and saved to --findings as a replayable program. The "
                                   "progress line counts execs, corpus entries, clauses reached, findings and "
                                   "'refused' programs: ones the target declined to run (a step it cannot stage, "
                                   "a feature it lacks); they are never judged.")
    f.add_argument("--target", "-t", required=True, metavar="T",
                   help="the implementation to fuzz (any target `memspec check` takes: model, linux, qemu, kvm, cmd:PROGRAM, ...)")
    f.add_argument("--layer", "-l", choices=LAYERS, help="layer whose calls are generated (default: the target's first layer)")
    f.add_argument("--time", type=_seconds, required=True, metavar="S", help="how long to fuzz, in seconds")
    f.add_argument("--corpus", default=None, metavar="DIR", help="corpus folder, kept across runs (default memspec-out/corpus/<layer>)")
    f.add_argument("--findings", default=None, metavar="DIR", help="where failures go (default memspec-out/findings)")
    f.add_argument("--seed", type=_positive_int, default=0,
                   help="seed of the engine's random choices (default 0); the same seed, corpus and target repeat a run")
    f.add_argument("--engine", choices=("auto", "atheris", "python"), default="auto",
                   help="atheris (libFuzzer) when installed, else a clause-guided Python loop (default auto)")
    f.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="parallel fuzzing processes")
    f.add_argument("--timeout", type=_seconds, default=10.0, metavar="S", help="time limit per program")
    f.add_argument("--no-invariants", action="store_true", help="skip the model's invariants after every call")
    f.add_argument("--merge", action="store_true",
                   help="shrink the corpus to the entries that add features (libFuzzer -merge=1 style), then stop")
    f.add_argument("--stop-on-finding", action="store_true", help="stop at the first new finding")
    f.add_argument("--no-suite-seeds", action="store_true",
                   help="start an empty corpus from random inputs only, not from the layer's directed suite")
    f.add_argument("--summary-json", metavar="FILE", help="write the run's figures (execs, clauses, first finding) as JSON")
    f.add_argument("--verbose", "-v", action="store_true", help="also show the engine's own output (libFuzzer's lines)")
    f.add_argument("--quiet", "-q", action="store_true", help="no progress lines and no summary")
    _overlap_option(f, " (the Python engine; libFuzzer runs its own loop)")

    r = sub.add_parser("replay", help="re-run a saved program (a counterexample) and show the verdict",
                       description="Run FILE on its target (from the file's '# target:' header, or --target) and judge "
                                   "it. Exit 1 if it fails (the failure reproduces), 0 if it passes.")
    r.add_argument("file")
    r.add_argument("--target", "-t", metavar="T", help="override the target named in the file")
    r.add_argument("--timeout", type=_seconds, default=10.0, metavar="S")

    rp = sub.add_parser("repro", help="write a standalone reproducer of a saved program (C file, test kernel image)",
                        description="Run FILE once on the target, replay the run through the model, and write a C99 "
                                    "file (libc only) that makes the same calls in the same processes and checks each "
                                    "outcome the model allows, with a README: build it with cc -O2, run it without "
                                    "memspec. The os layer on linux (and on qemu-user, built -static and run under "
                                    "qemu-x86_64, and uml, as linux.uml's first process), the phys layer's malloc "
                                    "family on libc or malloc:NAME. hw and virt programs on qemu-system or "
                                    "bochs[:MODEL]: the test kernel with the program built in (kernel.bin for "
                                    "qemu-system-x86_64 -kernel, floppy.img and bochsrc for Bochs), printing its "
                                    "verdict on the serial port; hw programs on kvm: a C file through /dev/kvm. "
                                    "The README says how to build and run each.")
    rp.add_argument("file")
    rp.add_argument("--target", "-t", metavar="T", help="override the target named in the file")
    rp.add_argument("--out", metavar="DIR", help="folder for repro.c and README.md (default memspec-repro/NAME)")
    rp.add_argument("--timeout", type=_seconds, default=10.0, metavar="S")

    sw = sub.add_parser("sweep", help="every combination of the x86 walk's permission space, run in batches and judged",
                        description="Enumerate the hw layer's permission space (docs/sweep.md), run it on the target "
                                    "in batches and judge every access with the vectorised reference walk. Exit 1 if a "
                                    "differing class is not explained by specs/differences.toml.")
    sw.add_argument("--target", "-t", required=True, metavar="T", help="model, qemu, qemu-system, bochs or kvm")
    sw.add_argument("--mode", default="4level", choices=("4level", "5level", "pae", "32bit"),
                    help="the paging mode (pae and 32bit: the model and qemu targets)")
    sw.add_argument("--filter", metavar="EXPR", help="keep the combinations EXPR holds for, e.g. 'cpl==3 and leaf==4k'")
    sw.add_argument("--out", default="memspec-sweep", metavar="DIR", help="summary, checkpoint and reproducers")
    sw.add_argument("--resume", action="store_true", help="go on from DIR's checkpoint")
    sw.add_argument("--batch", type=_positive_int, default=4000, metavar="N", help="accesses per round trip")
    sw.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N combinations")
    sw.add_argument("--timeout", type=_seconds, default=30.0, metavar="S")
    sw.add_argument("--quiet", "-q", action="store_true", help="no progress lines")

    cl = sub.add_parser("clauses", help="list the clause catalogue, one clause per line starting with its ID")
    cl.add_argument("--layer", "-l", choices=LAYERS)
    cl.add_argument("--cite", action="store_true", help="also print each clause's citation")
    cl.add_argument("--json", action="store_true")

    s = sub.add_parser("serve", help="serve the reference model over the line protocol on stdin/stdout")
    s.add_argument("what", choices=("model",))

    b = sub.add_parser("bench", help="speed figures (each against its denominator, same run) and scaling curves",
                       description="Measure each figure and its denominator in the same run, repeated; print medians "
                                   "with min/max and the ratio; write bench.json and scaling.png to --out.")
    b.add_argument("--quick", action="store_true", help="a reduced run (well under a minute; what CI runs)")
    b.add_argument("--out", default="memspec-out/bench", metavar="DIR", help="where bench.json and the plot go")
    b.add_argument("--only", action="append", metavar="FIGURE", help="measure only this figure or curve set (repeatable)")
    b.add_argument("--repeat", type=_positive_int, default=None, metavar="N", help="repeats per figure (default 7, 3 with --quick)")

    e = sub.add_parser("experiment", help="run one of the seed's quantitative experiments",
                       description="Run one of the seed article's quantitative claims as an experiment: a table next "
                                   "to the claim on stdout, and a plot in --out.",
                       epilog="experiments:\n" + "\n".join(f"  {k:12s} {v}" for k, v in EXPERIMENTS.items()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("name", choices=tuple(EXPERIMENTS), metavar="NAME", help="one of: " + ", ".join(EXPERIMENTS))
    e.add_argument("--out", default="memspec-out", metavar="DIR", help="where the plot goes (default memspec-out)")
    return p


def cmd_check(a: argparse.Namespace) -> int:
    from .check import Checker, CheckOptions, summary_lines
    from memspec.reports import json_report, junit
    opts = CheckOptions(targets=a.target, layer=a.layer, seed=a.seed, out=a.out, programs=a.programs,
                        machine_examples=a.machine_examples, confirm=a.confirm, timeout=a.timeout, db=a.db, suite=not a.no_suite,
                        quiet=a.quiet or a.json, argv=sys.argv[2:], coverage=a.coverage,
                        max_dead=a.max_target_failures, overlap=a.overlap)
    results = Checker(opts).run()
    flaky = any(t.machine.get("result") == "flaky" for t in results.targets if t.machine)
    if results.interrupted:
        results.exit_code = 143 if results.interrupted_by == "SIGTERM" else 130
    else:
        results.exit_code = 1 if results.unexplained_failures or flaky else 0
    json_path = os.path.join(a.out, "report.json")
    xml_path = os.path.join(a.out, "report.xml")
    json_report.write(results, json_path)
    junit.write(results, xml_path)
    from memspec.reports import html as html_report
    html_report.write(results, os.path.join(a.out, "report.html"))
    if a.json:
        print(json.dumps(json_report.to_dict(results), indent=2, default=str))
    else:
        for line in summary_lines(results):
            print(line)
        print(f"\nreport: {json_path} (JSON), {xml_path} (JUnit XML), {os.path.join(a.out, 'report.html')} (HTML)")
    return results.exit_code


def cmd_replay(a: argparse.Namespace) -> int:
    from memspec.fuzz.differential import execute
    from memspec.targets.registry import make_target
    from memspec.program import load
    prog = load(a.file)
    target_name = a.target or prog.meta("target")
    if not target_name:
        raise UsageError(f"{a.file} names no target (no '# target:' line): pass --target T")
    layers = sorted({c.spec.layer for c in prog.calls})
    if len(layers) > 1:
        raise UsageError(f"{a.file} mixes calls of the layers {', '.join(layers)}: a program belongs to one layer")
    if prog.meta("layer") and layers and prog.meta("layer") != layers[0]:
        raise UsageError(f"{a.file} says '# layer: {prog.meta('layer')}' but its calls are of the {layers[0]} layer")
    try:
        target = make_target(target_name, timeout=a.timeout)
    except TargetError as e:
        raise UsageError(str(e)) from None
    if prog.layer not in target.layers:
        target.close()
        raise UsageError(f"{a.file} is a program of the {prog.layer} layer; target {target_name!r} implements "
                         f"{', '.join(target.layers)} only")
    try:
        from memspec.specs.catalogue import all_clauses as catalogue
        cat = catalogue()
        j = execute(target, prog, target.facts(), observe="end")
    finally:
        target.close()
    f = j.failure
    print(f"replayed {a.file} on {target_name}: {len(prog.calls)} calls")
    from memspec.program import format_call
    for c in j.checks:
        mark = {"pass": "ok", "impl-defined": "ok (impl-defined)", "unknown": "? unknown"}.get(c.verdict.value, c.verdict.value.upper())
        call = prog.calls[c.index] if 0 <= c.index < len(prog.calls) else None
        if c.at == "call" and call is not None:
            print(f"  {c.index + 1:3d} {format_call(call):60s} {c.observed:>14s}  {mark}  [{c.clause}]")
        else:      # a checkpoint or an invariant after the call: not the call's own outcome
            where = f"after call {c.index + 1}" if call is not None else "whole program"
            print(f"      ({c.at} {where}: {c.expected or c.clause})"[:78].ljust(76) + f" {mark}  [{c.clause}]")
    if f is None:
        print("PASS: the target now agrees with the model")
        return 0
    if f.verdict.value == "unsupported":
        print(f"\nUNSUPPORTED: {f.observed}")
        return 2
    c = cat.get(f.clause)
    print(f"\nFAIL {f.clause}: {c.statement if c else ''}\n  [{c.citation if c else ''}]")
    why = f.note or {"crash": "the target died while running the program",
                     "hang": "the target did not answer within the time limit",
                     "error": "the target answered something that is not an outcome"}.get(f.verdict.value, "")
    if f.verdict.value in ("crash", "hang", "error") and f.observed and f.observed != why:
        why = f"{why}: {f.observed}" if why else f.observed
    print(f"  expected: {f.expected}\n  observed: {f.observed}\n  why: {why or '(no reason recorded)'}")
    want = prog.meta("clause")
    if want and want != f.clause:
        print(f"  note: the file was saved for clause {want}; it now fails {f.clause}")
    return 1


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import SweepOptions, main as sweep_main
    return sweep_main(SweepOptions(target=a.target, mode=a.mode, filter=a.filter, out=a.out, resume=a.resume,
                                   batch=max(1, a.batch), limit=a.limit, quiet=a.quiet, timeout=a.timeout))


def cmd_compare(a: argparse.Namespace) -> int:
    from .compare import CompareOptions, run
    _, status = run(CompareOptions(targets=a.target, layer=a.layer, programs=a.programs, seed=a.seed, out=a.out,
                                   timeout=a.timeout, suite=not a.no_suite, quiet=a.quiet, overlap=a.overlap,
                                   argv=sys.argv[2:] if len(sys.argv) > 2 else []))
    return status


def cmd_clauses(a: argparse.Namespace) -> int:
    from memspec.specs.catalogue import all_clauses as catalogue
    cat = catalogue()
    rows = [c for c in cat.values() if not a.layer or c.layer == a.layer]
    if a.json:
        print(json.dumps([c.__dict__ if hasattr(c, "__dict__") else
                          {"id": c.id, "layer": c.layer, "statement": c.statement, "citation": c.citation,
                           "kernel_differs": c.kernel_differs} for c in rows], indent=2))
        return 0
    for c in sorted(rows, key=lambda c: (c.layer, c.id)):
        print(f"{c.id}  [{c.layer}] {c.statement}")
        if a.cite:
            print(textwrap.indent(textwrap.fill(c.citation, 100), "    source: "))
            if c.kernel_differs:
                print(textwrap.indent(textwrap.fill(c.kernel_differs, 100), "    kernel differs: "))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from memspec.targets.serve import main as serve_main
    return serve_main([])


def cmd_fuzz(a: argparse.Namespace) -> int:
    from memspec.commands.fuzz_driver import FuzzOptions, fuzz
    return fuzz(FuzzOptions(target=a.target, layer=a.layer, seconds=a.time, corpus=a.corpus, findings=a.findings,
                            seed=a.seed, engine=a.engine, jobs=a.jobs, timeout=a.timeout,
                            invariants=not a.no_invariants, quiet=a.quiet, merge=a.merge,
                            stop_on_finding=a.stop_on_finding, summary_json=a.summary_json,
                            suite_seeds=not a.no_suite_seeds, verbose=a.verbose, overlap=a.overlap))


def cmd_bench(a: argparse.Namespace) -> int:
    from .bench import run
    run(quick=a.quick, out=a.out, only=a.only, repeat=a.repeat or None)
    return 0


def cmd_experiment(a: argparse.Namespace) -> int:
    from .experiments import aslr, buddy, kpti, numa, replacement, tlb, workingset
    modules = {"aslr": aslr, "buddy": buddy, "kpti": kpti, "numa": numa, "replacement": replacement, "tlb": tlb,
               "workingset": workingset}
    assert set(modules) == set(EXPERIMENTS), "every experiment listed in EXPERIMENTS has its module"
    modules[a.name].run(a.out)
    return 0


def cmd_repro(a: argparse.Namespace) -> int:
    from .repro import repro
    folder, r = repro(a.file, a.target, a.out, a.timeout)
    if getattr(r, "layer", "") in ("hw", "virt") and r.target != "kvm":
        print(f"wrote {folder}/kernel.bin, floppy.img, bochsrc and README.md (memspec's verdict on {r.target}: "
              f"{r.verdict}; run: see {folder}/README.md)")
        return 0
    static = "-static " if r.target in ("qemu-user", "uml") else ""
    print(f"wrote {folder}/repro.c and {folder}/README.md (memspec's verdict on {r.target}: {r.verdict}; "
          f"build: cc -O2 {static}-o repro {folder}/repro.c; run: see {folder}/README.md)")
    return 0


COMMANDS = {"check": cmd_check, "compare": cmd_compare, "replay": cmd_replay, "clauses": cmd_clauses, "serve": cmd_serve,
            "fuzz": cmd_fuzz, "experiment": cmd_experiment, "bench": cmd_bench, "sweep": cmd_sweep, "repro": cmd_repro}


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _writable_dir(path: str, option: str) -> None:
    """Fail before any work (exit 2, one line) when an output folder cannot be made or written."""
    p = os.path.abspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        raise UsageError(f"{option} {path}: exists and is not a directory")
    probe = p
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write there ({probe} is not a writable directory)")
    try:
        os.makedirs(p, exist_ok=True)
        import tempfile
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write there ({e.strerror or e})") from None


# the output folders each command writes, checked before it starts
_OUTPUTS = {"check": ("out",), "compare": ("out",), "experiment": ("out",), "bench": ("out",), "sweep": ("out",),
            "fuzz": ("corpus", "findings")}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    old = None
    if _main_thread():
        # SIGINT too: it may have been inherited ignored (the module's docstring says when)
        old = (signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        for opt in _OUTPUTS.get(a.command, ()):
            if getattr(a, opt, None):
                _writable_dir(getattr(a, opt), "--" + opt)
        return COMMANDS[a.command](a)
    except UsageError as e:
        print(f"memspec {a.command}: error: {e}", file=sys.stderr)
        return 2
    except TargetError as e:
        print(f"memspec {a.command}: target error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"\nmemspec {a.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"\nmemspec {a.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if old is not None:
            for sig, handler in zip((signal.SIGTERM, signal.SIGINT), old):
                if handler is not None:     # None: a handler not set from Python, which cannot be put back
                    signal.signal(sig, handler)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
