"""The sweep's blame: a class is filed under the rule that decided it.  One deliberately broken
walker per rights rule (U/S, R/W with WP, XD, SMEP, SMAP with AC, SMAP on fetches, protection keys
AD/WD), each breaking its rule both ways where it can (wrongly allowed: the reference's denying
clause; wrongly faulted: the rule the fault contradicts, ``specs.sweep.blame``); and a broken walker
that applies SMAP to fetches, like kvm-pvm, explained by the cited difference for that clause."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np

from memspec.commands.sweep import Sweep, SweepOptions, exit_code
from memspec.model.pte import CR0_WP, CR4_PKE, CR4_SMEP, EXEC, WRITE, Mode
from memspec.model.walk import PageFault, errcode
from memspec.specs.directed import load_differences, parse_differences
from memspec.specs.sweep import RIGHTS, blame, judge, reference
from memspec.sweepspace import PF, Observed, Space, build, parse_filter
from memspec.targets.sweep import ModelRunner

SPACE = Space("4level")


def sweep(tmp_path, runner, flt: str) -> Sweep:
    opts = SweepOptions(target=runner.name, filter=flt, out=str(tmp_path / runner.name), batch=500, quiet=True)
    return Sweep(opts, runner, err=io.StringIO())


def clauses(s) -> dict[str, set[str]]:
    """clause -> the observed outcomes of its classes"""
    out: dict[str, set[str]] = {}
    for k in s.classes:
        kind, clause, _exp, got = k.split(" | ")
        assert kind == "outcome", k
        out.setdefault(clause, set()).add(got)
    return out


def fault(mode: Mode, la: int, acc: int, cpl: int, clause: str, pk: bool = False) -> PageFault:
    return PageFault(errcode(mode, acc, cpl, present=True, pk=pk), la, clause)


# --- the broken walkers --------------------------------------------------------------------------------

class SmapOnFetch(ModelRunner):
    """kvm-pvm's bug (docs/findings/kvm.md, finding 2): SMAP applied to supervisor fetches."""

    name = "broken-smap-on-fetch"

    def check(self, path, mode, la, acc, cpl, ac):
        if acc == EXEC and cpl < 3 and path.user and mode.smap and not ac:
            return fault(mode, la, acc, cpl, "smap on fetch")
        return super().check(path, mode, la, acc, cpl, ac)


class UsInverted(ModelRunner):
    """U/S read backwards at CPL 3."""

    name = "broken-us"

    def check(self, path, mode, la, acc, cpl, ac):
        return super().check(replace(path, user=not path.user) if cpl == 3 else path, mode, la, acc, cpl, ac)


class WpInverted(ModelRunner):
    """CR0.WP read backwards."""

    name = "broken-wp"

    def mode_of(self, items, i):
        m = super().mode_of(items, i)
        return Mode(m.cr0 ^ CR0_WP, m.cr4, m.efer, m.pkru, m.maxphy)


class XdOnData(ModelRunner):
    """XD applied to reads and writes instead of fetches."""

    name = "broken-xd"

    def check(self, path, mode, la, acc, cpl, ac):
        if acc != EXEC and mode.nxe and path.xd:
            return fault(mode, la, acc, cpl, "xd on data")
        return super().check(replace(path, xd=False), mode, la, acc, cpl, ac)


class SmepAtCpl3(ModelRunner):
    """SMEP applied to user-mode fetches and not to supervisor ones."""

    name = "broken-smep"

    def check(self, path, mode, la, acc, cpl, ac):
        if acc == EXEC and mode.smep and cpl == 3:
            return fault(mode, la, acc, cpl, "smep at cpl 3")
        if cpl < 3:
            mode = Mode(mode.cr0, mode.cr4 & ~CR4_SMEP, mode.efer, mode.pkru, mode.maxphy)
        return super().check(path, mode, la, acc, cpl, ac)


class SmapAcInverted(ModelRunner):
    """EFLAGS.AC read backwards by SMAP."""

    name = "broken-smap-ac"

    def check(self, path, mode, la, acc, cpl, ac):
        return super().check(path, mode, la, acc, cpl, 1 - ac)


class PkBroken(ModelRunner):
    """Protection keys: AD ignored for user data, applied to fetches and supervisor pages instead; WD
    applied to supervisor writes whatever CR0.WP."""

    name = "broken-pk"

    def check(self, path, mode, la, acc, cpl, ac):
        f = super().check(path, Mode(mode.cr0, mode.cr4 & ~CR4_PKE, mode.efer, mode.pkru, mode.maxphy),
                          la, acc, cpl, ac)
        if f is not None or not mode.pke:
            return f
        rights = (mode.pkru >> (2 * path.pkey)) & 3
        if rights & 1 and (acc == EXEC or not path.user):
            return fault(mode, la, acc, cpl, "ad", pk=True)
        if rights & 2 and acc == WRITE and path.user:
            return fault(mode, la, acc, cpl, "wd", pk=True)
        return None


BASE = "variant==none and leaf in (4k, 2m) and dir_p==1 and leaf_p==1 and leaf_a==1"


# --- the honest walker: no class -----------------------------------------------------------------------

def test_an_honest_model_sweep_has_no_class(tmp_path) -> None:
    s = sweep(tmp_path, ModelRunner(), BASE + " and pk in (off, wd) and leaf_d==0 and dir_nx==0 and wp==1").run()
    assert s.judged > 10_000 and s.failed == 0 and not s.classes and exit_code(s) == 0


# --- one broken walker per rule ------------------------------------------------------------------------

def test_smap_on_fetches_is_filed_under_the_smap_fetch_rule(tmp_path) -> None:
    sw = sweep(tmp_path, SmapOnFetch(), BASE + " and access==fetch and cpl==0 and pk==off and leaf_d==0")
    s = sw.run()
    # NXE = 1: P|I/D; NXE = 0: P alone (no I/D without NXE or SMEP): one clause, two outcomes
    assert clauses(s) == {"sdm.access.smap-fetch-unaffected": {"#PF 0x11", "#PF 0x1"}}
    for rec in s.classes.values():
        assert {"smap=1", "smep=0", "ac=0", "dir_us=1", "leaf_us=1"} <= set(s.where(sw.space, rec))
    assert exit_code(s) == 1


def test_a_cited_difference_for_the_smap_fetch_rule_explains_those_classes(tmp_path) -> None:
    cited = parse_differences('''
[[difference]]
id = "test-smap-on-fetch"
target = "broken-smap-on-fetch"
clause = "sdm.access.smap-fetch-unaffected"
versions = ">=1.0"
match = {signal = "#PF", errcode = [0x1, 0x11]}
observed = "SMAP applied to supervisor fetches"
why = "Intel SDM Vol. 3A §4.6.1: SMAP governs data accesses only"
''', "test.toml")
    r = SmapOnFetch()
    r.facts["impl_version"] = "1.0"
    sw = sweep(tmp_path, r, BASE + " and access==fetch and cpl==0 and pk==off and leaf_d==0")
    sw.diffs = cited
    s = sw.run()
    assert s.classes and all(rec.why for rec in s.classes.values()) and exit_code(s) == 0


def test_the_kvm_difference_cites_the_clause_the_sweep_blames(tmp_path) -> None:
    """kvm-pvm's SMAP-on-fetch classes (NXE = 1 and 0, 4 KiB and 2 MiB leaves) are explained by the
    real specs/differences.toml, on the version it names."""
    r = SmapOnFetch()
    r.name = "kvm"
    r.facts["impl_version"] = "6.18.0"
    sw = sweep(tmp_path, r, BASE + " and access==fetch and cpl==0 and pk==off and leaf_d==0")
    assert any(d.target == "kvm" and d.clause == "sdm.access.smap-fetch-unaffected" for d in load_differences())
    s = sw.run()
    assert len(s.classes) == 2 and all(rec.why for rec in s.classes.values()) and exit_code(s) == 0
    assert all("kvm-pvm-smap-on-fetch-sweep" in rec.why for rec in s.classes.values())


def test_us_read_backwards(tmp_path) -> None:
    s = sweep(tmp_path, UsInverted(), BASE + " and cpl==3 and smep==0 and pk==off and dir_nx==0 and leaf_nx==0"
              " and leaf_d==0").run()
    assert set(clauses(s)) == {"sdm.access.user-read-supervisor", "sdm.access.user-write-supervisor",
                               "sdm.access.user-fetch-supervisor", "sdm.access.user-read-user",
                               "sdm.access.user-write-writable", "sdm.access.user-fetch-user"}


def test_wp_read_backwards(tmp_path) -> None:
    s = sweep(tmp_path, WpInverted(), BASE + " and cpl==0 and access==write and pk in (off, allow)").run()
    assert set(clauses(s)) == {"sdm.access.wp-supervisor-write", "sdm.access.wp0-supervisor-write"}


def test_xd_on_data(tmp_path) -> None:
    s = sweep(tmp_path, XdOnData(), BASE + " and cpl==3 and nxe==1 and pk==off and leaf_d==0").run()
    assert clauses(s) == {"sdm.access.xd-fetch": {"allowed"},
                          "sdm.access.xd-data-unaffected": {"#PF 0x5", "#PF 0x7"}}


def test_smep_at_the_wrong_cpl(tmp_path) -> None:
    s = sweep(tmp_path, SmepAtCpl3(), BASE + " and access==fetch and pk==off and smap==0 and leaf_d==0").run()
    assert set(clauses(s)) == {"sdm.access.smep-fetch", "sdm.access.smep-cpl3-unaffected"}


def test_smap_with_ac_read_backwards(tmp_path) -> None:
    s = sweep(tmp_path, SmapAcInverted(), BASE + " and cpl==0 and smap==1 and wp==1 and pk==off and access!=fetch"
              " and leaf_d==0").run()
    assert set(clauses(s)) == {"sdm.access.smap-read", "sdm.access.smap-write", "sdm.access.smap-ac-override"}


def test_protection_keys_ad_and_wd(tmp_path) -> None:
    s = sweep(tmp_path, PkBroken(), BASE + " and pk in (ad, wd) and leaf==4k and leaf_d==0 and dir_nx==0").run()
    assert set(clauses(s)) == {"sdm.pkeys.access-disable", "sdm.pkeys.fetch-unaffected",
                               "sdm.pkeys.supervisor-page-unaffected", "sdm.pkeys.write-disable"}


# --- blame's rows directly ---------------------------------------------------------------------------------

def test_blame_rows_and_their_order() -> None:
    """A structural claim (P = 0, RSVD) names no rule; a tie (a CPL 0 write to a read-only user page,
    WP = 0, SMAP = 1, AC = 1) names the earlier row, the WP rule."""
    def one(**combo) -> tuple[str, int]:
        c = SPACE.combination(0)
        c.update(variant="none", leaf="4k", dir_p="1", leaf_p="1", dir_rw="1", dir_us="1", leaf_us="1")
        c.update(combo)
        items = build(SPACE, np.array([SPACE.index_of(c)]))
        return items, reference(items, {"maxphyaddr": 48})

    items, ref = one(cpl="0", access="write", wp="0", smap="1", ac="1", leaf_rw="0")
    assert not ref.fault[0]
    for code, want in ((0x3, "sdm.access.wp0-supervisor-write"), (0x2, None), (0xB, None),
                       (0x23, "sdm.pkeys.ignored-without-pke")):
        r = int(blame(items, ref, np.array([code], dtype=np.uint32), np.array([0]))[0])
        assert (RIGHTS[r] if r >= 0 else None) == want, hex(code)
    items, ref = one(cpl="0", access="read", dir_us="0")
    assert int(blame(items, ref, np.array([1], dtype=np.uint32), np.array([0]))[0]) == -1    # no rights rule
    # the judge names the leaf's clause there
    obs = Observed.empty(1)
    obs.kind[0], obs.errcode[0], obs.cr2[0] = PF, 1, items.la[0]
    v = judge(items, obs, {"maxphyaddr": 48})
    assert v.keys[0][1] == "sdm.walk.pte.maps-4k"
    assert parse_filter(BASE, SPACE).count(SPACE) > 0


def test_a_pk_bit_the_reference_lacks_is_the_pk_rule() -> None:
    """Both fault, the target's error code has PK where the reference's (U/S) has not: the protection-key
    rule the PK bit contradicts names the class (a supervisor page: keys do not apply)."""
    c = SPACE.combination(0)
    c.update(variant="none", leaf="4k", dir_p="1", leaf_p="1", dir_us="0", cpl="3", access="read", pk="ad")
    items = build(SPACE, np.array([SPACE.index_of(c)]))
    ref = reference(items, {"maxphyaddr": 48})
    assert ref.fault[0] and int(ref.errcode[0]) == 0x5 and not ref.pk_also[0]
    obs = Observed.empty(1)
    obs.kind[0], obs.errcode[0], obs.cr2[0] = PF, 0x25, items.la[0]
    v = judge(items, obs, {"maxphyaddr": 48})
    assert v.keys[0] == ("outcome", "sdm.pkeys.supervisor-page-unaffected", "#PF", "#PF error code with PK")
