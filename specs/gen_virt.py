"""The virt layer's generator: a well-typed program over guest tables x EPT/NPT tables x accesses,
or over KPTI syscall entries/exits, context switches and mappings.

A two-dimensional program builds a nested stage (EPT with 4 KiB and 2 MiB leaves,
rights from a weighted table that includes write-without-read, execute-only,
not-present and reserved memory types; or x86-format nested tables with missing
U/S, R/W or XD), boots a guest (EPTP with or without A/D), builds the guest's own
tables in guest-physical memory (some in read-only or unmapped gpa ranges), then
interleaves guest accesses (read/write/fetch, CPL 0 and 3) with the events that
make 2-D walkers go wrong: nested entries changed with and without INVEPT, guest
entries changed, a second guest with a disjoint EPT, read-backs of A/D bits.

A KPTI program boots a kernel (KPTI and PCID on or off), maps user, kernel and
trampoline pages, and alternates user accesses (of user and kernel addresses),
syscall entries and exits, kernel accesses, context switches among up to 8
processes and counter reads.

Issue #26's features, each with a weight the fuzzer's bytes steer: swarm testing (a program
draws its operations from a random subset of ``OPS_2D``, so long runs of a few appear); a
read-back after each nested leaf change (every guest page mapped through the changed gpa page
and its neighbours, then the nested entries of the path, upper levels included: EPT A/D is set
in every entry a walk uses, SDM Vol. 3C §29.3.5); guest 2 MiB pages and a nested 1 GiB page
(gpa 1..2 GiB onto host 0..1 GiB, aliasing the guest's 4 KiB pages); EPT pointers the CPU must
refuse at VM entry (§27.2.1.1: memory type, walk length, reserved bits; then a valid one); and
an upper nested entry made odd for a few accesses (misconfigured, §29.3.3.1, or not present)
and put back with INVEPT.

Every decision is drawn from a ``Chooser`` (``specs/choose.py``): fuzzer bytes in the codec
(``fuzz/codec_virt.py``), Hypothesis draws in the state machine (``specs/machine_virt.py``).
"""

from __future__ import annotations

from typing import Any

from memspec.calls_virt import GUEST_HARNESS_SLOT, MAX_PIDS
from memspec.program import Flags, Int, Program

from .choose import Chooser, swarm
from .gen_base import CallEmitter
from .gen_virt_edges import edge_call, kpti_edge_call, root_page_exec, sweep

MAX_OPS = 26
SWARM_PERCENT = 40           # programs that draw from a random subset of ``OPS_2D`` (swarm testing)
READBACK_PERCENT = 45        # nested leaf changes followed by reads through it, its neighbours and the entries
ODD_EPTP_PERCENT = 12        # programs whose first VM entry has an EPTP the CPU refuses (then a valid one)
NESTED_1G_PERCENT = 20       # programs with a nested 1 GiB page (gpa 1..2 GiB -> hpa 0..1 GiB)
ODD_UPPER_PERCENT = 40       # programs with an odd upper nested entry right after the guest is built
GUEST_2M_PERCENT = 25        # guest leaves that are 2 MiB pages (over the nested 2 MiB page)
# what one operation of a two-dimensional program does, by weight (accesses stay in a swarm subset)
OPS_2D = [(44, "access"), (14, "nested_leaf"), (8, "guest_leaf"), (8, "read_gpte"), (4, "read_epte"),
          (4, "invept_all"), (4, "vm_cr3"), (6, "second_guest"), (4, "enter"), (8, "odd_upper"),
          (8, "edge"), (3, "root_page"), (2, "sweep")]
# how a nested leaf change is followed: no invalidation, INVEPT single-context, or all-context (which must
# drop the mappings cached for every root: the read-back after it then sees the A/D bits of a fresh walk)
LEAF_INVEPT = [(45, None), (30, "INVEPT_SINGLE"), (25, "INVEPT_ALL")]
INVEPT_ALL_REMAP_PERCENT = 60   # ``invept_all`` ops that move a cached leaf first and read it back after
ROOT_PAGE_PERCENT = 15       # EPT programs that fetch from the guest root table's page right after the guest is built
FIVE_LEVEL_PERCENT = 8       # EPT guests with a 5-level walk (EPTP_WL5): a PML5 table above the PML4
GPA_PML5_1 = 1 << 48         # a gpa in PML5 slot 1, which the 5-level programs leave not present
KPTI_ARG_EDGE_PERCENT = 50   # counter reads replaced by a call with an address or frame at an edge of its range
# an upper nested entry made odd (``odd_upper``): EPT misconfigurations (§29.3.3.1: PS, bits 6:3 of a
# non-leaf entry, W without R, X alone where execute-only is unsupported) and violations (not present,
# read-only); nested paging's rights (APM §15.25.5: every nested access is a user access) and PS
ODD_UPPER_EPT = [("EPT_R", "EPT_W", "EPT_X", "EPT_PS"), ("EPT_R", "EPT_W", "EPT_X", "EPT_MT_WB"),
                 ("EPT_R", "EPT_W", "EPT_X", "EPT_IPAT"), ("EPT_W", "EPT_X"), ("EPT_X",), (), ("EPT_R",),
                 ("EPT_R", "EPT_X")]
ODD_UPPER_NPT = [("PTE_P", "PTE_RW", "PTE_US", "PTE_PS"), ("PTE_RW", "PTE_US"), ("PTE_P", "PTE_US"),
                 ("PTE_P", "PTE_RW"), ("PTE_P", "PTE_RW", "PTE_US", "PTE_XD")]
USED_LEAF_PERCENT = 60       # nested leaf changes of a gpa page a guest slot maps (else any leaf)
MISALIGN_PERCENT = 10        # large nested leaves whose frame has a reserved low bit
ODD_CR3_PERCENT = 30         # guest CR3 loads of another root (a copy of the first), gpa 0, or past the harness slot
GUEST_SMAP_PERCENT = 15      # guests with CR4.SMAP (their CPL 0 data accesses to user pages fault)
KPTI_OFFSET_PERCENT = 30     # KPTI accesses inside a page rather than at its start
KPTI_EDGE_PERCENT = 10       # the last user page, a mapping at the top of user space, a counter that does not exist
USER_TOP = 1 << 47
GPA_1G = 0x40000000          # the nested 1 GiB page's gpa (PDPTE index 1)
# EPT pointers VM entry refuses (SDM Vol. 3C §27.2.1.1; Table 25-9): memory types other than UC (0) and
# WB (6), walk lengths other than 4 and 5, reserved bits 11:7; and a valid UC one
ODD_EPTP = [(3, 0x6 | 2 << 3), (3, 0x1 | 3 << 3), (2, 0x7 | 3 << 3), (2, 0x6 | 3 << 3 | 1 << 7),
            (2, 0x6 | 3 << 3 | 1 << 11), (2, 0x6 | 6 << 3), (3, 0x0 | 3 << 3), (2, 0x6 | 4 << 3)]
EPT_ROOT = 0x200000          # nested tables: 0x200000 + 0x1000*k (guest 0), 0x240000 + ... (guest 1)
HOST_4K = 0x400000           # gpa page g of the low 2 MiB -> hpa 0x400000 + g*0x1000 (guest 0)
HOST_2M = 0x800000           # gpa 2..4 MiB -> hpa 0x800000 (guest 0); guest 1 uses +0x800000
GUEST_TABLES = 0x10000       # guest tables at gpa 0x10000 + 0x1000*k
ALT_ROOT = 0x17000           # a second guest root (``alt_root``): a copy of the first one's entries
GUEST_DATA = 0x100000        # guest data pages at gpa 0x100000 + 0x1000*k (k < 16)

EPT_RIGHTS = [(64, ("EPT_R", "EPT_W", "EPT_X")), (8, ("EPT_R",)), (8, ("EPT_R", "EPT_W")), (5, ("EPT_R", "EPT_X")),
               (3, ("EPT_X",)), (3, ("EPT_W",)), (3, ()), (2, ("EPT_R", "EPT_W", "EPT_X", "EPT_IPAT")),
               (2, ("EPT_R", "EPT_W", "EPT_X", "EPT_A", "EPT_D"))]
NPT_RIGHTS = [(64, ("PTE_P", "PTE_RW", "PTE_US")), (8, ("PTE_P", "PTE_US")), (8, ("PTE_P", "PTE_RW")),
               (6, ("PTE_P", "PTE_RW", "PTE_US", "PTE_XD")), (4, ("PTE_RW", "PTE_US")),
               (2, ("PTE_P", "PTE_RW", "PTE_US", "PTE_A", "PTE_D"))]
EPT_MEMTYPES = [(80, "EPT_MT_WB"), (8, "EPT_MT_UC"), (6, "EPT_MT_WT"), (4, None), (2, "EPT_MT_WC")]
GUEST_LEAF = [(50, ("PTE_P", "PTE_RW", "PTE_US")), (12, ("PTE_P", "PTE_US")), (10, ("PTE_P", "PTE_RW")),
         (8, ("PTE_P", "PTE_RW", "PTE_US", "PTE_XD")), (6, ("PTE_RW", "PTE_US")), (4, ("PTE_P",))]


def nested_leaf(r: Chooser, ept: bool, large: bool) -> tuple[str, ...]:
    """The rights (and, for EPT, the memory type) of a nested leaf: ``EPT_RIGHTS`` x ``EPT_MEMTYPES``
    including write-without-read, execute-only, not-present and reserved types; or ``NPT_RIGHTS``."""
    if ept:
        rights = r.weighted(EPT_RIGHTS)
        mt = r.weighted(EPT_MEMTYPES)
        names = rights + ((mt,) if mt else ()) + (("EPT_PS",) if large else ())
        if mt is None and rights:
            names = rights + ("EPT_MT_WB",) + (("EPT_PS",) if large else ())
            return names if not r.chance(50) else rights + (("EPT_PS",) if large else ()) + ("EPT_MT_WP",)
        return names
    return r.weighted(NPT_RIGHTS) + (("PTE_PS",) if large else ())


def upper_rwx(ept: bool) -> tuple[str, ...]:
    return ("EPT_R", "EPT_W", "EPT_X", "EPT_MT_WB") if ept else ("PTE_P", "PTE_RW", "PTE_US")


def guest_leaf(r: Chooser) -> tuple[str, ...]:
    return r.weighted(GUEST_LEAF)


def _hex(v: int) -> Int:
    return Int(v, hex=v >= 4096)


def _flags(names: tuple[str, ...]) -> Flags | Int:
    return Flags(names) if names else Int(0)


class VirtGen(CallEmitter):
    """Two-dimensional (guest tables x EPT/NPT) and KPTI programs."""

    # -- the nested stage ----------------------------------------------------------------

    def nested_leaf(self, ept: bool, large: bool) -> tuple[str, ...]:
        return nested_leaf(self.r, ept, large)

    def nested(self, ept: bool, vm: int) -> tuple[int, list[tuple[int, int]]]:
        """Build one guest's nested tables; return the root and the (table, index) of 4 KiB leaves (the
        leaf at index ``i`` maps gpa ``i << 12``).  The upper entries (table, index, next table, level)
        go to ``self.uppers`` for ``odd_upper``."""
        r = self.r
        base = EPT_ROOT + 0x40000 * vm
        host = 0x800000 * vm
        upper = ("EPT_R", "EPT_W", "EPT_X") if ept else ("PTE_P", "PTE_RW", "PTE_US")
        setter = "set_epte" if ept else "set_npte"
        pml4, pdpt, pd, pt = base, base + 0x1000, base + 0x2000, base + 0x3000
        self.emit(setter, pml4, Int(0), pdpt, Flags(upper))
        self.emit(setter, pdpt, Int(0), pd, Flags(upper))
        self.uppers = [(pml4, 0, pdpt, 4), (pdpt, 0, pd, 3)]
        self.tables = [pdpt, pd]
        leaves: list[tuple[int, int]] = []
        if r.chance(20):
            # the guest's low 2 MiB as one large page
            self.emit(setter, pd, Int(0), HOST_4K + host, Flags(("EPT_R", "EPT_W", "EPT_X", "EPT_MT_WB", "EPT_PS")
                                                                if ept else ("PTE_P", "PTE_RW", "PTE_US", "PTE_PS")))
        else:
            self.emit(setter, pd, Int(0), pt, Flags(upper))
            self.uppers.append((pd, 0, pt, 2))
            self.tables.append(pt)
            for g in list(range(0x10, 0x18)) + list(range(0x100, 0x110)):
                idx = g & 0x1FF
                names = upper + (("EPT_MT_WB",) if ept else ()) if g < 0x100 or r.chance(60) else self.nested_leaf(ept, False)
                if g < 0x100 and r.chance(4):
                    names = self.nested_leaf(ept, False)      # a guest table in a restricted gpa page
                self.emit(setter, pt, Int(idx), HOST_4K + host + 0x1000 * g, _flags(names))
                leaves.append((pt, idx))
        # a large leaf's frame, now and then off by its lowest or highest reserved address bit (§29.3.3.1:
        # bits 20:12 of a 2 MiB EPT leaf, 29:12 of a 1 GiB one, misconfigure; reserved for nested paging)
        odd2m = r.choice([1 << 12, 1 << 20]) if r.chance(MISALIGN_PERCENT) else 0
        self.emit(setter, pd, Int(1), HOST_2M + host + odd2m, _flags(self.nested_leaf(ept, True)))
        self.emit(setter, pd, Int(2), 0, Int(0))                  # gpa 4..6 MiB: not present
        self.big = r.chance(NESTED_1G_PERCENT)
        if self.big:
            # gpa 1..2 GiB as one 1 GiB page onto host 0..1 GiB: the guest's 4 KiB data pages at hpa
            # 0x500000.. are reached through it too (two gpas, one host page)
            odd1g = r.choice([1 << 12, 1 << 29]) if r.chance(MISALIGN_PERCENT) else 0
            self.emit(setter, pdpt, Int(1), odd1g, _flags(self.nested_leaf(ept, False) + (("EPT_PS",) if ept else ("PTE_PS",))))
        return pml4, leaves

    # -- the guest stage ------------------------------------------------------------------

    def guest(self) -> list[tuple[int, int, int, int, int]]:
        """Guest tables at gpa; returns (gva, guest leaf table gpa, index, gpa, level) slots: 4 KiB leaves,
        and (``GUEST_2M_PERCENT``) 2 MiB leaves over the nested 2 MiB page."""
        r = self.r
        pml4 = GUEST_TABLES
        nxt = [GUEST_TABLES + 0x1000]
        entries: dict[tuple[int, int], int] = {}
        leaves: set[tuple[int, int]] = set()
        slots = []

        def table() -> int:
            t = nxt[0]
            nxt[0] += 0x1000
            self.guest_tables.append(t)
            return t
        self.guest_tables: list[int] = []
        for _ in range(r.integer(1, 4)):
            i4, i3, i2, i1 = r.choice([0, 0, 1]), r.choice([0, 0, 2]), r.integer(0, 3), r.integer(0, 7)
            large = r.chance(GUEST_2M_PERCENT)
            t = pml4
            for level, i in ((4, i4), (3, i3), (2, i2))[:2 if large else 3]:
                n = entries.get((t, i))
                if n is None:
                    if nxt[0] >= ALT_ROOT or (t, i) in leaves:
                        break
                    n = table()
                    flags = ("PTE_P", "PTE_RW", "PTE_US") if r.chance(88) else r.weighted(GUEST_LEAF)
                    self.emit("set_gpte", t, Int(i), n, Flags(flags))
                    entries[(t, i)] = n
                t = n
            else:
                if large:
                    if (t, i2) in entries:
                        continue
                    gpa = 0x200000 if r.chance(80) else 0x400000       # the nested 2 MiB page, or none
                    self.emit("set_gpte", t, Int(i2), gpa, Flags(r.weighted(GUEST_LEAF) + ("PTE_PS",)))
                    leaves.add((t, i2))
                    gva = (i4 << 39) | (i3 << 30) | (i2 << 21)
                    slots.append((gva, t, i2, gpa, 2))
                    continue
                k = r.integer(0, 19 + 4 * self.big)
                gpa = (GUEST_DATA + 0x1000 * k if k < 16 else
                       (0x200000 + 0x1000 * r.integer(0, 7), 0x400000, 0x600000, GUEST_TABLES)[k - 16] if k < 20 else
                       GPA_1G + HOST_4K + 0x1000 * r.integer(0x100, 0x10F))
                self.emit("set_gpte", t, Int(i1), gpa, Flags(r.weighted(GUEST_LEAF)))
                gva = (i4 << 39) | (i3 << 30) | (i2 << 21) | (i1 << 12)
                slots.append((gva, t, i1, gpa, 1))
        self.root_entries = sorted((i, n) for (t, i), n in entries.items() if t == pml4)
        return slots

    def gva_in(self, slot: tuple[int, int, int, int, int]) -> int:
        """An address in a slot's page: its first qwords, or (2 MiB page) a 4 KiB page inside it."""
        r = self.r
        gva, _, _, _, level = slot
        if level == 2:
            gva += 0x1000 * r.choice([0, 1, 8, 0x1FF])
        return gva + 8 * r.integer(0, 3)

    def access(self, gva: int, acc: str | None = None) -> None:
        r = self.r
        acc = acc or r.choice(["ACC_READ", "ACC_READ", "ACC_WRITE", "ACC_EXEC"])
        self.emit("vm_access", gva, Flags((acc,)), Int(r.choice([0, 3, 3])), result=acc != "ACC_EXEC")

    def read_back(self, setter: str, slots: list[tuple[int, int, int, int, int]], table: int, idx: int,
                  always: bool = False) -> None:
        """After a change of the nested leaf mapping gpa page ``idx`` (READBACK_PERCENT): reads of every
        guest page mapped at that gpa page or beside it, then the leaf's entry and the upper entries of
        its path (EPT A/D, §29.3.5, is set in each entry a walk uses), then the guest leaves used; ``always``
        after an INVEPT all-context (the walks after it are fresh: their A/D bits are the model's to know)."""
        r = self.r
        if not r.chance(READBACK_PERCENT) and not always:
            return
        near = [sl for sl in slots if sl[4] == 1 and abs((sl[3] >> 12) - idx) <= 1]
        for sl in near[:4]:
            # each kind of access: the change may have taken (or given) read, write or execute rights
            self.access(sl[0] + 8 * r.integer(0, 3), r.choice(["ACC_READ", "ACC_WRITE", "ACC_EXEC"]))
        self.emit("read_epte", table, Int(idx), result=True)
        if setter == "set_epte" or r.chance(50):
            for t, i, _, _ in self.uppers:
                self.emit("read_epte", t, Int(i), result=True)
        for sl in near[:2]:
            self.emit("read_gpte", sl[1], Int(sl[2]), result=True)

    def odd_upper(self, ept: bool, root: int, slots: list[tuple[int, int, int, int, int]]) -> None:
        """An upper nested entry made odd for a few accesses, then put back and invalidated: for EPT a
        misconfiguration (§29.3.3.1: PS in a PML4E, bits 6:3 of a non-leaf entry, W without R, bits
        above MAXPHYADDR) or not present or read-only; for nested paging (APM §15.25.5) not present,
        read-only, supervisor, XD or PS in a PML4E."""
        r = self.r
        if not self.uppers or not slots:
            return
        table, idx, nxt, level = r.choice(self.uppers)
        setter = "set_epte" if ept else "set_npte"
        # PS on a pointer: reserved in a PML4E; in a PDPTE or PDE a large page whose frame (the table's)
        # is not aligned to its size, so its low address bits are reserved
        odd = r.choice(ODD_UPPER_EPT if ept else ODD_UPPER_NPT)
        good: tuple[str, ...] = ("EPT_R", "EPT_W", "EPT_X") if ept else ("PTE_P", "PTE_RW", "PTE_US")
        high = 1 << r.choice([51, 48, 40]) if r.chance(15) else 0      # above MAXPHYADDR on some CPUs
        self.emit(setter, table, Int(idx), nxt | high, _flags(odd))
        for _ in range(r.integer(1, 3)):
            self.access(self.gva_in(r.choice(slots)))
        self.emit(setter, table, Int(idx), nxt, Flags(good))
        self.emit("invept", Flags(("INVEPT_SINGLE",)), root)

    def alt_root(self, slots: list[tuple[int, int, int, int, int]]) -> None:
        """Another guest address space: a second root holding the first one's entries (the lower tables
        shared), loaded into the guest's CR3, an access, one of its entries dropped, the access again,
        and CR3 back (every later walk must start from the loaded root); or CR3 = gpa 0 (mapped by no
        nested entry), or the first gpa past the harness's root slot (refused)."""
        r = self.r
        k = r.integer(0, 9)
        if k < 7 and self.root_entries:
            for i, n in self.root_entries:
                self.emit("set_gpte", ALT_ROOT, Int(i), n, Flags(("PTE_P", "PTE_RW", "PTE_US")))
            self.emit("vm_cr3", ALT_ROOT)
            sl = r.choice(slots)
            self.access(self.gva_in(sl))
            i = sl[0] >> 39 & 0x1FF
            self.emit("set_gpte", ALT_ROOT, Int(i), 0, Int(0))
            self.access(self.gva_in(sl))
        else:
            self.emit("vm_cr3", r.choice([0, GUEST_HARNESS_SLOT << 39]))
            self.access(self.gva_in(r.choice(slots)))
        self.emit("vm_cr3", GUEST_TABLES)
        self.access(self.gva_in(r.choice(slots)))

    def two_d(self) -> None:
        r = self.r
        want_ept = r.chance(60)
        # a target of one vendor (Bochs' Intel or AMD models) gets that vendor's nested paging only
        npt_ok = self.allowed is None or "set_npte" in self.allowed
        ept = (want_ept and (self.allowed is None or "set_epte" in self.allowed)) or not npt_ok
        self.uppers: list[tuple[int, int, int, int]] = []
        self.root_entries: list[tuple[int, int]] = []
        self.big = False
        root, leaves = self.nested(ept, 0)
        tables = self.tables
        kind = "VM_EPT" if ept else "VM_NPT"
        five = ept and r.chance(FIVE_LEVEL_PERCENT)
        if five:
            # a 5-level walk (SDM Vol. 3C §29.3.2, EPTP[5:3] = 4): PML5[0] -> the PML4, PML5[1] not present
            # (gpa 2^48..2^49); a CPU without 5-level EPT refuses the VM entry and the program runs no guest
            pml5 = EPT_ROOT + 0x5000
            self.emit("set_epte", pml5, Int(0), root, Flags(("EPT_R", "EPT_W", "EPT_X")))
            self.emit("set_epte", pml5, Int(1), 0, Int(0))
            self.uppers.insert(0, (pml5, 0, root, 5))
            root = pml5
        eptp = Flags(("EPTP_WB", "EPTP_WL5" if five else "EPTP_WL4") + (("EPTP_AD",) if r.chance(25) else ())) if ept else Int(0)
        gcr4 = Flags(("CR4_PAE",) + (("CR4_SMEP",) if r.chance(15) else ()) + (("CR4_SMAP",) if r.chance(GUEST_SMAP_PERCENT) else ()))
        gefer = Flags(("EFER_LME", "EFER_LMA") + (("EFER_NXE",) if r.chance(85) else ()))
        if ept and r.chance(ODD_EPTP_PERCENT):
            self.emit("vm_boot", Int(0), Flags((kind,)), root, Int(r.weighted(ODD_EPTP)), GUEST_TABLES, gcr4, gefer)
            if r.chance(50):
                # refused: no guest runs yet (a walk for it is an error)
                self.emit("vm_access", GUEST_DATA, Flags(("ACC_READ",)), Int(0), result=True)
        self.emit("vm_boot", Int(0), Flags((kind,)), root, eptp, GUEST_TABLES, gcr4, gefer)
        slots = self.guest()
        booted = [0]
        low = [sl for sl in slots if sl[4] == 1]
        if five and low:
            # a guest page onto a gpa in the PML5 slot left not present
            gva, t, i, gpa, _ = sl = r.choice(low)
            self.emit("set_gpte", t, Int(i), GPA_PML5_1 | gpa, Flags(("PTE_P", "PTE_RW", "PTE_US")))
            self.access(gva)
            slots[slots.index(sl)] = (gva, t, i, GPA_PML5_1 | gpa, 1)
        if r.chance(ODD_UPPER_PERCENT):
            self.odd_upper(ept, root, slots)
        if ept and len(tables) == 3 and r.chance(ROOT_PAGE_PERCENT):
            root_page_exec(self, tables[2], slots, root, GUEST_TABLES, HOST_4K + GUEST_TABLES)
        setter = "set_epte" if ept else "set_npte"
        ops = swarm(r, OPS_2D, SWARM_PERCENT, keep=lambda op: op[1] == "access")
        for _ in range(r.integer(3, MAX_OPS)):
            if r.exhausted:
                break
            k = r.weighted(ops)
            if k == "access" and slots:
                self.access(self.gva_in(r.choice(slots)))
            elif k == "nested_leaf" and leaves:
                t, i = r.choice(leaves)
                used = [(t2, i2) for t2, i2 in leaves if any(sl[4] == 1 and sl[3] >> 12 == i2 for sl in slots)]
                if used and r.chance(USED_LEAF_PERCENT):
                    t, i = r.choice(used)           # a leaf that maps a page the guest's slots reach
                self.emit(setter, t, Int(i), HOST_4K + 0x1000 * r.integer(0, 0x1FF), _flags(self.nested_leaf(ept, False)))
                inv = r.weighted(LEAF_INVEPT)
                if inv is not None:
                    self.emit("invept", Flags((inv,)), root if inv == "INVEPT_SINGLE" else Int(0))
                self.read_back(setter, slots, t, i, always=inv == "INVEPT_ALL")
            elif k == "guest_leaf" and slots:
                _, t, i, _, level = r.choice(slots)
                self.emit("set_gpte", t, Int(i), GUEST_DATA + 0x1000 * r.integer(0, 15) if level == 1 else 0x200000,
                          Flags(r.weighted(GUEST_LEAF) + (("PTE_PS",) if level == 2 else ())))
            elif k == "read_gpte" and slots:
                _, t, i, _, _ = r.choice(slots)
                if self.root_entries and r.chance(30):
                    t, i = GUEST_TABLES, r.choice(self.root_entries)[0]     # an upper guest entry: A set by every walk
                self.emit("read_gpte", t, Int(i), result=True)
            elif k == "read_epte" and leaves:
                t, i = r.choice(leaves)
                self.emit("read_epte", t, Int(i), result=True)
            elif k == "invept_all":
                used = [(sl, (t, i)) for sl in slots for t, i in leaves if sl[4] == 1 and sl[3] >> 12 == i
                        and sl[3] < 0x200000]
                if used and r.chance(INVEPT_ALL_REMAP_PERCENT):
                    # a cached mapping, its leaf moved, INVEPT all-context, the page read again: the walk
                    # after it is fresh, so the leaf's A bit (EPT A/D or nested paging) is due
                    sl, (t, i) = r.choice(used)
                    self.access(sl[0], "ACC_READ")
                    self.emit(setter, t, Int(i), HOST_4K + 0x1000 * r.integer(0, 0x1FF), _flags(upper_rwx(ept)))
                    self.emit("invept", Flags(("INVEPT_ALL",)), Int(0))
                    self.access(sl[0], "ACC_READ")
                    self.emit("read_epte", t, Int(i), result=True)
                else:
                    self.emit("invept", Flags(("INVEPT_ALL",)), Int(0))
            elif k == "vm_cr3":
                if r.chance(ODD_CR3_PERCENT) and slots:
                    self.alt_root(slots)
                else:
                    self.emit("vm_cr3", GUEST_TABLES)
            elif k == "second_guest" and booted == [0] and not five:
                # a second guest with a disjoint nested stage and the same guest-physical layout
                uppers = self.uppers
                root1, _ = self.nested(ept, 1)
                self.uppers = uppers                          # odd_upper and read-backs stay with guest 0's
                self.emit("vm_boot", Int(1), Flags((kind,)), root1, eptp, GUEST_TABLES, gcr4, gefer)
                slots = self.guest()
                booted.append(1)
            elif k == "enter" and len(booted) > 1:
                self.emit("vm_enter", Int(r.choice(booted)))
            elif k == "odd_upper" and len(booted) == 1:
                self.odd_upper(ept, root, slots)
            elif k == "edge":
                edge_call(self, ept, root, tables if len(booted) == 1 else self.tables, self.guest_tables or [GUEST_TABLES],
                          GUEST_TABLES, [sl[0] for sl in slots], (Flags((kind,)), root, eptp, GUEST_TABLES, gcr4, gefer), ALT_ROOT)
            elif k == "root_page" and ept and len(booted) == 1 and len(tables) == 3:
                root_page_exec(self, tables[2], slots, root, GUEST_TABLES, HOST_4K + GUEST_TABLES)
            elif k == "sweep" and leaves and len(booted) == 1:
                sweep(self, leaves)

    # -- KPTI ------------------------------------------------------------------------------

    def kpti(self) -> None:
        r = self.r
        mode = r.choice([("KPTI_ON", "KPTI_PCID"), ("KPTI_ON",), ("KPTI_PCID",), ("KPTI_ON", "KPTI_PCID")])
        self.emit("kpti_boot", Flags(mode) if r.chance(90) else Flags(("KPTI_OFF",)))
        users = [0x400000 + 0x1000 * i for i in range(r.integer(1, 4))]
        if r.chance(KPTI_EDGE_PERCENT):
            users.append(USER_TOP - 0x1000)         # the last user page (arch/x86: TASK_SIZE_MAX below 2^47)
        kern = [0xFFFFFFFF81000000 + 0x1000 * i for i in range(r.integer(1, 3))]
        tramp = 0xFFFFFE0000000000
        for i, a in enumerate(kern):
            self.emit("kpti_map", a, 0x1000000 + 0x1000 * i, Flags(("KMAP_KERNEL",)))
        self.emit("kpti_map", tramp, 0x2000000, Flags(("KMAP_TRAMPOLINE",)))
        for i, a in enumerate(users):
            self.emit("kpti_map", a, 0x3000000 + 0x1000 * i, Flags(("KMAP_USER",)))
        in_kernel = False
        for _ in range(r.integer(3, MAX_OPS)):
            if r.exhausted:
                break
            k = r.integer(0, 99)
            addr = r.choice(users + users + kern + [tramp, 0x7FFFF000])
            if r.chance(KPTI_OFFSET_PERCENT):
                addr += r.choice([8, 0x800, 0xFF8])   # the frame's offset comes from the address, cached or not
            if not in_kernel:
                if k < 55:
                    self.emit("user_access", addr, result=True)
                elif k < 85:
                    self.emit("syscall_enter")
                    in_kernel = True
                elif k < 90:
                    # a user mapping, now and then one the kernel refuses (at or above the top of user space)
                    at = USER_TOP if r.chance(KPTI_EDGE_PERCENT) else r.choice(users)
                    self.emit("kpti_map", at, 0x3000000 + 0x1000 * r.integer(0, 15), Flags(("KMAP_USER",)))
                elif r.chance(KPTI_ARG_EDGE_PERCENT):
                    kpti_edge_call(self, False, users)
                else:
                    counter = Flags((r.choice(["KSTAT_FLUSHES", "KSTAT_CR3_WRITES", "KSTAT_WALKS", "KSTAT_SYSCALLS"]),))
                    self.emit("kpti_stat", counter if not r.chance(KPTI_EDGE_PERCENT) else Int(4), result=True)
            else:
                if k < 40:
                    self.emit("kernel_access", addr, result=True)
                elif k < 60:
                    self.emit("context_switch", Int(r.integer(1, 8)))
                elif k < 70:
                    self.emit("kpti_map", r.choice(users), 0x3000000 + 0x1000 * r.integer(0, 15), Flags(("KMAP_USER",)))
                elif k < 72 and r.chance(KPTI_EDGE_PERCENT * 3):
                    # calls the kernel refuses here: a PID out of range, a second entry, and (from user mode
                    # below) a switch or an exit
                    self.emit("context_switch", Int(r.choice([0, MAX_PIDS + 1])))
                    self.emit("syscall_enter")
                    kpti_edge_call(self, True, users)
                else:
                    self.emit("syscall_exit")
                    in_kernel = False
                    if k >= 98:             # (no draw of its own: the programs' other shapes keep their bytes)
                        self.emit("syscall_exit" if k == 98 else "context_switch", *([] if k == 98 else [Int(1)]))


def program(r: Chooser, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """A two-dimensional or a KPTI program of the virt layer's calls in ``calls``, every decision drawn
    from ``r``."""
    b = VirtGen(r, calls)
    two_d_ok = calls is None or "vm_access" in calls
    if (r.chance(30) or not two_d_ok) and (calls is None or "kpti_boot" in calls):
        b.kpti()
    else:
        b.two_d()
    return Program(tuple(b.calls))
