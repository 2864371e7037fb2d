"""The child processes memspec starts (a target's, the judge's), each the leader of its own process group.

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
import select
import signal
import time
from typing import Callable

# process-group ids (each the pid of the group's leader) of children still alive
LIVE_GROUPS: set[int] = set()

# the signals that stop memspec (KeyboardInterrupt, Terminated): held across a fork
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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


def fork_in_group(child: Callable[[], int | None]) -> int:
    """Fork a child that leads a process group of its own and runs ``child()`` (its return value,
    or 0, is the exit code; an exception prints its traceback and exits 3 -- a harness failure,
    which the parent reports as a crash).  The group is registered before this returns.

    Ctrl-C and SIGTERM wait until the group is registered: a stop signal that arrives during
    the fork would otherwise raise in the parent between the fork and the registration, and
    the child would outlive the run (holding its output pipes open)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    if pid == 0:
        code = 3
        try:
            os.setpgid(0, 0)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            code = child() or 0
        except BaseException:   # noqa: BLE001 -- the parent makes any failure in here a verdict
            import traceback
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    try:
        os.setpgid(pid, pid)    # either side may win the race; both set the same group
    except OSError:
        pass
    LIVE_GROUPS.add(pid)
    signal.pthread_sigmask(signal.SIG_SETMASK, held)    # a signal held meanwhile is taken here
    return pid


def reap(pid: int) -> int:
    """End a child's whole group (servants a crash left behind too) and collect its wait status."""
    _, status = os.waitpid(pid, 0)
    kill_group(pid)
    return status


def read_lines(fd: int, timeout: float) -> tuple[list[bytes], bool]:
    """Every line ``fd`` gives until its end, within one deadline; ``(lines, timed_out)``."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return buf.splitlines(), True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return buf.splitlines(), False
        buf += chunk


def describe_status(status: int) -> str:
    """A wait status as a verdict's message says it: the signal's name, or the exit status."""
    if os.WIFSIGNALED(status):
        try:
            return signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


__all__ = ["LIVE_GROUPS", "kill_group", "kill_all", "fork_in_group", "reap", "read_lines", "describe_status"]
