"""Compiling hw-layer calls into guest code, and the outcomes back from the result slots.

Each call is one or more templates of guest.S (``t_guard``, ``t_store``, ``t_read``, ...)
emitted one after another, with the call's addresses and values in their named immediates
(asm.py says why templates rather than assembling each program)."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Any

from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, INITIAL_CR3, RAM_SIZE
from memspec.records import OK, Observation, Outcome, RunStatus

from .guest import (
    CODE, CODE_END, CR0_PE, CR0_PG, CR0_WP, CR3_NOFLUSH, CR4_KNOWN, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_PKE,
    CR4_SMAP, CR4_SMEP, EFER_KNOWN, EFER_LMA, EFER_LME, EFER_NXE, EXEC, HARNESS_ENTRY, KCS, NSLOTS, PATH_CPL0,
    PATH_CPL3, PHYS, READ, SLOTS, SLOT_SIZE, STATIC_PAGES, ST_EXC, ST_FETCHED, ST_UNEMULATED, U64, UCS, VEC_NAMES,
    WRITE, _Vm, _image, code)
from .ioctl import (
    EXIT_HLT, EXIT_INTERNAL_ERROR, EXIT_MMIO, EXIT_NAMES, EXIT_SHUTDOWN, _GuestTimeout, _Kvm, _Refused,
    guest_cpuid)
from .klog import KernelLog

# --- compiling calls into guest code -----------------------------------------------

@dataclass
class _Compiled:
    """One call in a chunk: where its code starts, its slot, and how to read its outcome."""

    index: int
    kind: str            # "const" (answered without running), "none", "value", "access", "fault"
    start: int = 0
    slot: int = 0
    const: Outcome | None = None
    addr: int = 0
    op: int = 0
    cpl: int = 0
    resume_at: int = 0
    end: int = 0


@dataclass
class _Chunk:
    code: bytearray = field(default_factory=bytearray)
    calls: list[_Compiled] = field(default_factory=list)
    slots: int = 0
    descriptors: list[tuple[int, bytes]] = field(default_factory=list)
    ac_dirty: bool = False
    unemulated: list[int] = field(default_factory=list)    # RIPs KVM's emulator gave up on
    mmio: list[int] = field(default_factory=list)          # guest-physical addresses outside RAM touched

    def full(self) -> bool:
        return len(self.code) > CODE_END - CODE - 256 or self.slots >= NSLOTS - 1


def _canonical(la: int) -> bool:
    hi = la >> 47
    return hi == 0 or hi == (1 << 17) - 1


class _Machine:
    """The vCPU's architectural state as the harness drives it (what the model calls the CPU)."""

    def __init__(self, kvm: _Kvm, features: dict[str, Any], timeout: float, log: KernelLog):
        self.kvm = kvm
        self.features = features
        self.timeout = timeout
        self.log = log
        self.cpuid = guest_cpuid(kvm)
        self.vm: _Vm | None = None
        self.dirty: set[int] = set()         # qwords a program changed (set_pte, root[511])
        self.maxphy = int(features.get("maxphyaddr", 48))
        self.cr3 = INITIAL_CR3
        self.code = code()
        self.t = self.code.t           # guest.S's templates, by name

    # -- lifecycle --

    def fresh(self) -> None:
        if self.vm is not None:
            self.vm.close()
        self.vm = _Vm(self.kvm, self.cpuid)
        self.dirty.clear()
        self.broken = False

    def discard(self) -> None:
        if self.vm is not None:
            self.vm.close()
        self.vm = None
        self.broken = False

    broken = False

    def initial_mode(self) -> tuple[int, int, int]:
        return (CR0_PG | CR0_PE | CR0_WP, CR4_PAE,
                EFER_LME | EFER_LMA | (EFER_NXE if self.features.get("nx", True) else 0))

    def start_program(self, fresh: bool = False) -> None:
        """Bring the VM to the state every program starts in: the initial mode and root, the
        pattern everywhere the last program wrote (put back by guest stores), the TLB flushed."""
        if fresh or self.vm is None or self.broken or not self._harness_intact():
            self.fresh()
        assert self.vm is not None
        cr0, cr4, efer = self.initial_mode()
        self.vm.set_control(cr0, INITIAL_CR3, cr4, efer)
        self.cr3 = INITIAL_CR3
        self.cr4_pke = False
        t = self.t
        chunk = _Chunk()
        t["mov_cr3"].emit(chunk.code, VALUE=INITIAL_CR3)
        for pa in sorted(self.dirty):
            t["store"].emit(chunk.code, ADDR=PHYS + pa,
                            VALUE=(pa << 8) | 0xCC if pa != INITIAL_CR3 + 8 * HARNESS_SLOT else HARNESS_ENTRY)
            if chunk.full():
                self._run_plain(chunk)
                chunk = _Chunk()
        t["mov_cr3"].emit(chunk.code, VALUE=INITIAL_CR3)
        self._run_plain(chunk)
        self.dirty.clear()

    def _harness_intact(self) -> bool:
        assert self.vm is not None
        img = _image()
        return (all(self.vm.mem[pg:pg + 4096] == img[pg:pg + 4096] for pg in STATIC_PAGES)
                and self.vm.r64(INITIAL_CR3 + 8 * HARNESS_SLOT) == HARNESS_ENTRY)

    def _run_plain(self, chunk: _Chunk) -> None:
        """Run harness-only code; anything but a clean halt means the harness itself broke."""
        status, msg, _ = self.run_chunk(chunk)
        if status is not RunStatus.OK:
            self.discard()
            raise RuntimeError(f"kvm harness: resetting the guest failed: {msg}")

    # -- running --

    def run_chunk(self, chunk: _Chunk) -> tuple[RunStatus, str, int]:
        """Run compiled code; (status, message, index of the call that was running if not OK)."""
        vm = self.vm
        assert vm is not None
        code = bytes(chunk.code) + self.t["halt"].code
        end = PHYS + CODE + len(code)
        vm.mem[CODE:CODE + len(code)] = code
        vm.mem[SLOTS:SLOTS + SLOT_SIZE * max(chunk.slots, 1)] = bytes(SLOT_SIZE * max(chunk.slots, 1))
        for pa, desc in chunk.descriptors:
            vm.mem[pa:pa + len(desc)] = desc
        vm.set_regs(rip=PHYS + CODE)
        by_slot = {c.slot: c for c in chunk.calls if c.kind in ("access", "fault")}
        resumes = 0
        while True:
            try:
                exit_reason = vm.run(self.timeout)
            except _GuestTimeout:
                at = self._where(chunk)
                self.broken = True
                return RunStatus.HANG, f"the guest did not halt within {self.timeout:g} s (KVM_RUN interrupted)", at
            except OSError as e:
                at = self._where(chunk)
                self.broken = True
                return RunStatus.ERROR, f"KVM_RUN failed: {e.strerror}", at
            if exit_reason == EXIT_MMIO and resumes < 64 * (chunk.slots + 1):
                # an access reached guest-physical memory outside RAM: no device answers, so a
                # read returns all ones (as an unclaimed bus read does) and a write is dropped
                phys, _data, size, is_write = struct.unpack_from("<Q8sIB", vm.run_mm, 32)
                if not is_write:
                    vm.run_mm[40:48] = b"\xff" * 8
                chunk.mmio.append(phys)
                resumes += 1
                continue
            if exit_reason != EXIT_INTERNAL_ERROR or resumes > 64 * (chunk.slots + 1):
                break
            if not self._skip_unemulated(chunk, by_slot):
                break
            resumes += 1
        if exit_reason == EXIT_HLT:
            rip = vm.get_regs()["rip"]
            if rip == end:
                if not self._harness_intact():
                    # code the program made the guest execute (paging entries fetched as
                    # instructions) overwrote the harness: later outcomes would be meaningless
                    self.broken = True
                    return (RunStatus.REFUSED, "the program's accesses overwrote the harness's own memory "
                            "(guest-physical memory below 1 MiB, which the model does not judge either)", -1)
                return RunStatus.OK, "", -1
            at = self._where(chunk)
            self.broken = True
            regs = vm.get_regs()
            cc = by_slot.get((regs["r14"] - PHYS - SLOTS) // SLOT_SIZE)
            if cc is not None and cc.kind == "access" and cc.op == EXEC and rip != self.code.fatal + 1:
                # the fetch reached code that is not the pattern's INT3 (the harness's own pages,
                # or paging entries), which halted: the model does not judge that either
                return (RunStatus.REFUSED, f"the fetch at {cc.addr:#x} ran code outside the pattern, which "
                        f"halted at RIP {rip:#x}", cc.index)
            where = "in the harness's fault path (a fault in the harness's own code)" if rip == self.code.fatal + 1 \
                else f"at RIP {rip:#x}"
            return RunStatus.CRASH, f"the guest halted {where}, not at the end of its code", at
        at = self._where(chunk)
        name = EXIT_NAMES.get(exit_reason, str(exit_reason))
        if exit_reason == EXIT_SHUTDOWN:
            msg = "KVM_EXIT_SHUTDOWN: the guest triple-faulted"
        elif exit_reason == EXIT_INTERNAL_ERROR:
            msg = f"KVM_EXIT_INTERNAL_ERROR ({vm.internal_error()})"
        else:
            msg = f"unexpected exit KVM_EXIT_{name}"
        self.broken = True
        return RunStatus.CRASH, msg, at

    def _skip_unemulated(self, chunk: _Chunk, by_slot: dict[int, "_Compiled"]) -> bool:
        """KVM_EXIT_INTERNAL_ERROR (suberror 1: the emulator cannot emulate an instruction) in the
        instruction a call is about: record it as that call's outcome and resume at the next call.
        A fetch whose target bytes KVM fetched but could not emulate (kvm-pvm does not emulate
        INT3 at CPL 0) passed its permission checks: that is the fetch's outcome."""
        vm = self.vm
        assert vm is not None
        sub = struct.unpack_from("<I", vm.run_mm, 32)[0]
        regs = vm.get_regs()
        slot = (regs["r14"] - PHYS - SLOTS) // SLOT_SIZE
        cc = by_slot.get(slot)
        if sub != 1 or cc is None or (regs["r14"] - PHYS - SLOTS) % SLOT_SIZE:
            return False
        rip = regs["rip"]
        if cc.kind == "access" and cc.op == EXEC and rip == cc.addr:
            # At CPL 0 KVM fetched the bytes and cannot emulate them (INT3); at CPL 3 the walk
            # succeeded and the page is guest-physical memory outside RAM, which KVM cannot
            # execute from.  Either way the fetch passed every paging check.
            status = ST_FETCHED
        elif PHYS + cc.start <= rip < PHYS + cc.end:
            status = ST_UNEMULATED
        else:
            return False
        struct.pack_into("<QQ", vm.mem, SLOTS + SLOT_SIZE * slot, status, rip)
        chunk.unemulated.append(rip)
        vm.set_regs(rip=regs["r15"], r14=regs["r14"], r15=regs["r15"])
        return True

    def _where(self, chunk: _Chunk) -> int:
        """The index of the call whose code the vCPU was in (or last resumed from)."""
        try:
            regs = self.vm.get_regs() if self.vm else None
        except OSError:
            regs = None
        if regs is None:
            return -1
        starts = [c.start for c in chunk.calls if c.kind != "const"]
        idx = [c.index for c in chunk.calls if c.kind != "const"]
        for addr in (regs["rip"], regs["r15"] - 1):
            off = addr - PHYS
            if CODE <= off < CODE + len(chunk.code) and starts:
                k = bisect.bisect_right(starts, off) - 1
                if k >= 0:
                    return idx[k]
        return -1

    def read_slot(self, slot: int) -> tuple[int, int, int, int, int]:
        assert self.vm is not None
        return struct.unpack_from("<5Q", self.vm.mem, SLOTS + SLOT_SIZE * slot)

    # -- compiling --

    def _slot(self, chunk: _Chunk) -> int:
        s = chunk.slots
        chunk.slots += 1
        return s

    def _guard(self, chunk: _Chunk, cc: _Compiled) -> None:
        """r14 = this call's slot, r15 = where the next call starts (patched after the body)."""
        cc.slot = self._slot(chunk)
        guard = self.t["guard"]
        at = guard.emit(chunk.code, SLOT=PHYS + SLOTS + SLOT_SIZE * cc.slot, RESUME=0)
        cc.resume_at = at + guard.offset("RESUME")      # written once the body is there

    def _patch_resume(self, chunk: _Chunk, cc: _Compiled) -> None:
        struct.pack_into("<Q", chunk.code, cc.resume_at, PHYS + CODE + len(chunk.code))

    def compile(self, chunk: _Chunk, index: int, name: str, args: tuple[int, ...]) -> _Compiled:
        cc = _Compiled(index, "none", start=CODE + len(chunk.code))
        if chunk.ac_dirty:
            self.t["flags_clean"].emit(chunk.code)
            chunk.ac_dirty = False
            cc.start = CODE + len(chunk.code)
        getattr(self, "_c_" + name)(chunk, cc, *args)
        cc.end = CODE + len(chunk.code)
        chunk.calls.append(cc)
        return cc

    def _const(self, cc: _Compiled, o: Outcome) -> None:
        cc.kind, cc.const = "const", o

    def _table_ok(self, table: int, idx: int) -> bool:
        return table % 4096 == 0 and HARNESS_LOW <= table < RAM_SIZE and 0 <= idx < HARNESS_SLOT

    def _c_set_pte(self, chunk: _Chunk, cc: _Compiled, table: int, idx: int, frame: int, flags: int) -> None:
        if not self._table_ok(table, idx) or not 0 <= frame | flags <= U64:
            return self._const(cc, EINVAL)
        pa = table + 8 * idx
        self.t["store"].emit(chunk.code, VALUE=frame | flags, ADDR=PHYS + pa)
        self.dirty.add(pa)

    def _c_read_pte(self, chunk: _Chunk, cc: _Compiled, table: int, idx: int) -> None:
        if not self._table_ok(table, idx):
            return self._const(cc, EINVAL)
        cc.kind, cc.slot = "value", self._slot(chunk)
        self.t["copy"].emit(chunk.code, SRC=PHYS + table + 8 * idx, DST=PHYS + SLOTS + SLOT_SIZE * cc.slot + 8)

    def _c_mov_cr3(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        pcide = False      # CR4.PCIDE can never be set on this KVM (see the feature probe)
        v = value & ~CR3_NOFLUSH if pcide else value
        root = v & ((1 << self.maxphy) - 1) & ~0xFFF
        rsvd = v >> self.maxphy
        if not rsvd and not HARNESS_LOW <= root < RAM_SIZE:
            return self._const(cc, EINVAL)
        if HARNESS_LOW <= root < RAM_SIZE:
            self.t["store"].emit(chunk.code, VALUE=HARNESS_ENTRY, ADDR=PHYS + root + 8 * HARNESS_SLOT)
            self.dirty.add(root + 8 * HARNESS_SLOT)
        self._simple(chunk, cc, "mov_cr3", VALUE=value)

    def _c_mov_cr4(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        self._simple(chunk, cc, "mov_cr4", VALUE=value)

    def _c_mov_cr0(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        self._simple(chunk, cc, "mov_cr0", VALUE=value)

    def _c_wrmsr_efer(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        self._simple(chunk, cc, "wrmsr_efer", LOW=value, HIGH=value >> 32)

    def _c_invlpg(self, chunk: _Chunk, cc: _Compiled, addr: int) -> None:
        if _canonical(addr) and (addr >> 39) & 0x1FF == HARNESS_SLOT:
            return self._const(cc, EINVAL)
        # INVLPG at CPL 0 raises nothing (a non-canonical operand is a no-op): no fault guard
        self.t["invlpg"].emit(chunk.code, ADDR=addr)

    def _c_invpcid(self, chunk: _Chunk, cc: _Compiled, kind: int, pcid: int, addr: int) -> None:
        # the harness's slot is off limits, as for INVLPG; the CPU's own checks (#UD, #GP) come first
        if self.features.get("invpcid") and kind == 0 and pcid <= 0xFFF and _canonical(addr) \
                and (addr >> 39) & 0x1FF == HARNESS_SLOT:
            return self._const(cc, EINVAL)
        desc = SLOTS + SLOT_SIZE * chunk.slots + 16     # in the slot _simple's guard takes
        chunk.descriptors.append((desc, struct.pack("<QQ", pcid & U64, addr & U64)))
        self._simple(chunk, cc, "invpcid", KIND=kind, DESC=PHYS + desc)

    def _c_wrpkru(self, chunk: _Chunk, cc: _Compiled, value: int) -> None:
        # PKRU is 32 bits: a wider value is the program's mistake once CR4.PKE allows WRPKRU
        if value >> 32 and self.cr4_pke:
            return self._const(cc, EINVAL)
        self._simple(chunk, cc, "wrpkru", VALUE=value)

    cr4_pke = False      # CR4.PKE as the last boot set it

    def _simple(self, chunk: _Chunk, cc: _Compiled, template: str, **values: int) -> None:
        """One instruction that may fault, between a guard and the resume point."""
        cc.kind = "fault"
        self._guard(chunk, cc)
        self.t[template].emit(chunk.code, **values)
        self._patch_resume(chunk, cc)

    def _c_access(self, chunk: _Chunk, cc: _Compiled, la: int, op: int, cpl: int, ac: int) -> None:
        if la % 8 or op not in (READ, WRITE, EXEC) or cpl not in (0, 3) or ac not in (0, 1) or not 0 <= la <= U64:
            return self._const(cc, EINVAL)
        if _canonical(la) and (la >> 39) & 0x1FF == HARNESS_SLOT:
            return self._const(cc, EINVAL)
        if cpl == 3 and _canonical(la) and (la >> 39) & 0x1FF in self.features.get("cpl3_reserved_slots", ()):
            raise _Refused(f"CPL 3 access at {la:#x}: kvm-pvm reserves root slot {(la >> 39) & 0x1FF} for "
                           "itself while guest user code runs natively (every access there is a not-present #PF)")
        cc.kind, cc.addr, cc.op, cc.cpl = "access", la, op, cpl
        self._guard(chunk, cc)
        t = self.t
        if cpl == 0:
            if ac:
                t["flags_ac"].emit(chunk.code)
                chunk.ac_dirty = True
            if op == READ:
                t["read"].emit(chunk.code, ADDR=la, DST=PHYS + SLOTS + SLOT_SIZE * cc.slot + 8)
            elif op == WRITE:
                t["write"].emit(chunk.code, ADDR=la, DST=PHYS + SLOTS + SLOT_SIZE * cc.slot + 8)
            else:
                t["exec"].emit(chunk.code, ADDR=la)
        else:
            # IRETQ to the CPL 3 snippet, with RFLAGS.AC as asked
            t["user"].emit(chunk.code, ADDR=la, FLAGS=0x40002 if ac else 0x2, ENTRY=self.code.user_entry[op])
        self._patch_resume(chunk, cc)

    def observe(self) -> Observation:
        """Every qword of the frames the program wrote that no longer holds the pattern (A/D
        included), read from guest memory: what the hw checkpoint comparison reads."""
        import numpy as np
        assert self.vm is not None
        entries: list[tuple[int, int]] = []
        for frame in sorted({pa & ~0xFFF for pa in self.dirty}):
            got = np.frombuffer(self.vm.mem, dtype="<u8", count=512, offset=frame)
            pas = np.arange(frame, frame + 0x1000, 8, dtype=np.uint64)
            want = (pas << np.uint64(8)) | np.uint64(0xCC)
            # root[511] holding the harness's own entry is the harness's, not the program's
            entries += [(int(pas[i]), int(got[i])) for i in np.nonzero(got != want)[0]
                        if not (i == HARNESS_SLOT and int(got[i]) == HARNESS_ENTRY)]
        return Observation(extra=(("entries", tuple(entries)),))

    # -- reading outcomes --

    def outcome(self, cc: _Compiled) -> Outcome:
        if cc.kind == "const":
            assert cc.const is not None
            return cc.const
        if cc.kind == "none":
            return OK
        status, value, err, cr2, rax = self.read_slot(cc.slot)
        if cc.kind == "value":
            return Outcome(value=value)
        path = (("path", PATH_CPL3 if cc.cpl == 3 else PATH_CPL0),) if cc.kind == "access" else ()
        if status & ST_EXC:
            vec = status & 0xFF
            cs = status >> 16
            if cc.kind == "access" and cc.cpl == 3 and vec == 13 and value == self.code.user_done[cc.op] \
                    and cs == UCS:
                if cc.op == EXEC:
                    return Outcome(detail=path + (("returned", 1),))
                return Outcome(value=rax, detail=path)
            if cc.kind == "access" and cc.op == EXEC and vec == 3 and value == cc.addr + 1:
                return Outcome(detail=path)           # the fetch ran the int3 of the pattern
            name = VEC_NAMES.get(vec, f"#V{vec}")
            if vec == 14:
                return Outcome(signal="#PF", detail=(("cr2", cr2), ("errcode", err)) + path)
            # as the qemu target reports them: the vector's name, no error code but a #PF's
            return Outcome(signal=name, detail=path + (("cs", cs),) * (cs not in (KCS, UCS)))
        if status == ST_FETCHED:
            why = "INT3 not emulated" if cc.cpl == 0 else "fetch from memory outside RAM not emulated"
            return Outcome(detail=path + (("kvm", f"fetch passed its checks; {why} (KVM_EXIT_INTERNAL_ERROR)"),))
        if status == ST_UNEMULATED:
            return Outcome(signal="KVM_EXIT_INTERNAL_ERROR", detail=path + (("kvm", "emulation failure, suberror 1"),))
        if cc.kind == "fault":
            return OK
        if cc.op == EXEC:
            return Outcome(detail=path + (("returned", 1),))
        if cc.cpl == 3:
            return Outcome(signal="#?", detail=path + (("status", status),))
        return Outcome(value=value, detail=path)

    # -- boot: KVM_SET_SREGS between chunks --

    def boot(self, cr0: int, cr4: int, efer: int) -> tuple[Outcome, str]:
        """(outcome, error message if KVM refused a combination the features allow)."""
        if not (cr0 & CR0_PG and cr0 & CR0_PE and cr4 & CR4_PAE and efer & EFER_LME):
            return EINVAL, ""        # kvm-pvm runs long mode only; the model refuses these too
        if cr4 & ~CR4_KNOWN or efer & ~EFER_KNOWN or cr4 & CR4_PCIDE and self.cr3 & 0xFFF:
            return EINVAL, ""
        need = ((CR4_LA57, "la57"), (CR4_PCIDE, "pcid"), (CR4_SMEP, "smep"), (CR4_SMAP, "smap"), (CR4_PKE, "pku"))
        if any(cr4 & bit and not self.features.get(f) for bit, f in need) or \
                efer & EFER_NXE and not self.features.get("nx"):
            return EINVAL, ""
        assert self.vm is not None
        try:
            self.vm.set_control(cr0, self.vm.control()["cr3"], cr4, efer | EFER_LMA)
        except OSError as e:
            return EINVAL, f"KVM_SET_SREGS refused CR0={cr0:#x} CR4={cr4:#x} EFER={efer | EFER_LMA:#x}: {e.strerror}"
        self.cr4_pke = bool(cr4 & CR4_PKE)
        return OK, ""


EINVAL = Outcome(value=-1, errno="EINVAL")
