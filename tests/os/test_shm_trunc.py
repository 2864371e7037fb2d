"""shm_open(O_RDONLY|O_TRUNC) of an existing object: POSIX leaves it undefined; Linux asks for
write permission (fs/open.c build_open_flags: O_TRUNC adds MAY_WRITE) and truncates whatever
the access mode (fs/namei.c do_open).  Clause linux.shm_open.trunc-rdonly.  The model
truncated only for O_WRONLY/O_RDWR and checked read permission alone (measured on 6.18: the
truncated object's page then raises SIGBUS; an unprivileged opener without write permission
gets EACCES)."""

from __future__ import annotations

from memspec.program import parse
from memspec.records import Outcome
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

from ..conftest import ON_LINUX, os_program_failure

TRUNCATES = """fd = shm_open("/tr1", O_CREAT|O_RDWR, 0x180)
ftruncate(fd, 8192)
fd2 = shm_open("/tr1", O_RDONLY|O_TRUNC, 0)
m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd2, 0)
x = load(m)
"""

NEEDS_WRITE = """fd = shm_open("/tr2", O_CREAT|O_RDWR, 0x124)
ftruncate(fd, 8192)
p1 = fork()
p1: drop_privileges()
p1: fd2 = shm_open("/tr2", O_RDONLY|O_TRUNC, 0)
p1: fd3 = shm_open("/tr2", O_RDONLY, 0)
m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0)
x = load(m)
"""


def _outcomes(text: str) -> list[Outcome]:
    return list(ModelTarget().run(parse(text)).outcomes)


def test_the_model_truncates_and_asks_for_write_permission():
    got = _outcomes(TRUNCATES)
    assert got[2].ok and got[4].signal == "SIGBUS"
    got = _outcomes(NEEDS_WRITE)
    assert got[4].errno == "EACCES" and got[5].ok and got[7].value == 0


def test_an_implementation_that_keeps_the_contents_or_lets_a_reader_truncate_is_caught():
    prog = parse(TRUNCATES)
    run = ModelTarget().run(prog)
    kept = run.outcomes[:4] + (Outcome(value=0),)       # O_RDONLY|O_TRUNC left the object as it was
    f = judge(prog, type(run)(kept, run.observations), "broken", {}).failure
    assert f is not None and f.index == 4
    prog = parse(NEEDS_WRITE)
    run = ModelTarget().run(prog)
    opened = run.outcomes[:4] + (Outcome(value=5),) + run.outcomes[5:]    # read permission was enough
    f = judge(prog, type(run)(opened, run.observations), "broken", {}).failure
    assert f is not None and f.index == 4 and f.clause == "posix.shm_open.eacces"


def test_the_programs_pass_on_the_model():
    assert os_program_failure(TRUNCATES) is None
    assert os_program_failure(NEEDS_WRITE) is None


@ON_LINUX
def test_the_programs_pass_on_the_kernel():
    for text in (TRUNCATES, NEEDS_WRITE):
        f = os_program_failure(text, on="linux")
        assert f is None, f
