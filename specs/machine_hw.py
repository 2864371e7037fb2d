"""The hw layer's Hypothesis state machine, parameterised by target.

Rules map pages (a 4 KiB page, with the tables above it made on the way, or a 2 MiB / 1 GiB
page in a free slot), change or unmap leaves mapped earlier with or without INVLPG, access as
user or supervisor (read, write, fetch, EFLAGS.AC), switch CR3 between two roots that share
their lower tables (with PCIDs and the no-flush bit, and INVPCID, where the CPU has them),
toggle CR0.WP, CR4.SMEP/SMAP/PGE and EFER.NXE, and read entries back.

The mapped leaves (linear address, table, index) live in a Hypothesis bundle, as the results
of ``specs/machine_phys.py`` do: later rules change, access, invalidate, read back or unmap
(``consumes``) a leaf mapped earlier, and a failure's reproducer names the leaf each step took.
Where a page may go is drawn from the slots still free (a 1 GiB or 2 MiB page never lands on a
slot a table or another large page holds, a 4 KiB page never under a large page), so no rule
finds its slot taken.  The tables are bookkeeping of the mapping rule, not bundle entries: a
mapping is one step with its tables made on the way, because Hypothesis' swarm testing turns
rules off per example, and with a rule per table level (four steps before the first 4 KiB
leaf) the machine found a TLB that keeps a translation after INVLPG in 0 of 8 seeded runs of
100 examples, against 2 of 8 in one step.

Every step is judged by the model at once (clause named) and then adopted; after every step the model's
invariants run (``no_stale_translation_after_invalidation``: the model's own TLB
never keeps what an invalidation removed).  A failure prints the clause, the program so far
in program text (Hypothesis shrinks it), expected vs observed, and a replay hint.

On a target with the ``segmentation`` calls, more rules drive the segmentation unit:
switch its mode, write descriptors, load segment registers at CPL 0 and 3 (good and
bad selectors) and access through them at the edges of their limits.  A segmentation
step whose clause is a cited difference of this target (specs/differences.toml) is
skipped: the suite and random programs report those.

What a target cannot run is never generated: a target that declares root slots where it
cannot run CPL 3 code (the fact ``cpl3_reserved_slots``: kvm-pvm keeps slot 256 for itself
while guest user code runs natively) gets only CPL 0 accesses there.  A step the target still
refuses at run time (``SessionFailed`` with ``RunStatus.REFUSED``: its harness, not the
implementation under test, says no) is counted as ``unsupported`` under the clause it would
have exercised (``machine.unsupported_steps``), is left out of the program, and the run goes on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import hypothesis.strategies as st
from hypothesis.control import note
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, precondition, rule

from memspec.errors import SessionFailed
from memspec.model.registry import new_model
from memspec.program import Call, Flags, Int, Program

from . import gen_hw
from .choose import DrawChooser
from .failures import ConformanceFailure
from .machine_rules import law_invariants, needs, remove_unrunnable
from .step import Stepper

ROOT = 0x200000
ROOT2 = 0x20F000         # a second root sharing ROOT's lower tables (another address space, same pages)
TABLES = 0x210000        # fresh table frames from here
DATA = 0x300000


def _hex(v: int) -> Int:
    return Int(v, hex=v >= 4096)


UPPER = ("PTE_P", "PTE_RW", "PTE_US")
PML4_SLOTS = (0, 1, 256)   # user space low and high, and the first kernel slot (sign-extended)
SIZES = ("4k", "4k", "4k", "2m", "1g")
LARGE = -1               # a slot holding a 2 MiB or 1 GiB page, not a table


class Leaf(NamedTuple):
    """A mapped leaf: an address it maps and the entry that maps it."""
    la: int
    table: int
    index: int


def _canonical(la: int) -> int:
    """Sign-extend bit 47 (4-level paging)."""
    return la | 0xFFFF << 48 if la >> 47 & 1 else la


SEG_FLAGS = st.sampled_from([("DESC_S", "DESC_P", "DESC_DB"), ("DESC_S", "DESC_P", "DESC_DB"), ("DESC_S", "DESC_P"),
                             ("DESC_S", "DESC_P", "DESC_DB", "DESC_G"), ("DESC_S", "DESC_DB"), ("DESC_P", "DESC_DB")])
SEG_SREGS = st.sampled_from(sorted(set(gen_hw.SREGS)))
# the laws of the model's invariants (Paging.invariants, model/paging_invalidation.py), each its own invariant: by the clause it names
LAWS = {"a_d_uncertain_only_in_a_d_bits": lambda cid: cid == "sdm.ad.only-a-d",
        "no_stale_translation_after_invalidation": lambda cid: cid != "sdm.ad.only-a-d"}


def machine(target: Any, facts: dict[str, Any] | None = None) -> type[RuleBasedStateMachine]:
    """A state machine class checking ``target`` against the hw-layer model after every step."""
    facts = dict(target.facts()) if facts is None else facts
    calls = getattr(target, "calls", None)
    seg_ok = calls is not None and "seg_access" in calls
    seg_modes = ["SEG_PROTECTED", "SEG_LONG", "SEG_REAL_A20"] + (["SEG_REAL"] if facts.get("a20_gate", True) else [])
    known = _known_differences(getattr(target, "name", "")) if seg_ok else set()
    reserved = frozenset(int(i) for i in facts.get("cpl3_reserved_slots", ()))
    unsupported_steps: dict[str, int] = {}      # clause -> steps the target refused to run

    class HwMachine(RuleBasedStateMachine):
        leaves = Bundle("leaves")               # mapped leaves (4 KiB, 2 MiB, 1 GiB)

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[Call] = []
            try:
                self.session = target.session("hw")
            except SessionFailed as e:   # the reset before the first call did not answer
                raise ConformanceFailure("memspec.target.alive", Program(()), 0, "an answer to the reset",
                                         e.message, e.status.value) from None
            self.model = new_model("hw", facts)
            self.stepper = Stepper(self.model, self.session, note, unsupported_steps)
            self.calls = self.stepper.calls
            self.next_table = TABLES
            # the tables made so far, by their indices: a PDPT per PML4 slot, a PD (or LARGE: a 1 GiB
            # page) per PDPT entry, a PT (or LARGE: a 2 MiB page) per PD entry
            self.pml4e: dict[int, int] = {}
            self.pdpte: dict[tuple[int, int], int] = {}
            self.pde: dict[tuple[int, int, int], int] = {}
            self.pcid = bool(facts.get("pcid", True))
            self._do("mov_cr3", _hex(ROOT))
            if self.pcid:
                self._do("mov_cr4", Flags(("CR4_PAE", "CR4_PCIDE")))
                self.cr4 = ("CR4_PAE", "CR4_PCIDE")
            else:
                self.cr4 = ("CR4_PAE",)

        # -- plumbing ------------------------------------------------------------

        def _do(self, name: str, *args: Int | Flags, skip_known: bool = False) -> None:
            call = Call(name, tuple(args))
            values = tuple(a.value if isinstance(a, Int) else _flags_value(a) for a in args)
            # A segmentation step whose clause is a cited difference of this target is skipped: which
            # clause a step exercises is the model's answer for the drawn arguments in the current
            # segment state, known only here, so generation cannot leave it out beforehand.
            if skip_known and self.model.expect("main", name, values).clause in known:
                note(f"skipped (a cited difference of {getattr(target, 'name', 'the target')}): {name}")
                return
            self.stepper.step(call, values)

        def _table(self) -> int:
            t = self.next_table
            self.next_table += 0x1000
            return t

        def _holder(self, at: tuple[int, ...]) -> int:
            """The table whose entry ``at`` (its indices from the PML4 down) is."""
            return self.pml4e[at[0]] if len(at) == 2 else self.pdpte[at[:2]]

        # -- mapping: one step, tables made on the way, into a slot still free ---------------

        def _sizes(self) -> list[str]:
            """The page sizes with a free slot (a 4 KiB page needs a PD entry no large page holds)."""
            return [size for size in SIZES if self._free(size)]

        def _free(self, size: str) -> list[tuple[int, ...]]:
            """Where a page of ``size`` may go: (i4, i3) for 1 GiB, (i4, i3, i2) for 2 MiB and 4 KiB."""
            if size == "1g":
                return [(i4, i3) for i4 in PML4_SLOTS for i3 in range(3) if (i4, i3) not in self.pdpte]
            return [(i4, i3, i2) for i4 in PML4_SLOTS for i3 in range(3) for i2 in range(4)
                    if self.pdpte.get((i4, i3), 0) != LARGE
                    and (size == "4k" and self.pde.get((i4, i3, i2), 0) != LARGE or (i4, i3, i2) not in self.pde)]

        def _pdpt(self, i4: int) -> int:
            if i4 not in self.pml4e:
                self.pml4e[i4] = self._table()
                for root in (ROOT, ROOT2):      # both roots share the lower tables
                    self._do("set_pte", _hex(root), Int(i4), _hex(self.pml4e[i4]), Flags(UPPER))
            return self.pml4e[i4]

        def _pd(self, i4: int, i3: int) -> int:
            pdpt = self._pdpt(i4)
            if (i4, i3) not in self.pdpte:
                self.pdpte[(i4, i3)] = self._table()
                self._do("set_pte", _hex(pdpt), Int(i3), _hex(self.pdpte[(i4, i3)]), Flags(UPPER))
            return self.pdpte[(i4, i3)]

        @precondition(lambda self: self._sizes())
        @rule(target=leaves, frame=st.integers(0, 15), data=st.data())
        def map_page(self, frame: int, data: Any):
            """A 4 KiB page (an index mapped before is mapped again: a leaf of its own), or a 2 MiB or
            1 GiB page in a slot no table or large page holds."""
            size = data.draw(st.sampled_from(self._sizes()), label="size")
            at = data.draw(st.sampled_from(self._free(size)), label="slot")
            rights = _rights(data, large=size != "4k")
            la = _canonical(at[0] << 39 | at[1] << 30)
            if size == "1g":
                pdpt = self._pdpt(at[0])
                self._do("set_pte", _hex(pdpt), Int(at[1]), Int(0), Flags(rights + ("PTE_PS",)))
                self.pdpte[at] = LARGE
                # a 1 GiB page maps physical 0: probe above the harness's first MiB, as gen_hw does
                return Leaf(la | 0x300000, pdpt, at[1])
            pd = self._pd(at[0], at[1])
            la |= at[2] << 21
            if size == "2m":
                self._do("set_pte", _hex(pd), Int(at[2]), _hex(0x400000 + 0x200000 * (frame % 4)),
                         Flags(rights + ("PTE_PS",)))
                self.pde[at] = LARGE
                return Leaf(la, pd, at[2])
            if at not in self.pde:
                self.pde[at] = self._table()
                self._do("set_pte", _hex(pd), Int(at[2]), _hex(self.pde[at]), Flags(UPPER))
            i1 = data.draw(st.integers(0, 5), label="i1")
            self._do("set_pte", _hex(self.pde[at]), Int(i1), _hex(DATA + 0x1000 * frame), Flags(rights))
            return Leaf(la | i1 << 12, self.pde[at], i1)

        # -- leaves mapped earlier ---------------------------------------------------------

        @rule(leaf=leaves, data=st.data(), frame=st.integers(0, 15), invalidate=st.booleans())
        def change_leaf(self, leaf: Leaf, data: Any, frame: int, invalidate: bool) -> None:
            """New rights and frame in a leaf's entry (a 4 KiB leaf's form: a large page's entry becomes
            a pointer to a table, as a kernel splitting it would write)."""
            self._do("set_pte", _hex(leaf.table), Int(leaf.index), _hex(DATA + 0x1000 * frame),
                     Flags(_rights(data, large=False)))
            if invalidate:
                self._do("invlpg", _hex(leaf.la))

        @rule(leaf=consumes(leaves), invalidate=st.booleans())
        def unmap_leaf(self, leaf: Leaf, invalidate: bool) -> None:
            """Clear a leaf's entry: the leaf is gone, and a large page's slot is free again (for a table
            or another large page: the old translation may be cached until the INVLPG)."""
            self._do("set_pte", _hex(leaf.table), Int(leaf.index), Int(0), Int(0))
            for tables in (self.pdpte, self.pde):
                for at, v in list(tables.items()):
                    if v == LARGE and leaf.table == self._holder(at) and leaf.index == at[-1]:
                        del tables[at]
            if invalidate:
                self._do("invlpg", _hex(leaf.la))

        @rule(leaf=leaves, data=st.data(), op=st.sampled_from(["ACC_READ", "ACC_READ", "ACC_WRITE", "ACC_EXEC"]),
              ac=st.sampled_from([0, 0, 0, 1]), offset=st.integers(0, 7))
        def access(self, leaf: Leaf, data: Any, op: str, ac: int, offset: int) -> None:
            self._access(leaf.la + 8 * offset, op, ac, data)

        @rule(la=st.sampled_from([0x1000, 0x800000000000, 0x7FFFFFFFF000]), data=st.data(),
              op=st.sampled_from(["ACC_READ", "ACC_READ", "ACC_WRITE", "ACC_EXEC"]), ac=st.sampled_from([0, 0, 0, 1]))
        def access_elsewhere(self, la: int, data: Any, op: str, ac: int) -> None:
            """An access at an address no leaf was made for (or one a rule may map): low, non-canonical, the
            top of user space."""
            self._access(la, op, ac, data)

        def _access(self, la: int, op: str, ac: int, data: Any) -> None:
            # a root slot the target cannot run user code in is accessed at CPL 0 only
            cpl = data.draw(st.sampled_from([0] if cpl3_reserved(la, reserved) else [0, 3]), label="cpl")
            self._do("access", _hex(la), Flags((op,)), Int(cpl), Int(ac))

        @rule(leaf=leaves)
        def invlpg(self, leaf: Leaf) -> None:
            self._do("invlpg", _hex(leaf.la))

        @rule(leaf=leaves)
        def read_back(self, leaf: Leaf) -> None:
            self._do("read_pte", _hex(leaf.table), Int(leaf.index))

        @needs("invpcid")
        @rule(leaf=leaves, pcid=st.integers(0, 2),
              kind=st.sampled_from(["INVPCID_ADDR", "INVPCID_SINGLE", "INVPCID_ALL_GLOBAL", "INVPCID_ALL"]))
        def invpcid(self, leaf: Leaf, kind: str, pcid: int) -> None:
            self._do("invpcid", Flags((kind,)), Int(pcid), _hex(leaf.la))

        # -- control registers -----------------------------------------------------------

        @rule(second=st.booleans(), pcid=st.integers(0, 2), noflush=st.booleans())
        def switch_cr3(self, second: bool, pcid: int, noflush: bool) -> None:
            """Load CR3: either root, with a PCID and the no-flush bit where the CPU has PCIDs."""
            value = ROOT2 if second else ROOT
            if self.pcid:
                value |= pcid | ((1 << 63) if noflush else 0)
            self._do("mov_cr3", _hex(value))

        @rule(wp=st.booleans())
        def set_wp(self, wp: bool) -> None:
            self._do("mov_cr0", Flags(("CR0_PG", "CR0_PE") + (("CR0_WP",) if wp else ())))

        @rule(bits=st.sets(st.sampled_from(["CR4_SMEP", "CR4_SMAP", "CR4_PGE"])))
        def set_cr4(self, bits: set[str]) -> None:
            self._do("mov_cr4", Flags(self.cr4 + tuple(sorted(bits))))

        @rule(nxe=st.booleans())
        def set_nxe(self, nxe: bool) -> None:
            self._do("wrmsr_efer", Flags(("EFER_LME", "EFER_LMA") + (("EFER_NXE",) if nxe else ())))

        # -- segmentation (targets with the capability) ----------------------------

        @needs("seg_mode")
        @rule(mode=st.sampled_from(seg_modes))
        def seg_switch_mode(self, mode: str) -> None:
            self._do("seg_mode", Flags((mode,)), skip_known=True)

        @needs("set_desc")
        @rule(index=st.integers(1, 4), base=st.sampled_from([0x200000, 0x300000, 0x10000, 0xFFFF0000]),
              limit=st.sampled_from([0xFFF, 0xFFFF, 0x1, 0xFFFFF]), dpl=st.sampled_from([0, 0, 3]),
              flags=SEG_FLAGS, data=st.data())
        def seg_write_desc(self, index: int, base: int, limit: int, dpl: int, flags: tuple[str, ...],
                           data: Any) -> None:
            dtype = gen_hw.desc_type(DrawChooser(data))
            self._do("set_desc", Int(index), _hex(base), _hex(limit), Flags((dtype,)), Int(dpl), Flags(flags),
                     skip_known=True)

        @needs("load_seg")
        @rule(sreg=SEG_SREGS, index=st.integers(0, 5), rpl=st.sampled_from([0, 0, 3]), cpl=st.sampled_from([0, 0, 3]))
        def seg_load(self, sreg: str, index: int, rpl: int, cpl: int) -> None:
            real = self.model.seg.mode in (0, 1)
            sel = 0x1000 + (index << 12) if real else index << 3 | rpl
            self._do("load_seg", Flags((sreg,)), _hex(sel), Int(0 if real else cpl), skip_known=True)

        @needs("seg_access")
        @rule(sreg=SEG_SREGS, offset=st.sampled_from([0x10, 0xFFC, 0xFFE, 0x1000, 0x1FFC, 0xFFFC, 0x10000, 0x100000,
                                                      0x200010, 0xFFFFFFFC, 0x800000000000]),
              write=st.booleans(), size=st.sampled_from([1, 2, 4, 4]))
        def seg_access(self, sreg: str, offset: int, write: bool, size: int) -> None:
            self._do("seg_access", Flags((sreg,)), _hex(offset), Flags(("ACC_WRITE" if write else "ACC_READ",)),
                     Int(size), skip_known=True)

        def teardown(self) -> None:
            self.session.close()

    # the segmentation rules only for a target with the capability (its calls are never the default);
    # INVPCID only where the CPU has PCIDs and the instruction
    seg_rules = () if seg_ok else ("seg_switch_mode", "seg_write_desc", "seg_load", "seg_access")
    no_invpcid = () if facts.get("pcid", True) and facts.get("invpcid", True) else ("invpcid",)
    remove_unrunnable(HwMachine, calls, also=seg_rules + no_invpcid)
    law_invariants(HwMachine, LAWS)
    HwMachine.__name__ = f"HwMachine_{getattr(target, 'name', 'target')}"
    HwMachine.unsupported_steps = unsupported_steps     # type: ignore[attr-defined]
    return HwMachine


def _rights(data: Any, large: bool) -> tuple[str, ...]:
    """A leaf's rights from the generator's vocabulary (``gen_hw.LEAF``); the page size is the rule's
    choice, so PS goes, and so does the PAT bit of a large page where the leaf is a 4 KiB one (bit 12 is
    then part of the frame)."""
    drop = ("PTE_PS",) if large else ("PTE_PS", "PTE_PAT_LARGE")
    return tuple(f for f in gen_hw.leaf(DrawChooser(data)) if f not in drop)


def cpl3_reserved(la: int, reserved: frozenset[int] | set[int]) -> bool:
    """Is ``la`` (4-level paging) in a root slot where the target declares it cannot run CPL 3
    accesses?  A non-canonical address is in no slot: the CPU raises #GP before any walk."""
    top = la >> 47
    return (top == 0 or top == 0x1FFFF) and (la >> 39) & 0x1FF in reserved


def _known_differences(target_name: str) -> set[str]:
    """Clauses with a cited difference for this target (specs/differences.toml)."""
    import fnmatch

    from memspec.specs.directed import load_differences
    return {d["clause"] for d in load_differences() if fnmatch.fnmatch(target_name, d.get("target", "*"))}


def _flags_value(f: Flags) -> int:
    from memspec.consts import CONSTANTS
    v = 0
    for n in f.names:
        v |= CONSTANTS[n]
    return v
