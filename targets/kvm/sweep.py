"""The kvm target's sweep runner: a batch of ``memspec.sweepspace.Items`` in a few KVM_RUNs.

Every access gets its own tree, written by the host straight into guest memory: a second memory
slot above the guest's RAM (``TREES``) holds the trees' pages, the entries are the batch's with
their table addresses moved to the tree's own pages (flags, reserved bits and leaf frames are the
sweep's: the leaf frames are in RAM and hold the pattern).  ``PER_ROOT`` trees share a root page,
each in its own root slot (1..255: never kvm-pvm's 256 nor the harness's 511), so CR3 is loaded
once per 255 accesses; the address differs from the sweep's in its top-level index only, and
CR2 is taken back to the sweep's address.  Host writes are invisible to KVM's shadow MMU
(docs/findings/kvm.md), so no table page is used twice while KVM may hold a shadow of it: the
pages of one batch are all distinct, and between batches the trees' memory slot is deleted and
added again, which makes KVM drop every shadow page it built from it (without that, CPL 3 reads
through leaves the next batch made not present still succeeded; a test checks that they fault).

The guest code is ``t_sweep`` of guest.S: a loop over 80-byte records in RAM (root or 0, address,
the stub that makes the access, RFLAGS, the CPL 3 snippet; then the result slot the exception
handler fills).  Per record it makes the access (at CPL 0 in KVM's emulator, at CPL 3 by IRETQ to
the target's user snippets, which run natively on the shadow MMU) and goes on with the next; a
fault goes through the IDT to the common handler, which records vector, error code and CR2 and
resumes the loop.  The control registers, EFER and PKRU are the same for a run of records (the
sweep's order keeps them together): one KVM_SET_SREGS and one KVM_RUN per such run.  A CPL 0
fetch that reaches the pattern's INT3 ends KVM_RUN (kvm-pvm does not emulate INT3 at CPL 0: the
fetch passed every check), and the loop resumes at the next record.  The A/D flags are read from
the trees' memory afterwards.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import struct
import time
from typing import Any

import numpy as np

from memspec.calls_hw import HARNESS_SLOT, RAM_SIZE
from memspec.errors import TargetError
from memspec.sweepspace import ALLOWED, GP, OTHER, PF, TABLES, Items, Observed, ad_of, index_at

from ..sweep import FEATURES, SweepRunner
from .guest import (CODE, CR4_PKE, EFER_LMA, EXEC, HARNESS_ENTRY, KTOP, PHYS, READ, STATIC_PAGES, ST_EXC,
                    ST_FETCHED, ST_RETURNED, ST_UNEMULATED, UCS, WRITE, _image, _Vm, code)
from .ioctl import EXIT_HLT, EXIT_INTERNAL_ERROR, EXIT_NAMES, KVM_SET_USER_MEMORY_REGION, _GuestTimeout
from .klog import KernelLog

TREES = RAM_SIZE                # guest-physical: the trees' memory slot, right above RAM
MAX_TREES = 4096                # per VM (a batch over this runs in several VMs)
MAX_LEVELS = 5
PER_ROOT = 255                  # trees under one root page (root slots 1..255: never 256 and up, kvm-pvm's and the harness's)
RECORDS = 0x1000000             # guest-physical, in RAM: no sweep frame is there (memspec.sweepspace)
RECORD = 80                     # bytes; the result slot at 40
NOT_RUN = 0xDEAD                # a slot's status before its access ran
U64 = np.uint64


class KvmRunner(SweepRunner):
    """A sweep on the kvm target (``targets.kvm.KvmTarget``): see the module docstring."""

    name = "kvm"
    reuse = True                # one VM for the whole sweep, its trees' slot deleted and added between batches

    def __init__(self, target: Any) -> None:
        self.target = target
        f = target.facts()
        self.facts = {k: f[k] for k in FEATURES}
        self.facts["impl_version"] = str(f.get("impl_version", ""))
        self.legacy = {"32bit": f.get("kvm_legacy32"), "pae": f.get("kvm_pae32")}
        self.timeout = float(getattr(target, "timeout", 10.0) or 10.0)
        self.trees = mmap.mmap(-1, MAX_TREES * MAX_LEVELS * 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.trees_addr = ctypes.addressof(ctypes.c_char.from_buffer(self.trees))
        self.tq = np.frombuffer(self.trees, dtype="<u8")
        c = code()
        start = c.assembled.symbols["t_sweep"][1]
        at = {name: PHYS + CODE + c.assembled.symbols[name][1] - start
              for name in ("sweep_pkru", "sweep_next", "sweep_read", "sweep_write", "sweep_exec", "sweep_user",
                           "sweep_end")}
        self.at = at
        self.code = c.t["sweep"].code
        self.user_entry = c.user_entry
        self.user_done = c.user_done
        self.vm: _Vm | None = None
        self.vms = 0            # VMs made
        self.runs = 0           # KVM_RUN calls

    def refuse(self, mode: str) -> str:
        """Why this runner cannot sweep ``mode``: for PAE and 32-bit paging, what the target's probe found
        first (kvm-pvm pages only in long mode: its protected-mode guest shuts down at CR0.PG = 1)."""
        if self.legacy.get(mode) is False:
            what = "PAE" if mode == "pae" else "32-bit"
            return (f"--mode {mode}: this KVM ({self.facts['impl_version'] or 'version unknown'}) runs no {what} "
                    f"paging: the kvm target's feature probe booted a protected-mode guest with {what} paging and it "
                    "did not reach its first access (kvm-pvm pages only in long mode; the vCPU shuts down), so the kvm "
                    "target sweeps 4level and 5level paging only (5level where the probe finds LA57)")
        return super().refuse(mode)

    def close(self) -> None:
        self.discard()
        del self.tq
        try:
            self.trees.close()
        except BufferError:
            pass

    # -- one batch --

    def run(self, items: Items) -> Observed:
        n = len(items)
        obs = Observed.empty(n)
        for lo in range(0, n, MAX_TREES):
            self._run_part(items, lo, min(n, lo + MAX_TREES), obs)
        return obs

    def _tables(self, items: Items, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Write trees lo..hi into the trees' slot: (the root of each, whether its record loads CR3, the
        address each accesses, the qword index of each level's entry).  ``PER_ROOT`` trees share a root
        page, each in its own root slot (1, 2, ...): the address differs from the sweep's in its top-level
        index only, which the walk does not judge (CR2 is taken back to the sweep's address)."""
        m, L = hi - lo, items.levels
        nroots = -(-m // PER_ROOT)
        t = np.arange(m, dtype=np.int64)
        # pages: the roots first, then L - 1 pages per tree below its root
        page = np.empty((m, L), dtype=np.int64)
        page[:, 0] = t // PER_ROOT
        page[:, 1:] = nroots + t[:, None] * (L - 1) + np.arange(L - 1, dtype=np.int64)[None, :]
        pa = (TREES + page * 4096).astype(np.uint64)
        top = 1 + t % PER_ROOT
        ent = items.entries[lo:hi].copy()
        fetch = items.acc[lo:hi] == 2
        for k in range(L - 1):
            # an entry that points to the next table (not a leaf, not zero): to this tree's own page
            level = L - k
            e = ent[:, k]
            table = (e != 0) & ((e & U64(0x80)) == 0) & (level > 1)
            ent[:, k] = np.where(table, e - U64(TABLES[k + 1]) + pa[:, k + 1], e)
        slot = np.empty((m, L), dtype=np.int64)
        slot[:, 0] = page[:, 0] * 512 + top
        for k in range(1, L):
            level = L - k
            idx = np.where(fetch, index_at(level, L, True), index_at(level, L, False))
            slot[:, k] = page[:, k] * 512 + idx
        q = self.tq
        q[slot.reshape(-1)] = ent.reshape(-1)
        q[np.arange(nroots) * 512 + HARNESS_SLOT] = HARNESS_ENTRY
        # the other PTE index of a last-level page (a fetch uses 5, the others 1): not present
        other = np.where(fetch, index_at(1, L, False), index_at(1, L, True))
        q[page[:, L - 1] * 512 + other] = 0
        load = np.ones(m, dtype=bool)
        load[1:] = page[1:, 0] != page[:-1, 0]
        shift = U64(12 + 9 * (L - 1))
        la = items.la[lo:hi] + ((top.astype(np.uint64) - U64(index_at(L, L))) << shift)
        return pa[:, 0], load, la, slot

    def _run_part(self, items: Items, lo: int, hi: int, obs: Observed) -> None:
        m = hi - lo
        roots, load, la, slot = self._tables(items, lo, hi)
        vm = self._vm()
        ok = False
        try:
            acc = items.acc[lo:hi]
            cpl = items.cpl[lo:hi]
            rec = np.zeros((m, RECORD // 8), dtype=np.uint64)
            rec[:, 0] = np.where(load, roots, U64(0))
            rec[:, 1] = la
            stubs = np.array([self.at["sweep_read"], self.at["sweep_write"], self.at["sweep_exec"]], dtype=np.uint64)
            rec[:, 2] = np.where(cpl == 3, U64(self.at["sweep_user"]), stubs[acc])
            rec[:, 3] = np.where(items.ac[lo:hi] == 1, U64(0x40002), U64(2))
            entries = np.array([self.user_entry[READ], self.user_entry[WRITE], self.user_entry[EXEC]], dtype=np.uint64)
            rec[:, 4] = entries[acc]
            rec[:, 5] = NOT_RUN
            mem = vm.mem
            mem[RECORDS:RECORDS + m * RECORD] = rec.astype("<u8").tobytes()
            mem[CODE:CODE + len(self.code)] = self.code
            # runs of records with the same control registers: one KVM_SET_SREGS and KVM_RUN each
            regs = np.column_stack([items.cr0[lo:hi], items.cr4[lo:hi], items.efer[lo:hi], items.pkru[lo:hi]])
            change = np.ones(m, dtype=bool)
            change[1:] = (regs[1:] != regs[:-1]).any(axis=1)
            starts = np.nonzero(change)[0].tolist() + [m]
            for a, b in zip(starts[:-1], starts[1:]):
                cr0, cr4, efer, pkru = (int(x) for x in regs[a])
                struct.pack_into("<Q", mem, RECORDS + RECORD * a, int(roots[a]))      # a run starts with its root
                self._run_records(vm, a, b, cr0, cr4, efer, pkru, int(roots[a]))
            res = np.frombuffer(mem, dtype="<u8", count=m * RECORD // 8, offset=RECORDS).reshape(m, RECORD // 8)
            res = res[:, 5:].copy()
            got = self.tq[slot.reshape(-1)].reshape(slot.shape).copy()
            ok = True
        finally:
            if not ok or not self.reuse:
                self.discard()
        self._kernel_log()
        self._decode(items, lo, hi, la, res, got, obs)

    def _kernel_log(self) -> None:
        """KVM's kernel-log lines of the batch, kept as the target keeps a program's; one that is not
        routine (a WARNING, a shadow-MMU complaint) stops the sweep at its checkpoint, as it makes a
        program's run an error."""
        t = self.target
        lines = t.log.new_lines()
        t.kernel_log.extend(lines)
        del t.kernel_log[:-1000]
        odd = [ln for ln in lines if not any(r in ln for r in KernelLog.ROUTINE)]
        if odd:
            raise TargetError("KVM logged during a sweep batch: " + " | ".join(odd[:4]))

    def _vm(self) -> _Vm:
        """A VM whose shadow MMU knows nothing of the trees: a new one, or the last one with the trees'
        memory slot deleted and added again (deleting a slot zaps every shadow page KVM built from it)."""
        vm = self.vm
        if vm is not None and all(vm.mem[pg:pg + 4096] == _image()[pg:pg + 4096] for pg in STATIC_PAGES):
            try:
                fcntl.ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, struct.pack("<IIQQQ", 1, 0, TREES, 0, 0))
                self._add_trees(vm)
                return vm
            except OSError:
                pass
        self.discard()
        t = self.target
        vm = self.vm = _Vm(t.kvm, t.machine.cpuid)
        self.vms += 1
        self._add_trees(vm)
        return vm

    def _add_trees(self, vm: _Vm) -> None:
        fcntl.ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, struct.pack("<IIQQQ", 1, 0, TREES, len(self.trees),
                                                                    self.trees_addr))

    def discard(self) -> None:
        if self.vm is not None:
            self.vm.close()
            self.vm = None

    def _run_records(self, vm: _Vm, a: int, b: int, cr0: int, cr4: int, efer: int, pkru: int, root: int) -> None:
        try:
            vm.set_control(cr0, root, cr4, efer | EFER_LMA)
        except OSError as e:
            raise TargetError(f"KVM_SET_SREGS refused CR0={cr0:#x} CR4={cr4:#x} EFER={efer:#x} for a sweep "
                              f"batch: {e.strerror}") from None
        pke = bool(cr4 & CR4_PKE)
        vm.set_regs(rip=self.at["sweep_pkru"] if pke else self.at["sweep_next"], r11=pkru, r12=b - a,
                    r13=PHYS + RECORDS + RECORD * a, r14=PHYS + RECORDS + RECORD * a + 40, r15=self.at["sweep_next"])
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                self.runs += 1
                exit_reason = vm.run(max(left, 0.001))
            except _GuestTimeout:
                raise TargetError(f"the kvm guest did not finish a sweep batch within {self.timeout:g} s") from None
            if exit_reason == EXIT_HLT:
                r = vm.get_regs()
                if r["rip"] == self.at["sweep_end"] + 1:
                    return
                raise TargetError(f"the kvm sweep guest halted at RIP {r['rip']:#x}, not at the end of its loop "
                                  f"(record {(r['r13'] - PHYS - RECORDS) // RECORD - 1})")
            if exit_reason == EXIT_INTERNAL_ERROR and self._skip_unemulated(vm):
                continue
            name = EXIT_NAMES.get(exit_reason, str(exit_reason))
            extra = f" ({vm.internal_error()})" if exit_reason == EXIT_INTERNAL_ERROR else ""
            raise TargetError(f"the kvm sweep guest stopped with KVM_EXIT_{name}{extra}")

    def _skip_unemulated(self, vm: _Vm) -> bool:
        """An instruction KVM's emulator gave up on, in an access: a CPL 0 fetch that reached its target
        (the pattern's INT3, which kvm-pvm does not emulate) passed its checks; anything else in the
        access is recorded as not emulated.  Either way the loop goes on with the next record."""
        sub = struct.unpack_from("<I", vm.run_mm, 32)[0]
        r = vm.get_regs()
        slot = r["r14"] - PHYS
        if sub != 1 or not RECORDS + 40 <= slot < RECORDS + MAX_TREES * RECORD or (slot - RECORDS - 40) % RECORD:
            return False
        status = ST_FETCHED if r["rip"] == r["rbx"] else ST_UNEMULATED
        struct.pack_into("<QQ", vm.mem, slot, status, r["rip"])
        r.update(rip=r["r15"], rsp=KTOP, rflags=2)
        vm.set_regs(**r)
        return True

    def _decode(self, items: Items, lo: int, hi: int, la: np.ndarray, res: np.ndarray, got: np.ndarray,
                obs: Observed) -> None:
        status, value, err, cr2, rax = (res[:, j] for j in range(5))
        if (status == NOT_RUN).any():
            raise TargetError(f"the kvm sweep guest skipped {int((status == NOT_RUN).sum())} accesses")
        acc = items.acc[lo:hi]
        cpl = items.cpl[lo:hi]
        exc = (status & U64(ST_EXC)) != 0
        vec = (status & U64(0xFF)).astype(np.int16)
        cs = status >> U64(16)
        done = np.array([self.user_done[READ], self.user_done[WRITE], self.user_done[EXEC]], dtype=np.uint64)[acc]
        user_ok = exc & (cpl == 3) & (vec == 13) & (cs == U64(UCS)) & (value == done) & (acc != 2)
        fetched = (acc == 2) & ((exc & (vec == 3) & (value == la + U64(1))) | (~exc & (status == U64(ST_FETCHED)))
                                | (~exc & (status == U64(ST_RETURNED))))
        plain = ~exc & (status == 0)
        allowed = user_ok | fetched | plain
        kind = np.where(allowed, ALLOWED, np.where(exc & (vec == 14), PF, np.where(exc & (vec == 13), GP, OTHER)))
        sl = slice(lo, hi)
        obs.kind[sl] = kind.astype(np.uint8)
        obs.vector[sl] = np.where(allowed, -1, np.where(exc, vec, -1)).astype(np.int16)
        obs.errcode[sl] = np.where(kind == PF, err, U64(0)).astype(np.uint32)
        # CR2 against the sweep's own address: the top-level index this runner chose is taken back out
        obs.cr2[sl] = np.where(kind == PF, cr2 - la + items.la[sl], U64(0))
        obs.value[sl] = np.where(allowed & (acc != 2), np.where(cpl == 3, rax, value), U64(0))
        obs.ad[sl] = ad_of(got, items.levels, items.written[sl])


__all__ = ["KvmRunner", "TREES", "RECORDS", "MAX_TREES"]
