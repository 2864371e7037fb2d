"""Broken virt-layer implementations that only issue #26's generator features show: the reference
model with one rule wrong, served in process as ``py:`` targets
(``py:tests/virt/broken_virt_gen.py:target("EptpAnyMemtype")``).  Fakes for testing the generator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memspec.model.ept import EptPath, ept_walk
from memspec.model.kpti import Kpti
from memspec.model.rules import replaced
from memspec.records import Outcome
from memspec.model.virt import VirtModel
from memspec.model.walk2d import VM_EPT, Nested, Vm
from memspec.targets.base import Target
from memspec.targets.model import ModelSession


class EptpAnyMemtype(VirtModel):
    """VM entry takes an EPTP of any memory type (SDM Vol. 3C §27.2.1.1 allows only UC and WB)."""

    def _expect_vm_boot(self, vmid, kind, root, eptp_flags, gcr3, gcr4, gefer):
        if kind == VM_EPT:
            eptp_flags = eptp_flags & ~0x7 | 0x6
        return VirtModel._expect_vm_boot(self, vmid, kind, root, eptp_flags, gcr3, gcr4, gefer)

    RULES = replaced(VirtModel.RULES, "vm_boot", expect=_expect_vm_boot)


class EptAOnlyInLeaf(VirtModel):
    """With EPT A/D on, a walk sets the accessed flag in the leaf only, not in the upper entries it used
    (§29.3.5 sets it in every EPT paging-structure entry used)."""

    def nested_ad(self, vm: Vm, n: Nested, acc: int) -> list[tuple[int, int]]:
        out = super().nested_ad(vm, n, acc)
        if vm.kind == VM_EPT and out:
            return out[-1:]
        return out


class Ept1GOffsetAs2M(VirtModel):
    """A 1 GiB EPT page keeps only the low 21 bits of the guest-physical address as its offset."""

    def nested_walk(self, vm: Vm, gpa: int, acc: int = 0) -> Any:
        res = super().nested_walk(vm, gpa, acc)
        if isinstance(res, EptPath) and res.size == 1 << 30:
            return replace(res, size=1 << 21)
        return res


class EptPml4PsIgnored(VirtModel):
    """Bit 7 (PS) of an EPT PML4E is ignored: the entry is taken as a pointer to a PDPT (§29.3.3.1 makes
    it an EPT misconfiguration)."""

    def nested_walk(self, vm: Vm, gpa: int, acc: int = 0) -> Any:
        if vm.kind != VM_EPT:
            return super().nested_walk(vm, gpa, acc)
        root, read = vm.root, self.read
        levels = vm.levels

        def masked(hpa: int) -> int:
            v = read(hpa)
            return v & ~0x80 if levels == 4 and root <= hpa < root + 4096 else v
        return ept_walk(masked, vm.root, vm.levels, gpa, self.maxphy, bool(self.facts["ept_xonly"]),
                        bool(self.facts["ept_1g"]), self.ept_fact("ept_2m", 16) is not False)


class VmCr3Ignored(VirtModel):
    """A guest CR3 load is acknowledged but the 2-D walk keeps the root the guest booted with."""

    def _apply_vm_cr3(self, o, value):
        pass

    RULES = replaced(VirtModel.RULES, "vm_cr3", apply=_apply_vm_cr3)


class _KptiHitWithoutOffset(Kpti):
    def _access_expect(self, addr, cpl):
        e = super()._access_expect(addr, cpl)
        hit = self._peek(addr)
        if hit is not None and e.default.ok and e.default.value is not None:
            return replace(e, default=Outcome(value=e.default.value & ~0xFFF))
        return e


class KptiHitWithoutOffset(VirtModel):
    """An access that hits the KPTI TLB returns the frame without the address's offset in the page."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.kpti = _KptiHitWithoutOffset(self.facts)


class GuestANotInUpperEntries(VirtModel):
    """A guest walk sets A only in the guest entry that maps the page, not in the upper guest entries it
    used (SDM Vol. 3A §4.8)."""

    def guest_ad(self, leaf: bool, acc: int) -> int:
        return super().guest_ad(leaf, acc) if leaf else 0


class _KptiSwitchAnyPid(Kpti):
    def _x_context_switch(self, pid):
        return Kpti._x_context_switch(self, min(max(pid, 1), 8))

    RULES = replaced(Kpti.RULES, "context_switch", expect=_x_context_switch)


class KptiSwitchAnyPid(VirtModel):
    """A context switch to a PID outside 1..MAX_PIDS is taken as one to the nearest valid PID."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.kpti = _KptiSwitchAnyPid(self.facts)


class TableEndInclusive(VirtModel):
    """A nested table may start at the end of RAM: set_epte/set_npte/read_epte check ``table <= ram``
    (``calls_virt``: the table is a page of RAM, [harness_low, ram))."""

    def _host_table_ok(self, table: int, idx: int) -> bool:
        return table % 4096 == 0 and self.low <= table <= self.ram and 0 <= idx <= 511


class _KptiAddressWraps(Kpti):
    def _x_user_access(self, addr):
        return Kpti._x_user_access(self, addr % (1 << 64))

    def _x_kernel_access(self, addr):
        return Kpti._x_kernel_access(self, addr % (1 << 64))

    RULES = replaced(replaced(Kpti.RULES, "user_access", expect=_x_user_access), "kernel_access",
                     expect=_x_kernel_access)


class KptiAddressWraps(VirtModel):
    """A KPTI access's address is taken modulo 2^64 (-1 is the last byte of the address space) instead of
    refused outside 0..2^64-1."""

    def __init__(self, facts=None):
        super().__init__(facts)
        self.kpti = _KptiAddressWraps(self.facts)


class HarnessExitForEveryRootPageViolation(VirtModel):
    """An EPT violation in the guest root table's page is reported at the harness's slot-511 gpa even when
    it is the final translation's (a fetch from that page): only a guest-paging-structure access
    (Table 28-7 bit 8 clear) is one the harness's own code walk meets first."""

    def _harness_walk_exit(self, vm, o):
        d = dict(o.detail)
        if vm.kind == VM_EPT and o.signal == "EPT_VIOLATION" and d["gpa"] & ~0xFFF == vm.gcr3 & ~0xFFF:
            return Outcome(signal="EPT_VIOLATION", detail=(("exit_qualification", d["exit_qualification"]),
                                                           ("gpa", (vm.gcr3 & ~0xFFF) + 8 * 511),
                                                           ("qual_any", d.get("qual_any", 0))))
        return super()._harness_walk_exit(vm, o)


class InveptAllKeepsMappings(VirtModel):
    """INVEPT all-context drops no cached guest-physical mapping (SDM Vol. 3C §29.4.3.4: it invalidates
    the mappings of every EPTP): a later walk may still use a stale one, so its A/D bits stay unsure."""

    def _apply_invept(self, o, kind, root):
        if o.ok and kind == 1:
            self.cache.invalidate(root)

    RULES = replaced(VirtModel.RULES, "invept", apply=_apply_invept)


class Ept5LevelPml5IndexIgnored(VirtModel):
    """A 5-level EPT walk indexes the PML5 with 0 whatever gpa bits 56:48 hold (SDM Vol. 3C §29.3.2: bits
    56:48 select the PML5 entry), so a gpa in a not-present PML5 slot reaches the page of slot 0."""

    def nested_walk(self, vm: Vm, gpa: int, acc: int = 0) -> Any:
        if vm.kind == VM_EPT and vm.levels == 5:
            gpa &= (1 << 48) - 1
        return super().nested_walk(vm, gpa, acc)


class GpteFirstRamPageRefused(VirtModel):
    """set_gpte/read_gpte refuse a guest table whose host page is the first page of RAM (``low < hpa``
    where ``calls_virt`` takes any host page in [harness_low, ram))."""

    def software_gpa(self, vm: Vm, gpa: int):
        h = super().software_gpa(vm, gpa)
        return None if h is not None and h >> 12 == self.low >> 12 else h


BUGS: dict[str, type[VirtModel]] = {
    "EptpAnyMemtype": EptpAnyMemtype, "EptAOnlyInLeaf": EptAOnlyInLeaf, "Ept1GOffsetAs2M": Ept1GOffsetAs2M,
    "EptPml4PsIgnored": EptPml4PsIgnored,
    "VmCr3Ignored": VmCr3Ignored, "KptiHitWithoutOffset": KptiHitWithoutOffset,
    "GuestANotInUpperEntries": GuestANotInUpperEntries, "KptiSwitchAnyPid": KptiSwitchAnyPid,
    "TableEndInclusive": TableEndInclusive, "KptiAddressWraps": KptiAddressWraps,
    "HarnessExitForEveryRootPageViolation": HarnessExitForEveryRootPageViolation,
    "InveptAllKeepsMappings": InveptAllKeepsMappings, "Ept5LevelPml5IndexIgnored": Ept5LevelPml5IndexIgnored,
    "GpteFirstRamPageRefused": GpteFirstRamPageRefused,
    "VirtModel": VirtModel,
}


class _Session(ModelSession):
    def __init__(self, cls: type[VirtModel]):
        self.system = cls(None)


class _Target(Target):
    layers = ("virt",)

    def __init__(self, cls: type[VirtModel]):
        super().__init__()
        self.cls = cls
        self.name = f"broken-virt:{cls.__name__}"

    def session(self, layer: str = "virt") -> _Session:
        return _Session(self.cls)


def target(name: str) -> Target:
    return _Target(BUGS[name])
