"""The program's pipe() on both Linux targets: the program gets the read end only, and the target
closes the write end at once (soak seed 2, issue #19: the write end the harness kept open was a
descriptor the model did not know; ftruncate of it was EINVAL where the model said EBADF).  So a
read of the pipe is end of file, never a blocking call the harness must refuse, and the number
after the read end is free for the program's next descriptor."""

from __future__ import annotations

import os

import pytest

from memspec.fuzz.differential import execute
from memspec.program import parse
from memspec.records import RunStatus, Verdict

from ..conftest import GCC, target_fixture

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="pipe() on Linux")

agent = target_fixture("linux-agent", GCC)
linux = target_fixture("linux-py")     # the Python child


@pytest.mark.parametrize("name", ["agent", "linux"])
def test_a_read_of_the_programs_pipe_is_end_of_file_on_both_targets(name, request):
    t = request.getfixturevalue(name)
    prog = parse('p = pipe()\nx = read(p)\nq = fork()\nq: y = read(p)\nq: exit()\ne = write(p, 1, 1)\n')
    j = execute(t, prog, t.facts())
    assert j.failure is None and j.status == RunStatus.OK, (j.failure, j.message)
    assert not [c for c in j.checks if c.verdict == Verdict.UNSUPPORTED]      # nothing refused
    seen = _observed(j)
    assert seen[1] == seen[3] == "256" and seen[5] == "-1 EBADF"


def _observed(j) -> dict[int, str]:
    return {c.index: c.observed for c in j.checks if c.at == "call"}


def test_the_write_end_is_closed_so_the_next_descriptor_takes_its_number(agent):
    # the agent has no descriptor of its own below its high floor: the memfd gets the write end's
    # old number, and ftruncate of it sizes the memfd (with the write end kept open: EINVAL)
    prog = parse('p = pipe()\nd = memfd_create("s", 0)\ne = ftruncate(p+1, 0x1000)\n')
    j = execute(agent, prog, agent.facts())
    assert j.failure is None and j.status == RunStatus.OK, (j.failure, j.message)
    seen = _observed(j)
    assert int(seen[1], 0) == int(seen[0], 0) + 1 and seen[2] == "0", seen
