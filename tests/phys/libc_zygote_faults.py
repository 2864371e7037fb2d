"""The libc target's zygote, with one fault injected (tests/phys/test_libc_protocol.py runs it).

    python libc_zygote_faults.py FD MEM_LIMIT MODE ONCE_FILE

MODE is one of
  stale      before each fork's answer, send a late answer to an earlier request
  future     answer a fork with the id of a request not made yet
  noid       answer a fork with a bare status, as the zygote once did ("SIGKILL")
  silent     never answer a fork
  die        exit when asked to fork
  slowwait   report a child's end only a second after it ended
With ONCE_FILE (not "-"), the fault is injected in the first zygote only: the one that
finds the file absent (and creates it)."""

from __future__ import annotations

import os
import socket
import sys
import time

from memspec.targets import libc

fd, mem_limit, mode, once = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if once != "-":
    if os.path.exists(once):
        mode = "none"
    else:
        open(once, "w").close()

real_send = socket.socket.send
real_waitpid = os.waitpid
first_seen: dict[int, float] = {}


def send(self: socket.socket, data: bytes, *rest: int) -> int:
    ident, _, answer = data.partition(b" ")
    if answer.startswith(b"pid "):
        if mode == "stale":
            real_send(self, b"%d ended SIGKILL" % (int(ident) - 1))
        elif mode == "future":
            data = b"%d %s" % (int(ident) + 1, answer)
        elif mode == "noid":
            data = b"SIGKILL"
        elif mode == "silent":
            return len(data)
        elif mode == "die":
            os._exit(0)
    return real_send(self, data, *rest)


def waitpid(pid: int, flags: int) -> tuple[int, int]:
    if mode == "slowwait":    # the zygote polls its children with WNOHANG
        t = first_seen.setdefault(pid, time.monotonic())
        if time.monotonic() - t < 1.0:
            return 0, 0
    return real_waitpid(pid, flags)


socket.socket.send = send  # type: ignore[method-assign]
os.waitpid = waitpid       # type: ignore[assignment]
libc._zygote(fd, mem_limit)
