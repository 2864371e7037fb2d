"""The virt layer's model: guests under EPT / AMD nested paging, judged call by call, and KPTI.

The machine -- host memory, the guests, the two-dimensional walk and its VM exits, faults as
values -- is ``model.walk2d``; this module is the layer's rules: for each call the clause and
the outcomes it allows (a guest access may meet any mix of fresh and cached nested
translations per gpa page, and the model adopts what the target did), the A/D bits the
walks set, the clause a wrong observation breaks, and the invariants.  Linear and combined
mappings do not survive (VPIDs off: every VM entry and exit flushes them, SDM Vol. 3C
§29.4.3.3); guest-physical mappings may outlive a change of the nested tables until
``invept`` (§29.4.3.1, §29.4.3.4).

Worked example: after the ``memspec.calls_virt`` program boots a guest whose gva 0x5008
reaches gpa 0x200008 and an EPT PDE ``0x800000|R|PS``, ``vm_access(0x5008, ACC_READ, 3)``
expects ``pattern(0x800008)`` under sdm.ept.two-dimensional, and ``vm_access(0x5008,
ACC_WRITE, 3)`` an EPT violation with exit qualification 0x18a under sdm.ept.violation.write.

**KPTI** is in ``model.kpti``; this model hands it the KPTI calls.
"""

from __future__ import annotations

from typing import Any

from memspec.calls import layer_calls
from memspec.calls_hw import HARNESS_LOW, RAM_SIZE, pattern
from memspec.calls_virt import GUEST_HARNESS_SLOT, MAX_VMS
from memspec.records import OK, Outcome

from .ept import Ept, EptPath, Eptp, decode_ept
from .expect import Expect, exactly, one_of
from .kpti import KPTI_CALLS, Kpti
from .pte import CR4_LA57, CR4_PAE, CR4_PKE, CR4_SMAP, CR4_SMEP, EFER_LMA, EFER_LME, EXEC, READ, WRITE, Pte, addr_mask, decode
from .rules import Rule, compose
from .walk import PageFault, Path, index
from .walk2d import NPF_GPT, VM_EPT, VM_NPT, GpCache, Host, Nested, Vm, Walk2D, explore

U64 = (1 << 64) - 1
EINVAL = Outcome(value=-1, errno="EINVAL")
# what an entry in host memory is, as the program wrote it
ENTRY_EPT, ENTRY_NPT, ENTRY_GUEST = "EPT entry", "nested (NPT) entry", "guest paging entry"
# the clause that decides an entry's A/D bits when no walk has touched it since it was written
AD_CLAUSE = {ENTRY_EPT: "sdm.ept.ad.readback", ENTRY_NPT: "apm.npt.ad", ENTRY_GUEST: "sdm.ept.guest-ad"}
DEFAULT_FACTS: dict[str, Any] = {
    "maxphyaddr": 52, "la57": True, "page1g": True, "ept_xonly": True, "ept_ad": True, "ept_1g": True,
    "ram": RAM_SIZE, "harness_low": HARNESS_LOW, "strict_tlb": False, "tlb_entries": 64,
}
# guest CR4 bits that need a CPU feature (the target's fact of that name; absent: assumed present)
GUEST_CR4_FEATURES = ((CR4_SMEP, "smep"), (CR4_SMAP, "smap"), (CR4_PKE, "pku"))


# the virt layer's calls this model governs itself; the KPTI calls are model.kpti's
_OWN_CALLS = frozenset(c.name for c in layer_calls("virt")) - KPTI_CALLS


class VirtModel(Host):
    """Host memory, guests (EPT or NPT), the cached guest-physical mappings, and a KPTI kernel."""

    procs: tuple[str, ...] = ()

    def __init__(self, facts: dict[str, Any] | None = None):
        super().__init__({**DEFAULT_FACTS, **(facts or {})})
        # what each entry the program wrote is (ENTRY_EPT, ENTRY_NPT, ENTRY_GUEST) and the clause that last
        # decided its A/D bits: for the checkpoint comparison (specs/compare_virt.py)
        self.kind_at: dict[int, str] = {}
        self.ad_clause: dict[int, str] = {}
        self.now = 0
        self.kpti = Kpti(self.facts)
        self._last: tuple[tuple, list[Walk2D]] | None = None
        # what guests reached: (vm, hpa page) -> gpa page, for the isolation invariant
        self.reached: dict[tuple[int, int], int] = {}
        self.last_walk: tuple[int, int, int, Walk2D] | None = None    # (vm, gva, acc, walk)

    # -- memory ----------------------------------------------------------------

    def _store(self, hpa: int, value: int, kind: str | None = None) -> None:
        self.mem[hpa] = value & U64
        self.unsure.pop(hpa, None)
        self.ad_clause.pop(hpa, None)
        if kind is not None:
            self.kind_at[hpa] = kind

    def observe(self) -> dict[str, Any]:
        """The state a target shows at a checkpoint: every qword of host memory the program changed from
        the pattern (EPT/NPT entries and guest paging entries, A/D bits as the walks left them)."""
        return {"entries": tuple(sorted((a, v) for a, v in self.mem.items()
                                        if self.low <= a < self.ram and v != pattern(a)))}

    def is_harness_entry(self, hpa: int) -> bool:
        """The harness's own entries: slot ``nslot`` of a booted EPT/NPT root and slot 511 of a guest root
        (its guest code, written by the target, not by the program)."""
        for vm in self.vms.values():
            if hpa == vm.root + 8 * self.nslot:
                return True
            if hpa == self.hpa_now(vm, (vm.gcr3 & ~0xFFF) + 8 * GUEST_HARNESS_SLOT):
                return True
        return False

    def ad_bits(self, hpa: int) -> int:
        """The bits a processor may write in the entry at ``hpa``: EPT A|D (bits 8, 9; SDM Vol. 3C §29.3.5), or
        x86-format A|D (bits 5, 6; Vol. 3A §4.8) in guest and nested (NPT) entries."""
        return int(Ept.A | Ept.D) if self.kind_at.get(hpa) == ENTRY_EPT else int(Pte.A | Pte.D)

    # -- LayerModel ---------------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        if name in KPTI_CALLS:
            return self.kpti.expect(name, args)
        return self.RULES[name].expect(self, *args)

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        self.last_walk = None       # the composition invariant judges the access just made, once
        if name in KPTI_CALLS:
            self.kpti.apply(name, args, outcome)
            return
        f = self.RULES[name].apply
        if f is not None:
            f(self, outcome, *args)

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        pass

    def invariants(self) -> list[tuple[str, str]]:
        """``guests_isolated``, ``guest_confined_to_its_ept``, ``two_d_equals_composition`` (for the access just
        made), then the KPTI ones."""
        bad: list[tuple[str, str]] = []
        if self.last_walk is not None and self.last_walk[3].hpa is not None:
            # the access just made reached a host page another guest reached before: only the guest's own
            # EPT/NPT (or a mapping cached under its own root) may explain it
            vmid, gva, _acc, w = self.last_walk
            hp, vm = w.hpa >> 12, self.vms.get(vmid)
            others = sorted(v for (v, page), _ in self.reached.items() if page == hp and v != vmid)
            if others and vm is not None and w.gpa is not None:
                h = self.software_gpa(vm, w.gpa)
                cached = any(p.base >> 12 <= hp < (p.base + p.size) >> 12 for p in self.cache.lookup(vm.root, w.gpa))
                if (h is None or h >> 12 != hp) and not cached:
                    bad.append(("memspec.virt.guests-isolated",
                                f"guest {vmid} reached host page {hp << 12:#x}, which guest(s) {others} reached, but its "
                                f"own EPT/NPT does not map gpa {w.gpa:#x} there"))
        if self.last_walk is not None:
            vmid, gva, acc, w = self.last_walk
            vm = self.vms.get(vmid)
            if vm is not None and w.hpa is not None and w.gpa is not None:
                fin = [n for n in w.nested if not n.table]
                ok = fin and any(self._maps(vm, n.gpa, w.hpa, n) for n in fin)
                if not ok:
                    bad.append(("memspec.virt.guest-confined",
                                f"guest {vmid} reached hpa {w.hpa:#x}, which its EPT/NPT (or a mapping it cached) "
                                f"does not map to gpa {w.gpa:#x}"))
            if vm is not None and w.hpa is not None and not any(n.cached for n in w.nested):
                want = self.compose(vm, gva, acc)
                if want is not None and want != w.hpa:
                    bad.append(("memspec.virt.two-d-equals-composition",
                                f"guest {vmid}: gva {gva:#x} reached hpa {w.hpa:#x}; the guest walk over guest-physical "
                                f"memory then the EPT walk give {want:#x}"))
        bad += self.kpti.invariants()
        return bad

    def _maps(self, vm: Vm, gpa: int, hpa: int, n: Nested) -> bool:
        if n.cached:
            return any((p.hpa(gpa) if isinstance(p, EptPath) else p.pa(gpa)) == hpa & ~0xFFF | (gpa & 0xFFF) or
                       (p.hpa(gpa) if isinstance(p, EptPath) else p.pa(gpa)) >> 12 == hpa >> 12
                       for p in self.cache.lookup(vm.root, gpa))
        h = self.software_gpa(vm, gpa)
        return h is not None and h >> 12 == hpa >> 12

    # -- VM set-up -----------------------------------------------------------------

    def _expect_vm_boot(self, vmid: int, kind: int, root: int, eptp_flags: int, gcr3: int, gcr4: int, gefer: int) -> Expect:
        if not 0 <= vmid < MAX_VMS or kind not in (VM_EPT, VM_NPT) or root % 4096 or not self.low <= root < self.ram:
            return exactly("memspec.virt.vm-args", EINVAL)
        if not gcr4 & CR4_PAE or not gefer & EFER_LME or gcr4 & CR4_LA57 and not self.facts["la57"]:
            return exactly("memspec.virt.vm-args", EINVAL)
        # a guest CR4 feature the CPU lacks cannot be loaded (VM entry / VMRUN would fail): refused
        if any(gcr4 & bit and self.facts.get(key) is False for bit, key in GUEST_CR4_FEATURES):
            return exactly("memspec.virt.vm-args", EINVAL)
        if gcr3 % 4096 or not 0 <= gcr3 < (GUEST_HARNESS_SLOT << 39):
            return exactly("memspec.virt.vm-args", EINVAL)
        if kind == VM_EPT:
            # what the CPU's IA32_VMX_EPT_VPID_CAP allows (a fact the target reports; not reported: allowed,
            # except a 5-level walk, assumed only where the CPU has 5-level paging at all)
            wl5 = self.ept_fact("ept_wl5", 7)
            why = self._eptp_invalid(Eptp(root | eptp_flags), bool(self.facts["la57"]) if wl5 is None else wl5)
            if why == "either":
                # EPTP bit 7 on a target that did not report CET: valid with shadow stacks, reserved without
                return one_of("sdm.eptp.invalid-fails-entry", (EINVAL, OK))
            if why is not None:
                return exactly("sdm.eptp.invalid-fails-entry", EINVAL)
            return exactly("sdm.eptp.valid", OK)
        if eptp_flags:
            return exactly("memspec.virt.vm-args", EINVAL)
        return exactly("apm.npt.ncr3", OK)

    def _apply_vm_boot(self, o: Outcome, vmid: int, kind: int, root: int, eptp_flags: int, gcr3: int, gcr4: int,
                       gefer: int) -> None:
        if not o.ok:
            return
        levels = Eptp(root | eptp_flags).levels if kind == VM_EPT else (5 if gcr4 & CR4_LA57 else 4)
        self.vms[vmid] = Vm(kind, root, eptp_flags, gcr3, gcr4, gefer | EFER_LMA, levels)
        self.cur = vmid
        self.reached = {k: v for k, v in self.reached.items() if k[0] != vmid}

    def _expect_vm_enter(self, vmid: int) -> Expect:
        if vmid not in self.vms:
            return exactly("memspec.virt.vm-args", EINVAL)
        return exactly("memspec.virt.vm-enter", OK)

    def _apply_vm_enter(self, o: Outcome, vmid: int) -> None:
        if o.ok:
            self.cur = vmid

    def _expect_vm_cr3(self, value: int) -> Expect:
        if self.vm is None or value % 4096 or not 0 <= value < (GUEST_HARNESS_SLOT << 39):
            return exactly("memspec.virt.vm-args", EINVAL)
        return exactly("memspec.virt.guest-cr3", OK)

    def _apply_vm_cr3(self, o: Outcome, value: int) -> None:
        if o.ok and self.vm is not None:
            self.vm.gcr3 = value

    # -- entries ---------------------------------------------------------------------

    def _host_table_ok(self, table: int, idx: int) -> bool:
        return table % 4096 == 0 and self.low <= table < self.ram and 0 <= idx <= 511

    def _expect_set_epte(self, table: int, idx: int, frame: int, flags: int) -> Expect:
        if not self._host_table_ok(table, idx) or not 0 <= frame | flags <= U64 or self._harness_root_slot(table, idx):
            return exactly("memspec.virt.table-args", EINVAL)
        return exactly("memspec.virt.set-entry", OK)

    def _harness_root_slot(self, table: int, idx: int) -> bool:
        return idx == self.nslot and any(v.root == table for v in self.vms.values())

    def _apply_set_epte(self, o: Outcome, table: int, idx: int, frame: int, flags: int) -> None:
        if o.ok:
            self._store(table + 8 * idx, frame | flags, ENTRY_EPT)

    _expect_set_npte = _expect_set_epte

    def _apply_set_npte(self, o: Outcome, table: int, idx: int, frame: int, flags: int) -> None:
        if o.ok:
            self._store(table + 8 * idx, frame | flags, ENTRY_NPT)

    def _expect_read_epte(self, table: int, idx: int) -> Expect:
        if not self._host_table_ok(table, idx):
            return exactly("memspec.virt.table-args", EINVAL)
        hpa = table + 8 * idx
        return self._readback(hpa, AD_CLAUSE[ENTRY_NPT] if self.kind_at.get(hpa) == ENTRY_NPT else "sdm.ept.ad.readback")

    def _apply_read_epte(self, o: Outcome, table: int, idx: int) -> None:
        self._adopt_readback(table + 8 * idx, o)

    def _readback(self, hpa: int, clause: str) -> Expect:
        want = self.read(hpa)
        loose = self.unsure.get(hpa, 0)
        if not loose:
            return exactly(clause, Outcome(value=want))

        def allowed(o: Outcome) -> str | None:
            if o.value is None or not o.ok:
                return f"expected the entry, observed {o.describe()}"
            if (o.value ^ want) & ~loose:
                return f"expected {want:#x} (bits {loose:#x} either way), observed {o.value:#x}"
            return None
        return Expect(clause, Outcome(value=want), f"{want:#x} with bits {loose:#x} either way", predicate=allowed,
                      impl_defined=True)

    def _adopt_readback(self, hpa: int, o: Outcome) -> None:
        if o.ok and o.value is not None and hpa in self.unsure:      # a refused read (EINVAL) read nothing
            self.unsure.pop(hpa)
            self.mem[hpa] = o.value & U64

    def _expect_set_gpte(self, table: int, idx: int, frame: int, flags: int) -> Expect:
        vm = self.vm
        if vm is None or table % 4096 or not 0 <= idx < GUEST_HARNESS_SLOT + 1 or not 0 <= frame | flags <= U64:
            return exactly("memspec.virt.table-args", EINVAL)
        if table == vm.gcr3 and idx == GUEST_HARNESS_SLOT:
            return exactly("memspec.virt.table-args", EINVAL)
        hpa = self.software_gpa(vm, table + 8 * idx)
        if hpa is None or not self.low <= hpa < self.ram:
            return exactly("memspec.virt.gpte-unmapped", EINVAL)
        return exactly("memspec.virt.set-gpte", OK)

    def _apply_set_gpte(self, o: Outcome, table: int, idx: int, frame: int, flags: int) -> None:
        vm = self.vm
        if o.ok and vm is not None:
            hpa = self.software_gpa(vm, table + 8 * idx)
            if hpa is not None:
                self._store(hpa, frame | flags, ENTRY_GUEST)

    def _expect_read_gpte(self, table: int, idx: int) -> Expect:
        vm = self.vm
        if vm is None or table % 4096 or not 0 <= idx <= 511:
            return exactly("memspec.virt.table-args", EINVAL)
        hpa = self.software_gpa(vm, table + 8 * idx)
        if hpa is None or not self.low <= hpa < self.ram:
            return exactly("memspec.virt.gpte-unmapped", EINVAL)
        return self._readback(hpa, "sdm.ept.guest-ad")

    def _apply_read_gpte(self, o: Outcome, table: int, idx: int) -> None:
        vm = self.vm
        if vm is not None:
            hpa = self.software_gpa(vm, table + 8 * idx)
            if hpa is not None:
                self._adopt_readback(hpa, o)

    def _expect_invept(self, kind: int, root: int) -> Expect:
        if kind not in (1, 2) or kind == 1 and (root % 4096 or not self.low <= root < self.ram):
            return exactly("memspec.virt.invept-args", EINVAL)
        return exactly("sdm.invept.single-context" if kind == 1 else "sdm.invept.all-context", OK)

    def _apply_invept(self, o: Outcome, kind: int, root: int) -> None:
        if o.ok:
            self.cache.invalidate(root if kind == 1 else None)

    # -- accesses ------------------------------------------------------------------------

    def candidates(self, gva: int, acc: int, cpl: int) -> list[Walk2D]:
        vm = self.vm
        assert vm is not None
        out: list[Walk2D] = explore(lambda choose: self.walk_2d(vm, gva, acc, cpl, choose))
        if not vm.ad and any(isinstance(w.guest, Path) for w in out):
            # the SDM does not order the guest A/D write against the final translation
            out += explore(lambda choose: self.walk_2d(vm, gva, acc, cpl, choose, ad_first=False))
        return out

    def _expect_vm_access(self, gva: int, acc: int, cpl: int) -> Expect:
        vm = self.vm
        if vm is None or gva % 8 or acc not in (READ, WRITE, EXEC) or cpl not in (0, 3) or not 0 <= gva <= U64:
            return exactly("memspec.virt.access-args", EINVAL)
        if not (gva >> 47 == 0 or (vm.levels == 5 and gva >> 56 == 0)) or index(gva, vm.mode.levels) == GUEST_HARNESS_SLOT:
            return exactly("memspec.virt.access-args", EINVAL)
        cands = self.candidates(gva, acc, cpl)
        self._last = ((gva, acc, cpl), cands)
        fresh = cands[0]
        options: list[tuple[Outcome | None, str]] = []
        for w in cands:
            if all(not _same(w.outcome, o) for o, _ in options):
                options.append((w.outcome, w.clause))
        if fresh.outcome is None:
            return Expect(fresh.clause, Outcome(value=0), "a value from memory the pattern does not cover", unknown=True)
        harness = self._harness_walk_exit(vm, fresh.outcome)
        if harness is not None:
            # the guest reaches its own (harness) code through the same root page, entry 511, first: the
            # same law (the fresh walk's clause) met at another gpa of that page
            options.insert(0, (harness, "memspec.virt.harness-code-walk"))
            fresh = Walk2D(harness, fresh.clause, fresh.refs, fresh.nested, fresh.guest, fresh.gpa)
        def blame(obs: Outcome) -> str:
            return self.blame(vm, gva, acc, cpl, fresh, obs)

        def allowed(obs: Outcome) -> str | None:
            for o, _ in options:
                if o is None or _same(obs, o):
                    return None
            return (f"expected {' or '.join(show(o) for o, _ in options)}, observed {show(obs)}\n{self.explain(gva)}")
        # a guest access's value names the host frame it reached: the check holds the target to the 2-D laws
        covers: tuple[str, ...] = ("memspec.virt.harness-code-walk",) if harness is not None else ()
        if fresh.hpa is not None:
            covers = ("sdm.ept.guest-paging-structures-translated", "memspec.virt.guest-confined",
                      "memspec.virt.two-d-equals-composition")
            if len(self.vms) > 1:
                covers += ("memspec.virt.guests-isolated",)
        if len(options) == 1:
            return Expect(fresh.clause, fresh.outcome, show(fresh.outcome), predicate=allowed, blame_by=blame,
                          covers=covers)
        return Expect("sdm.ept.cached-guest-physical", fresh.outcome, " or ".join(show(o) for o, _ in options),
                      predicate=allowed, impl_defined=True, blame_by=blame, covers=covers)

    def _harness_walk_exit(self, vm: Vm, o: Outcome) -> Outcome | None:
        """The #NPF (EPT violation or misconfiguration) the harness's own guest code meets first when the
        nested stage refuses the guest root page: every VM entry walks gva slot 511 through guest PML4
        entry 511 (gpa gCR3 + 0xff8).  An EPT exit's guest-linear address is then the harness's code
        address, which the model does not know: that field is left out (any value)."""
        root_page, harness_gpa = vm.gcr3 & ~0xFFF, (vm.gcr3 & ~0xFFF) + 8 * GUEST_HARNESS_SLOT
        d = dict(o.detail)
        if vm.kind == VM_EPT and o.signal == "EPT_MISCONFIG" and d["gpa"] & ~0xFFF == root_page:
            return Outcome(signal="EPT_MISCONFIG", detail=(("gpa", harness_gpa),))
        if vm.kind == VM_EPT and o.signal == "EPT_VIOLATION" and d["gpa"] & ~0xFFF == root_page:
            q = d["exit_qualification"]
            if not q & 0x100:       # Table 28-7 bit 8 clear: an access to a guest paging entry
                return Outcome(signal="EPT_VIOLATION", detail=(("exit_qualification", q), ("gpa", harness_gpa),
                                                             ("qual_any", d.get("qual_any", 0))))
            return None
        if vm.kind != VM_NPT or o.signal != "#NPF":
            return None
        if d["exitinfo1"] & NPF_GPT and d["exitinfo2"] & ~0xFFF == vm.gcr3 & ~0xFFF:
            return Outcome(signal="#NPF", detail=(("exitinfo1", d["exitinfo1"]),
                                                  ("exitinfo2", (vm.gcr3 & ~0xFFF) + 8 * GUEST_HARNESS_SLOT)))
        return None

    # -- blame: the clause a wrong observation breaks ------------------------------------

    def blame(self, vm: Vm, gva: int, acc: int, cpl: int, fresh: Walk2D, obs: Outcome) -> str:
        """The clause a refused guest access breaks: the first law below whose breach, computed from the
        walk, gives exactly the observed outcome; else the clause of the fresh walk.

        * sdm.ept.violation.execute -- the fetch EPT refused for X at the final translation completed:
          the outcome of the access at the host address the final gpa maps to;
        * memspec.virt.guests-isolated -- a guest-physical mapping cached under another EPT root was
          used as if the cache were not tagged by root (before the next row: a concrete translation
          another guest cached, which also explains the data where the guest tables sit at host
          addresses equal to their gpa);
        * sdm.ept.guest-paging-structures-translated -- the guest entries were read at their gpa as if
          it were a host address (``walk_2d(translate_tables=False)``).
        """
        if fresh.clause == "sdm.ept.violation.execute" and fresh.gpa is not None:
            hpa = self.software_gpa(vm, fresh.gpa)
            o = self.access_at(vm, hpa, EXEC)[0] if hpa is not None else None
            if o is not None and _same(obs, o):
                return "sdm.ept.violation.execute"
        for r, _b, _s, _p, _t in self.cache.entries:
            if r != vm.root:
                o = self._walk_with_foreign_cache(vm, r, gva, acc, cpl)
                if o is not None and _same(obs, o):
                    return "memspec.virt.guests-isolated"
                break
        o = self.walk_2d(vm, gva, acc, cpl, use_cache=False, translate_tables=False).outcome
        if o is not None and _same(obs, o):
            return "sdm.ept.guest-paging-structures-translated"
        return fresh.clause

    def _walk_with_foreign_cache(self, vm: Vm, root: int, gva: int, acc: int, cpl: int) -> Outcome | None:
        """The access with the guest-physical mappings cached under ``root`` taken for this guest's own
        (the last option at each gpa: a cached one where there is one)."""
        foreign = GpCache([(vm.root, b, s, p, t) for r, b, s, p, t in self.cache.entries if r == root])
        ws = explore(lambda choose: self.walk_2d(vm, gva, acc, cpl, lambda n: n - 1, cache=foreign))
        return ws[0].outcome if ws else None

    def _apply_vm_access(self, o: Outcome, gva: int, acc: int, cpl: int) -> None:
        vm = self.vm
        if vm is None or o.errno:
            return
        key = (gva, acc, cpl)
        cands = self._last[1] if self._last and self._last[0] == key else self.candidates(gva, acc, cpl)
        self._last = None
        match = [w for w in cands if w.outcome is not None and _same(o, w.outcome)] or cands[:1]
        w = match[0]
        exact = len({_sig(c.outcome) for c in cands}) == 1 and not any(n.cached for c in cands for n in c.nested)
        self.now += 1
        for n in w.nested:
            if not n.cached:
                self.cache.fill(vm.root, n.gpa, n.path, self.now)
        self.last_walk = (self.cur, gva, acc, w) if o.ok else None
        if w.hpa is not None and o.ok:
            self.reached[(self.cur, w.hpa >> 12)] = (w.gpa or 0) >> 12
        self._set_ad(vm, w, acc, o, exact)
        if acc == WRITE and o.ok and o.value is not None and w.hpa is not None and w.hpa in self.mem:
            self._store(w.hpa, o.value)

    def _set_ad(self, vm: Vm, w: Walk2D, acc: int, o: Outcome, exact: bool) -> None:
        """Guest A/D (SDM Vol. 3A §4.8) and EPT A/D (Vol. 3C §29.3.5) the access set: exact on a clean
        success, unsure (either way) on a fault or when cached translations were possible."""
        sure = exact and o.ok
        touched: list[tuple[int, int]] = []
        nested_clause = "sdm.ept.ad.readback" if vm.kind == VM_EPT else "apm.npt.ad"
        if isinstance(w.guest, Path) or isinstance(w.guest, PageFault):
            uses = w.guest.uses
            for u in uses:
                h = self.hpa_now(vm, u.addr)
                if h not in self.mem or not self.read(h) & Pte.P:
                    continue
                touched.append((h, self.guest_ad(isinstance(w.guest, Path) and u is uses[-1], acc)))
        elif w.guest is None:
            # a VM exit in the middle of the guest walk: the guest entries it had read may have A set
            for gpa in w.guest_read:
                h = self.hpa_now(vm, gpa)
                if h in self.mem and self.read(h) & Pte.P:
                    touched.append((h, int(Pte.A)))
        n_guest = len(touched)
        if vm.ad or vm.kind == VM_NPT:
            # the nested walk that exited: A in the present entries it read, either way (never sure: o is an exit)
            present_bits = 0x7 if vm.kind == VM_EPT else int(Pte.P)
            a_bit = int(Ept.A) if vm.kind == VM_EPT else int(Pte.A)
            touched += [(u.addr, a_bit) for u in w.exit_uses if u.value & present_bits]
        for n in w.nested:
            touched += self.nested_ad(vm, n, acc)
        guest_entries = {h for h, _ in touched[:n_guest]}
        for h, bitsset in touched:
            if h not in self.mem:
                continue
            self.ad_clause[h] = "sdm.ept.guest-ad" if h in guest_entries else nested_clause
            v = self.read(h)
            if sure:
                self.mem[h] = v | bitsset
            else:
                self.unsure[h] = self.unsure.get(h, 0) | (bitsset & ~v)
        for k in [k for k, m in self.unsure.items() if not m]:
            del self.unsure[k]

    def guest_ad(self, leaf: bool, acc: int) -> int:
        """The flags an access sets in a guest paging entry it used (SDM Vol. 3A §4.8, sdm.ept.guest-ad):
        A in every entry, D in the entry that maps the page for a write."""
        return int(Pte.A | (Pte.D if leaf and acc == WRITE else 0))

    def nested_ad(self, vm: Vm, n: Nested, acc: int) -> list[tuple[int, int]]:
        """(hpa, flags) a fresh nested walk sets in the entries it used: with EPTP[6] = 1, EPT A in each and
        D in the leaf for a write, the guest walk's own accesses counting as writes (SDM Vol. 3C §29.3.5,
        sdm.ept.ad.readback); with nested paging x86 A/D the same way (apm.npt.ad); none without EPT A/D
        or through a cached mapping."""
        if n.cached or not (vm.ad or vm.kind == VM_NPT):
            return []
        a, d = (int(Ept.A), int(Ept.D)) if vm.ad else (int(Pte.A), int(Pte.D))
        write = n.table or acc == WRITE
        return [(u.addr, a | (d if u is n.path.uses[-1] and write else 0)) for u in n.path.uses]

    # -- explanations ---------------------------------------------------------------------

    def explain(self, gva: int) -> str:
        """Every guest entry for ``gva`` and the nested entries of the gpas involved, bits decoded."""
        vm = self.vm
        if vm is None:
            return ""
        kind = "EPT" if vm.kind == VM_EPT else "NPT"
        lines = [f"guest {self.cur}: {kind} root={vm.root:#x} eptp_flags={vm.eptp_flags:#x} gCR3={vm.gcr3:#x} "
                 f"gCR4={vm.gcr4:#x} gEFER={vm.gefer:#x}"]
        table = vm.gcr3
        for level in range(vm.mode.levels, 0, -1):
            gaddr = table | (index(gva, level) << 3)
            h = self.software_gpa(vm, gaddr)
            e = self.read(h) if h is not None else 0
            lines.append(f"  guest {('', 'PTE', 'PDE', 'PDPTE', 'PML4E', 'PML5E')[level]}[{index(gva, level)}] "
                         f"@ gpa {gaddr:#x} (hpa {h if h is None else hex(h)}) = {e:#018x}  {decode(e, level)}")
            lines += self._explain_nested(vm, gaddr)
            if h is None or not e & Pte.P or level == 1 or (level in (2, 3) and e & Pte.PS):
                if e & Pte.P:
                    size = {1: 12, 2: 21, 3: 30}[level]
                    gpa = (e & addr_mask(self.maxphy) & ~((1 << size) - 1)) | (gva & ((1 << size) - 1))
                    lines.append(f"  final gpa {gpa:#x}")
                    lines += self._explain_nested(vm, gpa)
                break
            table = e & addr_mask(self.maxphy)
        return "\n".join(lines)

    def _explain_nested(self, vm: Vm, gpa: int) -> list[str]:
        res = self.nested_walk(vm, gpa)
        out = []
        for u in res.uses:
            d = decode_ept(u.value, u.level) if vm.kind == VM_EPT else decode(u.value, u.level)
            out.append(f"      nested L{u.level}[{index(gpa, u.level)}] @ hpa {u.addr:#x} = {u.value:#018x}  {d}")
        return out

    # the rules of this model's calls, by name (model.rules.compose checks them against the call table)
    def _eptp_invalid(self, eptp: Eptp, wl5: bool) -> str | None:
        """Why a VM entry with ``eptp`` fails under the target's facts (``Eptp.invalid``), or "either" when
        that depends on CET shadow stacks (EPTP bit 7), which the target did not report (fact ``cet``)."""
        args = (self.maxphy, wl5, bool(self.facts["ept_ad"]), self.ept_fact("ept_uc", 8) is not False,
                self.ept_fact("ept_wb", 14) is not False, self.ept_fact("ept_wl4", 6) is not False)
        why, why_sss = eptp.invalid(*args, sss_ok=False), eptp.invalid(*args, sss_ok=True)
        if why != why_sss and self.facts.get("cet") is None:
            return "either"
        return why_sss if self.facts.get("cet") else why

    RULES = compose("virt", {
        "vm_boot": Rule(_expect_vm_boot, _apply_vm_boot),
        "vm_enter": Rule(_expect_vm_enter, _apply_vm_enter),
        "vm_cr3": Rule(_expect_vm_cr3, _apply_vm_cr3),
        "set_epte": Rule(_expect_set_epte, _apply_set_epte),
        "set_npte": Rule(_expect_set_npte, _apply_set_npte),
        "read_epte": Rule(_expect_read_epte, _apply_read_epte),
        "set_gpte": Rule(_expect_set_gpte, _apply_set_gpte),
        "read_gpte": Rule(_expect_read_gpte, _apply_read_gpte),
        "invept": Rule(_expect_invept, _apply_invept),
        "vm_access": Rule(_expect_vm_access, _apply_vm_access),
    }, lead=(1, 2), only=_OWN_CALLS, names=False)


_KEYS = {"#PF": ("errcode", "cr2"), "EPT_VIOLATION": ("exit_qualification", "gpa", "gla"),
         "EPT_MISCONFIG": ("gpa",), "#NPF": ("exitinfo1", "exitinfo2")}


def _same(obs: Outcome | None, want: Outcome | None) -> bool:
    """``obs`` is ``want``: same value (up to ``loose`` bits), errno, signal and the fault's detail fields."""
    if obs is None or want is None:
        return obs is want
    if (obs.errno, obs.signal) != (want.errno, want.signal):
        return False
    if want.signal:
        # a field the model leaves out of ``want`` may hold any value (see _harness_walk_exit)
        got, d = dict(obs.detail), dict(want.detail)
        keys = [k for k in _KEYS.get(want.signal, ()) if k in d]
        if "qual_any" in d:        # exit-qualification bits the SDM leaves either way (VirtModel._qual_any)
            keys.remove("exit_qualification")
            q = got.get("exit_qualification")
            if q is None or (q ^ d["exit_qualification"]) & ~d["qual_any"]:
                return False
        return all(got.get(k) == d[k] for k in keys)
    if want.value is None or obs.value is None:
        return want.value == obs.value
    return (obs.value ^ want.value) & ~dict(want.detail).get("loose", 0) == 0


def _sig(o: Outcome | None) -> tuple:
    if o is None:
        return ("?",)
    return (o.value, o.signal, tuple(sorted((k, v) for k, v in o.detail if k != "loose")))


def show(o: Outcome | None) -> str:
    if o is None:
        return "(any value)"
    if o.signal:
        d = dict(o.detail)
        loose = f" (qualification bits {d['qual_any']:#x} either way)" if d.get("qual_any") else ""
        return o.signal + " " + " ".join(f"{k}={d[k]:#x}" for k in _KEYS.get(o.signal, ()) if k in d) + loose
    loose = dict(o.detail).get("loose")
    return o.describe() + (f" (bits {loose:#x} either way)" if loose else "")


def new_model(facts: dict) -> VirtModel:
    return VirtModel(facts)