"""The ``uml`` target: the native agent as a process of Linux 6.1 run as a program (User-mode
Linux).  It boots once and answers the hello with the facts probed inside the guest kernel (its
release, its smaller address space, its RAM, the advice it knows); a call the kernel lacks is
not applicable; every disagreement on the os suite is a cited difference of
specs/differences-uml.toml (or the one model gap named below); a missing linux.uml names its
install command."""

from __future__ import annotations

import os

import pytest

from memspec.errors import TargetError
from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import RunStatus
from memspec.specs.directed import excused_by, load_differences, suite_programs
from memspec.targets.uml import APT_HINT, LINUX_UML, find_linux_uml

from ..conftest import GCC, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="linux.uml runs on Linux")


uml = target_fixture("uml", (LINUX_UML, "user-mode-linux", f"the uml target needs {LINUX_UML}: {APT_HINT}"), GCC)


def test_a_missing_linux_uml_names_the_install_command():
    with pytest.raises(TargetError, match="apt-get install -y user-mode-linux"):
        find_linux_uml("linux.uml-not-installed-here")


def test_it_boots_and_the_facts_are_the_guest_kernels(uml):
    f = uml.facts()
    assert f["kernel"] == f["impl_version"] and f["kernel"].startswith("6.1.")
    # UML's address space: 3-level page tables, 39 bits, well below where x86-64's ends
    assert (1 << 36) < f["task_size"] < (1 << 39)
    assert 0 < f["ram_pages"] < (300 << 20) // 4096        # mem=256M, not the host's RAM
    assert f["page_size"] == 4096 and f["nodes"] == 1 and f["exec_only"] is False
    # advice the 6.1 kernel does not know (MADV_GUARD_*: 6.13) is not in the probed set
    assert 4 in f["madv_known"] and 102 not in f["madv_known"]
    assert any("Linux version 6.1" in line for line in uml.boot_log)
    assert f["kernel_log"] is uml.kernel_log


def test_a_call_the_kernel_lacks_is_not_applicable(uml):
    # no NUMA in this kernel: the system calls are ENOSYS, so the calls are left out
    missing = [u.split(":")[0] for u in uml.unsupported() if u.endswith("ENOSYS")]
    assert "mbind" in missing and "mbind" not in uml.calls and "get_node" not in uml.calls
    assert {"mmap", "munmap", "mprotect", "load", "store", "fetch", "fork", "mremap"} <= uml.calls


def test_many_programs_on_one_boot(uml):
    peer = uml._live
    p = parse("a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              "store(a, 5)\nmprotect(a+0x1000, 0x1000, PROT_READ)\nstore(a+0x1000, 1)\n"
              "p2 = fork()\np2: store(a, 6)\nx = load(a)\np2: y = load(a)\n")
    for _ in range(3):
        run = uml.run(p)
        assert run.status is RunStatus.OK, run.message
        o = run.outcomes
        assert o[3].signal == "SIGSEGV" and (o[6].value, o[7].value) == (5, 6)
    assert uml._live is peer                                  # the same kernel answered all three


def test_every_disagreement_on_the_suite_is_explained(uml):
    diffs = load_differences()
    facts = uml.facts()
    judged, excused, bad = 0, 0, []
    for name, p in suite_programs("os"):
        if any(c.name not in uml.calls for c in p.calls):
            continue
        j = execute(uml, p, facts)
        judged += 1
        f = j.failure
        if f is None or j.status is RunStatus.REFUSED:
            continue
        if excused_by(diffs, uml.name, f.clause, f.observed, facts):
            excused += 1
        else:
            bad.append((name, f.clause, f.verdict.name, f.observed, j.message))
    assert not bad, bad
    assert judged >= 35 and excused >= 1                       # 04-prot-enforced: no NX on UML


def test_the_differences_are_uml_and_this_outcome_only(uml):
    diffs = load_differences()
    facts = uml.facts()
    j = execute(uml, parse("r = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nfetch(r)\n"), facts)
    assert j.failure is not None and j.failure.clause == "linux.x86.nx-enforced" and j.failure.observed == "ok"
    assert excused_by(diffs, "uml", j.failure.clause, j.failure.observed, facts).id == "uml-no-nx"
    assert excused_by(diffs, "linux", j.failure.clause, j.failure.observed, facts) is None
    assert excused_by(diffs, "uml", j.failure.clause, "SIGBUS", facts) is None
