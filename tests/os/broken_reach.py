"""Broken os implementations that only the generator's later reach shows (issue #26, third round):
the reference model with one rule changed, served in process as ``py:`` targets
(``py:tests/os/broken_reach.py:target("pwrite-moves-offset")``).  Each is the kind of bug a mutant
of the model made and ``memspec check`` at its default settings did not catch before the generator
drew the shape.  Fakes for testing the generator and the judge, never targets of their own."""

from __future__ import annotations

from memspec.model.expect import errno
from memspec.model.mm import System, page_align
from memspec.model.os import fileio, files, mappings, pressure_events, processes
from memspec.model.os.state import Mm
from memspec.model.os.state import HPAGE

PAGE = 4096
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget


def _pwrite_moves_offset(sys, proc, mm, o, fd, offset, value, count):
    fileio.apply_pwrite(sys, proc, mm, o, fd, offset, value, count)
    f = fileio._fd(mm, fd)
    if o.ok and o.value and f is not None and f.obj is not None:
        f.pos[0] = fileio._signed(offset) + o.value


class PwriteMovesOffset(System):
    """pwrite(2) writes at its offset but also moves the file offset past the bytes written, as
    write does (fs/read_write.c ksys_pwrite64 writes through a copy of the position: the file
    offset stays).  The bytes read back right; only the offset shows it."""

    rules = replaced(System.rules, "pwrite", apply=_pwrite_moves_offset)


def _munmap_refuses_task_end(sys, mm, addr, length):
    if addr + page_align(length) == sys.config.task_size:
        return errno("posix.munmap.einval-outside", "EINVAL")
    return mappings.expect_munmap(sys, mm, addr, length)


class MunmapRefusesTaskEnd(System):
    """munmap's range check has its bound one off: a range ending exactly at TASK_SIZE is EINVAL
    (mm/vma.c do_vmi_munmap: ``end > TASK_SIZE`` is the refusal, so an end equal to it is fine)."""

    rules = replaced(System.rules, "munmap", expect=_munmap_refuses_task_end)


def _memfd_name_248(sys, mm, name, flags):
    if len(name.encode()) == 249:
        return errno("linux.memfd_create.einval", "EINVAL")
    return files.expect_memfd_create(sys, mm, name, flags)


class MemfdName248(System):
    """memfd_create's name limit one byte short: a name of exactly 249 bytes is EINVAL (mm/memfd.c
    MFD_NAME_MAX_LEN is NAME_MAX - strlen("memfd:") = 249, the longest allowed)."""

    rules = replaced(System.rules, "memfd_create", expect=_memfd_name_248)


def _khugepaged_zeroes(sys, proc, mm, o):
    before = set(mm.huge)
    pressure_events.apply_khugepaged(sys, proc, mm, o)
    for base in mm.huge - before:
        for p in range(base, base + HPAGE, PAGE):
            page = mm.anon.get(p)
            if page is not None and page.data is not None:
                page.data[:] = bytes(PAGE)


class KhugepagedZeroes(System):
    """khugepaged's collapse allocates the huge page but does not copy the small pages into it: the
    bytes stored there read back as zero (mm/khugepaged.c collapse_huge_page ->
    __collapse_huge_page_copy copies every present subpage)."""

    rules = replaced(System.rules, "khugepaged", apply=_khugepaged_zeroes)


def _fork_forgets_fsize(sys, proc, mm, o):
    processes.apply_fork(sys, proc, mm, o)
    if sys.pending_fork is not None:
        sys.pending_fork.fsize_soft = Mm(sys.config).fsize_soft


class ForkForgetsFsize(System):
    """fork gives the child the default RLIMIT_FSIZE instead of the parent's (kernel/fork.c
    copy_signal copies ``sig->rlim`` from the parent)."""

    rules = replaced(System.rules, "fork", apply=_fork_forgets_fsize)


BUGS = {"pwrite-moves-offset": PwriteMovesOffset, "munmap-refuses-task-end": MunmapRefusesTaskEnd,
        "memfd-name-248": MemfdName248, "khugepaged-zeroes": KhugepagedZeroes,
        "fork-forgets-fsize": ForkForgetsFsize}


def target(bug: str) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", BUGS[bug])
