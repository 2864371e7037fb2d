"""Target ``cmd:PROGRAM``: any implementation speaking the JSON-lines protocol on stdin/stdout.

The command runs in its own process group under a memory limit; every reply has
a time limit.  A reply that is not valid JSON, has the wrong id or shape, an early
exit, or silence past the limit becomes a verdict (``error``, ``crash``, ``hang``)
naming the call -- never a pass.  One process serves many programs: ``reset``
between them; a process that failed is replaced.
"""

from __future__ import annotations

import os
import resource
import select
import shlex
import signal
import subprocess
import time
from typing import Any

from memspec import __version__
from memspec.errors import TargetError, UsageError
from memspec.program import Call
from memspec.protocol import (PROTOCOL_VERSION, ProtocolViolation, call_message, decode, encode,
                              reply_to_outcome, state_to_observation)
from memspec.records import Observation, Outcome, RunStatus

from .base import Session, SessionFailed, Target, negotiate
from .children import LIVE_GROUPS, kill_group


# The longest line a target may answer with: an ``observe`` reply with page contents fits well
# inside; a longer line is an ``error`` (a runaway target), not a reason to exhaust memory.
MAX_LINE = 32 << 20
# How much of a target's standard error is kept (its last bytes, for crash messages).
STDERR_KEEP = 8 << 10


class _Peer:
    """One running implementation process, in its own process group.

    Its standard error is drained while memspec waits for a reply (a target that floods it
    never blocks on a full pipe) and only its tail is kept; every reply has one deadline
    however the bytes trickle in; a line longer than ``MAX_LINE`` is garbage."""

    def __init__(self, argv: list[str], timeout: float, memory_mb: int):
        def limits() -> None:
            os.setpgid(0, 0)
            if memory_mb:
                lim = memory_mb << 20
                resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        try:
            self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, preexec_fn=limits)
        except OSError as e:
            raise TargetError(f"cannot start {shlex.join(argv)!r}: {e.strerror}") from None
        LIVE_GROUPS.add(self.p.pid)
        self.timeout = timeout
        self.buf = b""
        self.err = b""
        self.ident = 0
        self.dead = False
        assert self.p.stderr is not None and self.p.stdout is not None
        os.set_blocking(self.p.stderr.fileno(), False)
        # replies are read as they are there, waited for (select) only when none is: a target that
        # writes its replies as it goes often has the next ones written by the time they are asked for
        os.set_blocking(self.p.stdout.fileno(), False)

    def send(self, msg: dict[str, Any]) -> None:
        _send_line(self, encode(msg))

    def _drain_stderr(self) -> bool:
        """Read what standard error holds now; False at its end."""
        assert self.p.stderr is not None
        try:
            chunk = os.read(self.p.stderr.fileno(), 1 << 16)
        except BlockingIOError:
            return True
        except (OSError, ValueError):
            return False
        if not chunk:
            return False
        self.err = (self.err + chunk)[-STDERR_KEEP:]
        self.on_stderr(chunk)
        return True

    def on_stderr(self, chunk: bytes) -> None:
        """What a peer does with its standard error besides keeping the tail (nothing here)."""

    def receive(self, what: str) -> dict[str, Any]:
        return self.decode_line(self.receive_line(what), what)

    def receive_line(self, what: str) -> bytes:
        """The next whole line, waited for as ``receive`` waits, not yet decoded."""
        self._fill(what)
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def receive_lines(self, what: str) -> list[bytes]:
        """Every whole line read so far, at least one (waited for as ``receive`` waits), not yet
        decoded (``decode_line``); what follows the last newline stays for the next read."""
        self._fill(what)
        *lines, self.buf = self.buf.split(b"\n")
        return lines

    def decode_line(self, line: bytes, what: str) -> dict[str, Any]:
        """One line as a message; garbage (not JSON, too long) ends the peer, as a verdict."""
        if len(line) > MAX_LINE:
            self.kill()
            raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: a line longer than "
                                f"{MAX_LINE >> 20} MiB")
        try:
            return decode(line)
        except ProtocolViolation as e:
            self.kill()
            raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: {e}") from None

    def _fill(self, what: str) -> None:
        """Read until the buffer holds a newline: one deadline for the whole reply."""
        assert self.p.stdout is not None and self.p.stderr is not None
        if self.dead:
            raise SessionFailed(RunStatus.CRASH, f"target was already stopped at {what}")
        if b"\n" in self.buf:
            return
        fd, efd = self.p.stdout.fileno(), self.p.stderr.fileno()
        watch = [fd, efd]
        deadline = time.monotonic() + self.timeout
        waited = False
        while b"\n" not in self.buf:
            if waited:
                left = deadline - time.monotonic()
                ready = select.select(watch, [], [], left)[0] if left > 0 else []
                if not ready:
                    self.kill()
                    raise SessionFailed(RunStatus.HANG, f"target hung at {what} (no whole reply in {self.timeout:g} s"
                                        + (f"; {len(self.buf)} bytes of a line" if self.buf else "") + ")")
                if efd in ready and not self._drain_stderr():
                    watch = [fd]
                if fd not in ready:
                    continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                waited = True       # nothing there yet: wait for it (and drain standard error meanwhile)
                continue
            if not chunk:
                # what it wrote on standard error before its end (kill closes the pipe; a read of
                # the reply that does not wait first may see the end before select saw it)
                for _ in range(64):
                    if not self._drain_stderr():
                        break
                self.kill()
                raise SessionFailed(RunStatus.CRASH, f"target exited at {what}: {self.exit_text()}")
            self.buf += chunk
            if len(self.buf) > MAX_LINE and b"\n" not in self.buf:
                self.kill()
                raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: a line longer than "
                                    f"{MAX_LINE >> 20} MiB")

    def exit_text(self) -> str:
        try:
            code = self.p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        # what standard error still holds, without waiting for its end (children may keep it open)
        for _ in range(64):
            if not self._drain_stderr():
                break
        tail = self.err.decode("utf-8", "replace").strip().splitlines()[-3:]
        how = ("closed its output" if code is None else
               f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
        return how + (" -- stderr: " + " | ".join(tail) if tail else "")

    def kill(self) -> None:
        self.dead = True
        kill_group(self.p.pid)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass


# the reset between programs as ``encode`` writes it, and the reply a target usually gives (anything
# else is decoded as json, and judged as before)
RESET_LINE = b'{"type":"reset","id":%d}\n'
RESET_REPLY = b'{"type":"reply","id":%d,"value":0}'


def _send_line(peer: _Peer, data: bytes) -> None:
    if peer.dead:
        return
    try:
        assert peer.p.stdin is not None
        peer.p.stdin.write(data)
        peer.p.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass   # the read that follows reports the exit


class ProtocolSession(Session):
    def __init__(self, target: "ProtocolTarget"):
        self.t = target
        self.n = 0
        self.failed = ""
        try:
            self.peer: _Peer | None = target._peer()
        except TargetError as e:   # a failed process's replacement did not start: the first call's verdict
            self.peer, self.failed = None, str(e)

    def _live(self, what: str) -> _Peer:
        if self.peer is None:
            raise SessionFailed(RunStatus.CRASH, f"no target process at {what}: {self.failed}")
        return self.peer

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        self.n += 1
        peer = self._live(f"call {self.n} ({call.name})")
        peer.ident += 1
        ident = peer.ident
        peer.send(call_message(ident, call, args))
        reply = peer.receive(f"call {self.n} ({call.name})")
        try:
            return reply_to_outcome(reply, ident)
        except ProtocolViolation as e:
            peer.kill()
            raise SessionFailed(RunStatus.ERROR, f"target answered garbage at call {self.n} ({call.name}): {e}") from None

    def observe(self) -> Observation:
        peer = self._live(f"observe after call {self.n}")
        peer.ident += 1
        ident = peer.ident
        peer.send({"type": "observe", "id": ident})
        reply = peer.receive(f"observe after call {self.n}")
        try:
            return state_to_observation(reply, ident)
        except ProtocolViolation as e:
            peer.kill()
            raise SessionFailed(RunStatus.ERROR, f"target answered garbage at observe after call {self.n}: {e}") from None

    def close(self) -> None:
        pass


class ProtocolTarget(Target):
    runs_elsewhere = True       # the server is another process

    def __init__(self, command: str, timeout: float = 10.0, memory_mb: int = 4096, **_: Any):
        self.command = command.strip()
        try:
            self.argv = shlex.split(self.command)
        except ValueError as e:
            raise UsageError(f"cannot split target command {self.command!r}: {e}") from None
        if not self.argv:
            raise UsageError("cmd: needs a command line, e.g. cmd:./my_impl")
        self.name = "cmd:" + self.command
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._live: _Peer | None = None
        self._hello: dict[str, Any] = {}
        self._start()

    def _start(self) -> _Peer:
        peer = _Peer(self.argv, self.timeout, self.memory_mb)
        peer.send({"type": "hello", "protocol": PROTOCOL_VERSION, "client": f"memspec {__version__}"})
        # Start-up may take longer than one call (an interpreter importing its libraries):
        # the hello gets a longer limit than each reply.
        peer.timeout = max(self.timeout, 60.0)
        try:
            hello = peer.receive("hello")
        except SessionFailed as e:
            raise TargetError(f"{self.name}: no valid hello: {e.message}") from None
        if hello.get("type") != "hello":
            peer.kill()
            raise TargetError(f"{self.name}: first message must be 'hello', got {hello.get('type')!r}")
        if "client" in hello or hello == {"type": "hello", "protocol": PROTOCOL_VERSION, "client": f"memspec {__version__}"}:
            peer.kill()
            raise TargetError(f"{self.name}: answered memspec's hello with a client's hello (its own input echoed "
                              "back?): a protocol target answers with the layers and calls it implements")
        if hello.get("protocol") != PROTOCOL_VERSION:
            peer.kill()
            raise TargetError(f"{self.name}: speaks protocol {hello.get('protocol')!r}; memspec speaks {PROTOCOL_VERSION}")
        peer.timeout = self.timeout
        self._hello = hello
        layers = hello.get("layers") or ["os"]
        self.layers = tuple(layers)
        caps = hello.get("capabilities") or []
        self.capabilities = frozenset(str(c) for c in caps) if isinstance(caps, list) else frozenset()
        if hello.get("calls"):
            self.calls = frozenset(hello["calls"])      # an explicit list declares what it names
        else:
            self.calls = negotiate(self.layers, None, self.capabilities)
        self._live = peer
        return peer

    def _peer(self) -> _Peer:
        if self._live is None or self._live.dead or self._live.p.poll() is not None:
            if self._live is not None:
                self._live.kill()
            return self._start()
        peer = self._live
        peer.ident += 1
        _send_line(peer, RESET_LINE % peer.ident)
        try:
            line = peer.receive_line("reset")
            if line == RESET_REPLY % peer.ident:     # the usual answer, as json.dumps writes it
                return peer
            r = peer.decode_line(line, "reset")
        except SessionFailed:
            return self._start()
        if r.get("type") != "reply" or r.get("id") != peer.ident:
            peer.kill()
            return self._start()
        return peer

    def facts(self) -> dict[str, Any]:
        f = self._hello.get("facts") or {}
        return dict(f) if isinstance(f, dict) else {}

    def unsupported(self) -> list[str]:
        u = self._hello.get("unsupported") or []
        return [str(x) for x in u] if isinstance(u, list) else []

    def session(self, layer: str = "os") -> ProtocolSession:
        return ProtocolSession(self)

    def close(self) -> None:
        if self._live is not None:
            self._live.send({"type": "bye"})
            self._live.kill()
            self._live = None
