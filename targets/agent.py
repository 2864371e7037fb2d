"""Target ``linux-agent``: the running kernel, judged through the native agent.

The agent (``agent/agent.c``: C99, Linux system calls, libc only) speaks the line protocol
for the os layer and makes the real system calls, as the ``linux`` target does from a Python
child: one process per program, forked processes for process prefixes, accesses probed
with a SIGSEGV/SIGBUS handler, /proc/self/maps and fault counts at checkpoints.  memspec
builds it with gcc at first use (static, or dynamic where the static C library is absent)
and caches it under the user's cache directory, keyed by a hash of the source and flags.

The target is a ``cmd:`` target underneath (``protocol.ProtocolTarget``: one process group,
time limits, crash and garbage verdicts) with three additions: a reply carrying
``refused`` (a call that would touch memory the program did not map) is the run status
``refused``, as the linux target's; a checkpoint's ``faults`` per process reach the judge
(``seed.fault.*-counted``); and the facts are the machine's (``linux.host_facts``) with
what only the agent's own process can tell (execute-only pages, the address-space top,
its own mappings, which calls exist) from its hello.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from importlib import resources
from typing import Any

from memspec.consts import SANDBOX_WINDOW
from memspec.errors import TargetError
from memspec.program import Call
from memspec.protocol import ProtocolViolation, call_message, reply_to_outcome, state_to_observation
from memspec.records import Observation, Outcome, RunStatus

from .base import SessionFailed
from .protocol import ProtocolSession, ProtocolTarget
from .toolchain import building, cache_dir

SOURCE = "agent.c"
CFLAGS = ("-O2", "-std=gnu99", "-Wall")
# how to link, best first: a static PIE sits where a PIE's text does (0x55..., like the Python
# the linux target runs in), so low addresses are free as there; static without PIE support;
# dynamic where no static C library is installed
LINKS = (("-static-pie", "-fPIE"), ("-static",), ())
APT_HINT = "apt-get install -y gcc libc6-dev"


def _source() -> bytes:
    return resources.files("memspec.targets").joinpath("agent").joinpath(SOURCE).read_bytes()


def build_agent(defines: tuple[str, ...] = (), force: bool = False) -> str:
    """Build (or find in the cache) the agent; returns the path of the executable.

    ``defines`` are extra ``-D`` options (the deliberately broken variants the tests use).
    Static first (the binary then runs the same under an emulator, with no loader; see
    ``LINKS``).  Needs gcc; nothing is downloaded."""
    text = _source()
    h = hashlib.sha256(text + b"\0" + repr((CFLAGS, LINKS, defines)).encode())
    out_dir = os.path.join(cache_dir(), f"agent-{h.hexdigest()[:16]}")
    exe = os.path.join(out_dir, "memspec-agent")
    if os.path.exists(exe) and not force:
        return exe
    if shutil.which("gcc") is None:
        raise TargetError(f"building the native agent needs gcc: {APT_HINT}")
    with building(out_dir, {SOURCE: text}, prefix="agent-") as work:
        errors = []
        for link in LINKS:
            cmd = ["gcc", *CFLAGS, *link, *defines, "-o", "memspec-agent", SOURCE]
            r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            if r.returncode == 0:
                break
            errors.append(f"{shlex.join(cmd)}\n{r.stderr.strip()}")
        else:
            raise TargetError("building the native agent failed:\n" + "\n".join(errors))
    return exe


class AgentSession(ProtocolSession):
    """A protocol session that also reads the agent's refusals and fault counts."""

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        self.n += 1
        what = f"call {self.n} ({call.name})"
        peer = self._live(what)
        peer.ident += 1
        peer.send(call_message(peer.ident, call, args))
        reply = peer.receive(what)
        if reply.get("type") == "reply" and isinstance(reply.get("refused"), str):
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n} refused: {reply['refused']}")
        try:
            return reply_to_outcome(reply, peer.ident)
        except ProtocolViolation as e:
            peer.kill()
            raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: {e}") from None

    def observe(self) -> Observation:
        what = f"observe after call {self.n}"
        peer = self._live(what)
        peer.ident += 1
        peer.send({"type": "observe", "id": peer.ident})
        reply = peer.receive(what)
        try:
            obs = state_to_observation(reply, peer.ident)
        except ProtocolViolation as e:
            peer.kill()
            raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: {e}") from None
        faults = {p: st["faults"] for p, st in reply["procs"].items()
                  if isinstance(st, dict) and _two_ints(st.get("faults"))}
        return Observation(obs.maps, (("faults", faults),) if faults else ())


def _two_ints(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


class AgentTarget(ProtocolTarget):
    """The agent run by ``prefix`` (an emulator's command line, or nothing), judged on the os layer."""

    label = "linux-agent"

    def __init__(self, timeout: float = 10.0, defines: tuple[str, ...] = (), prefix: tuple[str, ...] = (), **_: Any):
        exe = build_agent(tuple(defines))
        # no address-space limit: the agent's processes are judged on the machine's own limits
        super().__init__(shlex.join([*prefix, exe]), timeout=timeout, memory_mb=0)
        self.name = self.label

    def facts(self) -> dict[str, Any]:
        from .linux import host_facts
        f = host_facts()
        f.update(super().facts())
        f["quiet_ranges"] = [list(SANDBOX_WINDOW)]
        return f

    def not_observable(self) -> dict[str, str]:
        from .linux import NOT_OBSERVABLE, ONE_NODE_CLAUSES, SHM_NAME_CLAUSES, _unreached_limits
        out = dict(NOT_OBSERVABLE)
        facts = self.facts()
        if not facts.get("shm_private"):
            out.update(SHM_NAME_CLAUSES)
        if facts.get("nodes", 1) < 2:
            out.update(ONE_NODE_CLAUSES)
        out.update(_unreached_limits(facts))
        return out

    def session(self, layer: str = "os") -> AgentSession:
        return AgentSession(self)


class LinuxAgentTarget(AgentTarget):
    label = "linux-agent"
