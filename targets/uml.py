"""Target ``uml``: Linux as a process (User-mode Linux), judged through the native agent.

Debian's ``user-mode-linux`` package is a Linux kernel (6.1) built to run as an ordinary
program: ``linux.uml`` boots in a second or two with no privileges and no KVM, with the
host's files as its root (hostfs).  memspec boots it once with a small init of its own
(``agent/init.c``, static) as the first process and the agent (``agent/agent.c``) under it,
and then runs many programs over the console, one JSON line each way, as with any ``cmd:``
target:

    linux.uml mem=256M root=/dev/root rootfstype=hostfs rootflags=/ rw init=INIT
              con=null con0=fd:0,fd:1 ssl=null ssl0=null,fd:2 console=ttyS0 -- /dev/tty0 AGENT

The first console (``/dev/tty0``: linux.uml's standard input and output) is the protocol's
line, in raw mode; the kernel's console is the first serial line, which is linux.uml's
standard error: the kernel log.  Lines the kernel logs while a program runs are kept in the
fact ``kernel_log`` (the report's facts); a warning, a BUG or an oops makes the run an
``error`` with the lines as its message, as the kvm target does with KVM's.

Everything the model reads about this machine is probed inside it, never taken from the
host: the init reports RAM, swap, sysctls, THP, NUMA nodes and the madvise advice the kernel
accepts; the agent's hello the top of the address space (UML's is 39 bits: 3-level page
tables), page size, limits, capabilities and which calls exist (a call whose system call is
ENOSYS is not applicable, never failed).  The kernel's release is the fact ``kernel``, which
the model's version-gated rules read, and ``impl_version``, which the cited differences
(``specs/differences-uml.toml``) name.
"""

from __future__ import annotations

import hashlib
import os
import select
import shlex
import shutil
import subprocess
import tempfile
from importlib import resources
from typing import Any

from memspec import __version__
from memspec.consts import SANDBOX_WINDOW
from memspec.errors import TargetError
from memspec.program import Program
from memspec.protocol import PROTOCOL_VERSION
from memspec.records import RunResult, RunStatus

from .agent import CFLAGS, AgentTarget, build_agent
from .base import SessionFailed, negotiate
from .protocol import _Peer
from .toolchain import building, cache_dir, run_steps

LINUX_UML = "linux.uml"
APT_HINT = "apt-get install -y user-mode-linux"
INIT_SOURCE = "init.c"
CONSOLE = "/dev/tty0"
BOOT_TIMEOUT = 120.0
# kernel-log lines that are a finding by themselves (a kernel warning, a BUG, an oops)
ALARMING = ("WARNING:", "BUG:", "Oops", "Kernel panic", "general protection", "Call Trace")
KEEP_LOG = 1000
IMAGE_MB = 256


def find_linux_uml(binary: str = LINUX_UML) -> str:
    path = shutil.which(binary)
    if path is None:
        raise TargetError(f"the uml target needs {binary} (Debian: {APT_HINT})")
    return path


def build_init(force: bool = False) -> str:
    """Build (or find in the cache) the static init; returns the path of the executable."""
    text = resources.files("memspec.targets").joinpath("agent").joinpath(INIT_SOURCE).read_bytes()
    h = hashlib.sha256(text + b"\0" + repr((CFLAGS, "-static")).encode())
    out_dir = os.path.join(cache_dir(), f"init-{h.hexdigest()[:16]}")
    exe = os.path.join(out_dir, "memspec-init")
    if os.path.exists(exe) and not force:
        return exe
    if shutil.which("gcc") is None:
        raise TargetError("building memspec's init needs gcc: apt-get install -y gcc libc6-dev")
    with building(out_dir, {INIT_SOURCE: text}, prefix="init-") as work:
        run_steps([["gcc", *CFLAGS, "-static", "-o", "memspec-init", INIT_SOURCE]], work, "memspec's init",
                  " (a static C library is needed: apt-get install -y libc6-dev)")
    return exe


class _KernelPeer(_Peer):
    """linux.uml: its standard error is the kernel's console; whole lines are kept in ``lines``."""

    def __init__(self, argv: list[str], timeout: float, memory_mb: int):
        self.lines: list[str] = []
        self._part = b""
        super().__init__(argv, timeout, memory_mb)

    def on_stderr(self, chunk: bytes) -> None:
        *whole, self._part = (self._part + chunk).split(b"\n")
        self.lines.extend(ln.decode("utf-8", "replace").rstrip("\r") for ln in whole if ln.strip())

    def take_lines(self) -> list[str]:
        """The kernel-log lines logged since the last call (with what standard error holds now)."""
        while self.p.stderr is not None and not self.p.stderr.closed:
            try:
                if not select.select([self.p.stderr.fileno()], [], [], 0)[0] or not self._drain_stderr():
                    break
            except (OSError, ValueError):
                break
        out, self.lines = self.lines, []
        return out


class UmlTarget(AgentTarget):
    """The agent as a process of Linux 6.1 running as a user-space program (``linux.uml``)."""

    pipelined = False       # the requests go through the guest kernel's console: one at a time

    label = "uml"

    def __init__(self, timeout: float = 10.0, defines: tuple[str, ...] = (), mem_mb: int = 256, **options: Any):
        self.binary = self._binary()
        self.init = build_init()
        self.agent = build_agent(tuple(defines))
        self.mem_mb = mem_mb
        self.kernel_log: list[str] = []
        self.boot_log: list[str] = []
        self._init_facts: dict[str, Any] = {}
        self._uml_dir = tempfile.mkdtemp(prefix="memspec-uml-")
        self._image = ""
        # AgentTarget builds a command for a prefix; here the command is the kernel's
        try:
            super(AgentTarget, self).__init__(shlex.join(self._argv()), timeout=timeout, memory_mb=0)
        except BaseException:       # no boot: nothing of it stays behind
            shutil.rmtree(self._uml_dir, ignore_errors=True)
            raise
        self.name = self.label

    def _binary(self) -> str:
        return find_linux_uml()

    def _argv(self) -> list[str]:
        disk = [f"ubd0={self._image}"] if self._image else []
        return [self.binary, f"mem={self.mem_mb}M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
                f"init={self.init}", "con=null", "con0=fd:0,fd:1", "ssl=null", "ssl0=null,fd:2", "console=ttyS0",
                f"uml_dir={self._uml_dir}", *disk, "--", CONSOLE, self.agent]

    def _make_image(self) -> str:
        """A fresh ext4 image for the guest's /tmp (sparse; made again at every boot), or "" when
        mkfs.ext4 is missing: the init then puts a tmpfs there (files without major faults)."""
        mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
        if mkfs is None:
            return ""
        image = os.path.join(self._uml_dir, "tmp.ext4")
        if os.path.exists(image):
            os.unlink(image)
        r = subprocess.run([mkfs, "-q", "-F", image, f"{IMAGE_MB}M"], capture_output=True, text=True)
        return image if r.returncode == 0 else ""

    def _start(self) -> _Peer:
        """Boot the kernel, read the init's facts, then the agent's hello."""
        os.makedirs(self._uml_dir, exist_ok=True)
        self._image = self._make_image()
        self.argv = self._argv()
        peer = _KernelPeer(self.argv, self.timeout, self.memory_mb)
        peer.timeout = BOOT_TIMEOUT
        try:
            try:
                first = peer.receive("boot")
            except SessionFailed as e:
                raise TargetError(f"{self.name}: the kernel did not boot to memspec's init: {e.message}"
                                  + self._log_tail(peer)) from None
            if first.get("type") != "memspec-init" or not isinstance(first.get("facts"), dict):
                raise TargetError(f"{self.name}: expected the init's facts first, got {str(first)[:200]}")
            self._init_facts = dict(first["facts"])
            self.boot_log = peer.take_lines()[-200:]
            peer.send({"type": "hello", "protocol": PROTOCOL_VERSION, "client": f"memspec {__version__}"})
            try:
                hello = peer.receive("hello")
            except SessionFailed as e:
                raise TargetError(f"{self.name}: no valid hello from the agent: {e.message}" + self._log_tail(peer)) from None
            if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
                raise TargetError(f"{self.name}: the agent's first answer is not a protocol {PROTOCOL_VERSION} hello: "
                                  f"{str(hello)[:200]}")
        except BaseException:
            peer.kill()
            raise
        peer.timeout = self.timeout
        self._hello = hello
        self.layers = tuple(hello.get("layers") or ["os"])
        self.capabilities = frozenset()
        self.calls = frozenset(hello["calls"]) if hello.get("calls") else negotiate(self.layers, None, frozenset())
        self.kernel_log.extend(peer.take_lines())
        self._live = peer
        return peer

    @staticmethod
    def _log_tail(peer: _KernelPeer) -> str:
        tail = peer.take_lines()[-4:]
        return " -- kernel log: " + " | ".join(tail) if tail else ""

    def facts(self) -> dict[str, Any]:
        f: dict[str, Any] = dict(self._init_facts)
        f.update(super(AgentTarget, self).facts())      # the agent's hello: what its process sees
        f["impl_version"] = str(f.get("kernel", ""))
        # nothing of the agent's lives in the sandbox window (here above the top of the address
        # space): the model reads this as "a real process, whose own mappings and faults it does
        # not see", as on the other agent targets
        f["quiet_ranges"] = [list(SANDBOX_WINDOW)]
        f["kernel_log"] = self.kernel_log
        return f

    def run(self, program: Program, observe: str = "end") -> RunResult:
        peer = self._live
        if isinstance(peer, _KernelPeer):
            self.kernel_log.extend(peer.take_lines())
        r = super().run(program, observe)
        lines: list[str] = []
        for p in {id(x): x for x in (peer, self._live) if isinstance(x, _KernelPeer)}.values():
            lines += p.take_lines()
        if not lines:
            return r
        self.kernel_log.extend(lines)
        del self.kernel_log[:-KEEP_LOG]
        alarming = [ln for ln in lines if any(w in ln for w in ALARMING)]
        if r.status is RunStatus.OK and alarming:
            return RunResult(r.outcomes, r.observations, RunStatus.ERROR,
                             "the kernel logged during this program: " + " | ".join(alarming[:4]))
        if r.status is not RunStatus.OK:
            return RunResult(r.outcomes, r.observations, r.status, r.message + "; kernel log: " + " | ".join(lines[-4:]))
        return r

    def close(self) -> None:
        super().close()
        shutil.rmtree(self._uml_dir, ignore_errors=True)
