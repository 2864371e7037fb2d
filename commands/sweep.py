"""``memspec sweep``: every combination of the x86 walk's permission space, run in batches on a
target and judged by the vectorised reference walk.

    memspec sweep --target qemu-system --mode 4level --filter "cpl==3 and leaf==4k" --out sweep-out

The space (``memspec.sweepspace``) is enumerated in index order, filtered, split into what the
target's CPU can stage and what it cannot (reported unsupported, never passed), and run in
batches: each batch is one round trip in which the target builds one tree per access, runs it
and reports the outcome and the A/D flags (``targets/sweep.py``).  ``specs/sweep.py`` judges it
and folds it into the summary: per clause, and per differing outcome class with its count, the
dimensions that matter and the cited difference that explains it.

The folder ``--out`` holds ``sweep.json`` (the summary and the checkpoint: the next index to run),
``summary.txt`` and one reproducer program per class in ``reproducers/`` (its first member, as a
program ``memspec replay`` runs).  They are rewritten atomically every few seconds, and on Ctrl-C,
SIGTERM or a target that dies, so ``--resume`` goes on where the last run stopped.  The target runs
batch k+1 in a worker thread (its round trip) while batch k is judged.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from memspec.atomic import write_text
from memspec.errors import TargetError, Terminated, UsageError
from memspec.specs.directed import excused_by, load_differences
from memspec.specs.sweep import Summary, judge
from memspec.sweepspace import (LEGACY, UNSUPPORTED_REASONS, Items, Observed, Space, build, legacy_text,
                                parse_filter, program_text, unsupported)
from memspec.targets.sweep import SweepRunner

CHUNK = 1 << 15              # the least block of indexes decoded and filtered at a time
CHECKPOINT_SECONDS = 5.0


@dataclass
class SweepOptions:
    target: str
    mode: str = "4level"
    filter: str | None = None
    out: str = "memspec-sweep"
    resume: bool = False
    batch: int = 4000
    limit: int | None = None             # stop after this many combinations in this run (benchmarks, tests)
    quiet: bool = False
    timeout: float = 30.0


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Sweep:
    """One sweep of one target: ``run()`` until the space is done, ``limit`` is reached or an interrupt."""

    def __init__(self, opts: SweepOptions, runner: SweepRunner, err: TextIO = sys.stderr) -> None:
        self.o = opts
        self.runner = runner
        self.err = err
        self.space = Space(opts.mode)
        if opts.mode not in runner.modes:
            raise UsageError(runner.refuse(opts.mode))
        self.flt = parse_filter(opts.filter, self.space)
        self.diffs = load_differences()
        self.path = os.path.join(opts.out, "sweep.json")
        self.summary = Summary(runner.name, opts.mode, self.flt.text)
        if opts.resume and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                old = Summary.from_json(json.load(f))
            if (old.target, old.mode, old.filter) != (runner.name, opts.mode, self.flt.text):
                raise UsageError(f"--resume: {self.path} is a sweep of {old.target} --mode {old.mode} "
                                 f"--filter {old.filter!r}, not of this one")
            self.summary = old
        self.total = self.flt.count(self.space)

    def why(self, clause: str, observed: str) -> str:
        """The cited difference that excuses a class, judged as ``check`` judges a failure: target,
        clause, the version the target reports and the observed outcome (its first member's; the
        members of a class share the bits that differ)."""
        d = excused_by(self.diffs, self.runner.name, clause, observed, self.runner.facts)
        return f"{d.why} [{d.label}]" if d is not None else ""

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> Summary:
        s = self.summary
        space, facts = self.space, self.runner.facts
        if space.levels == 5 and not facts.get("la57", False):
            # the whole mode: unsupported, never passed
            left = self.total - (s.judged + s.refused + sum(s.unsupported.values()))
            s.unsupported["5-level paging (CR4.LA57)"] = s.unsupported.get("5-level paging (CR4.LA57)", 0) + left
            s.next_index = space.size
            self.save()
            return s
        start_time = time.monotonic() - s.seconds
        last_save = last_progress = time.monotonic()
        done_before = self._done()
        t_run = time.monotonic()
        # the target runs batch k+1 (a worker thread waiting on its round trip) while batch k is judged
        pool = ThreadPoolExecutor(1) if getattr(self.runner, "pipelined", False) else None
        pending: list[tuple[np.ndarray, int, np.ndarray, Items | None, Future | Observed | None]] = []
        try:
            for part, end in self._parts():
                pending.append(self._start(part, end, pool))
                if len(pending) < 2 and pool is not None:
                    continue
                self._finish(*pending.pop(0))
                s.seconds = time.monotonic() - start_time
                now = time.monotonic()
                if now - last_progress >= 1.0 and not self.o.quiet:
                    self.progress(self._done() - done_before, now - t_run)
                    last_progress = now
                if now - last_save >= CHECKPOINT_SECONDS:
                    self.save()
                    last_save = now
            while pending:
                self._finish(*pending.pop(0))
        except BaseException:
            # Ctrl-C, SIGTERM or a target that died: what was judged is kept, --resume goes on
            s.seconds = time.monotonic() - start_time
            self.save(partial=True)
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        s.seconds = time.monotonic() - start_time
        self.save()
        if not self.o.quiet:
            self.progress(self._done() - done_before, time.monotonic() - t_run)
        return s

    def _parts(self):
        """(combination indexes, the next index after them) in order, up to ``limit`` combinations."""
        s, space = self.summary, self.space
        planned = 0                 # --limit counts this run's combinations
        # blocks aligned to a dimension's place value: the dimensions outside it are constant over a
        # block, so a block the filter cannot keep anything of is skipped without decoding it
        k = max(i for i in range(len(space.dims)) if int(space.place[i]) >= CHUNK)
        block = int(space.place[k])
        outer = [d.name for d in space.dims[:k]]
        kept = self.flt.kept(space) if self.flt.names else {}
        lo = s.next_index
        while lo < space.size:
            hi = min(space.size, (lo // block + 1) * block)
            first = space.decode(np.array([lo]), frozenset(outer))
            if not self.flt.possible(kept, {n: int(v[0]) for n, v in first.items()}):
                yield np.zeros(0, dtype=np.int64), hi
                lo = hi
                continue
            idx = np.arange(lo, hi, dtype=np.int64)
            idx = self.flt.select(space, idx)
            for b in range(0, idx.size, self.o.batch):
                part = idx[b:b + self.o.batch]
                if self.o.limit is not None:
                    part = part[:self.o.limit - planned]
                    if part.size == 0:
                        return
                planned += part.size
                last = b + self.o.batch >= idx.size and part.size == idx[b:b + self.o.batch].size
                yield part, (hi if last else int(part[-1]) + 1)
            if idx.size == 0:
                yield idx, hi
            lo = hi

    def _done(self) -> int:
        s = self.summary
        return s.judged + s.refused + sum(s.unsupported.values())

    def _start(self, part: np.ndarray, end: int, pool: ThreadPoolExecutor | None):
        why = unsupported(self.space, self.space.decode(part), self.runner.facts)
        run = part[why == 0]
        if run.size == 0:
            return part, end, why, None, None
        items = build(self.space, run)
        if pool is None:
            return part, end, why, items, self.runner.run(items)
        return part, end, why, items, pool.submit(self.runner.run, items)

    def _finish(self, part: np.ndarray, end: int, why: np.ndarray, items: Items | None, obs) -> None:
        s = self.summary
        for code in np.unique(why[why > 0]).tolist():
            reason = UNSUPPORTED_REASONS[code]
            s.unsupported[reason] = s.unsupported.get(reason, 0) + int((why == code).sum())
        if items is not None:
            if isinstance(obs, Future):
                obs = obs.result()
            v = judge(items, obs, self.runner.facts)
            s.add(self.space, items, v, self.why)
        s.next_index = end

    def progress(self, done: int, seconds: float) -> None:
        s = self.summary
        total_done = self._done()
        rate = done / seconds if seconds > 0 else 0.0
        left = max(0, self.total - total_done)
        eta = _fmt_time(left / rate) if rate > 0 else "?"
        pct = 100.0 * total_done / self.total if self.total else 100.0
        print(f"sweep {s.target} {s.mode}: {total_done:,}/{self.total:,} combinations ({pct:.1f}%), "
              f"{rate:,.0f}/s, ETA {eta}, {s.failed:,} differing in {len(s.classes)} classes",
              file=self.err, flush=True)

    # -- output -------------------------------------------------------------------------------

    def save(self, partial: bool = False) -> None:
        s = self.summary
        os.makedirs(self.o.out, exist_ok=True)
        doc = s.to_json()
        doc["total"] = self.total
        doc["partial"] = partial or s.next_index < self.space.size
        write_text(self.path, json.dumps(doc, indent=1) + "\n")
        write_text(os.path.join(self.o.out, "summary.txt"), "\n".join(self.report_lines()) + "\n")
        rdir = os.path.join(self.o.out, "reproducers")
        for key, rec in s.classes.items():
            write_text(os.path.join(rdir, self.repro_name(key)), self.reproducer(key, rec))

    def repro_name(self, key: str) -> str:
        """``<clause>.<hash of the class>.mst``: stable across runs and resumes (``.txt`` for PAE and
        32-bit paging, which have no program form)."""
        return f"{key.split(' | ')[1]}.{_slug(key)}.{'txt' if self.space.mode in LEGACY else 'mst'}"

    def reproducer(self, key: str, rec) -> str:
        kind, clause = key.split(" | ")[:2]
        items = build(self.space, np.array([rec.first]))
        combo = self.space.combination(rec.first)
        title = (f"target: {self.summary.target}\nlayer: hw\nclause: {clause}\n"
                 f"sweep class ({kind}): {class_title(key)}: {rec.count:,} combinations"
                 + (f" (this one: {rec.example})" if rec.example else "") + "\n"
                 f"combination {rec.first} of the {self.summary.mode} space: "
                 + " ".join(f"{k}={v}" for k, v in combo.items())
                 + (f"\nexplained: {rec.why}" if rec.why else ""))
        return (legacy_text if self.space.mode in LEGACY else program_text)(items, 0, title)

    def report_lines(self) -> list[str]:
        s = self.summary
        unsup = sum(s.unsupported.values())
        out = [f"memspec sweep --target {s.target} --mode {s.mode}" + (f" --filter {s.filter!r}" if s.filter else ""),
               f"combinations: {self.total:,} selected, {s.judged:,} judged ({s.passed:,} pass, {s.failed:,} differ, "
               f"{s.explained():,} of them explained), {unsup:,} unsupported, {s.refused:,} refused by the harness"
               + ("" if s.next_index >= self.space.size else f"; stopped at index {s.next_index:,} (partial)"),
               f"time: {s.seconds:.1f} s" + (f", {s.judged / s.seconds:,.0f} combinations judged per second"
                                            if s.seconds > 0 else "")]
        for reason, n in sorted(s.unsupported.items()):
            out.append(f"  unsupported: {n:,} need {reason}")
        out.append("")
        if s.classes:
            out.append("differing outcome classes:")
            for key, rec in sorted(s.classes.items(), key=lambda kv: -kv[1].count):
                where = " ".join(s.where(self.space, rec))
                out.append(f"  {class_title(key)}: {rec.count:,} combinations  [{key.split(' | ')[1]}]"
                           + (" EXPLAINED" if rec.why else ""))
                if rec.example:
                    out.append(f"      e.g. {rec.example}")
                out.append(f"      where: {where or '(no single dimension)'}")
                out.append(f"      reproducer: reproducers/{self.repro_name(key)} (combination {rec.first})")
                if rec.why:
                    out.append(f"      why: {rec.why}")
        else:
            out.append("differing outcome classes: none")
        out.append("")
        out.append("per clause (judged, differing):")
        for clause, (judged, failed) in sorted(s.per_clause.items()):
            out.append(f"  {clause:<48} {judged:>12,} {failed:>10,}")
        return out


def class_title(key: str) -> str:
    """``allowed where #PF 0x1``, or for an error code that differs in some bits, ``#PF error code without P``."""
    _kind, _clause, exp, got = key.split(" | ")
    return got if exp == "#PF" else f"{got} where {exp}"


def _slug(key: str) -> str:
    import hashlib
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def exit_code(s: Summary) -> int:
    """0: every judged combination agrees or is explained; 1: an unexplained class."""
    return 1 if any(not r.why for r in s.classes.values()) else 0


def main(opts: SweepOptions, out: TextIO = sys.stdout) -> int:
    from memspec.targets.registry import make_target
    from memspec.targets.sweep import runner_for
    parse_filter(opts.filter, Space(opts.mode))      # usage errors before a target starts
    try:
        target = make_target(opts.target, timeout=opts.timeout)
    except TargetError as e:
        raise UsageError(str(e)) from None
    runner: SweepRunner | None = None
    try:
        runner = runner_for(target)
        sw = Sweep(opts, runner)
        try:
            s = sw.run()
        except BaseException as e:
            what = "interrupted" if isinstance(e, (KeyboardInterrupt, Terminated)) else "stopped"
            print(f"{what}: checkpoint and partial summary in {opts.out} (--resume goes on from "
                  f"index {sw.summary.next_index:,})", file=sys.stderr)
            raise
        for line in sw.report_lines():
            print(line, file=out)
        print(f"\nsummary: {os.path.join(opts.out, 'summary.txt')}, checkpoint: {sw.path}", file=out)
        return exit_code(s)
    finally:
        if runner is not None:
            runner.close()          # the kvm runner's VM and tree memory
        target.close()


__all__ = ["SweepOptions", "Sweep", "main", "exit_code", "class_title"]
