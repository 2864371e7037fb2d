"""Which clause a refused hw observation breaks (issue #26: the rule broken, not a side clause of the walk).

One observation can contradict several expectations at once: a #PF where the access was allowed
contradicts the rights rule that allowed it *and* the translation of the leaf; a stale value
contradicts the invalidation that removed it *and* the current walk.  The judge names the most
specific one, in this order (the first row that applies decides):

Accesses (``access_blame``):

1. the observation is exactly what a translation some invalidation removed gives: that
   invalidation (``sdm.tlb.invlpg``, ``sdm.invpcid.*``, ``sdm.tlb.cr3-flush-*``,
   ``sdm.tlb.pf-invalidates``, ``sdm.tlb.cr4-*-flush``), the latest-cached such translation first.
   First, because the observation is then predicted whole by one concrete translation; where a
   program undoes a change of rights with an invalidation, a walker that ignores those rights gives
   the same observation and is blamed on the invalidation too (the two cannot be told apart);
2. a #PF where the access was allowed -- or a #PF with PK where the allowed fault has none: the
   rights rule the fault contradicts (``rights_contradicted``: the PK, fetch, WP, SMAP, XD, U/S and
   R/W rows of SDM Vol. 3A §4.6, the same table as ``specs.sweep.blame``); a P = 0 or RSVD = 1 fault
   there claims something about the structure: the leaf's translation clause;
3. no fault where a #PF was due: if the outcome is what a walk a rights rule faulted would have
   given without it (its page's data), that rights rule -- also where a stale translation allowed
   other data; else, where only faults were allowed, the clause of the fault due (the walk's
   presence or reserved-bit clause, or the rights rule that forbids the access);
4. a #PF at the right CR2 whose error code differs only in bits that describe the access, not its
   cause (W/R, U/S, I/D: SDM §4.7, set from the access whatever the cause): the clause of the
   lowest such bit (``sdm.pf.errcode.*``); a difference in P, RSVD or PK (the cause) or in CR2 is
   the clause of the fault that was due;
5. a value where another value was due (same kind, wrong data): where the address maps a paging
   entry (a self-referencing table read as data), the entry's blame (below); else the translation
   clause of the leaf that mapped it (``sdm.walk.pte.maps-4k``, ``pde.ps-2m``, ``pdpte.ps-1g``: §4.5.4);
6. anything else (#GP, an errno): the expectation's own clause.

Paging entries read back (``entry_blame``: ``read_pte`` and the checkpoint's entries):

1. a bit other than A and D differs: ``sdm.ad.only-a-d`` if a walk used the entry since the program
   wrote it, else ``memspec.hw.entry-readback`` (the CPU never touched it);
2. A or D clear where the model set it on an access that a translation removed by an invalidation
   of the page (INVLPG, INVPCID by address, a #PF) would have served with the same outcome, in an
   entry that translation did not use or used with an older value (a cached translation sets
   neither; one cached from the entry's current value set them when it was made): that invalidation;
3. D clear where due: ``sdm.ad.dirty-on-write``; A clear where due: ``sdm.ad.accessed-on-use``;
4. D set where no write went through the entry: in an entry last used as a non-leaf (bit 6 is
   ignored there, the CPU never sets it) ``sdm.ad.only-a-d``; in one last used as the leaf of a
   read, or by a cached translation, ``sdm.ad.no-dirty-on-read``; otherwise the clause that last
   decided the entry's A/D bits.

Worked example: CR4.SMAP = 1, EFLAGS.AC = 1, a CPL 0 read of a user page through a 2 MiB PDE; the
target faults with errcode P: row 2, ``sdm.access.smap-ac-override`` (not ``sdm.walk.pde.ps-2m``,
the clause that allowed the read when no rights rule was in play).
"""

from __future__ import annotations

from typing import Callable, Iterable

from memspec.records import Outcome

from .pte import EXEC, WRITE, ErrCode, Mode
from .walk import Path


def matches(obs: Outcome, want: Outcome) -> bool:
    """``obs`` is ``want``: same value (up to its ``loose`` bits), errno and signal, and for a #PF the
    same error code and CR2."""
    if (obs.errno, obs.signal) != (want.errno, want.signal):
        return False
    d = dict(want.detail)
    if want.signal == "#PF":
        got = dict(obs.detail)
        return got.get("errcode") == d.get("errcode") and got.get("cr2") == d.get("cr2")
    if want.value is None or obs.value is None:
        return want.value == obs.value
    return (obs.value ^ want.value) & ~d.get("loose", 0) == 0


# the clause of each page size's translation (Intel SDM Vol. 3A §4.5.4, Figures 4-8 to 4-10)
LEAF_TRANSLATION = {1 << 12: "sdm.walk.pte.maps-4k", 1 << 21: "sdm.walk.pde.ps-2m", 1 << 30: "sdm.walk.pdpte.ps-1g"}

# error-code bits that describe the access, not the cause of the fault (SDM §4.7), lowest first
ACCESS_BITS = ((ErrCode.W, "sdm.pf.errcode.w"), (ErrCode.U, "sdm.pf.errcode.us"), (ErrCode.ID, "sdm.pf.errcode.id"))
_ACCESS_MASK = int(ErrCode.W | ErrCode.U | ErrCode.ID)

A_D = 0x60
_A, _D = 0x20, 0x40


def rights_contradicted(path: Path, mode: Mode, acc: int, cpl: int, code: int) -> str:
    """The rights rule a #PF with error code ``code`` contradicts, for an access that ``path`` allows
    (the scalar form of ``specs.sweep.blame``'s table; the first row that applies):

    P = 0 or RSVD = 1 -> the leaf's translation clause; PK = 1 -> ``sdm.pkeys.*`` (PKE = 0, a fetch, a
    supervisor page, WD = 1, else AD); a fetch -> SMEP at CPL 3 / the user-fetch rule / SMAP on
    fetches / the supervisor-fetch rule; a CPL 0 write to a read-only page with WP = 0 -> WP = 0;
    CPL 0 data to a user page -> the AC override (SMAP = 1) or the no-SMAP rule; to a supervisor page
    with SMAP = 1 -> SMAP leaves it alone; XD on data -> ``xd-data-unaffected``; else the U/S and R/W
    rule of the access, or the leaf's translation for a CPL 0 read.

    Worked example: a CPL 0 fetch from a user page with SMAP = 1, SMEP = 0 faulting with P|I/D:
    ``sdm.access.smap-fetch-unaffected``."""
    if not code & ErrCode.P or code & ErrCode.RSVD:
        return LEAF_TRANSLATION[path.size]
    user3 = cpl == 3
    if code & ErrCode.PK:
        if not mode.pke:
            return "sdm.pkeys.ignored-without-pke"
        if acc == EXEC:
            return "sdm.pkeys.fetch-unaffected"
        if not path.user:
            return "sdm.pkeys.supervisor-page-unaffected"
        if (mode.pkru >> (2 * path.pkey + 1)) & 1:
            return "sdm.pkeys.write-disable"
        return "sdm.pkeys.access-disable"
    if acc == EXEC:
        if user3:
            return "sdm.access.smep-cpl3-unaffected" if mode.smep else "sdm.access.user-fetch-user"
        return "sdm.access.smap-fetch-unaffected" if path.user and mode.smap else "sdm.access.supervisor-fetch"
    if not user3 and acc == WRITE and not path.writable and not mode.wp:
        return "sdm.access.wp0-supervisor-write"
    if not user3 and path.user:
        return "sdm.access.smap-ac-override" if mode.smap else "sdm.access.supervisor-data-user-no-smap"
    if not user3 and mode.smap:
        return "sdm.access.smap-supervisor-page-unaffected"
    if path.xd and mode.nxe:
        return "sdm.access.xd-data-unaffected"
    if user3:
        return "sdm.access.user-write-writable" if acc == WRITE else "sdm.access.user-read-user"
    if acc == WRITE:
        return "sdm.access.supervisor-write-writable"
    return LEAF_TRANSLATION[path.size]


def _pf(o: Outcome) -> tuple[int, int] | None:
    if o.signal != "#PF":
        return None
    d = dict(o.detail)
    return d.get("cr2", -1), d.get("errcode", -1)


def access_blame(obs: Outcome, allowed: Iterable[tuple[Outcome | None, str, object]],
                 killed: Callable[[], Iterable[tuple[Outcome, str]]], mode: Mode, acc: int, cpl: int,
                 fallback: str, matches: Callable[[Outcome, Outcome], bool],
                 forbidden: Callable[[], Iterable[tuple[Outcome, str]]] = lambda: (),
                 entry_read: Callable[[Outcome], str | None] = lambda o: None) -> str:
    """The clause a refused access outcome ``obs`` breaks (the module's order for accesses).

    ``allowed``: (outcome, clause, walk) for each outcome the SDM allowed, the current walk's first;
    ``killed()``: (outcome, invalidation clause) of the translations invalidations removed, latest
    cached first (worked out only if asked); ``forbidden()``: (outcome, rights clause) for each
    allowed walk a rights rule faulted: what it would have given without that rule;
    ``entry_read(obs)``: the entry's blame if the access read a paging entry as data, else None;
    ``fallback``: the expectation's clause."""
    for o_old, cid in killed():                                     # 1
        if cid.startswith("sdm.") and matches(obs, o_old):
            return cid
    allowed = [a for a in allowed if a[0] is not None]
    if not allowed:
        return fallback
    pf_obs = _pf(obs)
    faults = [(o, c) for o, c, _ in allowed if o.signal == "#PF"]
    oks = [(o, c, r) for o, c, r in allowed if o.ok]
    if pf_obs is not None:
        code = pf_obs[1]
        if oks and not faults:                                      # 2: a fault where none was due
            for _o, _c, r in oks:
                if isinstance(r, Path):
                    return rights_contradicted(r, mode, acc, cpl, code)
            return oks[0][1]
        if faults and code & ErrCode.PK and not any(_pf(o)[1] & ErrCode.PK for o, _ in faults):
            for _o, _c, r in allowed:
                if isinstance(r, Path):
                    return rights_contradicted(r, mode, acc, cpl, int(ErrCode.P | ErrCode.PK))
        for o, c in faults:                                         # 4: the same fault, other bits
            cr2, want = _pf(o)
            diff = want ^ code
            if cr2 == pf_obs[0] and diff and not diff & ~_ACCESS_MASK:
                for bit, cid in ACCESS_BITS:
                    if diff & bit:
                        return cid
        if faults:
            return faults[0][1]
        return fallback
    if obs.ok and faults:                                           # 3: no fault where one was due
        for o_free, cid in forbidden():
            if matches(obs, o_free):
                return cid
        if not oks:
            return faults[0][1]
    if obs.ok and obs.value is not None and acc != EXEC:            # 5: the wrong data
        cid = entry_read(obs)
        if cid is not None:
            return cid
        for o, _c, r in oks:
            if isinstance(r, Path) and o.value is not None:
                return LEAF_TRANSLATION[r.size]
    return fallback                                                 # 6


def entry_blame(want: int, have: int, loose: int, walked: bool, last_clause: str | None,
                stale_clear: tuple[int, str] | None) -> str:
    """The clause a paging entry read back as ``have`` (the model holds ``want``, bits ``loose``
    either way) breaks (the module's order for entries).  ``walked``: a walk used the entry since the
    program wrote it; ``last_clause``: the clause that last decided its A/D bits
    (``sdm.ad.accessed-on-use`` for a use as a non-leaf); ``stale_clear``: (A/D bits, invalidation clause) --
    bits the model set on an access that a translation the invalidation removed would have served
    the same way without setting them."""
    diff = (want ^ have) & ~loose
    if diff & ~A_D:
        return "sdm.ad.only-a-d" if walked else "memspec.hw.entry-readback"
    missing = diff & want
    if missing and stale_clear is not None and not missing & ~stale_clear[0]:
        return stale_clear[1]
    if missing & _D:
        return "sdm.ad.dirty-on-write"
    if missing & _A:
        return "sdm.ad.accessed-on-use"
    if diff & _D and not missing & _D and walked:
        # D set where no write went through the entry since the program wrote it
        if last_clause == "sdm.ad.accessed-on-use":
            return "sdm.ad.only-a-d"
        if last_clause in ("sdm.ad.no-dirty-on-read", "sdm.tlb.ad-with-cached-translation"):
            return "sdm.ad.no-dirty-on-read"
    return last_clause or "memspec.hw.entry-readback"


__all__ = ["LEAF_TRANSLATION", "ACCESS_BITS", "rights_contradicted", "access_blame", "entry_blame"]
