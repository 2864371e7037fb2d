"""What the os state machine checks, and when: each step's calls are judged at once; after each
step the model's laws run over what the step touched (its footprint); every ``observe_every``
calls, and at the end of a run, the target's memory maps are compared with the model's and the
laws recounted over the whole state.  Each of these catches a broken model or target that the
others miss."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from memspec.calls import CALLS
from memspec.model import invariants as inv
from memspec.model.mm import Config, System, new_model
from memspec.model.pages import MemObject
from memspec.model.invariants import CHECKS
from memspec.specs import machine_os
from memspec.specs.failures import ConformanceFailure
from memspec.specs.machine_rules import law_of
from memspec.targets.model import ModelSession, ModelTarget

ROOT = Path(__file__).resolve().parents[2]
NEVER = 10 ** 9     # observe_every: no checkpoint before the end of a run


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


catches = _load(ROOT / "tests" / "specs" / "test_judge_catches.py", "_machine_judge_catches")


def _run(cls: type, examples: int = 300) -> ConformanceFailure | None:
    """The first failure of the machine ``cls`` in ``examples`` runs of up to 30 steps (generation
    only, derandomised: the same runs every time), or None."""
    try:
        run_state_machine_as_test(cls, settings=settings(
            max_examples=examples, stateful_step_count=30, deadline=None, database=None, derandomize=True,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck), report_multiple_bugs=False))
    except ConformanceFailure as e:
        return e
    return None


def _close_only(self) -> None:
    self.session.close()


def _without_end(cls: type) -> type:
    """The machine with the end of a run checking nothing (a deliberately broken machine); the same
    class, so that its derandomised runs are the same as the whole machine's."""
    cls.teardown = _close_only
    return cls


@pytest.fixture
def footprint_always(monkeypatch):
    """Every step through the footprint check, however small the state (a small state is
    otherwise recounted whole, which would leave the footprint path untested here)."""
    monkeypatch.setattr(inv, "SMALL", 0)


# broken models of the model's own state, each breaking a law on steps the machine takes.  (A
# private page munmap leaves behind, catches.StalePrivateContents, is left out: in some runs a
# later mincore sees the stale page before any law does -- caught, but by the call's clause, which
# is not what this test is about; tests/os/test_incremental_invariants.py holds the footprint check
# to catching it.)
STEP_CASES = [catches.OverlappingVmas, catches.LeakySharedObjects]
LAWS = {f.__name__ for f in CHECKS}


@pytest.mark.parametrize("broken", STEP_CASES, ids=[c.__name__ for c in STEP_CASES])
def test_the_step_check_catches_each_broken_model_by_itself(broken, footprint_always) -> None:
    # no checkpoint, and nothing at the end: only the check over each step's footprint
    m = _without_end(machine_os.machine(ModelTarget(), {}, observe_every=NEVER, model=lambda: broken(Config())))
    e = _run(m)
    assert e is not None and e.clause.startswith("memspec.inv."), e
    assert any(f"model invariant broken: {law}" in str(e) for law in LAWS), e   # it names the law that broke


class LeavesAnOrphanObject(System):
    """After its first ``load`` since its state was first checked it holds a memory object that
    nothing maps, opens or names, put in its table of objects behind the table's back: no footprint
    holds it, only a recount of the whole state sees it (``objects_live_while_used``)."""

    def apply(self, proc, name, args, outcome):
        super().apply(proc, name, args, outcome)
        if name == "load" and self.checked_procs is not None and ORPHAN not in self.objects:
            dict.__setitem__(self.objects, ORPHAN, MemObject(ORPHAN, "memfd", 0))


ORPHAN = 1 << 20


def _orphan_machine(every: int, end: bool = True) -> type:
    # without fork (and exit) and the OOM killer: a change of the processes makes the next step's
    # check a whole recount
    t = ModelTarget()
    t.calls = frozenset(c.name for c in CALLS.values() if c.layer == "os") - {"fork", "oom"}
    m = machine_os.machine(t, {}, observe_every=every, model=lambda: LeavesAnOrphanObject(Config()))
    return m if end else _without_end(m)


def test_what_no_footprint_holds_is_caught_at_a_checkpoint(footprint_always) -> None:
    e = _run(_orphan_machine(machine_os.OBSERVE_EVERY, end=False), examples=30)
    assert e is not None and e.clause == "memspec.inv.shared-object-exists", e


def test_what_no_footprint_holds_is_caught_at_the_end_of_a_run(footprint_always) -> None:
    e = _run(_orphan_machine(NEVER), examples=30)
    assert e is not None and e.clause == "memspec.inv.shared-object-exists", e
    # the control: with neither checkpoints nor the end's recount, the footprint check misses it
    assert _run(_orphan_machine(NEVER, end=False), examples=30) is None


class _MapLiar(ModelSession):
    """A target whose memory map shows every mapping as rwxp."""

    def observe(self):
        obs = super().observe()
        return replace(obs, maps=tuple((p, tuple(replace(m, perms="rwxp") for m in ms)) for p, ms in obs.maps))


class _LyingTarget(ModelTarget):
    def session(self, layer="os"):
        return _MapLiar(layer)


@pytest.mark.parametrize("every", [1, machine_os.OBSERVE_EVERY, NEVER])
def test_a_wrong_memory_map_is_caught_at_a_checkpoint_or_the_end(every) -> None:
    e = _run(machine_os.machine(_LyingTarget(), {}, observe_every=every), examples=20)
    assert e is not None and "rwxp" in e.observed, e


def test_without_checkpoints_and_the_end_a_wrong_memory_map_goes_unseen() -> None:
    assert _run(_without_end(machine_os.machine(_LyingTarget(), {}, observe_every=NEVER)), examples=20) is None


def test_a_failing_call_is_reported_as_itself_not_as_the_end_checks() -> None:
    # the end of a run that already failed checks nothing more: the call's own clause is reported
    fd_seal = _load(ROOT / "tests" / "os" / "broken_fd_seal.py", "_machine_broken_fd_seal")
    e = _run(machine_os.machine(fd_seal.target("mseal-first-page"), {}, observe_every=NEVER), examples=300)
    assert e is not None and e.clause == "linux.mseal.eperm", e


def test_law_of_names_the_check_that_reports_a_clause() -> None:
    s = new_model({})
    for name, args in (("mmap", (0x100000000000, 0x1000, 3, 0x22, -1, 0)), ("store", (0x100000000000, 1))):
        o = s.expect("main", name, args).default
        s.apply("main", name, args, o)
    assert law_of(s, "memspec.inv.mapcount-matches", CHECKS).startswith("no single law")
    s.procs["main"].anon[0x100000000000].mapcount += 1
    assert law_of(s, "memspec.inv.mapcount-matches", CHECKS) == "mapcounts_match_mappers"


class _ObserveCrasher(ModelSession):
    """A target that answers calls but dies when its memory maps are read (its harness crashed)."""

    def observe(self):
        from memspec.errors import SessionFailed
        from memspec.records import RunStatus
        raise SessionFailed(RunStatus.CRASH, "target died while its maps were read")


class _CrashesWhenObserved(ModelTarget):
    def session(self, layer="os"):
        return _ObserveCrasher(layer)


@pytest.mark.parametrize("every", [1, NEVER])
def test_a_target_that_dies_when_observed_is_a_failure_not_a_crash_of_the_machine(every) -> None:
    # a checkpoint or the end of a run reads the maps: the crash is the target's, reported as
    # memspec.target.alive with the program so far (it used to escape the machine and end check)
    e = _run(machine_os.machine(_CrashesWhenObserved(), {}, observe_every=every), examples=5)
    assert e is not None and e.clause == "memspec.target.alive", e
    assert "died while its maps were read" in e.observed
