"""Deliberately broken virt-layer implementations for the tests: the reference model with one rule
wrong, each a subclass that overrides the one step it breaks (the model itself has no bug switches).
They run as a target (answering with the broken model's own choices) and are also checked by their
own invariants.

Bugs, by name (``broken_model(bug)``):

* ``ept-ignores-x`` -- EPT permits fetches whatever the X bits say;
* ``skip-table-translation`` -- the 2-D walk reads the guest's paging entries at their gpa as if it
  were an hpa (the guest CR3 and table pointers are not translated through EPT);
* ``skip-final-translation`` -- the final gpa is used as the hpa;
* ``guest-d-on-read`` -- a guest read sets D in the guest PTE that maps the page (shown at checkpoints);
* ``ept-a-missing`` -- with EPTP[6] = 1 the walks set no EPT accessed or dirty flag (shown at checkpoints);
* ``qual-paging-write-only`` -- under EPT A/D a guest paging-structure access that violates EPT sets
  exit-qualification bit 1 only (Table 28-7 note 1 wants bits 0 and 1);
* ``untagged-cache`` -- cached guest-physical mappings are found by gpa alone, not by EPT root;
* ``user-set-maps-kernel`` -- the KPTI user page-table set keeps kernel-only pages;
* ``pcid-reuse-no-flush`` -- a context switch hands the next process the running one's PCIDs unflushed;
* ``pcid-flush-every-switch`` -- syscall entry and exit flush although PCID is on.
"""

from __future__ import annotations

from typing import Any

from memspec.model.ept import Qual
from memspec.model.kpti import SYSCALLS, Kpti
from memspec.model.pte import EXEC, Pte
from memspec.model.rules import replaced
from memspec.model.virt import VirtModel
from memspec.model.walk2d import VM_EPT, GpCache, Nested, NestedFault, Vm
from memspec.records import Outcome
from memspec.targets.base import Target
from memspec.targets.model import ModelSession

# -- the 2-D walk -------------------------------------------------------------------------


class EptIgnoresX(VirtModel):
    def nested_rights(self, vm: Vm, res: Any, gpa: int, acc: int) -> Any:
        if vm.kind == VM_EPT and acc == EXEC:
            return None
        return super().nested_rights(vm, res, gpa, acc)


class SkipTableTranslation(VirtModel):
    def walk_2d(self, vm: Vm, gva: int, acc: int, cpl: int, choose: Any = None, use_cache: bool = True,
                ad_first: bool = True, cache: GpCache | None = None, translate_tables: bool = True) -> Any:
        return super().walk_2d(vm, gva, acc, cpl, choose, use_cache, ad_first, cache, translate_tables=False)


class SkipFinalTranslation(VirtModel):
    def final_hpa(self, final: Any, gpa: int) -> int:
        return gpa


class UntaggedCache(VirtModel):
    def nested_options(self, vm: Vm, gpa: int, fresh: Any, cache: GpCache) -> list[tuple[Any, bool]]:
        options = super().nested_options(vm, gpa, fresh, cache)
        # guest-physical mappings looked up by gpa alone, whoever cached them, and preferred
        foreign = [p for _r, b, s, p, _t in cache.entries if b <= gpa < b + s]
        if foreign:
            options.insert(0, (foreign[-1], True))
        return options


class QualPagingWriteOnly(VirtModel):
    def exit_outcome(self, vm: Vm, nf: NestedFault, gva: int) -> tuple[Outcome, str]:
        o, clause = super().exit_outcome(vm, nf, gva)
        if o.signal == "EPT_VIOLATION" and nf.table and vm.ad:
            d = dict(o.detail)
            d["exit_qualification"] &= ~int(Qual.READ)
            o = Outcome(signal=o.signal, detail=tuple(d.items()))
        return o, clause


# -- A/D flags --------------------------------------------------------------------------------


class GuestDOnRead(VirtModel):
    def guest_ad(self, leaf: bool, acc: int) -> int:
        return int(Pte.A | (Pte.D if leaf else 0))


class EptAMissing(VirtModel):
    def nested_ad(self, vm: Vm, n: Nested, acc: int) -> list[tuple[int, int]]:
        if vm.kind == VM_EPT:
            return []
        return super().nested_ad(vm, n, acc)


# -- KPTI ---------------------------------------------------------------------------------------


class UserSetMapsKernel(Kpti):
    def user_set(self, pid: int) -> dict[int, tuple[int, bool]]:
        m = super().user_set(pid)
        m.update({p: (f, False) for p, f in self.kernel.items()})
        return m


class PcidFlushEverySwitch(Kpti):
    def _a_syscall_enter(self, o: Outcome) -> None:
        self.in_kernel = True
        self.counters[SYSCALLS] += 1
        if self.kpti:
            self._cr3(self._kern_pcid(), noflush=False)

    def _a_syscall_exit(self, o: Outcome) -> None:
        self.in_kernel = False
        if self.kpti:
            self.pending_user_flush.discard(self.slot_of.get(self.cur, -1))
            self._cr3(self._user_pcid(), noflush=False)

    RULES = replaced(replaced(Kpti.RULES, "syscall_enter", apply=_a_syscall_enter), "syscall_exit", apply=_a_syscall_exit)


class PcidReuseNoFlush(Kpti):
    def _a_context_switch(self, o: Outcome, pid: int) -> None:
        slot = self.slot_of.get(pid)
        if pid == self.cur or not self.pcid or (slot is not None and self.slots[slot] == pid):
            super()._a_context_switch(o, pid)
            return
        # the next process inherits the running one's PCIDs, and nothing is flushed
        self.user.setdefault(pid, {})
        slot = self.slot_of.pop(self.cur)
        self.slots[slot] = pid
        self.slot_of[pid] = slot
        self.cur = pid
        self._cr3(self._kern_pcid(), noflush=True)

    RULES = replaced(Kpti.RULES, "context_switch", apply=_a_context_switch)


VIRT_BUGS: dict[str, type[VirtModel]] = {
    "ept-ignores-x": EptIgnoresX, "skip-table-translation": SkipTableTranslation,
    "skip-final-translation": SkipFinalTranslation, "untagged-cache": UntaggedCache,
    "qual-paging-write-only": QualPagingWriteOnly, "guest-d-on-read": GuestDOnRead, "ept-a-missing": EptAMissing,
}
KPTI_BUGS: dict[str, type[Kpti]] = {
    "user-set-maps-kernel": UserSetMapsKernel, "pcid-flush-every-switch": PcidFlushEverySwitch,
    "pcid-reuse-no-flush": PcidReuseNoFlush,
}
BUGS = tuple(VIRT_BUGS) + tuple(KPTI_BUGS)


def broken_model(bug: str, facts: dict[str, Any] | None = None) -> VirtModel:
    """The virt model with ``bug`` (one of ``BUGS``)."""
    if bug in KPTI_BUGS:
        m = VirtModel(facts)
        m.kpti = KPTI_BUGS[bug](m.facts)
        return m
    return VIRT_BUGS[bug](facts)


class BrokenSession(ModelSession):
    def __init__(self, bug: str):
        self.system = broken_model(bug)


class BrokenVirtTarget(Target):
    layers = ("virt",)

    def __init__(self, bug: str):
        super().__init__()
        self.bug = bug
        self.name = f"broken-virt:{bug}"

    def session(self, layer: str = "virt") -> BrokenSession:
        return BrokenSession(self.bug)
