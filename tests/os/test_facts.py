"""The os model under every value of every host fact: each value implies an outcome, and a
model that assumed another value would reject it (the judge fails the run)."""

from __future__ import annotations

from typing import Any

import pytest

from memspec.fuzz.layers import random_programs
from memspec.specs.directed import suite_programs
from memspec.fuzz.differential import execute
from memspec.model.mm import Config, kernel_version
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge
from memspec.targets.model import ModelSession, ModelTarget

W = 0x100000000000          # the sandbox window: MAP_FIXED there is safe on every target


def ok(v: int = 0) -> Outcome:
    return Outcome(value=v)


def err(e: str) -> Outcome:
    return Outcome(value=-1, errno=e)


def sig(s: str) -> Outcome:
    return Outcome(signal=s)


def failed(facts: dict[str, Any], text: str, outcomes: list[Outcome]) -> str | None:
    """The clause that fails when the model, built from ``facts``, judges these outcomes."""
    p = parse(text)
    assert len(p.calls) == len(outcomes)
    j = judge(p, RunResult(tuple(outcomes), ()), "t", facts, invariants=True)
    return j.failure.clause if j.failure else None


def holds_only_under(fact: str, values: dict[Any, list[Outcome]], text: str, base: dict[str, Any] | None = None,
                     clauses: dict[Any, str] | None = None) -> None:
    """Each value's outcomes pass under that value and fail under every other value."""
    for v, outs in values.items():
        assert failed(dict(base or {}, **{fact: v}), text, outs) is None, (fact, v)
        for other in values:
            if other == v or values[other] == outs:
                continue
            got = failed(dict(base or {}, **{fact: other}), text, outs)
            assert got is not None, (fact, other, "accepted the outcomes of", v)
            if clauses and other in clauses:
                assert got == clauses[other], (fact, other, got)


# --- PKU: PROT_EXEC alone ------------------------------------------------------

EXEC_ONLY = f"""e = mmap({W:#x}, 0x2000, PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)
x = load(e)
r = mlock(e, 0x1000)
m = mincore(e, 0x2000)
"""


def test_exec_only_read_and_mlock_follow_the_fact():
    holds_only_under("exec_only", {
        True: [ok(W), sig("SIGSEGV"), err("ENOMEM"), ok(0)],
        False: [ok(W), ok(0), ok(0), ok(0b01)],
    }, EXEC_ONLY, clauses={True: "linux.x86.exec-only-pkey", False: "linux.x86.exec-implies-read"})


def test_exec_only_populate_and_mprotect_follow_the_fact():
    text = f"""e = mmap({W:#x}, 0x1000, PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_POPULATE, -1, 0)
m = mincore(e, 0x1000)
a = mmap({W + 0x10000:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)
store(a, 0x41)
r = mprotect(a, 0x1000, PROT_EXEC)
x = load(a)
r2 = mprotect(a, 0x1000, PROT_READ|PROT_EXEC)
y = load(a)
"""
    holds_only_under("exec_only", {
        True: [ok(W), ok(0), ok(W + 0x10000), Outcome(), ok(0), sig("SIGSEGV"), ok(0), ok(0x41)],
        False: [ok(W), ok(1), ok(W + 0x10000), Outcome(), ok(0), ok(0x41), ok(0), ok(0x41)],
    }, text)


def test_exec_only_read_past_a_files_end_is_sigsegv_under_pku():
    # arch/x86/mm/fault.c access_error checks the key before the fault is handled: no SIGBUS
    text = f"""fd = memfd_create("f", 0)
e = mmap({W:#x}, 0x1000, PROT_EXEC, MAP_SHARED|MAP_FIXED, fd, 0)
x = load(e)
"""
    holds_only_under("exec_only", {True: [ok(3), ok(W), sig("SIGSEGV")], False: [ok(3), ok(W), sig("SIGBUS")]},
                     text)


def test_pku_fact_stands_in_when_exec_only_is_not_reported():
    assert Config.from_facts({"pku": False}).exec_only is False
    assert Config.from_facts({"pku": True}).exec_only is True
    assert Config.from_facts({"pku": True, "exec_only": False}).exec_only is False


class _ModelWith(ModelTarget):
    """The model target taking its choices under given facts."""

    def __init__(self, facts: dict[str, Any]):
        super().__init__()
        self._facts = facts

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def session(self, layer: str = "os") -> ModelSession:
        return ModelSession(layer, self._facts)


@pytest.mark.parametrize("exec_only", [True, False])
def test_model_target_passes_its_own_check_under_each_pku_value(exec_only):
    facts = {"exec_only": exec_only}
    t = _ModelWith(facts)
    progs = list(suite_programs("os")) + list(random_programs("os", 300, 1, None))
    for origin, p in progs:
        j = execute(t, p, facts)
        assert j.failure is None, (origin, j.failure)


# --- every other fact ---------------------------------------------------------------

def passes(facts: dict[str, Any], text: str, outcomes: list[Outcome]) -> bool:
    return failed(facts, text, outcomes) is None


MAP_RW = "PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0"


def test_mmap_min_addr():
    text = "a = mmap(0x8000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
    holds_only_under("mmap_min_addr", {4096: [ok(0x8000)], 65536: [err("EPERM")]}, text,
                     base={"cap_sys_rawio": False}, clauses={65536: "linux.mmap.eperm-below-min-addr"})
    # CAP_SYS_RAWIO (root) may map below it whatever its value
    assert passes({"mmap_min_addr": 65536, "cap_sys_rawio": True}, text, [ok(0x8000)])


def test_task_size_four_or_five_level_paging():
    text = f"a = mmap({1 << 47:#x}, 0x1000, {MAP_RW})\n"
    holds_only_under("task_size", {(1 << 47) - 4096: [err("ENOMEM")], (1 << 56) - 4096: [ok(1 << 47)]}, text)


def _thp(madvise: bool) -> str:
    return (f"a = mmap({W:#x}, 0x200000, {MAP_RW})\n"
            + ("r = madvise(a, 0x200000, MADV_HUGEPAGE)\n" if madvise else "")
            + "store(a, 1)\nh = thp_mapped(a)\n")


@pytest.mark.parametrize("defrag", ["always", "defer", "defer+madvise", "madvise", "never"])
def test_thp_mode_and_defrag(defrag):
    plain, advised = _thp(False), _thp(True)
    huge, small = [ok(W), Outcome(), ok(1)], [ok(W), Outcome(), ok(0)]
    f = {"thp_defrag": defrag}
    # always: any anonymous range may get a huge page (or fall back: defrag only changes the odds)
    assert passes(dict(f, thp="always"), plain, huge) and passes(dict(f, thp="always"), plain, small)
    # madvise: only an advised range; never: none
    assert not passes(dict(f, thp="madvise"), plain, huge) and passes(dict(f, thp="madvise"), plain, small)
    assert passes(dict(f, thp="madvise"), advised, [ok(W), ok(0), Outcome(), ok(1)])
    assert not passes(dict(f, thp="never"), advised, [ok(W), ok(0), Outcome(), ok(1)])
    assert passes(dict(f, thp="never"), advised, [ok(W), ok(0), Outcome(), ok(0)])


def test_numa_nodes():
    text = f"a = mmap({W:#x}, 0x1000, {MAP_RW})\nr = mbind(a, 0x1000, MPOL_BIND, 2)\n"
    holds_only_under("nodes", {1: [ok(W), err("EINVAL")], 2: [ok(W), ok(0)]}, text)


def test_swap_lets_pageout_take_anonymous_pages():
    text = (f"a = mmap({W:#x}, 0x1000, {MAP_RW})\nstore(a, 7)\nr = madvise(a, 0x1000, MADV_PAGEOUT)\n"
            "m = mincore(a, 0x1000)\nx = load(a)\n")
    swapped = [ok(W), Outcome(), ok(0), ok(0), ok(7)]
    kept = [ok(W), Outcome(), ok(0), ok(1), ok(7)]
    assert passes({"swap_pages": 0}, text, kept) and not passes({"swap_pages": 0}, text, swapped)
    assert passes({"swap_pages": 1 << 18}, text, kept) and passes({"swap_pages": 1 << 18}, text, swapped)
    # the data survives either way
    assert not passes({"swap_pages": 1 << 18}, text, swapped[:-1] + [ok(0)])


def test_overcommit_modes():
    big = f"a = mmap({W:#x}, {2000 * 4096:#x}, {MAP_RW})\n"
    small = f"a = mmap({W:#x}, {400 * 4096:#x}, {MAP_RW})\n"
    noreserve = f"a = mmap({W:#x}, {2000 * 4096:#x}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_NORESERVE, -1, 0)\n"
    base = {"ram_pages": 1000, "swap_pages": 0, "overcommit_ratio": 50}
    holds_only_under("overcommit_memory", {0: [err("ENOMEM")], 1: [ok(W)]}, big, base=base,
                     clauses={0: "linux.mmap.enomem-overcommit"})
    assert failed(dict(base, overcommit_memory=2), big, [ok(W)]) == "linux.mmap.enomem-overcommit"
    # mode 2 under the commit limit: what the rest of the machine committed decides
    assert passes(dict(base, overcommit_memory=2), small, [ok(W)])
    assert passes(dict(base, overcommit_memory=2), small, [err("ENOMEM")])
    assert not passes(dict(base, overcommit_memory=0), small, [err("ENOMEM")])
    assert not passes(dict(base, overcommit_memory=1), small, [err("ENOMEM")])
    # the ratio sets the limit: 400 pages fit 50% of 1000 but not 30%
    assert failed(dict(base, overcommit_memory=2, overcommit_ratio=30), small, [ok(W)]) == "linux.mmap.enomem-overcommit"
    # MAP_NORESERVE is not charged, except under mode 2
    assert passes(dict(base, overcommit_memory=0), noreserve, [ok(W)])
    assert not passes(dict(base, overcommit_memory=2), noreserve, [ok(W)])
    # mprotect making private memory writable is charged too
    mp = f"a = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\nr = mprotect(a, 0x1000, PROT_READ|PROT_WRITE)\n"
    assert passes(dict(base, overcommit_memory=2), mp, [ok(W), err("ENOMEM")])
    assert not passes(dict(base, overcommit_memory=1), mp, [ok(W), err("ENOMEM")])


def test_max_map_count():
    text = f"a = mmap({W:#x}, 0x1000, {MAP_RW})\n"
    assert passes({"max_map_count": 120, "base_maps": 100}, text, [err("ENOMEM")])
    assert failed({"max_map_count": 65530, "base_maps": 100}, text, [err("ENOMEM")]) == "posix.mmap.fixed-exact"
    assert passes({"max_map_count": 65530, "base_maps": 100}, text, [ok(W)])


def test_page_size():
    text = f"a = mmap({W:#x}, 0x1000, {MAP_RW})\n"
    assert passes({"page_size": 16384}, text, [err("EINVAL")])       # not modelled: unknown, never a failure
    assert not passes({"page_size": 4096}, text, [err("EINVAL")])
    j = judge(parse(text), RunResult((err("EINVAL"),), ()), "t", {"page_size": 16384})
    assert [c.verdict.value for c in j.checks] == ["unknown"]


def test_kernel_version():
    droppable = f"a = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, 0x28, -1, 0)\n"
    holds_only_under("kernel", {"6.10.0": [err("EINVAL")], "6.11.2-arch1": [ok(0x7F0000000000 - 0x1000)]}, droppable)
    pageout = f"a = mmap({W:#x}, 0x1000, {MAP_RW})\nr = madvise(a, 0x1000, MADV_PAGEOUT)\n"
    holds_only_under("kernel", {"5.3.18": [ok(W), err("EINVAL")], "5.4.0": [ok(W), ok(0)]}, pageout)
    dontunmap = (f"a = mmap({W:#x}, 0x1000, {MAP_RW})\n"
                 f"b = mremap(a, 0x1000, 0x1000, MREMAP_MAYMOVE|MREMAP_DONTUNMAP, {W + 0x100000:#x})\n")
    assert failed({"kernel": "5.6.0"}, dontunmap, [ok(W), ok(W + 0x100000)]) == "linux.mremap.einval-flags"
    noreplace = (f"a = mmap({W:#x}, 0x1000, {MAP_RW})\n"
                 f"b = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n")
    assert passes({"kernel": "6.1.0"}, noreplace, [ok(W), err("EEXIST")])
    assert not passes({"kernel": "6.1.0"}, noreplace, [ok(W), ok(W + 0x2000)])
    assert passes({"kernel": "4.14.0"}, noreplace, [ok(W), ok(W + 0x2000)])    # a hint there: not modelled


def test_rlimit_as_and_data():
    rw = f"a = mmap({W:#x}, 0x200000, {MAP_RW})\n"
    ro = f"a = mmap({W:#x}, 0x200000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
    holds_only_under("rlimit_as", {1 << 20: [err("ENOMEM")], -1: [ok(W)]}, rw, clauses={1 << 20: "linux.mmap.enomem-rlimit-as"})
    holds_only_under("rlimit_data", {1 << 20: [err("ENOMEM")], -1: [ok(W)]}, rw,
                     clauses={1 << 20: "linux.mmap.enomem-rlimit-data"})
    # RLIMIT_DATA counts private writable memory only
    assert passes({"rlimit_data": 1 << 20}, ro, [ok(W)])
    assert not passes({"rlimit_data": 1 << 20}, ro, [err("ENOMEM")])
    # near RLIMIT_AS (the process's own mappings count too) either answer
    assert passes({"rlimit_as": 1 << 24, "base_vm": 15 << 20}, rw, [err("ENOMEM")])
    assert passes({"rlimit_as": 1 << 24, "base_vm": 15 << 20}, rw, [ok(W)])


def test_rlimit_nofile():
    text = "r = pipe()\n"
    assert passes({"rlimit_nofile": 16}, text, [err("EMFILE")])
    assert failed({"rlimit_nofile": 20000}, text, [err("EMFILE")]) == "posix.pipe.creates"
    assert failed({"rlimit_nofile": -1}, text, [err("EMFILE")]) == "posix.pipe.creates"


def test_cap_setuid():
    text = "p2 = fork()\np2: r = drop_privileges()\np2: r2 = drop_privileges()\n"
    holds_only_under("cap_setuid", {True: [ok(2), ok(0), err("EPERM")], False: [ok(2), err("EPERM"), err("EPERM")]}, text,
                     clauses={False: "posix.setuid.eperm", True: "posix.setuid.drops-capabilities"})


def test_cap_dac_override_and_umask():
    own = 'fd = shm_open("/o", O_CREAT|O_RDWR, 0)\nfd2 = shm_open("/o", O_RDWR, 0)\n'
    holds_only_under("cap_dac_override", {True: [ok(3), ok(4)], False: [ok(3), err("EACCES")]}, own)
    # the umask decides the new object's mode: others may write it after 0 but not after 022
    other = ('fd = shm_open("/u", O_CREAT|O_RDWR, 438)\np2 = fork()\np2: r = drop_privileges()\n'
             'p2: fd2 = shm_open("/u", O_RDWR, 0)\n')
    holds_only_under("umask", {0: [ok(3), ok(2), ok(0), ok(4)], 0o022: [ok(3), ok(2), ok(0), err("EACCES")]}, other)
    # after dropping them, the sticky /dev/shm keeps another's name (CAP_FOWNER gone)
    unlink = 'fd = shm_open("/s", O_CREAT|O_RDWR, 438)\np2 = fork()\np2: r = drop_privileges()\np2: r2 = shm_unlink("/s")\n'
    assert passes({}, unlink, [ok(3), ok(2), ok(0), err("EACCES")])
    assert failed({}, unlink, [ok(3), ok(2), ok(0), ok(0)]) == "posix.shm_unlink.eacces"


def test_memlock_and_cap_ipc_lock():
    text = f"a = mmap({W:#x}, 0x1000, {MAP_RW})\nr = set_memlock_limit(0)\nr2 = mlock(a, 0x1000)\n"
    holds_only_under("privileged", {True: [ok(W), ok(0), ok(0)], False: [ok(W), ok(0), err("EPERM")]}, text,
                     clauses={False: "linux.mlock.eperm-no-limit"})
    raise_ = "r = set_memlock_limit(0x1000000)\n"
    holds_only_under("memlock_hard", {8 << 20: [err("EINVAL")], 32 << 20: [ok(0)]}, raise_)


# facts a target reports that the os model does not read, and why
INFORMATIONAL = {
    "pku": "the CPU's flags; the model reads exec_only, the probed behaviour (pku stands in when it is absent)",
    "kernel": "read as Config.kernel (parsed)",
    "shm_private": "the linux target's own isolation of /dev/shm (decides its not-observable clauses)",
    "pagemap_pfns": "the linux target refuses pfn_of without it (verdict unsupported)",
    "quiet_ranges": "read as Config.quiet_ranges",
    "impl_version": "the implementation's version: read by the cited differences (specs/directed.py), not by the model",
}


def test_config_reads_every_fact_the_linux_target_reports():
    import dataclasses

    from memspec.targets.linux import LinuxTarget
    fields = {f.name for f in dataclasses.fields(Config)}
    facts = LinuxTarget().facts()
    unread = sorted(k for k in facts if k not in fields and k not in INFORMATIONAL)
    assert not unread, unread
    c = Config.from_facts(facts)
    for k in facts:
        if k in fields and k not in ("quiet_ranges", "kernel"):
            want = tuple(facts[k]) if isinstance(facts[k], list) else facts[k]     # JSON lists, held as tuples
            assert getattr(c, k) == want, k
    assert c.kernel == kernel_version(facts["kernel"]) and c.kernel is not None


@pytest.mark.parametrize("exec_only", [True, False])
def test_state_machine_on_the_model_under_each_pku_value(exec_only):
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from memspec.specs.machine_os import machine
    facts = {"exec_only": exec_only}
    run_state_machine_as_test(machine(_ModelWith(facts), facts), settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
