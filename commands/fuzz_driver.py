"""``memspec fuzz``: coverage-guided fuzzing of call sequences against a target.

Bytes decode into a program of the layer (``fuzz/codec_<layer>.py``); the program
runs on the target and the model judges every call.  Mutation keeps structure as often as it
flips bytes (``fuzz/mutate.py``: insert, delete and splice calls, change one argument by its
kind; the mutant is written as a text input), in the Python loop and, through libFuzzer's
custom-mutator hook, under atheris.  Feedback is what the
judgement exercised: (clause, verdict) pairs and clause bigrams in call order, so
an input that reaches a new clause or a new combination joins the corpus.  With
the ``atheris`` engine, libFuzzer also sees the Python coverage of the model.

Every distinct failure (by clause, verdict and failing call) is confirmed by
re-running it, shrunk to a minimal program that fails the same way, and saved to
the findings folder as a program file with its replay command.  Corpus entries
and findings are written atomically as they are found, so Ctrl-C loses nothing.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from memspec.atomic import write_text
from memspec.errors import TargetError, UsageError
from memspec.fuzz.differential import execute, localise
from memspec.fuzz.findings import Findings
from memspec.fuzz.bytes import TEXT_MAGIC
from memspec.fuzz.layers import layer as layer_of
from memspec.fuzz.mutate import libfuzzer_mutator, mutate_program_input, mutator_for
from memspec.program import Program
from memspec.specs.judge import judge
from memspec.specs.catalogue import all_clauses
from memspec.targets.registry import make_target


@dataclass
class FuzzOptions:
    target: str
    seconds: float
    layer: str | None = None
    corpus: str | None = None
    findings: str | None = None
    seed: int = 0
    engine: str = "auto"
    jobs: int = 1
    timeout: float = 10.0
    invariants: bool = True
    quiet: bool = False
    max_len: int = 512
    out: str = "memspec-out"
    stop_on_finding: bool = False
    summary_json: str | None = None
    merge: bool = False
    suite_seeds: bool = True     # an empty corpus starts from the layer's directed suite
    verbose: bool = False        # also show the engine's own output (libFuzzer's lines); else it goes to a log file
    overlap: bool = True         # Python engine: judge an input (in a second process) while the next one runs


@dataclass
class Stats:
    execs: int = 0
    corpus: int = 0
    features: int = 0
    findings: int = 0
    refused: int = 0
    started: float = 0.0


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:60]


def features_of(judgement: Any) -> set[tuple[str, ...]]:
    """The feedback an execution gives: clauses with their verdicts, and clause bigrams."""
    feats: set[tuple[str, ...]] = set()
    prev = "^"
    for c in judgement.checks:
        feats.add((c.clause, c.verdict.value))
        feats.add((prev, c.clause))
        prev = c.clause
    return feats


class _Stop(Exception):
    """The first finding ends the run (--stop-on-finding)."""


_EMPTY = Program(())


class _Guarded:
    """The target for the Python engine's stream: a run that raises hands its exception over as the
    run's value, so that the loop saves it as a harness error with its input and goes on."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.runs_elsewhere = bool(getattr(target, "runs_elsewhere", False))

    def run(self, program: Any, observe: str = "end") -> Any:
        try:
            return self.target.run(program, observe=observe)
        except Exception as e:  # noqa: BLE001
            return e


class Fuzzer:
    def __init__(self, o: FuzzOptions):
        self.o = o
        self.first_finding: dict[str, Any] | None = None
        self._feature_order = []
        try:
            self.target = make_target(o.target, timeout=o.timeout)
        except TargetError as e:
            raise UsageError(str(e)) from None
        self.layer = o.layer or self.target.layers[0]
        if self.layer not in self.target.layers:
            raise UsageError(f"target {o.target!r} does not implement layer {self.layer!r}")
        self.lay = layer_of(self.layer)
        self.codec = self.lay.codec
        self.facts = self.target.facts()
        self.corpus_dir = o.corpus or os.path.join(o.out, "corpus", self.layer)
        self.findings_dir = o.findings or os.path.join(o.out, "findings")
        os.makedirs(self.corpus_dir, exist_ok=True)
        os.makedirs(self.findings_dir, exist_ok=True)
        self.seen: set[tuple[str, ...]] = set()
        # confirmed, shrunk and saved as findings_dir/<target>/<clause>.mst, each signature once
        # across runs (the folder's earlier findings are known)
        self.findings = Findings(self.target, self.facts, self.findings_dir, self.layer, seed=o.seed, confirm=2,
                                 invariants=o.invariants)
        self.findings.load_known()
        self.entries: list[bytes] = []
        self.stats = Stats(started=time.monotonic())
        self.rng = random.Random(o.seed)
        self.mutator = mutator_for(self.lay, self.target.calls, self.facts, random.Random(f"{o.seed}:programs"))
        self._decoded: dict[bytes, Any] = {}      # input -> its program (corpus entries and fresh mutants)
        self.clauses: set[str] = set()
        self._last_report = 0.0
        self.err = sys.stderr            # memspec's own progress and summary (libFuzzer's output may be elsewhere)
        self.engine_log: str | None = None
        self._signal: str | None = None  # "SIGINT" or "SIGTERM" once one arrived under libFuzzer
        self._in_program = False          # one_input is running a program (a signal may interrupt it)

    # -- corpus and findings -------------------------------------------------

    def seed_from_suite(self) -> int:
        """An empty corpus starts from the layer's directed programs (as text inputs the
        codec decodes exactly): the fuzzer mutates from known-interesting states."""
        if not self.o.suite_seeds or any(not n.startswith(".") for n in os.listdir(self.corpus_dir)):
            return 0
        from memspec.specs.directed import suite_programs
        n = 0
        for _, program in suite_programs(self.layer, capabilities=True):
            if self.target.calls is None or all(c.name in self.target.calls for c in program.calls):
                self.add_entry(self.codec.encode(program))
                n += 1
        self.entries.clear()
        return n

    def load_corpus(self) -> None:
        self.seed_from_suite()
        for name in sorted(os.listdir(self.corpus_dir)):
            path = os.path.join(self.corpus_dir, name)
            if os.path.isfile(path) and not name.startswith("."):
                with open(path, "rb") as f:
                    data = f.read()
                self.run_one(data, add=False)
                self.entries.append(data)
        self.stats.corpus = len(self.entries)

    def add_entry(self, data: bytes) -> None:
        name = hashlib.sha1(data).hexdigest()
        path = os.path.join(self.corpus_dir, name)
        if not os.path.exists(path):
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        self.entries.append(data)
        self.stats.corpus = len(self.entries)

    def save_harness_error(self, data: bytes) -> None:
        """An exception inside memspec (model, judge, codec) is a bug of ours: the input and the
        traceback are saved next to the findings, once per distinct place it was raised."""
        import traceback
        tb = traceback.format_exc()
        where = hashlib.sha1(tb.strip().splitlines()[-3].encode()).hexdigest()[:12]
        path = os.path.join(self.findings_dir, f"harness-error-{where}")
        if not os.path.exists(path + ".bin"):
            with open(path + ".bin", "wb") as f:
                f.write(data)
            write_text(path + ".txt", tb)
            self.log(f"harness error (a memspec bug) saved to {path}.bin: {tb.strip().splitlines()[-1]}")

    # -- one execution -------------------------------------------------------

    def run_one(self, data: bytes, add: bool = True) -> None:
        program = self.decode(data)
        if not program.calls:
            return
        j = execute(self.target, program, self.facts, invariants=self.o.invariants)
        self.judged(data, program, j, self.add_entry if add else None)

    def judged(self, data: bytes, program: Any, j: Any, keep: Any) -> None:
        """An execution's judgement: feedback (``keep(data)`` for an input that adds features),
        then the failure, if any, localised, confirmed, shrunk and saved."""
        self.stats.execs += 1
        if j.status.value == "refused":
            self.stats.refused += 1
        feats = features_of(j)
        new = feats - self.seen
        if new:
            self.seen |= new
            self.stats.features = len(self.seen)
            self.clauses |= {c.clause for c in j.checks}
            if keep is not None:
                keep(data)
        if j.failure is None:
            return
        j = localise(self.target, program, self.facts, j, invariants=self.o.invariants)
        status, finding = self.findings.consider(program, j, "fuzz")
        if status == "flaky":
            f = j.failure
            self.log(f"flaky: {f.clause} at call {f.index + 1} did not fail again; not saved")
        if status != "new" or finding is None:
            return
        sig, saved = finding.signature, finding.program
        self.stats.findings += 1
        self.first_finding = self.first_finding or {
            "clause": sig.clause, "verdict": sig.verdict, "call": sig.call, "calls": len(saved.calls),
            "seconds": round(time.monotonic() - self.stats.started, 3), "execs": self.stats.execs,
            "file": finding.path}
        self.log(f"finding #{self.stats.findings}: {sig.clause} ({sig.verdict} at {sig.call}), "
                 f"{len(saved.calls)} calls -> {finding.path}")
        if self.o.stop_on_finding:
            raise _Stop()

    # -- mutation ------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        """The program of an input (decoded once: corpus entries are mutated again and again)."""
        p = self._decoded.get(data)
        if p is None:
            p = self._remember(data, self.lay.decode(data, self.target.calls, self.facts))
        return p

    def _remember(self, data: bytes, program: Any) -> Any:
        if len(self._decoded) >= 8192:
            self._decoded.clear()
        self._decoded[data] = program
        return program

    def mutate(self, data: bytes) -> bytes:
        """A text input (a program) mostly keeps its structure; a byte input mostly has its bytes changed."""
        if self.rng.random() < (0.8 if data.startswith(TEXT_MAGIC) else 0.3):
            other = [self.rng.choice(self.entries)] if self.entries else []
            got = mutate_program_input(self.mutator, self.decode, data, other)
            if got is not None:
                mutant, program = got
                calls = self.target.calls
                if calls is None or all(c.name in calls for c in program.calls):
                    self._remember(mutant, program)      # what its text decodes to (parse(print(p)) == p)
                return mutant
        return self.mutate_bytes(data)

    def mutate_bytes(self, data: bytes) -> bytes:
        b = bytearray(data)
        r = self.rng
        for _ in range(r.randint(1, 4)):
            op = r.randrange(6)
            if op == 0 and b:
                b[r.randrange(len(b))] = r.randrange(256)
            elif op == 1:
                b.insert(r.randrange(len(b) + 1), r.randrange(256))
            elif op == 2 and len(b) > 1:
                i = r.randrange(len(b))
                del b[i:i + r.randint(1, 8)]
            elif op == 3 and self.entries:
                other = r.choice(self.entries)
                i = r.randrange(len(b) + 1)
                j = r.randrange(len(other) + 1)
                b[i:] = other[j:j + r.randint(1, 64)] + b[i:]
            elif op == 4 and b:
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
            else:
                b += bytes(r.randrange(256) for _ in range(r.randint(1, 16)))
        return bytes(b[: self.o.max_len])

    def next_input(self) -> bytes:
        if self.entries and self.rng.random() < 0.8:
            return self.mutate(self.rng.choice(self.entries))
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(16, 256)))

    # -- reporting -----------------------------------------------------------

    def log(self, msg: str) -> None:
        if not self.o.quiet:
            print(("\r\033[K" if self.err.isatty() else "") + msg, file=self.err, flush=True)

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        # on a terminal the line is redrawn every second; in a log, a whole line every 5 s
        every = 1.0 if self.err.isatty() else 5.0
        if self.o.quiet or (not force and now - self._last_report < every):
            return
        self._last_report = now
        el = max(now - self.stats.started, 1e-9)
        line = (f"#{self.stats.execs} {el:6.1f}s exec/s {self.stats.execs / el:7.1f} corpus {self.stats.corpus} "
                f"features {self.stats.features} clauses {len(self.clauses)} findings {self.stats.findings}"
                + (f" refused {self.stats.refused}" if self.stats.refused else ""))
        if self.err.isatty() and not force:
            print("\r\033[K" + line, end="", file=self.err, flush=True)
        else:
            print(line, file=self.err, flush=True)

    def summary(self) -> str:
        el = time.monotonic() - self.stats.started
        return (f"done: {self.stats.execs} executions in {el:.1f} s ({self.stats.execs / max(el, 1e-9):.1f}/s), "
                f"corpus {self.stats.corpus} entries in {self.corpus_dir}, {len(self.clauses)} clauses exercised, "
                f"{self.stats.findings} new findings in {self.findings_dir}")

    # -- engines -------------------------------------------------------------

    def write_summary(self) -> None:
        if not self.o.summary_json:
            return
        import json
        el = time.monotonic() - self.stats.started
        write_text(self.o.summary_json, json.dumps({
            "target": self.target.name, "layer": self.layer, "seed": self.o.seed, "seconds": round(el, 3),
            "execs": self.stats.execs, "corpus": self.stats.corpus, "features": self.stats.features,
            "clauses": sorted(self.clauses), "findings": self.stats.findings, "first_finding": self.first_finding,
        }, indent=2) + "\n")

    def merge(self) -> int:
        """Keep only the corpus entries that add features (libFuzzer's -merge=1), smallest first."""
        names = [n for n in os.listdir(self.corpus_dir) if not n.startswith(".") and not n.endswith(".tmp")]
        blobs = []
        for n in names:
            with open(os.path.join(self.corpus_dir, n), "rb") as f:
                blobs.append((len(f.read()), n))
        keep: set[str] = set()
        for _, n in sorted(blobs):
            with open(os.path.join(self.corpus_dir, n), "rb") as f:
                data = f.read()
            program = self.lay.decode(data, self.target.calls, self.facts)
            if not program.calls:
                continue
            feats = features_of(execute(self.target, program, self.facts, invariants=self.o.invariants))
            if feats - self.seen:
                self.seen |= feats
                keep.add(n)
        for n in names:
            if n not in keep:
                os.unlink(os.path.join(self.corpus_dir, n))
        self.log(f"merge: kept {len(keep)} of {len(names)} corpus entries ({len(self.seen)} features)")
        return 0

    # -- the Python engine's loop ------------------------------------------------

    def _inputs(self, deadline: float, limit: int | None):
        """The stream of (input number, input) and its program.  Input k is drawn from a corpus that
        holds what inputs up to k - 2 added: with judging beside the run, input k is drawn while
        input k - 1 is still being judged, so without that lag the stream (and every result after
        it) would depend on --overlap."""
        k = 0
        while time.monotonic() < deadline and (limit is None or k < limit):
            self._commit(k - 2)
            data = self.next_input()
            try:
                program = self.decode(data)
            except Exception:   # noqa: BLE001 -- a bug in memspec itself: keep the input, go on
                self.save_harness_error(data)
                program = _EMPTY
            yield (k, data), program
            k += 1

    def _commit(self, upto: int) -> None:
        while self._pending and self._pending[0][0] <= upto:
            self.add_entry(self._pending.pop(0)[1])

    def _judge(self, program: Any, run: Any) -> Any:
        """The judgement of one run, or the exception the run or the judge raised (a memspec bug,
        saved by the loop with its input)."""
        if isinstance(run, BaseException):
            return run
        try:
            return judge(program, run, self.target.name, self.facts, invariants=self.o.invariants)
        except Exception as e:  # noqa: BLE001
            return e

    def run_python(self, limit: int | None = None) -> int:
        """Fuzz until the time is up (or ``limit`` inputs, for tests).  With --overlap, a target that
        runs programs in another process runs input k + 1 while input k is judged
        (fuzz/pipeline.py); the inputs, verdicts, corpus and findings are the same either way."""
        from memspec.fuzz.pipeline import RunAhead
        deadline = time.monotonic() + self.o.seconds
        self._pending: list[tuple[int, bytes]] = []
        try:
            self.load_corpus()
            target = _Guarded(self.target)
            with RunAhead(target, self._inputs(deadline, limit), skip=lambda p: not p.calls,
                          ahead=None if self.o.overlap else False, judge=self._judge) as ahead:
                for (k, data), program, run, j in ahead:
                    if run is None:
                        continue
                    try:
                        if isinstance(j, BaseException):
                            raise j
                        self.judged(data, program, j, lambda d, k=k: self._pending.append((k, d)))
                    except (_Stop, KeyboardInterrupt):
                        raise
                    except Exception:   # noqa: BLE001 -- a bug in memspec itself: keep the input, go on
                        self.save_harness_error(data)
                    self.progress()
            self._commit(sys.maxsize)
        except _Stop:
            self._commit(sys.maxsize)
        except KeyboardInterrupt:
            self._commit(sys.maxsize)
            self.progress(force=True)
            self.log("interrupted: corpus and findings are saved")
            self.log(self.summary())
            self.write_summary()
            return 130
        self.progress(force=True)
        self.log(self.summary())
        self.write_summary()
        return 1 if self.stats.findings else 0

    def run_atheris(self) -> int:
        import atheris
        # libFuzzer runs the corpus folder itself (and writes new entries there).  An empty
        # corpus gets seeds of a useful size first: libFuzzer starts from one-byte inputs,
        # and a program worth running needs a hundred bytes or more.
        self.seed_from_suite()
        if len([n for n in os.listdir(self.corpus_dir) if not n.startswith(".")]) < 40:
            for _ in range(32):
                self.add_entry(bytes(self.rng.randrange(256) for _ in range(self.rng.randint(64, 256))))
        deadline = time.monotonic() + self.o.seconds

        hit = _clause_feedback(atheris)

        def one_input(data: bytes) -> None:
            if self._signal:
                self.finish_atheris()
            before = len(self.seen)
            self._in_program = True
            try:
                self.run_one(data)
            except _Stop:
                self.finish_atheris()
            except KeyboardInterrupt as e:     # Ctrl-C or SIGTERM while a program ran
                self._signal = self._signal or ("SIGTERM" if type(e).__name__ == "Terminated" else "SIGINT")
                self.finish_atheris()
            finally:
                self._in_program = False
            if len(self.seen) > before:
                for feat in self.feature_index(self.seen, before):
                    hit(feat)
            self.progress()
            if time.monotonic() > deadline:
                self.finish_atheris()

        # libFuzzer truncates inputs to -max_len: let the longest seed (a suite program as text) fit.
        longest = max([os.path.getsize(os.path.join(self.corpus_dir, n)) for n in os.listdir(self.corpus_dir)] + [0])
        argv = [sys.argv[0], self.corpus_dir, f"-max_total_time={int(self.o.seconds) + 1}",
                f"-seed={self.o.seed or 1}", f"-max_len={max(self.o.max_len, longest)}", "-print_final_stats=0",
                f"-artifact_prefix={os.path.join(self.findings_dir, '')}"]
        dictionary = _dictionary(self.layer)
        if dictionary:
            argv.append(f"-dict={dictionary}")
        # Ctrl-C and SIGTERM are memspec's: it prints its summary and exits 130/143 (libFuzzer's own
        # handlers would end the process with neither)
        argv += ["-handle_int=0", "-handle_term=0"]
        self._take_signals()
        if not self.o.verbose:
            self._engine_output_to_log()
        _instrument_model(atheris)
        # atheris.Mutate is looked up at each call: the module's own is a stub until Fuzz() runs
        atheris.Setup(argv, one_input, custom_mutator=libfuzzer_mutator(
            self.mutator, self.decode, lambda data, max_size: atheris.Mutate(data, max_size)))
        atheris.Fuzz()
        return 0

    def _take_signals(self) -> None:
        import signal

        def note(signum: int, frame: object) -> None:
            self._signal = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
            if self._in_program:
                raise KeyboardInterrupt    # a program running now stops; one_input ends the run
            # elsewhere (libFuzzer's loop, the custom mutator) an exception would unwind through C:
            # the next one_input sees the flag and ends the run

        signal.signal(signal.SIGINT, note)
        signal.signal(signal.SIGTERM, note)

    def _engine_output_to_log(self) -> None:
        """libFuzzer (and the sanitizer runtime's warnings) write to file descriptor 2: point it at a
        log file beside the findings; memspec's own lines keep the real standard error."""
        self.err = os.fdopen(os.dup(2), "w", buffering=1)
        self.engine_log = os.path.join(self.findings_dir, f"libfuzzer-{_safe(self.layer)}.log")
        fd = os.open(self.engine_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.dup2(fd, 2)
        os.close(fd)
        self.log(f"libFuzzer's own output: {self.engine_log} (shown with -v)")


    def feature_index(self, seen: set[tuple[str, ...]], before: int) -> list[int]:
        """Stable small integers for the features found since ``before`` (for libFuzzer's counters)."""
        known = set(self._feature_order)
        new = sorted(f for f in seen if f not in known)
        self._feature_order.extend(new)
        return [self._feature_order.index(f) for f in new]

    def finish_atheris(self) -> None:
        self.progress(force=True)
        if self._signal:
            self.log(f"{'terminated' if self._signal == 'SIGTERM' else 'interrupted'}: corpus and findings are saved")
        self.log(self.summary())
        self.write_summary()
        try:
            self.target.close()
        finally:
            self.err.flush()
            code = {"SIGINT": 130, "SIGTERM": 143}.get(self._signal or "", 1 if self.stats.findings else 0)
            os._exit(code)


_FEEDBACK_SLOTS = 256


def _instrument_model(atheris: Any) -> int:
    """Give libFuzzer the coverage of the model and the judge only (instrumenting every
    loaded module, hypothesis and numpy included, costs minutes and says nothing useful)."""
    import inspect
    import types
    done = 0
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name.startswith("memspec.model") or name in ("memspec.specs.judge",)):
            continue
        for obj in list(vars(mod).values()):
            funcs = []
            if isinstance(obj, types.FunctionType) and obj.__module__ == name:
                funcs.append(obj)
            elif inspect.isclass(obj) and obj.__module__ == name:
                for v in vars(obj).values():
                    f = v.__func__ if isinstance(v, (staticmethod, classmethod)) else v
                    if isinstance(f, types.FunctionType):
                        funcs.append(f)
            for f in funcs:
                try:
                    atheris.instrument_func(f)
                    done += 1
                except Exception:   # noqa: BLE001 -- a function atheris cannot patch stays uninstrumented
                    pass
    return done


def _clause_feedback(atheris: Any) -> Any:
    """A function with one instrumented branch per feature slot: calling it with a new
    feature's index shows libFuzzer new coverage, so a new clause (or clause pair) keeps
    its input in the corpus even when the Python coverage is the same."""
    lines = ["def hit(i):"]
    lo, hi = 0, _FEEDBACK_SLOTS

    def tree(lo: int, hi: int, depth: int) -> None:
        pad = "    " * depth
        if hi - lo == 1:
            lines.append(f"{pad}return {lo}")
            return
        mid = (lo + hi) // 2
        lines.append(f"{pad}if i < {mid}:")
        tree(lo, mid, depth + 1)
        lines.append(f"{pad}else:")
        tree(mid, hi, depth + 1)

    tree(lo, hi, 1)
    ns: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<memspec-clause-feedback>", "exec"), ns)
    fn = atheris.instrument_func(ns["hit"])
    return lambda i: fn(i % _FEEDBACK_SLOTS)


def _dictionary(layer: str) -> str | None:
    """The layer's libFuzzer dictionary (tokens for the program-text path of the codecs)."""
    from importlib import resources
    try:
        p = resources.files("memspec.fuzz").joinpath("dict", f"{layer}.dict")
    except ModuleNotFoundError:
        return None
    return str(p) if p.is_file() else None


def _engine(o: FuzzOptions) -> str:
    if o.engine != "auto":
        return o.engine
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "python"
    return "atheris"


def fuzz(o: FuzzOptions) -> int:
    all_clauses()
    if o.jobs > 1:
        return _fuzz_jobs(o)
    f = Fuzzer(o)
    if o.merge:
        try:
            return f.merge()
        finally:
            f.target.close()
    engine = _engine(o)
    f.log(f"fuzzing {f.target.name} [{f.layer}] for {o.seconds:g} s with the {engine} engine; "
          f"corpus {f.corpus_dir}, findings {f.findings_dir}")
    try:
        return f.run_atheris() if engine == "atheris" else f.run_python()
    finally:
        f.target.close()


def _fuzz_jobs(o: FuzzOptions) -> int:
    """N workers with seeds seed..seed+N-1 sharing one corpus and findings folder."""
    import subprocess
    procs = []
    for i in range(o.jobs):
        argv = [sys.executable, "-m", "memspec.commands.cli", "fuzz", "--target", o.target, "--time", str(o.seconds),
                "--seed", str(o.seed + i), "--engine", "python", "--timeout", str(o.timeout),
                "--corpus", o.corpus or os.path.join(o.out, "corpus", o.layer or "os"),
                "--findings", o.findings or os.path.join(o.out, "findings")]
        if o.layer:
            argv += ["--layer", o.layer]
        if o.quiet or i:
            argv.append("--quiet")
        if not o.overlap:
            argv.append("--no-overlap")
        procs.append(subprocess.Popen(argv))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        return 130
    return max(codes)
