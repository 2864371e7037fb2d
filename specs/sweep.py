"""The sweep's judge: a batch of observed accesses against the vectorised reference walk, and the
running summary (per clause, per differing outcome class) that a sweep checkpoints.

For every access the reference (``model.walkbatch.walk_paths``, or ``walk_paths_legacy`` for PAE
and 32-bit paging, each property-tested against its scalar walk) gives #GP(0) (a non-canonical
address, SDM Vol. 1 §3.3.7.1; a PAE PDPTE with a reserved bit, at MOV to CR3, §4.4.1), a #PF with
its error code (§4.7) and CR2, or the translation; and for an allowed access the A and D flags of
every entry it used (§4.8).  A target's answer must be the same outcome (for a #PF the same error
code and CR2 = the address), for an allowed load or store the qword of the page the reference
names, and the A/D flags: exact after an allowed access; after a #PF only A may have been set
(whether a faulting walk sets A is not specified, ``sdm.ad.fault-a-unspecified``); after #GP(0)
nothing.

Differences fall into classes: (what kind, the clause that decided it, expected, observed), e.g.
``allowed where #PF 0x1`` under ``sdm.access.smap-read``; a #PF with the right CR2 whose error code
differs is classed by the bits that differ, ``#PF error code without P`` under
``sdm.walk.pte.rsvd-maxphy`` (QEMU 7.2: ``#PF 0xc where #PF 0xd``, ``0x8 where 0x9``, ... are one
cause).  The clause of an outcome class is the reference's where the reference faults (a target
that allows is wrong under that rule); where the reference allows and the target faults (or the
target's #PF has PK the reference's lacks), the rights rule the target's fault contradicts, from
its error code, the entries' rights and the modes (``blame``: e.g. a CPL 0 fetch from a user page
with SMAP = 1 and SMEP = 0 that faults is ``sdm.access.smap-fetch-unaffected``); the leaf's clause
(``sdm.walk.pte.maps-4k``, ...) only where no rights rule is involved (a not-present or
reserved-bit claim, a CPL 0 read of a supervisor page, another vector).  A class keeps its count,
its first combination (the reproducer) with its own outcomes as the example and, per dimension, how
many members took each value: the dimensions whose members all share one value are the ones that
matter.  A cited difference (``specs/differences.toml``) for the target and the class's clause
explains the whole class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memspec.model.pte import CR0_WP, CR4_PKE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_NXE, PKEY_SHIFT
from memspec.model.walkbatch import CLAUSES, BatchResult, Modes, walk_paths, walk_paths_legacy
from memspec.sweepspace import ALLOWED, GP, PF, REFUSED, Items, Observed, Space, ad_of

LEAF_CLAUSE = {1: "sdm.walk.pte.maps-4k", 2: "sdm.walk.pde.ps-2m", 3: "sdm.walk.pdpte.ps-1g"}
KINDS = ("outcome", "translation", "a/d")


# the clause of the page an allowed access's walk ended at, per leaf level (1, 2, 3), per paging mode
LEAF_CLAUSES = {
    "4level": (LEAF_CLAUSE[1], LEAF_CLAUSE[2], LEAF_CLAUSE[3]),
    "5level": (LEAF_CLAUSE[1], LEAF_CLAUSE[2], LEAF_CLAUSE[3]),
    "pae": ("sdm.pae.pte.maps-4k", "sdm.pae.pde.ps-2m", "sdm.pae.pde.ps-2m"),
    "32bit": ("sdm.walk32.pte.maps-4k", "sdm.walk32.pde.ps-4m", "sdm.walk32.pde.ps-4m"),
}


def reference(items: Items, facts: dict[str, Any]) -> BatchResult:
    modes = Modes.from_regs(items.cr0, items.cr4, items.efer, items.pkru)
    if items.paging in ("pae", "32bit"):
        return walk_paths_legacy(items.entries, items.la, modes, items.acc, items.cpl, items.ac, paging=items.paging,
                                 maxphy=int(facts.get("maxphyaddr", 52)),
                                 pse=(items.cr4 & np.uint64(CR4_PSE)) != 0)
    return walk_paths(items.entries, items.la, modes, items.acc, items.cpl, items.ac, levels=items.levels,
                      maxphy=int(facts.get("maxphyaddr", 52)), page1g=bool(facts.get("page1g", True)),
                      canonical_check=True)


# the rights rules ``blame`` names for a fault the reference does not expect, each the clause of the
# rule that allowed the access (or left PK clear)
RIGHTS = (
    "sdm.pkeys.ignored-without-pke", "sdm.pkeys.fetch-unaffected", "sdm.pkeys.supervisor-page-unaffected",
    "sdm.pkeys.write-disable", "sdm.pkeys.access-disable",
    "sdm.access.smep-cpl3-unaffected", "sdm.access.user-fetch-user", "sdm.access.smap-fetch-unaffected",
    "sdm.access.supervisor-fetch",
    "sdm.access.wp0-supervisor-write", "sdm.access.smap-ac-override", "sdm.access.supervisor-data-user-no-smap",
    "sdm.access.smap-supervisor-page-unaffected", "sdm.access.xd-data-unaffected",
    "sdm.access.user-read-user", "sdm.access.user-write-writable", "sdm.access.supervisor-write-writable",
)
_R = {c: i for i, c in enumerate(RIGHTS)}


def blame(items: Items, ref: BatchResult, errcode: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The rights rule a target's #PF contradicts, for the accesses ``idx`` (index into ``RIGHTS``; -1
    where no rights rule is involved: the caller names the leaf's clause).  ``errcode`` is the
    observed one; the rights are those of the entries the reference's walk used (U/S and R/W at every
    level, XD at some, the leaf's key), as §4.6 combines them.  The first row that applies decides:

    * P = 0 or RSVD = 1: a claim about the structure, not the rights: -1;
    * PK = 1 (§4.6.2): CR4.PKE = 0 -> ``sdm.pkeys.ignored-without-pke``; a fetch ->
      ``sdm.pkeys.fetch-unaffected``; a supervisor-mode address -> ``sdm.pkeys.supervisor-page-unaffected``;
      the key's WD = 1 (a read, or a CPL 0 write with WP = 0) -> ``sdm.pkeys.write-disable``; else
      ``sdm.pkeys.access-disable``;
    * a fetch at CPL 3: SMEP = 1 -> ``sdm.access.smep-cpl3-unaffected``, else ``sdm.access.user-fetch-user``;
      at CPL 0: a user-mode address with SMAP = 1 (then SMEP = 0) -> ``sdm.access.smap-fetch-unaffected``
      (SMAP governs data accesses only), else ``sdm.access.supervisor-fetch``;
    * a CPL 0 write with R/W = 0 somewhere and WP = 0 -> ``sdm.access.wp0-supervisor-write``;
    * CPL 0 data to a user-mode address: SMAP = 1 (then AC = 1) -> ``sdm.access.smap-ac-override``, SMAP = 0
      -> ``sdm.access.supervisor-data-user-no-smap``; to a supervisor-mode address with SMAP = 1 ->
      ``sdm.access.smap-supervisor-page-unaffected``;
    * data with XD = 1 somewhere and NXE = 1 -> ``sdm.access.xd-data-unaffected`` (XD governs fetches only);
    * else the U/S and R/W rule of the access: ``sdm.access.user-read-user``, ``user-write-writable``,
      ``supervisor-write-writable``; a CPL 0 read of a supervisor-mode address obeys no rights rule: -1.

    Where two rules could each explain the fault (a CPL 0 write to a read-only user page with WP = 0 and
    SMAP = 1, AC = 1 breaks the WP rule or the AC rule), the earlier row is named.  Worked example:
    kvm-pvm's CPL 0 fetch from a user page with SMAP = 1, SMEP = 0, AC = 0 faults with P|I/D (0x11):
    ``sdm.access.smap-fetch-unaffected``."""
    u64 = np.uint64
    ent = items.entries[idx]
    used = ref.used[idx] if ref.used is not None else np.full(idx.shape[0], (1 << items.levels) - 1, np.uint16)
    user = np.ones(idx.shape[0], dtype=bool)
    writable = user.copy()
    xd = np.zeros(idx.shape[0], dtype=bool)
    leaf = np.zeros(idx.shape[0], dtype=np.uint64)
    for k in range(items.levels):
        if items.paging == "pae" and k == 0:
            continue            # a PAE PDPTE carries no rights (sdm.pae.pdpte.no-rights)
        on = ((used >> np.uint16(items.levels - k - 1)) & np.uint16(1)).astype(bool)
        e = ent[:, k]
        user &= ~on | ((e & u64(4)) != 0)
        writable &= ~on | ((e & u64(2)) != 0)
        xd |= on & ((e >> u64(63)) != 0)
        leaf = np.where(on, e, leaf)
    code = errcode[idx]
    acc, cpl = items.acc[idx], items.cpl[idx]
    cr0, cr4, efer = items.cr0[idx], items.cr4[idx], items.efer[idx]
    wp, nxe = (cr0 & u64(CR0_WP)) != 0, (efer & u64(EFER_NXE)) != 0
    smep, smap, pke = (cr4 & u64(CR4_SMEP)) != 0, (cr4 & u64(CR4_SMAP)) != 0, (cr4 & u64(CR4_PKE)) != 0
    key = ((leaf >> u64(PKEY_SHIFT)) & u64(0xF)).astype(np.uint64)
    wd = ((items.pkru[idx] >> (u64(2) * key + u64(1))) & u64(1)) != 0
    fetch, write, u3 = acc == 2, acc == 1, cpl == 3
    data = ~fetch
    pk = (code & 0x20) != 0
    rows: list[tuple[np.ndarray, str | None]] = [
        ((code & 1) == 0, None), ((code & 8) != 0, None),
        (pk & ~pke, "sdm.pkeys.ignored-without-pke"),
        (pk & fetch, "sdm.pkeys.fetch-unaffected"),
        (pk & ~user, "sdm.pkeys.supervisor-page-unaffected"),
        (pk & wd, "sdm.pkeys.write-disable"),
        (pk, "sdm.pkeys.access-disable"),
        (fetch & u3 & smep, "sdm.access.smep-cpl3-unaffected"),
        (fetch & u3, "sdm.access.user-fetch-user"),
        (fetch & user & smap, "sdm.access.smap-fetch-unaffected"),
        (fetch, "sdm.access.supervisor-fetch"),
        (~u3 & write & ~writable & ~wp, "sdm.access.wp0-supervisor-write"),
        (~u3 & data & user & smap, "sdm.access.smap-ac-override"),
        (~u3 & data & user, "sdm.access.supervisor-data-user-no-smap"),
        (~u3 & data & ~user & smap, "sdm.access.smap-supervisor-page-unaffected"),
        (data & xd & nxe, "sdm.access.xd-data-unaffected"),
        (u3 & ~write, "sdm.access.user-read-user"),
        (u3, "sdm.access.user-write-writable"),
        (write, "sdm.access.supervisor-write-writable"),
    ]
    out = np.full(idx.shape[0], -1, dtype=np.int64)
    left = np.ones(idx.shape[0], dtype=bool)
    for cond, rule in rows:
        hit = left & cond
        if rule is not None:
            out[hit] = _R[rule]
        left &= ~hit
    return out


_ERR_BITS = ((1, "P"), (2, "W"), (4, "U"), (8, "RSVD"), (16, "I/D"), (32, "PK"))


def _bits_str(missing: int, extra: int) -> str:
    """``without P`` / ``with PK`` / ``without P, with W``: how an error code differs (§4.7's names)."""
    parts = []
    if missing:
        parts.append("without " + "|".join(n for b, n in _ERR_BITS if missing & b))
    if extra:
        parts.append("with " + "|".join(n for b, n in _ERR_BITS if extra & b))
    return ", ".join(parts)


def _example(ek: int, ecode: int, ok_: int, ocode: int, vector: int) -> str:
    return f"{_outcome_str(ok_, ocode if ok_ == PF else vector)} where {_outcome_str(ek, ecode)}"


def _describe(kind: int, code: int, cr2: int, vector: int, value: int, acc: int) -> str:
    """An observed outcome in ``Outcome.describe``'s words (what a cited difference's ``match`` reads)."""
    if kind == PF:
        return f"#PF errcode={code:#x} cr2={cr2:#x}"
    if kind == GP:
        return "#GP"
    if kind == ALLOWED:
        return "ok" if acc == 2 else f"{value:#x}"
    return f"#V{vector}"


def _outcome_str(kind: int, code: int, cr2_ok: bool = True) -> str:
    if kind == ALLOWED:
        return "allowed"
    if kind == PF:
        return f"#PF {code:#x}" + ("" if cr2_ok else " (CR2 is not the address)")
    if kind == GP:
        return "#GP"
    if kind == REFUSED:
        return "refused"
    return f"vector {code}"


@dataclass
class Verdicts:
    """One batch judged: per access, 0 pass, 1 fail, 2 refused by the target (unsupported); and the
    failing accesses' class keys."""

    status: np.ndarray
    keys: list[tuple[str, str, str, str]]       # per failing access, in order
    failing: np.ndarray                         # indexes into the batch
    clause: np.ndarray                          # per access, index into CLAUSES (0: allowed)
    examples: dict = field(default_factory=dict)  # key -> (its first combination here, "observed where expected",
    #                                                the observed outcome as Outcome.describe says it)


def judge(items: Items, obs: Observed, facts: dict[str, Any]) -> Verdicts:
    ref = reference(items, facts)
    assert ref.gp is not None and ref.ad is not None and ref.used is not None and ref.pk_also is not None
    n = len(items)
    exp_kind = np.where(ref.gp, GP, np.where(ref.fault, PF, ALLOWED)).astype(np.uint8)
    refused = obs.kind == REFUSED
    same_kind = obs.kind == exp_kind
    pf = exp_kind == PF
    # a paging-rights #PF where protection keys deny as well may carry PK (the SDM orders neither)
    code_ok = (obs.errcode == ref.errcode) | (ref.pk_also & (obs.errcode == (ref.errcode | np.uint32(0x20))))
    bad_outcome = ~refused & (~same_kind | (pf & (~code_ok | (obs.cr2 != items.la))))
    allowed = ~refused & same_kind & (exp_kind == ALLOWED)
    data = allowed & (items.acc != 2)
    want_value = ((ref.pa & ~np.uint64(7)) << np.uint64(8)) | np.uint64(0xCC)
    bad_value = data & (obs.value != want_value)
    before = ad_of(items.entries, items.levels, items.written)
    used_mask = np.zeros(n, dtype=np.uint16)
    for lv in range(1, items.levels + 1):
        used_mask |= np.where((ref.used >> np.uint16(lv - 1)) & np.uint16(1), np.uint16(3 << (2 * (lv - 1))),
                              np.uint16(0)).astype(np.uint16)
    d_mask = np.uint16(sum(2 << (2 * (lv - 1)) for lv in range(1, items.levels + 1)))
    ok_outcome = ~refused & ~bad_outcome
    bad_ad = np.zeros(n, dtype=bool)
    # allowed: exactly the reference's flags in the entries used
    bad_ad |= allowed & ((obs.ad & used_mask) != (ref.ad & used_mask))
    # #PF: no D set by a faulting access (A may be)
    bad_ad |= ok_outcome & pf & ((obs.ad & d_mask) != (before & d_mask))
    # #GP: no walk, no flag
    bad_ad |= ok_outcome & (exp_kind == GP) & (obs.ad != before)
    bad_ad &= ~bad_value
    fail = bad_outcome | bad_value | bad_ad
    status = np.where(refused, 2, np.where(fail, 1, 0)).astype(np.uint8)
    failing = np.nonzero(fail)[0]
    keys: list[tuple[str, str, str, str]] = []
    examples: dict[tuple[str, str, str, str], tuple[int, str, str]] = {}
    if failing.size:
        f = failing
        # the level the reference's walk ended at (names the clause of an allowed access)
        leaf_level = np.zeros(n, dtype=np.int64)
        for lv in range(items.levels, 0, -1):
            leaf_level = np.where((ref.used >> np.uint16(lv - 1)) & np.uint16(1), lv, leaf_level)
        cat = np.where(bad_outcome[f], 0, np.where(bad_value[f], 1, 2))
        names = list(CLAUSES) + [*LEAF_CLAUSES[items.paging], "sdm.ad.dirty-on-write",
                                 "sdm.ad.accessed-on-use", "sdm.ad.fault-a-unspecified"]
        names_rights = names + list(RIGHTS)
        leaf_name = len(CLAUSES) - 1 + np.clip(leaf_level[f], 1, 3)
        ek, ok_ = exp_kind[f].astype(np.int64), obs.kind[f].astype(np.int64)
        clause_out = np.where(ref.clause[f] > 0, ref.clause[f].astype(np.int64), leaf_name)
        # an access the reference allows and the target faults (or a #PF the target gives PK the
        # reference's lacks): the rights rule the target's fault contradicts (``blame``)
        contra = (ek == ALLOWED) & (ok_ == PF) | (ek == PF) & (ok_ == PF) & ((obs.errcode[f] & ~ref.errcode[f]
                                                                               & np.uint32(0x20)) != 0)
        if contra.any():
            fc = f[contra]
            rule = blame(items, ref, obs.errcode, fc)
            clause_out[contra] = np.where(rule >= 0, len(names) + rule, clause_out[contra])
        got_out = np.where(ok_ == PF, obs.errcode[f].astype(np.int64), obs.vector[f].astype(np.int64))
        cr2_ok = (ok_ != PF) | (obs.cr2[f] == items.la[f])
        delta = (obs.value[f] >> np.uint64(8)).astype(np.int64) - (ref.pa[f] & ~np.uint64(7)).astype(np.int64)
        um = used_mask[f].astype(np.int64)
        dm = int(d_mask)
        ad_exp = np.where(ek == ALLOWED, ref.ad[f].astype(np.int64) & um,
                          np.where(ek == PF, before[f].astype(np.int64) & dm, before[f].astype(np.int64)))
        ad_got = np.where(ek == ALLOWED, obs.ad[f].astype(np.int64) & um,
                          np.where(ek == PF, obs.ad[f].astype(np.int64) & dm, obs.ad[f].astype(np.int64)))
        base = len(CLAUSES) + 2
        ad_clause = np.where(ek == ALLOWED, np.where((ad_exp ^ ad_got) & dm, base + 1, base + 2),
                             np.where(ek == PF, base + 3, CLAUSES.index("sdm.canonical.gp")))
        # a #PF with the right CR2 and another error code is classed by the bits that differ (so one
        # cause is one class whatever the access's W/U/I bits); its first member gives the example
        code_only = (cat == 0) & (ek == PF) & (ok_ == PF) & cr2_ok
        exp_code = ref.errcode[f].astype(np.int64)
        got_code = obs.errcode[f].astype(np.int64)
        rows = np.column_stack([
            np.where(code_only, 3, cat),
            np.where(cat == 0, clause_out, np.where(cat == 1, leaf_name, ad_clause)),
            np.where(cat == 0, ek, 0),
            np.where(code_only, exp_code & ~got_code, np.where(cat == 0, exp_code, np.where(cat == 2, ad_exp, 0))),
            np.where(cat == 0, ok_, 0),
            np.where(code_only, got_code & ~exp_code, np.where(cat == 0, got_out, np.where(cat == 1, delta, ad_got))),
            np.where(cat == 0, cr2_ok, 1).astype(np.int64)])
        uniq, first, inv = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        text = []
        for (c, cl, a1, a2, b1, b2, b3), j in zip(uniq.tolist(), first.tolist()):
            if c == 0:
                text.append(("outcome", names_rights[cl], _outcome_str(a1, a2), _outcome_str(b1, b2, bool(b3))))
            elif c == 3:
                text.append(("outcome", names_rights[cl], "#PF", "#PF error code " + _bits_str(a2, b2)))
            elif c == 1:
                text.append(("translation", names[cl], "the reference's page", f"physical address {b2:+#x} from it"))
            else:
                text.append(("a/d", names[cl], f"A/D {a2:#x}", f"A/D {b2:#x}"))
            i = int(f[j])
            examples[text[-1]] = (int(items.index[i]),
                                  _example(int(exp_kind[i]), int(ref.errcode[i]), int(obs.kind[i]), int(obs.errcode[i]),
                                           int(obs.vector[i])),
                                  _describe(int(obs.kind[i]), int(obs.errcode[i]), int(obs.cr2[i]), int(obs.vector[i]),
                                            int(obs.value[i]), int(items.acc[i])))
        keys = [text[j] for j in np.asarray(inv).reshape(-1).tolist()]
    return Verdicts(status, keys, failing, ref.clause, examples)


# ---------------------------------------------------------------------------------------------
# the running summary

@dataclass
class ClassRecord:
    count: int = 0
    first: int = -1                                 # the lowest combination index (the reproducer)
    hist: list[list[int]] = field(default_factory=list)     # per dimension, members per value
    why: str = ""                                   # the cited difference that explains it, if any
    example: str = ""                               # the first member's outcomes: "#PF 0x8 where #PF 0x9"

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "first": self.first, "hist": self.hist, "why": self.why, "example": self.example}


@dataclass
class Summary:
    """Everything a sweep has judged so far: resumable from ``next_index``."""

    target: str
    mode: str
    filter: str
    next_index: int = 0
    judged: int = 0                 # combinations run and judged
    passed: int = 0
    failed: int = 0
    refused: int = 0                # the target's harness could not stage them
    unsupported: dict[str, int] = field(default_factory=dict)      # reason -> combinations
    per_clause: dict[str, list[int]] = field(default_factory=dict)  # clause -> [judged, failed]
    classes: dict[str, ClassRecord] = field(default_factory=dict)
    hist_all: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0

    @staticmethod
    def key(k: tuple[str, str, str, str]) -> str:
        return " | ".join(k)

    def add(self, space: Space, items: Items, v: Verdicts, diffs_why) -> None:
        """Fold a judged batch in (``diffs_why(clause, observed)``: the reason of the cited difference
        that excuses the class's first member, or "")."""
        digits = space.decode(items.index)
        if not self.hist_all:
            self.hist_all = [[0] * len(d.values) for d in space.dims]
        for k, d in enumerate(space.dims):
            for val, c in enumerate(np.bincount(digits[d.name], minlength=len(d.values)).tolist()):
                self.hist_all[k][val] += c
        self.judged += int((v.status != 2).sum())
        self.failed += int((v.status == 1).sum())
        self.passed += int((v.status == 0).sum())
        self.refused += int((v.status == 2).sum())
        names = np.array([c or "(allowed)" for c in CLAUSES], dtype=object)
        for ci in np.unique(v.clause).tolist():
            sel = v.clause == ci
            rec = self.per_clause.setdefault(str(names[ci]), [0, 0])
            rec[0] += int((sel & (v.status != 2)).sum())
            rec[1] += int((sel & (v.status == 1)).sum())
        if v.failing.size:
            order: dict[tuple[str, str, str, str], list[int]] = {}
            for j, key in zip(v.failing.tolist(), v.keys):
                order.setdefault(key, []).append(j)
            for key, members in order.items():
                rec = self.classes.get(self.key(key))
                first, example, observed = v.examples.get(key, (int(items.index[min(members)]), "", ""))
                if rec is None:
                    rec = self.classes[self.key(key)] = ClassRecord(
                        hist=[[0] * len(d.values) for d in space.dims], why=diffs_why(key[1], observed))
                sel = np.array(members)
                rec.count += sel.size
                if rec.first < 0 or first < rec.first:
                    rec.first, rec.example = first, example
                for k, d in enumerate(space.dims):
                    for val, c in enumerate(np.bincount(digits[d.name][sel], minlength=len(d.values)).tolist()):
                        rec.hist[k][val] += c

    def explained(self) -> int:
        return sum(r.count for r in self.classes.values() if r.why)

    def where(self, space: Space, rec: ClassRecord) -> list[str]:
        """The dimensions that matter to a class: those whose members all share one value while the
        sweep ran more than one."""
        out = []
        for k, d in enumerate(space.dims):
            seen = [i for i, c in enumerate(rec.hist[k]) if c]
            swept = [i for i, c in enumerate(self.hist_all[k]) if c] if self.hist_all else []
            if len(seen) == 1 and len(swept) > 1:
                out.append(f"{d.name}={d.values[seen[0]]}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "mode": self.mode, "filter": self.filter, "next_index": self.next_index,
                "judged": self.judged, "passed": self.passed, "failed": self.failed, "refused": self.refused,
                "explained": self.explained(), "unsupported": self.unsupported, "per_clause": self.per_clause,
                "classes": {k: r.to_json() for k, r in self.classes.items()}, "hist_all": self.hist_all,
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Summary":
        s = cls(d["target"], d["mode"], d["filter"], d["next_index"], d["judged"], d["passed"], d["failed"],
                d["refused"], dict(d["unsupported"]), {k: list(v) for k, v in d["per_clause"].items()},
                {k: ClassRecord(r["count"], r["first"], r["hist"], r.get("why", ""), r.get("example", ""))
                 for k, r in d["classes"].items()},
                d.get("hist_all", []), float(d.get("seconds", 0.0)))
        return s


__all__ = ["judge", "reference", "Verdicts", "Summary", "ClassRecord", "KINDS"]
