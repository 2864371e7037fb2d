"""What the native agent no longer does for every program, and what it must still do when a program
asks: the pagemap is opened when first read (as at the start, before descriptors or a dropped
privilege could change the open), /dev/shm and open_file's directory are cleaned when a program
made something there (also when its main dies), a checkpoint is made a block at a time (processes
at vm.max_map_count, and a wide mincore answer, fit a small heap), and the outcomes are the same
as before on random programs (test_agent.py judges them against the Python child)."""

from __future__ import annotations

import glob
import os

import pytest

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import RunStatus
from memspec.targets.agent import AgentTarget

from ..conftest import GCC, need, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="the agent makes Linux system calls")

agent = target_fixture("linux-agent", GCC)

POPULATED = "a = mmap(0x100000000000, 0x800000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"


def test_pfn_of_after_the_privileges_are_dropped_reads_as_before(agent):
    # the pagemap opened before drop_privileges, as when every process opened it at its start
    late = agent.run(parse(POPULATED + "p2 = fork()\np2: drop_privileges()\np2: x = pfn_of(a)\n"))
    early = agent.run(parse(POPULATED + "p2 = fork()\np2: y = pfn_of(a)\np2: drop_privileges()\np2: x = pfn_of(a)\n"))
    assert late.status == early.status, (late.message, early.message)
    if agent.facts().get("pagemap_pfns"):
        assert late.status is RunStatus.OK and late.outcomes[-1].value > 0
        assert early.outcomes[-1].value > 0


def test_pfn_of_after_descriptors_were_made_reads_as_before(agent):
    p = parse(POPULATED + 'f = memfd_create("c", 0)\ng = pipe()\nx = pfn_of(a)\nclose(f)\ny = thp_mapped(a)\n')
    run = agent.run(p)
    assert run.status is RunStatus.OK or "pagemap" in (run.message or ""), run.message
    assert execute(agent, p, agent.facts()).failure is None


def test_a_wide_mincore_answer_is_one_json_number(agent):
    # 2048 resident pages: a decimal number of 617 digits (the reply was cut at 512 bytes before)
    run = agent.run(parse(POPULATED + "m = mincore(a, 0x800000)\n"))
    assert run.status is RunStatus.OK, run.message
    assert run.outcomes[1].value == (1 << 2048) - 1


@pytest.mark.parametrize("observe", ["end", "each"])
def test_checkpoints_at_the_map_count_limit_with_forked_processes(agent, observe):
    # three processes at vm.max_map_count: each one's /proc/self/maps is megabytes, none held whole
    p = parse("n = map_pages(0x100200000000, 70000, PROT_READ)\np2 = fork()\np3 = fork()\n"
              "a = mmap(0x100100000000, 0x4000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              "p2: x = load(0x100100000000)\n")
    run = agent.run(p, observe=observe)
    assert run.status is RunStatus.OK, run.message
    procs = dict(run.observations[-1][1].extra)["faults"]
    assert set(procs) == {"main", "p2", "p3"}
    maps = dict(run.observations[-1][1].maps)
    assert set(maps) == {"main", "p2", "p3"} and min(map(len, maps.values())) > 65000


def test_the_heap_is_reserved_small(agent):
    # base_vm: the binary, its data and the heap reservation (mlockall(MCL_CURRENT) fills all of it)
    assert agent.facts()["base_vm"] < 16 << 20


def test_open_files_directory_is_removed_after_its_program(tmp_path, monkeypatch):
    need(GCC)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    t = AgentTarget()
    try:
        for text in ("f = open_file(4096, O_RDWR)\np2 = fork()\np2: g = open_file(100, O_RDWR)\n", "x = minflt()\n"):
            run = t.run(parse(text))
            assert run.status is RunStatus.OK, run.message
            t.run(parse("x = minflt()\n"))          # the reset ends the program before
            assert glob.glob(os.path.join(tmp_path, "memspec-*")) == []
    finally:
        t.close()


def test_shared_memory_names_die_with_a_program_whose_main_died():
    need(GCC)
    t = AgentTarget(defines=("-DAGENT_BUG_CRASH_ON_MSYNC",))
    try:
        if not t.facts().get("shm_private"):
            pytest.skip("no private /dev/shm here: names carry a prefix of their run's own")
        made = parse('fd = shm_open("/cc1", O_CREAT|O_RDWR, 0x180)\n'
                     "a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmsync(a, 0x1000, MS_SYNC)\n")
        assert t.run(made).status is RunStatus.CRASH
        run = t.run(parse('x = shm_open("/cc1", O_RDWR, 0)\n'))
        assert run.status is RunStatus.OK and run.outcomes[0].errno == "ENOENT", run.message
    finally:
        t.close()
