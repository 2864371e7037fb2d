"""The hw layer's Hypothesis state machine, parameterised by target.

Rules map pages (a fresh 4-level chain, or a 2 MiB / 1 GiB page), change leaf
bits with or without INVLPG, access as user or supervisor (read, write, fetch,
EFLAGS.AC), switch CR3 between two roots that share their lower tables (with
PCIDs and the no-flush bit, and INVPCID, where the CPU has them), toggle CR0.WP,
CR4.SMEP/SMAP/PGE and EFER.NXE, and read entries back.  Every step is judged by
the model at once (clause named) and then adopted; after every step the model's
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

from typing import Any

import hypothesis.strategies as st
from hypothesis.control import note
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

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


SEG_FLAGS = st.sampled_from([("DESC_S", "DESC_P", "DESC_DB"), ("DESC_S", "DESC_P", "DESC_DB"), ("DESC_S", "DESC_P"),
                             ("DESC_S", "DESC_P", "DESC_DB", "DESC_G"), ("DESC_S", "DESC_DB"), ("DESC_P", "DESC_DB")])
SEG_SREGS = st.sampled_from(sorted(set(gen_hw.SREGS)))
# the laws of the model's invariants (model/paging.py), each its own invariant: by the clause it names
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
            self.pml4e: dict[int, int] = {}        # PML4 index -> PDPT
            self.pdpte: dict[tuple[int, int], int] = {}
            self.pde: dict[tuple[int, int, int], int] = {}
            self.leaves: list[tuple[int, int, int]] = []   # (linear page, table, index)
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
            if skip_known and self.model.expect("main", name, values).clause in known:
                return
            self.stepper.step(call, values)

        def _table(self) -> int:
            t = self.next_table
            self.next_table += 0x1000
            return t

        # -- rules ---------------------------------------------------------------

        @rule(i4=st.sampled_from([0, 1, 256]), i3=st.integers(0, 2), i2=st.integers(0, 3), i1=st.integers(0, 5),
              size=st.sampled_from(["4k", "4k", "4k", "2m", "1g"]), frame=st.integers(0, 15), data=st.data())
        def map_page(self, i4: int, i3: int, i2: int, i1: int, size: str, frame: int, data: Any) -> None:
            flags = _rights(data, large=size != "4k")
            upper = Flags(("PTE_P", "PTE_RW", "PTE_US"))
            if i4 not in self.pml4e:
                self.pml4e[i4] = self._table()
                self._do("set_pte", _hex(ROOT), Int(i4), _hex(self.pml4e[i4]), upper)
                self._do("set_pte", _hex(ROOT2), Int(i4), _hex(self.pml4e[i4]), upper)
            pdpt = self.pml4e[i4]
            la = (i4 << 39) | (i3 << 30)
            if la >> 47:
                la |= 0xFFFF << 48
            if size == "1g":
                if (i4, i3) in self.pdpte:
                    return
                self._do("set_pte", _hex(pdpt), Int(i3), Int(0), Flags(flags + ("PTE_PS",)))
                # a 1 GiB page maps physical 0: probe above the harness's first MiB, as gen_hw does
                self.leaves.append((la | 0x300000, pdpt, i3))
                self.pdpte[(i4, i3)] = -1
                return
            if self.pdpte.get((i4, i3), 0) == -1:
                return
            if (i4, i3) not in self.pdpte:
                self.pdpte[(i4, i3)] = self._table()
                self._do("set_pte", _hex(pdpt), Int(i3), _hex(self.pdpte[(i4, i3)]), upper)
            pd = self.pdpte[(i4, i3)]
            la |= i2 << 21
            if size == "2m":
                if (i4, i3, i2) in self.pde:
                    return
                self._do("set_pte", _hex(pd), Int(i2), _hex(0x400000 + 0x200000 * (frame % 4)), Flags(flags + ("PTE_PS",)))
                self.leaves.append((la, pd, i2))
                self.pde[(i4, i3, i2)] = -1
                return
            if self.pde.get((i4, i3, i2), 0) == -1:
                return
            if (i4, i3, i2) not in self.pde:
                self.pde[(i4, i3, i2)] = self._table()
                self._do("set_pte", _hex(pd), Int(i2), _hex(self.pde[(i4, i3, i2)]), upper)
            pt = self.pde[(i4, i3, i2)]
            self._do("set_pte", _hex(pt), Int(i1), _hex(DATA + 0x1000 * frame), Flags(flags))
            self.leaves.append((la | (i1 << 12), pt, i1))

        @precondition(lambda self: bool(self.leaves))
        @rule(data=st.data(), frame=st.integers(0, 15), invalidate=st.booleans())
        def change_leaf(self, data: Any, frame: int, invalidate: bool) -> None:
            la, table, idx = data.draw(st.sampled_from(self.leaves))
            flags = _rights(data, large=False)
            self._do("set_pte", _hex(table), Int(idx), _hex(DATA + 0x1000 * frame), Flags(flags))
            if invalidate:
                self._do("invlpg", _hex(la))

        @rule(data=st.data(), op=st.sampled_from(["ACC_READ", "ACC_READ", "ACC_WRITE", "ACC_EXEC"]),
              ac=st.sampled_from([0, 0, 0, 1]), offset=st.integers(0, 7))
        def access(self, data: Any, op: str, ac: int, offset: int) -> None:
            if self.leaves and data.draw(st.integers(0, 9)) > 0:
                la = data.draw(st.sampled_from(self.leaves))[0] + 8 * offset
            else:
                la = data.draw(st.sampled_from([0x1000, 0x800000000000, 0x7FFFFFFFF000]))
            # a root slot the target cannot run user code in is accessed at CPL 0 only
            cpl = data.draw(st.sampled_from([0] if cpl3_reserved(la, reserved) else [0, 3]), label="cpl")
            self._do("access", _hex(la), Flags((op,)), Int(cpl), Int(ac))

        @precondition(lambda self: bool(self.leaves))
        @rule(data=st.data())
        def invlpg(self, data: Any) -> None:
            self._do("invlpg", _hex(data.draw(st.sampled_from(self.leaves))[0]))

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

        @needs("invpcid")
        @precondition(lambda self: bool(self.leaves))
        @rule(kind=st.sampled_from(["INVPCID_ADDR", "INVPCID_SINGLE", "INVPCID_ALL_GLOBAL", "INVPCID_ALL"]),
              pcid=st.integers(0, 2), data=st.data())
        def invpcid(self, kind: str, pcid: int, data: Any) -> None:
            la = data.draw(st.sampled_from(self.leaves))[0]
            self._do("invpcid", Flags((kind,)), Int(pcid), _hex(la))

        @rule(nxe=st.booleans())
        def set_nxe(self, nxe: bool) -> None:
            self._do("wrmsr_efer", Flags(("EFER_LME", "EFER_LMA") + (("EFER_NXE",) if nxe else ())))

        @precondition(lambda self: bool(self.leaves))
        @rule(data=st.data())
        def read_back(self, data: Any) -> None:
            _, table, idx = data.draw(st.sampled_from(self.leaves))
            self._do("read_pte", _hex(table), Int(idx))

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
