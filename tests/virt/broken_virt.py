"""Deliberately broken virt-layer implementations for tests/virt: the reference model with one rule
wrong, run as a target (it answers with its own choices) and also checked by its own invariants.

Bugs (``VirtModel.broken`` / ``Kpti.broken``):

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

from memspec.model.virt import VirtModel
from memspec.targets.base import Target
from memspec.targets.model import ModelSession


def broken_model(bug: str, facts: dict[str, Any] | None = None) -> VirtModel:
    m = VirtModel(facts)
    m.broken = {bug}
    m.kpti.broken = {bug}
    return m


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
