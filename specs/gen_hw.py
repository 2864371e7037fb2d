"""The hw layer's generator: a well-typed program that builds page-table trees and probes them.

A program boots a mode (CR0.WP, CR4.PGE/SMEP/SMAP/PKE/LA57, EFER.NXE),
builds a valid table tree for a handful of linear "slots" (4 KiB pages, 2 MiB
and 1 GiB pages, aliases of one frame, a self-referencing root entry, entries
with reserved bits, XD, protection keys, G), then interleaves accesses (read,
write, fetch; CPL 0 and 3; EFLAGS.AC) with the events that make walkers go
wrong: entry changes with and without INVLPG, CR3 reloads and switches between
two roots that share subtrees, CR4/CR0/EFER toggles, PKRU loads, A/D read-backs,
stores through a translation the TLB may still hold onto a page of paging entries.

One program in five (for the codec: an input whose last byte is a multiple of 5), for a target whose calls
include the ``segmentation`` ones (an explicit ``calls`` set: ``None`` means the core
calls), is a segmentation program instead: a mode (real with
A20 masked or not, protected, 64-bit), a handful of descriptors (expand-up and
expand-down data, read-only, code with and without read, conforming, DPLs, G, D/B, not
present, system), then segment-register loads at CPL 0 and 3 with good and bad
selectors (null, RPL, TI, beyond GDTR.limit), accesses at the edges of each segment's
limit, descriptor changes while loaded, GDTR limits and FS/GS bases.

A target's facts constrain what is generated: a root slot listed in ``cpl3_reserved_slots``
(where the target cannot stage a CPL 3 access; kvm-pvm reports slot 256) gets CPL 0 accesses
only, with the same choices drawn, so an input decodes to the same shape on every target.

Every decision is drawn from a ``Chooser`` (``specs/choose.py``): fuzzer bytes in the codec
(``fuzz/codec_hw.py``), Hypothesis draws in the state machine (``specs/machine_hw.py``).
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import INITIAL_CR3, RAM_SIZE
from memspec.program import Flags, Int, Program

from .choose import Chooser, swarm
from .gen_base import CallEmitter

MAX_OPS = 28
SWARM_PERCENT = 40           # programs that draw from a random subset of the operations (swarm testing)
READBACK_PERCENT = 30        # leaf changes followed by reads of the page, its neighbours and the entry
PATH_READ_PERCENT = 40       # read-backs (and ``read_pte`` operations) that read the upper entries of a path too
RECHANGE_PERCENT = 35        # leaf changes followed by an invalidation, a second change and an access
BAD_BOOT_PERCENT = 6         # programs that first ask for a mode without one of long mode's bits (refused)
ODD_CR3_PERCENT = 15         # CR3 loads of the initial (empty) root, past RAM's end, or with a reserved bit
OFFSET_PERCENT = 25          # accesses at offsets across the page rather than its first qwords
# what one operation after the tree is built does, by weight (accesses always stay in a swarm subset)
OPS = [(45, "access"), (17, "leaf"), (6, "invlpg"), (7, "cr3"), (6, "read_pte"), (4, "cr0"), (4, "cr4"),
       (3, "efer"), (4, "pkru"), (4, "alias"), (4, "stale_store")]
GLOBAL_RECHANGE_PERCENT = 30  # rechanges whose first value is a global leaf (CR4.PGE set first)
# what happens between a leaf's second and third value in ``stale_store``, by weight
STALE_EVENTS = [(40, "none"), (30, "neighbours"), (15, "nxe"), (15, "global")]
_RWU = ("PTE_P", "PTE_RW", "PTE_US")
PCID_PERCENT = 25            # programs with a multi-address-space scenario (``HwGen.pcid_scenario``)
PCIDS = (1, 2, 0, 0xFFF)
CR3_NOFLUSH = 1 << 63
INVPCID_KINDS = ("INVPCID_ADDR", "INVPCID_SINGLE", "INVPCID_ALL", "INVPCID_ALL_GLOBAL")
TABLE_BASE = 0x200000        # table frames: 0x200000 + 0x1000*k
DATA_BASE = 0x300000         # 4 KiB data frames: 0x300000 + 0x1000*k
BIG_BASE = 0x400000          # 2 MiB frames: 0x400000, 0x600000, ...

_UPPER = [(70, ("PTE_P", "PTE_RW", "PTE_US")), (8, ("PTE_P", "PTE_RW")), (8, ("PTE_P", "PTE_US")),
          (4, ("PTE_P", "PTE_RW", "PTE_US", "PTE_XD")), (3, ("PTE_P",)), (3, ("PTE_RW", "PTE_US")),
          (2, ("PTE_P", "PTE_RW", "PTE_US", "PTE_A")), (2, ("PTE_P", "PTE_RW", "PTE_US", "PTE_PS"))]
LEAF = [(40, ("PTE_P", "PTE_RW", "PTE_US")), (10, ("PTE_P", "PTE_US")), (10, ("PTE_P", "PTE_RW")),
         (6, ("PTE_P",)), (6, ("PTE_P", "PTE_RW", "PTE_US", "PTE_XD")), (6, ("PTE_P", "PTE_RW", "PTE_US", "PTE_G")),
         (5, ("PTE_P", "PTE_RW", "PTE_US", "PTE_PK1")), (4, ("PTE_P", "PTE_RW", "PTE_US", "PTE_A", "PTE_D")),
         (4, ("PTE_RW", "PTE_US")), (3, ("PTE_P", "PTE_US", "PTE_XD", "PTE_PK2")),
         (3, ("PTE_P", "PTE_RW", "PTE_US", "PTE_PAT_LARGE"))]
_CR4 = [(40, ()), (15, ("CR4_SMEP",)), (12, ("CR4_SMAP",)), (10, ("CR4_PGE",)), (8, ("CR4_SMEP", "CR4_SMAP")),
        (6, ("CR4_PKE",)), (6, ("CR4_LA57",)), (3, ("CR4_PGE", "CR4_SMEP", "CR4_SMAP", "CR4_PKE"))]


def reserved_bits(maxphy: int) -> list[int]:
    """Bits an entry may carry, drawn one in ten times ahead of a frame: none mostly; the lowest bit
    above the target's MAXPHYADDR (reserved) and bit 51 (reserved unless MAXPHYADDR is 52); bit 13
    (PAT in a large page, an address bit in a 4 KiB one); the highest address bit the target has
    (not reserved: a frame beyond its memory)."""
    return [0] * 6 + [1 << min(maxphy, 51), 1 << 51, 1 << 13, 1 << (maxphy - 1)]


def leaf(r: Chooser) -> tuple[str, ...]:
    """The rights of a leaf entry (``LEAF``: the combinations the walk's clauses tell apart)."""
    return r.weighted(LEAF)


def desc_type(r: Chooser) -> str:
    return r.weighted(DESC_TYPES)


def sreg(r: Chooser) -> str:
    return r.choice(SREGS)


def _w(r: Chooser, table: list[tuple[int, tuple[str, ...]]]) -> tuple[str, ...]:
    total = sum(w for w, _ in table)
    x = r.integer(0, total - 1)
    for w, v in table:
        if x < w:
            return v
        x -= w
    return table[-1][1]


def _flags(names: tuple[str, ...]) -> Flags | Int:
    return Flags(names) if names else Int(0)


def _hex(v: int) -> Int:
    return Int(v, hex=v >= 4096)


class HwGen(CallEmitter):
    def __init__(self, r: Chooser, calls: frozenset[str] | None, facts: dict[str, Any] | None = None):
        super().__init__(r, calls)
        self.cpl3_reserved = frozenset(int(i) for i in (facts or {}).get("cpl3_reserved_slots", ()))
        self.next_table = 1
        self.la57 = False
        self.pke = False
        self.slots: list[tuple[int, int, int, int, int]] = []   # (linear base, leaf table, index, level, frame)
        self.paths: dict[int, list[tuple[int, int]]] = {}      # linear base -> (table, index) of its upper entries
        self.entries: dict[tuple[int, int], int] = {}  # (table, index) -> next table (for non-leaf entries)
        self.pcid_ok = bool((facts or {}).get("pcid", True))
        # the machine the target declares: its MAXPHYADDR and the size of its guest memory
        self.maxphy = int((facts or {}).get("maxphyaddr", 52))
        self.rsvd = reserved_bits(self.maxphy)
        self.ram = int((facts or {}).get("ram", RAM_SIZE))
        self.ops = OPS
        self.nxe = True
        self.scratch: int | None = None    # a table page no walk uses, whose entries ``stale_store`` stores into

    def table(self) -> int:
        t = TABLE_BASE + 0x1000 * self.next_table
        self.next_table += 1
        return t

    # -- a mode ----------------------------------------------------------------------

    def boot(self) -> None:
        r = self.r
        cr0 = ("CR0_PG", "CR0_PE") + (("CR0_WP",) if r.chance(75) else ())
        cr4 = ("CR4_PAE",) + _w(r, _CR4)
        efer = ("EFER_LME", "EFER_LMA") + (("EFER_NXE",) if r.chance(85) else ())
        self.la57 = "CR4_LA57" in cr4
        self.pke = "CR4_PKE" in cr4
        self.nxe = "EFER_NXE" in efer
        if r.chance(BAD_BOOT_PERCENT):
            # IA-32e mode needs CR0.PG, CR0.PE, CR4.PAE and EFER.LME together (SDM Vol. 3A §10.8.5):
            # without one of them the harness refuses the mode, and the program boots properly after
            drop = r.choice(["CR0_PG", "CR0_PE", "CR4_PAE", "EFER_LME"])
            self.emit("boot", _flags(tuple(f for f in cr0 if f != drop)), _flags(tuple(f for f in cr4 if f != drop)),
                      _flags(tuple(f for f in efer if f != drop)))
        if cr4 != ("CR4_PAE",) or "CR0_WP" not in cr0 or "EFER_NXE" not in efer:
            self.emit("boot", Flags(cr0), Flags(cr4), Flags(efer))

    # -- a tree ----------------------------------------------------------------------

    def slot(self, root: int) -> None:
        """Map one linear page (4 KiB, 2 MiB or 1 GiB) under ``root``, making missing tables."""
        r = self.r
        levels = 5 if self.la57 else 4
        idx = {5: r.choice([0, 0, 0, 1]) if self.la57 else 0, 4: r.choice([0, 0, 1, 2, 256, 300]),
               3: r.choice([0, 0, 1, 3]), 2: r.choice([0, 1, 2, 2, 3, 5]), 1: r.integer(0, 7)}
        size = r.choice([1, 1, 1, 1, 2, 2, 3])
        table = root
        la = 0
        path: list[tuple[int, int]] = []
        for level in range(levels, size, -1):
            path.append((table, idx[level]))
            la |= idx[level] << (12 + 9 * (level - 1))
            nxt = self.entries.get((table, idx[level]))
            if nxt is None:
                nxt = self.table()
                flags = _w(r, _UPPER) if r.chance(15) else ("PTE_P", "PTE_RW", "PTE_US")
                if level == 4 or level == 5 or "PTE_PS" not in flags:
                    flags = tuple(f for f in flags if f != "PTE_PS")
                self.emit("set_pte", table, Int(idx[level]), nxt | (self.rsvd[r.integer(0, 9)] if r.chance(5) else 0),
                          _flags(flags))
                self.entries[(table, idx[level])] = nxt
            table = nxt
        la |= idx[size] << (12 + 9 * (size - 1))
        if la >> 47 & 1 and not self.la57:
            la |= 0xFFFF << 48
        leaf = _w(r, LEAF)
        if size == 1:
            frame = DATA_BASE + 0x1000 * r.integer(0, 15)
            if r.chance(4):
                frame = TABLE_BASE + 0x1000 * r.integer(0, self.next_table - 1)   # a table seen as data
            elif r.chance(4):
                frame = self.ram - 0x1000 * r.choice([1, 1, 2, 0])   # the last pages of guest memory, or beyond
        elif size == 2:
            frame = BIG_BASE + 0x200000 * r.integer(0, 3)
            leaf = leaf + ("PTE_PS",)
        else:
            frame = 0
            leaf = leaf + ("PTE_PS",)
        if r.chance(6):
            frame |= self.rsvd[r.integer(0, 9)]
        self.emit("set_pte", table, Int(idx[size]), frame, _flags(tuple(sorted(set(leaf), key=leaf.index))))
        if size == 3:
            la |= 0x300000        # a 1 GiB page maps physical 0: probe above the harness's first MiB
        self.slots.append((la, table, idx[size], size, frame))
        self.paths[la] = path

    # -- operations --------------------------------------------------------------------

    def addr(self) -> int:
        r = self.r
        if not self.slots or r.chance(5):
            # unmapped and non-canonical addresses, and the first page of the harness's own root slot
            # (``HARNESS_SLOT``: the target refuses an access there, at the current paging depth)
            return r.choice([0x800000000000, 0x1000, 0x405000, 0x7FFFFFFFF000,
                             0xFFFF000000000000 if self.la57 else 0xFFFFFF8000000000])
        la, _, _, level, _ = r.choice(self.slots)
        return la + self.offset(level)

    def offset(self, level: int) -> int:
        """An offset into a page of ``level``'s size: its first qwords mostly (where a program's stores
        land), else qwords across the page (the pattern differs per qword, so a translation that keeps
        too few offset bits reads another qword), and the pages after the first 4 KiB of a large page."""
        r = self.r
        off = 8 * r.integer(0, 3)
        if r.chance(OFFSET_PERCENT):
            off = r.choice([0x7F8, 0x800, 0xFF8, 8 * r.integer(0, 511)])
        if r.chance(20):
            off += 0x1000 * r.integer(0, 2)
        elif level > 1 and r.chance(OFFSET_PERCENT):
            off += r.choice([0x100000, 0x1FF000] if level == 2 else [0x1FF000, 0x1000000])
        return off

    def _reserved(self, la: int) -> bool:
        """Is ``la`` in a root slot where the target cannot stage a CPL 3 access?  Under 4-level
        paging a non-canonical address is in no slot (the CPU raises #GP before any walk); under
        LA57 the PML4 index (bits 47:39) is taken as the slot, whatever the PML5 index."""
        if not self.cpl3_reserved:
            return False
        if not self.la57 and la >> 47 not in (0, 0x1FFFF):
            return False
        return (la >> 39) & 0x1FF in self.cpl3_reserved

    def cr4_keeping(self, *extra: str) -> Flags:
        """A CR4 value with what the program booted that may not change under it (LA57, PKE), plus ``extra``."""
        return Flags(("CR4_PAE",) + extra + (("CR4_LA57",) if self.la57 else ()) + (("CR4_PKE",) if self.pke else ()))

    def second_root(self, roots: list[int]) -> None:
        """A second root sharing the first one's lower tables (an alias address space)."""
        other = self.table()
        roots.append(other)
        for (t, i), nxt in list(self.entries.items()):
            if t == roots[0]:
                self.emit("set_pte", other, Int(i), nxt, Flags(("PTE_P", "PTE_RW", "PTE_US")))

    def pcid_scenario(self, roots: list[int]) -> None:
        """Several address spaces tagged by PCIDs: CR4.PCIDE on, an access under (root A, PCID a), a
        switch to (root B, PCID b) without flushing and maybe an access there, a change of a leaf both
        see, then an INVPCID of one kind covering a (by address, by PCID, all, all with globals) and a
        switch back to (A, a) without flushing, or a flushing switch back, or a switch back without
        flushing and with nothing covering a invalidated (SDM Vol. 3A §4.10.1: a's old translation
        may answer, or a fresh walk); then the access again, and maybe a flushing switch to (B, b)
        and the access there.  8 to 12 calls: the shape where a TLB keeps a tagged translation it
        must drop, or drops one it may keep."""
        r = self.r
        if not self.slots or not self.pcid_ok or not all(self.ok(c) for c in ("mov_cr4", "mov_cr3", "access", "set_pte")):
            return
        if len(roots) < 2:
            self.second_root(roots)
        a_root, b_root = roots[0], r.choice(roots[1:])
        a = r.choice(PCIDS)
        b = r.choice([p for p in PCIDS if p != a]) if r.chance(85) else a
        la, table, idx, level, frame = r.choice(self.slots)
        la = la + 8 * r.integer(0, 3)
        acc = Flags((r.choice(["ACC_READ", "ACC_READ", "ACC_WRITE"]),))
        cpl = Int(0 if self._reserved(la) else r.choice([0, 3]))
        self.emit("mov_cr3", a_root)                     # PCID 0 first: CR4.PCIDE may only be set then
        self.emit("mov_cr4", self.cr4_keeping("CR4_PCIDE"))
        self.emit("mov_cr3", a_root | a)
        self.emit("access", la, acc, cpl, Int(0), result=True)
        self.emit("mov_cr3", CR3_NOFLUSH | b_root | b)
        if r.chance(50):
            self.emit("access", la, acc, cpl, Int(0), result=True)
        leaf = _w(r, LEAF) + (("PTE_PS",) if level > 1 else ())
        new = (DATA_BASE + 0x1000 * r.integer(0, 15) if level == 1 else
               BIG_BASE + 0x200000 * r.integer(0, 3) if level == 2 else 0)
        self.emit("set_pte", table, Int(idx), new, _flags(leaf))
        if self.ok("invpcid") and r.chance(60):
            kind = r.choice(INVPCID_KINDS)
            self.emit("invpcid", Flags((kind,)), Int(a), la & ~0xFFF if kind == "INVPCID_ADDR" else 0)
            self.emit("mov_cr3", CR3_NOFLUSH | a_root | a)
        elif r.chance(50):
            self.emit("mov_cr3", a_root | a)
        else:
            self.emit("mov_cr3", CR3_NOFLUSH | a_root | a)
        self.emit("access", la, acc, cpl, Int(0), result=True)
        if r.chance(40):
            self.emit("mov_cr3", b_root | b)
            self.emit("access", la, acc, cpl, Int(0), result=True)

    def op(self, roots: list[int]) -> None:
        r = self.r
        k = r.weighted(self.ops)
        if k == "access":
            acc = r.choice([0, 0, 0, 1, 1, 2])
            cpl = r.choice([0, 3, 3])
            ac = 1 if r.chance(15) else 0
            la = self.addr()
            if cpl == 3 and self._reserved(la):
                cpl = 0
            self.emit("access", la, Flags((("ACC_READ", "ACC_WRITE", "ACC_EXEC")[acc],)), Int(cpl), Int(ac),
                      result=acc != 2)
        elif k == "leaf" and self.slots:
            # change a leaf: new rights on the same frame (upgrades, downgrades), or a new frame
            la, table, idx, level, frame = r.choice(self.slots)
            leaf = _w(r, LEAF)
            if level > 1:
                leaf = leaf + ("PTE_PS",)
            if r.chance(50):
                frame = (DATA_BASE + 0x1000 * r.integer(0, 15) if level == 1 else
                         BIG_BASE + 0x200000 * r.integer(0, 3) if level == 2 else 0)
            again = r.chance(RECHANGE_PERCENT)
            if again and r.chance(GLOBAL_RECHANGE_PERCENT):
                # the first value global (CR4.PGE = 1): only some invalidations must remove it
                # (INVLPG, INVPCID types 0 and 2, a CR4.PGE toggle; not a CR3 load or INVPCID type 3)
                self.emit("mov_cr4", self.cr4_keeping("CR4_PGE"))
                self.emit("set_pte", table, Int(idx), self.slot_frame(level), _flags(_w(r, LEAF) + ("PTE_G",)
                                                                               + (("PTE_PS",) if level > 1 else ())))
            if again:
                # the translation cached before the change (what the invalidation below must remove)
                self.emit("access", la, Flags(("ACC_READ",)), Int(0 if self._reserved(la) else 3), Int(0), result=True)
            self.emit("set_pte", table, Int(idx), frame, _flags(leaf))
            if again:
                self.rechange(la, table, idx, level, roots)
            elif r.chance(50):
                self.emit("invlpg", la)
            self.read_back(la, table, idx, level)
        elif k == "invlpg":
            self.emit("invlpg", self.addr())
        elif k == "cr3":
            if r.chance(ODD_CR3_PERCENT):
                # the initial root (INITIAL_CR3 = HARNESS_LOW: empty tables), a root past RAM's end, or a
                # reserved bit at MAXPHYADDR (SDM MOV CR: #GP)
                self.emit("mov_cr3", r.choice([INITIAL_CR3, self.ram, roots[0] | 1 << min(self.maxphy, 62)]))
            else:
                self.emit("mov_cr3", r.choice(roots))
        elif k == "read_pte" and self.slots:
            la, table, idx, _, _ = r.choice(self.slots)
            if r.chance(PATH_READ_PERCENT) and self.paths.get(la):
                table, idx = r.choice(self.paths[la])       # an upper entry: A set by every walk that used it
            self.emit("read_pte", table, Int(idx), result=True)
        elif k == "cr0":
            self.emit("mov_cr0", Flags(("CR0_PG", "CR0_PE") + (("CR0_WP",) if r.chance(50) else ())))
        elif k == "cr4":
            cr4 = ("CR4_PAE",) + tuple(n for n in ("CR4_PGE", "CR4_SMEP", "CR4_SMAP") if r.chance(35))
            if self.la57:
                cr4 += ("CR4_LA57",)
            if self.pke:
                cr4 += ("CR4_PKE",)
            self.emit("mov_cr4", Flags(cr4))
        elif k == "efer":
            self.nxe = r.chance(60)
            self.emit("wrmsr_efer", Flags(("EFER_LME", "EFER_LMA") + (("EFER_NXE",) if self.nxe else ())))
        elif k == "stale_store":
            self.stale_store()
        elif k == "pkru" and self.pke:
            self.emit("wrpkru", _hex(r.choice([0, 0x4, 0x8, 0xC, 0x10, 0x20, 0x30])))
        elif k == "alias" and self.slots:
            # alias: a 4 KiB leaf points at the frame of another (two linear pages, one frame)
            small = [sl for sl in self.slots if sl[3] == 1]
            if small:
                _, t1, i1, _, _ = r.choice(small)
                _, _, _, _, f2 = r.choice(small)
                self.emit("set_pte", t1, Int(i1), f2, Flags(("PTE_P", "PTE_RW", "PTE_US")))

    def rechange(self, la: int, table: int, idx: int, level: int, roots: list[int]) -> None:
        """After an access and a leaf change: an invalidation of one kind (INVLPG, INVPCID of each type, a flushing CR3
        load, a CR4.PGE toggle), a second change of the same leaf, then the access.  The CPU may have
        cached the middle value after the invalidation (SDM Vol. 3A §4.10.2.3: translations may be
        cached at any time), so two values may answer -- but never the first, which the invalidation
        removed: a TLB that keeps what one kind of invalidation must drop answers with it here."""
        r = self.r
        kinds = ["invlpg", "cr3", "pge"] + (["invpcid"] * 2 if self.ok("invpcid") else [])
        kind = r.choice(kinds)
        if kind == "invlpg":
            self.emit("invlpg", la + self.offset(level))
        elif kind == "invpcid":
            k = r.choice(INVPCID_KINDS)
            self.emit("invpcid", Flags((k,)), Int(0), la & ~0xFFF if k == "INVPCID_ADDR" else 0)
        elif kind == "cr3":
            self.emit("mov_cr3", roots[0])
        else:
            self.emit("mov_cr4", self.cr4_keeping("CR4_PGE"))
            self.emit("mov_cr4", self.cr4_keeping())
        leaf = _w(r, LEAF) + (("PTE_PS",) if level > 1 else ())
        frame = (DATA_BASE + 0x1000 * r.integer(0, 15) if level == 1 else
                 BIG_BASE + 0x200000 * r.integer(0, 3) if level == 2 else 0)
        self.emit("set_pte", table, Int(idx), frame, _flags(leaf))
        acc = r.choice(["ACC_READ", "ACC_READ", "ACC_WRITE"])
        self.emit("access", la + 8 * r.integer(0, 3), Flags((acc,)), Int(0 if self._reserved(la) else r.choice([0, 3])),
                  Int(0), result=True)

    def slot_frame(self, level: int) -> int:
        """A data frame for a leaf of ``level`` (4 KiB, 2 MiB or the 1 GiB page at 0)."""
        r = self.r
        return (DATA_BASE + 0x1000 * r.integer(0, 15) if level == 1 else
                BIG_BASE + 0x200000 * r.integer(0, 3) if level == 2 else 0)

    def stale_store(self) -> None:
        """A store through a translation the TLB may still hold, into a page of paging entries.  A leaf
        (4 KiB or 2 MiB) is pointed at a page of entries no walk uses (the 2 MiB page at the table
        frames), read (cached), changed to a data frame and changed again -- with nothing between, INVLPG
        of the pages beside it, or a global second value -- then written and the entry read back; or
        (``nxe``) a data frame, then the page of entries with XD, read, EFER.NXE cleared, written.  The
        cached value may answer the store (SDM Vol. 3A §4.10.4.3: no invalidation removed it), and so
        may the others: the entry read back holds the byte 0xCC exactly when the cached one did.  A
        walker whose store through a cached translation lands elsewhere, or is lost, reads the entry
        back unchanged."""
        r = self.r
        slots = [sl for sl in self.slots if sl[3] in (1, 2)]
        if not slots or not all(self.ok(c) for c in ("set_pte", "access", "read_pte", "invlpg")):
            return
        la, table, idx, level, _ = r.choice(slots)
        if self.scratch is None:
            self.scratch = self.table()
            for j in range(4):
                self.emit("set_pte", self.scratch, Int(j), DATA_BASE + 0x1000 * (8 + j), Flags(_RWU))
        j = r.integer(0, 3)                            # the scratch entry the store may land on
        event = r.weighted(STALE_EVENTS)
        if event == "nxe" and not (self.nxe and self.ok("wrmsr_efer")):
            event = "none"
        if event == "global":
            self.emit("mov_cr4", self.cr4_keeping("CR4_PGE"))     # G counts only with CR4.PGE = 1
        xd = ("PTE_XD",) if event == "nxe" else ()
        la &= ~0xFFF if level == 1 else ~0x1FFFFF
        if level == 1:
            at, first = la, (self.scratch, ("PTE_P", "PTE_RW", "PTE_US") + xd)
            second = (self.slot_frame(1), ("PTE_P", "PTE_RW", "PTE_US"))
        else:
            # the 2 MiB page at the table frames; the second value a PDE pointing at the scratch page, its
            # entry for this offset mapping a data page (a walk through it, not a large page)
            at = la + (self.scratch - TABLE_BASE)
            first = (TABLE_BASE, ("PTE_P", "PTE_RW", "PTE_US", "PTE_PS") + xd)
            k = (self.scratch - TABLE_BASE) >> 12
            self.emit("set_pte", self.scratch, Int(k), DATA_BASE + 0x1000 * r.integer(0, 15), Flags(_RWU))
            second = (self.scratch, ("PTE_P", "PTE_RW", "PTE_US"))
        at += 8 * j
        if event == "global":
            second = (second[0], second[1] + ("PTE_G",))
        cpl = Int(0 if self._reserved(at) else r.choice([0, 3]))
        leaf = ("PTE_P", "PTE_RW", "PTE_US") + (("PTE_PS",) if level > 1 else ())
        if event == "nxe":
            # an older value first, then the XD one (current when NXE is cleared: it faults on a walk
            # now, while the translation cached with NXE = 1 may still answer)
            self.emit("set_pte", table, Int(idx), self.slot_frame(level), Flags(leaf))
        else:
            self.emit("set_pte", table, Int(idx), first[0], Flags(first[1]))
        self.emit("invlpg", at)
        if event == "nxe":
            self.emit("set_pte", table, Int(idx), first[0], Flags(first[1]))
        self.emit("access", at, Flags(("ACC_READ",)), cpl, Int(0), result=True)
        if event == "nxe":
            self.emit("wrmsr_efer", Flags(("EFER_LME", "EFER_LMA")))
            self.nxe = False
        else:
            self.emit("set_pte", table, Int(idx), second[0], Flags(second[1]))
            if event == "neighbours":
                size = 0x1000 << (9 * (level - 1))
                for nb in (la - size, la + size):
                    if nb >= 0 and (nb >> 47 in (0, 0x1FFFF) or self.la57):
                        self.emit("invlpg", nb)
            self.emit("set_pte", table, Int(idx), self.slot_frame(level), Flags(leaf))
        self.emit("access", at, Flags(("ACC_WRITE",)), cpl, Int(0), result=True)
        self.emit("read_pte", self.scratch, Int(j), result=True)
        self.emit("invlpg", at)

    def read_back(self, la: int, table: int, idx: int, level: int) -> None:
        """After a change of a leaf (READBACK_PERCENT): reads of the changed page, of the pages beside it
        (the neighbouring entries of the same table, mapped or not) and of the entry itself (A/D)."""
        r = self.r
        if not r.chance(READBACK_PERCENT):
            return
        size = 0x1000 << (9 * (level - 1))
        for at in (la, la - size, la + size):
            if 0 <= at < 1 << 64 and (at >> 47 in (0, 0x1FFFF) or self.la57):
                self.emit("access", at, Flags(("ACC_READ",)), Int(0 if self._reserved(at) else 3), Int(0), result=True)
        self.emit("read_pte", table, Int(idx), result=True)
        if r.chance(PATH_READ_PERCENT):
            # the upper entries of the path (§4.8: A is set in every paging-structure entry a walk uses)
            for t, i in self.paths.get(la, ()):
                self.emit("read_pte", t, Int(i), result=True)


# -- segmentation programs --------------------------------------------------------------------

SEG_CALLS = ("seg_mode", "set_desc", "load_seg", "seg_access")
SEGBASE_EDGE_PERCENT = 50    # FS/GS base writes at the edges of the argument's range and of canonical form
# 2^64 - 1 (canonical), 2^47 - 1 and 2^64 - 2^47 - 1 (the last canonical and the first non-canonical below it)
SEGBASE_EDGES = ((1 << 64) - 1, (1 << 47) - 1, (1 << 64) - (1 << 47) - 1)
_SEGMODES = [(15, "SEG_REAL_A20"), (10, "SEG_REAL"), (45, "SEG_PROTECTED"), (30, "SEG_LONG")]
DESC_TYPES = [(30, "DESC_DATA_RW"), (12, "DESC_DATA_R"), (14, "DESC_DATA_RW_ED"), (6, "DESC_DATA_R_ED"),
           (10, "DESC_CODE_XR"), (6, "DESC_CODE_X"), (6, "DESC_CODE_XRC"), (3, "DESC_CODE_XC")]
_BASES = [0x200000, 0x200000, 0x300000, 0x100000, 0x10000, 0x10000, 0xFFFFF000, 0xFFC00000, 0x123456]
_LIMITS = [0xFFF, 0xFFF, 0xFFFF, 0x1, 0x0, 0x1FF, 0xFFFFF, 0x3FF]
SREGS = ["SREG_DS", "SREG_DS", "SREG_ES", "SREG_FS", "SREG_GS", "SREG_SS", "SREG_SS"]
_SREG_NO = {"SREG_ES": 0, "SREG_CS": 1, "SREG_SS": 2, "SREG_DS": 3, "SREG_FS": 4, "SREG_GS": 5}


class _SegBuilder:
    def __init__(self, b: HwGen):
        self.b = b
        self.r = b.r
        self.mode = "SEG_LONG"
        self.descs: dict[int, tuple[int, int, bool, bool, bool]] = {}   # index -> (base, limit, G, expand-down, B)
        self.loaded: dict[str, int] = {}                                  # sreg -> GDT index (0: flat/real)

    def desc(self, index: int) -> None:
        r = self.r
        base, limit, dtype = r.choice(_BASES), r.choice(_LIMITS), _w(r, DESC_TYPES)
        names: tuple[str, ...] = (dtype,) + (("DESC_ACCESSED",) if r.chance(15) else ())
        dpl = r.choice([0, 0, 0, 0, 3, 3, 1, 2])
        flags = tuple(f for f, keep in (("DESC_S", not r.chance(5)), ("DESC_P", not r.chance(8)),
                                        ("DESC_DB", r.chance(70)), ("DESC_G", r.chance(25)),
                                        ("DESC_AVL", r.chance(5)), ("DESC_L", r.chance(3))) if keep)
        self.b.emit("set_desc", Int(index), _hex(base), _hex(limit), Flags(names), Int(dpl), _flags(flags))
        self.descs[index] = (base, limit, "DESC_G" in flags, "_ED" in dtype, "DESC_DB" in flags)

    def selector(self, cpl: int) -> int:
        r = self.r
        if self.mode in ("SEG_REAL", "SEG_REAL_A20"):
            return r.choice([0x1000, 0x2000, 0xFFFF, 0xF800, 0x0800, 0x1234, 0x0, 0x3000])
        k = r.integer(0, 99)
        if k < 8:
            return r.choice([0, 3, cpl])                                  # null, any RPL
        if k < 12:
            return (r.integer(1, 8) << 3) | 4 | r.integer(0, 3)                   # TI = 1: no LDT
        if k < 16:
            return r.choice([24, 25, 28, 29, 31, 40, 200]) << 3 | cpl     # the harness's entries, beyond
        index = r.choice(sorted(self.descs)) if self.descs else r.integer(1, 8)
        rpl = cpl if r.chance(75) else r.integer(0, 3)
        return index << 3 | rpl

    def offset(self, sreg: str) -> int:
        r = self.r
        if self.mode in ("SEG_REAL", "SEG_REAL_A20"):
            return r.choice([0x10, 0x8010, 0x1000, 0xFFFC, 0xFFFE, 0xFFFF, 0x10000, 0x5678, 0xFFF0])
        index = self.loaded.get(sreg, 0)
        if self.mode == "SEG_LONG":
            if r.chance(20):
                return r.choice([0x800000000000, 0xFFFF800000000000, 0x7FFFFFFFFFF8, 0xFFFFFFFFFFFFF000])
            return r.choice([0x200000, 0x300008, 0x100010, 0x10, 0x3FFFF8]) + 8 * r.integer(0, 3)
        if index in self.descs:
            base, limit, g, ed, big = self.descs[index]
            lim = (limit << 12) | 0xFFF if g else limit
            upper = 0xFFFFFFFF if big else 0xFFFF
            edges = ([lim + 1, lim, lim + 4, upper - 3, upper - 1, upper, 0x10] if ed else
                     [0, 0x10, lim - 3, lim - 1, lim, lim + 1, 0x1000, 0x100000])
            return r.choice([e for e in edges if 0 <= e <= 0xFFFFFFFF] or [0])
        return r.choice([0x200000, 0x300010, 0x10010, 0x3FFFF0, 0x100000, 0xFFFFFFFC])

    def op(self) -> None:
        r, b = self.r, self.b
        real = self.mode in ("SEG_REAL", "SEG_REAL_A20")
        k = r.integer(0, 99)
        long_bases = self.mode == "SEG_LONG" and k >= 90     # FS/GS base writes: 10 % of a 64-bit program's
        if k < 35:
            sreg = r.choice(SREGS + ["SREG_CS"] * (1 if r.chance(20) else 0))
            cpl = 0 if real else r.choice([0, 0, 3, 3, 1])
            sel = self.selector(cpl)
            b.emit("load_seg", Flags((sreg,)), _hex(sel), Int(cpl))
            self.loaded[sreg] = sel >> 3 if not real else 0
        elif k < 80:
            sreg = r.choice(SREGS)
            size = r.choice([4, 4, 2, 1] + ([8, 8] if self.mode == "SEG_LONG" else []))
            op = "ACC_WRITE" if r.chance(30) else "ACC_READ"
            b.emit("seg_access", Flags((sreg,)), _hex(self.offset(sreg)), Flags((op,)), Int(size), result=True)
        elif k < 88:
            self.desc(r.choice(sorted(self.descs)) if self.descs and r.chance(70) else r.integer(1, 8))
        elif k < 92 and not long_bases:
            b.emit("read_desc", Int(r.choice(sorted(self.descs)) if self.descs else 1), result=True)
        elif k < 95 and not long_bases:
            b.emit("lgdt", _hex(r.choice([0x47, 0x1F, 0xFF, 0x7, 0x0])))
        elif self.mode == "SEG_LONG":
            base = r.choice([0x200000, 0x100000, 0x0, 0x7FFFFFFFF000, 0x800000000000, 0xFFFF800000000000])
            if r.chance(SEGBASE_EDGE_PERCENT):
                base = r.choice(SEGBASE_EDGES[:1] + SEGBASE_EDGES)      # 2^64 - 1 twice as often
            b.emit("wrmsr_segbase", Flags((r.choice(["SREG_FS", "SREG_GS"]),)), _hex(base))


def _seg_program(r: Chooser, b: HwGen) -> Program:
    sb = _SegBuilder(b)
    sb.mode = r.weighted(_SEGMODES)
    b.emit("seg_mode", Flags((sb.mode,)))
    for i in range(r.integer(1, 6)):
        sb.desc(r.integer(1, 8) if r.chance(30) else i + 1)
    for _ in range(r.integer(3, MAX_OPS)):
        if r.exhausted:
            break
        sb.op()
    return Program(tuple(b.calls))


def program(r: Chooser, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None,
            seg: bool | None = None) -> Program:
    """A program of the hw layer's calls in ``calls``, every decision drawn from ``r``; ``facts``: the
    target's (``cpl3_reserved_slots`` constrains the accesses generated).  ``seg``: whether to build a
    segmentation program (for a target with the segmentation calls; drawn from ``r`` when None)."""
    b = HwGen(r, calls, facts)
    seg_ok = calls is not None and all(c in calls for c in SEG_CALLS)
    if seg_ok and (r.chance(20) if seg is None else seg):
        return _seg_program(r, b)
    b.ops = swarm(r, OPS, SWARM_PERCENT, keep=lambda op: op[1] == "access")
    b.boot()
    root = TABLE_BASE
    roots = [root]
    for _ in range(r.integer(1, 4)):
        b.slot(root)
    if r.chance(25):
        b.second_root(roots)
    if r.chance(10):
        b.emit("set_pte", root, Int(r.choice([7, 100, 510])), root, Flags(("PTE_P", "PTE_RW")))   # self-reference
    b.emit("mov_cr3", root)
    if r.chance(PCID_PERCENT):
        b.pcid_scenario(roots)
    for _ in range(r.integer(3, MAX_OPS)):
        if r.exhausted:
            break
        b.op(roots)
    return Program(tuple(b.calls))
