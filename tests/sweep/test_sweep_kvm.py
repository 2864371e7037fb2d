"""memspec sweep on the kvm target: a short filtered sweep agrees with the reference walk, and a runner
that reports error codes without P is caught as a class."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from memspec.commands.sweep import Sweep, SweepOptions, exit_code
from memspec.program import parse
from memspec.sweepspace import PF, Items, Observed

from ..conftest import missing_peer

# both CPLs (the emulator at CPL 0, the shadow MMU at CPL 3), every access type, not-present and
# reserved-bit directory and leaf entries, U/S and R/W and A/D of the leaf, SMEP off, SMAP off
SHORT = ("variant in (none, leaf51, dir51) and leaf==4k and wp==1 and smep==0 and smap==0 and pk==off and nxe==1 "
         "and dir_rw==1 and dir_us==1 and dir_nx==0 and leaf_nx==0")


@pytest.fixture(scope="module")
def kvm():
    from memspec.targets.kvm import KvmTarget, kvm_status
    why = kvm_status()
    if why:
        missing_peer("kvm", f"the kvm target needs a usable /dev/kvm: {why}")
    t = KvmTarget(timeout=10.0)
    yield t
    t.close()


def sweep(tmp_path, runner, name="out", **kw) -> Sweep:
    opts = SweepOptions(target=runner.name, filter=kw.pop("filter", SHORT), out=str(tmp_path / name), batch=500,
                        quiet=True, **kw)
    return Sweep(opts, runner, err=io.StringIO())


def test_a_short_sweep_of_kvm_agrees_with_the_reference(tmp_path, kvm) -> None:
    from memspec.targets.kvm.sweep import KvmRunner
    from memspec.targets.sweep import runner_for
    runner = runner_for(kvm)
    assert isinstance(runner, KvmRunner) and runner.facts["maxphyaddr"] < 52
    try:
        sw = sweep(tmp_path, runner)
        s = sw.run()
    finally:
        runner.close()
    assert s.judged == sw.total == 3 * 2 * 2 * 3 * 64 and s.refused == 0 and not s.unsupported
    assert s.failed == 0 and not s.classes and exit_code(s) == 0, list(s.classes)
    # allowed accesses (with their A/D flags), not-present and reserved-bit faults at both levels
    for clause in ("(allowed)", "sdm.walk.pde.not-present", "sdm.walk.pte.rsvd-maxphy", "sdm.walk.pde.rsvd-maxphy",
                   "sdm.access.user-write-readonly", "sdm.access.wp-supervisor-write"):
        assert s.per_clause[clause][0] > 0, clause
    # one VM for the whole sweep (its batches of at most 500 here) as long as the harness stays intact
    assert runner.vms == 1


def test_a_runner_that_drops_p_from_error_codes_is_one_class(tmp_path, kvm) -> None:
    """The runner deliberately wrong: every #PF's error code loses P.  Not-present faults (P = 0
    anyway) still pass; every protection and reserved-bit fault is one unexplained class."""
    from memspec.targets.kvm.sweep import KvmRunner

    class NoP(KvmRunner):
        name = "broken-kvm-no-p"

        def run(self, items: Items) -> Observed:
            obs = super().run(items)
            obs.errcode = np.where(obs.kind == PF, obs.errcode & ~np.uint32(1), obs.errcode).astype(np.uint32)
            return obs

    runner = NoP(kvm)
    try:
        sw = sweep(tmp_path, runner, filter=SHORT + " and cpl==3 and access in (read, write)")
        s = sw.run()
    finally:
        runner.close()
    assert exit_code(s) == 1 and s.failed > 0
    titles = {k.split(" | ")[3] for k, r in s.classes.items() if not r.why}
    assert titles == {"#PF error code without P"}, list(s.classes)
    assert not any(r.why for r in s.classes.values())
    assert s.per_clause["sdm.walk.pde.not-present"][1] == 0
    # each class's reproducer is an ordinary program with its one access
    for key, rec in s.classes.items():
        text = open(os.path.join(sw.o.out, "reproducers", sw.repro_name(key))).read()
        assert [c.name for c in parse(text).calls].count("access") == 1


def test_a_batch_after_a_batch_sees_its_own_trees(kvm) -> None:
    """The runner keeps its VM and writes the next batch's trees into the same pages: the shadow MMU
    must have forgotten the last batch's (the trees' memory slot is deleted and added again).  CPL 3
    reads through present leaves build shadow entries; the same trees with the leaves not present
    must then fault, every one."""
    from memspec.sweepspace import Space, build, parse_filter
    from memspec.targets.kvm.sweep import KvmRunner
    space = Space("4level")
    base = ("variant==none and leaf==4k and pk==off and smep==0 and smap==0 and cpl==3 and access==read and dir_p==1 "
            "and dir_us==1 and leaf_us==1 and dir_nx==0 and leaf_nx==0")
    part = np.arange(0, space.size // 15, dtype=np.int64)
    present = build(space, parse_filter(base + " and leaf_p==1", space).select(space, part))
    absent = build(space, parse_filter(base + " and leaf_p==0", space).select(space, part))
    runner = KvmRunner(kvm)
    try:
        first = runner.run(present)
        second = runner.run(absent)
    finally:
        runner.close()
    assert runner.vms == 1 and len(present) == len(absent) > 100
    assert (first.kind != PF).sum() > 100
    assert (second.kind == PF).all() and (second.errcode == 4).all()


def test_pae_and_32bit_are_refused_with_what_the_probe_found(tmp_path, kvm) -> None:
    """Whether this KVM pages outside long mode is the probe's fact (kvm-pvm does not: its protected-mode
    guest shuts down); where it does, the sweep still refuses these modes, for its own guest's reason."""
    from memspec.errors import UsageError
    from memspec.targets.kvm.sweep import KvmRunner
    runner = KvmRunner(kvm)
    try:
        facts = kvm.facts()
        for mode, fact in (("pae", "kvm_pae32"), ("32bit", "kvm_legacy32")):
            why = "feature probe booted a protected-mode guest" if facts[fact] is False else "runs in IA-32e mode"
            with pytest.raises(UsageError, match=why):
                sweep(tmp_path, runner, name=mode, mode=mode, filter=None)
    finally:
        runner.close()
