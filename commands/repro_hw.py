"""``memspec repro FILE --target qemu-system|bochs[:MODEL]``: the test kernel with the program built in.

The program runs once on the target; every command line sent and answer read is kept, and the run
is replayed through the model call by call (as the judge does) to find what each call may answer.
Each allowed outcome becomes an answer pattern (``targets.testkernel_repro.Pattern``): a line that
decodes to it (the observed answer when it does, else one written for it), and for each hex field
the mask of the bits whose change would make the decoded outcome another one (so an exception's
RIP, or the exit information a rule does not name, is not compared).  A rule that is a predicate
gets the patterns of the observed answer (when allowed) and of the model's own outcome.  The
kernel is then built with the table (``-DMEMSPEC_BUILTIN``) and written beside a README with the
``qemu-system-x86_64`` and ``bochs`` command lines.

Call arguments that name an earlier result are fixed to the values of memspec's run: the kernel
stops at the first divergence, before any of them could differ.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from memspec.errors import TargetError, UsageError
from memspec.program import Program, eval_args, format_call, load
from memspec.records import Outcome, RunStatus
from memspec.targets.qemu_system import GuestDied
from memspec.targets.testkernel_repro import (
    BOCHS_COMMAND, EXIT_STATUS, BuiltinCall, Pattern, bochs_files, build_builtin, matches, parse_reply,
    qemu_command)
from memspec.targets.testkernel_wire import VECTORS, HarnessRefused, decode, encode

from .repro_replay import model_replay

U64 = (1 << 64) - 1
VECTOR_OF = {v: k for k, v in VECTORS.items()}


@dataclass
class HwCheck:
    index: int                    # the program's call (0-based)
    text: str
    line: str | None              # the command line (None: decided by the host, nothing sent)
    reply: str | None
    clause: str
    statement: str
    citation: str
    expected: str
    observed: Outcome
    diverges: bool
    patterns: list[Pattern] | None


@dataclass
class HwRepro:
    program: Program
    target: str
    layer: str
    version: str
    reset: str
    checks: list[HwCheck]
    verdict: str
    failure: Any
    facts: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""
    disagreements: list[str] = field(default_factory=list)   # patterns that would judge otherwise


def _vector(sig: str) -> int | None:
    if sig in VECTOR_OF:
        return VECTOR_OF[sig]
    m = re.fullmatch(r"#V(\d+)", sig)
    return int(m.group(1)) if m else None


def _candidates(o: Outcome) -> list[str]:
    """Answer lines that may decode to ``o`` (the serial protocol's shapes, testkernel/README.md)."""
    d = dict(o.detail)
    h = lambda v: format(int(v) & U64, "x")      # noqa: E731
    if o.errno == "EINVAL" and o.signal is None:
        return ["e refused"]
    if o.signal is None and o.errno is None:
        if o.value is None:
            return ["k", "n 81 0 0 0", "m 12 0 0 0 0 0 0", "n 43 0 0 0", "n 75 0 0 0", "m 0 0 0 0 80000603 0 0"]
        return [f"v {h(o.value)}", f"n 81 0 0 {h(o.value)}", f"m 12 0 0 0 0 0 {h(o.value)}"]
    sig = o.signal or ""
    if sig == "#PF":
        err, cr2 = h(d.get("errcode", 0)), h(d.get("cr2", 0))
        return [f"x e {err} {cr2} 0", f"n 4e {err} {cr2} 0", f"m 0 {cr2} 0 0 80000b0e {err} 0"]
    if sig == "#NPF":
        return [f"n 400 {h(d.get('exitinfo1', 0))} {h(d.get('exitinfo2', 0))} 0"]
    if sig == "EPT_VIOLATION":
        return [f"m 30 {h(d.get('exit_qualification', 0))} {h(d.get('gpa', 0))} {h(d.get('gla', 0))} 0 0 0"]
    if sig == "EPT_MISCONFIG":
        return [f"m 31 0 {h(d.get('gpa', 0))} 0 0 0 0"]
    vec = _vector(sig)
    if vec is not None:
        # the segmentation calls' exceptions carry their error code (#GP(selector), #SS(0), ...)
        err = h(d.get("errcode", 0))
        return [f"x {vec:x} {err} 0 0", f"n {0x40 + vec:x} {err} 0 0", f"m 0 0 0 0 {0x80000300 | vec:x} {err} 0"]
    return []


def _decodes(name: str, a: tuple[int, ...], line: str) -> Outcome | None:
    try:
        return decode(name, a, line)
    except (HarnessRefused, TargetError, ValueError, IndexError):
        return None


def _pattern(name: str, a: tuple[int, ...], line: str, ok: Callable[[Outcome], bool]) -> Pattern | None:
    """The pattern of ``line`` (which must decode to an outcome ``ok`` accepts): per field, the bits
    whose change makes the decoded outcome one ``ok`` refuses."""
    o = _decodes(name, a, line)
    if o is None or not ok(o):
        return None
    got = parse_reply(line)
    if got is None:                     # e why / r why
        return Pattern(line.split()[0])
    kind, fields = got
    masks = []
    for j in range(len(fields)):
        m = 0
        for b in range(64):
            flipped = list(fields)
            flipped[j] ^= 1 << b
            o2 = _decodes(name, a, " ".join([kind] + [format(x, "x") for x in flipped]))
            if o2 is None or not ok(o2):
                m |= 1 << b
        masks.append(m)
    return Pattern(kind, tuple(fields), tuple(masks))


def _patterns(name: str, a: tuple[int, ...], exp: Any, reply: str) -> list[Pattern] | None:
    from memspec.model.expect import _same
    if exp.unknown:
        return None
    kind = reply.split()[0] if reply.split() else ""
    out: list[Pattern] = []

    def add(targets: list[Outcome], ok_of: Callable[[Outcome], Callable[[Outcome], bool]]) -> None:
        for want in targets:
            ok = ok_of(want)
            lines = ([reply] if reply else []) + sorted(_candidates(want), key=lambda c: c.split()[0] != kind)
            for ln in lines:
                p = _pattern(name, a, ln, ok)
                if p is not None:
                    if p not in out:
                        out.append(p)
                    break

    if exp.predicate is None:
        allowed = list(exp.allowed if exp.allowed is not None else (exp.default,))
        add(allowed, lambda want: (lambda o: _same(o, want)))
    else:
        add([exp.default], lambda want: (lambda o: exp.judge(o) is None))
    return out


def analyse(program: Program, target: Any, facts: dict[str, Any]) -> HwRepro:
    from memspec.specs.judge import judge
    sent: list[tuple[str, str]] = []
    exchange = target.guest_exchange

    def recording(lines: list[str]) -> list[str]:
        try:
            replies = exchange(lines)
        except GuestDied as e:
            sent.extend(zip(lines, e.replies))
            raise
        sent.extend(zip(lines, replies))
        return replies

    target.guest_exchange = recording
    try:
        run = target.run(program, observe="end")
    finally:
        del target.guest_exchange
    j = judge(program, run, target.name, facts)
    version = str(facts.get("impl_version", ""))
    if run.status is RunStatus.REFUSED and not run.outcomes:
        raise UsageError(f"not applicable: {target.name} refused the program ({run.message})")
    reset = sent[0][0] if sent else target.reset_line()
    replies = iter(sent[1:])
    tenv: dict[str, int] = {}
    checks: list[HwCheck] = []
    disagreements: list[str] = []
    for st in model_replay(program, run, facts):
        i, call, o, exp, cid, c = st.index, st.call, st.outcome, st.expect, st.clause_id, st.clause
        a = tuple(int(x) for x in eval_args(call, tenv))
        enc = encode(call.name, a, target.vm_kinds)
        line = reply = None
        pats: list[Pattern] | None = None
        if isinstance(enc, str):
            line, reply = next(replies, (enc, ""))
            if line != enc:
                raise TargetError(f"repro: the run sent {line!r} where {enc!r} was expected")
            # no answer: the guest died on memspec's run (an accepted write that must fault); the
            # patterns are still those of the allowed outcomes
            pats = _patterns(call.name, a, exp, reply)
            if reply and pats is not None:
                hit = any(matches(reply, p) for p in pats)
                if hit != (not st.diverges):
                    disagreements.append(f"call {i + 1}: answer {reply!r} "
                                         f"{'matches' if hit else 'matches no pattern'} but memspec's verdict is "
                                         f"{'a divergence' if st.diverges else 'allowed'}")
        checks.append(HwCheck(i, format_call(call), line, reply, cid, c.statement, c.citation, exp.describe, o,
                              st.diverges, pats))
        if call.result and o.value is not None:
            tenv[call.result] = o.value
    f = j.failure
    verdict = "pass" if f is None else ("fail" if f.verdict.value == "fail" else f.verdict.value)
    stopped = run.message if run.status is not RunStatus.OK else ""
    return HwRepro(program, target.name, program.layer, version, reset, checks, verdict, f, facts, stopped,
                   disagreements)


def builtin_calls(r: HwRepro) -> list[BuiltinCall]:
    out = [BuiltinCall(r.reset, "the reset (memory to the pattern, boot, CR3 = the initial root)", "harness",
                       "memspec test kernel, R command", "k", [Pattern("k")])]
    for c in r.checks:
        if c.line is None:
            continue
        before = ""
        if dict(c.observed.detail).get("guest", "").startswith("died"):
            # the guest answers nothing more: what it printed last says where it died
            before = (f"call {c.index + 1}: {c.text}: expected {c.expected} [{c.clause}]; on memspec's run the guest "
                      "died here (the write was accepted): no VERDICT line after this one means the same")
        out.append(BuiltinCall(c.line, f"call {c.index + 1}: {c.text}", c.clause, c.citation, c.expected,
                               c.patterns, before))
    return out


def readme(r: HwRepro, cmd: str, qemu: list[str], bochs_model: str) -> str:
    prog = r.program
    first = next((c for c in r.checks if c.diverges), None)
    lines = [f"# Reproducer: {first.clause if first else 'a conforming run'} on {r.target}", "",
             f"Made by `{cmd}` from this memspec program ({r.layer} layer):", "", "```"]
    lines += [format_call(c) for c in prog.calls] + ["```", ""]
    lines += [f"Seen on: target `{r.target}`, version `{r.version or 'unknown'}`"
              + (f", CPU `{r.facts.get('qemu_cpu') or r.facts.get('bochs_cpu')}`" if r.facts else "") + ".", ""]
    lines += ["## What it shows", ""]
    if first is not None:
        lines += [f"Call {first.index + 1}, `{first.text}`, does not do what the specification allows.", "",
                  f"- clause: `{first.clause}`: {first.statement}",
                  f"- spec: {first.citation}",
                  f"- expected: {first.expected}",
                  f"- observed: {first.observed.describe()} (the kernel's answer: `{first.reply}`)", ""]
    elif r.failure is not None:
        lines += [f"memspec's verdict is `{r.failure.verdict.value}` under `{r.failure.clause}`, not at a call's "
                  "answer: the image checks the calls' answers only.", ""]
    else:
        lines += ["Every call's outcome is one the model allows (memspec's verdict: pass).", ""]
    if r.stopped:
        lines += [f"memspec's run stopped after call {len(r.checks)}: {r.stopped}. The image runs those calls.", ""]
    q = "timeout 120 " + " ".join(shlex.quote(x) for x in qemu)
    lines += ["## Run it", "",
              "`kernel.bin` is memspec's test kernel (a multiboot image) with the program's calls built in as "
              "command lines of its serial protocol (`builtin.h`), each with the answers the model allows (a kind "
              "letter and hex fields, each compared under a mask). It needs no memspec and no Python. It prints, "
              "on COM1, the first answer that is none of them (the call, the command, the clause, the spec, "
              "expected and observed) and a last line `VERDICT: CONFORMS` or `VERDICT: DIVERGES (clause)`.", "",
              "QEMU (headless, COM1 on stdout; the kernel ends QEMU through isa-debug-exit: exit status "
              f"{EXIT_STATUS['CONFORMS']} for CONFORMS, {EXIT_STATUS['DIVERGES']} for DIVERGES, "
              f"{EXIT_STATUS['CRASH']} if the kernel itself took an exception; `timeout` only guards a guest "
              "that hangs, as one may after a control-register write that must fault was accepted):", "", "```", q, "```", "",
              f"Bochs (CPU model `{bochs_model}`; the kernel ends Bochs through its shutdown port, `timeout` "
              "is only a guard; COM1 goes to `serial.txt`):", "", "```", BOCHS_COMMAND, "```", "",
              f"The allowed answers are the model's for the CPU `{r.target}` reported (its CPUID features, "
              "MAXPHYADDR): the verdict is the one memspec gives on that target; on the other emulator, whose CPU "
              "may differ, it says whether that CPU agrees with the first one's model.", "",
              "Answers (testkernel/README.md): `k` done, `v X` a value, `e …` refused as the program's mistake "
              "(EINVAL), `x VECTOR ERRCODE CR2 RIP` an exception, `n CODE INFO1 INFO2 RAX` an SVM #VMEXIT, "
              "`m REASON QUAL GPA GLA INFO ERR RAX` a VMX exit.", ""]
    if any(dict(c.observed.detail).get("guest", "").startswith("died") for c in r.checks):
        lines += ["On memspec's run a control-register or EFER write that must raise #GP was accepted and the guest "
                  "died (QEMU runs with `-no-reboot`: a triple fault ends it with exit status 0). The kernel prints "
                  "that call before running it; output that ends there, with no `VERDICT` line, is the divergence.", ""]
    return "\n".join(lines)


def repro_hw(path: str, spec: str, out: str | None, timeout: float = 20.0,
             target: Any = None) -> tuple[str, HwRepro]:
    """Write the reproducer of the hw or virt program ``path`` on ``spec`` into ``out``; ``target``: a
    running target of that spec to use (left running), else one is started and closed."""
    from memspec.targets.registry import make_target
    prog = load(path)
    if prog.layer not in ("hw", "virt"):
        raise UsageError(f"repro writes a test kernel image for hw and virt programs; {path} is a {prog.layer} program")
    if target is None and not (spec == "qemu-system" or spec == "bochs" or spec.startswith("bochs:")):
        raise UsageError(f"repro writes the test kernel image for qemu-system and bochs[:MODEL], not {spec!r}"
                         + ("; on kvm it writes a /dev/kvm C file for hw programs" if spec == "kvm" else ""))
    own = target is None
    if own:
        try:
            target = make_target(spec, timeout=timeout)
        except TargetError as e:
            raise UsageError(str(e)) from None
    try:
        names = {c.name for c in prog.calls}
        lacks = sorted(names - set(target.calls)) if target.calls is not None else []
        if lacks:
            raise UsageError(f"not applicable: {spec} does not implement {', '.join(lacks)}")
        facts = target.facts()
        r = analyse(prog, target, facts)
    finally:
        if own:
            target.close()
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    folder = out or os.path.join("memspec-repro", base)
    os.makedirs(folder, exist_ok=True)
    image = build_builtin(base, builtin_calls(r), folder)
    cpu = facts.get("qemu_cpu") or "max,phys-bits=48"
    model = facts.get("bochs_cpu") or "tigerlake"
    qemu = qemu_command("kernel.bin", cpu)
    bochs_files(image, folder, model)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(readme(r, f"memspec repro {os.path.basename(path)} --target {spec}", qemu, model))
    return folder, r


__all__ = ["repro_hw", "analyse", "builtin_calls", "readme", "HwRepro", "HwCheck"]
