"""A broken os implementation whose fork from a forked child forgets the credentials that child
gave up (drop_privileges): the grandchild gets the machine's own -- CAP_IPC_LOCK, CAP_SETUID,
CAP_SYS_ADMIN, file-mode bypass, uid 0 -- as a process forked from main would, where Linux copies
the caller's (kernel/fork.c copy_process -> copy_creds; the model's fork_mm copies the parent's).
The reference model with that one change, served in process as a ``py:`` target
(``py:tests/os/broken_nested.py:target("fork-forgets-dropped")``).  A fake for testing the
generator's nested forks and suite program 72, never a target of its own."""

from __future__ import annotations

from typing import Any

from memspec.model.mm import System
from memspec.model.os.processes import NOBODY, apply_fork
from memspec.model.rules import replaced
from memspec.records import Outcome
from memspec.targets.model import OsModelTarget


def _apply_fork_forgetting(sys: Any, proc: str, mm: Any, o: Outcome, *regs: Any) -> None:
    apply_fork(sys, proc, mm, o, *regs)
    child = sys.pending_fork
    if child is None or proc == "main" or mm.uid != NOBODY:
        return
    c = sys.config
    child.privileged, child.dac_override, child.fowner = c.privileged, c.cap_dac_override, c.cap_fowner
    child.can_setuid, child.sys_admin, child.uid = c.cap_setuid, c.cap_sys_admin, 0


class ForkForgetsDropped(System):
    """A fork in a process that dropped its privileges gives the child the machine's."""

    rules = replaced(System.rules, "fork", apply=_apply_fork_forgetting)


BUGS = {"fork-forgets-dropped": ForkForgetsDropped}
CLASSES = {**BUGS, "reference": System}


def target(bug: str, **facts: Any) -> OsModelTarget:
    return OsModelTarget(f"broken-os:{bug}", CLASSES[bug], facts)
