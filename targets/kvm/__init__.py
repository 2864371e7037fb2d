"""Target ``kvm``: Linux KVM's MMU, judged through tiny long-mode guests on /dev/kvm.

What answers is KVM's own code, not the CPU's page walker: guest code at CPL 0
runs in KVM's instruction emulator, whose every memory access goes through the
software walker (``paging64_walk_addr_generic`` and ``permission_fault`` in
arch/x86/kvm/mmu/paging_tmpl.h); guest code at CPL 3 runs natively on KVM's
shadow page tables, which KVM builds from the same walker and keeps in sync by
write-protecting guest page-table pages (``mmu_pte_write``) or by letting them go
unsync until the guest invalidates.  Each access outcome carries the path that
produced it in ``detail["path"]``: ``cpl0-emulator`` or ``cpl3-shadow``.

A program is compiled into guest code and run in as few ``KVM_RUN`` rounds as
possible (one per stretch between ``boot`` calls, which load CR0/CR4/EFER with
``KVM_SET_SREGS``).  Every paging entry is written by a guest store at CPL 0, so
KVM sees it the way it sees a guest kernel's stores; the host never writes into
live tables, because the shadow MMU would not notice (a stale shadow entry then
survives INVLPG and CR3 loads).  Between programs the entries a program wrote
are put back to the pattern the same way, by guest stores, and the next program
starts with a CR3 load.

Guest physical layout (the harness owns the first MiB, see ``memspec.calls_hw``)::

    0x1000 GDT   0x2000 IDT   0x3000 TSS   0x4000 vector stubs   0x5000 handlers
    0x6000 user snippets (U/S=1)   0x7000 user stack (U/S=1)   0x8000 kernel stack
    0x9000 scratch   0xA000.. the harness's PDPT, PD, PT
    0x10000..0x4FFFF compiled program code   0x50000..0x8FFFF one result slot per call

All of RAM is mapped at ``PHYS`` (root slot 511), so the harness reaches any
table by its physical address; the harness's code, IDT and stacks live there too.
An exception handler writes the vector, error code, CR2, RIP and CS of a fault
into the current call's slot (``r14``) and resumes at the next call (``r15``).
Every instruction the guest runs is in ``guest.S`` (GNU as, assembled at first use:
``asm.py``); compile.py copies its templates and writes each call's immediates.
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import HARNESS_LOW, RAM_SIZE
from memspec.errors import SessionFailed
from memspec.program import Call, Int, Program, Ref, const_args, eval_args
from memspec.records import Observation, Outcome, RunResult, RunStatus

from ..base import Session, Steps, Stepwise, Target, run_to_end
from ..versions import kernel_release

from .compile import _Chunk, _Compiled, _Machine, _canonical
from .guest import HARNESS_ENTRY, PATH_CPL0, PATH_CPL3
from .ioctl import KvmUnavailable, _Kvm, _Refused, kvm_status
from .klog import KernelLog
from .probe import FEATURES, FEATURE_NAMES, probe_features

# --- the target ----------------------------------------------------------------------

# calls per KVM_RUN when the run is read as it goes (``stream``): a few hundred, so that a judge in
# another process starts on the first while the rest run (``run`` fills the code area instead)
STREAM_CHUNK = 384


class KvmTarget(Target):
    """Linux KVM's MMU (see the module docstring).  Options: ``fresh`` (a new VM per program)."""

    name = "kvm"
    layers = ("hw",)

    def __init__(self, timeout: float = 10.0, fresh: bool = False, **options: Any) -> None:
        super().__init__(timeout=timeout)
        self.fresh = fresh
        why = kvm_status()
        if why:
            raise KvmUnavailable(f"target 'kvm' is not available: {why}")
        self.kvm = _Kvm.get()
        self.features = probe_features(self.kvm)
        self.log = KernelLog()
        self.machine = _Machine(self.kvm, self.features, timeout, self.log)
        # KVM's kernel-log lines seen while programs ran (the last 1000); the facts hold this
        # very list, so a report written at the end of a run lists them
        self.kernel_log: list[str] = []

    # -- what the model needs, what is missing --

    def facts(self) -> dict[str, Any]:
        f = self.features
        return {
            "maxphyaddr": f["maxphyaddr"], "la57": f["la57"], "page1g": f["page1g"], "pcid": f["pcid"],
            "invpcid": f["invpcid"], "smep": f["smep"], "smap": f["smap"], "pku": f["pku"], "nx": f["nx"],
            "ram": RAM_SIZE, "harness_low": HARNESS_LOW, "harness_entry4": HARNESS_ENTRY,
            "harness_entry5": HARNESS_ENTRY, "strict_tlb": False,
            # the vCPU's CPUID enumerates no CET (MOV to CR4.CET raises #GP: suite/hw/20-cr4-reserved.mst)
            "cet": False,
            # root slots where a CPL 3 access cannot be staged (kvm-pvm keeps them for itself while
            # guest user code runs natively): generators give those slots CPL 0 accesses only
            "cpl3_reserved_slots": list(f.get("cpl3_reserved_slots", ())),
            "kvm_smap_stac": f["smap_stac"], "kvm_legacy32": f["legacy32"], "kvm_pae32": f["pae32"],
            "kvm_kernel_log_readable": self.log.readable, "kvm_kernel_log": self.kernel_log,
            "impl_version": kernel_release(),     # KVM is the running kernel's
        }

    def unsupported(self) -> list[str]:
        out = [FEATURE_NAMES[k] for k in FEATURES if not self.features.get(k)]
        for slot in self.features.get("cpl3_reserved_slots", ()):
            out.append(f"CPL 3 accesses in root slot {slot} (reserved by kvm-pvm; such programs are refused)")
        return out

    # -- running --

    def run(self, program: Program, observe: str = "end") -> RunResult:
        return run_to_end(self._steps(program, observe, []))

    def stream(self, program: Program, observe: str = "end") -> Stepwise:
        """The program run as the judge reads it (``targets.base.Stepwise``): a chunk of guest code
        (one KVM_RUN) at a time."""
        outcomes: list[Outcome] = []
        return Stepwise(self._steps(program, observe, outcomes, STREAM_CHUNK), outcomes)

    def _steps(self, program: Program, observe: str, outcomes: list[Outcome], most: int = 0) -> Steps:
        """The run, a chunk of guest code (one KVM_RUN) at a time; ``most`` (0: as many as fit) calls a
        chunk, so that a reader of the stream gets outcomes while the rest run."""
        m = self.machine
        env: dict[str, int] = {}
        why = self._refuse_statically(program)
        if why:
            return RunResult((), (), RunStatus.REFUSED, why)
        try:
            m.start_program(fresh=self.fresh)
        except (RuntimeError, OSError) as e:
            return RunResult((), (), RunStatus.ERROR, f"kvm harness could not start the program: {e}")
        calls = list(program.calls)
        # the named results some later call reads: only those end a chunk (the bench's programs name every
        # access and read none, and a scan of every call's arguments per call was a tenth of the run)
        read_later = {a.name for c in calls for a in c.args if isinstance(a, Ref)}
        consts = const_args(program)       # evaluated once; the judge reads the same values
        i = 0
        while i < len(calls):
            chunk = _Chunk()
            pending: list[tuple[Call, _Compiled]] = []
            bound_here: set[str] = set()
            while i < len(calls):
                c = calls[i]
                if c.name == "boot":
                    break
                if bound_here and any(isinstance(a, Ref) and a.name in bound_here for a in c.args) or chunk.full() \
                        or most and len(pending) >= most:
                    break
                try:
                    args = consts[i]
                    cc = m.compile(chunk, i, c.name, tuple(map(int, eval_args(c, env))) if args is None else args)
                except _Refused as e:
                    return self._finish(program, outcomes, RunStatus.REFUSED, f"call {i + 1} refused: {e}")
                pending.append((c, cc))
                if c.result in read_later:
                    bound_here.add(c.result)
                i += 1
            if pending:
                status, msg, at = m.run_chunk(chunk)
                if status is not RunStatus.OK:
                    for c, cc in pending:
                        if at >= 0 and cc.index < at:
                            outcomes.append(m.outcome(cc))
                    return self._finish(program, outcomes, status,
                                        f"{msg} (at call {at + 1 if at >= 0 else '?'})")
                for c, cc in pending:
                    o = m.outcome(cc)
                    outcomes.append(o)
                    if c.result and o.value is not None:
                        env[c.result] = o.value
                yield               # a chunk's outcomes are in: a stream's reader may take them
            if i < len(calls) and calls[i].name == "boot":
                c = calls[i]
                o, err = m.boot(*(int(x) for x in eval_args(c, env)))
                if err:
                    return self._finish(program, outcomes, RunStatus.ERROR, f"call {i + 1}: {err}")
                outcomes.append(o)
                i += 1
        obs = ((len(outcomes) - 1, m.observe()),) if outcomes and observe != "none" and not m.broken else ()
        return self._finish(program, outcomes, RunStatus.OK, "", obs)

    def _refuse_statically(self, program: Program) -> str:
        """Refuse a program before running it if a call with literal arguments cannot be judged here."""
        reserved = self.features.get("cpl3_reserved_slots", ())
        if not reserved:
            return ""
        for i, c in enumerate(program.calls):
            if c.name != "access" or any(isinstance(a, Ref) for a in c.args):
                continue
            if len(c.args) > 2 and type(c.args[2]) is Int and c.args[2].value != 3:
                continue            # a literal CPL other than 3 (most accesses): nothing to evaluate
            la, _op, cpl = (int(x) for x in eval_args(c, {})[:3])
            if cpl == 3 and _canonical(la) and (la >> 39) & 0x1FF in reserved:
                return (f"call {i + 1} refused: CPL 3 access at {la:#x}: kvm-pvm reserves root slot "
                        f"{(la >> 39) & 0x1FF} for itself while guest user code runs natively")
        return ""

    def _finish(self, program: Program, outcomes: list[Outcome], status: RunStatus, msg: str,
                observations: tuple[tuple[int, Observation], ...] = ()) -> RunResult:
        """The run's result; KVM's kernel-log lines from this program are kept, and any that no
        outcome already accounts for (an instruction reported as not emulated) is a finding."""
        lines = self.log.new_lines()
        self.kernel_log.extend(lines)
        del self.kernel_log[:-1000]
        # /dev/kmsg does not say which process a line is from: another KVM user running at the
        # same time can add lines.  Routine lines are kept in kernel_log; the rest (WARNING,
        # BUG, shadow-MMU complaints) make the run an error with the lines as its message.
        lines = [ln for ln in lines if not any(r in ln for r in KernelLog.ROUTINE)]
        if lines:
            if status is RunStatus.OK:
                status, msg = RunStatus.ERROR, "KVM logged during this program: " + " | ".join(lines[:4])
            else:
                msg += "; kernel log: " + " | ".join(lines[:4])
        return RunResult(tuple(outcomes), observations, status, msg)

    def session(self, layer: str = "hw") -> "KvmSession":
        return KvmSession(self)

    def close(self) -> None:
        self.machine.discard()


class KvmSession(Session):
    """One call at a time (state machines): each call is its own KVM_RUN on a live VM."""

    def __init__(self, target: KvmTarget):
        self.t = target
        self.m = target.machine
        self.n = 0
        self.refused = ""       # why the VM was given up after a refused call, if it was
        try:
            self.m.start_program(fresh=target.fresh)
        except (RuntimeError, OSError) as e:
            raise SessionFailed(RunStatus.ERROR, f"kvm harness could not start: {e}") from None

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        self.n += 1
        ints = tuple(int(a) for a in args)
        if (self.m.vm is None or self.m.broken) and self.refused:
            # a refusal (not KVM's failure) ended the VM: the rest of the session is not run either
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n} not run: the VM was given up after {self.refused}")
        if self.m.vm is None or self.m.broken:
            raise SessionFailed(RunStatus.ERROR, f"call {self.n}: the VM is gone after an earlier failure")
        if call.name == "boot":
            o, err = self.m.boot(*ints)
            if err:
                raise SessionFailed(RunStatus.ERROR, f"call {self.n}: {err}")
            return o
        chunk = _Chunk()
        try:
            cc = self.m.compile(chunk, 0, call.name, ints)
        except _Refused as e:
            # unsupported, not a failure: the state machine counts it and goes on without the step
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n} refused: {e}") from None
        if cc.kind == "const":
            return self.m.outcome(cc)
        status, msg, _ = self.m.run_chunk(chunk)
        if status is not RunStatus.OK:
            if status is RunStatus.REFUSED:
                self.refused = f"call {self.n} was refused ({msg})"
            raise SessionFailed(status, f"call {self.n}: {msg}")
        return self.m.outcome(cc)

    def observe(self) -> Observation:
        return self.m.observe() if self.m.vm is not None and not self.m.broken else Observation()


__all__ = ["KvmTarget", "KvmSession", "KvmUnavailable", "kvm_status", "probe_features", "FEATURE_NAMES",
           "PATH_CPL0", "PATH_CPL3", "HARNESS_ENTRY"]
