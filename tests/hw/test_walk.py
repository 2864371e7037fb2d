"""The walker and the access-rights rules against worked examples of Intel SDM Vol. 3A ch. 4."""

from __future__ import annotations

import pytest

from memspec.model.pte import CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PKE, CR4_SMAP, CR4_SMEP, \
    EFER_LMA, EFER_LME, EFER_NXE, EXEC, READ, WRITE, ErrCode, Mode, Pte, decode
from memspec.model.walk import PageFault, Path, canonical, check_access, index, walk

P, RW, US, PS, XD, G = Pte.P, Pte.RW, Pte.US, Pte.PS, Pte.XD, Pte.G
BASE = dict(cr0=CR0_PG | CR0_PE | CR0_WP, cr4=CR4_PAE, efer=EFER_LME | EFER_LMA | EFER_NXE, maxphy=40)


def mode(**kw) -> Mode:
    m = dict(BASE)
    m.update(kw)
    return Mode(**m)


def tree(pte_flags: int, upper: int = P | RW | US, frame: int = 0x300000, pde: int | None = None) -> dict[int, int]:
    """PML4 0x200000 -> PDPT 0x201000 -> PD 0x202000 -> PT 0x203000; la 0x405000 -> PT[5]."""
    mem = {0x200000: 0x201000 | upper, 0x201000: 0x202000 | upper,
           0x202000 + 8 * 2: (0x203000 | upper) if pde is None else pde, 0x203000 + 8 * 5: frame | pte_flags}
    return mem


def do(mem: dict[int, int], m: Mode, la: int = 0x405008, acc: int = READ, cpl: int = 0, ac: int = 0):
    r = walk(lambda a: mem.get(a, 0), m, 0x200000, la, acc, cpl)
    if isinstance(r, PageFault):
        return r
    f, clause = check_access(r, m, la, acc, cpl, ac)
    return f if f is not None else (r, clause)


def test_index_bits_follow_figure_4_8():
    # la 0x405008: PML4 47:39 = 0, PDPT 38:30 = 0, PD 29:21 = 2, PT 20:12 = 5
    assert [index(0x405008, lv) for lv in (4, 3, 2, 1)] == [0, 0, 2, 5]
    assert index(0xFFFF800000000000, 4) == 256
    assert index(0x1000000000000, 5) == 1


def test_4k_translation_and_combined_rights():
    r, clause = do(tree(P | RW | US), mode(), cpl=3)
    assert isinstance(r, Path) and r.pa(0x405008) == 0x300008 and r.size == 4096
    assert clause == "sdm.access.user-read-user"


def test_2m_and_1g_pages_take_the_offset_from_the_linear_address():
    mem = tree(0, pde=0x600000 | P | RW | PS)
    r, clause = do(mem, mode(), la=0x412348)
    assert r.size == 2 << 20 and r.pa(0x412348) == 0x612348 and clause == "sdm.walk.pde.ps-2m"
    mem = {0x200000: 0x201000 | P | RW, 0x201000 + 8: 0x40000000 | P | RW | PS}
    r, clause = do(mem, mode(), la=0x41234560)
    assert r.size == 1 << 30 and r.pa(0x41234560) == 0x41234560 and clause == "sdm.walk.pdpte.ps-1g"


@pytest.mark.parametrize("acc,cpl,code", [(READ, 0, 0), (WRITE, 0, ErrCode.W), (READ, 3, ErrCode.U),
                                          (WRITE, 3, ErrCode.W | ErrCode.U), (EXEC, 3, ErrCode.U | ErrCode.ID)])
def test_not_present_error_codes(acc, cpl, code):
    f = do(tree(RW | US), mode(), acc=acc, cpl=cpl)
    assert isinstance(f, PageFault) and f.errcode == code and f.cr2 == 0x405008
    assert f.clause == "sdm.walk.pte.not-present"


def test_not_present_upper_level_wins_over_rights():
    f = do(tree(P | RW | US, pde=0x203000 | RW), mode(), cpl=3)
    assert f.clause == "sdm.walk.pde.not-present" and f.errcode == ErrCode.U


def test_reserved_bits_give_p_and_rsvd():
    f = do(tree(P | RW | US, frame=0x300000 | (1 << 45)), mode())     # above MAXPHYADDR 40
    assert f.errcode == ErrCode.P | ErrCode.RSVD and f.clause == "sdm.walk.pte.rsvd-maxphy"
    f = do(tree(P | RW | US), mode(maxphy=52))                            # fine at 52
    assert not isinstance(f, PageFault)
    f = do(tree(0, pde=0x600000 | (1 << 13) | P | RW | PS), mode(), la=0x412348)
    assert f.clause == "sdm.walk.pde.rsvd-2m-low"
    f = do({0x200000: 0x201000 | P | RW | PS}, mode())
    assert f.clause == "sdm.walk.pml4e.rsvd-ps"


def test_xd_is_reserved_without_nxe_and_forbids_fetch_with_it():
    f = do(tree(P | RW | US | XD), mode(efer=EFER_LME | EFER_LMA), acc=READ)
    assert f.clause == "sdm.walk.rsvd.xd-without-nxe" and f.errcode == ErrCode.P | ErrCode.RSVD
    # the SDM's example: XD = 1 with NXE = 1 forbids fetches: errcode P|I/D
    f = do(tree(0, pde=0x600000 | P | RW | PS | XD), mode(), la=0x412340, acc=EXEC)
    assert f.clause == "sdm.access.xd-fetch" and f.errcode == ErrCode.P | ErrCode.ID


def test_id_bit_needs_nxe_or_smep():
    f = do(tree(RW | US), mode(efer=EFER_LME | EFER_LMA), acc=EXEC)
    assert f.errcode == 0
    f = do(tree(RW | US), mode(efer=EFER_LME | EFER_LMA, cr4=CR4_PAE | CR4_SMEP), acc=EXEC)
    assert f.errcode == ErrCode.ID


def test_us_and_rw_combine_over_every_level():
    # U/S = 0 in the PDE alone makes the page supervisor-only
    f = do(tree(P | RW | US, pde=0x203000 | P | RW), mode(), cpl=3)
    assert f.clause == "sdm.access.user-read-supervisor" and f.errcode == ErrCode.P | ErrCode.U
    f = do(tree(P | RW | US, upper=P | US), mode(), acc=WRITE, cpl=3)
    assert f.clause == "sdm.access.user-write-readonly"


def test_cr0_wp_governs_supervisor_writes_to_read_only_pages():
    f = do(tree(P | US), mode(), acc=WRITE)
    assert f.clause == "sdm.access.wp-supervisor-write" and f.errcode == ErrCode.P | ErrCode.W
    r, clause = do(tree(P | US), mode(cr0=CR0_PG | CR0_PE), acc=WRITE)
    assert clause == "sdm.access.wp0-supervisor-write"
    f = do(tree(P | US), mode(cr0=CR0_PG | CR0_PE), acc=WRITE, cpl=3)   # WP never helps CPL 3
    assert f.clause == "sdm.access.user-write-readonly"


def test_smep_and_smap():
    m = mode(cr4=CR4_PAE | CR4_SMEP | CR4_SMAP)
    assert do(tree(P | RW | US), m, acc=EXEC).clause == "sdm.access.smep-fetch"
    assert do(tree(P | RW | US), m).clause == "sdm.access.smap-read"
    assert do(tree(P | RW | US), m, acc=WRITE).clause == "sdm.access.smap-write"
    r, clause = do(tree(P | RW | US), m, ac=1)
    assert clause == "sdm.access.smap-ac-override"
    r, clause = do(tree(P | RW), m, acc=EXEC)
    assert clause == "sdm.access.supervisor-fetch"


def test_protection_keys():
    m = mode(cr4=CR4_PAE | CR4_PKE, pkru=0b01 << 2)            # key 1: access disable
    f = do(tree(P | RW | US | (1 << 59)), m, cpl=3)
    assert f.clause == "sdm.pkeys.access-disable" and f.errcode == ErrCode.P | ErrCode.U | ErrCode.PK
    m = mode(cr4=CR4_PAE | CR4_PKE, pkru=0b10 << 2)            # key 1: write disable
    assert do(tree(P | RW | US | (1 << 59)), m, acc=WRITE, cpl=3).clause == "sdm.pkeys.write-disable"
    r, _ = do(tree(P | RW | US | (1 << 59)), m, acc=EXEC, cpl=3)   # fetches ignore keys


def test_canonical_addresses():
    assert canonical(0x7FFFFFFFFFFF, mode()) and not canonical(0x800000000000, mode())
    assert canonical(0x800000000000, mode(cr4=CR4_PAE | CR4_LA57))
    assert not canonical(0x100000000000000, mode(cr4=CR4_PAE | CR4_LA57))


def test_five_level_walk_reads_the_pml5_first():
    mem = {0x1F0000 + 8: 0x200000 | P | RW | US}
    mem.update(tree(P | RW | US))
    la = (1 << 48) | 0x405008
    r = walk(lambda a: mem.get(a, 0), mode(cr4=CR4_PAE | CR4_LA57), 0x1F0000, la, READ, 0)
    assert isinstance(r, Path) and [u.level for u in r.uses] == [5, 4, 3, 2, 1] and r.pa(la) == 0x300008


def test_decode_names_the_bits():
    assert decode(0x8000000000203067, 1) == "P|RW|US|A|D|XD frame=0x203000"
