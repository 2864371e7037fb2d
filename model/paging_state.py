"""The hw model's state: one logical processor's control registers, the paging entries the program
wrote, the history of entries, roots and invalidations, and the reference TLB (SDM Vol. 3A §2.5, §4.1,
§4.10), with the mechanics every rule shares (``model.paging`` composes the rules).

State: control registers (CR0, CR3, CR4, EFER, PKRU), the paging entries the
program wrote (all other physical memory holds the harness pattern, see
``memspec.calls_hw``), the history of entry values, roots and invalidations
(``tlb.History``), and the model's own TLB (``tlb.RefTlb``).  The rules live in the modules
that import this one: ``paging_control`` (MOV to CR0/CR3/CR4, WRMSR EFER, WRPKRU, boot),
``paging_invalidation`` (INVLPG, INVPCID and the TLB's law), ``paging_access`` (what an access
may give) and ``paging_ad`` (what it did: A/D bits, the paging entries' reads and writes).

Worked example: a new model's root is ``INITIAL_CR3`` with the harness's own entry in slot 511
(``HARNESS_SLOT``, ``_write_harness_entry``); ``read(root + 8)`` is the pattern of that qword until
the program writes it with ``set_pte``, which ``_store`` records in ``mem`` and the history.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, INITIAL_CR3, RAM_SIZE, pattern
from memspec.records import OK, Outcome

from .blame import entry_blame
from .expect import Expect, exactly as _exactly
from .pte import CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PCIDE, EFER_LMA, EFER_LME, EFER_NXE, Mode, Pte, \
    addr_mask, decode
from .segunit import SegUnit
from .tlb import History, RefTlb
from .walk import WalkMemo, canonical, index

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


class PagingState:
    """One x86-64 logical processor's paging state (see the module docstring): the rules are the
    subclasses' (``model.paging.Paging`` composes them)."""

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

    def entry_blame(self, addr: int, have: int, loose: int = 0) -> str:
        """The clause a paging entry at ``addr`` read back as ``have`` breaks (model/blame.py's order
        for entries); also the checkpoint's (specs/compare_hw.py)."""
        return entry_blame(self.read(addr), have, loose, addr in self.ad_clause, self.ad_clause.get(addr),
                           self.ad_stale.get(addr))

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
