"""The two-dimensional walk (Intel SDM Vol. 3C §29.3; AMD APM Vol. 2 §15.25.5): host memory, its guests,
and what one guest access does through the guest's tables and the nested stage.

A guest access translates the guest-linear address with the *guest's* tables (the hw
walker, ``walk.walk``), but every guest-physical address the walk touches -- each guest
paging entry (the guest CR3 included) and the final gpa -- is itself translated by the
*nested* stage: the EPT walk (``ept.ept_walk``) for VM_EPT, or the hw walker again over the
nested (x86-format) tables for VM_NPT, where every nested access is a user access (APM
§15.25.5).  The guest walk takes the nested stage as its ``nested`` step, which gives the
host address of each guest entry or refuses it with a ``NestedFault``; a refusal is the
guest walk's result, as QEMU's ``ptw_translate`` ends ``mmu_translate``.  With 4-level
guest and nested tables and nothing cached, an access makes 4 x (4 + 1) + 4 = 24 memory
references (``Walk2D.refs``).

Outcomes, faults as values:

* guest #PF (guest walk or guest rights), delivered to the guest with CR2 = gva;
* EPT violation (exit qualification bits, §28.2.1 Table 28-7), EPT misconfiguration
  (§29.3.3.1), or #NPF (EXITINFO1 = #PF-style code | bit 32 final | bit 33 guest
  page table, EXITINFO2 = gpa) -- exits to the hypervisor.

Guest-physical mappings (cached nested translations, tagged by the EPT/NPT root) may
outlive a change of the nested tables until ``invept`` (§29.4.3.1, §29.4.3.4): the walk
takes a ``choose`` that picks a fresh or a cached nested translation per gpa page, and
``explore`` runs it once per choice.

Worked example (module ``memspec.calls_virt``'s program): gva 0x5008 -> guest PTE -> gpa
0x200008 -> EPT PDE ``0x800000|R|PS`` -> hpa 0x800008; a read returns ``pattern(0x800008)``
in 24 references, a write exits with an EPT violation, exit qualification
``WRITE|READABLE|GLA_VALID|FINAL`` (0x18a).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from memspec.calls_hw import pattern
from memspec.calls_virt import nested_harness_slot
from memspec.consts import VMKIND
from memspec.records import OK, Outcome

from .ept import QUAL_ADVANCED, QUAL_UNDEFINED_NO_MBEC, Ept, EptMisconfig, EptPath, EptViolation, Qual, ept_rights, ept_walk
from .pte import CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, EFER_LMA, EFER_LME, EFER_NXE, EXEC, READ, WRITE, Mode, Pte
from .walk import PageFault, Path, Use, check_access, walk

VM_EPT, VM_NPT = VMKIND["VM_EPT"], VMKIND["VM_NPT"]
NPF_FINAL = 1 << 32
NPF_GPT = 1 << 33
GUEST_CR0 = CR0_PG | CR0_PE | CR0_WP


@dataclass(frozen=True, slots=True)
class NestedFault:
    """The nested stage refused a guest-physical access, as a value: the EPT violation or misconfiguration
    (or, with nested paging, the #PF of the nested walk), the gpa, the access it was made as, and whether
    the gpa was a guest paging entry's (``table``) rather than the final one.  It ends the 2-D walk in a
    VM exit (``Host.exit_outcome``)."""

    fault: EptViolation | EptMisconfig | PageFault
    gpa: int
    acc: int
    table: bool


@dataclass(frozen=True, slots=True)
class Nested:
    """One nested translation used by a 2-D walk: which gpa, how, and whether it came from the cache."""

    gpa: int
    path: EptPath | Path
    cached: bool
    table: bool      # the gpa of a guest paging entry (not the final gpa)


@dataclass(frozen=True, slots=True)
class Walk2D:
    """The result of one 2-D walk: an outcome (value, guest #PF or exit), its clause, and how it got there."""

    outcome: Outcome | None      # None: a value from memory the pattern does not cover
    clause: str
    refs: int                    # memory references to paging structures (guest + nested)
    nested: tuple[Nested, ...]
    guest: Path | PageFault | None
    gpa: int | None = None
    hpa: int | None = None
    # on a VM exit: the nested entries the faulting nested walk read, and the gpas of the guest
    # entries read before it (whether a walk that exits sets A in those is not specified)
    exit_uses: tuple[Use, ...] = ()
    guest_read: tuple[int, ...] = ()


@dataclass(slots=True)
class Vm:
    kind: int
    root: int                    # EPT PML4 (PML5) table, or nCR3's table
    eptp_flags: int
    gcr3: int
    gcr4: int
    gefer: int
    levels: int = 4

    @property
    def ad(self) -> bool:
        return self.kind == VM_EPT and bool(self.eptp_flags & (1 << 6))

    @property
    def table_writes(self) -> bool:
        """Whether the nested stage sees the guest walk's own table accesses as writes: with EPT A/D
        (SDM Vol. 3C §29.3.3.2), and always with nested paging, where they are user writes so that the
        guest's A/D flags can be set (AMD APM Vol. 2 §15.25.5; QEMU and KVM's nested walk agree)."""
        return self.ad or self.kind == VM_NPT

    @property
    def mode(self) -> Mode:
        return Mode(GUEST_CR0, self.gcr4, self.gefer | EFER_LMA)


@dataclass(slots=True)
class GpCache:
    """Guest-physical mappings the model's CPU cached: (root, gpa page base, size) -> nested path.  No
    capacity: a CPU may keep any of them until INVEPT (SDM Vol. 3C §29.4.1), so the allowed set keeps them all."""

    entries: list[tuple[int, int, int, Any, int]] = field(default_factory=list)   # root, base, size, path, time

    def lookup(self, root: int, gpa: int) -> list[Any]:
        return [p for r, b, s, p, _ in self.entries if r == root and b <= gpa < b + s]

    def fill(self, root: int, gpa: int, path: Any, now: int) -> None:
        size = path.size
        base = gpa & ~(size - 1)
        self.entries = [e for e in self.entries if not (e[0] == root and e[1] == base)]
        self.entries.append((root, base, size, path, now))

    def invalidate(self, root: int | None) -> None:
        self.entries = [e for e in self.entries if root is not None and e[0] != root]


def explore(run: Callable[[Callable[[int], int]], Any], limit: int = 32) -> list[Any]:
    """Run ``run(choose)`` once per sequence of choices (depth first, first option first);
    ``choose(n)`` picks one of ``n`` options.  At most ``limit`` runs."""
    results = []
    todo: list[tuple[int, ...]] = [()]
    while todo and len(results) < limit:
        prefix = todo.pop()
        taken: list[int] = []

        def choose(n: int) -> int:
            i = len(taken)
            if i < len(prefix):
                c = prefix[i]
            else:
                c = 0
                for alt in range(n - 1, 0, -1):
                    todo.append(tuple(taken) + (alt,))
            taken.append(c)
            return c
        results.append(run(choose))
    return results


def host_mode(maxphy: int, la57: bool = False, nx: bool = True) -> Mode:
    """The host paging mode the nested (NPT) stage walks with (APM §15.25.5: the host's paging mode at VMRUN):
    the harness's host runs 4-level long mode with WP on, and with EFER.NXE on exactly where the CPU has NX
    (``nx``, a target fact); without NXE bit 63 of a nested entry is reserved."""
    return Mode(GUEST_CR0, CR4_PAE | (CR4_LA57 if la57 else 0), EFER_LME | EFER_LMA | (EFER_NXE if nx else 0), 0,
                maxphy)


def nested_hpa(res: EptPath | Path, gpa: int) -> int:
    return res.hpa(gpa) if isinstance(res, EptPath) else res.pa(gpa)


class Host:
    """Host memory, the guests (EPT or NPT) and the guest-physical mappings cached for them; the 2-D walk."""

    def __init__(self, facts: dict[str, Any]):
        """``facts``: the machine's, every key the virt model's DEFAULT_FACTS names."""
        f = self.facts = facts
        self.maxphy = int(f["maxphyaddr"])
        self.nslot = nested_harness_slot(self.maxphy)
        self.low = int(f["harness_low"])
        self.ram = int(f["ram"])
        self.mem: dict[int, int] = {}
        self.unsure: dict[int, int] = {}     # hpa -> A/D bits a walk may or may not have set
        self.vms: dict[int, Vm] = {}
        self.cur: int | None = None
        self.cache = GpCache()

    def read(self, hpa: int) -> int:
        v = self.mem.get(hpa)
        return pattern(hpa) if v is None else v

    @property
    def vm(self) -> Vm | None:
        return self.vms.get(self.cur) if self.cur is not None else None

    def ept_fact(self, key: str, cap_bit: int) -> bool | None:
        """An EPT capability: the target's fact ``key``, else bit ``cap_bit`` of the IA32_VMX_EPT_VPID_CAP it
        reported (``facts["vmx"]["msr"]``), else None (not reported: the model does not know)."""
        if key in self.facts:
            return bool(self.facts[key])
        msr = (self.facts.get("vmx") or {}).get("msr", {}).get("IA32_VMX_EPT_VPID_CAP")
        if msr is None:
            return None
        return bool(int(msr, 16) >> cap_bit & 1)

    # -- the nested stage --------------------------------------------------------

    def nested_walk(self, vm: Vm, gpa: int, acc: int = READ) -> EptPath | EptViolation | EptMisconfig | Path | PageFault:
        """The current nested translation of ``gpa`` (no rights check, no cache); ``acc`` only shapes an
        NPT fault's error code."""
        if vm.kind == VM_EPT:
            return ept_walk(self.read, vm.root, vm.levels, gpa, self.maxphy, bool(self.facts["ept_xonly"]),
                            bool(self.facts["ept_1g"]), self.ept_fact("ept_2m", 16) is not False)
        return walk(self.read, host_mode(self.maxphy, vm.levels == 5, self.facts.get("nx", True) is not False), vm.root, gpa, acc, 3,
                    bool(self.facts["page1g"]))

    def nested_rights(self, vm: Vm, res: EptPath | Path, gpa: int, acc: int) -> EptViolation | PageFault | None:
        """None if ``res`` (a completed nested walk) allows ``acc``, else the fault value: EPT's R, W, X
        ANDed over the entries (sdm.ept.violation.*), or NPT's rights as a user access (APM §15.25.5)."""
        if vm.kind == VM_EPT:
            assert isinstance(res, EptPath)
            return ept_rights(res, acc, gpa)
        assert isinstance(res, Path)
        fault, _ = check_access(res, host_mode(self.maxphy, vm.levels == 5, self.facts.get("nx", True) is not False), gpa, acc, 3, 0)
        return fault

    def nested_options(self, vm: Vm, gpa: int, fresh: Any, cache: GpCache) -> list[tuple[Any, bool]]:
        """The nested translations a CPU may use for ``gpa``: the fresh walk first, then each distinct
        guest-physical mapping cached under this guest's root (sdm.ept.cached-guest-physical), as
        (translation, cached)."""
        options: list[tuple[Any, bool]] = [(fresh, False)]
        seen = {_pkey(fresh)} if isinstance(fresh, (EptPath, Path)) else set()
        for p in cache.lookup(vm.root, gpa):     # an EPT-format mapping never serves a nested-paging walk, nor the reverse
            if _pkey(p) not in seen and isinstance(p, EptPath) == (vm.kind == VM_EPT):
                seen.add(_pkey(p))
                options.append((p, True))
        return options

    def software_gpa(self, vm: Vm, gpa: int) -> int | None:
        """The hypervisor's own software walk (for set_gpte/read_gpte): the hpa, or None if unmapped."""
        res = self.nested_walk(vm, gpa)
        if isinstance(res, (EptPath, Path)):
            return nested_hpa(res, gpa)
        return None

    def hpa_now(self, vm: Vm, gpa: int) -> int:
        h = self.software_gpa(vm, gpa)
        return gpa if h is None else h

    # -- VM exits ------------------------------------------------------------------

    def exit_outcome(self, vm: Vm, nf: NestedFault, gva: int) -> tuple[Outcome, str]:
        """The VM exit a nested fault makes, and its clause: EPT misconfiguration (gpa), EPT violation (exit
        qualification per Table 28-7, gla, gpa), or #NPF (EXITINFO1, EXITINFO2)."""
        fault, gpa, final = nf.fault, nf.gpa, not nf.table
        if isinstance(fault, EptMisconfig):
            return Outcome(signal="EPT_MISCONFIG", detail=(("gpa", gpa),)), fault.clause
        if isinstance(fault, EptViolation):
            # the guest walk's own access under EPT A/D: a write, qualification bits 0 and 1 (Table 28-7 note 1)
            q = fault.qualification(nf.acc, gva, final, paging_write=not final and vm.ad)
            clause = fault.clause if final else "sdm.ept.violation.guest-paging-entry"
            return Outcome(signal="EPT_VIOLATION", detail=(("exit_qualification", q), ("gla", gva), ("gpa", gpa),
                                                         ("qual_any", self.qual_any(vm, nf.acc, final)))), clause
        # AMD: #NPF; EXITINFO1 = the nested #PF error code | bit 32 (final) or bit 33 (guest page table)
        info1 = int(fault.errcode) | (NPF_FINAL if final else NPF_GPT)
        clause = "apm.npt.npf-final" if final else "apm.npt.npf-guest-table"
        return Outcome(signal="#NPF", detail=(("exitinfo1", info1), ("exitinfo2", gpa))), clause

    def qual_any(self, vm: Vm, acc: int, final: bool) -> int:
        """Exit-qualification bits of an EPT violation that may go either way (SDM Vol. 3C Table 28-7):

        * bit 6, undefined without mode-based execute control (the harness never enables it);
        * bits 9-11 of a final-translation violation, which a CPU with advanced VM-exit information for
          EPT violations (IA32_VMX_EPT_VPID_CAP[22], the target's fact ``ept_exit_info``) fills in from the
          guest's entries and one without it leaves 0: loose unless the fact says the CPU lacks it;
        * bit 0 of the write that sets a guest A/D flag without EPT A/D: the processor's flag update is a
          locked read-modify-write, and for a read-modify-write "whether it also sets bit 0 (data read) is
          implementation-specific" (§28.2.1, after Table 28-7).
        """
        loose = QUAL_UNDEFINED_NO_MBEC
        if final and self.ept_fact("ept_exit_info", 22) is not False:
            loose |= QUAL_ADVANCED
        if not final and not vm.ad and acc == WRITE:
            loose |= int(Qual.READ)
        return loose

    # -- the 2-D walk ------------------------------------------------------------

    def walk_2d(self, vm: Vm, gva: int, acc: int, cpl: int, choose: Callable[[int], int] | None = None,
                use_cache: bool = True, ad_first: bool = True, cache: GpCache | None = None,
                translate_tables: bool = True) -> Walk2D:
        """One guest access, both stages (see the module doc).  ``choose`` picks between a fresh nested
        walk and cached guest-physical mappings (from ``cache``, by default the model's) where they differ;
        ``ad_first``: the guest A/D write is checked before the final translation (the SDM orders neither).

        ``translate_tables=False`` is the walk without sdm.ept.guest-paging-structures-translated: the guest
        entries read at their gpa as if it were a host address.  No CPU does this; the judge compares a
        wrong observation with it to name the clause the observation breaks."""
        refs = 0
        nested: list[Nested] = []
        gread: list[int] = []
        pick = choose or (lambda n: 0)
        gp = self.cache if cache is None else cache

        def stage2(gpa: int, acc2: int, table: bool) -> EptPath | Path | NestedFault:
            nonlocal refs
            fresh = self.nested_walk(vm, gpa, acc2)
            options = self.nested_options(vm, gpa, fresh, gp) if use_cache else [(fresh, False)]
            res, cached = options[pick(len(options)) if len(options) > 1 else 0]
            hit = cached or (use_cache and isinstance(res, (EptPath, Path)) and
                             any(_pkey(p) == _pkey(res) for p in gp.lookup(vm.root, gpa)))
            if not hit:
                refs += len(res.uses)     # a guest-physical mapping that hits costs no references
            if not isinstance(res, (EptPath, Path)):
                return NestedFault(res, gpa, acc2, table)
            bad = self.nested_rights(vm, res, gpa, acc2)
            if bad is not None:
                return NestedFault(bad, gpa, acc2, table)
            nested.append(Nested(gpa, res, cached, table))
            return res

        def guest_entry(gpa: int) -> int | NestedFault:
            # SDM §29.3.3.2: with EPT A/D on, accesses to guest paging structures count as writes
            res = stage2(gpa, WRITE if vm.table_writes else READ, True)
            if isinstance(res, NestedFault):
                return res
            gread.append(gpa)
            return nested_hpa(res, gpa)

        def read_entry(hpa: int) -> int:
            nonlocal refs
            refs += 1
            return self.read(hpa)

        def exited(nf: NestedFault, g: Path | None) -> Walk2D:
            o, clause = self.exit_outcome(vm, nf, gva)
            return Walk2D(o, clause, refs, tuple(nested), g, nf.gpa, None, nf.fault.uses, tuple(gread))

        gmode = vm.mode
        g = walk(read_entry, gmode, vm.gcr3, gva, acc, cpl, bool(self.facts["page1g"]),
                 nested=guest_entry if translate_tables else None)
        if isinstance(g, NestedFault):
            return exited(g, None)
        if isinstance(g, PageFault):
            return Walk2D(_pf(g), g.clause, refs, tuple(nested), g)
        fault, clause = check_access(g, gmode, gva, acc, cpl, 0)
        if fault is not None:
            return Walk2D(_pf(fault), clause, refs, tuple(nested), g)
        gpa = g.pa(gva)
        if ad_first and (nf := self.guest_ad_rights(vm, g, acc, nested)) is not None:
            return exited(nf, g)
        final = stage2(gpa, acc, False)
        if isinstance(final, NestedFault):
            return exited(final, g)
        if not ad_first and (nf := self.guest_ad_rights(vm, g, acc, nested)) is not None:
            return exited(nf, g)
        hpa = self.final_hpa(final, gpa)
        o, clause = self.access_at(vm, hpa, acc)
        return Walk2D(o, clause, refs, tuple(nested), g, gpa, hpa)

    def final_hpa(self, final: EptPath | Path, gpa: int) -> int:
        """The host address the access reaches: the nested translation of the guest walk's gpa."""
        return nested_hpa(final, gpa)

    def access_at(self, vm: Vm, hpa: int, acc: int) -> tuple[Outcome | None, str]:
        """What the access returns at host address ``hpa``, once both stages allowed it: a read the qword
        (A/D bits either way where it is a paging entry), a write the qword with its low byte 0xCC, a fetch
        OK; None where the value is not the pattern's and not the model's to know."""
        clause = "sdm.ept.two-dimensional" if vm.kind == VM_EPT else "apm.npt.two-dimensional"
        if not (self.low <= hpa < self.ram):
            return None, "memspec.virt.pa-outside-pattern"
        if acc == EXEC:
            return (OK if hpa not in self.mem else None), clause
        v = self.read(hpa)
        if acc == WRITE:
            return Outcome(value=(v & ~0xFF) | 0xCC), clause
        if hpa in self.mem:
            loose = int(Pte.A | Pte.D | Ept.A | Ept.D) | self.unsure.get(hpa, 0)
            return Outcome(value=v, detail=(("loose", loose),)), clause
        return Outcome(value=v), clause

    def guest_ad_rights(self, vm: Vm, g: Path, acc: int, nested: list[Nested]) -> NestedFault | None:
        """Setting a guest A (or D) flag is a write to a guest paging entry: without EPT A/D the nested
        translation the walk just used for that entry must also allow a write (SDM §29.3.3.2; with EPT
        A/D the walk already translated them as writes).  No new references: the same translation."""
        if vm.table_writes:
            return None
        used = {n.gpa: n.path for n in nested if n.table}
        for u in g.uses:
            need = Pte.A | (Pte.D if u is g.uses[-1] and acc == WRITE else 0)
            res = used.get(u.addr)
            if res is None or self.read(self.hpa_now(vm, u.addr)) & need == need:
                continue
            bad = self.nested_rights(vm, res, u.addr, WRITE)
            if bad is not None:
                return NestedFault(bad, u.addr, WRITE, True)
        return None

    def compose(self, vm: Vm, gva: int, acc: int) -> int | None:
        """The guest walk over a flat view of guest-physical memory, then the nested walk of its gpa
        (no rights, no cache): the composition the 2-D walk must equal wherever neither faults."""
        def flat(gpa: int) -> int:
            h = self.software_gpa(vm, gpa)
            return 0 if h is None else self.read(h)
        g = walk(flat, vm.mode, vm.gcr3, gva, acc, 0, bool(self.facts["page1g"]))
        if isinstance(g, PageFault):
            return None
        return self.software_gpa(vm, g.pa(gva))


def _pkey(p: EptPath | Path) -> tuple:
    """What a cached nested translation decides (frame, size, rights), not the A/D bits its entries held."""
    if isinstance(p, EptPath):
        return (p.base, p.size, p.r, p.w, p.x, p.memtype)
    return (p.base, p.size, p.user, p.writable, p.xd)


def _pf(f: PageFault) -> Outcome:
    return Outcome(signal="#PF", detail=(("cr2", f.cr2), ("errcode", f.errcode)))
