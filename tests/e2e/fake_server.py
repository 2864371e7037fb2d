"""Misbehaving protocol targets, for testing that memspec gives clear verdicts and goes on.

``python fake_server.py MODE``: a correct model server, except:
  crash-at-N    dies with SIGSEGV when asked for call N (counting from 1 per process)
  hang-at-N     stops answering at call N
  garbage-at-N  answers call N with a line that is not JSON
  wrong-id      answers every call with the wrong id
  exit-at-hello exits before saying hello
  old-protocol  says hello with protocol version 99
  half-at-N     writes half of reply N, then nothing
  bigline-at-N  answers reply N with a 100 MiB line
  slow-at-N     sends reply N one byte a second
  stderr-flood  writes 256 KiB to standard error before every reply
  forks-at-N    forks 200 children (sleeping, holding its pipes) at reply N, then hangs
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from memspec.targets.serve import serve


class Tap:
    """Wraps stdout; misbehaves at the chosen call."""

    def __init__(self, real, mode: str):
        self.real = real
        self.mode, _, n = mode.rpartition("-at-") if "-at-" in mode else (mode, "", "0")
        self.n = int(n or 0)
        self.calls = 0

    def write(self, data: bytes) -> int:
        msg = json.loads(data)
        if msg.get("type") == "hello" and self.mode == "old-protocol":
            msg["protocol"] = 99
            data = (json.dumps(msg) + "\n").encode()
        if msg.get("type") == "reply":
            self.calls += 1
            if self.mode == "wrong-id":
                msg["id"] = msg["id"] + 1000
                data = (json.dumps(msg) + "\n").encode()
            elif self.calls == self.n:
                if self.mode == "crash":
                    os.kill(os.getpid(), signal.SIGSEGV)
                if self.mode == "hang":
                    time.sleep(3600)
                if self.mode == "garbage":
                    data = b"Segmentation fault (core dumped)\n"
                if self.mode == "half":
                    self.real.write(data[:len(data) // 2])
                    self.real.flush()
                    time.sleep(3600)
                if self.mode == "bigline":
                    self.real.write(b"x" * (100 << 20) + b"\n")
                    self.real.flush()
                    time.sleep(3600)
                if self.mode == "slow":
                    for b in data:
                        self.real.write(bytes([b]))
                        self.real.flush()
                        time.sleep(1)
                    return len(data)
                if self.mode == "forks":
                    for _ in range(200):
                        if os.fork() == 0:
                            time.sleep(3600)
                            os._exit(0)
                    time.sleep(3600)
            if self.mode == "stderr-flood":
                sys.stderr.buffer.write(b"E" * (256 << 10))
                sys.stderr.buffer.flush()
        return self.real.write(data)

    def flush(self) -> None:
        self.real.flush()


def main() -> int:
    mode = sys.argv[1]      # further arguments (a --tag=... to find the processes by) are ignored
    if mode == "exit-at-hello":
        return 3
    return serve(sys.stdin.buffer, Tap(sys.stdout.buffer, mode))


if __name__ == "__main__":
    sys.exit(main())
