"""The virt layer's Hypothesis state machine, parameterised by target.

One run drives both halves of the layer through one session:

* **EPT/NPT** -- a guest (EPT, or NPT if the target lacks ``set_epte``) whose nested
  stage maps guest-physical pages 0x10..0x17 (its page tables) and 0x100..0x10F
  (data) to host frames; rules change a nested leaf's frame and rights with or
  without INVEPT, change guest leaves, access as the guest (read/write/fetch, CPL 0
  and 3), boot a second guest with a disjoint nested stage and switch between the
  two, read guest and nested entries back;
* **KPTI** -- a kernel booted with KPTI and PCID on or off; rules enter and leave
  syscalls, switch processes, map user pages, access from user and kernel mode,
  read the flush counters.

Every step is judged by the model at once (clause named) and then adopted; after
every step the model's laws run, each its own invariant: ``guests_isolated``, ``guest_confined``,
``two_d_equals_composition``, ``no_kernel_page_in_user_set``,
``no_stale_translation_across_processes`` and ``kernel_and_user_pcids_distinct``.  Leaf rights
come from the virt generator's vocabularies (``specs/gen_virt.py``, with the Hypothesis
chooser); the rules of a half the target does not implement are removed.  A failure prints the clause, the program
so far (Hypothesis shrinks it), expected vs observed, and a replay hint.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from hypothesis.control import note

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
TWO_D_RULES = ("boot_guest", "guest_access", "change_nested_leaf", "change_guest_leaf", "read_back", "invept_all",
               "second_guest_or_switch")


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
            self.booted: list[int] = []
            self.cur = 0
            self.kpti_on = False
            self.in_kernel = False

        def _do(self, name: str, *args: Int | Flags, result: bool = False) -> None:
            call = Call(name, tuple(args), f"v{len(self.calls)}" if result else None)
            values = tuple(_value(a) for a in args)
            self.stepper.step(call, values)

        # -- set-up: guest 0 ----------------------------------------------------------------

        def _nested(self, g: int) -> None:
            root = EPT_ROOTS[g]
            setter, upper = ("set_epte", EPT_UPPER) if self.ept else ("set_npte", NPT_UPPER)
            self._do(setter, _hex(root), Int(0), _hex(root + 0x1000), Flags(upper))
            self._do(setter, _hex(root + 0x1000), Int(0), _hex(root + 0x2000), Flags(upper))
            self._do(setter, _hex(root + 0x2000), Int(0), _hex(root + 0x3000), Flags(upper))
            leaf = upper + (("EPT_MT_WB",) if self.ept else ())
            for p in GPAGES:
                self._do(setter, _hex(root + 0x3000), Int(p & 0x1FF), _hex(HOST[g] + 0x1000 * p), Flags(leaf))

        def _guest(self, g: int) -> None:
            kind = "VM_EPT" if self.ept else "VM_NPT"
            eptp = Flags(("EPTP_WB", "EPTP_WL4")) if self.ept else Int(0)
            self._do("vm_boot", Int(g), Flags((kind,)), _hex(EPT_ROOTS[g]), eptp, _hex(0x10000),
                     Flags(("CR4_PAE",)), Flags(("EFER_LME", "EFER_LMA", "EFER_NXE")))
            for t, nxt in ((0x10000, 0x11000), (0x11000, 0x12000), (0x12000, 0x13000)):
                self._do("set_gpte", _hex(t), Int(0), _hex(nxt), Flags(NPT_UPPER))
            for i in range(8):
                self._do("set_gpte", _hex(0x13000), Int(i), _hex(0x100000 + 0x1000 * i), Flags(NPT_UPPER))
            self.booted.append(g)
            self.cur = g

        @initialize()
        def boot_guest(self) -> None:
            self._nested(0)
            self._guest(0)

        # -- two-dimensional rules ----------------------------------------------------------

        @needs("vm_access")
        @precondition(lambda self: bool(self.booted))
        @rule(page=st.integers(0, 7), op=st.sampled_from(["ACC_READ", "ACC_READ", "ACC_WRITE", "ACC_EXEC"]),
              cpl=st.sampled_from([0, 3]), offset=st.integers(0, 3))
        def guest_access(self, page: int, op: str, cpl: int, offset: int) -> None:
            self._do("vm_access", _hex(0x1000 * page + 8 * offset), Flags((op,)), Int(cpl), result=op != "ACC_EXEC")

        @needs("invept")
        @precondition(lambda self: bool(self.booted))
        @rule(p=st.sampled_from(GPAGES), frame=st.integers(0, 0x3F), data=st.data(), invalidate=st.booleans())
        def change_nested_leaf(self, p: int, frame: int, data: Any, invalidate: bool) -> None:
            g = self.cur
            root = EPT_ROOTS[g]
            leaf = gen_virt.nested_leaf(DrawChooser(data), self.ept, False)
            self._do("set_epte" if self.ept else "set_npte", _hex(root + 0x3000), Int(p & 0x1FF),
                     _hex(HOST[g] + 0x100000 + 0x1000 * frame), _flags(leaf))
            if invalidate:
                self._do("invept", Flags(("INVEPT_SINGLE",)), _hex(root))

        @needs("set_gpte")
        @precondition(lambda self: bool(self.booted))
        @rule(i=st.integers(0, 7), k=st.integers(0, 15), data=st.data())
        def change_guest_leaf(self, i: int, k: int, data: Any) -> None:
            self._do("set_gpte", _hex(0x13000), Int(i), _hex(0x100000 + 0x1000 * k),
                     Flags(gen_virt.guest_leaf(DrawChooser(data))))

        @needs("read_epte", "read_gpte")
        @precondition(lambda self: bool(self.booted))
        @rule(i=st.integers(0, 7), nested=st.booleans())
        def read_back(self, i: int, nested: bool) -> None:
            if nested:
                self._do("read_epte", _hex(EPT_ROOTS[self.cur] + 0x3000), Int(0x100 + i), result=True)
            else:
                self._do("read_gpte", _hex(0x13000), Int(i), result=True)

        @needs("invept")
        @precondition(lambda self: bool(self.booted))
        @rule()
        def invept_all(self) -> None:
            self._do("invept", Flags(("INVEPT_ALL",)), Int(0))

        @needs("vm_enter")
        @precondition(lambda self: bool(self.booted))
        @rule()
        def second_guest_or_switch(self) -> None:
            if 1 not in self.booted:
                self._nested(1)
                self._guest(1)
            else:
                self.cur = 1 - self.cur
                self._do("vm_enter", Int(self.cur))

        # -- KPTI rules ---------------------------------------------------------------------------

        @needs("kpti_boot", "kpti_map")
        @precondition(lambda self: not self.kpti_on)
        @rule(mode=st.sampled_from([("KPTI_ON", "KPTI_PCID"), ("KPTI_ON",), ("KPTI_PCID",), ("KPTI_OFF",)]))
        def kpti_boot(self, mode: tuple[str, ...]) -> None:
            self._do("kpti_boot", Flags(mode))
            for i, a in enumerate(KERNEL_PAGES):
                self._do("kpti_map", _hex(a), _hex(0x1000000 + 0x1000 * i), Flags(("KMAP_KERNEL",)))
            self._do("kpti_map", _hex(TRAMPOLINE), _hex(0x2000000), Flags(("KMAP_TRAMPOLINE",)))
            self.kpti_on, self.in_kernel = True, False

        @needs("kernel_access", "user_access")
        @precondition(lambda self: self.kpti_on)
        @rule(addr=st.sampled_from(USER_PAGES + KERNEL_PAGES + (TRAMPOLINE,)))
        def access_now(self, addr: int) -> None:
            self._do("kernel_access" if self.in_kernel else "user_access", _hex(addr), result=True)

        @needs("syscall_enter", "syscall_exit")
        @precondition(lambda self: self.kpti_on)
        @rule()
        def syscall(self) -> None:
            self._do("syscall_exit" if self.in_kernel else "syscall_enter")
            self.in_kernel = not self.in_kernel

        @needs("context_switch")
        @precondition(lambda self: self.kpti_on and self.in_kernel)
        @rule(pid=st.integers(1, 8))
        def switch(self, pid: int) -> None:
            self._do("context_switch", Int(pid))

        @needs("kpti_map")
        @precondition(lambda self: self.kpti_on)
        @rule(addr=st.sampled_from(USER_PAGES), frame=st.integers(0, 15))
        def map_user(self, addr: int, frame: int) -> None:
            self._do("kpti_map", _hex(addr), _hex(0x3000000 + 0x1000 * frame), Flags(("KMAP_USER",)))

        @needs("kpti_stat")
        @precondition(lambda self: self.kpti_on)
        @rule(counter=st.sampled_from(["KSTAT_FLUSHES", "KSTAT_CR3_WRITES", "KSTAT_WALKS", "KSTAT_SYSCALLS"]))
        def counters(self, counter: str) -> None:
            self._do("kpti_stat", Flags((counter,)), result=True)

        def teardown(self) -> None:
            self.session.close()

    # without vm_boot no guest runs: every two-dimensional rule goes (each also goes without its own calls)
    two_d_ok = calls is None or "vm_boot" in calls and ("set_epte" in calls or "set_npte" in calls)
    remove_unrunnable(VirtMachine, calls, also=() if two_d_ok else TWO_D_RULES)
    law_invariants(VirtMachine, LAWS)
    VirtMachine.__name__ = f"VirtMachine_{getattr(target, 'name', 'target')}"
    VirtMachine.unsupported_steps = unsupported_steps     # type: ignore[attr-defined]
    return VirtMachine
