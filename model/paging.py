"""The hw layer's model: an x86-64 CPU's paging, MMU checks, A/D updates and TLB (SDM Vol. 3A ch. 4).

State: control registers (CR0, CR3, CR4, EFER, PKRU), the paging entries the
program wrote (all other physical memory holds the harness pattern, see
``memspec.calls_hw``), the history of entry values, roots and invalidations
(``tlb.History``), and the model's own TLB (``tlb.RefTlb``).

Each call's ``expect`` names the clause that decides it; ``access`` allows the
walk of the current tables plus every stale walk the SDM still permits (§4.10),
and ``apply`` adopts what the target did.  A/D bits the model cannot pin down
(set on a walk that faulted, or when a cached translation may have been used)
are tracked as *unsure* bits and judged loosely when read back.

Worked example: PML4E/PDPTE/PDE user, PTE ``P|US`` (read-only) and CR0.WP = 1:
``access(la, ACC_WRITE, 0)`` -> #PF errcode ``P|W`` (sdm.access.wp-supervisor-write);
with WP = 0 the same write succeeds and sets D in the PTE (sdm.ad.dirty-on-write).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from memspec.calls import layer_calls
from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, INITIAL_CR3, RAM_SIZE, pattern
from memspec.records import OK, Outcome

from .blame import LEAF_TRANSLATION, access_blame, entry_blame, matches
from .expect import Expect, exactly as _exactly
from .hw_removed import removed_pass
from .pte import (CR0_PE, CR0_PG, CR0_WP, CR3_NOFLUSH, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_PKE,
                  CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, EXEC, READ, WRITE,
                  ErrCode, Mode, Pte, addr_mask, bits, decode)
from .rules import Rule, Rules, compose
from .segunit import SEG_CALLS, SegUnit
from .tlb import (ALL, ALL_NONGLOBAL, NOTHING_REMOVED, PAGE, PAGE_GLOBAL, PAGE_SIZES, PCID_ALL, History, RefTlb,
                  flat_removed, stale_walks)
from .walk import PageFault, Path, WalkMemo, canonical, check_access, index

U64 = (1 << 64) - 1
EINVAL = Outcome(value=-1, errno="EINVAL")
GP = Outcome(signal="#GP")
UD = Outcome(signal="#UD")

# an Expect is frozen: one per clause and constant outcome serves every call that has it
_exactly_cached = lru_cache(maxsize=1024)(_exactly)
_EXACTLY_OK: dict[str, Expect] = {}


def exactly(clause: str, outcome: Outcome) -> Expect:
    """``expect.exactly``, made once per clause and outcome; the common ``OK`` found by its clause alone
    (an ``Outcome``'s hash is worked out field by field on every lookup)."""
    if outcome is OK:
        e = _EXACTLY_OK.get(clause)
        if e is None:
            e = _EXACTLY_OK[clause] = _exactly(clause, OK)
        return e
    return _exactly_cached(clause, outcome)

DEFAULT_FACTS: dict[str, Any] = {
    "maxphyaddr": 52, "la57": True, "page1g": True, "pcid": True, "invpcid": True,
    "smep": True, "smap": True, "pku": True, "nx": True, "cet": False,
    "ram": RAM_SIZE, "harness_low": HARNESS_LOW,
    # the harness's own top-level entries (root[511]); values only matter if a walk reads them
    "harness_entry4": 0x2000 | 0x27, "harness_entry5": 0x1000 | 0x27,
    "strict_tlb": False,
}

CR4_KNOWN = CR4_PSE | CR4_PAE | CR4_PGE | CR4_LA57 | CR4_PCIDE | CR4_SMEP | CR4_SMAP | CR4_PKE | (1 << 9) | (1 << 10) | (1 << 18)
# CR4.CET (bit 23, SDM Vol. 3A §2.5): loadable by MOV to CR4 on a CPU with CET (CPUID.(EAX=7,
# ECX=0):ECX[7] or EDX[20]) and only while CR0.WP = 1; never part of a boot() the harness makes
CR4_CET = 1 << 23
# CR4.VMXE (bit 13, SDM Vol. 3C §24.7): loadable on a CPU with VMX (CPUID.01H:ECX[5], the `vmx` fact);
# reserved otherwise
CR4_VMXE = 1 << 13
EFER_KNOWN = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE


def _pf(f: PageFault) -> Outcome:
    return Outcome(signal="#PF", detail=(("cr2", f.cr2), ("errcode", f.errcode)))


def describe_pf(o: Outcome) -> str:
    d = dict(o.detail)
    code = d.get("errcode")
    names = "|".join(f.name for f in ErrCode if code is not None and code & f) or "0"
    return f"#PF errcode={code:#x} ({names}) cr2={d.get('cr2', 0):#x}" if code is not None else "#PF"


def show(o: Outcome) -> str:
    if o.signal == "#PF":
        return describe_pf(o)
    loose = dict(o.detail).get("loose")
    return o.describe() + (f" (bits {loose:#x} either way)" if loose else "")


# the hw calls this model governs itself; the segmentation calls are model.segunit's
_OWN_CALLS = frozenset(c.name for c in layer_calls("hw")) - SEG_CALLS


def _rules_of(cls: type) -> Rules:
    """The class's rules by call name: its ``_expect_<call>`` and ``_apply_<call>`` for every call it
    governs, composed and checked (a missing method or a wrong arity fails when the class is made).
    Taken from the class, so a subclass (a test's deliberately broken walker) that overrides one
    method has that method in its table."""
    return compose("hw", {n: Rule(getattr(cls, "_expect_" + n), getattr(cls, "_apply_" + n)) for n in sorted(_OWN_CALLS)},
                   lead=(1, 2), only=_OWN_CALLS, names=False)


def _dispatch(rules: Rules) -> tuple[dict[str, Any], dict[str, Any]]:
    """(call name -> its rule's expect, call name -> its rule's apply): the hw calls the model governs
    itself (the segmentation calls are not there: model.segunit's)."""
    return {n: r.expect for n, r in rules.items()}, {n: r.apply for n, r in rules.items()}


_LEAF_AD = frozenset({"sdm.ad.dirty-on-write", "sdm.ad.no-dirty-on-read"})
# what an access's Expect is made of (``Paging._lean_access``)
_ACCESS_PARTS = ("_outcome_of", "_candidates", "_explained", "_removed_outcomes", "_without_rights", "_entry_read",
                 "_is_harness_entry", "read", "mode", "root", "_harness_slot", "entry_blame", "_fresh_blame",
                 "_tlb_default", "_exercised", "_pk_also", "_expect_access", "explain")


class Paging:
    """One x86-64 logical processor's paging state (see the module docstring)."""

    procs: tuple[str, ...] = ()     # no processes at this layer (the judge's os-layer context is empty)

    RULES: Rules       # set below, and for each subclass when it is made

    # whether ``_expect_access`` may keep an access's outcome and Expect (``_access_memo``): only with
    # this class's own parts (a test's deliberately broken subclass decides afresh every time)
    _lean_access = True

    # the RULES' functions by call name, read by ``expect`` and ``apply`` (one dict lookup a call)
    _EXPECTS: dict[str, Any]
    _APPLIES: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.RULES = _rules_of(cls)
        cls._EXPECTS, cls._APPLIES = _dispatch(cls.RULES)
        cls._lean_access = all(getattr(cls, n) is getattr(Paging, n) for n in _ACCESS_PARTS)

    def __init__(self, facts: dict[str, Any] | None = None):
        f = dict(DEFAULT_FACTS)
        f.update(facts or {})
        self.facts = f
        self.maxphy = int(f["maxphyaddr"])
        self.ram = int(f["ram"])
        self.low = int(f["harness_low"])
        self.strict = bool(f["strict_tlb"])
        self.cr0 = CR0_PG | CR0_PE | CR0_WP
        self.cr4 = CR4_PAE
        self.efer = EFER_LME | EFER_LMA | (EFER_NXE if f["nx"] else 0)
        self.pkru = 0
        self._mode_key: tuple[int, ...] | None = None
        self._mode: Mode | None = None
        self.cr3 = INITIAL_CR3
        self.mem: dict[int, int] = {}          # qwords the program (or the CPU's A/D updates) changed
        self.unsure: dict[int, int] = {}       # addr -> bits the CPU may or may not have set
        self.ad_clause: dict[int, str] = {}    # addr -> clause that last decided its A/D bits
        # addr -> (A/D bits an access set, the invalidation that removed a translation which would have
        # served that access the same way without setting them): whom to blame if they read back clear
        self.ad_stale: dict[int, tuple[int, str]] = {}
        self.history = History()
        self.tlb = RefTlb()
        self.walks = WalkMemo()       # the current walk, found again by its entries' values
        # (id of the current walk, la, acc, cpl, ac) -> [walk, mode, pa, its outcome, clause, {clause: Expect}]:
        # a successful access whose data is the pattern (``pa`` not in ``mem``), see ``_expect_access``
        self._access_memo: dict[tuple, list] = {}
        # (removed walks, outcome, those giving its data): ``removed_pass``'s second answer, for the apply
        self._giving_of: tuple | None = None
        self._cr3_expects: dict[tuple[int, int], Expect] = {}     # (value, CR4.PCIDE) -> mov_cr3's Expect
        self._amask = addr_mask(self.maxphy)
        self._harness4, self._harness5 = int(f["harness_entry4"]), int(f["harness_entry5"])
        self._la_seen: dict[int, tuple[Mode, bool, bool]] = {}   # la -> (mode, canonical?, harness slot?)
        self._page1g = bool(f["page1g"])
        self._last: dict[str, Any] = {}
        # what the TLB law was last checked on (``invariants``): the entries list, its size, the events
        self._inv_entries: list | None = None
        self._inv_size = self._inv_events = -1
        self._write_harness_entry()
        self.history.load_root(self.root, self.pcid)
        self.seg = SegUnit(f)       # the segmentation calls' own logical processor (memspec.calls_hw)

    # -- state helpers -------------------------------------------------------

    @property
    def mode(self) -> Mode:
        key = (self.cr0, self.cr4, self.efer, self.pkru)
        if self._mode_key != key:
            self._mode_key = key
            self._mode = Mode(self.cr0, self.cr4, self.efer, self.pkru, self.maxphy)
        return self._mode

    @property
    def root(self) -> int:
        return self.cr3 & self._amask       # addr_mask(self.maxphy)

    @property
    def pcid(self) -> int:
        return self.cr3 & 0xFFF if self.cr4 & CR4_PCIDE else 0

    def read(self, pa: int) -> int:
        """The qword at physical ``pa`` as the model knows it (the pattern where never written)."""
        v = self.mem.get(pa)
        return pattern(pa) if v is None else v

    def known(self, pa: int) -> bool:
        return self.low <= pa < self.ram or pa in self.mem

    def _write_harness_entry(self) -> None:
        addr = (self.cr3 & self._amask) | (HARNESS_SLOT << 3)      # self.root's
        new = self._harness5 if self.cr4 & CR4_LA57 else self._harness4
        old = self.read(addr)
        if old != new:
            self.mem[addr] = new
            self.history.write(addr, old, new)

    def _store(self, pa: int, value: int) -> None:
        old = self.read(pa)
        self.mem[pa] = value
        self.unsure.pop(pa, None)
        self.ad_clause.pop(pa, None)
        self.ad_stale.pop(pa, None)
        if old != value:
            self.history.write(pa, old, value)

    def _invalidate(self, kind: str, pcid: int, addr: int, clause: str) -> None:
        self.history.invalidate(kind, pcid, addr, clause)
        self.tlb.apply(self.history.events[-1])

    def _harness_slot(self, la: int) -> bool:
        return index(la, 5 if self.cr4 & CR4_LA57 else 4) == HARNESS_SLOT and canonical(la, self.mode)

    def _table_ok(self, table: int, idx: int) -> bool:
        return table % 4096 == 0 and self.low <= table < self.ram and 0 <= idx < HARNESS_SLOT

    # -- LayerModel ----------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        f = self._EXPECTS.get(name)
        if f is None:
            return self.seg.expect(name, args)      # SEG_CALLS
        return f(self, *args)

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        f = self._APPLIES.get(name)
        if f is None:
            self.seg.apply(name, args, outcome)     # SEG_CALLS
            return
        f(self, outcome, *args)

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        pass

    # the judge's check after each step (``full=False``) looks at the reference TLB only when it or
    # the invalidations changed since the last look
    incremental_invariants = True

    def invariants(self, full: bool = True) -> list[tuple[str, str]]:
        """No reference-TLB entry outlives an invalidation that covers it; A/D never unset by the CPU.

        ``full=False``: the TLB's entries are looked at only if an invalidation was recorded or the
        entries changed (a fill, a drop) since the last look: the law reads nothing else, so it holds
        as it did.  Example: after ``set_pte`` (no invalidation, no fill) only the unsure bits."""
        entries, n_events = self.tlb.entries, len(self.history.events)
        if not full and entries is self._inv_entries and len(entries) == self._inv_size and \
                n_events == self._inv_events:
            if not self.unsure:
                return []       # nothing the law reads changed, and no bit is uncertain
            entries = []
        bad: list[tuple[str, str]] = []
        for e in entries:
            ev = self.history.killed(e.created, e.pcid if e.pcid >= 0 else -1, e.la_base, e.path.size, e.pcid == -1)
            if ev is not None:
                bad.append((ev.clause, f"a translation of {e.la_base:#x} (PCID {e.pcid}) survived {ev.kind} "
                                       f"invalidation at time {ev.time}"))
        if not bad:     # looked at and found holding: the next step's look may be left out
            self._inv_entries, self._inv_size, self._inv_events = self.tlb.entries, len(self.tlb.entries), n_events
        for addr, mask in self.unsure.items():
            if mask & ~0x60:
                bad.append(("sdm.ad.only-a-d", f"entry {addr:#x}: bits {mask:#x} beyond A/D are uncertain"))
        return bad

    # -- boot, control registers ---------------------------------------------

    def _expect_boot(self, cr0: int, cr4: int, efer: int) -> Expect:
        if not (cr0 & CR0_PG and cr0 & CR0_PE and cr4 & CR4_PAE and efer & EFER_LME):
            return exactly("memspec.hw.boot-long-mode", EINVAL)
        if cr4 & ~CR4_KNOWN or efer & ~EFER_KNOWN or cr4 & CR4_PCIDE and self.cr3 & 0xFFF:
            return exactly("memspec.hw.boot-long-mode", EINVAL)
        missing = self._unsupported_cr4(cr4) or (efer & EFER_NXE and not self.facts["nx"])
        if missing:
            return exactly("memspec.hw.boot-feature", EINVAL)
        return exactly("memspec.hw.boot", OK)

    def _apply_boot(self, o: Outcome, cr0: int, cr4: int, efer: int) -> None:
        if not o.ok:
            return
        self.cr0, self.cr4, self.efer = cr0, cr4, efer | EFER_LMA
        self._write_harness_entry()
        self._invalidate(ALL, 0, 0, "memspec.hw.boot")
        self.history.load_root(self.root, self.pcid)

    def _unsupported_cr4(self, cr4: int) -> bool:
        need = ((CR4_LA57, "la57"), (CR4_PCIDE, "pcid"), (CR4_SMEP, "smep"), (CR4_SMAP, "smap"), (CR4_PKE, "pku"),
                (CR4_CET, "cet"), (CR4_VMXE, "vmx"))
        return any(cr4 & bit and not self.facts.get(f, False) for bit, f in need)

    def _expect_mov_cr3(self, value: int) -> Expect:
        # the answer reads only the value, CR4.PCIDE and the facts: kept per (value, PCIDE)
        key = (value, self.cr4 & CR4_PCIDE)
        e = self._cr3_expects.get(key)
        if e is None:
            if len(self._cr3_expects) >= 256:
                self._cr3_expects.clear()
            e = self._cr3_expects[key] = self._decide_mov_cr3(value)
        return e

    def _decide_mov_cr3(self, value: int) -> Expect:
        pcide = bool(self.cr4 & CR4_PCIDE)
        noflush = bool(value & CR3_NOFLUSH) and pcide
        v = value & ~CR3_NOFLUSH if pcide else value
        # SDM MOV CR: #GP(0) on a 1 in a reserved bit of CR3 (bits 63:MAXPHYADDR; bit 63 is the
        # no-flush hint only with CR4.PCIDE = 1)
        if v & bits(63, self.maxphy):
            return exactly("sdm.cr3.rsvd-gp", GP)
        root = v & addr_mask(self.maxphy)
        if not self.low <= root < self.ram:
            return exactly("memspec.hw.root-in-ram", EINVAL)
        if noflush:
            return exactly("sdm.tlb.cr3-noflush", OK)
        if pcide:
            return exactly("sdm.tlb.cr3-flush-pcid", OK)
        return exactly("sdm.tlb.cr3-flush-nonglobal", OK)

    def _apply_mov_cr3(self, o: Outcome, value: int) -> None:
        if not o.ok:
            return
        pcide = self.cr4 & CR4_PCIDE
        self.cr3 = cr3 = value & ~CR3_NOFLUSH & U64
        self._write_harness_entry()
        pcid = cr3 & 0xFFF if pcide else 0          # self.pcid
        self.history.load_root(self.root, pcid)
        if value & CR3_NOFLUSH and pcide:
            return
        if pcide:
            self._invalidate(PCID_ALL, pcid, 0, "sdm.tlb.cr3-flush-pcid")
        else:
            self._invalidate(PCID_ALL, 0, 0, "sdm.tlb.cr3-flush-nonglobal")

    def _expect_mov_cr4(self, value: int) -> Expect:
        old = self.cr4
        if value & ~(CR4_KNOWN | CR4_CET | CR4_VMXE) or self._unsupported_cr4(value):
            return exactly("sdm.cr4.rsvd-gp", GP)
        if value & CR4_CET and not self.cr0 & CR0_WP:
            return exactly("sdm.cr4.cet-without-wp-gp", GP)
        if not value & CR4_PAE:
            return exactly("sdm.cr4.pae-clear-gp", GP)
        if (value ^ old) & CR4_LA57:
            return exactly("sdm.cr4.la57-change-gp", GP)
        if value & CR4_PCIDE and not old & CR4_PCIDE and self.cr3 & 0xFFF:
            return exactly("sdm.cr4.pcide-cr3-gp", GP)
        if (value ^ old) & CR4_PGE:
            return exactly("sdm.tlb.cr4-pge-flush", OK)
        if old & CR4_PCIDE and not value & CR4_PCIDE:
            return exactly("sdm.tlb.cr4-pcide-off-flush", OK)
        return exactly("sdm.cr4.load", OK)

    def _apply_mov_cr4(self, o: Outcome, value: int) -> None:
        if not o.ok:
            return
        old, self.cr4 = self.cr4, value
        if (value ^ old) & CR4_PGE:
            self._invalidate(ALL, 0, 0, "sdm.tlb.cr4-pge-flush")
        elif old & CR4_PCIDE and not value & CR4_PCIDE:
            self._invalidate(ALL, 0, 0, "sdm.tlb.cr4-pcide-off-flush")
        if (value ^ old) & CR4_PCIDE:
            self.history.load_root(self.root, self.pcid)

    def _expect_mov_cr0(self, value: int) -> Expect:
        if value >> 32:
            return exactly("sdm.cr0.rsvd-gp", GP)
        if not value & CR0_PG or not value & CR0_PE:
            return exactly("sdm.cr0.pg-clear-long-mode-gp", GP)
        if value & (1 << 29) and not value & (1 << 30):   # NW = 1 with CD = 0
            return exactly("sdm.cr0.nw-without-cd-gp", GP)
        if not value & CR0_WP and self.cr4 & CR4_CET:
            return exactly("sdm.cr0.wp-clear-cet-gp", GP)
        return exactly("sdm.cr0.wp-load", OK)

    def _apply_mov_cr0(self, o: Outcome, value: int) -> None:
        if o.ok:
            self.cr0 = value

    def _expect_wrmsr_efer(self, value: int) -> Expect:
        if value & ~EFER_KNOWN or (value & EFER_NXE and not self.facts["nx"]):
            return exactly("sdm.efer.rsvd-gp", GP)
        if not value & EFER_LME:
            return exactly("sdm.efer.lme-change-gp", GP)
        return exactly("sdm.efer.nxe-load", OK)

    def _apply_wrmsr_efer(self, o: Outcome, value: int) -> None:
        if o.ok and self.efer & EFER_NXE and not value & EFER_NXE:
            self.history.nxe_cleared = self.history.tick()
        if o.ok:
            self.efer = (value & ~EFER_LMA) | EFER_LMA   # LMA is read-only (set by the processor)

    def _expect_wrpkru(self, value: int) -> Expect:
        if not self.cr4 & CR4_PKE:
            return exactly("sdm.pkeys.wrpkru-ud", UD)
        if value >> 32:
            return exactly("memspec.hw.pkru-32bit", EINVAL)
        return exactly("sdm.pkeys.wrpkru", OK)

    def _apply_wrpkru(self, o: Outcome, value: int) -> None:
        if o.ok:
            self.pkru = value

    # -- paging entries ------------------------------------------------------

    def _expect_set_pte(self, table: int, idx: int, frame: int, flags: int) -> Expect:
        if not self._table_ok(table, idx) or not 0 <= frame | flags <= U64:
            return exactly("memspec.hw.table-args", EINVAL)
        return exactly("memspec.hw.set-pte", OK)

    def _apply_set_pte(self, o: Outcome, table: int, idx: int, frame: int, flags: int) -> None:
        if o.ok:
            self._store(table + 8 * idx, (frame | flags) & U64)

    def _expect_read_pte(self, table: int, idx: int) -> Expect:
        if not self._table_ok(table, idx):
            return exactly("memspec.hw.table-args", EINVAL)
        addr = table + 8 * idx
        want = self.read(addr)
        loose = self.unsure.get(addr, 0)
        clause = self.ad_clause.get(addr, "memspec.hw.entry-readback")

        def blame(o: Outcome) -> str:
            return self.entry_blame(addr, o.value, loose) if o.ok and o.value is not None else clause
        if not loose:
            return Expect(clause, Outcome(value=want), f"{want:#x} ({decode(want, 1)})", (Outcome(value=want),),
                          blame_by=blame)

        def allowed(o: Outcome) -> str | None:
            if o.value is None or not o.ok:
                return f"expected the entry, observed {o.describe()}"
            if (o.value ^ want) & ~loose:
                return f"expected {want:#x} (bits {loose:#x} either way), observed {o.value:#x}"
            return None
        return Expect(clause, Outcome(value=want), f"{want:#x} with bits {loose:#x} either way", predicate=allowed,
                      impl_defined=True, blame_by=blame)

    def entry_blame(self, addr: int, have: int, loose: int = 0) -> str:
        """The clause a paging entry at ``addr`` read back as ``have`` breaks (model/blame.py's order
        for entries); also the checkpoint's (specs/compare_hw.py)."""
        return entry_blame(self.read(addr), have, loose, addr in self.ad_clause, self.ad_clause.get(addr),
                           self.ad_stale.get(addr))

    def _apply_read_pte(self, o: Outcome, table: int, idx: int) -> None:
        addr = table + 8 * idx
        if o.value is not None and addr in self.unsure:
            self.unsure.pop(addr)
            if o.value != self.read(addr):
                self.mem[addr] = o.value
                self.history.adopt(addr, o.value)

    # -- invalidation ----------------------------------------------------------

    def _expect_invlpg(self, addr: int) -> Expect:
        if not canonical(addr, self.mode):
            return exactly("sdm.invlpg.noncanonical-nop", OK)
        if self._harness_slot(addr):
            return exactly("memspec.hw.harness-slot", EINVAL)
        return exactly("sdm.tlb.invlpg", OK)

    def _apply_invlpg(self, o: Outcome, addr: int) -> None:
        if o.ok and canonical(addr, self.mode):
            self._invalidate(PAGE_GLOBAL, self.pcid, addr, "sdm.tlb.invlpg")

    def _expect_invpcid(self, kind: int, pcid: int, addr: int) -> Expect:
        if not self.facts["invpcid"]:
            return exactly("sdm.invpcid.ud-unsupported", UD)
        if kind > 3 or pcid > 0xFFF:
            return exactly("sdm.invpcid.gp-type-pcid", GP)
        if kind == 0 and not canonical(addr, self.mode):
            return exactly("sdm.invpcid.gp-noncanonical", GP)
        if kind in (0, 1) and pcid and not self.cr4 & CR4_PCIDE:
            return exactly("sdm.invpcid.gp-pcid-without-pcide", GP)
        if kind == 0 and self._harness_slot(addr):
            return exactly("memspec.hw.harness-slot", EINVAL)
        return exactly(("sdm.invpcid.addr", "sdm.invpcid.single", "sdm.invpcid.all-global", "sdm.invpcid.all")[kind], OK)

    def _apply_invpcid(self, o: Outcome, kind: int, pcid: int, addr: int) -> None:
        if not o.ok:
            return
        if kind == 0:
            self._invalidate(PAGE, pcid, addr, "sdm.invpcid.addr")
        elif kind == 1:
            self._invalidate(PCID_ALL, pcid, 0, "sdm.invpcid.single")
        elif kind == 2:
            self._invalidate(ALL, 0, 0, "sdm.invpcid.all-global")
        else:
            self._invalidate(ALL_NONGLOBAL, 0, 0, "sdm.invpcid.all")

    # -- accesses ----------------------------------------------------------------

    def _outcome_of(self, res: Path | PageFault, la: int, acc: int, cpl: int, ac: int) -> tuple[Outcome | None, str, int | None]:
        """(outcome or None if the value cannot be predicted, clause, physical address)."""
        if isinstance(res, PageFault):
            return _pf(res), res.clause, None
        fault, clause = check_access(res, self.mode, la, acc, cpl, ac)
        if fault is not None:
            return _pf(fault), clause, None
        pa = res.pa(la)
        if not (self.low <= pa < self.ram) or self._is_harness_entry(pa):
            return None, "memspec.hw.pa-outside-pattern", pa
        if acc == EXEC:
            if pa in self.mem:
                return None, "memspec.hw.pa-outside-pattern", pa
            return OK, clause, pa
        v = self.read(pa)
        if acc == WRITE:
            v = (v & ~0xFF) | 0xCC
        elif pa in self.mem:
            # a paging entry read as data: this very walk (or an earlier cached one) may have set its A/D
            return Outcome(value=v, detail=(("loose", 0x60 | self.unsure.get(pa, 0)),)), clause, pa
        return Outcome(value=v), clause, pa

    def _is_harness_entry(self, pa: int) -> bool:
        return (pa >> 3) & 0x1FF == HARNESS_SLOT and pa in self.mem and self.mem[pa] in (
            self.facts["harness_entry4"], self.facts["harness_entry5"])

    def _candidates(self, la: int, acc: int, cpl: int, ac: int):
        mode = self.mode
        page1g = self._page1g       # bool(self.facts["page1g"])
        pcid = self.pcid
        read = self.read
        if self._lean_access:
            # (this class's ``read`` answers ``mem`` where it has the address: the memo reads mem first)
            cur = self.walks.walk(read, mode, self.cr3 & self._amask, la, acc, cpl, page1g, self.mem)
            if type(cur) is Path and cur.size == 4096:
                # the common shape (older values of this PTE only, all removed) without the walk over the tree
                removed = flat_removed(self.history, mode, la, acc, cpl, pcid, cur.uses)
                if removed is not None:
                    return cur, [], removed
        else:
            cur = self.walks.walk(read, mode, self.root, la, acc, cpl, page1g, None)
        stale, removed = stale_walks(self.history, mode, read, la, acc, cpl, pcid, page1g)
        return cur, stale, removed

    def _expect_access(self, la: int, acc: int, cpl: int, ac: int) -> Expect:
        if la % 8 or acc not in (READ, WRITE, EXEC) or cpl not in (0, 3) or ac not in (0, 1) or not 0 <= la <= U64:
            return exactly("memspec.hw.access-args", EINVAL)
        mode = self.mode
        seen = self._la_seen.get(la) if self._lean_access else None
        if seen is None or seen[0] is not mode:
            # (both answers read the address and the mode alone: kept per address for this mode object)
            seen = (mode, canonical(la, mode), self._harness_slot(la))
            if self._lean_access:
                if len(self._la_seen) >= 1024:
                    self._la_seen.clear()
                self._la_seen[la] = seen
        if not seen[1]:
            # §4.5.1 / SDM Vol. 1 §3.3.7.1: a non-canonical linear address raises #GP(0), not #PF
            return exactly("sdm.canonical.gp", GP)
        if seen[2]:
            return exactly("memspec.hw.harness-slot", EINVAL)
        cur, stale, removed = self._candidates(la, acc, cpl, ac)
        memo = None
        if self._lean_access:
            # the current walk's outcome (and, with no stale walk, the Expect per clause exercised) found
            # again for the same walk, address, access and mode while the data it read is the pattern
            key = (id(cur), la, acc, cpl, ac)
            memo = self._access_memo.get(key)
            if memo is not None and (memo[0] is not cur or memo[1] is not self._mode or memo[2] in self.mem):
                memo = None
            if memo is not None:
                o_cur, clause = memo[3], memo[4]
                if not stale and not removed.cands and clause in memo[5]:
                    self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed, "cur_ok": True}
                    return memo[5][clause]
                if not stale and removed.cands and o_cur.value is not None and not self.strict:
                    # removed walks only (the kvm step): the invalidation exercised names the kept Expect,
                    # as below (one walk explains the access)
                    exercised, giving = removed_pass(self, removed, o_cur, clause, la, acc, cpl, ac)
                    exp = memo[5].get(exercised)
                    if exp is not None:
                        self._giving_of = (removed, o_cur, giving)
                        self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed, "cur_ok": True}
                        return exp
            else:
                o_cur, clause, pa = self._outcome_of(cur, la, acc, cpl, ac)
                if o_cur is not None and o_cur.ok and pa not in self.mem and self._mode is self.mode:
                    memo = [cur, self._mode, pa, o_cur, clause, {}]
                    if len(self._access_memo) >= 1024:
                        self._access_memo.clear()
                    self._access_memo[key] = memo
        else:
            o_cur, clause, _ = self._outcome_of(cur, la, acc, cpl, ac)
        options: list[tuple[Outcome | None, str, Path | PageFault]] = [(o_cur, clause, cur)]
        for res, _t, _g in stale:
            o, c, _ = self._outcome_of(res, la, acc, cpl, ac)
            options.append((o, c, res))
        if stale or o_cur is not None and o_cur.signal == "#PF":
            # PK as well as a paging-rights violation: the SDM does not order them; allow PK either way
            extra = []
            for o, c, r in options:
                if o is not None and o.signal == "#PF" and isinstance(cur, Path) and self._pk_also(cur, acc, cpl):
                    d = dict(o.detail)
                    extra.append((Outcome(signal="#PF", detail=(("cr2", d["cr2"]), ("errcode", int(d["errcode"] | ErrCode.PK)))), c, r))
            options += extra
        self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed,
                      "cur_ok": isinstance(cur, Path) and not (o_cur is not None and o_cur.signal == "#PF")}
        if o_cur is None:
            return Expect(clause, Outcome(value=0), "a value from memory the pattern does not cover", unknown=True)
        if self.strict:
            default = self._tlb_default(o_cur, la, acc, cpl, ac)
            return exactly(clause if default == o_cur else "sdm.tlb.stale-before-invalidation", default)
        if len(options) == 1:
            distinct = options
        else:
            distinct = []
            for o, c, r in options:
                if o is None:
                    distinct.append((o, c, r))
                elif all(o != d for d, _, _ in distinct):
                    distinct.append((o, c, r))
        expect_clause = clause if len(distinct) == 1 else "sdm.tlb.stale-before-invalidation"
        if len(distinct) == 1 and removed.cands:
            # exercised: the invalidation that removed every stale walk, if there was one
            if memo is not None and o_cur.value is not None:
                # a load or store of pattern data: which removed walks give its data, found in the same
                # pass (for _note_stale_ad, if the outcome observed is this one)
                clause, giving = removed_pass(self, removed, o_cur, clause, la, acc, cpl, ac)
                self._giving_of = (removed, o_cur, giving)
            else:
                clause = self._exercised(removed, o_cur, clause, la, acc, cpl, ac)
            expect_clause = clause
        if memo is not None and not stale:
            # one walk explains the access: its Expect kept per clause (the walk's own or the invalidation
            # exercised), its blame working the removed walks out afresh when asked
            exp = memo[5].get(clause)
            if exp is None:
                exp = memo[5][clause] = self._explained(
                    clause, o_cur, la, self._fresh_blame(cur, distinct, la, acc, cpl, ac, clause))
            return exp
        killed: list[tuple[Outcome, str]] | None = None
        mode = self.mode

        def removed_outcomes() -> list[tuple[Outcome, str]]:
            # the translations invalidations removed, latest cached first, those a whole flush
            # removed included (worked out only for a refused observation)
            nonlocal killed
            if killed is None:
                killed = self._removed_outcomes(removed, la, acc, cpl, ac)
            return killed

        def blame(obs: Outcome) -> str:
            # the clause the observation breaks: model/blame.py's order for accesses
            return access_blame(obs, distinct, removed_outcomes, mode, acc, cpl, expect_clause, matches,
                                lambda: self._without_rights(distinct, la, acc, cpl, ac),
                                lambda o: self._entry_read(cur, la, acc, o))

        if len(distinct) == 1:
            return self._explained(clause, o_cur, la, blame)
        default = self._tlb_default(o_cur, la, acc, cpl, ac)
        explain = self.explain

        def allowed(obs: Outcome) -> str | None:
            for o, _, _ in distinct:
                if o is None:
                    # memory the pattern does not cover: any value, or the harness's own refusal;
                    # a fetch from there runs whatever bytes it finds
                    if obs.ok or obs.signal not in ("#PF", "#GP") or acc == EXEC:
                        return None
                    continue
                if matches(obs, o):
                    return None
            return "expected one of " + ", ".join(show(o) if o else "(any value)" for o, _, _ in distinct) + \
                f"; observed {show(obs)}\n" + explain(la)
        return Expect("sdm.tlb.stale-before-invalidation", default, blame_by=blame, describe=
                      " or ".join(show(o) if o else "(any value)" for o, _, _ in distinct), predicate=allowed,
                      impl_defined=True)

    def _fresh_blame(self, cur, distinct: list, la: int, acc: int, cpl: int, ac: int, clause: str):
        """``_expect_access``'s blame for an access with no stale or removed walk, every answer worked
        out when asked (an Expect kept in ``_access_memo`` is asked again at later calls)."""
        mode = self._mode
        removed = NOTHING_REMOVED

        def blame(obs: Outcome) -> str:
            return access_blame(obs, distinct, lambda: self._removed_outcomes(removed, la, acc, cpl, ac), mode, acc,
                                cpl, clause, matches, lambda: self._without_rights(distinct, la, acc, cpl, ac),
                                lambda o: self._entry_read(cur, la, acc, o))
        return blame

    def _tlb_default(self, o_cur: Outcome, la: int, acc: int, cpl: int, ac: int) -> Outcome:
        """The reference TLB's choice for an access whose current walk gives ``o_cur``: the outcome of
        the translation it holds, if that one succeeds, else ``o_cur`` (the default of a choice
        between walks, and the strict law)."""
        hit = self.tlb.lookup(la, self.pcid)
        if hit is not None:
            o_hit, _, _ = self._outcome_of(hit.path, la, acc, cpl, ac)
            if o_hit is not None and o_hit.ok:
                return o_hit
        return o_cur

    def _exercised(self, removed, o_cur: Outcome, clause: str, la: int, acc: int, cpl: int, ac: int) -> str:
        """The clause an access that only the current walk explains exercised: the invalidation
        (an ``sdm.`` clause) that removed the latest cached walk giving another outcome than
        ``o_cur``, or ``clause`` if none did.  A removed walk whose leaf gives other data than a
        load or store's ``o_cur`` (``_gives_other_data``) differs whatever its rights: found without
        building it, when ``_outcome_of`` is this class's."""
        lean = o_cur.value is not None and o_cur.ok and acc != EXEC and type(self)._outcome_of is Paging._outcome_of
        for cand, ev, _t in removed.latest_first_cands(paths_only=True):
            if not ev.clause.startswith("sdm."):
                continue
            if lean and self._gives_other_data(cand, la, acc, o_cur):
                return ev.clause
            o_old, _, _ = self._outcome_of(removed.result(cand), la, acc, cpl, ac)
            if o_old is None or not matches(o_old, o_cur):
                return ev.clause
        return clause

    def _gives_other_data(self, cand: tuple, la: int, acc: int, o_cur: Outcome) -> bool:
        """Whether the removed walk ``cand`` (as ``stale_walks`` enumerated it, not a fault), if its
        rights let the load or store through, gives an outcome ``matches`` tells from the successful
        ``o_cur``: memory the pattern does not cover (``_outcome_of`` gives None), or a value that
        differs beyond ``o_cur``'s loose bits.  Read off the leaf entry, as ``_may_give`` does; a
        walk whose rights fault gives a #PF, which differs from ``o_cur`` as well."""
        _t, level, entries, _fault, _rsvd = cand
        size = PAGE_SIZES[level]
        pa = (entries[-1][1] & addr_mask(self.maxphy) & ~(size - 1)) | (la & (size - 1))
        if not self.low <= pa < self.ram or self._is_harness_entry(pa):
            return True
        v = self.read(pa)
        if acc == WRITE:
            v = (v & ~0xFF) | 0xCC
        loose = dict(o_cur.detail).get("loose", 0) if o_cur.detail else 0
        return (v ^ o_cur.value) & ~loose != 0

    def _entry_read(self, cur, la: int, acc: int, obs: Outcome) -> str | None:
        """A load or store that reached a paging entry as data (its address maps the entry's own table):
        the entry's blame for the qword it gave back (``entry_blame``; a store's low byte is its own
        0xCC), else None."""
        if acc == EXEC or not isinstance(cur, Path) or obs.value is None:
            return None
        pa = cur.pa(la)
        if pa not in self.mem:
            return None
        have = obs.value if acc == READ else (obs.value & ~0xFF) | (self.read(pa) & 0xFF)
        return self.entry_blame(pa, have, self.unsure.get(pa, 0))

    def _without_rights(self, allowed, la: int, acc: int, cpl: int, ac: int) -> list[tuple[Outcome, str]]:
        """(outcome, rights clause) for each allowed walk whose access a rights rule (§4.6) faulted: the
        outcome it would have given without that rule (for blame: a target that skipped the rule)."""
        out = []
        for o, _c, res in allowed:
            if isinstance(res, Path) and o is not None and o.signal == "#PF":
                fault, clause = check_access(res, self.mode, la, acc, cpl, ac)
                pa = res.pa(la)
                if fault is None or not self.low <= pa < self.ram or self._is_harness_entry(pa) or pa in self.mem:
                    continue      # (a paging entry read as data: its A/D are the walk's business)
                v = self.read(pa)
                out.append((OK if acc == EXEC else Outcome(value=(v & ~0xFF) | 0xCC if acc == WRITE else v), clause))
        return out

    def _removed_outcomes(self, removed, la: int, acc: int, cpl: int, ac: int, walks: bool = False,
                          flushed: bool = True) -> list:
        """(outcome, invalidation clause[, walk]) of every translation an invalidation removed, the latest
        cached first: ``removed`` (this page's INVLPG/INVPCID, and #PF) and -- ``flushed`` -- those a flush
        of a PCID or of everything removed, which ``stale_walks`` sets aside before building them."""
        if not flushed:
            every = removed
        elif not removed.cands and self.history.last_change < 0:
            return []
        else:
            _, every = stale_walks(self.history, self.mode, self.read, la, acc, cpl, self.pcid,
                                   bool(self.facts["page1g"]), limit=256, flushed=True)
        out = []
        for res, ev, _t in every.latest_first():
            o, _, _ = self._outcome_of(res, la, acc, cpl, ac)
            if o is not None:
                out.append((o, ev.clause, res) if walks else (o, ev.clause))
        return out

    def _explained(self, clause: str, want: Outcome, la: int, blame=None) -> Expect:
        """Exactly ``want``; a mismatch explains every level's entry and the control registers."""

        value = want.value if want.errno is None and want.signal is None and not want.detail else None

        def allowed(obs: Outcome) -> str | None:
            if value is not None and obs.value == value and obs.errno is None and obs.signal is None:
                return None     # (matches: a plain value, the common answer, read field by field)
            if obs == want or matches(obs, want):      # (an equal outcome matches: the common answer first)
                return None
            return f"expected {show(want)}, observed {show(obs)}\n{self.explain(la)}"
        return Expect(clause, want, show(want), (want,), predicate=allowed, blame_by=blame)

    def _pk_also(self, path: Path, acc: int, cpl: int) -> bool:
        m = self.mode
        if not (m.pke and path.user and acc != EXEC):
            return False
        ad = (m.pkru >> (2 * path.pkey)) & 1
        wd = (m.pkru >> (2 * path.pkey + 1)) & 1
        return bool(ad or (acc == WRITE and wd and (cpl == 3 or m.wp)))

    def _apply_access(self, o: Outcome, la: int, acc: int, cpl: int, ac: int) -> None:
        if o.errno or o.signal == "#GP":
            return
        last = self._last if self._last.get("la") == la else None
        if last is None:
            cur, stale, removed = self._candidates(la, acc, cpl, ac)
            cur_ok = isinstance(cur, Path) and check_access(cur, self.mode, la, acc, cpl, ac)[0] is None
        else:
            cur, stale, cur_ok, removed = last["cur"], last["stale"], last["cur_ok"], last["removed"]
        self._last = {}
        exact = not stale
        if o.signal == "#PF":
            # §4.10.4.1: a #PF invalidates the TLB entries (non-global) for the faulting page, current PCID
            self._invalidate(PAGE, self.pcid, la, "sdm.tlb.pf-invalidates")
            # §4.8: whether A is set in entries used by a faulting walk is not specified
            for res in [cur] + [r for r, _, _ in stale]:
                for u in res.uses:
                    if u.addr in self.mem and self.mem[u.addr] & 0x21 == 0x01:     # present, A clear
                        self.unsure[u.addr] = self.unsure.get(u.addr, 0) | 0x20
                        self.ad_clause[u.addr] = "sdm.ad.fault-a-unspecified"
            return
        if o.signal:
            # the walk succeeded but the physical access hit harness memory: the CPU may have set
            # A/D already (they are set by the walk), so those become unsure
            exact = False
        used = cur if cur_ok else None
        if used is not None and exact and removed.cands:      # (_note_stale_ad looks at removed walks only)
            self._note_stale_ad(used, o, la, acc, cpl, ac, removed)
        if used is not None:
            mem, ad_clause, uses, values = self.mem, self.ad_clause, used.uses, self.history.values
            for u in uses:
                v = mem.get(u.addr)
                if v is None:
                    continue
                leaf = u is uses[-1]
                want = v | 0x20 | (0x40 if leaf and acc == WRITE else 0)
                if exact:
                    if want != v:
                        mem[u.addr] = want
                        vs = values.get(u.addr)       # self.history.adopt(u.addr, want)
                        if vs:
                            vs[-1][2] = want
                    if leaf:
                        ad_clause[u.addr] = "sdm.ad.dirty-on-write" if acc == WRITE else "sdm.ad.no-dirty-on-read"
                    elif ad_clause.get(u.addr) not in _LEAF_AD:
                        # an entry a self-referencing walk used as a leaf keeps the leaf's clause: its D is one
                        ad_clause[u.addr] = "sdm.ad.accessed-on-use"
                else:
                    self.unsure[u.addr] = self.unsure.get(u.addr, 0) | (want & ~v)
                    self.ad_clause[u.addr] = "sdm.tlb.ad-with-cached-translation"
            self.tlb.fill(used, la, self.pcid, used.glob and bool(self.cr4 & CR4_PGE), self.history.now)
        for res, _, _ in stale:
            for u in res.uses:
                v = self.read(u.addr)
                if u.addr in self.mem and v & 1:
                    self.unsure[u.addr] = self.unsure.get(u.addr, 0) | ((0x20 | (0x40 if acc == WRITE else 0)) & ~v)
                    self.ad_clause[u.addr] = "sdm.tlb.ad-with-cached-translation"
        # a store lands the byte 0xCC at the physical address: a paging entry there changes
        if acc == WRITE and o.value is not None:
            for res in [cur] + [r for r, _, _ in stale]:
                if isinstance(res, Path):
                    pa = res.pa(la)
                    if pa in self.mem and (self.mem[pa] & ~0xFF) | 0xCC == o.value:
                        self._store(pa, o.value)
                        break
        if self.unsure:
            for k in [k for k, m in self.unsure.items() if not m]:
                del self.unsure[k]

    def _note_stale_ad(self, used: Path, o: Outcome, la: int, acc: int, cpl: int, ac: int, removed) -> None:
        """Before an exact access sets A/D bits: if a translation an invalidation removed would have
        served it with the same outcome, those bits reading back clear later are that invalidation's
        failure (``entry_blame``, row 2) -- for an entry that translation did not use, or used with an
        older value (a translation cached from the entry's current value set A, and D on a write,
        when it was made or first written through: §4.8).  Only the translations this page's
        invalidations removed (INVLPG, INVPCID by address, a #PF) are looked at: those a whole flush
        removed would cost the judge an enumeration on every access (they are found for the blame of
        a refused access, which is worked out only then)."""
        if not removed.cands:
            return
        pre = self._giving_of
        if type(self)._may_give is Paging._may_give and type(self)._giving is Paging._giving and pre is not None \
                and pre[0] is removed and (o is pre[1] or o.errno is None and o.signal is None and o.value == pre[1].value):
            giving = pre[2]     # worked out with the exercised invalidation (``removed_pass``)
            if not giving:
                return          # no removed walk gives o's data: nothing to note
        else:
            giving = None
        new: list[tuple[int, int, int]] = []
        for u in used.uses:
            if u.addr in self.mem:
                v = self.read(u.addr)
                bits = (0x20 | (0x40 if u is used.uses[-1] and acc == WRITE else 0)) & ~v
                if bits:
                    new.append((u.addr, v & ~0x60, bits))
        if not new:
            return
        done: set[int] = set()
        # the same walks, outcomes and order as _removed_outcomes(removed, ..., flushed=False), less
        # those whose leaf cannot give o's data (_may_give): most removed walks map another frame
        if giving is not None:
            pass
        elif type(self)._may_give is not Paging._may_give:
            # a subclass's own filter (a test's broken shortcut), asked walk by walk
            giving = removed.latest_first_cands(keep=self._may_give, keep_args=(la, acc, o))
        else:
            giving = self._giving(removed, la, acc, o)
        for cand, ev, _t in giving:
            cid = ev.clause
            if not cid.startswith("sdm."):
                continue
            res = removed.result(cand)
            o_old, _, _ = self._outcome_of(res, la, acc, cpl, ac)
            if o_old is None or not matches(o, o_old):
                continue
            held = {(u.addr, u.value & ~0x60) for u in res.uses}
            for addr, v, bits in new:
                if (addr, v) not in held and addr not in done:
                    self.ad_stale[addr] = (bits, cid)
                    done.add(addr)

    def _giving(self, removed, la: int, acc: int, o: Outcome) -> list[tuple[tuple, Any, int]]:
        """``removed.latest_first_cands(keep=self._may_give, keep_args=(la, acc, o))`` as a list, the
        filter laid flat (one pass over the removed walks, the memory's bounds read once): the
        walks whose leaf gives ``o``'s data, latest first, each with its invalidation."""
        if acc == EXEC:
            return list(removed.latest_first_cands(keep=self._may_give, keep_args=(la, acc, o)))
        if o.errno is not None or o.signal is not None or o.value is None:
            return []           # _may_give: a load or store gives only a successful value
        amask, low, ram, mem, value = addr_mask(self.maxphy), self.low, self.ram, self.mem, o.value
        out = []
        for cand, glob, ev in removed.order():
            t, level, entries, fault, _rsvd = cand
            if fault is not None:
                continue
            size = PAGE_SIZES[level]
            pa = (entries[-1][1] & amask & ~(size - 1)) | (la & (size - 1))
            if not low <= pa < ram or (pa >> 3) & 0x1FF == HARNESS_SLOT and self._is_harness_entry(pa):
                continue
            v = mem.get(pa)
            loose = 0
            if v is None:
                v = ((pa << 8) | 0xCC) & U64        # pattern(pa)
            elif acc == READ:
                loose = 0x60 | self.unsure.get(pa, 0)
            if acc == WRITE:
                v = (v & ~0xFF) | 0xCC
            if (value ^ v) & ~loose == 0:
                out.append((cand, ev if ev is not None else removed.event_of(cand, glob), t))
        return out

    def _may_give(self, cand: tuple, la: int, acc: int, o: Outcome) -> bool:
        """Whether the removed walk ``cand`` (as ``stale_walks`` enumerated it: time, level, entries,
        fault, rsvd) can give the successful outcome ``o``: the data half of ``_outcome_of`` and
        ``matches``, read off the leaf entry without building the walk.  A necessary condition only
        (the rights are the walk's: a walk it keeps is still judged by ``_outcome_of``); a faulting
        walk gives a #PF, never ``o``.

        Example: after ``set_pte(PT, 5, 0x301000, P|RW)``, INVLPG and a load of 0x405008 that gave
        the pattern of 0x301008, the removed walk through the older PTE value 0x300003 would have
        read 0x300008: another value, so it is set aside."""
        _t, level, entries, fault, _rsvd = cand
        if fault is not None or o.errno is not None or o.signal is not None:
            return False
        size = PAGE_SIZES[level]
        pa = (entries[-1][1] & addr_mask(self.maxphy) & ~(size - 1)) | (la & (size - 1))
        if not self.low <= pa < self.ram or self._is_harness_entry(pa):
            return False                      # an unknown value: _outcome_of gives None
        if acc == EXEC:
            return pa not in self.mem and o.value is None
        v = self.read(pa)
        loose = 0
        if acc == WRITE:
            v = (v & ~0xFF) | 0xCC
        elif pa in self.mem:
            loose = 0x60 | self.unsure.get(pa, 0)
        return o.value is not None and (o.value ^ v) & ~loose == 0

    def observe(self) -> dict[str, Any]:
        """The checkpoint state a target reports (specs/compare_hw.py): changed qwords of program RAM."""
        return {"entries": tuple(sorted((a, v) for a, v in self.mem.items()
                                        if self.low <= a < self.ram and v != pattern(a)))}

    # -- explanations (for failure reports) ----------------------------------------

    def explain(self, la: int) -> str:
        """Every level's entry for ``la`` with its bits decoded, and the control registers."""
        lines = [f"CR0={self.cr0:#x} CR3={self.cr3:#x} CR4={self.cr4:#x} EFER={self.efer:#x} PKRU={self.pkru:#x}"]
        table = self.root
        for level in range(self.mode.levels, 0, -1):
            addr = table | (index(la, level) << 3)
            e = self.read(addr)
            name = {5: "PML5E", 4: "PML4E", 3: "PDPTE", 2: "PDE", 1: "PTE"}[level]
            lines.append(f"  {name}[{index(la, level)}] @ {addr:#x} = {e:#018x}  {decode(e, level)}")
            if not e & Pte.P or level == 1 or (level in (2, 3) and e & Pte.PS):
                break
            table = e & addr_mask(self.maxphy)
        return "\n".join(lines)


Paging.RULES = _rules_of(Paging)
Paging._EXPECTS, Paging._APPLIES = _dispatch(Paging.RULES)


def new_model(facts: dict) -> Paging:
    return Paging(facts)


__all__ = ["Paging", "new_model", "DEFAULT_FACTS", "matches", "show"]
