"""``memspec repro FILE --target T``: a reproducer that runs without memspec or Python.

For the os layer (target ``linux``) and the malloc family of the phys layer (``libc``,
``malloc:NAME``) it writes one C99 file that makes the same calls in the same processes (a forked
process per ``pN = fork()``), checks each outcome against what the model allowed, and at the first
divergence prints the call, the clause with its citation, expected and observed, and exits 1 (0
when every call conforms).  Beside it a README: what it shows, the spec text, expected, observed,
the version it was seen on, and how to build and run it.

What the model allowed is computed here, at repro time, by running the program once on the target
and replaying the observed run through the model call by call (``model.expect`` is what the judge
asks).  Each call's check in C is then one of:

* the exact set of allowed outcomes (the model's ``allowed`` tuple), values that equal an earlier
  named result written as that result (``R_a + 0x1000``), so that a run with other addresses
  (ASLR) is judged the same way;
* for a rule that is a predicate (an address the kernel or allocator picks), the classes of
  outcome the predicate accepts, found by asking it: which errnos (with which return value), which
  signals, whether ``ok`` or a NULL without errno is allowed, and for a returned address, whether
  one far from everything is allowed and to which power of two it must be aligned; a block from the
  malloc family must also not overlap a live block (the C file keeps the table of live blocks, as
  the libc target does).

The same os file serves the targets that run memspec's native agent somewhere else: on ``qemu-user``
it is linked statically and run under ``qemu-x86_64``, on ``uml`` it is the first process of
User-mode Linux (``linux.uml ... init=repro``, powering the machine off at its end).  Every call has a
time limit: no answer is ``HANG at call N`` (exit 4, every worker killed, as a spinning emulator may
ignore SIGTERM); when memspec's run hung at or died in a call, the C file makes that call too and
says ``HANG`` or ``CRASH`` (exit 3) if it gets no answer either.

At each checkpoint memspec's run observed (after the last call: ``observe="end"``, as ``memspec
replay`` judges) the C file also compares each process's /proc/PID/maps with the model's maps there,
as the judge does (specs/compare_maps.py): both clipped to the model's mappings and the target's quiet
ranges, adjacent rows with equal permissions merged; the model's maps are data in the file (each row a
named result plus an offset where it lies near one), and the first row that differs is printed with
the clause of the model's mapping there (commands/c/maps.c).  A failure the C file cannot show (an
invariant, the fault counters at a checkpoint) it names in a note rather than pass silently.

A new os call needs its C form here (``OS_CALLS`` and ``_dispatch``: a raw system call goes in
``_dispatch``'s table, anything else gets a ``c_NAME`` helper doing what the linux target does);
until then ``memspec repro`` says it has none.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from dataclasses import dataclass, field
from typing import Any

from memspec.consts import SANDBOX_WINDOW
from memspec.errors import TargetError, UsageError
from memspec.program import Program, Ref, Str, eval_arg, format_call, load
from memspec.records import Outcome, RunStatus

from .repro_replay import model_replay

HEAP_CALLS = ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign",
              "malloc_usable_size", "heap_store", "heap_load", "heap_fill", "heap_count")
OS_CALLS = ("mmap", "munmap", "mprotect", "load", "store", "fetch", "fork", "exit", "mremap", "madvise", "msync",
            "mincore", "mlock", "mlock2", "munlock", "mlockall", "munlockall", "set_memlock_limit", "set_fsize_limit",
            "drop_privileges", "shm_open", "shm_unlink", "memfd_create", "open_file", "pipe", "ftruncate", "close",
            "pfn_of", "thp_mapped", "minflt", "majflt", "get_node", "mbind", "read", "write", "pread", "pwrite",
            "lseek", "mseal", "map_pages")
ERRNOS = ("EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "EBADF", "ECHILD", "EAGAIN", "ENOMEM",
          "EACCES", "EFAULT", "EBUSY", "EEXIST", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL", "ENFILE", "EMFILE",
          "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EOVERFLOW", "ENAMETOOLONG", "EOPNOTSUPP", "ENOSYS",
          "ELOOP", "EXDEV")
SIGNALS = ("SIGSEGV", "SIGBUS")
# os targets whose calls the C file makes: the running kernel, or the same file run under QEMU's
# linux-user emulation (the qemu-user target runs memspec's native agent under qemu-x86_64)
# (the C file as the first process of User-mode Linux for uml: its root is the host's files, its
# console linux.uml's standard output)
OS_TARGETS = {"linux": "./repro", "qemu-user": "qemu-x86_64 ./repro",
              "uml": "linux.uml mem=256M root=/dev/root rootfstype=hostfs rootflags=/ rw init=\"$PWD/repro\" "
                     "quiet loglevel=1 con=null con0=fd:0,fd:1 ssl=null console=tty0"}
# the checkpoint comparison's other clauses (specs/compare_os.py): fault counters the C file does not compare
FAULT_COUNTS = ("seed.fault.minor-counted", "seed.fault.major-counted")
FAR = 0x500000000000          # an address nothing uses: far from the heap, the stack and the sandbox window
assert not SANDBOX_WINDOW[0] <= FAR < SANDBOX_WINDOW[1]


@dataclass
class CallCheck:
    """What the C file checks for one call."""

    index: int
    text: str
    clause: str
    statement: str
    citation: str
    expected: str                 # the model's description
    exact: list[Outcome] | None = None     # the allowed outcomes, when the rule lists them
    any_outcome: bool = False     # the model cannot decide (never a failure)
    errnos: list[tuple[int, str]] = field(default_factory=list)   # (return value, errno) allowed
    signals: list[str] = field(default_factory=list)
    ok: bool = False              # no value, no errno, no signal
    null: bool = False            # NULL without errno
    success: bool = False         # some returned value is allowed
    align: int = 0                # ... aligned to this (0: any value)
    range: tuple[int, int, int] | None = None   # (lo, hi, alignment) of the values a ranged rule accepts
    heap_block: bool = False      # ... a malloc block that must not overlap a live one
    observed: Outcome | None = None
    diverges: bool = False        # the observed outcome was refused here


@dataclass
class MapsCheck:
    """What the C file compares at a checkpoint memspec observed: each process's memory map (os layer)."""

    index: int                    # after this call
    procs: list[tuple[str, list[tuple[int, int, str, str]]]]   # (process, the model's mappings: start, end,
                                  # permissions, the clause that made each)
    diverges: bool = False        # memspec's judge found the maps differ here


@dataclass
class Repro:
    program: Program
    target: str
    layer: str
    version: str
    checks: list[CallCheck]
    verdict: str                  # "pass", "fail" or "not-applicable"/"unsupported" with why
    failure: Any = None           # the judge's failing check
    env: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""             # why the target's run stopped early (a refusal), "" if it did not
    hang_at: int = -1             # the call the target hung at or died in (memspec's verdict hang or
                                  # crash), -1 if none
    hang_kind: str = ""           # "hang" or "crash"
    time_limit: float = 10.0      # memspec's time limit for the run
    maps: list[MapsCheck] = field(default_factory=list)   # the checkpoints whose maps the C file compares


def _c_string(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\{ord(c):03o}" for c in s) + '"'


def _num(v: int) -> str:
    v &= (1 << 64) - 1
    return f"{v:#x}ULL" if v > 0x7FFFFFFF else str(v)


def _allowed_classes(exp: Any, observed: Outcome, heap: bool, call_name: str) -> dict[str, Any]:
    """Ask the rule's predicate which classes of outcome it accepts (see the module docstring)."""
    judge = exp.judge
    out: dict[str, Any] = {"errnos": [], "signals": [], "ok": False, "null": False, "success": False, "align": 0}
    for e in ERRNOS:
        for v in (-1, 0):
            if judge(Outcome(value=v, errno=e)) is None:
                out["errnos"].append((v, e))
    out["signals"] = [s for s in SIGNALS if judge(Outcome(signal=s)) is None]
    out["ok"] = judge(Outcome()) is None
    out["null"] = judge(Outcome(value=0)) is None
    if judge(Outcome(value=FAR)) is None:
        out["success"] = True
        out["align"] = next((1 << k for k in range(0, 31) if judge(Outcome(value=FAR + (1 << k))) is None), 1 << 31)
    else:
        # the rule accepts values in a range only (a count "between 0 and N", MAP_32BIT's first
        # 2 GiB): from a value it accepts (the observed one, else its own), the alignment it needs
        # and how far the accepted values reach either way
        seed = next((o.value for o in (observed, exp.default)
                     if o.ok and o.value is not None and judge(o) is None), None)
        if seed is not None:
            out["range"] = _accepted_range(judge, seed)
    return out


def _accepted_range(judge: Any, seed: int) -> tuple[int, int, int]:
    def okv(v: int) -> bool:
        return 0 <= v < (1 << 64) and judge(Outcome(value=v)) is None
    align = next((1 << k for k in range(0, 31) if okv(seed + (1 << k)) or okv(seed - (1 << k))), 0)
    if not align:
        return seed, seed, 1
    ends = []
    for sign in (1, -1):
        good, step = seed, align
        while step < (1 << 64) and okv(seed + sign * step):
            good, step = seed + sign * step, step * 2
        bad = seed + sign * step
        while abs(bad - good) > align:           # bisect between the last accepted and the first refused
            mid = good + sign * ((abs(bad - good) // 2) // align * align or align)
            if okv(mid):
                good = mid
            else:
                bad = mid
        ends.append(good)
    return ends[1], ends[0], align


def analyse(program: Program, target: Any, facts: dict[str, Any]) -> Repro:
    """Run ``program`` once on ``target``, judge it, and replay the run through the model to find
    what each call may do."""
    from memspec.specs.judge import judge
    layer = program.layer
    for _ in range(3):
        # the linux target refuses a call that would touch the interpreter's own mappings, which
        # move from run to run (ASLR): a refusal is taken as the verdict only when it comes back
        run = target.run(program, observe="end")
        if run.status is not RunStatus.REFUSED:
            break
    j = judge(program, run, target.name, facts)
    version = str(facts.get("impl_version", ""))
    if run.status is RunStatus.REFUSED and not run.outcomes:
        return Repro(program, target.name, layer, version, [], "unsupported: " + (run.message or "refused"), j.failure)
    checks: list[CallCheck] = []
    heap = layer == "phys"
    env: dict[str, int] = {}
    # past a divergence the model adopts what the target did, as far as it can, so that the C
    # file checks every call: where the divergence shows may depend on state the C process does
    # not share with the target's (the allocator's heap after an interpreter's own allocations)
    # the checkpoints memspec compared (os layer: the memory maps), with the model's maps there
    seen = {i for i, obs in run.observations if obs.maps} if layer == "os" else set()
    maps: list[MapsCheck] = []

    def at_checkpoint(i: int, model: Any) -> None:
        if i in seen and hasattr(model, "procs") and not any(c.diverges for c in checks):
            rows = {p: [(s, e, v.perms, model.blame(p, s)) for s, e, v in model.procs[p].vmas.items()]
                    for p in model.procs}
            maps.append(MapsCheck(i, list(rows.items())))
    for st in model_replay(program, run, facts, past_divergence=True, env=env, after=at_checkpoint):
        exp, o, call = st.expect, st.outcome, st.call
        cc = CallCheck(st.index, format_call(call), st.clause_id, st.clause.statement, st.clause.citation,
                       exp.describe, observed=o, diverges=st.diverges)
        if exp.unknown:
            cc.any_outcome = True
        elif exp.predicate is None:
            cc.exact = list(exp.allowed if exp.allowed is not None else (exp.default,))
        else:
            k = _allowed_classes(exp, o, heap, call.name)
            cc.errnos, cc.signals, cc.ok, cc.null = k["errnos"], k["signals"], k["ok"], k["null"]
            cc.success, cc.align = k["success"], k["align"]
            cc.range = k.get("range")
            cc.heap_block = heap and call.name in ("malloc", "calloc", "realloc", "aligned_alloc", "memalign",
                                                  "posix_memalign") and cc.success
        checks.append(cc)
    f = j.failure
    for m in maps:
        m.diverges = f is not None and f.at == "checkpoint" and f.index == m.index and f.clause not in FAULT_COUNTS
    verdict = "pass" if f is None else ("fail" if f.verdict.value == "fail" else f.verdict.value)
    # a refusal part-way (the calls before it judged, as memspec does): the C file stops there too
    stopped = run.message if run.status is RunStatus.REFUSED else ""
    # a hang or a crash: the call that got no answer
    # (or died in, a crash) is made too, under memspec's time limit, and the C file says HANG or CRASH
    # if it gets no answer either
    stop = run.status in (RunStatus.HANG, RunStatus.CRASH) and len(run.outcomes) < len(program.calls)
    hang_at = len(run.outcomes) if stop else -1
    return Repro(program, target.name, layer, version, checks, verdict, f, env, facts, stopped, hang_at,
                 run.status.value if stop else "", float(getattr(target, "timeout", 10.0) or 10.0), maps)


# ---------------------------------------------------------------------------------------------
# C: the fixed parts are C files beside this module (commands/c/), the per-program part is written here


def _c(name: str) -> str:
    return resources.files("memspec.commands").joinpath("c", name).read_text(encoding="utf-8")






def _expr_for(v: int, env: dict[str, int]) -> str:
    """``v`` written as an earlier named result plus an offset when it is one (addresses differ run
    to run), else as a number."""
    u = v & ((1 << 64) - 1)
    if u >= 0x10000 and u < (1 << 63):
        best = None
        for name, b in env.items():
            b &= (1 << 64) - 1
            if b >= 0x10000 and 0 <= u - b < (1 << 30) and (best is None or u - b < best[1]):
                best = (name, u - b)
        if best is not None:
            return f"(R_{best[0]} + {_num(best[1])})" if best[1] else f"R_{best[0]}"
    return _num(v)


def _ref_off(v: int, env: dict[str, int], names: list[str]) -> tuple[int, int]:
    """``v`` as (index of a named result in ``names``, offset), as ``_expr_for`` writes it; (-1, v) if no
    named result is near."""
    u = v & ((1 << 64) - 1)
    if 0x10000 <= u < (1 << 63):
        best = None
        for name, b in env.items():
            b &= (1 << 64) - 1
            if name in names and b >= 0x10000 and 0 <= u - b < (1 << 30) and (best is None or u - b < best[1]):
                best = (name, u - b)
        if best is not None:
            return names.index(best[0]), best[1]
    return -1, u


def _maps_tables(r: Repro, names: list[str]) -> str:
    """The data maps.c needs: the named results' addresses, the quiet ranges, the clauses a
    difference can name (the first: no mapping of the model's there)."""
    from memspec.specs.catalogue import get as clause_of
    quiet = [tuple(q) for q in r.facts.get("quiet_ranges") or []]
    out = ["\n/* the memory maps at checkpoints (maps.c) */\n",
           "static long long *const RES[] = {" + (", ".join(f"&R_{n}" for n in names) or "0") + "};\n",
           "static const u64 QUIET[][2] = {" + (", ".join(f"{{{_num(a)}, {_num(b)}}}" for a, b in quiet) or "{0, 0}")
           + "};\n", f"#define NQUIET {len(quiet)}\n", "static const char *const BLAME[][3] = {\n"]
    for b in _blames(r):
        c = clause_of(b)
        out.append(f"  {{{_c_string(b)}, {_c_string(c.statement)}, {_c_string(c.citation)}}},\n")
    mc = clause_of("linux.proc-maps.matches")
    out.append("};\n" f"static const char *const MAPS_CLAUSE[2] = {{{_c_string(mc.id)}, {_c_string(mc.statement)}}};\n")
    return "".join(out)


def _blames(r: Repro) -> list[str]:
    """The clauses a map difference can name, in BLAME's order: the first where the model has no mapping."""
    out = ["posix.munmap.removes-range"]
    for m in r.maps:
        for _, rows in m.procs:
            for row in rows:
                if row[3] not in out:
                    out.append(row[3])
    return out


def _maps_check(m: MapsCheck, r: Repro, env: dict[str, int], names: list[str], slots: dict[str, int]) -> str:
    blames = _blames(r)
    out = [f"\n  /* the checkpoint after call {m.index + 1}: each process's memory map against the model's */\n"]
    for proc, rows in m.procs:
        if proc not in slots:
            continue
        items = []
        for s, e, perms, b in rows:
            rs, so = _ref_off(s, env, names)
            re_, eo = _ref_off(e, env, names) if rs < 0 else (rs, (e - s) + so)
            items.append(f"{{{rs}, {_num(so)}, {re_}, {_num(eo)}, {_c_string(perms)}, {blames.index(b)}}}")
        body = ",\n      ".join(items) or '{-1, 0, -1, 0, "", 0}'
        out.append(f"  {{\n    static const exprow X[] = {{\n      {body}}};\n"
                   f"    if (check_maps({m.index + 1}, {slots[proc]}, {_c_string(proc)}, X, {len(rows)})) {{ finish(); return 1; }}\n  }}\n")
    return "".join(out)


def _cond_exact(o: Outcome, env: dict[str, int]) -> str:
    if o.signal:
        return f"is_sig(&o, {o.signal if o.signal in SIGNALS else -1})"
    if o.errno:
        return f"is_err(&o, {o.value if o.value is not None else -1}, {o.errno})"
    if o.value is None:
        return "is_ok(&o)"
    return f"is_val(&o, {_expr_for(o.value, env)})"


def _condition(cc: CallCheck, env: dict[str, int], size_expr: str) -> str:
    if cc.any_outcome:
        return "1"
    if cc.exact is not None:
        return " || ".join(_cond_exact(o, env) for o in cc.exact) or "0"
    parts = [f"is_err(&o, {v}, {e})" for v, e in cc.errnos]
    parts += [f"is_sig(&o, {s})" for s in cc.signals]
    if cc.ok:
        parts.append("is_ok(&o)")
    if cc.null:
        parts.append("is_null(&o)")
    if cc.range is not None:
        lo, hi, al = cc.range
        parts.append(f"is_range(&o, {_num(lo)}, {_num(hi)}, {_num(al)})")
    if cc.success:
        succ = f"is_addr(&o, {_num(cc.align)})"
        if cc.heap_block:
            succ = f"({succ} && !overlaps_live((u64)o.value, {size_expr}))"
        parts.append(succ)
    return " || ".join(parts) or "0"


def _arg_c(a: Any) -> str:
    if isinstance(a, Ref):
        return f"(R_{a.name} + {_num(a.offset)})" if a.offset else f"R_{a.name}"
    if isinstance(a, Str):
        return "0"
    v = eval_arg(a, {})
    return f"(u64){v}LL" if isinstance(v, int) and v < 0 else _num(int(v))


def _dispatch(call: Any, slots: dict[str, int]) -> str:
    n = call.name
    strs = [a.value for a in call.args if isinstance(a, Str)]
    A = [f"A[{k}]" for k in range(len(call.args))]
    if n == "fork":
        return f"c_fork({slots[call.result]})"
    if n == "exit":
        return "c_exit()"
    if n in ("shm_open",):
        return f"c_shm_open({_c_string(strs[0])}, A[1], A[2])"
    if n == "shm_unlink":
        return f"c_shm_unlink({_c_string(strs[0])})"
    if n == "memfd_create":
        return f"c_memfd_create({_c_string(strs[0])}, A[1])"
    sysnr = {"mmap": "SYS_mmap", "munmap": "SYS_munmap", "mprotect": "SYS_mprotect", "mremap": "SYS_mremap",
             "madvise": "SYS_madvise", "msync": "SYS_msync", "mlock": "SYS_mlock", "mlock2": "SYS_mlock2",
             "munlock": "SYS_munlock", "mlockall": "SYS_mlockall", "munlockall": "SYS_munlockall",
             "ftruncate": "SYS_ftruncate", "close": "SYS_close", "mseal": "SYS_mseal"}
    if n in sysnr:
        return f"sysret(syscall({', '.join([sysnr[n]] + A)}))"
    if n in ("minflt", "majflt"):
        return f"c_flt({1 if n == 'majflt' else 0})"
    if n == "posix_memalign" or n in HEAP_CALLS or n in OS_CALLS:
        return f"c_{n}({', '.join(A)})"
    raise UsageError(f"repro: no C form for {n}")


def c_source(r: Repro) -> str:
    prog = r.program
    heap = r.layer == "phys"
    procs = ["main"] + [c.result for c in prog.calls if c.name == "fork" and c.result]
    slots = {p: k for k, p in enumerate(procs)}
    names = sorted({c.result for c in prog.calls if c.result and c.name != "fork"}
                   | {a.name for c in prog.calls for a in c.args if isinstance(a, Ref)})
    out = [_c("prelude.c")]
    if any(c.name == "map_pages" for c in prog.calls):
        # map_pages meets vm.max_map_count where the target did: the C process first has as many
        # mappings of its own as the target's fact says (os_helpers.c c_map_pages)
        out.append(f"#define BASE_MAPS {int(r.facts.get('base_maps', 0))}\n")
    out.append(_c("heap_helpers.c") if heap else _c("os_helpers.c"))
    if heap:
        out.append("static void start_process(void) {}\n")
    if r.maps:
        out.append("#define WITH_MAPS 1\n")
    out.append(f"#define NPROC {len(procs)}\n" + _c("procs.c"))
    out.append("/* named results */\n" + "".join(f"static long long R_{n} = -1;\n" for n in names))
    if r.maps:
        out.append(_maps_tables(r, names) + _c("maps.c"))
    maps_at = {m.index: m for m in r.maps}
    shm_names = sorted({a.value for c in prog.calls if c.name in ("shm_open", "shm_unlink") for a in c.args
                        if isinstance(a, Str)})
    # the worker's side: one case per call
    out.append("\nstatic outcome do_call(int idx, const u64 *A) {\n  (void)A;\n  switch (idx) {\n")
    for index in [cc.index for cc in r.checks] + ([r.hang_at] if r.hang_at >= 0 else []):
        call = prog.calls[index]
        body = _dispatch(call, slots)
        if call.name == "exit":
            out.append(f"  case {index}: {{ outcome o = c_exit(); "
                       f"if (write(rep_pipe[{slots[call.proc or 'main']}][1], &o, sizeof o) < 0) _exit(3); _exit(0); }}\n")
        else:
            out.append(f"  case {index}: return {body};\n")
    out.append("  }\n  return ok();\n}\n")
    # the coordinator's side
    out.append(r'''
static void diverge(int n, const char *call, const char *clause, const char *statement, const char *citation,
                    const char *expected, const outcome *o) {
  char b[128]; describe(o, b, sizeof b);
  printf("DIVERGES at call %d: %s\n  clause:   %s\n  spec:     %s\n            [%s]\n  expected: %s\n  observed: %s\n",
         n, call, clause, statement, citation, expected, b);
}
static void finish(void) {
  for (int k = 0; k < NPROC; k++) if (worker_pid[k] > 0) kill(worker_pid[k], SIGKILL);
''')
    for s in shm_names:
        out.append(f'  {{ char real[300]; shm_name({_c_string(s)}, real, sizeof real); shm_unlink(real); }}\n'
                   if not heap else "")
    if not heap:
        out.append("  cleanup_files();\n")
    out.append("  while (wait(0) > 0) {}\n}\n")
    out.append("\nint main(void) {\n  outcome o; u64 A[6]; char b[128];\n  (void)b;\n"
               "  setvbuf(stdout, 0, _IONBF, 0);\n  atexit(power_off_if_init);\n  alarm(120);\n"
               "  for (int k = 0; k < NPROC; k++) if (pipe(req_pipe[k]) < 0 || pipe(rep_pipe[k]) < 0) return 2;\n")
    if heap:
        out.append(f"  limit_memory({_num(int(r.facts.get('mem_limit') or 0))});\n")
    else:
        out.append('  mount_proc_if_init();\n'
                   '  snprintf(shm_prefix, sizeof shm_prefix, "msr%dx-", (int)getpid());\n'
                   '  snprintf(tmpdir, sizeof tmpdir, "/tmp/memspec-repro-XXXXXX");\n'
                   '  if (!mkdtemp(tmpdir)) return 2;\n  chmod(tmpdir, 01777);\n')
    # the workers (worker 0 and the processes it forks) hold the other ends: a worker that dies is
    # then an end of file on its reply pipe (K_DIED), not a read that waits for the time limit
    out.append("  start_worker(0);\n"
               "  for (int k = 0; k < NPROC; k++) { close(req_pipe[k][0]); close(rep_pipe[k][1]); }\n")
    env_names: dict[str, int] = {}
    env_so_far: dict[str, int] = {}
    for cc in r.checks:
        call = prog.calls[cc.index]
        proc = call.proc or "main"
        out.append(f"\n  /* call {cc.index + 1}: {cc.text.replace('*/', '* /')} */\n")
        out.append("  memset(A, 0, sizeof A);\n")
        for k, a in enumerate(call.args):
            out.append(f"  A[{k}] = {_arg_c(a)};\n")
        out.append(f"  o = run_in({slots[proc]}, {cc.index}, A);\n")
        size_expr = {"malloc": "A[0]", "calloc": "A[0] * A[1]", "realloc": "A[1]", "aligned_alloc": "A[1]",
                     "memalign": "A[1]", "posix_memalign": "A[1]"}.get(call.name, "1")
        cond = _condition(cc, env_so_far, size_expr)
        out.append(f"  if (!({cond})) {{\n    diverge({cc.index + 1}, {_c_string(cc.text)}, {_c_string(cc.clause)}, "
                   f"{_c_string(cc.statement)},\n            {_c_string(cc.citation)}, {_c_string(cc.expected)}, &o);\n"
                   "    finish();\n    return 1;\n  }\n")
        if heap:
            if call.name in ("malloc", "calloc", "aligned_alloc", "memalign", "posix_memalign"):
                out.append(f"  if (o.value) live_add((u64)o.value, {size_expr});\n")
            elif call.name == "realloc":
                out.append("  if (o.value) { live_del(A[0]); live_add((u64)o.value, A[1]); }"
                           " else if (A[0] && !A[1]) live_del(A[0]);\n")
            elif call.name == "free":
                out.append("  live_del(A[0]);\n")
        if call.result and call.name != "fork":
            out.append(f"  R_{call.result} = (o.kind == K_VALUE) ? o.value : -1;\n")
            if cc.observed is not None:
                env_so_far[call.result] = cc.observed.value if cc.observed.value is not None else -1
        if call.name == "fork" and call.result:
            out.append(f"  worker_pid[{slots[call.result]}] = (pid_t)o.value;\n")
        if call.name == "exit":
            out.append(f"  waitpid(worker_pid[{slots[proc]}], 0, 0); worker_pid[{slots[proc]}] = 0;\n")
        env_names.update(env_so_far)
        if cc.index in maps_at:
            out.append(_maps_check(maps_at[cc.index], r, env_so_far, names, slots))
    if r.hang_at >= 0:
        call = prog.calls[r.hang_at]
        text = format_call(call)
        out.append(f"\n  /* call {r.hang_at + 1}: {text.replace('*/', '* /')}: memspec's run got no answer */\n"
                   "  memset(A, 0, sizeof A);\n")
        for k, a in enumerate(call.args):
            out.append(f"  A[{k}] = {_arg_c(a)};\n")
        c = r.failure.clause if r.failure is not None else "memspec.target.alive"
        out.append(f"  call_limit = {max(1, int(r.time_limit + 0.999))};\n"
                   f"  hang_call = {r.hang_at + 1}; hang_text = {_c_string(text)}; hang_clause = {_c_string(c)};\n"
                   f"  o = run_in({slots[call.proc or 'main']}, {r.hang_at}, A);\n")
        if r.hang_kind == "crash":
            out.append(f'  if (o.kind == K_DIED) {{\n    printf("CRASH at call {r.hang_at + 1}: %s\\n  clause:   %s\\n'
                       '  expected: an outcome\\n  observed: the process making the call died (as in memspec\'s '
                       'run)\\nVERDICT: CRASH\\n", hang_text, hang_clause);\n    finish();\n    return 3;\n  }\n')
        out.append('  describe(&o, b, sizeof b);\n'
                   f'  printf("note: call {r.hang_at + 1} answered (%s) within %d s; memspec\'s run got no answer '
                   f'there ({r.hang_kind})\\n", b, call_limit);\n')
    f = r.failure
    if f is not None and not any(c.diverges for c in r.checks) and r.hang_at < 0 and not any(m.diverges for m in r.maps):
        # memspec's failure is neither a call's outcome nor a map difference (an invariant, the fault
        # counters at a checkpoint): the C file cannot show it, and says so rather than pass silently
        out.append(f'  printf("note: memspec found {f.verdict.value} {f.clause} ({f.at} after call {f.index + 1}), '
                   'which this file does not check\\n");\n')
    maps_note = (f" and the memory maps at {len(r.maps)} checkpoint{'s' if len(r.maps) > 1 else ''} are the model's"
                 if r.maps else "")
    out.append("\n  finish();\n  printf(\"CONFORMS: every call's outcome is one the model allows (%d calls)"
               + maps_note + f"\\n\", {len(r.checks)});\n  return 0;\n}}\n")
    return "".join(out)


def readme(r: Repro, c_name: str, cmd: str) -> str:
    from memspec.specs.catalogue import get as clause_of
    prog = r.program
    f = r.failure
    lines = [f"# Reproducer: {prog.meta('clause') or (f.clause if f else 'a conforming run')} on {r.target}", ""]
    first = next((c for c in r.checks if c.diverges), None)
    lines += [f"Made by `{cmd}` from this memspec program:", "", "```"]
    lines += [format_call(c) for c in prog.calls] + ["```", ""]
    lines += [f"Seen on: target `{r.target}`, implementation version `{r.version or 'unknown'}`"
              + (f" (kernel {r.facts.get('kernel')})" if r.facts.get("kernel") and r.layer == "os" else "") + ".", ""]
    if first is not None:
        lines += ["## What it shows", "",
                  f"Call {first.index + 1}, `{first.text}`, does not do what the specification allows.", "",
                  f"- clause: `{first.clause}`: {first.statement}",
                  f"- spec: {first.citation}",
                  f"- expected: {first.expected}",
                  f"- observed: {first.observed.describe() if first.observed else '?'}", ""]
    elif f is not None and any(m.diverges for m in r.maps):
        m = next(m for m in r.maps if m.diverges)
        lines += ["## What it shows", "",
                  f"After call {m.index + 1} every call's outcome is one the model allows, but the memory map does not "
                  f"show what the calls made ({f.note or f.observed}).", "",
                  f"- clause: `{f.clause}`: {clause_of(f.clause).statement}",
                  f"- spec: {clause_of(f.clause).citation}",
                  f"- compared: `linux.proc-maps.matches`: {clause_of('linux.proc-maps.matches').statement} (over "
                  "the model's mappings and the target's quiet ranges, adjacent rows with equal permissions merged)",
                  f"- expected: {f.expected}",
                  f"- observed: {f.observed}", ""]
    elif f is not None:
        lines += ["## What it shows", "",
                  f"memspec's verdict is `{f.verdict.value}` under `{f.clause}` ({f.expected}; observed {f.observed}), "
                  f"seen {'at a checkpoint' if f.at == 'checkpoint' else 'outside a call'}: the C file replays the "
                  "calls and checks their outcomes and the memory maps at checkpoints, but not this.", ""]
    else:
        lines += ["## What it shows", "", "Every call's outcome is one the model allows (memspec's verdict: pass).", ""]
    if r.stopped:
        lines += [f"memspec's target stopped after call {len(r.checks)}: {r.stopped}. The C file checks the "
                  f"{len(r.checks)} calls memspec judged and stops there too.", ""]
    run = (f"LD_PRELOAD={r.facts.get('preload')} ./repro" if r.facts.get("preload")
           else OS_TARGETS.get(r.target, "./repro"))
    # under qemu-x86_64 the file is linked statically, as memspec's agent is: QEMU then places the
    # guest's mappings beside its own memory only, and run natively it meets no shared library
    static = "-static " if r.target in ("qemu-user", "uml") else ""
    lines += ["## Build and run", "", "```", f"cc -O2 {static}-o repro {c_name}", run, "```", "",
              "It needs no memspec and no Python. It prints `DIVERGES at call N` with the clause, the spec text, "
              "expected and observed and exits 1"
              + (" (`DIVERGES at the checkpoint after call N` where a process's /proc/PID/maps differs from the "
                 "model's maps, compared as memspec does)" if r.maps else "")
              + ", prints `HANG at call N` and exits 4 when a call gets no answer "
              "within its time limit (every process of it killed), `CRASH at call N` and exits 3 when the process "
              "making a call memspec's target died in dies, or prints `CONFORMS` and exits 0"
              + (" (run it as root for the calls that need it, as memspec's linux target does)" if r.layer == "os" else "")
              + "."]
    if r.target == "uml":
        lines += ["", "Under User-mode Linux the file is the machine's first process: its output is the console "
                  "(linux.uml's standard output, after a few lines of the kernel's), and it powers the machine off "
                  "at its end, so the verdict is its last line, not linux.uml's exit status. Its files are made "
                  "under /tmp of the host's file system (the guest's root); it mounts the guest's /proc over the "
                  "host's to read its own maps."]
    lines += [""]
    return "\n".join(lines)


def repro(path: str, target_spec: str | None, out: str | None, timeout: float = 10.0) -> tuple[str, Any]:
    """Write the reproducer of ``path`` on ``target_spec`` into ``out``; returns its folder and analysis.
    hw and virt programs (qemu-system, bochs[:MODEL]) get the test kernel with the program built in
    (``repro_hw``); hw programs on kvm a /dev/kvm C file replaying the kvm target's guest code (``repro_kvm``)."""
    from memspec.targets.registry import make_target
    prog = load(path)
    spec = target_spec or prog.meta("target")
    if not spec:
        raise UsageError(f"{path} names no target (no '# target:' line): pass --target T")
    layer = prog.layer
    if layer == "hw" and spec == "kvm":
        from .repro_kvm import repro_kvm
        return repro_kvm(path, out, timeout)
    if layer in ("hw", "virt"):
        from .repro_hw import repro_hw
        return repro_hw(path, spec, out, max(timeout, 20.0))
    names = {c.name for c in prog.calls}
    if layer == "os":
        if spec not in OS_TARGETS:
            raise UsageError(f"repro writes C for the os layer on the linux target (or qemu-user, run under "
                             f"qemu-x86_64), not {spec!r}")
        outside = sorted(names - set(OS_CALLS))
    elif layer == "phys":
        if not (spec == "libc" or spec.startswith("malloc:")):
            raise UsageError(f"repro writes C for the phys layer's malloc family on libc or malloc:NAME, not {spec!r}")
        outside = sorted(names - set(HEAP_CALLS))
    else:
        raise UsageError(f"repro writes C for the os and phys (malloc) layers; {path} is a {layer} program")
    try:
        target = make_target(spec, timeout=timeout)
    except TargetError as e:
        raise UsageError(str(e)) from None
    try:
        lacks = sorted(names - set(target.calls)) if target.calls is not None else []
        if lacks:
            raise UsageError(f"not applicable: {spec} does not implement {', '.join(lacks)}")
        if outside:
            raise UsageError(f"repro has no C form for {', '.join(outside)} yet")
        facts = target.facts()
        r = analyse(prog, target, facts)
    finally:
        target.close()
    if r.verdict.startswith("unsupported"):
        raise UsageError(f"not applicable: {spec} refused the program ({r.verdict})")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    folder = out or os.path.join("memspec-repro", base)
    os.makedirs(folder, exist_ok=True)
    c_name = "repro.c"
    with open(os.path.join(folder, c_name), "w", encoding="utf-8") as fh:
        fh.write(c_source(r))
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(readme(r, c_name, f"memspec repro {os.path.basename(path)} --target {spec}"))
    return folder, r


__all__ = ["repro", "analyse", "c_source", "readme", "Repro", "CallCheck"]
