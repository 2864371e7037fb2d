"""The hw judge's TLB law as it was before the lean hot path, kept as the reference the fast one is
compared with (tests/hw/test_tlb_lean.py).

``stale_walks_reference`` enumerates every stale walk as a ``Path`` or ``PageFault`` and only then
sorts out the ones an invalidation removed; ``expect_access_reference`` works out, for every
access, the outcome of each of them, the exercised invalidation and the blame.  The model's
``stale_walks`` and ``Paging._expect_access`` must give the same clause, default, description and
judgement of every observation.
"""

from __future__ import annotations

from dataclasses import replace

from memspec.model.expect import Expect, exactly
from memspec.model.blame import access_blame
from memspec.model.paging import Paging, matches, show
from memspec.model.paging_state import EINVAL, GP, U64
from memspec.model.pte import EXEC, READ, WRITE, ErrCode, Mode, addr_mask
from memspec.model.tlb import Event, History
from memspec.model.walk import (PageFault, Path, Use, _path, canonical, errcode, index, pde, pdpte, pml4e, pml5e,
                                pte, walk)
from memspec.records import Outcome

LEVEL_STEP = {5: pml5e, 4: pml4e, 2: pde, 1: pte}


def stale_walks_reference(h: History, mode: Mode, read, la: int, acc: int, cpl: int, pcid: int, page1g: bool,
                limit: int = 64) -> tuple[list[tuple[Path | PageFault, int, bool]], list[tuple[Path | PageFault, Event, int]]]:
    """Walks over older values of the entries (see module doc) not yet invalidated.

    Returns ([(result, latest time, global?)], the first invalidation that removed some older walk).
    Every older value a walk uses must have been present and free of reserved bits (only such
    entries are cached, §4.10.2.1 and §4.10.3.1)."""
    out: list[tuple[Path | PageFault, int, bool]] = []
    removed: list[tuple[Path | PageFault, Event, int]] = []
    floor_g = h.last_all
    floor_ng = max(floor_g, h.last_nonglobal_all, h.last_nonglobal.get(pcid, -1))
    if max(h.last_change, h.nxe_cleared) < (floor_g if mode.pge else floor_ng):
        return out, removed           # everything since the last flush is current: nothing stale
    amask = addr_mask(mode.maxphy)
    mode_then = replace(mode, efer=mode.efer | (1 << 11))
    floor_g = h.last_all
    floor_ng = max(floor_g, h.last_nonglobal_all, h.last_nonglobal.get(pcid, -1))

    latest: dict[tuple[int, int], int] = {}
    first: dict[tuple[int, int], int] = {}
    for start, end, root, p in h.roots[-8:]:
        latest[(root, p)] = h.now if end < 0 else end - 1
        first.setdefault((root, p), start)
    roots = [(root, p, until) for (root, p), until in latest.items() if until >= floor_g]
    made_under: list[tuple[int, int]] = []       # per stale walk in ``out``: its root's (PCID, first load)
    under = (0, 0)

    # values that ended before the last flush of every non-global translation can only
    # survive in a global translation; before the last flush of everything, not at all
    def go(level: int, table: int, uses: list[Use], t: int, stale: bool, then: bool = False) -> None:
        if len(out) >= limit or t < floor_g:
            return
        if t < floor_ng and not mode.pge:
            return
        addr = table | (index(la, level) << 3)
        for value, since, until in h.alternatives(addr, read(addr)):
            if then and since > t:
                continue              # written after NXE was cleared: never cached with NXE = 1
            old = until < h.now
            # an older value was checked when it was cached, under the EFER.NXE of that time:
            # its XD bit is not reserved then (the looser reading)
            m = mode_then if old or then else mode
            if level == 3:
                fault, rsvd = pdpte(value, m, page1g)
            else:
                fault, rsvd = LEVEL_STEP[level](value, m)
            tt = min(t, until)
            if tt < floor_g or (tt < floor_ng and not mode.pge):
                continue                  # flushed since: cannot be in any TLB or paging-structure cache
            u = uses + [Use(addr, value, level)]
            if fault is not None:
                if old:
                    continue          # a not-present or reserved entry is never cached
                if stale and tt >= floor_ng:
                    out.append((PageFault(errcode(mode, acc, cpl, present=rsvd, rsvd=rsvd), la, fault, tuple(u)),
                                tt, False))
                    made_under.append(under)
                continue
            if level == 1 or (level in (2, 3) and value & 0x80):
                if (stale or old) and (tt >= floor_ng or value & 0x100):
                    out.append((_path(tuple(u), mode, level), tt, False))
                    made_under.append(under)
                continue
            go(level - 1, value & amask, u, tt, stale or old, then)

    for root, rpcid, until in roots:
        under = (rpcid, first[(root, rpcid)])
        go(mode.levels, root & amask, [], until, until < h.now or False)
    if not mode.nxe and h.nxe_cleared >= 0:
        # translations cached while NXE was 1 (XD not reserved then) may outlive the WRMSR
        for root, rpcid, until in roots:
            under = (rpcid, first[(root, rpcid)])
            go(mode.levels, root & amask, [], min(until, h.nxe_cleared - 1), True, True)
    kept: list[tuple[Path | PageFault, int, bool]] = []
    seen = set()
    for (res, t, _), (root_pcid, since) in zip(out, made_under):
        glob = isinstance(res, Path) and res.glob and mode.pge
        size = res.size if isinstance(res, Path) else 1 << 12
        if not glob:
            # made under the root's PCID, at the latest time that PCID was current (SDM 4.10.1)
            if root_pcid != pcid:
                continue
            t = max((min(t, h.now if end < 0 else end - 1) for start, end, _r, p in h.roots
                     if p == pcid and start <= t), default=-1)
            if t < since:
                continue
        ev = h.killed(t, pcid if not glob else -1, la, size, glob)
        if ev is not None:
            removed.append((res, ev, t))
            continue
        key = (res.base, res.size, res.user, res.writable, res.xd, res.pkey) if isinstance(res, Path) else (res.errcode,)
        if key in seen:
            continue
        seen.add(key)
        kept.append((res, t, glob))
    return kept, removed



def expect_access_reference(self: Paging, la: int, acc: int, cpl: int, ac: int) -> Expect:
    """``Paging._expect_access`` as it was (``self`` is the model, in the state to judge)."""
    if la % 8 or acc not in (READ, WRITE, EXEC) or cpl not in (0, 3) or ac not in (0, 1) or not 0 <= la <= U64:
        return exactly("memspec.hw.access-args", EINVAL)
    if not canonical(la, self.mode):
        # §4.5.1 / SDM Vol. 1 §3.3.7.1: a non-canonical linear address raises #GP(0), not #PF
        return exactly("sdm.canonical.gp", GP)
    if self._harness_slot(la):
        return exactly("memspec.hw.harness-slot", EINVAL)
    mode = self.mode
    cur = walk(self.read, mode, self.root, la, acc, cpl, bool(self.facts["page1g"]))
    stale, removed = stale_walks_reference(self.history, mode, self.read, la, acc, cpl, self.pcid,
                                           bool(self.facts["page1g"]))
    self._ref = (stale, removed, [o for o, _ in options_of(self, cur, stale, removed, la, acc, cpl, ac)])
    removed_all = self._candidates(la, acc, cpl, ac)[2]
    o_cur, clause, _ = self._outcome_of(cur, la, acc, cpl, ac)
    options: list[tuple[Outcome | None, str]] = [(o_cur, clause)]
    walks = [cur]
    for res, _t, _g in stale:
        o, c, _ = self._outcome_of(res, la, acc, cpl, ac)
        options.append((o, c))
        walks.append(res)
    # PK as well as a paging-rights violation: the SDM does not order them; allow PK either way
    extra = []
    for (o, c), r in zip(options, list(walks)):
        if o is not None and o.signal == "#PF" and isinstance(cur, Path) and self._pk_also(cur, acc, cpl):
            d = dict(o.detail)
            extra.append((Outcome(signal="#PF", detail=(("cr2", d["cr2"]), ("errcode", int(d["errcode"] | ErrCode.PK)))), c))
            walks.append(r)
    options += extra
    # the reference TLB's choice (the default, and the strict law)
    default = o_cur
    hit = self.tlb.lookup(la, self.pcid)
    if hit is not None and o_cur is not None:
        o_hit, _, _ = self._outcome_of(hit.path, la, acc, cpl, ac)
        if o_hit is not None and o_hit.ok:
            default = o_hit
    if default is None:
        default = Outcome(value=0)
    self._last = {"la": la, "cur": cur, "stale": stale, "removed": removed_all,
                  "cur_ok": isinstance(cur, Path) and not (o_cur is not None and o_cur.signal == "#PF")}
    if any(o is None for o, _ in options if o is o_cur) and o_cur is None:
        return Expect(clause, default, "a value from memory the pattern does not cover", unknown=True)
    if self.strict:
        return exactly(clause if default == o_cur else "sdm.tlb.stale-before-invalidation", default)
    distinct = []
    distinct_walks = []
    for (o, c), r in zip(options, walks):
        if o is None or all(o != d for d, _ in distinct):
            distinct.append((o, c))
            distinct_walks.append(r)
    options3 = [(o, c, r) for (o, c), r in zip(distinct, distinct_walks)]

    def blame(obs: Outcome) -> str:
        # the ranking is model/blame.py's; its inputs (the allowed outcomes with their walks, the
        # removed translations -- those whole flushes removed included) worked out here
        return access_blame(obs, options3, lambda: self._removed_outcomes(removed_all, la, acc, cpl, ac), mode, acc,
                            cpl, expect_clause, matches, lambda: self._without_rights(options3, la, acc, cpl, ac),
                            lambda o: self._entry_read(cur, la, acc, o))

    expect_clause = clause if len(distinct) == 1 else "sdm.tlb.stale-before-invalidation"
    if len(distinct) == 1:
        # exercised: the invalidation that removed every stale walk, if there was one
        for res, ev, _t in sorted(removed, key=lambda x: -x[2]):
            if not isinstance(res, Path):
                continue
            o_old, _, _ = self._outcome_of(res, la, acc, cpl, ac)
            if (o_old is None or not matches(o_old, o_cur)) and ev.clause.startswith("sdm."):
                clause = ev.clause
                break
        expect_clause = clause
        return self._explained(clause, o_cur, la, blame)
    explain = self.explain

    def allowed(obs: Outcome) -> str | None:
        for o, _ in distinct:
            if o is None:
                # memory the pattern does not cover: any value, or the harness's own refusal;
                # a fetch from there runs whatever bytes it finds
                if obs.ok or obs.signal not in ("#PF", "#GP") or acc == EXEC:
                    return None
                continue
            if matches(obs, o):
                return None
        return "expected one of " + ", ".join(show(o) if o else "(any value)" for o, _ in distinct) + \
            f"; observed {show(obs)}\n" + explain(la)
    return Expect("sdm.tlb.stale-before-invalidation", default, blame_by=blame, describe=
                  " or ".join(show(o) if o else "(any value)" for o, _ in distinct), predicate=allowed,
                  impl_defined=True)


def options_of(self: Paging, cur, stale, removed, la: int, acc: int, cpl: int, ac: int) -> list[tuple[Outcome | None, str]]:
    """Every outcome some walk (current, stale, removed) gives: the observations worth judging."""
    out = [self._outcome_of(r, la, acc, cpl, ac) for r in [cur] + [r for r, _, _ in stale] + [r for r, _, _ in removed]]
    return [(o, c) for o, c, _ in out]
