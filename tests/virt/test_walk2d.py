"""The two-dimensional walk: worked examples from the SDM/APM, the 24-reference worst case, and
property tests that the 2-D walk is the composition of the guest walk and the nested walk."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from memspec.calls_hw import pattern
from memspec.model.ept import Ept, EptMisconfig, EptPath, EptViolation, Qual, ept_walk, misconfigured
from memspec.model.pte import EXEC, READ, WRITE, Pte
from memspec.model.virt import VirtModel
from memspec.model.walk import PageFault, Path, Use, walk
from memspec.model.walk2d import NPF_FINAL, NPF_GPT, VM_EPT, VM_NPT, NestedFault
from memspec.records import Outcome

RWX = int(Ept.R | Ept.W | Ept.X)
WB = 6 << 3
U = int(Pte.P | Pte.RW | Pte.US)


def ept_4k(m: VirtModel, root: int, gpa_pages: dict[int, tuple[int, int]], base: int = 0x210000) -> None:
    """A 4-level EPT with 4 KiB leaves: gpa page -> (hpa page, rights) (gpas below 2 MiB)."""
    m.mem[root] = (base) | RWX
    m.mem[base] = (base + 0x1000) | RWX
    m.mem[base + 0x1000] = (base + 0x2000) | RWX
    for g, (h, rights) in gpa_pages.items():
        m.mem[base + 0x2000 + 8 * (g & 0x1FF)] = h | rights | (WB if rights else 0)


def npt_4k(m: VirtModel, root: int, gpa_pages: dict[int, tuple[int, int]], base: int = 0x210000) -> None:
    m.mem[root] = base | U
    m.mem[base] = (base + 0x1000) | U
    m.mem[base + 0x1000] = (base + 0x2000) | U
    for g, (h, flags) in gpa_pages.items():
        m.mem[base + 0x2000 + 8 * (g & 0x1FF)] = h | flags


def guest_chain(m: VirtModel, hpa_of: dict[int, int], leaf_gpa: int, leaf: int = U) -> None:
    """Guest PML4 at gpa 0x10000 -> 0x11000 -> 0x12000 -> PT 0x13000, PT[5] -> leaf_gpa (gva 0x5000)."""
    for t, nxt in ((0x10, 0x11000), (0x11, 0x12000), (0x12, 0x13000)):
        m.mem[hpa_of[t]] = nxt | U
    m.mem[hpa_of[0x13] + 8 * 5] = leaf_gpa | leaf


def boot(m: VirtModel, kind: int, root: int = 0x200000, ad: bool = False) -> None:
    flags = (6 | (3 << 3) | ((1 << 6) if ad else 0)) if kind == VM_EPT else 0
    o = Outcome()
    m.apply("main", "vm_boot", (0, kind, root, flags, 0x10000, 1 << 5, (1 << 8) | (1 << 10) | (1 << 11)), o)


def standard(kind: int = VM_EPT, data_rights: int | None = None, ad: bool = False) -> VirtModel:
    m = VirtModel()
    tables = {g: (0x400000 + g * 0x1000, RWX if kind == VM_EPT else U) for g in (0x10, 0x11, 0x12, 0x13)}
    data = {0x100: (0x500000, (RWX if kind == VM_EPT else U) if data_rights is None else data_rights)}
    (ept_4k if kind == VM_EPT else npt_4k)(m, 0x200000, {**tables, **data})
    boot(m, kind, ad=ad)
    guest_chain(m, {g: h for g, (h, _) in tables.items()}, 0x100000)
    return m


def test_worst_case_4x4_walk_makes_24_references():
    for kind in (VM_EPT, VM_NPT):
        m = standard(kind)
        w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
        assert w.hpa == 0x500008 and w.outcome == Outcome(value=pattern(0x500008))
        assert w.refs == 24 == 4 * (4 + 1) + 4


def test_five_level_guest_under_five_level_ept_makes_35_references():
    """n-level guest x m-level nested: n * (m + 1) + m references; 5 x 5 -> 35."""
    m = VirtModel()
    base = 0x210000
    m.mem[0x200000] = base | RWX
    for k in range(3):
        m.mem[base + 0x1000 * k] = (base + 0x1000 * (k + 1)) | RWX
    for g in (0x10, 0x11, 0x12, 0x13, 0x14, 0x100):
        m.mem[base + 0x3000 + 8 * g] = (0x400000 + g * 0x1000) | RWX | WB
    m.apply("main", "vm_boot", (0, VM_EPT, 0x200000, 6 | (4 << 3), 0x10000, (1 << 5) | (1 << 12),
                                (1 << 8) | (1 << 10) | (1 << 11)), Outcome())
    for t, nxt in ((0x10, 0x11000), (0x11, 0x12000), (0x12, 0x13000), (0x13, 0x14000)):
        m.mem[0x400000 + t * 0x1000] = nxt | U
    m.mem[0x414000 + 8 * 5] = 0x100000 | U
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    assert w.hpa == 0x500008 and w.refs == 35 == 5 * (5 + 1) + 5


def test_cached_guest_physical_mappings_save_references():
    m = standard()
    e = m.expect("main", "vm_access", (0x5008, READ, 3))
    m.apply("main", "vm_access", (0x5008, READ, 3), e.default)
    w = m.walk_2d(m.vm, 0x5010, READ, 3, choose=lambda n: n - 1)
    assert w.outcome.value == pattern(0x500010) and w.refs == 4     # only the guest's own four entries


def test_ept_violation_exit_qualification_for_a_write_to_a_read_only_page():
    m = standard(data_rights=Ept.R)
    w = m.walk_2d(m.vm, 0x5008, WRITE, 3, use_cache=False)
    d = dict(w.outcome.detail)
    assert w.outcome.signal == "EPT_VIOLATION" and w.clause == "sdm.ept.violation.write"
    assert d["exit_qualification"] == Qual.WRITE | Qual.READABLE | Qual.GLA_VALID | Qual.FINAL == 0x18A
    assert d["gpa"] == 0x100008 and d["gla"] == 0x5008


def test_ept_execute_bit_and_guest_page_table_violation_bits():
    m = standard(data_rights=Ept.R | Ept.W)
    w = m.walk_2d(m.vm, 0x5000, EXEC, 3, use_cache=False)
    assert dict(w.outcome.detail)["exit_qualification"] == Qual.FETCH | Qual.READABLE | Qual.WRITABLE | \
        Qual.GLA_VALID | Qual.FINAL
    # the guest PD's gpa not mapped by EPT: the violation is on a guest paging entry (bit 8 clear)
    m = standard()
    m.mem[0x212000 + 8 * 0x12] = 0
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    q = dict(w.outcome.detail)["exit_qualification"]
    assert w.clause == "sdm.ept.violation.guest-paging-entry" and q == Qual.READ | Qual.GLA_VALID
    assert dict(w.outcome.detail)["gpa"] == 0x12000


def test_a_nested_refusal_is_the_guest_walks_result_as_a_value():
    """The guest walk's nested step refuses the guest PD's gpa: the walk returns that value (no exception),
    having read the two entries above it and not the PD entry; the 2-D walk makes it a VM exit."""
    m = standard()
    m.mem[0x212000 + 8 * 0x12] = 0                      # gpa page 0x12000 (the guest PD) not mapped by EPT
    seen: list[int] = []

    def read(hpa: int) -> int:
        seen.append(hpa)
        return m.read(hpa)

    def nested(gpa: int) -> int | NestedFault:
        res = m.nested_walk(m.vm, gpa)
        return res.hpa(gpa) if isinstance(res, EptPath) else NestedFault(res, gpa, READ, True)
    g = walk(read, m.vm.mode, m.vm.gcr3, 0x5008, READ, 3, nested=nested)
    assert isinstance(g, NestedFault) and g.gpa == 0x12000 and g.table
    assert isinstance(g.fault, EptViolation) and g.fault.clause == "sdm.ept.violation.pte-not-present"
    assert seen == [0x410000, 0x411000]
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    assert w.guest is None and w.outcome.signal == "EPT_VIOLATION" and w.guest_read == (0x10000, 0x11000)
    assert w.exit_uses == g.fault.uses


def test_without_a_nested_step_the_walk_reads_its_addresses_as_given():
    """The hw walk (no nested step) reads each table address as a host address: from the guest PML4's hpa,
    its entry's gpa 0x11000 is read as hpa 0x11000 (the harness pattern, a non-present PDPTE), exactly as
    with an identity nested step; with the EPT as the step the same walk completes."""
    m = standard()
    plain = walk(m.read, m.vm.mode, 0x410000, 0x5008, READ, 3)
    assert plain == walk(m.read, m.vm.mode, 0x410000, 0x5008, READ, 3, nested=lambda a: a)
    assert isinstance(plain, PageFault) and plain.uses[1] == Use(0x11000, pattern(0x11000), 3)
    through_ept = walk(m.read, m.vm.mode, 0x10000, 0x5008, READ, 3, nested=lambda a: m.software_gpa(m.vm, a))
    assert isinstance(through_ept, Path) and through_ept.pa(0x5008) == 0x100008


def test_ept_a_d_makes_guest_table_accesses_writes():
    m = standard(ad=True)
    m.mem[0x212000 + 8 * 0x11] = 0x411000 | Ept.R | WB          # guest PDPT page read-only in EPT
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    assert w.outcome.signal == "EPT_VIOLATION"
    assert dict(w.outcome.detail)["exit_qualification"] & (Qual.WRITE | Qual.FINAL) == Qual.WRITE
    m = standard(ad=False)
    m.mem[0x212000 + 8 * 0x11] = 0x411000 | Ept.R | WB
    # without EPT A/D the read goes through, but setting the guest A flag is a write: EPT violation
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    assert w.outcome.signal == "EPT_VIOLATION" and dict(w.outcome.detail)["gpa"] == 0x11000
    m.mem[0x411000] |= Pte.A                                      # A already set: nothing to write
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    assert w.outcome.value == pattern(0x500008)


def test_ept_misconfigurations():
    assert misconfigured(Ept.W | WB, 1, 52, True, True) == "sdm.ept.misconfig.write-without-read"
    assert misconfigured(Ept.X | WB, 1, 52, False, True) == "sdm.ept.misconfig.execute-only-unsupported"
    assert misconfigured(Ept.X | WB, 1, 52, True, True) is None
    assert misconfigured(Ept.R | (2 << 3), 1, 52, True, True) == "sdm.ept.misconfig.memory-type"
    assert misconfigured(RWX | Ept.PS, 4, 52, True, True) == "sdm.ept.misconfig.rsvd-ps"
    assert misconfigured(RWX | (1 << 45), 2, 40, True, True) == "sdm.ept.misconfig.rsvd-maxphy"
    assert misconfigured(RWX | Ept.PS | WB | (1 << 13), 2, 52, True, True) == "sdm.ept.misconfig.rsvd-large-low"
    # an unwritten EPT entry reads as the harness pattern: X|PS with memory type 1 -> misconfigured PML4E
    r = ept_walk(lambda a: pattern(a), 0x200000, 4, 0x1000)
    assert isinstance(r, EptMisconfig) and r.clause == "sdm.ept.misconfig.rsvd-ps"
    r = ept_walk(lambda a: 0, 0x200000, 4, 0x1000)
    assert isinstance(r, EptViolation) and r.clause == "sdm.ept.violation.pml4e-not-present"


def test_npt_faults_carry_exitinfo1_bits():
    m = standard(VM_NPT, data_rights=Pte.P | Pte.US)
    w = m.walk_2d(m.vm, 0x5008, WRITE, 3, use_cache=False)
    d = dict(w.outcome.detail)
    assert w.outcome.signal == "#NPF" and d["exitinfo1"] == NPF_FINAL | 0x7 and d["exitinfo2"] == 0x100008
    m = standard(VM_NPT)
    m.mem[0x212000 + 8 * 0x12] = 0
    w = m.walk_2d(m.vm, 0x5008, READ, 3, use_cache=False)
    d = dict(w.outcome.detail)
    assert d["exitinfo1"] == NPF_GPT | 0x6 and d["exitinfo2"] == 0x12000


def test_guest_page_fault_is_delivered_with_guest_cr2():
    m = standard()
    m.mem[0x413000 + 8 * 5] = 0x100000 | Pte.P | Pte.US            # read-only for the guest
    w = m.walk_2d(m.vm, 0x5008, WRITE, 3, use_cache=False)
    assert w.outcome.signal == "#PF" and dict(w.outcome.detail) == {"cr2": 0x5008, "errcode": 0x7}


# ---------------------------------------------------------------------------------------------
# properties: guest tables x EPT tables x accesses

RIGHTS = st.sampled_from([int(r) for r in (RWX, RWX, RWX, Ept.R, Ept.R | Ept.W, Ept.R | Ept.X, 0)])
LEAF = st.sampled_from([int(f) for f in (U, U, Pte.P | Pte.US, Pte.P | Pte.RW, Pte.RW | Pte.US, U | Pte.XD)])


@st.composite
def worlds(draw):
    """Random EPT rights per gpa page and a random guest tree over gpa pages 0x10..0x17 (tables)
    and 0x100..0x107 (data), with host frames shuffled."""
    m = VirtModel()
    kind = draw(st.sampled_from([VM_EPT, VM_NPT]))
    gpages = list(range(0x10, 0x18)) + list(range(0x100, 0x108))
    hosts = draw(st.permutations(list(range(0x600, 0x600 + len(gpages)))))
    rights = {g: draw(RIGHTS) for g in gpages}
    for t in range(0x10, 0x14):
        if draw(st.integers(0, 9)) < 8:
            rights[t] = RWX
    npt_flags = {RWX: U, 1: int(Pte.P | Pte.US), 3: int(U | Pte.XD), 5: int(Pte.P | Pte.US), 0: 0}
    pages = {g: (h << 12, r if kind == VM_EPT else npt_flags[r]) for g, h, r in zip(gpages, hosts, rights.values())}
    (ept_4k if kind == VM_EPT else npt_4k)(m, 0x200000, pages)
    boot(m, kind, ad=kind == VM_EPT and draw(st.booleans()))
    tables = [0x10000 + 0x1000 * i for i in range(8)]
    for t in tables:
        for i in range(3):
            h = pages[t >> 12][0]
            if draw(st.integers(0, 3)):
                nxt = draw(st.sampled_from(tables + [0x100000 + 0x1000 * k for k in range(8)]))
                m.mem[h + 8 * i] = nxt | draw(LEAF)
    gva = draw(st.integers(0, 2)) << 39 | draw(st.integers(0, 2)) << 30 | draw(st.integers(0, 2)) << 21 | \
        draw(st.integers(0, 2)) << 12 | 8 * draw(st.integers(0, 7))
    return m, gva, draw(st.sampled_from([READ, WRITE, EXEC])), draw(st.sampled_from([0, 3]))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(worlds())
def test_two_d_walk_equals_composition_wherever_neither_faults(w):
    m, gva, acc, cpl = w
    r = m.walk_2d(m.vm, gva, acc, cpl, use_cache=False)
    want = m.compose(m.vm, gva, acc)
    if r.hpa is not None:
        assert r.hpa == want
        # and only a frame the nested stage maps to that gpa
        assert m.software_gpa(m.vm, r.gpa) == r.hpa
    elif r.outcome is not None and r.outcome.signal == "#PF":
        # a guest fault: the guest walk over flat guest-physical memory faults (or forbids) as well
        assert want is None or r.guest is not None


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(worlds(), st.sampled_from(range(0x600, 0x610)))
def test_guest_never_reaches_a_frame_its_nested_stage_does_not_map(w, foreign):
    m, gva, acc, cpl = w
    r = m.walk_2d(m.vm, gva, acc, cpl, use_cache=False)
    if r.hpa is not None:
        mapped = {m.software_gpa(m.vm, g << 12) for g in list(range(0x10, 0x18)) + list(range(0x100, 0x108))}
        assert r.hpa & ~0xFFF in mapped


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(worlds())
def test_two_guests_with_disjoint_ept_are_isolated(w):
    m, gva, acc, cpl = w
    vm0 = m.vm
    # guest 1: the same guest tables' contents copied into its own, disjoint host frames
    mem0 = dict(m.mem)
    pages1 = {}
    for g in list(range(0x10, 0x18)) + list(range(0x100, 0x108)):
        h0 = m.software_gpa(vm0, g << 12)
        if h0 is not None:
            pages1[g] = (0x900000 + (g << 12), RWX if vm0.kind == VM_EPT else U)
            for i in range(512):
                if h0 + 8 * i in mem0:
                    m.mem[0x900000 + (g << 12) + 8 * i] = mem0[h0 + 8 * i]
    (ept_4k if vm0.kind == VM_EPT else npt_4k)(m, 0x300000, pages1, base=0x310000)
    m.apply("main", "vm_boot", (1, vm0.kind, 0x300000, vm0.eptp_flags, 0x10000, 1 << 5,
                                (1 << 8) | (1 << 10) | (1 << 11)), Outcome())
    reached = set()
    for vmid in (0, 1, 0, 1):
        m.apply("main", "vm_enter", (vmid,), Outcome())
        e = m.expect("main", "vm_access", (gva, acc, cpl))
        m.apply("main", "vm_access", (gva, acc, cpl), e.default)
        assert not m.invariants(), m.invariants()
        if m.last_walk and m.last_walk[3].hpa is not None:
            reached.add((vmid, m.last_walk[3].hpa >> 12))
    assert not ({p for v, p in reached if v == 0} & {p for v, p in reached if v == 1})
