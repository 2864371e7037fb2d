"""Kernel page-table isolation as a model (Linux Documentation/arch/x86/pti.rst).

Laws:

* each process has a *kernel* page-table set (its user pages, every kernel page,
  the entry trampoline) and, with KPTI, a *user* set mapping its user pages plus
  only the entry/exit trampoline and what it needs (cpu_entry_area);
* the kernel switches CR3 to the kernel set first thing on syscall entry and back
  to the user set last thing on exit;
* in user mode no kernel-only page is reachable: a CPL 3 load of one is a not-present
  #PF (errcode U) -- not a protection fault, which would mean the page is mapped
  and speculation could read it (Meltdown);
* without PCID every CR3 switch flushes the non-global TLB; with PCID the two sets
  use distinct PCIDs (Linux: kernel ASID + 1, user = kernel | bit 11) and the
  entry/exit switches set CR3 bit 63 (no flush);
* kernel pages are global without KPTI (they survive CR3 writes); with KPTI only the
  trampoline is;
* a context switch that gives a process a PCID last used for another address
  space must flush that PCID (arch/x86/mm/tlb.c ``choose_new_asid``): no stale
  translation of another process is ever used.

The TLB here is a fully associative LRU of ``facts["tlb_entries"]`` translations
tagged by PCID (global: any PCID); it only counts walks and flushes -- every answer
the model expects comes from the current tables.

Worked example: with KPTI_ON|KPTI_PCID, ``syscall_enter(); syscall_exit()`` writes
CR3 twice (PCIDs 1 and 0x801, both with the no-flush bit): KSTAT_CR3_WRITES 2,
KSTAT_FLUSHES 0; with KPTI_ON alone the same pair flushes twice.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from memspec.calls_virt import MAX_PIDS
from memspec.consts import KMAP, KPTI, KSTAT
from memspec.records import OK, Outcome

from .expect import Expect, exactly
from .rules import Rule, compose

KPTI_CALLS = frozenset({"kpti_boot", "kpti_map", "syscall_enter", "syscall_exit", "context_switch",
                        "user_access", "kernel_access", "kpti_stat"})
EINVAL = Outcome(value=-1, errno="EINVAL")
USER, KERNEL, TRAMPOLINE = KMAP["KMAP_USER"], KMAP["KMAP_KERNEL"], KMAP["KMAP_TRAMPOLINE"]
ON, PCID = KPTI["KPTI_ON"], KPTI["KPTI_PCID"]
FLUSHES, WALKS, CR3_WRITES, SYSCALLS = (KSTAT[n] for n in ("KSTAT_FLUSHES", "KSTAT_WALKS", "KSTAT_CR3_WRITES",
                                                           "KSTAT_SYSCALLS"))
USER_TOP = 1 << 47
KERNEL_BASE = 0xFFFF800000000000
NR_DYN_ASIDS = 6          # arch/x86/include/asm/tlbflush.h TLB_NR_DYN_ASIDS
USER_PCID_BIT = 1 << 11   # arch/x86/include/asm/tlbflush.h: user PCID = kernel PCID | (1 << X86_CR3_PTI_PCID_USER_BIT)
GLOBAL = -1
ERR_P, ERR_U = 1, 4


def page(addr: int) -> int:
    return addr >> 12


class Kpti:
    """One CPU running a KPTI (or non-KPTI) kernel: processes, the two table sets, PCIDs, a TLB."""

    def __init__(self, facts: dict[str, Any] | None = None):
        self.capacity = int((facts or {}).get("tlb_entries", 64))
        self.reset(0)
        self.booted = False

    def reset(self, mode: int) -> None:
        self.booted = True
        self.kpti = bool(mode & ON)
        self.pcid = bool(mode & PCID)
        self.user: dict[int, dict[int, int]] = {1: {}}      # pid -> user page -> frame
        self.kernel: dict[int, int] = {}                     # kernel-only page -> frame
        self.tramp: dict[int, int] = {}                      # trampoline page -> frame
        self.cur = 1
        self.in_kernel = False
        self.tlb: OrderedDict[tuple[int, int], tuple[int, bool]] = OrderedDict()
        self.slots: list[int | None] = [None] * NR_DYN_ASIDS  # slot -> pid whose translations it holds
        self.slot_of: dict[int, int] = {1: 0}
        self.slots[0] = 1
        self.next_slot = 1
        self.pending_user_flush: set[int] = set()
        self.counters = [0, 0, 0, 0]
        self.accesses = 0
        self.cr3_pcid = self._user_pcid() if self.kpti else self._kern_pcid()

    # -- the table sets ------------------------------------------------------------

    def _kern_pcid(self) -> int:
        return self.slot_of[self.cur] + 1 if self.pcid else 0

    def _user_pcid(self) -> int:
        return self._kern_pcid() | USER_PCID_BIT if self.pcid else 0

    def user_set(self, pid: int) -> dict[int, tuple[int, bool]]:
        """page -> (frame, user-accessible) of the set active in user mode."""
        m = {p: (f, True) for p, f in self.user.get(pid, {}).items()}
        m.update({p: (f, False) for p, f in self.tramp.items()})
        if not self.kpti:
            m.update({p: (f, False) for p, f in self.kernel.items()})
        return m

    def kernel_set(self, pid: int) -> dict[int, tuple[int, bool]]:
        m = {p: (f, True) for p, f in self.user.get(pid, {}).items()}
        m.update({p: (f, False) for p, f in self.tramp.items()})
        m.update({p: (f, False) for p, f in self.kernel.items()})
        return m

    def active(self) -> dict[int, tuple[int, bool]]:
        return self.kernel_set(self.cur) if self.in_kernel or not self.kpti else self.user_set(self.cur)

    def _global(self, pg: int) -> bool:
        return pg in self.tramp or (not self.kpti and pg in self.kernel)

    # -- the TLB -----------------------------------------------------------------------

    def _cr3(self, pcid: int, noflush: bool) -> None:
        self.counters[CR3_WRITES] += 1
        self.cr3_pcid = pcid
        if noflush:
            return
        self.counters[FLUSHES] += 1
        if self.pcid:
            for k in [k for k in self.tlb if k[0] == pcid]:
                del self.tlb[k]
        else:
            for k in [k for k in self.tlb if k[0] != GLOBAL]:
                del self.tlb[k]

    def touch(self, addr: int) -> tuple[int, bool] | None:
        """One access through the TLB: a hit, or a walk of the active set (counted) that fills it."""
        self.accesses += 1
        pg = page(addr)
        for key in ((self.cr3_pcid, pg), (GLOBAL, pg)):
            if key in self.tlb:
                self.tlb.move_to_end(key)
                return self.tlb[key]
        self.counters[WALKS] += 1
        hit = self.active().get(pg)
        if hit is not None:
            self.tlb[(GLOBAL if self._global(pg) else self.cr3_pcid, pg)] = hit
            while len(self.tlb) > self.capacity:
                self.tlb.popitem(last=False)
        return hit

    # -- LayerModel, for the KPTI calls ------------------------------------------------

    def expect(self, name: str, args: tuple) -> Expect:
        if name != "kpti_boot" and not self.booted:
            return exactly("memspec.kpti.boot-first", EINVAL)
        return self.RULES[name].expect(self, *args)

    def apply(self, name: str, args: tuple, o: Outcome) -> None:
        if o.errno:
            return
        f = self.RULES[name].apply
        if f is not None:
            f(self, o, *args)

    def invariants(self) -> list[tuple[str, str]]:
        """``no_kernel_page_in_user_set`` and ``no_stale_translation_across_processes``."""
        if not self.booted:
            return []
        bad = []
        if self.kpti and not self.in_kernel:
            leaked = [p for p in self.active() if p in self.kernel and p not in self.tramp]
            if leaked:
                bad.append(("linux.pti.user-set-no-kernel",
                            f"process {self.cur} in user mode: kernel page {leaked[0] << 12:#x} is mapped in the user set"))
        act = self.active()
        for (pcid, pg), val in self.tlb.items():
            if pcid in (self.cr3_pcid, GLOBAL) and act.get(pg) != val:
                bad.append(("linux.pti.pcid-flush-on-reuse",
                            f"the TLB holds page {pg << 12:#x} -> {val[0]:#x} under PCID {pcid:#x}, but process "
                            f"{self.cur}'s tables map {act.get(pg)}"))
                break
        if self.kpti and self.pcid and self._kern_pcid() == self._user_pcid():
            bad.append(("linux.pti.pcid-distinct", "the kernel and user sets share a PCID"))
        return bad

    def _x_kpti_boot(self, mode: int) -> Expect:
        if mode & ~(ON | PCID):
            return exactly("memspec.kpti.args", EINVAL)
        return exactly("linux.pti.boot", OK)

    def _a_kpti_boot(self, o: Outcome, mode: int) -> None:
        self.reset(mode)

    def _x_kpti_map(self, addr: int, frame: int, kind: int) -> Expect:
        if addr % 4096 or frame % 4096 or not 0 <= frame < 1 << 52 or kind not in (USER, KERNEL, TRAMPOLINE):
            return exactly("memspec.kpti.args", EINVAL)
        if kind == USER and not 0 <= addr < USER_TOP or kind != USER and not KERNEL_BASE <= addr < 1 << 64:
            return exactly("memspec.kpti.args", EINVAL)
        if kind == TRAMPOLINE:
            return exactly("linux.pti.trampoline-in-user-set", OK)
        return exactly("linux.pti.kernel-set-maps-all" if kind == KERNEL else "linux.pti.user-set-maps-user", OK)

    def _a_kpti_map(self, o: Outcome, addr: int, frame: int, kind: int) -> None:
        pg = page(addr)
        for d in (self.kernel, self.tramp, self.user.setdefault(self.cur, {})):
            d.pop(pg, None)
        {USER: self.user[self.cur], KERNEL: self.kernel, TRAMPOLINE: self.tramp}[kind][pg] = frame
        # the kernel invalidates the page everywhere (flush_tlb_mm_range / flush_tlb_kernel_range)
        for k in [k for k in self.tlb if k[1] == pg]:
            del self.tlb[k]

    def _x_syscall_enter(self) -> Expect:
        if self.in_kernel:
            return exactly("memspec.kpti.mode-args", EINVAL)
        return exactly("linux.pti.entry-switches-cr3" if self.kpti else "linux.pti.off-no-switch", OK)

    def _a_syscall_enter(self, o: Outcome) -> None:
        self.in_kernel = True
        self.counters[SYSCALLS] += 1
        if self.kpti:
            self._cr3(self._kern_pcid(), noflush=self.pcid)

    def _x_syscall_exit(self) -> Expect:
        if not self.in_kernel:
            return exactly("memspec.kpti.mode-args", EINVAL)
        return exactly("linux.pti.exit-switches-cr3" if self.kpti else "linux.pti.off-no-switch", OK)

    def _a_syscall_exit(self, o: Outcome) -> None:
        self.in_kernel = False
        if self.kpti:
            slot = self.slot_of.get(self.cur, -1)
            flush = not self.pcid or slot in self.pending_user_flush
            self.pending_user_flush.discard(slot)
            self._cr3(self._user_pcid(), noflush=not flush)

    def _x_context_switch(self, pid: int) -> Expect:
        if not self.in_kernel or not 1 <= pid <= MAX_PIDS:
            return exactly("memspec.kpti.mode-args", EINVAL)
        return exactly("linux.pti.context-switch", OK)

    def _a_context_switch(self, o: Outcome, pid: int) -> None:
        if pid == self.cur:
            return
        self.user.setdefault(pid, {})
        if not self.pcid:
            self.cur = pid
            self._cr3(0, noflush=False)
            return
        slot = self.slot_of.get(pid)
        if slot is not None and self.slots[slot] == pid:
            self.cur = pid
            self._cr3(self._kern_pcid(), noflush=True)
            return
        # choose_new_asid: a slot last used by another address space is flushed before reuse
        slot = self.next_slot % NR_DYN_ASIDS
        self.next_slot += 1
        old = self.slots[slot]
        if old is not None:
            self.slot_of.pop(old, None)
        self.slots[slot] = pid
        self.slot_of[pid] = slot
        self.cur = pid
        self._cr3(self._kern_pcid(), noflush=False)
        if self.kpti:
            self.pending_user_flush.add(slot)
            for k in [k for k in self.tlb if k[0] == self._user_pcid()]:
                del self.tlb[k]

    def _fresh(self, addr: int, cpl: int) -> tuple[Outcome, str]:
        hit = self.active().get(page(addr))
        u = ERR_U if cpl == 3 else 0
        if hit is None:
            if cpl == 3 and self.kpti and page(addr) in self.kernel:
                return Outcome(signal="#PF", detail=(("cr2", addr), ("errcode", u))), "linux.pti.user-set-no-kernel"
            return Outcome(signal="#PF", detail=(("cr2", addr), ("errcode", u))), "linux.pti.not-mapped-pf"
        frame, user = hit
        if cpl == 3 and not user:
            clause = "linux.pti.trampoline-in-user-set" if page(addr) in self.tramp else "linux.pti.off-kernel-mapped"
            return Outcome(signal="#PF", detail=(("cr2", addr), ("errcode", ERR_P | u))), clause
        return Outcome(value=frame | (addr & 0xFFF)), ("linux.pti.user-set-maps-user" if cpl == 3
                                                        else "linux.pti.kernel-set-maps-all")

    def _access_expect(self, addr: int, cpl: int) -> Expect:
        want, clause = self._fresh(addr, cpl)
        # the answer this CPU gives: through its TLB (equal to the tables unless a flush was missed)
        hit = self._peek(addr)
        default = want
        if hit is not None and (hit[1] or cpl == 0):
            default = Outcome(value=hit[0] | (addr & 0xFFF))
        if default != want:
            clause = "linux.pti.pcid-flush-on-reuse"

        def allowed(o: Outcome) -> str | None:
            if (o.value, o.signal, dict(o.detail).get("errcode"), dict(o.detail).get("cr2")) == \
                    (want.value, want.signal, dict(want.detail).get("errcode"), dict(want.detail).get("cr2")):
                return None
            return f"expected {_show(want)}, observed {_show(o)} (process {self.cur}, " \
                   f"{'kernel' if self.in_kernel else 'user'} mode, KPTI {'on' if self.kpti else 'off'})"
        covers: tuple[str, ...] = ()
        if cpl == 3 and self.kpti:
            covers += ("linux.pti.user-set-no-kernel",)      # the answer reflects the user set's contents
        if self.pcid and len(self.user) > 1:
            covers += ("linux.pti.pcid-flush-on-reuse", "linux.pti.pcid-distinct")
        return Expect(clause, default, _show(want), predicate=allowed,
                      blame_by=lambda o: self._blame(o, addr, cpl, clause), covers=covers)

    def _blame(self, o: Outcome, addr: int, cpl: int, clause: str) -> str:
        if o.ok and o.value is not None:
            for pid, m in self.user.items():
                if pid != self.cur and m.get(page(addr)) == o.value & ~0xFFF:
                    return "linux.pti.pcid-flush-on-reuse"
        if cpl == 3 and self.kpti and page(addr) in self.kernel and o.signal == "#PF" and \
                dict(o.detail).get("errcode", 0) & ERR_P:
            return "linux.pti.user-set-no-kernel"
        return clause

    def _peek(self, addr: int) -> tuple[int, bool] | None:
        pg = page(addr)
        for key in ((self.cr3_pcid, pg), (GLOBAL, pg)):
            if key in self.tlb:
                return self.tlb[key]
        return None

    def _x_user_access(self, addr: int) -> Expect:
        if self.in_kernel or not 0 <= addr < 1 << 64:
            return exactly("memspec.kpti.mode-args", EINVAL)
        return self._access_expect(addr, 3)

    def _a_user_access(self, o: Outcome, addr: int) -> None:
        self.touch(addr)

    def _x_kernel_access(self, addr: int) -> Expect:
        if not self.in_kernel or not 0 <= addr < 1 << 64:
            return exactly("memspec.kpti.mode-args", EINVAL)
        return self._access_expect(addr, 0)

    def _a_kernel_access(self, o: Outcome, addr: int) -> None:
        self.touch(addr)

    def _x_kpti_stat(self, counter: int) -> Expect:
        if not 0 <= counter < len(self.counters):
            return exactly("memspec.kpti.args", EINVAL)
        v = self.counters[counter]
        if counter == WALKS:
            top = self.accesses

            def allowed(o: Outcome) -> str | None:
                if o.ok and o.value is not None and 0 <= o.value <= top:
                    return None
                return f"expected a walk count in 0..{top}, observed {o.describe()}"
            return Expect("memspec.kpti.walks-bounded", Outcome(value=v), f"0..{top}", predicate=allowed,
                          impl_defined=True)
        clause = {FLUSHES: "linux.pti.pcid-no-flush" if self.pcid else "linux.pti.no-pcid-flush",
                  CR3_WRITES: "linux.pti.entry-switches-cr3", SYSCALLS: "memspec.kpti.syscalls-counted"}[counter]
        return exactly(clause, Outcome(value=v))

    def _a_kpti_stat(self, o: Outcome, counter: int) -> None:
        pass

    # the rules of this model's calls, by name (model.rules.compose checks them against the call table)
    RULES = compose("virt", {
        "kpti_boot": Rule(_x_kpti_boot, _a_kpti_boot),
        "kpti_map": Rule(_x_kpti_map, _a_kpti_map),
        "syscall_enter": Rule(_x_syscall_enter, _a_syscall_enter),
        "syscall_exit": Rule(_x_syscall_exit, _a_syscall_exit),
        "context_switch": Rule(_x_context_switch, _a_context_switch),
        "user_access": Rule(_x_user_access, _a_user_access),
        "kernel_access": Rule(_x_kernel_access, _a_kernel_access),
        "kpti_stat": Rule(_x_kpti_stat, _a_kpti_stat),
    }, lead=(1, 2), only=KPTI_CALLS)


def _show(o: Outcome) -> str:
    if o.signal == "#PF":
        d = dict(o.detail)
        return f"#PF errcode={d.get('errcode', 0):#x} cr2={d.get('cr2', 0):#x}"
    return o.describe()
