"""MAP_SYNC on a file mapping (clause linux.mmap.sync-fs-dependent): the kernel turns it into
VM_SYNC for every mapping type and the file system decides, so on a file of open_file either
answer is right (ext4 refuses, tmpfs maps), on memfd and shm (shmem) only the mapping is; any
other errno is caught."""

from __future__ import annotations

import pytest

from memspec.consts import errno_name
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x100009000000
EOPNOTSUPP = errno_name(95)      # the name targets report (ENOTSUP: the same number on Linux)


def failed(text: str, outcomes: list[Outcome]) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", {"kernel": "6.18.0"})
    return j.failure.clause if j.failure else None


@pytest.mark.parametrize("mtype", ["MAP_PRIVATE", "MAP_SHARED"])
def test_a_disk_file_may_refuse_map_sync_or_map_it(mtype):
    text = f"fd = open_file(0x1000, O_RDWR)\nm = mmap({W:#x}, 0x1000, PROT_READ, {mtype}|MAP_SYNC|MAP_FIXED, fd, 0)\n"
    assert failed(text, [Outcome(value=3), Outcome(value=-1, errno=EOPNOTSUPP)]) is None
    assert failed(text, [Outcome(value=3), Outcome(value=W)]) is None
    assert failed(text, [Outcome(value=3), Outcome(value=-1, errno="EINVAL")]) is not None


def test_shmem_ignores_map_sync():
    text = f"fd = memfd_create(\"s\", 0)\nftruncate(fd, 0x1000)\nm = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_SYNC|MAP_FIXED, fd, 0)\n"
    good = [Outcome(value=3), Outcome(value=0)]
    assert failed(text, good + [Outcome(value=W)]) is None
    assert failed(text, good + [Outcome(value=-1, errno=EOPNOTSUPP)]) is not None


def test_a_pipe_with_map_shared_validate_and_an_unknown_flag_is_eopnotsupp_before_enodev():
    # mm/mmap.c do_mmap: case MAP_SHARED_VALIDATE checks the flags before case MAP_PRIVATE's ENODEV
    text = "p = pipe()\nm = mmap(NULL, 0x1000, 0, MAP_SHARED_VALIDATE|MAP_SYNC, p, 0)\n"
    assert failed(text, [Outcome(value=3), Outcome(value=-1, errno=EOPNOTSUPP)]) is None
    assert failed(text, [Outcome(value=3), Outcome(value=-1, errno="ENODEV")]) == "linux.mmap.eopnotsupp-validate"
