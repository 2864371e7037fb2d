"""The virt layer's Hypothesis state machine, parameterised by target.

One run drives both halves of the layer through one session:

* **EPT/NPT** -- a guest (EPT, or NPT if the target lacks ``set_epte``) whose nested
  stage maps guest-physical pages 0x10..0x17 (its page tables) and 0x100..0x10F
  (data) to host frames; rules change a nested leaf of either guest (frame and rights)
  with or without INVEPT, change guest leaves, access as the guest (read/write/fetch,
  CPL 0 and 3), boot a second guest with a disjoint nested stage and enter either,
  read guest and nested entries back;
* **KPTI** -- a kernel booted with KPTI and PCID on or off; rules enter and leave
  syscalls, switch to new processes and back to earlier ones, map user pages, access
  them (and kernel pages, the trampoline, unmapped user pages) from user and kernel
  mode, read the flush counters.

What the rules refer back to lives in Hypothesis bundles, as in ``specs/machine_phys.py``:
the booted guests (a nested leaf is a guest of the bundle and a guest-physical page of
the fixed layout), the guest not booted yet (consumed by its boot), the processes switched
to, and the user pages mapped (pid, address), which later accesses take again.

Every step is judged by the model at once (clause named) and then adopted; after
every step the model's laws run, each its own invariant: ``guests_isolated``, ``guest_confined``,
``two_d_equals_composition``, ``no_kernel_page_in_user_set``,
``no_stale_translation_across_processes`` and ``kernel_and_user_pcids_distinct``.  Leaf rights
come from the virt generator's vocabularies (``specs/gen_virt.py``, with the Hypothesis
chooser); the rules of a half the target does not implement are removed.  A failure prints the clause, the program
so far (Hypothesis shrinks it), expected vs observed, and a replay hint.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import hypothesis.strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, multiple, precondition, rule

from hypothesis.control import note

from memspec.calls_virt import MAX_PIDS
from memspec.consts import CONSTANTS
from memspec.errors import SessionFailed
from memspec.model.registry import new_model
from memspec.program import Call, Flags, Int, Program

from . import gen_virt
from .choose import DrawChooser
from .failures import ConformanceFailure
from .machine_rules import law_invariants, needs, remove_unrunnable
from .step import Stepper

EPT_ROOTS = (0x200000, 0x240000)
HOST = (0x400000, 0xC00000)           # guest g's gpa page p -> HOST[g] + p * 0x1000 initially
GPAGES = tuple(range(0x10, 0x18)) + tuple(range(0x100, 0x110))
EPT_UPPER = ("EPT_R", "EPT_W", "EPT_X")
NPT_UPPER = ("PTE_P", "PTE_RW", "PTE_US")
USER_PAGES = (0x400000, 0x401000, 0x402000)
KERNEL_PAGES = (0xFFFFFFFF81000000, 0xFFFFFFFF81001000)
TRAMPOLINE = 0xFFFFFE0000000000
# the laws of the model's invariants (model/virt.py, model/kpti.py), each its own invariant, by clause
LAWS = {
    "guests_isolated": lambda cid: cid == "memspec.virt.guests-isolated",
    "guest_confined": lambda cid: cid == "memspec.virt.guest-confined",
    "two_d_equals_composition": lambda cid: cid == "memspec.virt.two-d-equals-composition",
    "no_kernel_page_in_user_set": lambda cid: cid == "linux.pti.user-set-no-kernel",
    "no_stale_translation_across_processes": lambda cid: cid == "linux.pti.pcid-flush-on-reuse",
    "kernel_and_user_pcids_distinct": lambda cid: cid == "linux.pti.pcid-distinct",
}
TWO_D_RULES = ("boot_guest", "guests_to_boot", "guest_access", "change_nested_leaf", "change_guest_leaf", "read_back",
               "invept_all", "boot_second_guest", "enter_guest")

KPTI_RULES = ("kpti_boot", "access_now", "access_user_page", "syscall", "switch", "switch_back", "map_user", "counters")


class UserPage(NamedTuple):
    """A KPTI user page: the process it was mapped in and its address."""
    pid: int
    addr: int


def _hex(v: int) -> Int:
    return Int(v, hex=v >= 4096)


def _flags(names: tuple[str, ...]) -> Flags | Int:
    return Flags(names) if names else Int(0)


def _value(a: Int | Flags) -> int:
    if isinstance(a, Int):
        return a.value
    v = 0
    for n in a.names:
        v |= CONSTANTS[n]
    return v


def machine(target: Any, facts: dict[str, Any] | None = None) -> type[RuleBasedStateMachine]:
    """A state machine class checking ``target`` against the virt-layer model after every step."""
    facts = dict(target.facts()) if facts is None else facts
    calls = getattr(target, "calls", None)
    ept_ok = calls is None or "set_epte" in calls
    unsupported_steps: dict[str, int] = {}      # clause -> steps the target refused to run (as in machine_hw)

    class VirtMachine(RuleBasedStateMachine):
        guests = Bundle("guests")            # booted guests, by number
        unbooted = Bundle("unbooted")        # guests not booted yet
        procs = Bundle("procs")              # KPTI processes switched to, by pid
        user_pages = Bundle("user_pages")    # KPTI user pages mapped

        def __init__(self) -> None:
            super().__init__()
            try:
                self.session = target.session("virt")
            except SessionFailed as e:   # the reset before the first call did not answer
                raise ConformanceFailure("memspec.target.alive", Program(()), 0, "an answer to the reset",
                                         e.message, e.status.value) from None
            self.model = new_model("virt", facts)
            self.stepper = Stepper(self.model, self.session, note, unsupported_steps)
            self.calls = self.stepper.calls
            self.ept = ept_ok
            self.cur = 0
            self.kpti_on = False
            self.in_kernel = False
            self.pid = 1
            self.pids: set[int] = set()       # the processes that have run: the rest are new

        def _do(self, name: str, *args: Int | Flags, result: bool = False) -> None:
            call = Call(name, tuple(args), f"v{len(self.calls)}" if result else None)
            values = tuple(_value(a) for a in args)
            self.stepper.step(call, values)

        # -- booting a guest ----------------------------------------------------------------

        def _nested(self, g: int) -> None:
            root = EPT_ROOTS[g]
            setter, upper = ("set_epte", EPT_UPPER) if self.ept else ("set_npte", NPT_UPPER)
            self._do(setter, _hex(root), Int(0), _hex(root + 0x1000), Flags(upper))
            self._do(setter, _hex(root + 0x1000), Int(0), _hex(root + 0x2000), Flags(upper))
            self._do(setter, _hex(root + 0x2000), Int(0), _hex(root + 0x3000), Flags(upper))
            leaf = upper + (("EPT_MT_WB",) if self.ept else ())
            for p in GPAGES:
                self._do(setter, _hex(root + 0x3000), Int(p & 0x1FF), _hex(HOST[g] + 0x1000 * p), Flags(leaf))

        def _guest(self, g: int) -> int:
            kind = "VM_EPT" if self.ept else "VM_NPT"
            eptp = Flags(("EPTP_WB", "EPTP_WL4")) if self.ept else Int(0)
            self._do("vm_boot", Int(g), Flags((kind,)), _hex(EPT_ROOTS[g]), eptp, _hex(0x10000),
                     Flags(("CR4_PAE",)), Flags(("EFER_LME", "EFER_LMA", "EFER_NXE")))
            for t, nxt in ((0x10000, 0x11000), (0x11000, 0x12000), (0x12000, 0x13000)):
                self._do("set_gpte", _hex(t), Int(0), _hex(nxt), Flags(NPT_UPPER))
            for i in range(8):
                self._do("set_gpte", _hex(0x13000), Int(i), _hex(0x100000 + 0x1000 * i), Flags(NPT_UPPER))
            self.cur = g
            return g

        @initialize(target=guests)
        def boot_guest(self):
            self._nested(0)
            return self._guest(0)

        @initialize(target=unbooted)
        def guests_to_boot(self):
            """The guest a rule may still boot: an entry of the bundle, not a step (it makes no call)."""
            return multiple(1)

        @needs("vm_enter")      # booted only where the run can come back to the first guest
        @rule(target=guests, g=consumes(unbooted))
        def boot_second_guest(self, g: int):
            """A second guest, with a nested stage disjoint from the first's; it runs from its boot on."""
            self._nested(g)
            return self._guest(g)

        @needs("vm_enter")
        @rule(g=guests)
        def enter_guest(self, g: int) -> None:
            self.cur = g
            self._do("vm_enter", Int(g))

        # -- two-dimensional rules ----------------------------------------------------------

        @needs("vm_access")
        @rule(page=st.integers(0, 7), op=st.sampled_from(["ACC_READ", "ACC_READ", "ACC_WRITE", "ACC_EXEC"]),
              cpl=st.sampled_from([0, 3]), offset=st.integers(0, 3))
        def guest_access(self, page: int, op: str, cpl: int, offset: int) -> None:
            """An access in the running guest, to a page of its fixed layout (guest leaves 0..7)."""
            self._do("vm_access", _hex(0x1000 * page + 8 * offset), Flags((op,)), Int(cpl), result=op != "ACC_EXEC")

        @needs("invept")
        @rule(g=guests, p=st.sampled_from(GPAGES), frame=st.integers(0, 0x3F), data=st.data(),
              invalidate=st.booleans())
        def change_nested_leaf(self, g: int, p: int, frame: int, data: Any, invalidate: bool) -> None:
            """A nested leaf of guest ``g`` (running or not) gets a new frame and rights; INVEPT of that
            guest's EPTP or not."""
            root = EPT_ROOTS[g]
            leaf = gen_virt.nested_leaf(DrawChooser(data), self.ept, False)
            self._do("set_epte" if self.ept else "set_npte", _hex(root + 0x3000), Int(p & 0x1FF),
                     _hex(HOST[g] + 0x100000 + 0x1000 * frame), _flags(leaf))
            if invalidate:
                self._do("invept", Flags(("INVEPT_SINGLE",)), _hex(root))

        @needs("set_gpte")
        @rule(i=st.integers(0, 7), k=st.integers(0, 15), data=st.data())
        def change_guest_leaf(self, i: int, k: int, data: Any) -> None:
            """A leaf of the running guest's page table (its fixed layout) gets a new page and rights."""
            self._do("set_gpte", _hex(0x13000), Int(i), _hex(0x100000 + 0x1000 * k),
                     Flags(gen_virt.guest_leaf(DrawChooser(data))))

        @needs("read_epte", "read_gpte")
        @rule(g=guests, i=st.integers(0, 7), nested=st.booleans())
        def read_back(self, g: int, i: int, nested: bool) -> None:
            """A nested leaf of guest ``g``, or a leaf of the running guest's page table, read back."""
            if nested:
                self._do("read_epte", _hex(EPT_ROOTS[g] + 0x3000), Int(0x100 + i), result=True)
            else:
                self._do("read_gpte", _hex(0x13000), Int(i), result=True)

        @needs("invept")
        @rule()
        def invept_all(self) -> None:
            self._do("invept", Flags(("INVEPT_ALL",)), Int(0))

        # -- KPTI rules ---------------------------------------------------------------------------
        # The kernel boots once (a second boot would leave the processes and pages of the bundles
        # behind); the mode rules follow the CPU's state (a flag, not a collection of things).

        @needs("kpti_boot", "kpti_map")
        @precondition(lambda self: not self.kpti_on)
        @rule(target=procs,
              mode=st.sampled_from([("KPTI_ON", "KPTI_PCID"), ("KPTI_ON",), ("KPTI_PCID",), ("KPTI_OFF",)]))
        def kpti_boot(self, mode: tuple[str, ...]):
            """Boot the kernel; it runs process 1 (model/kpti.py ``reset``)."""
            self._do("kpti_boot", Flags(mode))
            for i, a in enumerate(KERNEL_PAGES):
                self._do("kpti_map", _hex(a), _hex(0x1000000 + 0x1000 * i), Flags(("KMAP_KERNEL",)))
            self._do("kpti_map", _hex(TRAMPOLINE), _hex(0x2000000), Flags(("KMAP_TRAMPOLINE",)))
            self.kpti_on, self.in_kernel, self.pid, self.pids = True, False, 1, {1}
            return 1

        @needs("kernel_access", "user_access")
        @precondition(lambda self: self.kpti_on)
        @rule(addr=st.sampled_from(USER_PAGES + KERNEL_PAGES + (TRAMPOLINE,)))
        def access_now(self, addr: int) -> None:
            """An access, in the current mode, to any page of the layout (mapped here or not)."""
            self._do("kernel_access" if self.in_kernel else "user_access", _hex(addr), result=True)

        @needs("kernel_access", "user_access")
        @precondition(lambda self: self.kpti_on)
        @rule(page=user_pages)
        def access_user_page(self, page: UserPage) -> None:
            """An access, in the current mode and process, to a user page mapped earlier (perhaps in
            another process: then it must not be reached)."""
            self._do("kernel_access" if self.in_kernel else "user_access", _hex(page.addr), result=True)

        @needs("syscall_enter", "syscall_exit")
        @precondition(lambda self: self.kpti_on)
        @rule()
        def syscall(self) -> None:
            self._do("syscall_exit" if self.in_kernel else "syscall_enter")
            self.in_kernel = not self.in_kernel

        def _new_pids(self) -> list[int]:
            return [p for p in range(1, MAX_PIDS + 1) if p not in self.pids]

        @needs("context_switch")
        @precondition(lambda self: self.kpti_on and self.in_kernel and self._new_pids())
        @rule(target=procs, data=st.data())
        def switch(self, data: Any):
            """Switch to a process that has not run yet (a pid is one of 1..MAX_PIDS): it gets a PCID, one
            another address space may have used (arch/x86/mm/tlb.c ``choose_new_asid``)."""
            pid = data.draw(st.sampled_from(self._new_pids()), label="pid")
            self._do("context_switch", Int(pid))
            self.pid = pid
            self.pids.add(pid)
            return pid

        @needs("context_switch")
        @precondition(lambda self: self.kpti_on and self.in_kernel)
        @rule(pid=procs)
        def switch_back(self, pid: int) -> None:
            """Switch back to a process that ran before (its PCID may have gone to another meanwhile)."""
            self._do("context_switch", Int(pid))
            self.pid = pid

        @needs("kpti_map")
        @precondition(lambda self: self.kpti_on)
        @rule(target=user_pages, addr=st.sampled_from(USER_PAGES), frame=st.integers(0, 15))
        def map_user(self, addr: int, frame: int):
            """Map (or map again) a user page of the current process."""
            self._do("kpti_map", _hex(addr), _hex(0x3000000 + 0x1000 * frame), Flags(("KMAP_USER",)))
            return UserPage(self.pid, addr)

        @needs("kpti_stat")
        @precondition(lambda self: self.kpti_on)
        @rule(counter=st.sampled_from(["KSTAT_FLUSHES", "KSTAT_CR3_WRITES", "KSTAT_WALKS", "KSTAT_SYSCALLS"]))
        def counters(self, counter: str) -> None:
            self._do("kpti_stat", Flags((counter,)), result=True)

        def teardown(self) -> None:
            self.session.close()

    # without vm_boot no guest runs: every two-dimensional rule goes (each also goes without its own calls)
    two_d_ok = calls is None or "vm_boot" in calls and ("set_epte" in calls or "set_npte" in calls)
    # without kpti_boot no KPTI kernel runs: every KPTI rule goes (each also goes without its own calls)
    kpti_ok = calls is None or "kpti_boot" in calls
    remove_unrunnable(VirtMachine, calls, also=(() if two_d_ok else TWO_D_RULES) + (() if kpti_ok else KPTI_RULES))
    law_invariants(VirtMachine, LAWS)
    VirtMachine.__name__ = f"VirtMachine_{getattr(target, 'name', 'target')}"
    VirtMachine.unsupported_steps = unsupported_steps     # type: ignore[attr-defined]
    return VirtMachine
