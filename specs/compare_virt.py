"""Checkpoint comparison for the virt layer: every EPT, nested (NPT) and guest paging entry in
host memory, A/D bits included, for every guest.

A target reports, at a checkpoint, ``extra = (("entries", ((hpa, value), ...)),)``: every qword of
host-physical memory the program changed from the harness pattern (``calls_hw.pattern``) -- the
EPT/NPT entries it wrote with ``set_epte``/``set_npte`` and the guest paging entries it wrote with
``set_gpte``, as the processor's walks left them.  The model knows what each must hold; where the
architecture lets the A/D bits go either way (a walk that exited, a cached guest-physical mapping
that may or may not have been used) those bits are loose.  Any other difference breaks:

* the clause that last decided that entry's A/D bits (``sdm.ept.guest-ad`` for a guest entry: a
  D flag set without a write, an A flag missing after a clean access; ``sdm.ept.ad.readback`` for
  an EPT entry: EPT A missing where EPTP[6] = 1 required it, or set with EPTP[6] = 0;
  ``apm.npt.ad`` for a nested entry), or
* ``sdm.ept.ad.only-a-d`` / ``sdm.ad.only-a-d`` when a bit other than the entry's A and D changed
  (the processor writes nothing else in an EPT / x86-format entry).

Worked example: EPTP[6] = 1, a clean guest read through an EPT PTE ``0x500037`` at hpa ``0x203800``:
the model holds ``0x500137`` there (A set, D clear); a target showing ``0x500037`` fails
``sdm.ept.ad.readback``.

Targets that show nothing at a checkpoint (``Observation()``: the bochs and qemu-system targets,
whose test kernel is not asked to dump memory) are not compared (the judge counts no checkpoint);
their entries are judged call by call through ``read_epte``/``read_gpte``.
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import pattern
from memspec.model.virt import AD_CLAUSE, ENTRY_EPT
from memspec.records import Check, Observation, Verdict


def compare(model: Any, obs: Observation, index: int) -> Check | None:
    seen = dict(obs.extra).get("entries")
    if seen is None:
        return None
    got = dict(seen)
    for hpa in sorted(set(got) | {a for a in model.mem if model.low <= a < model.ram}):
        if not model.low <= hpa < model.ram or model.is_harness_entry(hpa):
            continue
        want = model.read(hpa)
        have = got.get(hpa, pattern(hpa))
        loose = model.unsure.get(hpa, 0)
        diff = (want ^ have) & ~loose
        if not diff:
            continue
        kind = model.kind_at.get(hpa)
        if kind is None:
            cid = "memspec.virt.set-entry"       # memory the program never wrote as an entry changed
        elif diff & ~model.ad_bits(hpa):
            cid = "sdm.ept.ad.only-a-d" if kind == ENTRY_EPT else "sdm.ad.only-a-d"
        else:
            cid = model.ad_clause.get(hpa) or AD_CLAUSE[kind]
        what = kind or "host memory"
        return Check(cid, Verdict.FAIL, index,
                     f"{what} at hpa {hpa:#x} = {want:#x}" + (f" (bits {loose:#x} either way)" if loose else ""),
                     f"{hpa:#x} = {have:#x}",
                     f"the {what} at hpa {hpa:#x} differs from the model's at the checkpoint in bits {diff:#x}"
                     + _owners(model, hpa), at="checkpoint")
    return None


def _owners(model: Any, hpa: int) -> str:
    """Which guests' EPT/NPT roots the entry's table belongs to, when it is a root's entry."""
    vms = [vmid for vmid, vm in sorted(model.vms.items()) if hpa & ~0xFFF == vm.root]
    return f" (in the nested root table of guest {', '.join(map(str, vms))})" if vms else ""
