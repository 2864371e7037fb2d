"""Target ``linux-py`` (and ``linux`` where gcc cannot build the native agent, ``targets/agent.py``):
the running kernel, judged through real system calls from a forked Python child.

Each program runs in a forked child (its own process group) that makes the
calls with ``syscall(2)`` through ctypes, so glibc's wrappers judge nothing.
Accesses are probed without crashing the child:

* ``load(a)``: ``write(pipe, a, 1)`` -- the kernel reads the byte for us, or
  fails with EFAULT, which is what a user-mode load would turn into SIGSEGV;
* ``store(a, v)``: ``read(pipe, a, 1)`` after writing ``v`` into the pipe;
* ``fetch(a)``: a grandchild jumps to ``a`` with a SIGSEGV handler that reads
  the page-fault error code from the signal context (I/D bit, faulting RIP).

The child only touches memory the program mapped itself, memory that is not
mapped at all (per /proc/self/maps, read at that moment), and a sandbox window
where nothing else lives; anything else is refused (verdict ``unsupported``)
so that a program can never corrupt the interpreter that runs it.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import time
from typing import Any

from memspec.consts import PAGE_SIZE
from memspec.model.os.limits import GUESS_RAM_SWAP_SINCE
from memspec.model.os.state import kernel_version
from memspec.program import Call, Program
from memspec.records import Mapping, Observation, Outcome, RunResult, RunStatus

from .base import Session, SessionFailed, Target
from .children import describe_status, fork_in_group, kill_group, reap
from .linux_child import WINDOW, Refused, Runner, parse_maps, warm_child
from .linux_facts import SHM_PRIVATE, host_facts
from .linux_sys import CAP_SYS_ADMIN, c_library, has_cap

# Calls of the os layer this target implements: everything but the memory-pressure
# events, which need control of the machine's RAM and swap (see not_observable()).
PRESSURE_CALLS = frozenset({"memory_limit", "set_swappiness", "reclaim", "tick", "wss", "oom", "khugepaged"})


def _os_calls() -> frozenset[str]:
    from memspec.calls import layer_calls
    return frozenset(c.name for c in layer_calls("os")) - PRESSURE_CALLS


# Clauses the running kernel cannot show this harness, and why.  A check run copies
# these into its report (TargetResults.not_observable) instead of warning about them.
NOT_OBSERVABLE = {
    "seed.swap.clock-second-chance": "which page reclaim evicts needs memory pressure; the harness may not exhaust RAM shared with other work",
    "linux.swap.swappiness": "vm.swappiness needs a swap device and pressure; changing the sysctl would affect the whole machine",
    "linux.swap.swappiness-range": "writing /proc/sys/vm/swappiness changes the machine for everybody",
    "linux.oom.kills-worst": "invoking the OOM killer would kill processes of the whole machine",
    "seed.wss.denning": "the kernel keeps no working-set window per process that user space can read",
    "linux.thp.khugepaged-collapse": "khugepaged runs on its own schedule; a collapse cannot be requested and waited for (MADV_COLLAPSE aside)",
    "memspec.pressure.event": "pressure events (machine size, virtual time) are the model's own controls",
    "memspec.inv.no-frame-owned-twice": "an invariant of the model's own state (frame table), checked after every step on the state adopted from the kernel",
    "memspec.inv.mapcount-matches": "an invariant of the model's own state (the rmap's counts); the kernel's mapcounts are not visible to user space",
    "memspec.inv.cow-read-only": "an invariant of the model's own state; on the kernel COW is observed through data and pagemap frames (seed.cow.*)",
    "memspec.inv.isolation": "an invariant of the model's own state; on the kernel isolation is observed through data (posix.fork.private-copy, posix.mmap.shared-visible)",
    "memspec.inv.pte-inside-vma": "an invariant of the model's own page tables",
    "memspec.inv.pte-matches-vma": "an invariant of the model's own page tables",
    "memspec.inv.no-stale-tlb": "an invariant of the model's own TLB; on the kernel stale entries are observed through accesses (seed.fault.step8-tlb)",
    "memspec.inv.locked-resident": "an invariant of the model's own state; on the kernel residency is observed with mincore (posix.mlock.resident)",
    "memspec.inv.vma-page-aligned": "an invariant of the model's own VMA tree",
    "memspec.inv.vmas-disjoint": "an invariant of the model's own VMA tree",
    "memspec.inv.shared-object-exists": "an invariant of the model's own object table",
    "memspec.inv.private-pages-mapped": "an invariant of the model's own state",
    "memspec.proc.exited": "on this target a process ends only by the program's exit(), after which the program may not name it; only the model's OOM killer ends one behind the program's back",
    "linux.mmap.hugetlb-growsdown": "MAP_HUGETLB needs reserved huge pages (none here) and MAP_GROWSDOWN stacks are not modelled; the model answers unknown",
    "memspec.checkpoint": "names checkpoints of layers without a view clause; the os layer uses linux.proc-maps.matches",
}


# Without a private /dev/shm the target rewrites shm names (a per-run prefix, a hash when
# that is too long): the kernel never sees the program's name, so these are not shown.
_NO_PRIVATE_SHM = ("shm names are rewritten with a per-run prefix: a private /dev/shm "
                   "(unshare(CLONE_NEWNS) and a tmpfs mount, which need CAP_SYS_ADMIN) cannot be made here")
SHM_NAME_CLAUSES = {c: _NO_PRIVATE_SHM for c in (
    "posix.shm_open.einval-name", "posix.shm_open.enametoolong", "glibc.shm_open.einval-name-too-long")}


ONE_NODE_CLAUSES = {
    "linux.numa.interleave": "this machine has one NUMA node: interleaving over one node is indistinguishable from first touch",
    "linux.numa.preferred": "this machine has one NUMA node: preference cannot be told from first touch",
}


def _unreached_limits(facts: dict[str, Any]) -> dict[str, str]:
    """Limits no program can reach on this machine as it is (no call of the os layer changes
    them), with the fact that says so."""
    out = {}
    if facts["rlimit_as"] < 0:
        out["linux.mmap.enomem-rlimit-as"] = "RLIMIT_AS is unlimited for this target's processes and no call lowers it"
    if facts["rlimit_data"] < 0:
        out["linux.mmap.enomem-rlimit-data"] = "RLIMIT_DATA is unlimited for this target's processes and no call lowers it"
    if facts["max_map_count"] - facts["base_maps"] > 4096:
        # map_pages would reach it, but this target refuses a map_pages that comes within 4096
        # mappings of the limit: its Python interpreter maps arenas of its own (pymalloc, 256 KiB
        # each) as it goes, and past the limit (brk refused as well) it dies of MemoryError, a crash
        # the program did not cause.  linux-agent, whose heap is reserved first, reaches it.
        out["linux.mmap.enomem-max-map-count"] = (
            f"vm.max_map_count is {facts['max_map_count']}: this target refuses the map_pages that would reach it "
            "(its Python interpreter needs mappings of its own to go on); the linux-agent target reaches it")
    mode, release = facts["overcommit_memory"], str(facts.get("kernel", ""))
    old_guess = mode == 0 and (kernel_version(release) or (0, 0)) < GUESS_RAM_SWAP_SINCE
    if mode == 1 or old_guess:
        # mode 0 since 5.2 refuses a single charge above RAM plus swap (model/os/limits.py): the os
        # generator's commit-limit scenario maps exactly that and a page more; mode 1 refuses nothing
        out["linux.mmap.enomem-overcommit"] = (f"vm.overcommit_memory is {mode}"
                                               + (f" on kernel {release}" if old_guess else "")
                                               + ": no charge of a program is refused for the commit limit")
    if facts["rlimit_nofile"] < 0 or facts["rlimit_nofile"] > 1024:
        out["posix.open.emfile"] = f"RLIMIT_NOFILE is {facts['rlimit_nofile']}: far more descriptors than a program makes"
    if facts["page_size"] == PAGE_SIZE:
        out["memspec.host.page-size"] = "pages are 4 KiB here: the model judges every call"
    return out


def _result(lines: list[bytes], status: int, timed_out: bool, timeout: float) -> RunResult:
    """A program's run from the lines its child wrote and how the child ended."""
    outcomes: list[Outcome] = []
    observations: list[tuple[int, Observation]] = []
    last: dict[str, Any] | None = None
    for line in lines:
        msg = json.loads(line)
        if "o" in msg:
            outcomes.append(Outcome.from_json(msg["o"]))
        elif "obs" in msg:
            observations.append((msg["index"], _observation(msg)))
        elif "refused" in msg or "done" in msg:
            last = msg
            break
    return _run_result(outcomes, observations, last, status, timed_out, timeout)


def _run_result(outcomes: list[Outcome], observations: list[tuple[int, Observation]], last: dict[str, Any] | None,
                status: int, timed_out: bool, timeout: float) -> RunResult:
    """The run: every call answered (``last`` is the child's "done"), one refused, or the child
    hung or died (its wait ``status``) after the outcomes it wrote."""
    if last is not None and "refused" in last:
        return RunResult(tuple(outcomes), tuple(observations), RunStatus.REFUSED,
                         f"call {last['index'] + 1} refused: {last['refused']}")
    if last is not None:
        return RunResult(tuple(outcomes), tuple(observations))
    n = len(outcomes) + 1
    if timed_out:
        return RunResult(tuple(outcomes), tuple(observations), RunStatus.HANG,
                         f"target hung at call {n} (no answer in {timeout:g} s)")
    return RunResult(tuple(outcomes), tuple(observations), RunStatus.CRASH,
                     f"target crashed at call {n}: {describe_status(status)}")


# whether this process has CAP_SYS_ADMIN (read once: what a program's first process starts with)
_HARNESS_CAPS: list[bool] = []

# the longest program sent to a child forked ahead (pickling costs about 15 us a call each way:
# more than a fork past a few hundred calls); a longer one gets a child forked with it
SEND_MAX = 200

# the last line of a program's run: every call answered, or one refused
_LAST = (b'{"done"', b'{"refused"')


def _read_until_end(fd: int, timeout: float) -> tuple[list[bytes], bool, bool]:
    """The lines a program's child writes, up to its last line or the end of the pipe, within
    one deadline: ``(lines, timed_out, ended)``, ``ended`` when the child wrote its last line
    (it may still be cleaning up: its exit is not waited for)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return _whole_lines(buf), True, False
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return _whole_lines(buf), False, False
        buf += chunk
        if buf.endswith(b"\n"):
            start = buf.rfind(b"\n", 0, len(buf) - 1) + 1
            if buf.startswith(_LAST, start):
                return buf.splitlines(), False, True


def _whole_lines(buf: bytes) -> list[bytes]:
    """The lines of ``buf`` a child finished writing (one it died in the middle of is left out)."""
    return buf[:buf.rfind(b"\n") + 1].splitlines()


def _observation(msg: dict[str, Any]) -> Observation:
    """A checkpoint as the child wrote it: each process's map (the main process's as the text
    of its /proc/self/maps) and the extra facts."""
    return Observation(tuple(
        (p, parse_maps(ms) if isinstance(ms, str) else tuple(Mapping(*m) for m in ms)) for p, ms in msg["obs"]),
        tuple(sorted((msg.get("extra") or {}).items())))


def _state() -> tuple[int, int, tuple[bool, ...], str]:
    """What a program's child takes from this process when it is forked and a program may
    depend on: the process, its umask, the private-/dev/shm decision and the working folder."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    return os.getpid(), umask, tuple(SHM_PRIVATE), cwd


class _WarmChild:
    """A program's child, forked before its program is known.

    Forking a large interpreter and setting up a program's process (its pipes, the fetch
    probe's handler, the private /dev/shm) cost more than the program's calls; a child forked
    when the previous program ended does that while the previous outcomes are judged.  The
    child then waits for its program: a length-prefixed pickle on a pipe of its own (not
    "until the end of the pipe": children forked later inherit the write end).  A child whose
    request pipe closes first exits without running anything.
    """

    def __init__(self, known: tuple[Program, str] | None = None) -> None:
        """``known``: the program and its observe mode, when it is known already (a long
        program: forked with it, it need not be sent)."""
        self.state = _state()
        req_r, req_w = os.pipe() if known is None else (-1, -1)
        out_r, out_w = os.pipe()

        caps = _HARNESS_CAPS[0] if _HARNESS_CAPS else None

        def child() -> None:
            if req_w >= 0:
                os.close(req_w)
            os.close(out_r)
            warm_child(req_r, out_w, caps, known)

        self.pid = fork_in_group(child)
        if req_r >= 0:
            os.close(req_r)
        os.close(out_w)
        self.req, self.out = req_w, out_r

    def usable(self) -> bool:
        if self.state != _state():
            return False
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return False

    def send(self, program: Program, observe: str) -> None:
        if self.req < 0:
            return      # forked with its program
        data = pickle.dumps((program, observe), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(len(data).to_bytes(8, "little") + data)
        try:
            while view:
                view = view[os.write(self.req, view):]
        finally:
            os.close(self.req)
            self.req = -1

    def discard(self) -> None:
        """Forget this child; end it if this process forked it."""
        for fd in (self.req, self.out):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.req = self.out = -1
        if self.state[0] == os.getpid():
            kill_group(self.pid)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


class LinuxTarget(Target):
    name = "linux"
    calls = _os_calls()
    runs_elsewhere = True       # each program runs in a forked child

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._warm: _WarmChild | None = None
        self._exiting: list[int] = []       # children past their last line, not yet reaped
        self._pid = os.getpid()
        c_library()         # once here, inherited by every program's child
        if not _HARNESS_CAPS:
            _HARNESS_CAPS.append(has_cap(CAP_SYS_ADMIN))
        if not SHM_PRIVATE:
            SHM_PRIVATE.append(bool(host_facts()["shm_private"]))

    def facts(self) -> dict[str, Any]:
        umask = os.umask(0)
        os.umask(umask)
        with open("/proc/self/status") as f:
            vm = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")), 0)
        f = host_facts()
        f.update({"quiet_ranges": [list(WINDOW)], "base_vm": vm, "umask": umask})
        return f

    def not_observable(self) -> dict[str, str]:
        """Clauses this target cannot show, with the reason (for TargetResults.not_observable)."""
        out = dict(NOT_OBSERVABLE)
        facts = self.facts()
        if not facts["shm_private"]:
            out.update(SHM_NAME_CLAUSES)
        if facts["nodes"] < 2:
            out.update(ONE_NODE_CLAUSES)
        out.update(_unreached_limits(facts))
        return out

    def run(self, program: Program, observe: str = "end") -> RunResult:
        child = self._take_warm(program)
        ahead = child is not None
        if child is None:
            child = _WarmChild((program, observe))
        r = self._run_in(child, program, observe, ahead)
        if ahead and r.status is RunStatus.CRASH and not r.outcomes:
            # the child forked ahead may have been killed from outside before it read the
            # program (the OOM killer, a stray signal): run it once more in a child forked now
            r = self._run_in(_WarmChild((program, observe)), program, observe, False)
        return r

    def _run_in(self, child: "_WarmChild", program: Program, observe: str, ahead: bool) -> RunResult:
        deadline_from = time.monotonic()
        try:
            child.send(program, observe)
        except OSError:
            if not ahead:
                raise
            # the child forked ahead is gone: fork this program's child now
            child.discard()
            child = _WarmChild((program, observe))
        lines, timed_out, ended = _read_until_end(child.out, self.timeout - (time.monotonic() - deadline_from))
        # the next program's child starts now, while this one exits and its outcomes are judged;
        # a child that said its last line only cleans up and exits now: it is reaped later
        return self._ended(child, lines, timed_out, ended)

    def stream(self, program: Program, observe: str = "end") -> "LinuxStream":
        """Run ``program`` and give each call's outcome as the child sends it, so that the judge
        (``specs.judge.judge``) judges call k while the child runs the calls after it, on the
        other core.  ``finish()`` gives the whole run, as ``run`` would have."""
        child = self._take_warm(program) or _WarmChild((program, observe))
        try:
            child.send(program, observe)
        except OSError:
            child.discard()
            child = _WarmChild((program, observe))
        return LinuxStream(self, child)

    def _ended(self, child: "_WarmChild", lines: list[bytes], timed_out: bool, ended: bool) -> RunResult:
        """The end of a program's child: the next one forked ahead, this one reaped (now, or
        later when it has said its last line), and the run it gave."""
        return _result(lines, self._end_child(child, timed_out, ended), timed_out, self.timeout)

    def _end_child(self, child: "_WarmChild", timed_out: bool, ended: bool) -> int:
        """Fork the next program's child ahead and reap this one (now, or later when it has
        said its last line and only cleans up); its wait status (0 when not waited for)."""
        os.close(child.out)
        self._reap_exited()
        if timed_out:
            kill_group(child.pid)
        elif self._warm is None:
            # the next program's child starts now, while this one exits and its outcomes are judged
            self._warm = _WarmChild()
        if ended:
            self._exiting.append(child.pid)
            return 0
        return reap(child.pid)

    def _reap_exited(self, wait: bool = False) -> None:
        """Collect the children that had said their last line and have exited since (all of
        them, waiting, with ``wait``), and end what is left of their groups."""
        still = []
        for pid in self._exiting:
            try:
                done = os.waitpid(pid, 0 if wait else os.WNOHANG)[0] != 0
            except ChildProcessError:
                done = True
            if done:
                kill_group(pid)
            else:
                still.append(pid)
        self._exiting = still

    def _take_warm(self, program: Program) -> "_WarmChild | None":
        """The child forked ahead for this program, if it was forked from this process in the
        state the program would see now, and the program is short enough to send it (a long
        program costs more to send than a fork: its child is forked with it, and the one
        forked ahead waits for the next program)."""
        if len(program.calls) > SEND_MAX:
            return None
        w, self._warm = self._warm, None
        if w is not None and w.usable():
            return w
        if w is not None:
            w.discard()
        return None

    def close(self) -> None:
        """End the child forked ahead, if any (it also ends by itself when this process does)."""
        w, self._warm = self._warm, None
        if w is not None:
            w.discard()
        if self._exiting and self._pid == os.getpid():
            self._reap_exited(wait=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # noqa: BLE001 -- at interpreter exit the modules may be gone
            pass

    def session(self, layer: str = "os") -> "LinuxSession":
        return LinuxSession(self.timeout)


class LinuxStream:
    """A program's run on ``linux`` read as its child writes it (``LinuxTarget.stream``): the
    outcome of call k is there as soon as the child has written it.  Within one deadline for
    the whole program, as ``run``."""

    def __init__(self, target: LinuxTarget, child: _WarmChild) -> None:
        self.target, self.child = target, child
        self.deadline = time.monotonic() + target.timeout
        self.outcomes: list[Outcome] = []
        self.seen_at: dict[int, Observation] = {}
        self.observations: list[tuple[int, Observation]] = []
        self.last: dict[str, Any] | None = None
        self.buf = b""
        self.over = False           # the child said its last line, or the pipe ended, or time ran out
        self.timed_out = self.ended = False
        self.result: RunResult | None = None

    def _more(self) -> None:
        """Read what the child has written since (waiting for something, within the deadline)."""
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([self.child.out], [], [], left)[0]:
            self.over = self.timed_out = True
            return
        chunk = os.read(self.child.out, 1 << 16)
        if not chunk:
            self.over = True
            return
        self.buf += chunk
        cut = self.buf.rfind(b"\n") + 1
        if not cut:
            return
        new, self.buf = self.buf[:cut].splitlines(), self.buf[cut:]
        for line in new:
            if line.startswith(_LAST):
                self.over = self.ended = True
                self.last = json.loads(line)
            elif not self.over:
                msg = json.loads(line)
                if "o" in msg:
                    self.outcomes.append(Outcome.from_json(msg["o"]))
                elif "obs" in msg:
                    obs = _observation(msg)
                    self.observations.append((msg["index"], obs))
                    self.seen_at.setdefault(msg["index"], obs)

    def outcome(self, index: int) -> Outcome | None:
        while len(self.outcomes) <= index and not self.over:
            self._more()
        return self.outcomes[index] if index < len(self.outcomes) else None

    def observation(self, index: int) -> Observation | None:
        # the checkpoint after call k comes after its outcome and before call k+1's
        while len(self.outcomes) <= index + 1 and not self.over:
            self._more()
        return self.seen_at.get(index)

    def finish(self) -> RunResult:
        """The whole run (reading the rest of it first), as ``LinuxTarget.run`` gives it."""
        if self.result is None:
            while not self.over:
                self._more()
            status = self.target._end_child(self.child, self.timed_out, self.ended)
            self.result = _run_result(self.outcomes, self.observations, self.last, status, self.timed_out,
                                      self.target.timeout)
        return self.result


class LinuxSession(Session):
    """A live child for step-by-step driving (state machines): one request, one reply."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()

        def serve() -> None:
            os.close(self.req_w)
            os.close(self.rep_r)
            runner = Runner()
            try:
                for line in os.fdopen(req_r, "rb"):
                    req = json.loads(line)
                    if "observe" in req:
                        obs = runner.observe()
                        reply: dict[str, Any] = {"obs": [[p, [[m.start, m.end, m.perms] for m in ms]]
                                                          for p, ms in obs.maps], "extra": dict(obs.extra)}
                    else:
                        try:
                            reply = {"o": runner.call(req["proc"], req["name"], tuple(req["args"]),
                                                      req["result"]).to_json()}
                        except Refused as e:
                            reply = {"refused": str(e)}
                    os.write(rep_w, (json.dumps(reply) + "\n").encode())
            finally:
                runner.end()
                runner.k.cleanup()

        self.pid = fork_in_group(serve)
        os.close(req_r)
        os.close(rep_w)
        self._buf = b""
        self.n = 0

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        os.write(self.req_w, (json.dumps(req) + "\n").encode())
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([self.rep_r], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                kill_group(self.pid)
                raise SessionFailed(RunStatus.HANG, f"target hung at call {self.n} (no answer in {self.timeout:g} s)")
            chunk = os.read(self.rep_r, 1 << 16)
            if not chunk:
                status = reap(self.pid)
                self.pid = 0
                raise SessionFailed(RunStatus.CRASH, f"target crashed at call {self.n}: {describe_status(status)}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if "refused" in msg:
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n} refused: {msg['refused']}")
        return msg

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        msg = self._ask({"proc": call.proc or "main", "name": call.name, "args": list(args), "result": call.result})
        return Outcome.from_json(msg["o"])

    def observe(self) -> Observation:
        self.n += 0
        msg = self._ask({"observe": 1})
        self.n -= 1
        return Observation(tuple((p, tuple(Mapping(*m) for m in ms)) for p, ms in msg["obs"]),
                           tuple(sorted((msg.get("extra") or {}).items())))

    def close(self) -> None:
        for fd in (self.req_w, self.rep_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.pid:
            # the child cleans up (shared memory names, files) when its request pipe closes
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(self.pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.005)
            kill_group(self.pid)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def python_child_target(timeout: float = 10.0, **_: Any) -> LinuxTarget:
    """Target ``linux-py``: the running kernel through a forked Python child, whatever gcc can do."""
    t = LinuxTarget(timeout=timeout)
    t.name = "linux-py"
    return t
