"""The hw layer's segmentation unit: state and judgement of the segmentation calls (``model.seg`` rules).

State: the CPU mode (``seg_mode``), the GDT (the harness's descriptors and the ones the
program wrote, accessed bits as the CPU set them), GDTR's limit, and each segment
register's selector and hidden part.  Memory outside the harness's first pages holds the
pattern of ``memspec.calls_hw`` (the qword at ``pa`` reads ``(pa << 8) | 0xCC``), so an
access's value tells the physical address each byte came from.

Example: after ``seg_mode(SEG_REAL)`` (A20 masked), ``load_seg(SREG_DS, 0xFFFF, 0)`` then
``seg_access(SREG_DS, 0x8010, ACC_READ, 4)`` reads the dword at physical 0x8000 (linear
0x108000 with bit 20 forced to 0): ``0x008000cc`` (sdm.seg.real.a20-wrap).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memspec.calls_hw import (SEG_CODE32, SEG_CODE64, SEG_DATA, SEG_GDT_ENTRIES, SEG_GDT_LIMIT, SEG_GDT_PROGRAM,
                              SEG_HARNESS_GDT, SEG_LOW, SEG_RAM, pattern)
from memspec.records import OK, Outcome

from .expect import Expect, exactly
from .rules import Rule, compose
from .seg import (CS, FS, GS, LONG, MODES, PROTECTED, REAL, REAL_A20, SS, U32, U64, Descriptor, SegFault,
                  SegReg, access, canonical, from_descriptor, load, load_clause, make_descriptor, physical, real_reg,
                  sreg_name)

EINVAL = Outcome(value=-1, errno="EINVAL")
DATA_SREGS = (0, 2, 3, 4, 5)        # ES, SS, DS, FS, GS
DESC_FLAGS = (1 << 12) | (1 << 15) | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 23)
ACCESSED = 1 << 40

SEG_CALLS = frozenset({"seg_mode", "set_desc", "read_desc", "lgdt", "load_seg", "seg_access", "wrmsr_segbase"})

SEG_FACTS: dict[str, Any] = {"a20_gate": True, "seg_ram": SEG_RAM, "seg_low": SEG_LOW}


def fault_outcome(f: SegFault) -> Outcome:
    return Outcome(signal=f.vector) if f.errcode is None else Outcome(signal=f.vector, detail=(("errcode", f.errcode),))


def show(o: Outcome) -> str:
    """An outcome with its error code: ``#GP(0x18)``."""
    code = dict(o.detail).get("errcode")
    if o.signal and code is not None:
        return f"{o.signal}({code:#x})"
    return o.describe()


def same(obs: Outcome, want: Outcome) -> bool:
    if (obs.value, obs.errno, obs.signal) != (want.value, want.errno, want.signal):
        return False
    code = dict(want.detail).get("errcode")
    return code is None or dict(obs.detail).get("errcode") == code


class SegUnit:
    """The segmentation unit (see the module docstring)."""

    def __init__(self, facts: dict[str, Any] | None = None):
        f = dict(SEG_FACTS)
        f.update({k: v for k, v in (facts or {}).items() if k in SEG_FACTS})
        self.facts = f
        self.ram = int(f["seg_ram"])
        self.low = int(f["seg_low"])
        self.reset(LONG)

    def reset(self, mode: int) -> None:
        """``seg_mode``: firmware set-up of ``mode`` (memspec.seg.mode)."""
        self.mode = mode
        self.gdt: dict[int, int] = dict(SEG_HARNESS_GDT)
        self.gdt_limit = SEG_GDT_LIMIT
        self.set_by_cpu: set[int] = set()                  # descriptors whose A bit a load set
        self.loaded: dict[int, tuple[int, int]] = {}      # sreg -> (GDT index, descriptor) it was loaded from
        if mode in (REAL, REAL_A20):
            self.regs = {s: real_reg(0) for s in DATA_SREGS}
            self.cs = real_reg(0)
        else:
            data = from_descriptor(SEG_DATA, Descriptor(SEG_HARNESS_GDT[SEG_DATA >> 3]))
            self.regs = {s: data for s in DATA_SREGS}
            code = SEG_CODE64 if mode == LONG else SEG_CODE32
            self.cs = from_descriptor(code, Descriptor(SEG_HARNESS_GDT[code >> 3]))

    # -- LayerModel-like entry points (the hw model delegates the segmentation calls here) ----------

    def expect(self, name: str, args: tuple) -> Expect:
        return self.RULES[name].expect(self, *args)

    def apply(self, name: str, args: tuple, outcome: Outcome) -> None:
        f = self.RULES[name].apply
        if f is not None:
            f(self, outcome, *args)

    # -- mode, descriptors, GDTR -------------------------------------------------------------------

    def _expect_seg_mode(self, mode: int) -> Expect:
        if mode not in MODES:
            return exactly("memspec.seg.args", EINVAL)
        if mode == REAL and not self.facts["a20_gate"]:
            return exactly("memspec.seg.mode-feature", EINVAL)
        return exactly("memspec.seg.mode", OK)

    def _apply_seg_mode(self, o: Outcome, mode: int) -> None:
        if o.ok:
            self.reset(mode)

    def _desc_args_ok(self, index: int, base: int, limit: int, type_: int, dpl: int, flags: int) -> bool:
        return (1 <= index < SEG_GDT_PROGRAM and 0 <= base <= U32 and 0 <= limit < 1 << 20 and 0 <= type_ < 16
                and 0 <= dpl <= 3 and 0 <= flags and not flags & ~DESC_FLAGS)

    def _expect_set_desc(self, index: int, base: int, limit: int, type_: int, dpl: int, flags: int) -> Expect:
        if not self._desc_args_ok(index, base, limit, type_, dpl, flags):
            return exactly("memspec.seg.desc-args", EINVAL)
        return exactly("memspec.seg.set-desc", OK)

    def _apply_set_desc(self, o: Outcome, index: int, base: int, limit: int, type_: int, dpl: int, flags: int) -> None:
        if o.ok:
            self.gdt[index] = make_descriptor(base, limit, type_, dpl, flags)
            self.set_by_cpu.discard(index)

    def _expect_read_desc(self, index: int) -> Expect:
        if not 0 <= index < SEG_GDT_ENTRIES:
            return exactly("memspec.seg.desc-args", EINVAL)
        want = Outcome(value=self.gdt.get(index, 0))
        clause = "sdm.seg.load.accessed" if index in self.set_by_cpu else "memspec.seg.desc-readback"
        d = Descriptor(want.value or 0)
        return Expect(clause, want, f"{want.value:#x} ({d.describe()})", (want,))

    def _apply_read_desc(self, o: Outcome, index: int) -> None:
        pass

    def _expect_lgdt(self, limit: int) -> Expect:
        if not 0 <= limit <= SEG_GDT_LIMIT:
            return exactly("memspec.seg.args", EINVAL)
        return exactly("memspec.seg.lgdt", OK)

    def _apply_lgdt(self, o: Outcome, limit: int) -> None:
        if o.ok:
            self.gdt_limit = limit

    # -- segment-register loads --------------------------------------------------------------------

    def _load_args_ok(self, sreg: int, selector: int, cpl: int) -> bool:
        real = self.mode in (REAL, REAL_A20)
        return 0 <= sreg <= 5 and 0 <= selector <= 0xFFFF and (cpl == 0 if real else 0 <= cpl <= 3)

    def _expect_load_seg(self, sreg: int, selector: int, cpl: int) -> Expect:
        if not self._load_args_ok(sreg, selector, cpl):
            return exactly("memspec.seg.args", EINVAL)
        res = self._load(sreg, selector, cpl)
        if isinstance(res, SegFault):
            return self._exact(res.clause, fault_outcome(res), lambda: self._explain_load(sreg, selector, cpl))
        return self._exact(load_clause(self.mode, sreg, selector, self.gdt), OK,
                           lambda: self._explain_load(sreg, selector, cpl))

    def _apply_load_seg(self, o: Outcome, sreg: int, selector: int, cpl: int) -> None:
        if not o.ok or not self._load_args_ok(sreg, selector, cpl):
            return
        res = self._load(sreg, selector, cpl)
        if isinstance(res, SegFault):
            return
        self.regs[sreg] = res
        index = selector >> 3
        self.loaded.pop(sreg, None)
        if self.mode in (PROTECTED, LONG) and not res.null:
            # §3.4.5.1: the processor sets the accessed bit when it loads the descriptor
            if not self.gdt.get(index, 0) & ACCESSED:
                self.gdt[index] = self.gdt.get(index, 0) | ACCESSED
                self.set_by_cpu.add(index)
            self.loaded[sreg] = (index, self.gdt[index])

    def _load(self, sreg: int, selector: int, cpl: int) -> SegReg | SegFault:
        """MOV sreg, selector at cpl (``seg.load``), on this unit's GDT."""
        return load(self.mode, self.gdt, self.gdt_limit, sreg, selector, cpl, self.regs.get(sreg, self.cs))

    def _explain_load(self, sreg: int, selector: int, cpl: int) -> str:
        index = selector >> 3
        d = Descriptor(self.gdt.get(index, 0))
        where = (f"GDT[{index}] = {d.raw:#018x} ({d.describe()})" if not selector & 4 and index * 8 + 7 <= self.gdt_limit
                 else "outside the GDT (LDT selector or beyond GDTR.limit)")
        return (f"mode {_MODE_NAMES[self.mode]}, MOV {sreg_name(sreg)}, {selector:#x} (index {index}, TI {selector >> 2 & 1}, "
                f"RPL {selector & 3}) at CPL {cpl}; GDTR.limit = {self.gdt_limit:#x}; {where}")

    # -- accesses ----------------------------------------------------------------------------------

    def _access_args_ok(self, sreg: int, offset: int, op: int, size: int) -> bool:
        top = U64 if self.mode == LONG else U32
        sizes = (1, 2, 4, 8) if self.mode == LONG else (1, 2, 4)
        return sreg in DATA_SREGS and 0 <= offset <= top and op in (0, 1) and size in sizes

    def _value(self, la: int, size: int) -> int | None:
        v = 0
        for i in range(size):
            pa = self._physical(la, i)
            if not self.low <= pa < self.ram:
                return None
            v |= (pattern(pa & ~7) >> (8 * (pa & 7)) & 0xFF) << (8 * i)
        return v

    def _access(self, reg: SegReg, sreg: int, offset: int, size: int, op: int) -> tuple[int, str] | SegFault:
        """The linear address of ``sreg:offset`` or the fault (``seg.access``)."""
        return access(self.mode, reg, sreg, offset, size, op)

    def _physical(self, la: int, i: int) -> int:
        """The physical address of byte ``i`` of an access at ``la`` (``seg.physical``)."""
        return physical(self.mode, la, i)

    def _outcome(self, reg: SegReg, sreg: int, offset: int, op: int, size: int) -> tuple[Outcome | None, str]:
        res = self._access(reg, sreg, offset, size, op)
        if isinstance(res, SegFault):
            return fault_outcome(res), res.clause
        la, clause = res
        if self.mode == REAL and la + size - 1 >= 1 << 20:
            clause = "sdm.seg.real.a20-wrap"
        elif self.mode == REAL_A20 and la + size - 1 >= 1 << 20:
            clause = "sdm.seg.real.a20-reach"
        v = self._value(la, size)
        return (None if v is None else Outcome(value=v)), clause

    def _expect_seg_access(self, sreg: int, offset: int, op: int, size: int) -> Expect:
        if not self._access_args_ok(sreg, offset, op, size):
            return exactly("memspec.seg.args", EINVAL)
        reg = self.regs[sreg]
        want, clause = self._outcome(reg, sreg, offset, op, size)
        # in 64-bit mode only FS's and GS's hidden part (their base) still matters
        if sreg in self.loaded and want is not None and want.ok and (self.mode != LONG or sreg in (FS, GS)):
            index, raw = self.loaded[sreg]
            if (self.gdt.get(index, 0) | ACCESSED) != (raw | ACCESSED):
                clause = "sdm.seg.cache-until-reload"      # §3.4.3: the hidden part is what was loaded
        explain = lambda: self._explain_access(sreg, offset, op, size)  # noqa: E731
        if reg.alt_bases:
            options = [want] + [self._outcome(replace(reg, base=b, alt_bases=()), sreg, offset, op, size)[0]
                                for b in reg.alt_bases]
            if any(o is None for o in options):
                return Expect("memspec.seg.outside-pattern", want or Outcome(value=0), "a value the pattern does not cover",
                              unknown=True)
            opts = [o for o in options if o is not None]

            def allowed(obs: Outcome) -> str | None:
                if any(same(obs, o) for o in opts):
                    return None
                return f"expected {' or '.join(show(o) for o in opts)}, observed {show(obs)}\n{explain()}"
            return Expect("sdm.seg.long.null-fs-gs-base", opts[0], " or ".join(show(o) for o in opts),
                          predicate=allowed, impl_defined=True)
        if want is None:
            return Expect("memspec.seg.outside-pattern", Outcome(value=0), "a value from memory the pattern does not cover",
                          unknown=True)
        return self._exact(clause, want, explain)

    def _apply_seg_access(self, o: Outcome, sreg: int, offset: int, op: int, size: int) -> None:
        if not self._access_args_ok(sreg, offset, op, size):
            return
        reg = self.regs[sreg]
        if reg.alt_bases and o.value is not None:
            for b in (reg.base,) + reg.alt_bases:
                cand = replace(reg, base=b, alt_bases=())
                got, _ = self._outcome(cand, sreg, offset, op, size)
                if got is not None and same(o, got):
                    self.regs[sreg] = cand
                    break

    def _explain_access(self, sreg: int, offset: int, op: int, size: int) -> str:
        reg = self.regs[sreg]
        return (f"mode {_MODE_NAMES[self.mode]}, {('read', 'write')[op]} of {size} bytes at {sreg_name(sreg)}:{offset:#x}; "
                f"{sreg_name(sreg)} = {reg.describe()}")

    # -- FS/GS bases (64-bit mode) -------------------------------------------------------------------

    def _expect_wrmsr_segbase(self, sreg: int, base: int) -> Expect:
        if self.mode != LONG or sreg not in (FS, GS) or not 0 <= base <= U64:
            return exactly("memspec.seg.args", EINVAL)
        if not canonical(base):
            # WRMSR: #GP(0) "If the source register contains a non-canonical address and ECX specifies
            # one of the following MSRs: IA32_FS_BASE, IA32_GS_BASE, ..."
            return self._exact("sdm.seg.wrmsr-base-noncanonical-gp", Outcome(signal="#GP", detail=(("errcode", 0),)),
                               lambda: f"WRMSR IA32_{sreg_name(sreg)}_BASE, {base:#x}")
        return exactly("sdm.seg.wrmsr-base", OK)

    def _apply_wrmsr_segbase(self, o: Outcome, sreg: int, base: int) -> None:
        if o.ok and self.mode == LONG and sreg in (FS, GS):
            self.regs[sreg] = replace(self.regs[sreg], base=base, alt_bases=())

    # -- helpers -------------------------------------------------------------------------------------

    def _exact(self, clause: str, want: Outcome, explain) -> Expect:
        def allowed(obs: Outcome) -> str | None:
            if same(obs, want):
                return None
            return f"expected {show(want)}, observed {show(obs)}\n{explain()}"
        return Expect(clause, want, show(want), (want,), predicate=allowed)

    def explain(self) -> str:
        regs = ", ".join(f"{sreg_name(s)}={self.regs[s].describe()}" for s in DATA_SREGS)
        return f"mode {_MODE_NAMES[self.mode]}, GDTR.limit={self.gdt_limit:#x}, CS={self.cs.describe()}, {regs}"

    # the rules of this model's calls, by name (model.rules.compose checks them against the call table)
    RULES = compose("hw", {
        "seg_mode": Rule(_expect_seg_mode, _apply_seg_mode),
        "set_desc": Rule(_expect_set_desc, _apply_set_desc),
        "read_desc": Rule(_expect_read_desc, _apply_read_desc),
        "lgdt": Rule(_expect_lgdt, _apply_lgdt),
        "load_seg": Rule(_expect_load_seg, _apply_load_seg),
        "seg_access": Rule(_expect_seg_access, _apply_seg_access),
        "wrmsr_segbase": Rule(_expect_wrmsr_segbase, _apply_wrmsr_segbase),
    }, lead=(1, 2), only=SEG_CALLS, names=False)


_MODE_NAMES = {REAL: "SEG_REAL", REAL_A20: "SEG_REAL_A20", PROTECTED: "SEG_PROTECTED", LONG: "SEG_LONG"}

__all__ = ["SegUnit", "SEG_CALLS", "SEG_FACTS", "show", "same", "fault_outcome", "CS", "SS"]
