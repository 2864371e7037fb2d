"""The feature probe: what this KVM and CPU offer the guest (each a fact the hw model reads)."""

from __future__ import annotations

import fcntl
import struct
from typing import Any

from memspec.calls_hw import INITIAL_CR3
from memspec.records import Outcome, RunStatus

from .compile import _Chunk, _Machine
from .guest import (
    CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_PKE, CR4_SMAP, CR4_SMEP, EXEC, P, PS, READ,
    RW, US, _Vm, _w64, code)
from .ioctl import EXIT_HLT, KVM_SET_SREGS, _GuestTimeout, _Kvm, _SEG, _SEG_OFF, guest_cpuid
from .klog import KernelLog

# --- the feature probe ----------------------------------------------------------------

FEATURES = ("nx", "smep", "smap", "smap_stac", "page1g", "pku", "la57", "pcid", "invpcid", "legacy32", "pae32")
FEATURE_NAMES = {
    "nx": "NX (EFER.NXE, XD bit)", "smep": "SMEP", "smap": "SMAP (implicit, EFLAGS.AC by POPF)",
    "smap_stac": "SMAP STAC/CLAC", "page1g": "1 GiB pages", "pku": "PKU (protection keys)",
    "la57": "LA57 (5-level paging)", "pcid": "PCID (CR4.PCIDE)", "invpcid": "INVPCID",
    "legacy32": "32-bit paging", "pae32": "PAE paging (legacy, not long mode)",
}

_PROBED: dict[str, Any] | None = None


def probe_features(kvm: _Kvm, timeout: float = 2.0) -> dict[str, Any]:
    """What this KVM offers, found by running guests (cached per process)."""
    global _PROBED
    if _PROBED is not None:
        return _PROBED
    m = _Machine(kvm, {"maxphyaddr": 48, "nx": True}, timeout, KernelLog())
    f: dict[str, Any] = {}
    leaf = kvm.leaf(0x80000008)
    f["maxphyaddr"] = (leaf[3] & 0xFF) if leaf else 36
    ext = kvm.leaf(0x80000001)
    f["nx"] = bool(ext and ext[6] >> 20 & 1)
    T, D4, P4, PT4 = 0x200000, 0x201000, 0x202000, 0x203000    # root, PDPT, PD, PT for la 0x405000

    def run(calls: list[tuple[str, tuple[int, ...]]], boot: tuple[int, int, int] | None = None) -> list[Outcome]:
        m.start_program(fresh=True)
        if boot is not None:
            try:
                m.vm.set_control(boot[0], INITIAL_CR3, boot[1], boot[2])
            except OSError:
                return [Outcome(value=-1, errno="EINVAL")]
        chunk = _Chunk()
        ccs = [m.compile(chunk, i, n, a) for i, (n, a) in enumerate(calls)]
        status, msg, _ = m.run_chunk(chunk)
        if status is not RunStatus.OK:
            return [Outcome(signal="crash", detail=(("why", msg),))] * max(len(calls), 1)
        return [m.outcome(c) for c in ccs]

    user = P | RW | US
    tables = [("set_pte", (T, 0, D4 | user, 0)), ("set_pte", (D4, 0, P4 | user, 0)), ("set_pte", (P4, 2, PT4 | user, 0)),
              ("mov_cr3", (T,))]
    leaf7 = [e for e in guest_cpuid(kvm) if e[0] == 7 and e[1] == 0]
    ebx7 = leaf7[0][4] if leaf7 else 0
    ecx7 = leaf7[0][5] if leaf7 else 0
    # SMEP: a supervisor fetch from a user page faults with P|I/D once CR4.SMEP is set
    r = run(tables + [("set_pte", (PT4, 5, 0x300000 | user, 0)), ("mov_cr4", (CR4_PAE | CR4_SMEP,)),
                      ("access", (0x405000, EXEC, 0, 0))])
    f["smep"] = bool(ebx7 >> 7 & 1) and r[-2].ok and r[-1].signal == "#PF" and dict(r[-1].detail)["errcode"] == 0x11
    r = run(tables + [("set_pte", (PT4, 5, 0x300000 | user, 0)), ("mov_cr4", (CR4_PAE | CR4_SMAP,)),
                      ("access", (0x405000, READ, 0, 0)), ("access", (0x405000, READ, 0, 1))])
    f["smap"] = bool(ebx7 >> 20 & 1) and r[-3].ok and r[-2].signal == "#PF" and r[-1].value is not None
    # STAC/CLAC: the instructions themselves (KVM's emulator may not implement them)
    m.start_program(fresh=True)
    chunk = _Chunk()
    code().t["stac_clac"].emit(chunk.code)
    status, msg, _ = m.run_chunk(chunk)
    f["smap_stac"] = status is RunStatus.OK
    if not f["smap_stac"]:
        f["smap_stac_why"] = msg
    # 1 GiB pages: a PDPTE with PS = 1 must map, not raise a reserved-bit fault
    r = run([("set_pte", (T, 0, D4 | user, 0)), ("set_pte", (D4, 1, 0 | user | PS, 0)), ("mov_cr3", (T,)),
             ("access", (0x40000000 + 0x300000, READ, 0, 0))])
    f["page1g"] = r[-1].value is not None
    r = run(tables + [("mov_cr4", (CR4_PAE | CR4_PKE,)), ("wrpkru", (0,))])
    f["pku"] = r[-2].ok and r[-1].ok
    r = run(tables + [("mov_cr4", (CR4_PAE | CR4_PCIDE,))])
    f["pcid"] = r[-1].ok
    r = run(tables + [("invpcid", (3, 0, 0))])
    f["invpcid"] = r[-1].ok
    cr0, cr4, efer = m.initial_mode()
    r = run([], boot=(cr0, cr4 | CR4_LA57, efer))
    f["la57"] = not r or r[0].ok and bool(ecx7 >> 16 & 1)
    if f["la57"]:
        f["la57"] = False     # the harness builds 4-level roots only; 5-level would need a PML5 slot
        f["la57_why"] = "KVM accepted CR4.LA57 but the harness does not build 5-level tables"
    # kvm-pvm keeps part of the upper half for itself while guest user code runs natively
    f["cpl3_reserved_slots"] = []
    for slot in (256, 257, 300, 510):
        r = run([("set_pte", (T, slot, D4 | user, 0)), ("set_pte", (D4, 0, P4 | user, 0)),
                 ("set_pte", (P4, 2, PT4 | user, 0)), ("set_pte", (PT4, 5, 0x300000 | user, 0)), ("mov_cr3", (T,)),
                 ("access", (0xFFFF << 48 | slot << 39 | 0x405000, READ, 3, 0))])
        if r[-1].value is None:
            f["cpl3_reserved_slots"].append(slot)
    f["legacy32"], f["pae32"] = _probe_legacy(kvm, m.cpuid, timeout)
    m.discard()
    _PROBED = f
    return f


def _probe_legacy(kvm: _Kvm, cpuid: list[list[int]], timeout: float) -> tuple[bool, bool]:
    """32-bit and PAE paging in protected mode: a read through a present PDE must not shut the VM down."""
    results = []
    for pae in (False, True):
        vm = _Vm(kvm, cpuid)
        try:
            gdt = 0x1000
            _w64(vm.mem, gdt + 8, 0x00CF9A000000FFFF)
            _w64(vm.mem, gdt + 16, 0x00CF92000000FFFF)
            probe = code().assembled                        # guest.S, section .probe32
            entry = 0x5000
            vm.mem[entry:entry + len(probe.probe32)] = probe.probe32
            root = 0x100000
            if pae:
                struct.pack_into("<Q", vm.mem, root, 0x101000 | P)
                struct.pack_into("<Q", vm.mem, 0x101000, 0 | P | RW | PS)
            else:
                struct.pack_into("<I", vm.mem, root, 0 | P | RW | PS)
            s = vm.sregs
            _SEG.pack_into(s, _SEG_OFF["cs"], 0, 0xFFFFFFFF, 8, 11, 1, 0, 1, 1, 0, 1, 0, 0)
            for n in ("ds", "es", "fs", "gs", "ss"):
                _SEG.pack_into(s, _SEG_OFF[n], 0, 0xFFFFFFFF, 16, 3, 1, 0, 1, 1, 0, 1, 0, 0)
            _SEG.pack_into(s, _SEG_OFF["tr"], 0x3000, 0x67, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0)
            struct.pack_into("<QH", s, 192, gdt, 0x17)
            struct.pack_into("<5Q", s, 224, CR0_PG | CR0_PE | CR0_WP, 0, root, 0x20 if pae else 0x10, 0)
            struct.pack_into("<Q", s, 264, 0)
            fcntl.ioctl(vm.cpu, KVM_SET_SREGS, bytes(s))
            vm.set_regs(rip=entry, rbx=0x203000, rsp=0x8000, r14=0, r15=0)
            results.append(vm.run(timeout) == EXIT_HLT
                           and vm.get_regs()["rip"] == probe.at("probe_legacy_done", entry) + 1)
        except (OSError, _GuestTimeout):
            results.append(False)
        finally:
            vm.close()
    return results[0], results[1]
