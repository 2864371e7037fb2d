"""kvm_diff_vs_raw: judged KVM paging checks per second against bare KVM_RUN round trips.

Both sides come from ``benchmarks/bench_kvm.py`` (the kvm target's own benchmark), on
the CPL 0 path: the bare side rewrites a PTE through guest memory and runs
``invlpg; load; hlt`` with one KVM_RUN and one KVM_GET_REGS; the judged side runs the
same steps as ``set_pte`` + ``invlpg`` + ``access`` program calls on the ``kvm`` target
and judges each with the hw model.  One unit is one PTE change plus one checked load.
Unavailable, with the reason, where /dev/kvm cannot be opened.
"""

from __future__ import annotations

import os

from memspec.commands.bench import Pair, Unavailable, load_module

NAME = "kvm_diff_vs_raw"
GOAL = 0.5
UNIT = "checks/s"
NUMERATOR = "PTE changes + loads judged/s on `kvm` (set_pte + invlpg + access as a program, judged by the hw model)"
DENOMINATOR = "bare KVM: host PTE write, guest INVLPG + load, KVM_RUN + KVM_GET_REGS"


def setup(quick: bool) -> Pair:
    if not os.path.exists("/dev/kvm"):
        raise Unavailable("/dev/kvm does not exist (no KVM on this machine or in this container)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Unavailable("/dev/kvm is not readable and writable by this user (add it to the kvm group)")
    try:
        kvm = load_module("bench_kvm.py")
    except FileNotFoundError:
        raise Unavailable("benchmarks/bench_kvm.py (the kvm target's benchmark) is missing") from None
    from memspec.errors import TargetError
    n = 500 if quick else 5000
    try:
        kvm.raw_rate(50)                  # the first VM pays for KVM's own set-up
    except (OSError, TargetError) as e:
        raise Unavailable(f"a KVM guest could not be run: {e}") from None

    parts: dict[str, list[float]] = {"target_only": [], "judge_only": []}

    def judged() -> float:
        try:
            rate, run_only, judge_only = kvm.judged_rate(n)
        except SystemExit as e:           # bench_kvm reports a failed judgement this way
            raise Unavailable(str(e)) from None
        parts["target_only"].append(run_only)
        parts["judge_only"].append(judge_only)
        return rate

    def bare() -> float:
        try:
            return kvm.raw_rate(n)
        except SystemExit as e:           # the bare loop read wrong values
            raise Unavailable(str(e)) from None

    from memspec.program import parse
    from memspec.specs.judge import judge
    prog = parse(kvm.program_text(n))     # parsed once, outside the profile (judged_rate times it the same way)

    def profile() -> None:
        target = kvm.K.KvmTarget()
        try:
            target.run(parse("mov_cr3(0x200000)\n"))
            judge(prog, target.run(prog), target.name, target.facts(), invariants=True)
        finally:
            target.close()

    return Pair(judged, bare, profile=profile, parts=parts, note=f"{n} PTE changes + checked loads per sample")
