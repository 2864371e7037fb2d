"""Broken os implementations for issue #26's fifth round: the reference model with one rule or one
setting changed, served in process as ``py:`` targets
(``py:tests/os/broken_gen26_r5.py:target("commit-unchecked")``).  Each is the kind of bug a mutant of
the model made (seed 3's survivors) that ``memspec check`` at its default settings did not catch
before the generator scenarios of specs/gen_os_scenarios.py or the directed programs
specs/suite/os/63-*.mst to 70-*.mst.  Fakes for testing the generator and the judge, never targets
of their own."""

from __future__ import annotations

from memspec.consts import MADV
from memspec.model.expect import errno
from memspec.model.mm import System
from memspec.model.os import advice, locking, mappings, observation, processes
from memspec.model.rules import replaced
from memspec.targets.model import OsModelTarget

HPAGE = 1 << 21


class CommitUnchecked(System):
    """vm.overcommit_memory 0 never refuses: a mapping charging more pages than RAM plus swap is
    placed (mm/util.c __vm_enough_memory, OVERCOMMIT_GUESS: ``pages > totalram_pages() +
    total_swap_pages`` is ENOMEM) -- the heuristic read as mode 1."""

    def __init__(self, config):
        super().__init__(config)
        self.config.overcommit_memory = 1


def _validate_after_mmap_check(sys, mm, addr, length, prot, flags, fd, offset):
    e = mappings.expect_mmap(sys, mm, addr, length, prot, flags, fd, offset)
    f = mm.fds.get(fd)
    if e.clause == "linux.mmap.eopnotsupp-validate" and f is not None and f.obj is None:
        return errno("posix.mmap.enodev", "ENODEV")
    return e


class PipeValidateLate(System):
    """MAP_SHARED_VALIDATE's flag check runs after the file's missing ->mmap: a pipe mapped with
    MAP_SYNC answers ENODEV, where do_mmap's ``case MAP_SHARED_VALIDATE`` refuses the unknown flag
    first with EOPNOTSUPP."""

    rules = replaced(System.rules, "mmap", expect=_validate_after_mmap_check)


def _collapse_small_einval(sys, mm, addr, length, adv):
    e = advice.expect_madvise(sys, mm, addr, length, adv)
    if adv == MADV["MADV_COLLAPSE"] and 0 < length < HPAGE and e.default.ok:
        return errno("linux.madvise.collapse-einval", "EINVAL")
    return e


class CollapseSmallRangeEinval(System):
    """MADV_COLLAPSE over a range holding no whole 2 MiB block of a VMA that can hold one is EINVAL;
    mm/khugepaged.c madvise_collapse finds nothing to collapse and returns 0."""

    rules = replaced(System.rules, "madvise", expect=_collapse_small_einval)


def _mprotect_one_byte_ignored(sys, proc, mm, o, addr, length, prot):
    if length == 1:
        return
    mappings.apply_mprotect(sys, proc, mm, o, addr, length, prot)


class MprotectOneByteIgnored(System):
    """mprotect of one byte answers 0 but changes nothing (an empty-length test written ``length <= 1``);
    mm/mprotect.c do_mprotect_pkey rounds the length up (PAGE_ALIGN) and changes the whole page."""

    rules = replaced(System.rules, "mprotect", apply=_mprotect_one_byte_ignored)


def _mbind_default_strict(sys, mm, addr, length, mode, nodemask):
    if mode == 0 and not nodemask and not mm.vmas.covers(addr & ~4095, (addr + length + 4095) & ~4095):
        return errno("linux.numa.mbind-efault-hole", "EFAULT")
    return observation.expect_mbind(sys, mm, addr, length, mode, nodemask)


class MbindDefaultReportsHoles(System):
    """mbind(MPOL_DEFAULT) over a range with a hole is EFAULT; mm/mempolicy.c drops MPOL_MF_STRICT for
    MPOL_DEFAULT, so queue_pages_range reports only a range with no VMA at all."""

    rules = replaced(System.rules, "mbind", expect=_mbind_default_strict)


def _mlockall_limit_inclusive(sys, mm, flags):
    if flags & 1 and not mm.privileged and mm.total_vm() + sys.config.base_vm >= mm.memlock_soft:
        return errno("linux.mlock.enomem-rlimit", "ENOMEM")
    return locking.expect_mlockall(sys, mm, flags)


class MlockallLimitInclusive(System):
    """mlockall(MCL_CURRENT) of an unprivileged process refuses an address space exactly the size of
    its RLIMIT_MEMLOCK; mm/mlock.c do_mlockall refuses only ``total_vm > lock_limit``."""

    rules = replaced(System.rules, "mlockall", expect=_mlockall_limit_inclusive)


def _exit_keeps_descriptors(sys, proc, mm, o):
    for f in mm.fds.values():
        if f.obj is not None:
            sys.objects[f.obj].opens += 1      # the exiting process's references leak
    processes.apply_exit(sys, proc, mm, o)


class ExitLeaksDescriptors(System):
    """exit does not close the process's descriptors: an object a child inherited stays open (its
    pages held) after every other reference is gone."""

    rules = replaced(System.rules, "exit", apply=_exit_keeps_descriptors)


BUGS = {"commit-unchecked": CommitUnchecked, "pipe-validate-late": PipeValidateLate,
        "collapse-small-einval": CollapseSmallRangeEinval, "mprotect-one-byte-ignored": MprotectOneByteIgnored,
        "mbind-default-reports-holes": MbindDefaultReportsHoles,
        "exit-leaks-descriptors": ExitLeaksDescriptors, "mlockall-limit-inclusive": MlockallLimitInclusive}


def target(bug: str) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", BUGS[bug])
