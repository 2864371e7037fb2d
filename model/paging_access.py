"""What an access may give (SDM Vol. 3A §4.5 the walk, §4.6 the access rights, §4.7 the #PF and its
error code, §4.10.2-3 the translations the TLB may still hold): ``_expect_access``.

``access`` allows the walk of the current tables plus every stale walk the SDM still permits
(§4.10), each one's outcome worked out by ``_outcome_of``; a mismatch is explained by every
level's entry (``explain``) and blamed on the clause it breaks (``model.blame``).  What the access
did -- its A/D bits, the TLB fill -- is ``paging_ad``'s.

Worked example: PML4E/PDPTE/PDE user, PTE ``P|US`` (read-only) and CR0.WP = 1:
``access(la, ACC_WRITE, 0)`` -> #PF errcode ``P|W`` (sdm.access.wp-supervisor-write).
"""

from __future__ import annotations

from memspec.calls_hw import HARNESS_SLOT
from memspec.records import OK, Outcome

from .blame import access_blame, matches
from .expect import Expect
from .hw_removed import removed_pass
from .paging_state import EINVAL, GP, U64, PagingState, exactly
from .pte import EXEC, READ, WRITE, ErrCode, addr_mask
from .tlb import NOTHING_REMOVED, PAGE_SIZES, flat_removed, stale_walks
from .walk import PageFault, Path, canonical, check_access


def _pf(f: PageFault) -> Outcome:
    return Outcome(signal="#PF", detail=(("cr2", f.cr2), ("errcode", f.errcode)))


def describe_pf(o: Outcome) -> str:
    d = dict(o.detail)
    code = d.get("errcode")
    names = "|".join(f.name for f in ErrCode if code is not None and code & f) or "0"
    return f"#PF errcode={code:#x} ({names}) cr2={d.get('cr2', 0):#x}" if code is not None else "#PF"


def show(o: Outcome) -> str:
    if o.signal == "#PF":
        return describe_pf(o)
    loose = dict(o.detail).get("loose")
    return o.describe() + (f" (bits {loose:#x} either way)" if loose else "")


class AccessRules(PagingState):
    """The access's expect and what it is made of (see the module docstring)."""

    # whether ``_expect_access`` may keep an access's outcome and Expect (``_access_memo``): set per
    # class by ``model.paging.Paging`` (True for its own parts, False for a test's broken subclass)
    _lean_access: bool

    def _outcome_of(self, res: Path | PageFault, la: int, acc: int, cpl: int, ac: int) -> tuple[Outcome | None, str, int | None]:
        """(outcome or None if the value cannot be predicted, clause, physical address)."""
        if isinstance(res, PageFault):
            return _pf(res), res.clause, None
        fault, clause = check_access(res, self.mode, la, acc, cpl, ac)
        if fault is not None:
            return _pf(fault), clause, None
        pa = res.pa(la)
        if not (self.low <= pa < self.ram) or self._is_harness_entry(pa):
            return None, "memspec.hw.pa-outside-pattern", pa
        if acc == EXEC:
            if pa in self.mem:
                return None, "memspec.hw.pa-outside-pattern", pa
            return OK, clause, pa
        v = self.read(pa)
        if acc == WRITE:
            v = (v & ~0xFF) | 0xCC
        elif pa in self.mem:
            # a paging entry read as data: this very walk (or an earlier cached one) may have set its A/D
            return Outcome(value=v, detail=(("loose", 0x60 | self.unsure.get(pa, 0)),)), clause, pa
        return Outcome(value=v), clause, pa

    def _is_harness_entry(self, pa: int) -> bool:
        return (pa >> 3) & 0x1FF == HARNESS_SLOT and pa in self.mem and self.mem[pa] in (
            self.facts["harness_entry4"], self.facts["harness_entry5"])

    def _candidates(self, la: int, acc: int, cpl: int, ac: int):
        mode = self.mode
        page1g = self._page1g       # bool(self.facts["page1g"])
        pcid = self.pcid
        read = self.read
        if self._lean_access:
            # (this class's ``read`` answers ``mem`` where it has the address: the memo reads mem first)
            cur = self.walks.walk(read, mode, self.cr3 & self._amask, la, acc, cpl, page1g, self.mem)
            if type(cur) is Path and cur.size == 4096:
                # the common shape (older values of this PTE only, all removed) without the walk over the tree
                removed = flat_removed(self.history, mode, la, acc, cpl, pcid, cur.uses)
                if removed is not None:
                    return cur, [], removed
        else:
            cur = self.walks.walk(read, mode, self.root, la, acc, cpl, page1g, None)
        stale, removed = stale_walks(self.history, mode, read, la, acc, cpl, pcid, page1g)
        return cur, stale, removed

    def _expect_access(self, la: int, acc: int, cpl: int, ac: int) -> Expect:
        if la % 8 or acc not in (READ, WRITE, EXEC) or cpl not in (0, 3) or ac not in (0, 1) or not 0 <= la <= U64:
            return exactly("memspec.hw.access-args", EINVAL)
        mode = self.mode
        seen = self._la_seen.get(la) if self._lean_access else None
        if seen is None or seen[0] is not mode:
            # (both answers read the address and the mode alone: kept per address for this mode object)
            seen = (mode, canonical(la, mode), self._harness_slot(la))
            if self._lean_access:
                if len(self._la_seen) >= 1024:
                    self._la_seen.clear()
                self._la_seen[la] = seen
        if not seen[1]:
            # §4.5.1 / SDM Vol. 1 §3.3.7.1: a non-canonical linear address raises #GP(0), not #PF
            return exactly("sdm.canonical.gp", GP)
        if seen[2]:
            return exactly("memspec.hw.harness-slot", EINVAL)
        cur, stale, removed = self._candidates(la, acc, cpl, ac)
        memo = None
        if self._lean_access:
            # the current walk's outcome (and, with no stale walk, the Expect per clause exercised) found
            # again for the same walk, address, access and mode while the data it read is the pattern
            key = (id(cur), la, acc, cpl, ac)
            memo = self._access_memo.get(key)
            if memo is not None and (memo[0] is not cur or memo[1] is not self._mode or memo[2] in self.mem):
                memo = None
            if memo is not None:
                o_cur, clause = memo[3], memo[4]
                if not stale and not removed.cands and clause in memo[5]:
                    self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed, "cur_ok": True}
                    return memo[5][clause]
                if not stale and removed.cands and o_cur.value is not None and not self.strict:
                    # removed walks only (the kvm step): the invalidation exercised names the kept Expect,
                    # as below (one walk explains the access)
                    exercised, giving = removed_pass(self, removed, o_cur, clause, la, acc, cpl, ac)
                    exp = memo[5].get(exercised)
                    if exp is not None:
                        self._giving_of = (removed, o_cur, giving)
                        self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed, "cur_ok": True}
                        return exp
            else:
                o_cur, clause, pa = self._outcome_of(cur, la, acc, cpl, ac)
                if o_cur is not None and o_cur.ok and pa not in self.mem and self._mode is self.mode:
                    memo = [cur, self._mode, pa, o_cur, clause, {}]
                    if len(self._access_memo) >= 1024:
                        self._access_memo.clear()
                    self._access_memo[key] = memo
        else:
            o_cur, clause, _ = self._outcome_of(cur, la, acc, cpl, ac)
        options: list[tuple[Outcome | None, str, Path | PageFault]] = [(o_cur, clause, cur)]
        for res, _t, _g in stale:
            o, c, _ = self._outcome_of(res, la, acc, cpl, ac)
            options.append((o, c, res))
        if stale or o_cur is not None and o_cur.signal == "#PF":
            # PK as well as a paging-rights violation: the SDM does not order them; allow PK either way
            extra = []
            for o, c, r in options:
                if o is not None and o.signal == "#PF" and isinstance(cur, Path) and self._pk_also(cur, acc, cpl):
                    d = dict(o.detail)
                    extra.append((Outcome(signal="#PF", detail=(("cr2", d["cr2"]), ("errcode", int(d["errcode"] | ErrCode.PK)))), c, r))
            options += extra
        self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed,
                      "cur_ok": isinstance(cur, Path) and not (o_cur is not None and o_cur.signal == "#PF")}
        if o_cur is None:
            return Expect(clause, Outcome(value=0), "a value from memory the pattern does not cover", unknown=True)
        if self.strict:
            default = self._tlb_default(o_cur, la, acc, cpl, ac)
            return exactly(clause if default == o_cur else "sdm.tlb.stale-before-invalidation", default)
        if len(options) == 1:
            distinct = options
        else:
            distinct = []
            for o, c, r in options:
                if o is None:
                    distinct.append((o, c, r))
                elif all(o != d for d, _, _ in distinct):
                    distinct.append((o, c, r))
        expect_clause = clause if len(distinct) == 1 else "sdm.tlb.stale-before-invalidation"
        if len(distinct) == 1 and removed.cands:
            # exercised: the invalidation that removed every stale walk, if there was one
            if memo is not None and o_cur.value is not None:
                # a load or store of pattern data: which removed walks give its data, found in the same
                # pass (for _note_stale_ad, if the outcome observed is this one)
                clause, giving = removed_pass(self, removed, o_cur, clause, la, acc, cpl, ac)
                self._giving_of = (removed, o_cur, giving)
            else:
                clause = self._exercised(removed, o_cur, clause, la, acc, cpl, ac)
            expect_clause = clause
        if memo is not None and not stale:
            # one walk explains the access: its Expect kept per clause (the walk's own or the invalidation
            # exercised), its blame working the removed walks out afresh when asked
            exp = memo[5].get(clause)
            if exp is None:
                exp = memo[5][clause] = self._explained(
                    clause, o_cur, la, self._fresh_blame(cur, distinct, la, acc, cpl, ac, clause))
            return exp
        killed: list[tuple[Outcome, str]] | None = None
        mode = self.mode

        def removed_outcomes() -> list[tuple[Outcome, str]]:
            # the translations invalidations removed, latest cached first, those a whole flush
            # removed included (worked out only for a refused observation)
            nonlocal killed
            if killed is None:
                killed = self._removed_outcomes(removed, la, acc, cpl, ac)
            return killed

        def blame(obs: Outcome) -> str:
            # the clause the observation breaks: model/blame.py's order for accesses
            return access_blame(obs, distinct, removed_outcomes, mode, acc, cpl, expect_clause, matches,
                                lambda: self._without_rights(distinct, la, acc, cpl, ac),
                                lambda o: self._entry_read(cur, la, acc, o))

        if len(distinct) == 1:
            return self._explained(clause, o_cur, la, blame)
        default = self._tlb_default(o_cur, la, acc, cpl, ac)
        explain = self.explain

        def allowed(obs: Outcome) -> str | None:
            for o, _, _ in distinct:
                if o is None:
                    # memory the pattern does not cover: any value, or the harness's own refusal;
                    # a fetch from there runs whatever bytes it finds
                    if obs.ok or obs.signal not in ("#PF", "#GP") or acc == EXEC:
                        return None
                    continue
                if matches(obs, o):
                    return None
            return "expected one of " + ", ".join(show(o) if o else "(any value)" for o, _, _ in distinct) + \
                f"; observed {show(obs)}\n" + explain(la)
        return Expect("sdm.tlb.stale-before-invalidation", default, blame_by=blame, describe=
                      " or ".join(show(o) if o else "(any value)" for o, _, _ in distinct), predicate=allowed,
                      impl_defined=True)

    def _fresh_blame(self, cur, distinct: list, la: int, acc: int, cpl: int, ac: int, clause: str):
        """``_expect_access``'s blame for an access with no stale or removed walk, every answer worked
        out when asked (an Expect kept in ``_access_memo`` is asked again at later calls)."""
        mode = self._mode
        removed = NOTHING_REMOVED

        def blame(obs: Outcome) -> str:
            return access_blame(obs, distinct, lambda: self._removed_outcomes(removed, la, acc, cpl, ac), mode, acc,
                                cpl, clause, matches, lambda: self._without_rights(distinct, la, acc, cpl, ac),
                                lambda o: self._entry_read(cur, la, acc, o))
        return blame

    def _tlb_default(self, o_cur: Outcome, la: int, acc: int, cpl: int, ac: int) -> Outcome:
        """The reference TLB's choice for an access whose current walk gives ``o_cur``: the outcome of
        the translation it holds, if that one succeeds, else ``o_cur`` (the default of a choice
        between walks, and the strict law)."""
        hit = self.tlb.lookup(la, self.pcid)
        if hit is not None:
            o_hit, _, _ = self._outcome_of(hit.path, la, acc, cpl, ac)
            if o_hit is not None and o_hit.ok:
                return o_hit
        return o_cur

    def _exercised(self, removed, o_cur: Outcome, clause: str, la: int, acc: int, cpl: int, ac: int) -> str:
        """The clause an access that only the current walk explains exercised: the invalidation
        (an ``sdm.`` clause) that removed the latest cached walk giving another outcome than
        ``o_cur``, or ``clause`` if none did.  A removed walk whose leaf gives other data than a
        load or store's ``o_cur`` (``_gives_other_data``) differs whatever its rights: found without
        building it, when ``_outcome_of`` is this class's."""
        lean = o_cur.value is not None and o_cur.ok and acc != EXEC and type(self)._outcome_of is AccessRules._outcome_of
        for cand, ev, _t in removed.latest_first_cands(paths_only=True):
            if not ev.clause.startswith("sdm."):
                continue
            if lean and self._gives_other_data(cand, la, acc, o_cur):
                return ev.clause
            o_old, _, _ = self._outcome_of(removed.result(cand), la, acc, cpl, ac)
            if o_old is None or not matches(o_old, o_cur):
                return ev.clause
        return clause

    def _gives_other_data(self, cand: tuple, la: int, acc: int, o_cur: Outcome) -> bool:
        """Whether the removed walk ``cand`` (as ``stale_walks`` enumerated it, not a fault), if its
        rights let the load or store through, gives an outcome ``matches`` tells from the successful
        ``o_cur``: memory the pattern does not cover (``_outcome_of`` gives None), or a value that
        differs beyond ``o_cur``'s loose bits.  Read off the leaf entry, as ``_may_give`` does; a
        walk whose rights fault gives a #PF, which differs from ``o_cur`` as well."""
        _t, level, entries, _fault, _rsvd = cand
        size = PAGE_SIZES[level]
        pa = (entries[-1][1] & addr_mask(self.maxphy) & ~(size - 1)) | (la & (size - 1))
        if not self.low <= pa < self.ram or self._is_harness_entry(pa):
            return True
        v = self.read(pa)
        if acc == WRITE:
            v = (v & ~0xFF) | 0xCC
        loose = dict(o_cur.detail).get("loose", 0) if o_cur.detail else 0
        return (v ^ o_cur.value) & ~loose != 0

    def _entry_read(self, cur, la: int, acc: int, obs: Outcome) -> str | None:
        """A load or store that reached a paging entry as data (its address maps the entry's own table):
        the entry's blame for the qword it gave back (``entry_blame``; a store's low byte is its own
        0xCC), else None."""
        if acc == EXEC or not isinstance(cur, Path) or obs.value is None:
            return None
        pa = cur.pa(la)
        if pa not in self.mem:
            return None
        have = obs.value if acc == READ else (obs.value & ~0xFF) | (self.read(pa) & 0xFF)
        return self.entry_blame(pa, have, self.unsure.get(pa, 0))

    def _without_rights(self, allowed, la: int, acc: int, cpl: int, ac: int) -> list[tuple[Outcome, str]]:
        """(outcome, rights clause) for each allowed walk whose access a rights rule (§4.6) faulted: the
        outcome it would have given without that rule (for blame: a target that skipped the rule)."""
        out = []
        for o, _c, res in allowed:
            if isinstance(res, Path) and o is not None and o.signal == "#PF":
                fault, clause = check_access(res, self.mode, la, acc, cpl, ac)
                pa = res.pa(la)
                if fault is None or not self.low <= pa < self.ram or self._is_harness_entry(pa) or pa in self.mem:
                    continue      # (a paging entry read as data: its A/D are the walk's business)
                v = self.read(pa)
                out.append((OK if acc == EXEC else Outcome(value=(v & ~0xFF) | 0xCC if acc == WRITE else v), clause))
        return out

    def _removed_outcomes(self, removed, la: int, acc: int, cpl: int, ac: int, walks: bool = False,
                          flushed: bool = True) -> list:
        """(outcome, invalidation clause[, walk]) of every translation an invalidation removed, the latest
        cached first: ``removed`` (this page's INVLPG/INVPCID, and #PF) and -- ``flushed`` -- those a flush
        of a PCID or of everything removed, which ``stale_walks`` sets aside before building them."""
        if not flushed:
            every = removed
        elif not removed.cands and self.history.last_change < 0:
            return []
        else:
            _, every = stale_walks(self.history, self.mode, self.read, la, acc, cpl, self.pcid,
                                   bool(self.facts["page1g"]), limit=256, flushed=True)
        out = []
        for res, ev, _t in every.latest_first():
            o, _, _ = self._outcome_of(res, la, acc, cpl, ac)
            if o is not None:
                out.append((o, ev.clause, res) if walks else (o, ev.clause))
        return out

    def _explained(self, clause: str, want: Outcome, la: int, blame=None) -> Expect:
        """Exactly ``want``; a mismatch explains every level's entry and the control registers."""

        value = want.value if want.errno is None and want.signal is None and not want.detail else None

        def allowed(obs: Outcome) -> str | None:
            if value is not None and obs.value == value and obs.errno is None and obs.signal is None:
                return None     # (matches: a plain value, the common answer, read field by field)
            if obs == want or matches(obs, want):      # (an equal outcome matches: the common answer first)
                return None
            return f"expected {show(want)}, observed {show(obs)}\n{self.explain(la)}"
        return Expect(clause, want, show(want), (want,), predicate=allowed, blame_by=blame)

    def _pk_also(self, path: Path, acc: int, cpl: int) -> bool:
        m = self.mode
        if not (m.pke and path.user and acc != EXEC):
            return False
        ad = (m.pkru >> (2 * path.pkey)) & 1
        wd = (m.pkru >> (2 * path.pkey + 1)) & 1
        return bool(ad or (acc == WRITE and wd and (cpl == 3 or m.wp)))
