"""The os layer's model: address spaces, page tables, pages and memory objects, and the
POSIX memory calls on them, as the Linux x86-64 kernel implements them.

``System`` is the facade the judge, the targets and the state machines use: it owns the state
(``model.os.state.OsState``) and composes the rules of every os call from one module per family
of calls, each exporting a table call name -> (expect, apply):

    model.os.mappings         mmap, munmap, mprotect, mremap
    model.os.access           load, store, fetch (through the fault path, ``model.fault``)
    model.os.advice           madvise, msync, mincore
    model.os.locking          mlock, mlock2, munlock, mlockall, munlockall, set_memlock_limit
    model.os.files            shm_open, shm_unlink, memfd_create, open_file, pipe, close, ftruncate
    model.os.fileio           read, write, pread, pwrite, lseek, set_fsize_limit
    model.os.sealing          mseal
    model.os.bulk             map_pages (one-page mmaps one after another, to reach vm.max_map_count)
    model.os.processes        fork, exit, drop_privileges
    model.os.observation      pfn_of, thp_mapped, minflt, majflt, get_node, mbind
    model.os.pressure_events  memory_limit, set_swappiness, reclaim, tick, wss, oom, khugepaged

Memory pressure (reclaim, swap, the OOM killer, working sets, THP collapse) lives in
``model.pressure``, the invariants in ``model.invariants``.  A call with two rules, or an os
call of the call table without one, is an error when this module is imported.

Every rule names its clause (``memspec clauses`` lists them with citations).  Where POSIX
leaves a choice (the address mmap picks, whether a PROT_EXEC-only page is readable, whether a
fault got a huge page), the model computes the allowed set and adopts what the target chose.
Where Linux differs from POSIX, the model follows Linux and the clause records the difference.

Worked example: ``a = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)``
then ``store(a, 1)`` -> SIGSEGV (clause ``posix.mmap.prot-enforced-write``).
"""

from __future__ import annotations

from typing import Any, Mapping

from memspec.calls import CALLS
from memspec.consts import MAP, PAGE_SIZE
from memspec.records import OK, Outcome

from . import invariants
from .expect import Expect, errno
from .os import (access, advice, bulk, fileio, files, locking, mappings, observation, pressure_events, processes,
                 sealing)
from .os.state import PAGE_MASK, Config, Fd, Mm, OsState, Vma, kernel_version, page_align
from .rules import Rule, compose

__all__ = ["MAP", "PAGE_MASK", "RULES", "Config", "Fd", "Mm", "Rule", "System", "Vma", "kernel_version",
           "new_model", "page_align"]

# Every os call's rule, by name: the union of the families' tables (a call in two: an error).
RULES: Mapping[str, Rule] = compose(
    "os", mappings.RULES, access.RULES, advice.RULES, locking.RULES, files.RULES, fileio.RULES, processes.RULES,
    observation.RULES, pressure_events.RULES, sealing.RULES, bulk.RULES, lead=(2, 4))

U64 = (1 << 64) - 1
# Arguments the kernel receives as unsigned long: -1 arrives as 0xffff_ffff_ffff_ffff.
_UNSIGNED = {"addr", "length", "offset", "old_addr", "old_size", "new_size", "new_addr"}


# A file descriptor reaches the kernel as unsigned int (close, ftruncate, read, write, lseek take
# one; mmap's unsigned long goes through fget(unsigned int)): 0x100000000 is descriptor 0.
U32 = (1 << 32) - 1


_MASKS: dict[str, tuple[tuple[int, int], ...]] = {}     # call -> (position, register width) of its masked parameters
# call -> argument values -> their registers, as _convert gives them: a program's loop asks the same
# question again and again (mmap's fd of -1 copied into a new tuple every time).  A call's arguments are
# ints and strings (memspec.program.eval_args), whose equal values are the same registers; only such
# values are kept.
_SEEN: dict[str, dict[tuple, tuple]] = {}
SEEN_KEPT = 1024        # per call (then forgotten all at once)


def _registers(name: str, args: tuple) -> tuple:
    seen = _SEEN.get(name)
    if seen is None:
        seen = _SEEN[name] = {}
    try:
        regs = seen.get(args)
    except TypeError:       # (an unhashable argument: not a program's)
        return _convert(name, args)
    if regs is None:
        regs = _convert(name, args)
        for x in args:
            if type(x) is not int and type(x) is not str:
                return regs
        if len(seen) >= SEEN_KEPT:
            seen.clear()
        seen[args] = regs
    return regs


def _convert(name: str, args: tuple) -> tuple:
    masks = _MASKS.get(name)
    if masks is None:
        masks = _MASKS[name] = tuple((i, U64 if p.name in _UNSIGNED else U32)
                                     for i, p in enumerate(CALLS[name].params)
                                     if p.name in _UNSIGNED or p.name == "fd")
    regs = None         # (a copy only when a register changes: most arguments are in range)
    n = len(args)
    for i, m in masks:
        if i < n:
            x = args[i]
            if type(x) is int and x & m != x:
                if regs is None:
                    regs = list(args)
                regs[i] = x & m
    return args if regs is None else tuple(regs)


class System(OsState):
    """All processes, memory objects and frames, and the rules of the os calls on them.

    ``rules`` is the table ``expect`` and ``apply`` look a call up in; a subclass may give
    another (a test's deliberately broken model replaces one rule)."""

    rules: Mapping[str, Rule] = RULES

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        if self.config.page_size != PAGE_SIZE:
            return Expect("memspec.host.page-size", OK, f"(pages of {self.config.page_size} bytes: not modelled)",
                          unknown=True)
        mm = self.procs.get(proc)
        if mm is None:
            return errno("memspec.proc.exited", "ESRCH")
        last = self._last_registers
        if last[0] is args and last[1] == name:
            regs = last[2]
        else:
            regs = _registers(name, args)
            self._last_registers = (args, name, regs)
        return self.rules[name].expect(self, mm, *regs)

    # the judge asks expect and then apply with the same argument tuple: converted once (here and in
    # apply, not in a method of its own: this runs twice for every call judged)
    _last_registers: tuple[Any, str, tuple] = (None, "", ())

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        """Adopt ``outcome`` (already judged allowed) as what happened."""
        mm = self.procs.get(proc)
        if mm is None or self.config.page_size != PAGE_SIZE:
            return
        f = self.rules[name].apply
        if f is not None:
            last = self._last_registers
            if last[0] is args and last[1] == name:
                regs = last[2]
            else:
                regs = _registers(name, args)
                self._last_registers = (args, name, regs)
            f(self, proc, mm, outcome, *regs)

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        """Give the address space made by the last fork() its program name."""
        if name == "fork" and result and self.pending_fork is not None:
            self.procs[result] = self.pending_fork
            self.pending_fork = None

    # -- invariants ------------------------------------------------------------

    # ``invariants(full=False)`` checks only the footprint of the steps since the last check
    incremental_invariants = True

    def invariants(self, full: bool = True) -> list[tuple[str, str]]:
        """Broken invariants of the os layer's state: (clause, message) pairs; recounted over the
        whole state (``full``), or over what the steps since the last check touched."""
        return invariants.check_all(self) if full else invariants.check_step(self)

    # -- views -----------------------------------------------------------------

    def maps(self, proc: str) -> list[tuple[int, int, str]]:
        """The process's mappings as /proc/PID/maps would show them, merged where equal."""
        out: list[tuple[int, int, str]] = []
        for s, e, v in self.procs[proc].vmas.items():
            if out and out[-1][1] == s and out[-1][2] == v.perms:
                out[-1] = (out[-1][0], e, v.perms)
            else:
                out.append((s, e, v.perms))
        return out

    def blame(self, proc: str, addr: int) -> str:
        hit = self.procs[proc].vmas.find(addr)
        return hit[2].clause if hit else "posix.munmap.removes-range"

    def fault_report(self) -> dict[str, Any]:
        """The fault path's counters, for a report: faults by class, evictions, write-backs."""
        per_proc = {p: {"minflt": m.minflt, "minflt_maybe": m.minflt_maybe, "majflt": m.majflt}
                    for p, m in self.procs.items()}
        return {"stats": dict(self.stats), "procs": per_proc}


def new_model(facts: dict) -> System:
    return System(Config.from_facts(facts))
