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
import json
import os
import shlex
import shutil
import subprocess
import sys
from bisect import bisect_right
from itertools import accumulate
from importlib import resources
from typing import Any

from memspec.consts import CONSTANTS, SANDBOX_WINDOW
from memspec.errors import TargetError
from memspec.program import Call, Flags, Int, Program, Ref, eval_arg
from memspec.protocol import (ProtocolViolation, call_message, encode, fast_reply, reply_to_outcome,
                              state_to_observation)
from memspec.records import Observation, Outcome, RunResult, RunStatus

from .base import SessionFailed
from .protocol import RESET_LINE, RESET_REPLY, ProtocolSession, ProtocolTarget
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
        return _outcome(peer, peer.receive(what), peer.ident, self.n, what)

    def observe(self) -> Observation:
        what = f"observe after call {self.n}"
        peer = self._live(what)
        peer.ident += 1
        peer.send({"type": "observe", "id": peer.ident})
        return _observation(peer, peer.receive(what), peer.ident, what)


def _outcome(peer: Any, reply: dict[str, Any], ident: int, n: int, what: str) -> Outcome:
    if reply.get("type") == "reply" and isinstance(reply.get("refused"), str):
        raise SessionFailed(RunStatus.REFUSED, f"call {n} refused: {reply['refused']}")
    try:
        return reply_to_outcome(reply, ident)
    except ProtocolViolation as e:
        peer.kill()
        raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: {e}") from None


def _observation(peer: Any, reply: dict[str, Any], ident: int, what: str) -> Observation:
    """A ``state`` reply as an observation, with each process's fault counts (``seed.fault.*-counted``)."""
    try:
        obs = state_to_observation(reply, ident)
    except ProtocolViolation as e:
        peer.kill()
        raise SessionFailed(RunStatus.ERROR, f"target answered garbage at {what}: {e}") from None
    faults = {p: st["faults"] for p, st in reply["procs"].items()
              if isinstance(st, dict) and _two_ints(st.get("faults"))}
    return Observation(obs.maps, (("faults", faults),) if faults else ())


# Pipelined programs: the bytes of requests sent ahead of their replies.  Below a pipe's
# buffer (64 KiB), so the harness's write never waits on an agent that is itself waiting to
# write a reply the harness has not read yet.
WINDOW = 32 << 10


def _arg(a: Any) -> Any:
    """A call's argument as a pipelined request carries it: a reference to an earlier named
    result stays one (the agent resolves it when the call's turn comes)."""
    if type(a) is Ref:
        return {"ref": a.name, "add": a.offset}
    return eval_arg(a, {})


CALL_HEAD = b'{"type":"call","id":'
OBSERVE_LINE = b'{"type":"observe","id":%d}\n'

# each program's requests as line formats (the id left to fill in), made once per program object:
# a benchmark, a soak or a judge's stream runs one program again; a few kept, the oldest dropped
_TEMPLATES: dict[tuple[int, str], tuple[Program, tuple[int, ...], tuple[bytes, ...]]] = {}
_TEMPLATES_KEPT = 8


def _request_line(c: Call, ident: int) -> bytes:
    """A call of a pipelined program as its request line (the plain json form the formats are made of)."""
    return encode({"type": "call", "id": ident, "proc": c.proc or "main", "name": c.name,
                   "args": [_arg(a) for a in c.args], "result": c.result, "batch": True})


_jstr = json.encoder.encode_basestring_ascii      # how json.dumps writes a string (ensure_ascii)


def _json_arg(a: Any) -> str:
    """``_arg(a)`` as json.dumps writes it (the common kinds without the encoder's machinery)."""
    kind = type(a)
    if kind is Int and type(a.value) is int:
        return int.__repr__(a.value)
    if kind is Flags:
        v = 0
        for n in a.names:
            v |= CONSTANTS[n]
        if type(v) is int:
            return int.__repr__(v)
    elif kind is Ref and type(a.name) is str and type(a.offset) is int:
        return '{"ref":' + _jstr(a.name) + ',"add":' + int.__repr__(a.offset) + "}"
    return json.dumps(_arg(a), separators=(",", ":"))


def _json_str(v: Any) -> str:
    return _jstr(v) if type(v) is str else "null" if v is None else json.dumps(v)


# the parts of a request line around its arguments, by (process, call) and by result name, made once
_HEADS: dict[tuple[str | None, str], bytes] = {}
_TAILS: dict[str | None, bytes] = {}
_PARTS_KEPT = 4096


def _head(c: Call) -> bytes:
    key = (c.proc, c.name)
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) >= _PARTS_KEPT:
            _HEADS.clear()
        text = f',"proc":{_json_str(c.proc or "main")},"name":{_json_str(c.name)},"args":['
        head = _HEADS[key] = b'{"type":"call","id":%d' + text.replace("%", "%%").encode()
    return head


def _tail(result: str | None) -> bytes:
    tail = _TAILS.get(result)
    if tail is None:
        if len(_TAILS) >= _PARTS_KEPT:
            _TAILS.clear()
        tail = _TAILS[result] = f'],"result":{_json_str(result)},"batch":true}}\n'.replace("%", "%%").encode()
    return tail


def _call_format(c: Call) -> bytes:
    """``_request_line(c, N)`` as a ``%d`` format of N (tests/agent/test_fast_reply.py holds the two equal)."""
    args = ",".join(map(_json_arg, c.args))
    if "%" in args:
        args = args.replace("%", "%%")
    return _head(c) + args.encode() + _tail(c.result)


def _template(program: Program, observe: str) -> tuple[tuple[int, ...], tuple[bytes, ...]]:
    """Per request of ``program``: its kind (call index i, or -1 - i: the observation after call i,
    where ``observe`` asks for one) and its line as a ``%d`` format of its id."""
    key = (id(program), observe)
    hit = _TEMPLATES.get(key)
    if hit is not None and hit[0] is program:
        return hit[1], hit[2]
    kinds: list[int] = []
    fmts: list[bytes] = []
    last = len(program.calls) - 1
    for i, c in enumerate(program.calls):
        kinds.append(i)
        fmts.append(_call_format(c))
        if observe == "each" or (observe == "end" and i == last):
            kinds.append(-1 - i)
            fmts.append(OBSERVE_LINE)
    if len(_TEMPLATES) >= _TEMPLATES_KEPT:
        del _TEMPLATES[next(iter(_TEMPLATES))]
    _TEMPLATES[key] = (program, tuple(kinds), tuple(fmts))
    return tuple(kinds), tuple(fmts)


# per template and id width, where each request's line ends at most (``AgentStream._send``'s window)
_BOUNDS: dict[tuple[int, int], tuple[tuple[bytes, ...], list[int]]] = {}


def _bounds(fmts: tuple[bytes, ...], digits: int) -> list[int]:
    """Offsets bounding where each line of ``fmts`` ends, ids of at most ``digits`` digits each
    (a ``%d`` of 2 bytes becomes the id; a ``%%`` one byte less): entry k is at least the bytes of
    lines 0..k-1, and entry k minus entry j at least those of lines j..k-1."""
    key = (id(fmts), digits)
    hit = _BOUNDS.get(key)
    if hit is not None and hit[0] is fmts:
        return hit[1]
    ends = list(accumulate((len(f) - 2 + digits for f in fmts), initial=0))
    if len(_BOUNDS) >= _TEMPLATES_KEPT:
        del _BOUNDS[next(iter(_BOUNDS))]
    _BOUNDS[key] = (fmts, ends)
    return ends


def _requests(program: Program, observe: str, first: int) -> list[tuple[int, int, bytes]]:
    """(call index, request id, line) for every request of ``program``: each call, and an
    observe where ``observe`` asks for one (index -1 - i: the observation after call i)."""
    kinds, fmts = _template(program, observe)
    return [(k, first + 1 + j, f % (first + 1 + j)) for j, (k, f) in enumerate(zip(kinds, fmts))]


def _two_ints(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


class AgentTarget(ProtocolTarget):
    """The agent run by ``prefix`` (an emulator's command line, or nothing), judged on the os layer."""

    label = "linux-agent"
    # programs pipelined where the agent offers it (a target whose agent speaks through a
    # kernel's console, UML's, keeps one request at a time)
    pipelined = True

    def __init__(self, timeout: float = 10.0, defines: tuple[str, ...] = (), prefix: tuple[str, ...] = (), **_: Any):
        exe = build_agent(tuple(defines))
        # on the kernel itself main may write its answers in blocks (agent.c, --answer-blocks); under an
        # emulator, which may die of its own accord in any call, one at a time
        argv = [*prefix, exe] if prefix else [exe, "--answer-blocks"]
        # no address-space limit: the agent's processes are judged on the machine's own limits
        super().__init__(shlex.join(argv), timeout=timeout, memory_mb=0)
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

    def _flight(self) -> list["AgentStream"]:
        """The runs started (``start``) and not yet read to their ends, oldest first."""
        return self.__dict__.setdefault("_started", [])

    def _settle(self) -> None:
        """Read every started run to its end (each keeps its result for its ``finish()``), so that
        what is asked next is the only thing the agent is doing: a caller that runs a program (a
        failure's re-run) while runs it started are in flight gets the target to itself."""
        flight = self._flight()
        while flight:
            flight[0].finish()      # (which takes it off the list)

    def session(self, layer: str = "os") -> AgentSession:
        self._settle()
        return AgentSession(self)

    def run(self, program: Program, observe: str = "end") -> RunResult:
        """The program's requests sent ahead of their replies (the agent resolves each named
        result itself and skips what follows a refused call), the outcomes read as they come:
        one write for many calls instead of a round trip per call.  The same outcomes and
        verdicts as the call-by-call session (tests/agent/test_agent_pipeline.py)."""
        self._settle()
        if not (self.pipelined and self._hello.get("pipeline")) or program.layer != "os":
            return super().run(program, observe)
        return AgentStream(self, program, observe).finish()

    def start(self, program: Program, observe: str = "end") -> Any:
        """Start ``program``: its reset and requests sent, run by the agent while the caller does
        something else (``RunAhead`` judges the program before); ``finish()`` gives what ``run``
        gives.  Several may be started: the agent runs them one after the other.  A program goes
        ahead of the ones in flight only where every request of theirs has gone and all their
        requests and its own fit the window together (the harness's write then never waits on an
        agent that waits for its answers to be read); otherwise the runs in flight are read to
        their ends first."""
        if not (self.pipelined and self._hello.get("pipeline")) or program.layer != "os":
            return Ran(self.run(program, observe))
        flight = self._flight()
        if any(f.sent < len(f.kinds) for f in flight):
            self._settle()
        s = AgentStream(self, program, observe, reset_ahead=True)
        if s.result is None:
            if flight and sum(f.ends[-1] for f in flight) + s.ends[-1] > WINDOW:
                self._settle()
            s._send()
            flight.append(s)
        return s

    def abandon(self, started: Any) -> None:
        """Give up the started runs without reading them (an error or an interrupt while they ran):
        the agent is ended, and the next program starts a new one."""
        flight = self._flight()
        for f in [*flight, started]:
            if isinstance(f, AgentStream) and f.result is None:
                f.peer.kill()
                f.result = RunResult(tuple(f.outcomes), tuple(f.observations), RunStatus.ERROR, "abandoned")
        flight.clear()

    def stream(self, program: Program) -> "AgentStream":
        """The run of ``program`` read as the agent answers (``specs.judge.judge`` judges call k
        while the agent runs the calls after it); ``finish()`` is what ``run`` returns."""
        self._settle()
        return AgentStream(self, program, "end", WINDOW if self.pipelined else 0)

    def close(self) -> None:
        for f in self._flight():
            if f.result is None:
                f.result = RunResult(tuple(f.outcomes), tuple(f.observations), RunStatus.ERROR, "the target was closed")
        self._flight().clear()
        super().close()


class Ran:
    """A run already over, as ``AgentTarget.start`` gives it where the program is not pipelined."""

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def finish(self) -> RunResult:
        return self.result


class AgentStream:
    """One pipelined program on the agent: requests sent a window ahead, replies read on demand.

    The program's request lines are made from its template as they are sent, a window's worth at
    a time (a program of thousands of calls is not formatted whole before its first request goes);
    the window counts each line at most ``len(format) - 2 + digits`` bytes, the longest its id can
    make it (``_bounds``).  The replies are read as many lines at a time as the pipe holds and
    decoded by ``fast_reply`` (the common reply lines) or by json (everything else)."""

    def __init__(self, target: AgentTarget, program: Program, observe: str, window: int = WINDOW,
                 reset_ahead: bool = False) -> None:
        self.target, self.program, self.observe = target, program, observe
        self.window = window        # 0: one request at a time
        self.reset: int | None = None       # the id of a reset sent with the first requests, not yet answered
        self.outcomes: list[Outcome] = []
        self.observations: list[tuple[int, Observation]] = []
        self.seen_at: dict[int, Observation] = {}
        self.result: RunResult | None = None
        self.kinds: tuple[int, ...] = ()
        self.sent = self.got = 0    # requests written; replies read
        self.lines: list[bytes] = []
        self.at = 0                 # the next of ``lines`` to decode
        # the reset stays a round trip of its own: sent in one write with the program's first
        # requests it saved the harness a wakeup a program, but the run alone made 20-30 % fewer
        # programs/s on a loaded machine.  A program started to run while the harness does something
        # else (``AgentTarget.start``, ``reset_ahead``) sends it with them: its answer is read first,
        # and a live agent that does not give it is replaced and the program run again (``_reset_answered``)
        live = target._live
        if reset_ahead and live is not None and not live.dead and live.p.poll() is None:
            self.peer = live
            live.ident += 1
            self.reset = live.ident
        else:
            try:
                self.peer = target._peer()
            except TargetError as e:
                self.result = RunResult((), (), RunStatus.CRASH, f"no target process at call 1: {e}")
                return
        self.first = self.peer.ident + 1        # the id of request 0
        self.kinds, self.fmts = _template(program, observe)
        n = len(self.fmts)
        self.ends = _bounds(self.fmts, len(str(self.first + n)))
        self.peer.ident += n

    def _send(self) -> None:
        """Send what the window allows: refilled once half of it has been answered, with as many
        requests as fit (at least one when none is waiting), in one write."""
        ends, sent = self.ends, self.sent
        if sent != self.got and ends[sent] - ends[self.got] > self.window // 2:
            return
        upto = max(bisect_right(ends, ends[self.got] + self.window) - 1, sent + (sent == self.got))
        upto = min(upto, len(self.kinds))
        if upto > sent:
            first = self.first
            data = b"".join([f % (first + j) for j, f in enumerate(self.fmts[sent:upto], sent)])
            if sent == 0 and self.reset is not None:
                data = RESET_LINE % self.reset + data
            _write(self.peer, data)
            self.sent = upto

    def _reset_answered(self) -> bool:
        """Read the answer to a reset sent with the first requests.  Where it is not the answer
        (the agent died, or said something else), the agent is replaced and the program run again
        from its start on the new one: this stream then holds that run, and False is returned."""
        peer = self.peer
        try:
            if self.at == len(self.lines):
                self.lines, self.at = peer.receive_lines("reset"), 0
            line = self.lines[self.at]
            if line == RESET_REPLY % self.reset:
                self.at += 1
                self.reset = None
                return True
            r = peer.decode_line(line, "reset")
            if r.get("type") == "reply" and r.get("id") == self.reset and r.get("value", 0) == 0:
                self.at += 1
                self.reset = None
                return True
        except SessionFailed:
            pass
        peer.kill()
        again = AgentStream(self.target, self.program, self.observe, self.window).finish()
        self.outcomes[:] = again.outcomes
        self.observations[:] = again.observations
        self.seen_at.clear()
        for i, obs in again.observations:
            self.seen_at.setdefault(i, obs)
        self.lines, self.at, self.reset = [], 0, None
        self.got = self.sent = len(self.kinds)
        self.result = again
        return False

    def _what(self, k: int) -> str:
        i = self.kinds[k]
        return f"call {i + 1} ({self.program.calls[i].name})" if i >= 0 else f"observe after call {-i}"

    def _more(self) -> None:
        """Send what the window allows, then read the replies there are (at least one)."""
        if self.sent < len(self.kinds):
            self._send()
        if self.reset is not None and not self._reset_answered():
            return
        try:
            if self.at == len(self.lines):
                self.lines, self.at = self.peer.receive_lines(self._what(self.got)), 0
            self._decode()
        except SessionFailed as e:
            self._give_back()
            if not self.peer.dead:
                _drain(self.peer, self.sent - self.got)
            self.result = RunResult(tuple(self.outcomes), tuple(self.observations), e.status, e.message)

    def _decode(self) -> None:
        """The replies read so far, up to the requests sent, in order (SessionFailed at a bad one)."""
        lines, kinds, outcomes, peer = self.lines, self.kinds, self.outcomes, self.peer
        stop = min(len(lines), self.at + self.sent - self.got)
        while self.at < stop:
            line, k = lines[self.at], self.got
            i, ident = kinds[k], self.first + k
            self.at += 1
            self.got += 1
            if i >= 0:
                o = fast_reply(line, ident)
                if o is None:
                    what = self._what(k)
                    o = _outcome(peer, peer.decode_line(line, what), ident, i + 1, what)
                outcomes.append(o)
            else:
                what = self._what(k)
                obs = _observation(peer, peer.decode_line(line, what), ident, what)
                self.observations.append((-1 - i, obs))
                self.seen_at.setdefault(-1 - i, obs)

    def _give_back(self) -> None:
        """Lines read and not decoded go back to the peer (the next reads see them first)."""
        if self.at < len(self.lines):
            self.peer.buf = b"".join(ln + b"\n" for ln in self.lines[self.at:]) + self.peer.buf
        self.lines, self.at = [], 0

    def _going(self) -> bool:
        return self.result is None and self.got < len(self.kinds)

    def outcome(self, index: int) -> Outcome | None:
        while len(self.outcomes) <= index and self._going():
            self._more()
        return self.outcomes[index] if index < len(self.outcomes) else None

    def observation(self, index: int) -> Observation | None:
        # the checkpoint after call k comes after its outcome and before call k+1's
        while len(self.outcomes) <= index + 1 and self._going():
            self._more()
        return self.seen_at.get(index)

    def finish(self) -> RunResult:
        while self._going():
            self._more()
        if self.result is None:
            self._give_back()
            self.result = RunResult(tuple(self.outcomes), tuple(self.observations))
        flight = self.target.__dict__.get("_started")
        if flight and self in flight:
            flight.remove(self)
        return self.result


def _write(peer: Any, data: bytes) -> None:
    if peer.dead:
        return
    try:
        peer.p.stdin.write(data)
        peer.p.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass   # the read that follows reports the exit


def _drain(peer: Any, n: int) -> None:
    """Read the replies of requests already sent (the calls after a refusal, skipped by the
    agent), so that the next program's first reply is its own; a peer that fails here is
    replaced at the next program."""
    try:
        while n > 0:
            lines = peer.receive_lines("a request sent ahead")
            for line in lines[:n]:
                peer.decode_line(line, "a request sent ahead")
            if len(lines) > n:
                peer.buf = b"".join(ln + b"\n" for ln in lines[n:]) + peer.buf
            n -= len(lines)
    except SessionFailed:
        peer.kill()


class LinuxAgentTarget(AgentTarget):
    label = "linux-agent"


class LinuxOnAgent(AgentTarget):
    """Target ``linux`` where gcc can build the agent: the running kernel, one C process per
    program, its calls pipelined (``run``); the judge's view is the ``linux-agent`` target's."""

    label = "linux"


_FELL_BACK: list[str] = []


def linux_target(timeout: float = 10.0, **options: Any) -> Any:
    """Target ``linux``: the running kernel through the native agent; where the agent cannot be
    built (no gcc), through a forked Python child (``linux-py``), said once on standard error."""
    try:
        return LinuxOnAgent(timeout=timeout)
    except TargetError as e:
        from .linux import LinuxTarget
        if not _FELL_BACK:
            _FELL_BACK.append(str(e))
            print(f"memspec: linux: {str(e).splitlines()[0]}; programs run in a forked Python child instead "
                  "(the linux-py target)", file=sys.stderr)
        return LinuxTarget(timeout=timeout)
