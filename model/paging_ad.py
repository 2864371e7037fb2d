"""The paging entries: the program's writes and reads of them (``set_pte``, ``read_pte``) and the
accessed and dirty flags the CPU sets in them (SDM Vol. 3A §4.8), with what an access did
(``_apply_access``): the A/D bits it set, the TLB fill, the #PF's invalidation (§4.10.4.1).

A/D bits the model cannot pin down (set on a walk that faulted, or when a cached translation may
have been used) are tracked as *unsure* bits and judged loosely when read back; when an access sets
A/D that a translation an invalidation removed would not have set, reading them back clear is that
invalidation's failure (``ad_stale``, ``model.blame.entry_blame``).

Worked example: PTE ``P|RW|US`` written with ``set_pte``, a user write through it: ``read_pte`` gives
the entry with A and D set (sdm.ad.dirty-on-write); a load instead gives it with A set and D clear
(sdm.ad.no-dirty-on-read).
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import HARNESS_SLOT
from memspec.records import OK, Outcome

from .blame import matches
from .expect import Expect
from .paging_access import AccessRules
from .paging_state import EINVAL, U64, exactly
from .pte import CR4_PGE, EXEC, READ, WRITE, addr_mask, decode
from .tlb import PAGE, PAGE_SIZES
from .walk import Path, check_access

_LEAF_AD = frozenset({"sdm.ad.dirty-on-write", "sdm.ad.no-dirty-on-read"})


class AccessedDirty(AccessRules):
    """The paging entries' rules and the access's apply (see the module docstring)."""

    def _expect_set_pte(self, table: int, idx: int, frame: int, flags: int) -> Expect:
        if not self._table_ok(table, idx) or not 0 <= frame | flags <= U64:
            return exactly("memspec.hw.table-args", EINVAL)
        return exactly("memspec.hw.set-pte", OK)

    def _apply_set_pte(self, o: Outcome, table: int, idx: int, frame: int, flags: int) -> None:
        if o.ok:
            self._store(table + 8 * idx, (frame | flags) & U64)

    def _expect_read_pte(self, table: int, idx: int) -> Expect:
        if not self._table_ok(table, idx):
            return exactly("memspec.hw.table-args", EINVAL)
        addr = table + 8 * idx
        want = self.read(addr)
        loose = self.unsure.get(addr, 0)
        clause = self.ad_clause.get(addr, "memspec.hw.entry-readback")

        def blame(o: Outcome) -> str:
            return self.entry_blame(addr, o.value, loose) if o.ok and o.value is not None else clause
        if not loose:
            return Expect(clause, Outcome(value=want), f"{want:#x} ({decode(want, 1)})", (Outcome(value=want),),
                          blame_by=blame)

        def allowed(o: Outcome) -> str | None:
            if o.value is None or not o.ok:
                return f"expected the entry, observed {o.describe()}"
            if (o.value ^ want) & ~loose:
                return f"expected {want:#x} (bits {loose:#x} either way), observed {o.value:#x}"
            return None
        return Expect(clause, Outcome(value=want), f"{want:#x} with bits {loose:#x} either way", predicate=allowed,
                      impl_defined=True, blame_by=blame)

    def _apply_read_pte(self, o: Outcome, table: int, idx: int) -> None:
        addr = table + 8 * idx
        if o.value is not None and addr in self.unsure:
            self.unsure.pop(addr)
            if o.value != self.read(addr):
                self.mem[addr] = o.value
                self.history.adopt(addr, o.value)

    def _apply_access(self, o: Outcome, la: int, acc: int, cpl: int, ac: int) -> None:
        if o.errno or o.signal == "#GP":
            return
        last = self._last if self._last.get("la") == la else None
        if last is None:
            cur, stale, removed = self._candidates(la, acc, cpl, ac)
            cur_ok = isinstance(cur, Path) and check_access(cur, self.mode, la, acc, cpl, ac)[0] is None
        else:
            cur, stale, cur_ok, removed = last["cur"], last["stale"], last["cur_ok"], last["removed"]
        self._last = {}
        exact = not stale
        if o.signal == "#PF":
            # §4.10.4.1: a #PF invalidates the TLB entries (non-global) for the faulting page, current PCID
            self._invalidate(PAGE, self.pcid, la, "sdm.tlb.pf-invalidates")
            # §4.8: whether A is set in entries used by a faulting walk is not specified
            for res in [cur] + [r for r, _, _ in stale]:
                for u in res.uses:
                    if u.addr in self.mem and self.mem[u.addr] & 0x21 == 0x01:     # present, A clear
                        self.unsure[u.addr] = self.unsure.get(u.addr, 0) | 0x20
                        self.ad_clause[u.addr] = "sdm.ad.fault-a-unspecified"
            return
        if o.signal:
            # the walk succeeded but the physical access hit harness memory: the CPU may have set
            # A/D already (they are set by the walk), so those become unsure
            exact = False
        used = cur if cur_ok else None
        if used is not None and exact and removed.cands:      # (_note_stale_ad looks at removed walks only)
            self._note_stale_ad(used, o, la, acc, cpl, ac, removed)
        if used is not None:
            mem, ad_clause, uses, values = self.mem, self.ad_clause, used.uses, self.history.values
            for u in uses:
                v = mem.get(u.addr)
                if v is None:
                    continue
                leaf = u is uses[-1]
                want = v | 0x20 | (0x40 if leaf and acc == WRITE else 0)
                if exact:
                    if want != v:
                        mem[u.addr] = want
                        vs = values.get(u.addr)       # self.history.adopt(u.addr, want)
                        if vs:
                            vs[-1][2] = want
                    if leaf:
                        ad_clause[u.addr] = "sdm.ad.dirty-on-write" if acc == WRITE else "sdm.ad.no-dirty-on-read"
                    elif ad_clause.get(u.addr) not in _LEAF_AD:
                        # an entry a self-referencing walk used as a leaf keeps the leaf's clause: its D is one
                        ad_clause[u.addr] = "sdm.ad.accessed-on-use"
                else:
                    self.unsure[u.addr] = self.unsure.get(u.addr, 0) | (want & ~v)
                    self.ad_clause[u.addr] = "sdm.tlb.ad-with-cached-translation"
            self.tlb.fill(used, la, self.pcid, used.glob and bool(self.cr4 & CR4_PGE), self.history.now)
        for res, _, _ in stale:
            for u in res.uses:
                v = self.read(u.addr)
                if u.addr in self.mem and v & 1:
                    self.unsure[u.addr] = self.unsure.get(u.addr, 0) | ((0x20 | (0x40 if acc == WRITE else 0)) & ~v)
                    self.ad_clause[u.addr] = "sdm.tlb.ad-with-cached-translation"
        # a store lands the byte 0xCC at the physical address: a paging entry there changes
        if acc == WRITE and o.value is not None:
            for res in [cur] + [r for r, _, _ in stale]:
                if isinstance(res, Path):
                    pa = res.pa(la)
                    if pa in self.mem and (self.mem[pa] & ~0xFF) | 0xCC == o.value:
                        self._store(pa, o.value)
                        break
        if self.unsure:
            for k in [k for k, m in self.unsure.items() if not m]:
                del self.unsure[k]

    def _note_stale_ad(self, used: Path, o: Outcome, la: int, acc: int, cpl: int, ac: int, removed) -> None:
        """Before an exact access sets A/D bits: if a translation an invalidation removed would have
        served it with the same outcome, those bits reading back clear later are that invalidation's
        failure (``entry_blame``, row 2) -- for an entry that translation did not use, or used with an
        older value (a translation cached from the entry's current value set A, and D on a write,
        when it was made or first written through: §4.8).  Only the translations this page's
        invalidations removed (INVLPG, INVPCID by address, a #PF) are looked at: those a whole flush
        removed would cost the judge an enumeration on every access (they are found for the blame of
        a refused access, which is worked out only then)."""
        if not removed.cands:
            return
        pre = self._giving_of
        if type(self)._may_give is AccessedDirty._may_give and type(self)._giving is AccessedDirty._giving and pre is not None \
                and pre[0] is removed and (o is pre[1] or o.errno is None and o.signal is None and o.value == pre[1].value):
            giving = pre[2]     # worked out with the exercised invalidation (``removed_pass``)
            if not giving:
                return          # no removed walk gives o's data: nothing to note
        else:
            giving = None
        new: list[tuple[int, int, int]] = []
        for u in used.uses:
            if u.addr in self.mem:
                v = self.read(u.addr)
                bits = (0x20 | (0x40 if u is used.uses[-1] and acc == WRITE else 0)) & ~v
                if bits:
                    new.append((u.addr, v & ~0x60, bits))
        if not new:
            return
        done: set[int] = set()
        # the same walks, outcomes and order as _removed_outcomes(removed, ..., flushed=False), less
        # those whose leaf cannot give o's data (_may_give): most removed walks map another frame
        if giving is not None:
            pass
        elif type(self)._may_give is not AccessedDirty._may_give:
            # a subclass's own filter (a test's broken shortcut), asked walk by walk
            giving = removed.latest_first_cands(keep=self._may_give, keep_args=(la, acc, o))
        else:
            giving = self._giving(removed, la, acc, o)
        for cand, ev, _t in giving:
            cid = ev.clause
            if not cid.startswith("sdm."):
                continue
            res = removed.result(cand)
            o_old, _, _ = self._outcome_of(res, la, acc, cpl, ac)
            if o_old is None or not matches(o, o_old):
                continue
            held = {(u.addr, u.value & ~0x60) for u in res.uses}
            for addr, v, bits in new:
                if (addr, v) not in held and addr not in done:
                    self.ad_stale[addr] = (bits, cid)
                    done.add(addr)

    def _giving(self, removed, la: int, acc: int, o: Outcome) -> list[tuple[tuple, Any, int]]:
        """``removed.latest_first_cands(keep=self._may_give, keep_args=(la, acc, o))`` as a list, the
        filter laid flat (one pass over the removed walks, the memory's bounds read once): the
        walks whose leaf gives ``o``'s data, latest first, each with its invalidation."""
        if acc == EXEC:
            return list(removed.latest_first_cands(keep=self._may_give, keep_args=(la, acc, o)))
        if o.errno is not None or o.signal is not None or o.value is None:
            return []           # _may_give: a load or store gives only a successful value
        amask, low, ram, mem, value = addr_mask(self.maxphy), self.low, self.ram, self.mem, o.value
        out = []
        for cand, glob, ev in removed.order():
            t, level, entries, fault, _rsvd = cand
            if fault is not None:
                continue
            size = PAGE_SIZES[level]
            pa = (entries[-1][1] & amask & ~(size - 1)) | (la & (size - 1))
            if not low <= pa < ram or (pa >> 3) & 0x1FF == HARNESS_SLOT and self._is_harness_entry(pa):
                continue
            v = mem.get(pa)
            loose = 0
            if v is None:
                v = ((pa << 8) | 0xCC) & U64        # pattern(pa)
            elif acc == READ:
                loose = 0x60 | self.unsure.get(pa, 0)
            if acc == WRITE:
                v = (v & ~0xFF) | 0xCC
            if (value ^ v) & ~loose == 0:
                out.append((cand, ev if ev is not None else removed.event_of(cand, glob), t))
        return out

    def _may_give(self, cand: tuple, la: int, acc: int, o: Outcome) -> bool:
        """Whether the removed walk ``cand`` (as ``stale_walks`` enumerated it: time, level, entries,
        fault, rsvd) can give the successful outcome ``o``: the data half of ``_outcome_of`` and
        ``matches``, read off the leaf entry without building the walk.  A necessary condition only
        (the rights are the walk's: a walk it keeps is still judged by ``_outcome_of``); a faulting
        walk gives a #PF, never ``o``.

        Example: after ``set_pte(PT, 5, 0x301000, P|RW)``, INVLPG and a load of 0x405008 that gave
        the pattern of 0x301008, the removed walk through the older PTE value 0x300003 would have
        read 0x300008: another value, so it is set aside."""
        _t, level, entries, fault, _rsvd = cand
        if fault is not None or o.errno is not None or o.signal is not None:
            return False
        size = PAGE_SIZES[level]
        pa = (entries[-1][1] & addr_mask(self.maxphy) & ~(size - 1)) | (la & (size - 1))
        if not self.low <= pa < self.ram or self._is_harness_entry(pa):
            return False                      # an unknown value: _outcome_of gives None
        if acc == EXEC:
            return pa not in self.mem and o.value is None
        v = self.read(pa)
        loose = 0
        if acc == WRITE:
            v = (v & ~0xFF) | 0xCC
        elif pa in self.mem:
            loose = 0x60 | self.unsure.get(pa, 0)
        return o.value is not None and (o.value ^ v) & ~loose == 0
