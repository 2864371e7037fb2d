"""The linux target's host facts are probed, and they matter: the model built from the true
facts passes on this kernel, the model with a fact forced the other way fails.  Shared memory
names reach the kernel exactly as the program wrote them (a private /dev/shm)."""

from __future__ import annotations

import os

import pytest

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.targets import linux_child, linux_facts
from memspec.targets.linux import LinuxTarget

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="needs Linux")

W = 0x100000000000
PKU_PROGRAM = f"""e = mmap({W:#x}, 0x2000, PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)
x = load(e)
r = mlock(e, 0x1000)
m = mincore(e, 0x2000)
p = mmap({W + 0x10000:#x}, 0x1000, PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_POPULATE, -1, 0)
m2 = mincore(p, 0x1000)
"""


@pytest.fixture(scope="module")
def linux():
    return LinuxTarget()


def _cpu_pku() -> bool:
    flags = linux_facts._cpu_flags()
    return "pku" in flags and "ospke" in flags


def test_exec_only_is_probed(linux):
    f = linux.facts()
    assert f["pku"] == _cpu_pku()
    # the probe's answer: a PROT_EXEC page read through write(2)
    assert f["exec_only"] == (linux_facts._in_child(linux_facts._probe_exec_only, 2) == 1)
    if f["pku"]:
        assert f["exec_only"]


def test_the_pku_fact_matters_on_this_kernel(linux):
    facts = linux.facts()
    p = parse(PKU_PROGRAM)
    right = execute(linux, p, facts)
    assert right.failure is None, right.failure
    wrong = execute(linux, p, dict(facts, exec_only=not facts["exec_only"]))
    assert wrong.failure is not None
    assert wrong.failure.clause in ("linux.x86.exec-only-pkey", "linux.x86.exec-implies-read")
    assert wrong.failure.index == 1      # the first load already tells them apart


def test_sysctl_and_limit_facts_match_the_machine(linux):
    f = linux.facts()
    with open("/proc/sys/vm/max_map_count") as fh:
        assert f["max_map_count"] == int(fh.read())
    with open("/proc/sys/vm/overcommit_memory") as fh:
        assert f["overcommit_memory"] == int(fh.read())
    assert f["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert f["kernel"] == os.uname().release
    assert f["task_size"] in ((1 << 47) - 4096, (1 << 56) - 4096)
    assert f["thp"] in ("always", "madvise", "never")


# --- shared memory names -------------------------------------------------------------

NAMES = f"""a = shm_open("/plain", O_CREAT|O_RDWR, 384)
b = shm_open("/in/ner", O_CREAT|O_RDWR, 384)
c = shm_open("/{'n' * 255}", O_CREAT|O_RDWR, 384)
d = shm_open("/{'n' * 256}", O_CREAT|O_RDWR, 384)
e = shm_open("slashless", O_CREAT|O_EXCL|O_RDWR, 384)
f = shm_open("///slashless", O_CREAT|O_EXCL|O_RDWR, 384)
g = shm_unlink("//plain")
h = shm_open("/plain", O_RDWR, 0)
"""


def test_shm_name_rules_pass_through_the_kernel(linux):
    facts = linux.facts()
    if not facts["shm_private"]:
        pytest.skip("no private /dev/shm here: the name clauses are reported not observable "
                    "(test_without_a_private_dev_shm_the_name_clauses_are_not_observable)")
    p = parse(NAMES)
    run = linux.run(p)
    got = [(o.value if o.ok else o.errno) for o in run.outcomes]
    assert got[1] == "EINVAL" and got[3] == "ENAMETOOLONG" and got[5] == "EEXIST" and got[7] == "ENOENT", got
    assert isinstance(got[2], int) and got[2] >= 0     # 255 bytes: NAME_MAX exactly
    assert execute(linux, p, facts).failure is None


def _names_seen_by_kernel(private: bool, names: list[str]) -> list[str]:
    """In a child: make a _Kernel as a program's process would, create the names, list /dev/shm."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            linux_facts.SHM_PRIVATE[:] = [private]
            k = linux_child._Kernel()
            for n in names:
                assert k.do_shm_open(n, os.O_CREAT | os.O_RDWR, 0o600).ok
            os.write(w, "\n".join(sorted(os.listdir("/dev/shm"))).encode())
            k.cleanup()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    assert os.waitpid(pid, 0)[1] == 0
    return out.decode().splitlines()


def test_names_reach_the_kernel_unchanged_and_stay_private(linux):
    if not linux.facts()["shm_private"]:
        pytest.skip("this host cannot give a program a private /dev/shm (no CAP_SYS_ADMIN): the name clauses are "
                    "reported not observable, which test_without_a_private_dev_shm_the_name_clauses_are_not_observable "
                    "checks")
    long = "L" * 255
    seen = _names_seen_by_kernel(True, ["/exact", "//two", long])
    assert seen == sorted(["exact", "two", long])
    # nothing of it reached the machine's /dev/shm
    assert not {"exact", "two", long} & set(os.listdir("/dev/shm"))


def test_without_a_private_dev_shm_names_are_rewritten():
    seen = _names_seen_by_kernel(False, ["/exact"])
    assert "exact" not in seen and any(n.endswith("-exact") for n in seen)


def test_without_a_private_dev_shm_the_name_clauses_are_not_observable(linux, monkeypatch):
    real = linux.facts()
    monkeypatch.setattr(LinuxTarget, "facts", lambda self: dict(real, shm_private=False))
    hidden = linux.not_observable()
    for c in ("posix.shm_open.einval-name", "posix.shm_open.enametoolong", "glibc.shm_open.einval-name-too-long"):
        assert c in hidden and "CAP_SYS_ADMIN" in hidden[c]
    monkeypatch.setattr(LinuxTarget, "facts", lambda self: dict(real, shm_private=True))
    assert "posix.shm_open.enametoolong" not in linux.not_observable()


def test_numa_clauses_are_not_observable_on_one_node_only(linux, monkeypatch):
    real = linux.facts()
    for nodes, hidden in ((1, True), (2, False)):
        monkeypatch.setattr(LinuxTarget, "facts", lambda self, n=nodes: dict(real, nodes=n))
        no = linux.not_observable()
        assert ("linux.numa.interleave" in no) is hidden and ("linux.numa.preferred" in no) is hidden


def test_limit_clauses_are_not_observable_only_where_the_facts_put_them_out_of_reach(linux, monkeypatch):
    real = linux.facts()
    far = dict(real, rlimit_as=-1, rlimit_data=-1, max_map_count=65530, base_maps=100, overcommit_memory=1,
               rlimit_nofile=20000, page_size=4096)
    near = dict(real, rlimit_as=1 << 30, rlimit_data=1 << 30, max_map_count=300, base_maps=150, overcommit_memory=2,
                rlimit_nofile=64, page_size=16384)
    clauses = ("linux.mmap.enomem-rlimit-as", "linux.mmap.enomem-rlimit-data", "linux.mmap.enomem-max-map-count",
               "linux.mmap.enomem-overcommit", "posix.open.emfile", "memspec.host.page-size")
    monkeypatch.setattr(LinuxTarget, "facts", lambda self: far)
    assert all(c in linux.not_observable() for c in clauses)
    monkeypatch.setattr(LinuxTarget, "facts", lambda self: near)
    assert not any(c in linux.not_observable() for c in clauses)
    # mode 0 refuses a single charge above RAM plus swap since 5.2 (the commit-limit scenario meets
    # it); before 5.2 it guessed from free memory
    for release, hidden in (("6.18.44", False), ("5.2.0", False), ("5.1.21", True), ("4.19.0", True)):
        monkeypatch.setattr(LinuxTarget, "facts", lambda self, r=release: dict(far, overcommit_memory=0, kernel=r))
        assert ("linux.mmap.enomem-overcommit" in linux.not_observable()) is hidden, release
