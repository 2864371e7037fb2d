"""The segmentation model (model/seg.py, model/segunit.py), rule by rule: each rule's outcome and clause."""

from __future__ import annotations

import pytest

from memspec.model import seg
from memspec.model.paging import Paging
from memspec.model.seg import Descriptor, make_descriptor
from memspec.program import eval_args, parse
from memspec.records import Outcome

S, P, DB, G, L = 1 << 12, 1 << 15, 1 << 22, 1 << 23, 1 << 21


def run(text: str) -> list[tuple[Outcome, str]]:
    """Each call's default outcome and clause when the model runs ``text`` alone."""
    m = Paging()
    out = []
    for c in parse(text).calls:
        args = eval_args(c, {})
        exp = m.expect("main", c.name, args)
        out.append((exp.default, exp.clause))
        m.apply("main", c.name, args, exp.default)
    return out


def last(text: str) -> tuple[Outcome, str]:
    return run(text)[-1]


def val(la: int, size: int = 4) -> Outcome:
    """The pattern's bytes at physical ``la``: what a load of ``size`` bytes returns."""
    v = 0
    for i in range(size):
        pa = la + i
        v |= ((((pa & ~7) << 8) | 0xCC) >> (8 * (pa & 7)) & 0xFF) << (8 * i)
    return Outcome(value=v)


def fault(vector: str, code: int | None = 0) -> Outcome:
    return Outcome(signal=vector) if code is None else Outcome(signal=vector, detail=(("errcode", code),))


PM = "seg_mode(SEG_PROTECTED)\n"
DATA1 = PM + "set_desc(1, 0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB)\n"


# --- descriptors -------------------------------------------------------------------------------


def test_descriptor_fields_round_trip():
    raw = make_descriptor(0x12345678, 0xABCDE, 0x6, 3, S | P | DB | G)
    d = Descriptor(raw)
    assert (d.base, d.limit_field, d.type, d.dpl, d.s, d.p, d.db, d.g) == (0x12345678, 0xABCDE, 6, 3, True, True, True, True)
    assert d.limit == 0xABCDEFFF and d.expand_down and d.writable and not d.code
    assert Descriptor(0x00CF9B000000FFFF).code and Descriptor(0x00CF9B000000FFFF).readable


def test_granularity_scales_the_limit():
    assert Descriptor(make_descriptor(0, 1, 2, 0, S | P | G)).limit == 0x1FFF
    assert Descriptor(make_descriptor(0, 1, 2, 0, S | P)).limit == 1


# --- real-address mode ---------------------------------------------------------------------------


def test_real_mode_linear_is_selector_times_16_plus_offset():
    o, c = last("seg_mode(SEG_REAL_A20)\nload_seg(SREG_DS, 0x1234, 0)\nseg_access(SREG_DS, 0x5678, ACC_READ, 4)")
    assert o == val(0x12340 + 0x5678) and c == "sdm.seg.real.linear"
    assert run("seg_mode(SEG_REAL_A20)\nload_seg(SREG_DS, 0x1234, 0)")[-1][1] == "sdm.seg.real.load"


def test_a20_masked_wraps_at_1_mib_and_enabled_reaches_above():
    prog = "load_seg(SREG_DS, 0xFFFF, 0)\nseg_access(SREG_DS, 0x8010, ACC_READ, 4)"
    assert last("seg_mode(SEG_REAL)\n" + prog) == (val(0x8000), "sdm.seg.real.a20-wrap")
    assert last("seg_mode(SEG_REAL_A20)\n" + prog) == (val(0x108000), "sdm.seg.real.a20-reach")


def test_real_mode_limit_is_0xffff_gp_or_ss():
    base = "seg_mode(SEG_REAL_A20)\nload_seg(SREG_DS, 0x1000, 0)\nload_seg(SREG_SS, 0x1000, 0)\n"
    assert last(base + "seg_access(SREG_DS, 0xFFFC, ACC_READ, 4)")[0].ok
    assert last(base + "seg_access(SREG_DS, 0xFFFE, ACC_READ, 4)") == (fault("#GP"), "sdm.seg.real.limit")
    assert last(base + "seg_access(SREG_SS, 0x10000, ACC_READ, 1)") == (fault("#SS"), "sdm.seg.real.limit")


def test_a20_gate_is_a_fact():
    m = Paging({"a20_gate": False})
    assert m.expect("main", "seg_mode", (0,)).clause == "memspec.seg.mode-feature"
    assert m.expect("main", "seg_mode", (1,)).clause == "memspec.seg.mode"


# --- loads ----------------------------------------------------------------------------------------


LOADS = DATA1 + """\
set_desc(2, 0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_P|DESC_DB)
set_desc(3, 0x200000, 0xFFF, DESC_CODE_X, 0, DESC_S|DESC_P|DESC_DB)
set_desc(4, 0x200000, 0xFFF, DESC_CODE_XR, 0, DESC_S|DESC_P|DESC_DB)
set_desc(5, 0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_DB)
set_desc(6, 0x300000, 0xFFF, DESC_DATA_RW, 3, DESC_S|DESC_P|DESC_DB)
set_desc(7, 0x300000, 0xFFF, DESC_CODE_XRC, 0, DESC_S|DESC_P|DESC_DB)
set_desc(8, 0x300000, 0xFFF, DESC_DATA_R, 0, DESC_S|DESC_P|DESC_DB)
"""


@pytest.mark.parametrize("line, want, clause", [
    ("load_seg(SREG_DS, 0x08, 0)", Outcome(), "sdm.seg.load.ok"),
    ("load_seg(SREG_DS, 0x03, 3)", Outcome(), "sdm.seg.load.null-data"),
    ("load_seg(SREG_SS, 0x00, 0)", fault("#GP", 0), "sdm.seg.load.null-ss-gp"),
    ("load_seg(SREG_ES, 0xC7, 0)", fault("#GP", 0xC4), "sdm.seg.load.beyond-limit-gp"),      # TI = 1, RPL 3
    ("load_seg(SREG_ES, 0x103, 3)", fault("#GP", 0x100), "sdm.seg.load.beyond-limit-gp"),    # index 32
    ("load_seg(SREG_ES, 0x10, 0)", fault("#GP", 0x10), "sdm.seg.load.system-gp"),
    ("load_seg(SREG_FS, 0x18, 0)", fault("#GP", 0x18), "sdm.seg.load.exec-only-gp"),
    ("load_seg(SREG_FS, 0x20, 0)", Outcome(), "sdm.seg.load.ok"),
    ("load_seg(SREG_GS, 0x0B, 0)", fault("#GP", 0x08), "sdm.seg.load.data-privilege-gp"),    # RPL 3 > DPL 0
    ("load_seg(SREG_GS, 0x08, 3)", fault("#GP", 0x08), "sdm.seg.load.data-privilege-gp"),    # CPL 3 > DPL 0
    ("load_seg(SREG_GS, 0x33, 3)", Outcome(), "sdm.seg.load.ok"),
    ("load_seg(SREG_GS, 0x3B, 3)", Outcome(), "sdm.seg.load.conforming-no-privilege"),
    ("load_seg(SREG_GS, 0x28, 0)", fault("#NP", 0x28), "sdm.seg.load.not-present-np"),
    ("load_seg(SREG_GS, 0x2B, 0)", fault("#GP", 0x28), "sdm.seg.load.data-privilege-gp"),    # privilege before P
    ("load_seg(SREG_SS, 0x0B, 0)", fault("#GP", 0x08), "sdm.seg.load.ss-rpl-cpl-gp"),
    ("load_seg(SREG_SS, 0x43, 3)", fault("#GP", 0x40), "sdm.seg.load.ss-type-gp"),           # read-only data
    ("load_seg(SREG_SS, 0x20, 0)", fault("#GP", 0x20), "sdm.seg.load.ss-type-gp"),           # code
    ("load_seg(SREG_SS, 0x30, 0)", fault("#GP", 0x30), "sdm.seg.load.ss-dpl-cpl-gp"),
    ("load_seg(SREG_SS, 0x28, 0)", fault("#SS", 0x28), "sdm.seg.load.ss-not-present-ss"),
    ("load_seg(SREG_SS, 0x33, 3)", Outcome(), "sdm.seg.load.ok"),
    ("load_seg(SREG_CS, 0x20, 0)", fault("#UD", None), "sdm.seg.load.cs-ud"),
])
def test_mov_sreg_checks_in_the_mov_pages_order(line, want, clause):
    assert last(LOADS + line) == (want, clause)


def test_lgdt_limit_bounds_the_table():
    assert last(LOADS + "lgdt(0x47)\nload_seg(SREG_ES, 0x40, 0)") == (Outcome(), "sdm.seg.load.ok")
    assert last(LOADS + "lgdt(0x46)\nload_seg(SREG_ES, 0x40, 0)") == (fault("#GP", 0x40), "sdm.seg.load.beyond-limit-gp")


def test_64_bit_null_ss_only_at_cpl_below_3_with_rpl_equal():
    lm = "seg_mode(SEG_LONG)\n"
    assert last(lm + "load_seg(SREG_SS, 0, 0)") == (Outcome(), "sdm.seg.load.null-ss-64")
    assert last(lm + "load_seg(SREG_SS, 3, 3)") == (fault("#GP", 0), "sdm.seg.load.null-ss-gp")
    assert last(lm + "load_seg(SREG_SS, 1, 0)") == (fault("#GP", 0), "sdm.seg.load.null-ss-64-rpl-gp")


def test_a_load_sets_the_accessed_bit_in_memory():
    o, c = last(DATA1 + "load_seg(SREG_DS, 0x08, 0)\nread_desc(1)")
    assert o.value is not None and o.value >> 40 & 1 and c == "sdm.seg.load.accessed"
    o, c = last(DATA1 + "load_seg(SREG_DS, 0x0B, 0)\nread_desc(1)")
    assert o.value is not None and not o.value >> 40 & 1 and c == "memspec.seg.desc-readback"


def test_a_loaded_register_keeps_its_hidden_part_until_reloaded():
    prog = DATA1 + "load_seg(SREG_DS, 0x08, 0)\nset_desc(1, 0x300000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB)\n"
    assert last(prog + "seg_access(SREG_DS, 0x20, ACC_READ, 4)") == (val(0x200020), "sdm.seg.cache-until-reload")
    assert last(prog + "load_seg(SREG_DS, 0x08, 0)\nseg_access(SREG_DS, 0x20, ACC_READ, 4)")[0] == val(0x300020)


# --- accesses in protected mode ---------------------------------------------------------------------


@pytest.mark.parametrize("desc, sreg, offset, size, op, want, clause", [
    ("0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB", "DS", 0xFFC, 4, "READ", val(0x200FFC), "sdm.seg.access.linear"),
    ("0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB", "DS", 0xFFE, 4, "READ", fault("#GP"), "sdm.seg.limit.expand-up"),
    ("0x200000, 0xFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB", "SS", 0x1000, 1, "READ", fault("#SS"), "sdm.seg.limit.expand-up"),
    ("0x200000, 0x1, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB|DESC_G", "ES", 0x1FFF, 1, "READ", val(0x201FFF, 1), "sdm.seg.limit.granularity"),
    ("0x200000, 0x1, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB|DESC_G", "ES", 0x2000, 1, "READ", fault("#GP"), "sdm.seg.limit.granularity"),
    ("0x200000, 0xFFFFF, DESC_DATA_RW_ED, 0, DESC_S|DESC_P|DESC_DB", "FS", 0x100000, 4, "READ", val(0x300000), "sdm.seg.limit.expand-down"),
    ("0x200000, 0xFFFFF, DESC_DATA_RW_ED, 0, DESC_S|DESC_P|DESC_DB", "FS", 0xFFFFF, 1, "READ", fault("#GP"), "sdm.seg.limit.expand-down"),
    ("0x200000, 0xFFFFF, DESC_DATA_RW_ED, 0, DESC_S|DESC_P|DESC_DB", "FS", 0xFFFFFFFC, 4, "WRITE", val(0x1FFFFC), "sdm.seg.limit.expand-down"),
    ("0x300000, 0xFFF, DESC_DATA_RW_ED, 0, DESC_S|DESC_P", "SS", 0xFFFC, 4, "READ", val(0x30FFFC), "sdm.seg.limit.expand-down"),
    ("0x300000, 0xFFF, DESC_DATA_RW_ED, 0, DESC_S|DESC_P", "SS", 0xFFFE, 4, "READ", fault("#SS"), "sdm.seg.limit.expand-down"),
    ("0x200000, 0xFFF, DESC_DATA_R, 0, DESC_S|DESC_P|DESC_DB", "GS", 0x10, 4, "WRITE", fault("#GP"), "sdm.seg.access.write-readonly-gp"),
    ("0x200000, 0xFFF, DESC_CODE_XR, 0, DESC_S|DESC_P|DESC_DB", "DS", 0x10, 2, "READ", val(0x200010, 2), "sdm.seg.access.linear"),
    ("0x200000, 0xFFF, DESC_CODE_XR, 0, DESC_S|DESC_P|DESC_DB", "DS", 0x10, 2, "WRITE", fault("#GP"), "sdm.seg.access.write-code-gp"),
    ("0xFFFF0000, 0xFFFFF, DESC_DATA_RW, 0, DESC_S|DESC_P|DESC_DB|DESC_G", "DS", 0x18000, 4, "READ", val(0x8000), "sdm.seg.access.linear"),
])
def test_protected_mode_accesses(desc, sreg, offset, size, op, want, clause):
    prog = f"{PM}set_desc(1, {desc})\nload_seg(SREG_{sreg}, 0x08, 0)\nseg_access(SREG_{sreg}, {offset:#x}, ACC_{op}, {size})"
    assert last(prog) == (want, clause)


def test_a_null_data_segment_loads_but_faults_on_use():
    assert last(PM + "load_seg(SREG_ES, 0, 0)\nseg_access(SREG_ES, 0x200000, ACC_READ, 4)") == (
        fault("#GP"), "sdm.seg.access.null-gp")


def test_memory_outside_the_pattern_is_unknown():
    m = Paging()
    for line in ("seg_mode(SEG_PROTECTED)", "seg_access(SREG_DS, 0x10, ACC_READ, 4)"):
        c = parse(line).calls[0]
        exp = m.expect("main", c.name, eval_args(c, {}))
        m.apply("main", c.name, eval_args(c, {}), exp.default)
    assert exp.unknown and exp.clause == "memspec.seg.outside-pattern"


# --- 64-bit mode ---------------------------------------------------------------------------------------


LM = "seg_mode(SEG_LONG)\nset_desc(1, 0x100000, 0xFFF, DESC_DATA_R, 0, DESC_S|DESC_P|DESC_DB)\n"


def test_64_bit_mode_ignores_bases_limits_and_types_except_fs_gs_base():
    assert last(LM + "load_seg(SREG_DS, 0x08, 0)\nseg_access(SREG_DS, 0x200000, ACC_WRITE, 8)") == (
        val(0x200000, 8), "sdm.seg.long.base-ignored")
    assert last(LM + "load_seg(SREG_FS, 0x08, 0)\nseg_access(SREG_FS, 0x2000, ACC_WRITE, 4)") == (
        val(0x102000), "sdm.seg.long.fs-gs-base")
    assert last(LM + "wrmsr_segbase(SREG_GS, 0x300000)\nseg_access(SREG_GS, 0x10, ACC_READ, 4)") == (
        val(0x300010), "sdm.seg.long.fs-gs-base")
    assert last(LM + "load_seg(SREG_ES, 0, 0)\nseg_access(SREG_ES, 0x200000, ACC_READ, 4)") == (
        val(0x200000), "sdm.seg.long.null-usable")


def test_64_bit_mode_non_canonical_is_gp_or_ss_through_ss():
    assert last(LM + "seg_access(SREG_DS, 0x800000000000, ACC_READ, 4)") == (fault("#GP"), "sdm.seg.long.noncanonical-gp")
    assert last(LM + "seg_access(SREG_SS, 0x800000000000, ACC_READ, 4)") == (fault("#SS"), "sdm.seg.long.noncanonical-ss")
    assert last(LM + "wrmsr_segbase(SREG_FS, 0x7FFFFFFFF000)\nseg_access(SREG_FS, 0x2000, ACC_READ, 4)") == (
        fault("#GP"), "sdm.seg.long.noncanonical-gp")
    assert last(LM + "wrmsr_segbase(SREG_FS, 0x800000000000)") == (fault("#GP"), "sdm.seg.wrmsr-base-noncanonical-gp")


def test_null_fs_in_64_bit_mode_allows_zero_or_the_old_base():
    m = Paging()
    for line in ("seg_mode(SEG_LONG)", "wrmsr_segbase(SREG_FS, 0x300000)", "load_seg(SREG_FS, 0, 0)"):
        c = parse(line).calls[0]
        m.apply("main", c.name, eval_args(c, {}), m.expect("main", c.name, eval_args(c, {})).default)
    exp = m.expect("main", "seg_access", (4, 0x10000, 0, 4))
    assert exp.impl_defined and exp.clause == "sdm.seg.long.null-fs-gs-base"
    assert exp.judge(val(0x10000)) is None and exp.judge(val(0x310000)) is None
    assert exp.judge(val(0x210000)) is not None
    m.apply("main", "seg_access", (4, 0x10000, 0, 4), val(0x310000))     # adopt: the base was kept
    assert m.expect("main", "seg_access", (4, 0x10, 0, 4)).default == val(0x300010)


@pytest.mark.parametrize("line", [
    "seg_mode(9)", "set_desc(0, 0, 0, DESC_DATA_RW, 0, 0)", "set_desc(24, 0, 0, DESC_DATA_RW, 0, 0)",
    "set_desc(1, 0x100000000, 0, DESC_DATA_RW, 0, 0)", "set_desc(1, 0, 0x100000, DESC_DATA_RW, 0, 0)",
    "set_desc(1, 0, 0, 16, 0, 0)", "set_desc(1, 0, 0, DESC_DATA_RW, 4, 0)", "set_desc(1, 0, 0, DESC_DATA_RW, 0, 1)",
    "read_desc(32)", "lgdt(0x100)", "load_seg(6, 0, 0)", "load_seg(SREG_DS, 0x10000, 0)", "load_seg(SREG_DS, 0, 4)",
    "seg_access(SREG_CS, 0, ACC_READ, 4)", "seg_access(SREG_DS, 0, ACC_EXEC, 4)", "seg_access(SREG_DS, 0, ACC_READ, 3)",
    "wrmsr_segbase(SREG_DS, 0)",
])
def test_harness_argument_checks(line):
    o, c = last("seg_mode(SEG_LONG)\n" + line)
    assert o.errno == "EINVAL" and c.startswith("memspec.seg.")
    assert last("seg_mode(SEG_PROTECTED)\nseg_access(SREG_DS, 0x200000, ACC_READ, 8)")[0].errno == "EINVAL"
    assert last("seg_mode(SEG_REAL_A20)\nload_seg(SREG_DS, 0, 3)")[0].errno == "EINVAL"


def test_every_seg_clause_is_catalogued():
    from memspec.specs.catalogue import all_clauses
    cat = all_clauses()
    import re
    src = open(seg.__file__).read() + open(seg.__file__.replace("seg.py", "segunit.py")).read()
    for cid in set(re.findall(r'"((?:sdm|memspec)\.seg\.[a-z0-9.-]+)"', src)):
        assert cid in cat, cid
