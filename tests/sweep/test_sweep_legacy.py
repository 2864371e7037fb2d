"""Sweeps of PAE and 32-bit paging: the spaces, the model against the batch walker, broken walkers
caught under their clauses, the unicorn machine in protected mode, and the runners that boot into
long mode refusing these modes."""

from __future__ import annotations

import importlib.util
import io
import os

import numpy as np
import pytest

from memspec.commands.sweep import Sweep, SweepOptions, exit_code
from memspec.errors import UsageError
from memspec.model.pte import EFER_NXE, Mode
from memspec.sweepspace import Space, build, legacy_text, parse_filter
from memspec.targets.sweep import KernelRunner, ModelRunner, SweepRunner

from ..conftest import missing_peer


def sweep(tmp_path, runner, mode, flt, name="out") -> Sweep:
    opts = SweepOptions(target=runner.name, mode=mode, filter=flt, out=str(tmp_path / name), batch=500, quiet=True)
    return Sweep(opts, runner, err=io.StringIO())


def test_the_spaces_name_only_what_matters_in_their_mode() -> None:
    pae, b32 = Space("pae"), Space("32bit")
    assert "pk" not in pae.dim and "nxe" in pae.dim and pae.dim["leaf"].values == ("4k", "2m")
    assert not {"pk", "nxe", "dir_nx", "leaf_nx"} & set(b32.dim) and b32.dim["leaf"].values == ("4k", "4m")
    assert pae.size == int(np.prod([len(d.values) for d in pae.dims])) and b32.size == 147_456
    with pytest.raises(UsageError, match="not a dimension of 32bit paging"):
        parse_filter("nxe==1", b32)
    with pytest.raises(UsageError, match="not a value of leaf"):
        parse_filter("leaf==1g", pae)
    # 32-bit entries are 32 bits; the address uses 10-bit indexes: PDE 1, PTE 1
    items = build(b32, np.arange(0, b32.size, 997))
    assert int(items.entries.max()) < 1 << 32 and int(items.la[0]) == 0x401008 and items.entry_size == 4
    items = build(pae, np.array([0]))
    assert int(items.la[0]) == 0x40401008 and int(items.entries[0, 0]) == 0x201001     # the PDPTE above a PDE: P alone
    text = legacy_text(items, 0, "a title")
    assert "# a title" in text and "pae paging: not a memspec program" in text and "entry at 0x200008" in text


@pytest.mark.parametrize("mode, flt", [
    ("32bit", "variant in (none, leaf21, leaf13) and dir_p==1 and leaf_a==1"),
    ("pae", "variant in (none, leaf62, pdpte_rsvd, dir51) and wp==1 and dir_p==1 and leaf_a==1 and leaf_d==0"),
])
def test_the_model_agrees_with_the_batch_walker(tmp_path, mode, flt) -> None:
    sw = sweep(tmp_path, ModelRunner(maxphyaddr=40), mode, flt)
    s = sw.run()
    assert s.judged == sw.total > 1000 and s.failed == 0 and not s.classes and exit_code(s) == 0
    # every kind of outcome is in there
    assert {"(allowed)", "sdm.access.user-write-readonly"} <= set(s.per_clause)
    assert ("sdm.pae.pdpte.rsvd-gp" if mode == "pae" else "sdm.walk32.pde.rsvd-4m") in s.per_clause


class PseIgnored(ModelRunner):
    """A broken walker: CR4.PSE read as 0 (4 MiB PDEs walk their frame as a page table)."""

    name = "broken-pse"

    def mode_of(self, items, i):
        m = super().mode_of(items, i)
        return Mode(m.cr0, m.cr4 & ~0x10, m.efer, m.pkru, m.maxphy)


class NxeIgnoredInPae(ModelRunner):
    """A broken walker: EFER.NXE read as 0 (XD is a reserved bit)."""

    name = "broken-nxe"

    def mode_of(self, items, i):
        m = super().mode_of(items, i)
        return Mode(m.cr0, m.cr4, m.efer & ~EFER_NXE, m.pkru, m.maxphy)


def test_broken_walkers_are_caught_under_their_clauses(tmp_path) -> None:
    s = sweep(tmp_path, PseIgnored(40), "32bit", "leaf==4m and variant==none and leaf_p==1 and cpl==0").run()
    # the broken walker finds no PTE: where the reference maps the 4 MiB page, the page's clause; where
    # the reference faults for the rights, its error code without P
    assert "sdm.walk32.pde.ps-4m" in {k.split(" | ")[1] for k in s.classes} and exit_code(s) == 1
    for k in s.classes:
        _kind, clause, exp, got = k.split(" | ")
        assert (exp, int(got.split()[1], 16) & 1) == ("allowed", 0) if clause == "sdm.walk32.pde.ps-4m" else \
            got == "#PF error code without P", k
    s = sweep(tmp_path, NxeIgnoredInPae(40), "pae", "variant==none and nxe==1 and leaf_nx==1 and dir_p==1 "
              "and leaf_p==1 and cpl==3", "nxe").run()
    # XD read as a reserved bit: a reserved-bit claim where the reference allows is the page's clause
    # (no rights rule is involved); where the reference faults for the rights, its error code with RSVD
    assert exit_code(s) == 1 and len(s.classes) > 2
    for k in s.classes:
        _kind, clause, exp, got = k.split(" | ")
        if exp == "allowed":
            assert clause in ("sdm.pae.pte.maps-4k", "sdm.pae.pde.ps-2m") and int(got.split()[1], 16) & 8, k
        else:
            assert "with RSVD" in got, k


def test_runners_in_long_mode_refuse_these_modes(tmp_path) -> None:
    class LongModeOnly(SweepRunner):
        name = "kvm"
        facts: dict = {}

    assert KernelRunner.modes == ("4level", "5level")
    from memspec.targets.kvm.sweep import KvmRunner
    assert KvmRunner.modes == ("4level", "5level")
    for mode in ("pae", "32bit"):
        with pytest.raises(UsageError, match=f"--mode {mode}: the kvm target's sweep runs in IA-32e mode"):
            sweep(tmp_path, LongModeOnly(), mode, None)


def test_unicorn_sweeps_protected_mode(tmp_path) -> None:
    """unicorn in UC_MODE_32: 32-bit paging agrees (PSE-36 included); PAE differs only where a present
    PDPTE has a reserved bit (QEMU 5.0 has no PDPTE registers), explained by the cited difference."""
    if importlib.util.find_spec("unicorn") is None:
        missing_peer("unicorn", "pip install unicorn==2.1.4")
    from memspec.targets.registry import make_target
    from memspec.targets.sweep import runner_for
    target = make_target("qemu")
    try:
        runner = runner_for(target)
        s32 = sweep(tmp_path, runner, "32bit", "dir_p==1 and leaf_a==1 and ac==0 and wp==1", "b32").run()
        sw = sweep(tmp_path, runner, "pae", "leaf==2m and wp==1 and smep==0 and ac==0 and leaf_a==1 and leaf_d==1 "
                   "and leaf_rw==1 and leaf_us==1 and dir_p==1", "pae")
        pae = sw.run()
    finally:
        target.close()
    assert s32.judged == 3 * 2 * 2 * 2 * 2 * 3 * 4 * 16 and s32.failed == 0 and not s32.classes
    assert pae.judged > 1000 and pae.classes and exit_code(pae) == 0
    assert {k.split(" | ")[1] for k in pae.classes} == {"sdm.pae.pdpte.rsvd-gp"}
    assert all("qemu-unicorn-pae-no-pdpte-registers" in r.why for r in pae.classes.values())
    key, rec = next(iter(pae.classes.items()))
    assert os.path.exists(os.path.join(sw.o.out, "reproducers", sw.repro_name(key)))
    assert sw.repro_name(key).endswith(".txt")
