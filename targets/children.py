"""The child processes targets start, each the leader of its own process group.

A target that forks a child (a program's sandbox, an implementation speaking the
protocol, an emulator) registers the child's process group here and ends it with
``kill_group``.  Whatever ends memspec -- a finished run, Ctrl-C, SIGTERM, an
exception -- ``kill_all`` (run at interpreter exit, and by the command line when a
run is interrupted) ends every group still registered, so no target's processes,
nor the processes those forked, outlive the run.
"""

from __future__ import annotations

import atexit
import os
import signal

# process-group ids (each the pid of the group's leader) of children still alive
LIVE_GROUPS: set[int] = set()


def kill_group(pgid: int) -> None:
    """SIGKILL the whole process group ``pgid`` (and its leader, if it has not made the group
    yet); forget it.  Reaping the leader is the caller's business."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    LIVE_GROUPS.discard(pgid)


def kill_all() -> int:
    """End every registered group; return how many there were."""
    groups = list(LIVE_GROUPS)
    for pgid in groups:
        kill_group(pgid)
    return len(groups)


atexit.register(kill_all)

__all__ = ["LIVE_GROUPS", "kill_group", "kill_all"]
