"""targets/children.py: every target's child processes in one place, ended whatever ends memspec."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from memspec.targets.children import LIVE_GROUPS, describe_status, fork_in_group, kill_all, read_lines, reap


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


def test_a_child_leads_its_group_and_kill_all_ends_it_with_its_own_children() -> None:
    r, w = os.pipe()

    def child() -> None:
        os.close(r)
        for _ in range(3):                    # grandchildren, as a misbehaving target would fork
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        os.write(w, b"ready\n")
        time.sleep(60)

    pid = fork_in_group(child)
    os.close(w)
    lines, timed_out = read_lines(r, 0.5)        # the child keeps its end open: a timeout, with its line
    os.close(r)
    assert timed_out and lines == [b"ready"]
    assert pid in LIVE_GROUPS and os.getpgid(pid) == pid
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
    assert len(members) == 4
    assert kill_all() >= 1 and pid not in LIVE_GROUPS
    assert os.WIFSIGNALED(os.waitpid(pid, 0)[1])
    time.sleep(0.2)
    assert not [m for m in members if m != pid and _alive(m)]


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def test_an_exception_in_the_child_is_exit_status_3_and_reap_describes_it() -> None:
    def child() -> None:
        raise RuntimeError("a harness bug")

    pid = fork_in_group(child)
    status = reap(pid)
    assert describe_status(status) == "exit status 3" and pid not in LIVE_GROUPS


def test_describe_status_names_the_signal() -> None:
    pid = fork_in_group(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    assert describe_status(reap(pid)) == "SIGSEGV"


CTRL_C_AT_FORK = r"""
import os, signal, time
import memspec.targets.children as children
from memspec.targets.children import LIVE_GROUPS, fork_in_group, kill_all
real_fork = os.fork

def fork_then_ctrl_c():
    pid = real_fork()
    if pid:
        os.kill(os.getpid(), signal.SIGINT)
    return pid

children.os.fork = fork_then_ctrl_c
signal.signal(signal.SIGINT, signal.default_int_handler)
seen = []
try:
    # the child lets go of the output pipes, so a failure here is reported at once
    seen.append(fork_in_group(lambda: [os.close(1), os.close(2), time.sleep(60)] and 0))
except KeyboardInterrupt:
    pass
mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
children.os.fork = real_fork
groups = [g for g in LIVE_GROUPS if os.getpgid(g) == g and g not in seen]
assert groups, "the child forked while Ctrl-C arrived is not registered: kill_all would leave it running"
assert signal.SIGINT not in mask and signal.SIGTERM not in mask      # the caller's mask is as it was
assert kill_all() >= 1
for g in groups:
    assert os.WIFSIGNALED(os.waitpid(g, 0)[1])
print("ok")
"""


def test_a_ctrl_c_during_the_fork_waits_until_the_child_is_registered() -> None:
    # the kernel restarts a fork that a signal interrupts and Python raises KeyboardInterrupt right
    # after it returns: the signal is sent here as fork returns, the worst moment.  Unheld, it would
    # raise before the registration, and kill_all would not know the child.  Run in a process of
    # one thread, as memspec's commands are when they fork (their judge thread blocks the stop
    # signals): a process-directed SIGINT may be taken by any thread that does not block it, and a
    # pytest worker has threads of its own that do not.
    r = subprocess.run([sys.executable, "-c", CTRL_C_AT_FORK], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
