"""The test kernel's command language (targets/testkernel/kernel.c): one command line per
call, one answer line per command -- what the qemu-system and Bochs peers send and read.

``encode`` turns a call into its command line (or the outcome, when the harness refuses the
call here), ``decode`` an answer line into the outcome in the unicorn target's shapes;
``encode_virt``, ``decode_vmexit`` and ``decode_vmx_exit`` do the same for the virt layer's
AMD SVM (nested paging) and Intel VMX (EPT) calls; ``parse_features`` reads the kernel's
``F`` answer.
"""

from __future__ import annotations

from typing import Any

from memspec.calls import capability_calls
from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, SEG_GDT_ENTRIES, SEG_GDT_LIMIT, SEG_GDT_PROGRAM
from memspec.errors import TargetError
from memspec.records import Outcome

OK = Outcome()
EINVAL = Outcome(value=-1, errno="EINVAL")
U64 = (1 << 64) - 1
# the same names as the unicorn target's; others are "#V<n>"
VECTORS = {0: "#DE", 6: "#UD", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF"}
# the vectors whose exception pushes an error code (Intel SDM Vol. 3A Table 6-1)
WITH_ERRCODE = frozenset({8, 10, 11, 12, 13, 14, 17, 21})


def parse_features(line: str) -> dict[str, Any]:
    """The kernel's ``F`` answer: vendor, then CPUID leaves in hex (see kernel.c features_reply)."""
    parts = line.split()
    if not parts or parts[0] != "F" or len(parts) != 14:
        raise TargetError(f"bad feature line from the test kernel: {line!r}")
    v = [int(x, 16) for x in parts[2:]]
    fmax, fxmax, f1c, f1d, f7b, f7c, f7d, f81c, f81d, f88a, f8ad, ram = v
    return {
        "vendor": parts[1],
        "maxphyaddr": (f88a & 0xFF) or 36,
        "la57": bool(f7c >> 16 & 1),
        "page1g": bool(f81d >> 26 & 1),
        "pcid": bool(f1c >> 17 & 1),
        "invpcid": bool(f7b >> 10 & 1),
        "smep": bool(f7b >> 7 & 1),
        "smap": bool(f7b >> 20 & 1),
        "pku": bool(f7c >> 3 & 1),
        "cet": bool(f7c >> 7 & 1 or f7d >> 20 & 1),
        "nx": bool(f81d >> 20 & 1),
        "pge": bool(f1d >> 13 & 1),
        "svm": bool(f81c >> 2 & 1),
        "npt": bool(f8ad & 1),
        "ram": ram,
        "cpuid": {"max_leaf": fmax, "max_ext_leaf": fxmax, "1.ecx": f1c, "1.edx": f1d, "7.ebx": f7b,
                  "7.ecx": f7c, "7.edx": f7d, "80000001.ecx": f81c, "80000001.edx": f81d,
                  "80000008.eax": f88a, "8000000a.edx": f8ad},
    }


# ---------------------------------------------------------------------------------------------
# calls -> command lines, answer lines -> outcomes

def _h(v: int) -> str:
    return format(v & U64, "x")


def encode(name: str, a: tuple[int, ...], vm_kinds: frozenset[int] = frozenset({2})) -> str | Outcome:
    """The command line for one call, or the outcome when the harness refuses it here.
    ``vm_kinds``: the nested-paging kinds this CPU runs (VM_NPT with SVM, VM_EPT with VMX)."""
    if name in VIRT_CALLS or name in ("set_epte", "set_npte"):
        return encode_virt(name, a, vm_kinds)
    if name in SEG_CALLS:
        return encode_seg(name, a)
    if name == "access":
        la, acc, cpl, ac = a
        if la % 8 or acc not in (0, 1, 2) or cpl not in (0, 3) or ac not in (0, 1) or not 0 <= la <= U64:
            return EINVAL
        return f"A {_h(la)} {acc} {cpl} {ac}"
    if name == "set_pte":
        table, idx, frame, flags = a
        if not _table_ok(table, idx) or not 0 <= frame | flags <= U64:
            return EINVAL
        return f"W {_h(table + 8 * idx)} {_h(frame | flags)}"
    if name == "read_pte":
        table, idx = a
        if not _table_ok(table, idx):
            return EINVAL
        return f"Q {_h(table + 8 * idx)}"
    if name == "boot":
        cr0, cr4, efer = a
        if not all(0 <= x <= U64 for x in a):
            return EINVAL
        return f"B {_h(cr0)} {_h(cr4)} {_h(efer)}"
    if name == "wrpkru":
        if not 0 <= a[0] <= 0xFFFFFFFF:
            return EINVAL
        return f"K {_h(a[0])}"
    if name == "invpcid":
        kind, pcid, addr = a
        return f"N {_h(kind)} {_h(pcid)} {_h(addr)}"
    simple = {"mov_cr3": "3", "mov_cr4": "4", "mov_cr0": "0", "wrmsr_efer": "E", "invlpg": "I"}
    if name in simple:
        return f"{simple[name]} {_h(a[0])}"
    raise TargetError(f"the qemu-system target does not implement {name}()")


class HarnessRefused(Exception):
    """The test kernel could not stage an operation (``r …``): the program is refused from this
    call on (unsupported), which is no verdict on the CPU."""


def decode(name: str, a: tuple[int, ...], reply: str) -> Outcome:
    """One answer line -> the outcome, in the unicorn target's shapes.

    ``k``: done (a fetch: the pattern's int3 ran, so the fetch was allowed); ``v X``: a load or
    store completed and read X (or read_pte's entry); ``e …``: the program's mistake, refused
    (EINVAL); ``r …``: the harness cannot stage it (raises ``HarnessRefused``); ``x V E C R``:
    exception vector V with error code E, CR2 C (page faults), at RIP R."""
    parts = reply.split()
    if not parts:
        raise TargetError("empty answer from the test kernel")
    kind = parts[0]
    if kind == "k":
        return OK
    if kind == "e":
        return EINVAL
    if kind == "r":
        raise HarnessRefused(f"the test kernel cannot stage {name}({', '.join(hex(x) for x in a)}): "
                             + reply[1:].strip())
    if kind == "v":
        return Outcome(value=int(parts[1], 16))
    if kind == "n" and len(parts) == 5:
        return decode_vmexit(name, a, parts)
    if kind == "m" and len(parts) == 8:
        return decode_vmx_exit(name, a, parts)
    if kind != "x" or len(parts) != 5:
        raise TargetError(f"unexpected answer from the test kernel to {name}: {reply!r}")
    # an exception ended the operation: vector, error code, CR2 (for #PF), RIP
    vec, err, cr2, _rip = (int(p, 16) for p in parts[1:])
    if vec == 14:
        return Outcome(signal="#PF", detail=(("cr2", cr2), ("errcode", err)))
    if name in SEG_CALLS and vec in WITH_ERRCODE:
        # the segmentation clauses name the error code (#GP(selector), #SS(0), ...)
        return Outcome(signal=VECTORS.get(vec, f"#V{vec}"), detail=(("errcode", err),))
    return Outcome(signal=VECTORS.get(vec, f"#V{vec}"))


# Writes the SDM says must raise #GP and that kill the harness when a CPU accepts them anyway
# (QEMU 7.2 accepts CR4.PAE = 0 and CR0.PG = 0 in 64-bit mode, CR3 bits above MAXPHYADDR, ...).
# A #GP would have reached the kernel's IDT and been answered; a guest that dies on one of
# these without answering took the write: that is the observation, and the run then ends.
FATAL_IF_ACCEPTED = frozenset({"mov_cr0", "mov_cr4", "mov_cr3", "wrmsr_efer"})


def accepted_then_died(message: str) -> Outcome:
    return Outcome(detail=(("guest", "died after the write was accepted: " + message),))


def _table_ok(table: int, idx: int, top: int = HARNESS_SLOT - 1) -> bool:
    return table % 4096 == 0 and HARNESS_LOW <= table and table + 4096 <= RAM_END and 0 <= idx <= top


# ---------------------------------------------------------------------------------------------
# the virt layer: AMD SVM with nested paging (RVI), and Intel VMX with EPT where the CPU has it
# (Bochs; QEMU's TCG implements SVM but not VMX)

VM_EPT, VM_NPT = 1, 2
GUEST_SLOT_BASE = 511 << 39
VIRT_CALLS = frozenset({"vm_boot", "vm_enter", "set_npte", "read_epte", "set_gpte", "read_gpte", "vm_cr3",
                        "vm_access", "invept"})
VMEXIT_VMMCALL, VMEXIT_NPF, VMEXIT_SWINT, VMEXIT_EXCP = 0x81, 0x400, 0x75, 0x40
# VMX basic exit reasons (Intel SDM Vol. 3C Appendix C)
EXIT_EXCEPTION, EXIT_VMCALL, EXIT_EPT_VIOLATION, EXIT_EPT_MISCONFIG = 0, 18, 48, 49
# the EPT-violation exit-qualification bits memspec models (Table 28-7: bits 5:0, 7, 8); bits 9-12
# (advanced information, NMI unblocking) depend on features the model does not describe
QUAL_MODELLED = 0x1BF
NO_VMX = "Intel EPT: QEMU's TCG has no VMX, so the qemu-system target runs AMD nested paging only"
NO_SVM = "AMD nested paging: this CPU has VMX, not SVM (the vendor decides EPT or NPT)"


class Refused(Exception):
    """A call this peer cannot run at all (the other vendor's nested paging): the program is
    refused, not judged."""


def encode_virt(name: str, a: tuple[int, ...], vm_kinds: frozenset[int] = frozenset({VM_NPT})) -> str | Outcome:
    def refuse(kind: int) -> None:
        if kind not in vm_kinds:
            raise Refused(NO_SVM if kind == VM_NPT else NO_VMX)
    if name == "set_epte":
        refuse(VM_EPT)
    if name == "set_npte":
        refuse(VM_NPT)
    if name == "vm_boot":
        vm, kind, root, eptp_flags, gcr3, gcr4, gefer = a
        if kind in (VM_EPT, VM_NPT):
            refuse(kind)
        if not 0 <= vm < 4 or kind not in (VM_EPT, VM_NPT) or root % 4096 or not HARNESS_LOW <= root < RAM_END:
            return EINVAL
        if not gcr4 & 0x20 or not gefer & 0x100 or gcr3 % 4096 or not 0 <= gcr3 < GUEST_SLOT_BASE:
            return EINVAL
        if kind == VM_EPT:
            if not 0 <= eptp_flags <= U64:
                return EINVAL
            return f"V {vm} {_h(root | eptp_flags)} {_h(gcr3)} {_h(gcr4)} {_h(gefer)}"
        if eptp_flags:
            return EINVAL
        return f"G {vm} {_h(root)} {_h(gcr3)} {_h(gcr4)} {_h(gefer)}"
    if name == "vm_enter":
        return f"J {_h(a[0])}" if 0 <= a[0] < 4 else EINVAL
    if name in ("set_npte", "set_epte"):
        table, idx, frame, flags = a
        if not _table_ok(table, idx, 511) or not 0 <= frame | flags <= U64:
            return EINVAL
        return f"U {_h(table + 8 * idx)} {_h(frame | flags)}"
    if name == "read_epte":
        table, idx = a
        return f"Q {_h(table + 8 * idx)}" if _table_ok(table, idx, 511) else EINVAL
    if name in ("set_gpte", "read_gpte"):
        table, idx = a[0], a[1]
        if table % 4096 or not 0 <= idx <= 511 or not 0 <= table < GUEST_SLOT_BASE:
            return EINVAL
        if name == "set_gpte":
            frame, flags = a[2], a[3]
            if not 0 <= frame | flags <= U64:
                return EINVAL
            return f"g {_h(table + 8 * idx)} {_h(frame | flags)}"
        return f"h {_h(table + 8 * idx)}"
    if name == "vm_cr3":
        return f"C {_h(a[0])}" if a[0] % 4096 == 0 and 0 <= a[0] < GUEST_SLOT_BASE else EINVAL
    if name == "vm_access":
        gva, acc, cpl = a
        if gva % 8 or acc not in (0, 1, 2) or cpl not in (0, 3) or not 0 <= gva < GUEST_SLOT_BASE:
            return EINVAL
        return f"Y {_h(gva)} {acc} {cpl}"
    if name == "invept":
        kind, root = a
        if kind not in (1, 2) or kind == 1 and (root % 4096 or not HARNESS_LOW <= root < RAM_END):
            return EINVAL
        return f"T {kind} {_h(root)}"
    raise TargetError(f"the qemu-system target does not implement {name}()")


def decode_vmexit(name: str, a: tuple[int, ...], parts: list[str]) -> Outcome:
    """``n EXITCODE EXITINFO1 EXITINFO2 RAX`` (AMD APM Vol. 2 Appendix C) -> the virt outcome."""
    code, info1, info2, rax = (int(p, 16) for p in parts[1:5])
    if code == VMEXIT_VMMCALL:
        return Outcome(value=rax) if name == "vm_access" else OK
    if name == "vm_access" and a[1] == 2 and code in (VMEXIT_EXCP + 3, VMEXIT_SWINT):
        # the pattern's int3 ran: the fetch was allowed (QEMU exits with INTn for INT3, see the docstring)
        return OK
    if code == VMEXIT_NPF:
        return Outcome(signal="#NPF", detail=(("exitinfo1", info1), ("exitinfo2", info2)))
    if code == VMEXIT_EXCP + 14:
        return Outcome(signal="#PF", detail=(("cr2", info2), ("errcode", info1)))
    if VMEXIT_EXCP <= code < VMEXIT_EXCP + 32:
        return Outcome(signal=VECTORS.get(code - VMEXIT_EXCP, f"#V{code - VMEXIT_EXCP}"))
    return Outcome(signal=f"#VMEXIT{code:#x}", detail=(("exitinfo1", info1), ("exitinfo2", info2)))


def decode_vmx_exit(name: str, a: tuple[int, ...], parts: list[str]) -> Outcome:
    """``m REASON QUALIFICATION GPA GLA INTERRUPTION-INFO ERROR-CODE RAX`` (Intel SDM Vol. 3C
    §28.2) -> the virt outcome: VMCALL ends an access with the value in RAX; an intercepted
    exception is the guest's (a #PF with the error code and, in the exit qualification, the
    linear address: CR2 is not loaded, §28.1); exit reasons 48 and 49 are EPT violations and
    misconfigurations."""
    reason, qual, gpa, gla, info, err, rax = (int(p, 16) for p in parts[1:8])
    if reason == EXIT_VMCALL:
        return Outcome(value=rax) if name == "vm_access" else OK
    if reason == EXIT_EXCEPTION and info >> 31:
        vec = info & 0xFF
        if name == "vm_access" and a[1] == 2 and vec == 3:
            return OK       # the pattern's int3 ran: the fetch was allowed
        if vec == 14:
            return Outcome(signal="#PF", detail=(("cr2", qual), ("errcode", err)))
        return Outcome(signal=VECTORS.get(vec, f"#V{vec}"))
    if reason == EXIT_EPT_VIOLATION:
        detail = (("exit_qualification", qual & QUAL_MODELLED),) + ((("gla", gla),) if qual >> 7 & 1 else ())
        return Outcome(signal="EPT_VIOLATION", detail=detail + (("gpa", gpa), ("exit_qualification_raw", qual)))
    if reason == EXIT_EPT_MISCONFIG:
        return Outcome(signal="EPT_MISCONFIG", detail=(("gpa", gpa),))
    what = "VMENTRY_FAIL" if reason >> 31 else "VMEXIT"
    return Outcome(signal=f"#{what}{reason & 0xFFFF}", detail=(("exit_qualification", qual), ("gpa", gpa)))


# ---------------------------------------------------------------------------------------------
# the segmentation calls (capability "segmentation"): the kernel's segmentation unit runs them in
# 64-bit mode with a GDT laid out as memspec/calls_hw.py's (testkernel/README.md, Segmentation)

SEG_CALLS = capability_calls("segmentation")
SEG_REAL, SEG_LONG = 0, 3
SREG_FS, SREG_GS = 4, 5
DESC_FLAGS = (1 << 12) | (1 << 15) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 23)
# what the unit's facts say (the model's SEG_FACTS): no A20 gate is offered (SEG_REAL is EINVAL,
# as the model predicts for a unit without one); the pattern fills [HARNESS_LOW, end of RAM)
SEG_FACT_A20 = False


def descriptor(base: int, limit: int, type_: int, dpl: int, flags: int) -> int:
    """The raw GDT descriptor of ``set_desc`` (Intel SDM Vol. 3A §3.4.5, Figure 3-8)."""
    hi = ((base >> 16) & 0xFF) | type_ << 8 | dpl << 13 | ((limit >> 16) & 0xF) << 16 | (base >> 24) << 24 | flags
    return (limit & 0xFFFF) | (base & 0xFFFF) << 16 | hi << 32


def encode_seg(name: str, a: tuple[int, ...]) -> str | Outcome:
    """The segmentation calls' command lines; the argument checks are the model's (EINVAL)."""
    if name == "seg_mode":
        (mode,) = a
        if mode not in (0, 1, 2, 3) or (mode == SEG_REAL and not SEG_FACT_A20):
            return EINVAL
        return f"D {mode}"
    if name == "set_desc":
        index, base, limit, type_, dpl, flags = a
        if not (1 <= index < SEG_GDT_PROGRAM and 0 <= base <= 0xFFFFFFFF and 0 <= limit < 1 << 20
                and 0 <= type_ < 16 and 0 <= dpl <= 3 and 0 <= flags and not flags & ~DESC_FLAGS):
            return EINVAL
        return f"d {_h(index)} {_h(descriptor(base, limit, type_, dpl, flags))}"
    if name == "read_desc":
        (index,) = a
        return f"q {_h(index)}" if 0 <= index < SEG_GDT_ENTRIES else EINVAL
    if name == "lgdt":
        (limit,) = a
        return f"l {_h(limit)}" if 0 <= limit <= SEG_GDT_LIMIT else EINVAL
    if name == "load_seg":
        sreg, sel, cpl = a
        if not (0 <= sreg <= 5 and 0 <= sel <= 0xFFFF and 0 <= cpl <= 3):
            return EINVAL
        return f"L {sreg} {_h(sel)} {cpl}"
    if name == "seg_access":
        sreg, offset, op, size = a
        if sreg not in (0, 2, 3, 4, 5) or not 0 <= offset <= U64 or op not in (0, 1) or size not in (1, 2, 4, 8):
            return EINVAL
        return f"a {sreg} {_h(offset)} {op} {size}"
    if name == "wrmsr_segbase":
        sreg, base = a
        if sreg not in (SREG_FS, SREG_GS) or not 0 <= base <= U64:
            return EINVAL
        return f"w {sreg} {_h(base)}"
    raise TargetError(f"the test kernel does not implement {name}()")


def seg_facts(ram: int) -> dict[str, Any]:
    """The facts the segmentation model reads (model/segunit.py SEG_FACTS), for this kernel."""
    return {"a20_gate": SEG_FACT_A20, "seg_ram": ram, "seg_low": HARNESS_LOW}


RAM_END = 32 << 20      # replaced by what the kernel reports (it reads the multiboot memory size)


def set_ram_end(ram: int) -> None:
    """The end of the guest's RAM, as the kernel reported it: the bound of the tables a call may name."""
    global RAM_END
    RAM_END = ram


# ---------------------------------------------------------------------------------------------
# sweeps: the kernel decodes combination indexes itself and answers binary records
# (testkernel/README.md, Sweeps)

# one record per combination, little-endian (kernel.c struct sweep_out): what happened (SWEEP_OK: a
# load or store completed, or a fetch reached the pattern's int3; SWEEP_EXC: an exception; SWEEP_REFUSED:
# the harness would not stage it; SWEEP_ERROR: the kernel could not build it, a harness bug), the
# vector (0xff for none), the A/D flags of the tree's entries (two bits per level, as
# ``sweepspace.Observed.ad``), the error code, and the qword a load or store read or a #PF's CR2
SWEEP_RECORD = [("kind", "u1"), ("vector", "u1"), ("ad", "<u2"), ("errcode", "<u4"), ("value", "<u8")]
SWEEP_RECORD_SIZE = 16
SWEEP_OK, SWEEP_EXC, SWEEP_REFUSED, SWEEP_ERROR = 0, 1, 2, 3


def sweep_runs(index: Any) -> list[tuple[int, int]]:
    """Ascending combination indexes as runs of consecutive ones: (first, count)."""
    import numpy as np
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return []
    cut = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate(([0], cut))
    ends = np.concatenate((cut, [index.size]))
    return [(int(index[s]), int(e - s)) for s, e in zip(starts, ends)]


def sweep_request(levels: int, runs: list[tuple[int, int]]) -> list[str]:
    """The ``z`` command lines of a batch: one per run of consecutive indexes."""
    return [f"z {levels:x} {first:x} {count:x}" for first, count in runs]
