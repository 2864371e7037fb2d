"""memspec sweep: the space's bijection and filter, the judge on the reference and on a broken
walker, resume after an interruption, the reproducers, and short sweeps of the emulators."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.commands.sweep import Sweep, SweepOptions, exit_code
from memspec.errors import UsageError
from memspec.model.pte import CR4_SMAP, Mode
from memspec.program import parse
from memspec.sweepspace import (DIMENSIONS, PF, Items, Observed, Space, build, parse_filter, program_text,
                                unsupported)
from memspec.targets.sweep import ModelRunner, decoded_args, parse_records, records_of
from memspec.targets.testkernel_wire import SWEEP_RECORD_SIZE, sweep_request, sweep_runs

from ..conftest import missing_peer

SPACE = Space("4level")


# --- the enumeration ------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.integers(0, SPACE.size - 1))
def test_index_and_combination_are_a_bijection(i) -> None:
    combo = SPACE.combination(i)
    assert set(combo) == {d.name for d in DIMENSIONS}
    assert SPACE.index_of(combo) == i
    assert int(SPACE.encode(SPACE.decode(np.array([i])))[0]) == i


def test_the_space_is_the_product_of_its_dimensions() -> None:
    assert SPACE.size == int(np.prod([len(d.values) for d in DIMENSIONS]))
    # the last dimension varies fastest, the first slowest
    assert SPACE.combination(1)[DIMENSIONS[-1].name] == DIMENSIONS[-1].values[1]
    assert SPACE.combination(SPACE.size - 1) == {d.name: d.values[-1] for d in DIMENSIONS}
    with pytest.raises(ValueError):
        SPACE.decode(np.array([SPACE.size]))


def test_a_filter_keeps_exactly_the_combinations_it_names() -> None:
    idx = np.random.default_rng(1).integers(0, SPACE.size, 20000)
    flt = parse_filter("cpl==3 and (leaf==4k or leaf==1g) and not access==fetch and pk in (ad, wd)", SPACE)
    got = flt.mask(SPACE.decode(idx))
    for i, keep in zip(idx[:3000].tolist(), got[:3000].tolist()):
        c = SPACE.combination(i)
        want = (c["cpl"] == "3" and c["leaf"] in ("4k", "1g") and c["access"] != "fetch" and c["pk"] in ("ad", "wd"))
        assert keep == want, c
    # counting by the dimensions a filter names agrees with selecting
    assert flt.count(SPACE) == SPACE.size // 2 * 2 // 3 * 2 // 3 // 2
    part = np.arange(0, SPACE.size // 20, dtype=np.int64)          # the first 20th: variant none, leaf 4k
    sel = parse_filter("cpl==3 and access==read", SPACE).select(SPACE, part)
    assert sel.size == part.size // 6 and parse_filter("", SPACE).count(SPACE) == SPACE.size


@pytest.mark.parametrize("text, where", [("cpl==2", "column 6"), ("cp==3", "column 1"), ("cpl=3", "column 4"),
                                         ("cpl==3 and", "the end"), ("(cpl==3", "expected ')'"),
                                         ("cpl==3 leaf==4k", "column 8"), ("pk in (ad wd)", "column 11")])
def test_a_bad_filter_is_refused_with_its_column(text, where) -> None:
    with pytest.raises(UsageError, match=where.replace("(", r"\(").replace(")", r"\)")):
        parse_filter(text, SPACE)


def test_unsupported_modes_and_features_say_so() -> None:
    with pytest.raises(UsageError, match="--mode must be one of 4level, 5level, pae, 32bit"):
        Space("long")
    d = SPACE.decode(np.arange(0, SPACE.size, 101))
    why = unsupported(SPACE, d, {"maxphyaddr": 52, "smep": True, "smap": False, "pku": True, "nx": True})
    assert ((why == 2) == ((d["smap"] == 1))).all()           # SMAP first
    bit51 = (d["variant"] == 1) | (d["variant"] == 2)
    assert (why[bit51 & (d["smap"] == 0)] == 5).all() and (why[~bit51 & (d["smap"] == 0)] == 0).all()


def test_a_combination_is_a_replayable_program_with_the_same_outcome() -> None:
    """The reproducer of a combination runs on the hw model with the outcome the batch walker gives."""
    from memspec.fuzz.differential import execute
    from memspec.targets.model import ModelTarget
    target = ModelTarget()
    flt = parse_filter("variant==none and leaf==2m and dir_p==1 and leaf_p==1 and pk in (off, ad)", SPACE)
    idx = np.unique(np.random.default_rng(5).integers(0, SPACE.size, 200_000))
    idx = idx[flt.mask(SPACE.decode(idx))][:16]
    items = build(SPACE, idx)
    obs = ModelRunner(maxphyaddr=52).run(items)
    assert len(set(obs.kind.tolist())) == 2            # some allowed, some #PF
    for i in range(len(items)):
        prog = parse(program_text(items, i, "a sweep combination"))
        run = target.run(prog)
        access = [o for c, o in zip(prog.calls, run.outcomes) if c.name == "access"][0]
        if obs.kind[i] == PF:
            assert access.signal == "#PF" and dict(access.detail)["errcode"] == int(obs.errcode[i])
        else:
            assert access.signal is None
        assert not execute(target, prog, target.facts()).failure


# --- the judge and the summary ----------------------------------------------------------------------

class NoSmap(ModelRunner):
    """A deliberately broken walker: it ignores CR4.SMAP."""

    name = "broken-no-smap"

    def mode_of(self, items: Items, i: int) -> Mode:
        m = super().mode_of(items, i)
        return Mode(m.cr0, m.cr4 & ~CR4_SMAP, m.efer, m.pkru, m.maxphy)


FILTER = ("variant in (none, leaf51) and leaf==4k and wp==1 and nxe==1 and pk in (off, ad) and dir_p==1 and dir_rw==1 "
          "and dir_nx==0 and leaf_p==1 and leaf_a==1 and leaf_d==0")


def sweep(tmp_path, runner, name="out", **kw) -> Sweep:
    opts = SweepOptions(target=runner.name, filter=kw.pop("filter", FILTER), out=str(tmp_path / name), batch=250,
                        quiet=True, **kw)
    return Sweep(opts, runner, err=io.StringIO())


def test_the_reference_agrees_with_itself(tmp_path) -> None:
    sw = sweep(tmp_path, ModelRunner())
    s = sw.run()
    assert s.judged == sw.total == 2 * 2 * 2 * 2 * 2 * 2 * 3 * 2 * 2 * 2 * 2 and s.failed == 0 and not s.classes
    assert exit_code(s) == 0
    assert s.per_clause["sdm.walk.pte.rsvd-maxphy"] == [s.judged // 2, 0]


def test_a_walker_that_ignores_smap_is_one_class_per_access_type(tmp_path) -> None:
    sw = sweep(tmp_path, NoSmap())
    s = sw.run()
    assert exit_code(s) == 1
    keys = sorted(s.classes)
    assert [k.split(" | ")[1] for k in keys] == ["sdm.access.smap-read", "sdm.access.smap-write"]
    for k in keys:
        rec = s.classes[k]
        assert k.split(" | ")[3] == "allowed" and not rec.why
        where = s.where(sw.space, rec)
        assert {"smap=1", "cpl=0", "ac=0", "leaf_us=1", "dir_us=1"} <= set(where), where
        assert "variant=none" in where                  # bit 51 faults first
        # the reproducer is a program of the class's first member
        text = open(os.path.join(sw.o.out, "reproducers", sw.repro_name(k))).read()
        assert "# target: broken-no-smap" in text and f"{rec.count:,} combinations" in text
        assert [c.name for c in parse(text).calls].count("access") == 1
    summary = open(os.path.join(sw.o.out, "summary.txt")).read()
    assert "allowed where #PF 0x1: " in summary and "smap=1" in summary


def test_an_explained_class_is_counted_once(tmp_path, monkeypatch) -> None:
    """A cited difference for the target and the class's clause explains the whole class."""
    monkeypatch.setattr(Sweep, "why", lambda self, clause, observed:
                        "cited" if clause == "sdm.access.smap-read" and observed.startswith("0x") else "")
    s = sweep(tmp_path, NoSmap()).run()
    why = {k.split(" | ")[1]: r.why for k, r in s.classes.items()}
    assert why == {"sdm.access.smap-read": "cited", "sdm.access.smap-write": ""}
    assert s.explained() == s.classes[[k for k in s.classes if "smap-read" in k][0]].count


class Interrupting(ModelRunner):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def run(self, items: Items) -> Observed:
        self.after -= 1
        if self.after < 0:
            raise KeyboardInterrupt
        return super().run(items)


def test_an_interrupted_sweep_resumes_to_the_same_summary(tmp_path) -> None:
    whole = sweep(tmp_path, NoSmap(), "whole").run()
    r = Interrupting(after=5)
    r.name = "broken-no-smap"
    r.mode_of = NoSmap().mode_of            # the same broken walker, interrupted in its sixth batch
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path, r, "part").run()
    saved = json.load(open(tmp_path / "part" / "sweep.json"))
    assert saved["partial"] and 0 < saved["judged"] <= 5 * 250 and 0 < saved["next_index"] < SPACE.size
    assert "stopped at index" in open(tmp_path / "part" / "summary.txt").read()
    r.after = 10**9
    again = sweep(tmp_path, r, "part", resume=True).run()
    assert (again.judged, again.failed, again.passed) == (whole.judged, whole.failed, whole.passed)
    assert {k: v.count for k, v in again.classes.items()} == {k: v.count for k, v in whole.classes.items()}
    assert {k: v.first for k, v in again.classes.items()} == {k: v.first for k, v in whole.classes.items()}
    with pytest.raises(UsageError, match="--resume"):
        sweep(tmp_path, r, "part", resume=True, filter="cpl==0")


# --- the test kernel's wire format --------------------------------------------------------------------

def test_sweep_records_round_trip() -> None:
    """The kernel's 16-byte records: kind, vector, A/D, error code, and the value read or CR2."""
    items = build(SPACE, np.arange(4, dtype=np.int64))
    raw = (bytes([0, 0xFF]) + (0x55).to_bytes(2, "little") + (0).to_bytes(4, "little") + (0x300008CC).to_bytes(8, "little")
           + bytes([1, 14]) + (0x10).to_bytes(2, "little") + (0xD).to_bytes(4, "little") + (0x80C040).to_bytes(8, "little")
           + bytes([2, 0xFF]) + bytes(14)
           + bytes([1, 13]) + bytes(14))
    obs = parse_records(raw, items)
    assert obs.kind.tolist() == [0, 1, 4, 2] and obs.errcode.tolist() == [0, 0xD, 0, 0]
    assert obs.vector.tolist() == [-1, 14, -1, 13] and obs.ad.tolist() == [0x55, 0x10, 0, 0]
    assert int(obs.value[0]) == 0x300008CC and int(obs.cr2[1]) == 0x80C040 and int(obs.value[1]) == 0
    assert records_of(obs) == raw
    # any outcomes survive the round trip
    rng = np.random.default_rng(5)
    n = 500
    o = Observed.empty(n)
    o.kind = rng.choice([0, 1, 2, 3, 4], n).astype(np.uint8)
    exc = (o.kind == 1) | (o.kind == 2) | (o.kind == 3)
    o.vector = np.where(o.kind == 1, 14, np.where(o.kind == 2, 13, np.where(o.kind == 3, 6, -1))).astype(np.int16)
    o.errcode = np.where(exc, rng.integers(0, 1 << 16, n), 0).astype(np.uint32)
    o.cr2 = np.where(o.kind == 1, rng.integers(0, 2**63, n, dtype=np.uint64), 0).astype(np.uint64)
    o.value = np.where(o.kind == 0, rng.integers(0, 2**63, n, dtype=np.uint64), 0).astype(np.uint64)
    o.ad = np.where(o.kind == 4, 0, rng.integers(0, 1 << 10, n)).astype(np.uint16)
    back = parse_records(records_of(o), build(SPACE, np.arange(n, dtype=np.int64)))
    for f in ("kind", "vector", "errcode", "cr2", "value", "ad"):
        assert getattr(back, f).tolist() == getattr(o, f).tolist(), f
    # a kernel that could not stage one (kind 3), a short answer, an unknown kind: errors, not outcomes
    from memspec.errors import TargetError
    for bad in (raw[:48] + bytes([3, 0xFF]) + bytes(14), raw[:-1], raw[:48] + bytes([9, 0xFF]) + bytes(14)):
        with pytest.raises(TargetError):
            parse_records(bad, items)


def test_a_batch_is_sent_as_runs_of_consecutive_indexes() -> None:
    assert sweep_runs(np.array([3, 4, 5, 9, 11, 12])) == [(3, 3), (9, 1), (11, 2)]
    assert sweep_runs(np.array([], dtype=np.int64)) == []
    assert sweep_request(5, [(3, 3), (0xABC, 16)]) == ["z 5 3 3", "z 5 abc 10"]
    assert SWEEP_RECORD_SIZE == np.dtype([("k", "u1"), ("v", "u1"), ("a", "<u2"), ("e", "<u4"), ("x", "<u8")]).itemsize


# --- the emulators ------------------------------------------------------------------------------------

SHORT = ("variant in (none, leaf51, dir51) and leaf==4k and wp==1 and smep==0 and smap==0 and pk==off and nxe==1 "
         "and dir_rw==1 and dir_us==1 and dir_nx==0 and leaf_a==0 and leaf_d==0")
WITHOUT_P = "outcome | sdm.walk.{}.rsvd-maxphy | #PF | #PF error code without P"


@pytest.mark.parametrize("mode", ["4level", "5level"])
def test_a_short_sweep_of_qemu_system(tmp_path, mode) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        missing_peer("qemu-system-x86_64", "apt-get install -y --no-install-recommends qemu-system-x86")
    from memspec.targets.registry import make_target
    from memspec.targets.sweep import runner_for
    target = make_target("qemu-system")
    try:
        sw = sweep(tmp_path, runner_for(target), filter=SHORT, mode=mode)
        s = sw.run()
    finally:
        target.close()
    assert s.judged == sw.total == 3 * 2 * 2 * 3 * 2 * 16 and s.refused == 0
    # QEMU 7.2 drops P from reserved-bit error codes: one class per clause, explained, whatever the access
    assert sorted(s.classes) == [WITHOUT_P.format("pde"), WITHOUT_P.format("pte")], list(s.classes)
    pte, pde = s.classes[WITHOUT_P.format("pte")], s.classes[WITHOUT_P.format("pde")]
    assert pte.why and pde.why and pte.example in ("#PF 0xc where #PF 0xd", "#PF 0x8 where #PF 0x9")
    assert {"variant=leaf51", "leaf_p=1", "dir_p=1"} <= set(s.where(sw.space, pte))
    assert {"variant=dir51", "dir_p=1"} <= set(s.where(sw.space, pde))
    assert pte.count == s.judged // 12 and pde.count == s.judged // 6         # leaf51, dir_p, leaf_p / dir51, dir_p
    assert s.passed == s.judged - pte.count - pde.count and exit_code(s) == 0


def test_a_kernel_with_the_write_bit_inverted_is_caught(tmp_path) -> None:
    """The test kernel built wrong on purpose (-DMEMSPEC_BROKEN_ERRCODE: W/R of every #PF inverted):
    every #PF is one unexplained class by the bit that differs."""
    if shutil.which("qemu-system-x86_64") is None:
        missing_peer("qemu-system-x86_64", "apt-get install -y --no-install-recommends qemu-system-x86")
    from memspec.targets.qemu_system import QemuSystemTarget, build_kernel
    from memspec.targets.sweep import KernelRunner
    target = QemuSystemTarget(timeout=5.0, image=build_kernel(("-DMEMSPEC_BROKEN_ERRCODE",)))
    try:
        s = sweep(tmp_path, KernelRunner(target), filter=SHORT + " and variant==none and cpl==3").run()
    finally:
        target.close()
    assert exit_code(s) == 1 and s.failed > 0
    titles = {k.split(" | ")[3] for k, r in s.classes.items() if not r.why}
    assert titles == {"#PF error code with W", "#PF error code without W"}, s.classes.keys()


class DiesAfter(ModelRunner):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def run(self, items: Items) -> Observed:
        from memspec.errors import TargetError
        self.after -= 1
        if self.after < 0:
            raise TargetError("the guest stopped answering")
        return super().run(items)


def test_a_target_that_dies_leaves_a_checkpoint(tmp_path) -> None:
    from memspec.errors import TargetError
    with pytest.raises(TargetError):
        sweep(tmp_path, DiesAfter(3)).run()
    saved = json.load(open(tmp_path / "out" / "sweep.json"))
    assert saved["partial"] and 0 < saved["judged"] <= 3 * 250


def test_a_short_sweep_of_unicorn(tmp_path) -> None:
    import importlib.util
    if importlib.util.find_spec("unicorn") is None:
        missing_peer("unicorn", "pip install unicorn==2.1.4")
    from memspec.targets.registry import make_target
    from memspec.targets.sweep import runner_for
    target = make_target("qemu")
    try:
        s = sweep(tmp_path, runner_for(target), filter=SHORT + " and cpl==3").run()
    finally:
        target.close()
    # unicorn's QEMU 5.0 reports P|RSVD: no class at all
    assert s.judged == 3 * 2 * 3 * 2 * 16 and s.failed == 0 and not s.classes and s.refused == 0


def test_a_short_sweep_of_bochs(tmp_path) -> None:
    """The same kernel under Bochs (serial line only): the same space, its own answers."""
    from memspec.targets.bochs import BOCHS
    if shutil.which(BOCHS) is None:
        missing_peer("bochs", "apt-get install -y --no-install-recommends bochs bochsbios vgabios bochs-term")
    from memspec.targets.registry import make_target
    from memspec.targets.sweep import runner_for
    target = make_target("bochs")
    try:
        runner = runner_for(target)
        assert runner.facts["maxphyaddr"] == 40 and not runner.facts["la57"]
        s = sweep(tmp_path, runner, filter=SHORT + " and cpl==3 and access==read").run()
        five = sweep(tmp_path, runner, "five", filter=SHORT, mode="5level").run()
    finally:
        target.close()
    # Bochs 2.7 pushes P|RSVD: nothing differs; its CPU models have no LA57: that mode is unsupported
    assert s.judged == 3 * 2 * 2 * 16 and s.failed == 0 and not s.classes and s.refused == 0
    assert five.judged == 0 and five.unsupported == {"5-level paging (CR4.LA57)": 3 * 2 * 2 * 3 * 2 * 16}


def _qemu_system():
    if shutil.which("qemu-system-x86_64") is None:
        missing_peer("qemu-system-x86_64", "apt-get install -y --no-install-recommends qemu-system-x86")
    from memspec.targets.registry import make_target
    return make_target("qemu-system")


@pytest.mark.parametrize("mode", ["4level", "5level"])
def test_the_kernel_decodes_indexes_as_the_host_builds_them(mode) -> None:
    """The kernel's own enumeration (``y levels index``) gives, for random indexes, the control registers,
    address, access and entries that ``sweepspace.build`` gives for them; an index outside the space is
    refused."""
    space = Space(mode)
    idx = np.unique(np.concatenate([[0, space.size - 1],
                                    np.random.default_rng(11).integers(0, space.size, 400)]))
    target = _qemu_system()
    try:
        got = target.guest_exchange([f"y {space.levels:x} {int(i):x}" for i in idx] + [f"y 4 {space.size:x}", "y 3 0"])
    finally:
        target.close()
    want = decoded_args(build(space, idx))
    assert [[int(x, 16) for x in r.split()[1:]] for r in got[:-2]] == want
    assert all(r.startswith("v ") for r in got[:-2]) and got[-2][0] == "e" and got[-1][0] == "e"


class _WrongRecords:
    """A kernel runner whose records are altered on the way in: one seeded wrong outcome."""

    def __init__(self, runner, at: int) -> None:
        self.r, self.at = runner, at
        self.name, self.facts, self.modes, self.pipelined = runner.name, runner.facts, runner.modes, False

    def run(self, items: Items) -> Observed:
        obs = self.r.run(items)
        hit = np.flatnonzero(items.index == self.at)
        if hit.size:
            i = int(hit[0])
            assert obs.kind[i] == PF
            obs.errcode[i] ^= 4         # U/S flipped in one #PF's error code
        return obs


def test_a_seeded_wrong_outcome_and_a_wrong_reference_are_caught(tmp_path, monkeypatch) -> None:
    """One record altered (a #PF's U/S bit) is one unexplained class of one combination; and a reference
    that ignores SMAP, judging the honest kernel, yields classes where the kernel honours SMAP."""
    from memspec.targets.sweep import KernelRunner
    flt = SHORT + " and variant==none and cpl==3"
    space = Space("4level")
    sel = parse_filter(flt, space).select(space, np.arange(space.size, dtype=np.int64))
    items = build(space, sel)
    from memspec.specs.sweep import reference
    ref = reference(items, {"maxphyaddr": 48})
    at = int(sel[int(np.flatnonzero(ref.fault)[0])])
    target = _qemu_system()
    try:
        runner = KernelRunner(target)
        s = sweep(tmp_path, _WrongRecords(runner, at), "seeded", filter=flt).run()
        assert exit_code(s) == 1 and s.failed == 1 and len(s.classes) == 1
        (rec,) = s.classes.values()
        assert rec.first == at and not rec.why
        # the honest kernel against a reference that ignores SMAP, on CPL 0 data accesses to user pages
        import memspec.specs.sweep as judge_mod
        real = judge_mod.reference

        def no_smap(items, facts):
            return real(Items(**{**items.__dict__, "cr4": items.cr4 & ~np.uint64(CR4_SMAP)}), facts)
        monkeypatch.setattr(judge_mod, "reference", no_smap)
        s2 = sweep(tmp_path, runner, "nosmap", filter="variant==none and leaf==4k and smap==1 and pk==off and cpl==0 "
                   "and nxe==1 and access==read and dir_p==1 and dir_us==1 and leaf_p==1 and leaf_us==1").run()
    finally:
        target.close()
    # the kernel faults where AC = 0 (SMAP), the broken reference allows: one unexplained class, half of them
    assert exit_code(s2) == 1 and list(s2.classes) == ["outcome | sdm.access.smap-ac-override | allowed | #PF 0x1"]
    (cls,) = s2.classes.values()
    assert cls.count == s2.judged // 2 == 256 and not cls.why and "ac=0" in s2.where(Space("4level"), cls)


class _FakeKernel:
    """A target whose kernel decodes indexes like ``build`` but with PKRU.WD and AD swapped (or not)."""

    name = "qemu-system"

    def __init__(self, swap: bool) -> None:
        self.swap = swap

    def facts(self) -> dict:
        return {"maxphyaddr": 48, "la57": True, "page1g": True, "smep": True, "smap": True, "pku": True, "nx": True}

    def reset_line(self) -> str:
        return "R"

    def guest_exchange(self, lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            if not line.startswith("y "):
                out.append("k")
                continue
            _, levels, index = line.split()
            row = decoded_args(build(Space(f"{int(levels, 16)}level"), np.array([int(index, 16)])))[0]
            if self.swap and row[4] in (4, 8):
                row[4] ^= 12
            out.append("v " + " ".join(f"{v:x}" for v in row))
        return out


@pytest.mark.parametrize("mode", ["4level", "5level"])
def test_a_kernel_that_enumerates_another_space_is_refused(mode) -> None:
    from memspec.errors import TargetError
    from memspec.targets.sweep import KernelRunner
    items = build(Space(mode), np.arange(1000, 1100, dtype=np.int64))
    KernelRunner(_FakeKernel(False)).check_decoding(items)
    with pytest.raises(TargetError, match="enumerate different spaces"):
        KernelRunner(_FakeKernel(True)).check_decoding(items)
