"""Target ``linux``: the running kernel, judged through real system calls.

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

import ctypes
import json
import os
import select
import signal
import time
from typing import Any, Iterator

from memspec.consts import MAP, PAGE_SIZE, SANDBOX_WINDOW, errno_name
from memspec.program import Call, Program, eval_args
from memspec.records import Mapping, Observation, Outcome, RunResult, RunStatus

from .base import Session, SessionFailed, Target

WINDOW = SANDBOX_WINDOW

SYS_mmap, SYS_mprotect, SYS_munmap = 9, 10, 11
EFAULT = 14
U64 = (1 << 64) - 1
USER_TOP = 1 << 47
TASK_SIZE = USER_TOP - PAGE_SIZE
PAGE_MASK = ~(PAGE_SIZE - 1)


def _align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & PAGE_MASK


class Refused(Exception):
    """The call would touch memory the program does not own."""


def parse_maps(text: str) -> tuple[Mapping, ...]:
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 2:
            continue
        lo, hi = parts[0].split("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1]))
    return tuple(out)


def _read_maps() -> tuple[Mapping, ...]:
    with open("/proc/self/maps") as f:
        return parse_maps(f.read())


class _Ranges:
    """A small set of page ranges (what the program has mapped itself)."""

    def __init__(self) -> None:
        self.r: list[tuple[int, int]] = []

    def add(self, s: int, e: int) -> None:
        self.remove(s, e)
        self.r.append((s, e))
        self.r.sort()

    def remove(self, s: int, e: int) -> None:
        out = []
        for a, b in self.r:
            if b <= s or a >= e:
                out.append((a, b))
                continue
            if a < s:
                out.append((a, s))
            if b > e:
                out.append((e, b))
        self.r = out

    def uncovered(self, s: int, e: int) -> Iterator[tuple[int, int]]:
        """Parts of [s, e) not in the set."""
        cur = s
        for a, b in self.r:
            if b <= cur:
                continue
            if a >= e:
                break
            if a > cur:
                yield cur, a
            cur = max(cur, b)
        if cur < e:
            yield cur, e


class _Kernel:
    """System calls and access probes, inside the child."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.libc = libc
        libc.syscall.restype = ctypes.c_long
        libc.write.restype = ctypes.c_ssize_t
        libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
        libc.read.restype = ctypes.c_ssize_t
        libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
        self.pr, self.pw = os.pipe()
        self.owned = _Ranges()
        self.owned.add(*WINDOW)
        _install_fault_handler(libc)

    def sys(self, nr: int, *args: int) -> Outcome:
        ctypes.set_errno(0)
        r = self.libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a if a < (1 << 63) else a - (1 << 64)) for a in args])
        if r == -1:
            return Outcome(value=-1, errno=errno_name(ctypes.get_errno()))
        return Outcome(value=r if r >= 0 else r + (1 << 64))

    def check_safe(self, s: int, e: int) -> None:
        """Refuse unless every page of [s, e) is ours or not mapped at all."""
        s &= PAGE_MASK
        e = min(_align(e), 1 << 64)
        gaps = list(self.owned.uncovered(s, e))
        if not gaps:
            return
        for m in _read_maps():
            for a, b in gaps:
                if m.start < b and m.end > a:
                    raise Refused(f"[{a:#x}, {b:#x}) overlaps {m.start:#x}-{m.end:#x} {m.perms}, "
                                  "which the program did not map")

    def do(self, name: str, args: tuple[Any, ...]) -> Outcome:
        # Addresses and lengths reach the kernel as unsigned long (-1 is the top address).
        if name in ("load", "store", "fetch", "munmap", "mprotect"):
            args = (args[0] & U64,) + tuple(args[1:])
        return getattr(self, "do_" + name)(*args)

    def do_mmap(self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Outcome:
        addr &= U64
        if flags & (MAP["MAP_FIXED"]) and length > 0 and addr < USER_TOP:
            self.check_safe(addr, min(addr + length, USER_TOP))
        o = self.sys(SYS_mmap, addr, length, prot, flags, fd, offset)
        if o.ok and o.value is not None:
            self.owned.add(o.value, o.value + _align(length))
        return o

    def do_munmap(self, addr: int, length: int) -> Outcome:
        # mm/vma.c do_vmi_munmap fails these before touching anything: no safety check needed.
        harmless = addr & ~PAGE_MASK or addr > TASK_SIZE or length > TASK_SIZE - addr or _align(length) == 0
        if not harmless:
            self.check_safe(addr, addr + length)
        o = self.sys(SYS_munmap, addr, length)
        if o.ok:
            self.owned.remove(addr, addr + _align(length))
            self.owned.add(*WINDOW) if addr < WINDOW[1] and addr + length > WINDOW[0] else None
        return o

    def do_mprotect(self, addr: int, length: int, prot: int) -> Outcome:
        # mm/mprotect.c do_mprotect_pkey fails these before touching anything.
        harmless = (addr & ~PAGE_MASK or length == 0 or addr + _align(length) > U64
                    or prot & ~0x0300000F or prot & 0x03000000 == 0x03000000)
        if not harmless and addr < USER_TOP:
            self.check_safe(addr, min(addr + length, USER_TOP))
        return self.sys(SYS_mprotect, addr, length, prot)

    def do_load(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)
        n = self.libc.write(self.pw, ctypes.c_void_p(addr), 1)
        if n != 1:
            return Outcome(signal="SIGSEGV", detail=(("errno", errno_name(ctypes.get_errno())),))
        return Outcome(value=os.read(self.pr, 1)[0])

    def do_store(self, addr: int, value: int) -> Outcome:
        self.check_safe(addr, addr + 1)
        os.write(self.pw, bytes([value & 0xFF]))
        n = self.libc.read(self.pr, ctypes.c_void_p(addr), 1)
        if n != 1:
            os.read(self.pr, 1)
            return Outcome(signal="SIGSEGV", detail=(("errno", errno_name(ctypes.get_errno())),))
        return Outcome()

    def do_fetch(self, addr: int) -> Outcome:
        self.check_safe(addr, addr + 1)
        # Everything the probe needs exists before the fork: a callback made in the
        # grandchild would allocate a libffi trampoline page, which the kernel may
        # place right at the address under test.
        _FETCH_TARGET.value = addr
        jump = _JUMP_T(addr)
        pid = os.fork()
        if pid == 0:
            try:
                signal.alarm(1)
                jump()
            finally:
                os._exit(12)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 10:
            return Outcome(signal="SIGSEGV")
        return Outcome(detail=(("after_fetch", code),))


# x86-64 ucontext_t: uc_flags, uc_link, uc_stack (24 bytes), then mcontext gregs.
_GREGS = 40
_REG_RIP, _REG_ERR, _REG_TRAPNO = 16, 19, 20
_FETCH_TARGET = ctypes.c_uint64(0)
_JUMP_T = ctypes.CFUNCTYPE(None)
_HANDLER_T = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _on_fault(sig: int, info: int, uc: int) -> None:
    """Runs in the probe's grandchild only: exit 10 iff the instruction fetch itself faulted
    (a #PF with the I/D bit at the target address), 11 for any later fault."""
    def greg(i: int) -> int:
        return ctypes.c_uint64.from_address(uc + _GREGS + 8 * i).value
    fetch_fault = (sig == signal.SIGSEGV and greg(_REG_TRAPNO) == 14 and greg(_REG_RIP) == _FETCH_TARGET.value
                   and greg(_REG_ERR) & 0x10)
    os._exit(10 if fetch_fault else 11)


class _Sigaction(ctypes.Structure):
    _fields_ = [("handler", _HANDLER_T), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]


_HANDLER = _HANDLER_T(_on_fault)


def _install_fault_handler(libc: ctypes.CDLL) -> None:
    """Install the fetch probe's handler in the runner; forked probes inherit it."""
    sa = _Sigaction()
    sa.handler = _HANDLER
    sa.flags = 4   # SA_SIGINFO
    for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP):
        libc.sigaction(int(s), ctypes.byref(sa), None)


# ---------------------------------------------------------------------------
# The runner: the process that executes a program, with its forked processes.

class _Runner:
    """Runs calls in the main process and dispatches prefixed ones to forked servants."""

    def __init__(self) -> None:
        self.k = _Kernel()
        self.servants: dict[str, tuple[int, int, Any]] = {}   # name -> (pid, request fd, reply file)

    def call(self, proc: str, name: str, args: tuple[Any, ...], result: str | None) -> Outcome:
        if proc != "main":
            return self._remote(proc, {"name": name, "args": list(args)})
        if name == "fork":
            return self._fork(result or "p?")
        return self.k.do(name, args)

    def _fork(self, child_name: str) -> Outcome:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(req_w)
            os.close(rep_r)
            for _, (_, w, f) in self.servants.items():
                os.close(w)
                f.close()
            self.servants = {}
            _serve_requests(self, os.fdopen(req_r, "rb"), rep_w)
            os._exit(0)
        os.close(req_r)
        os.close(rep_w)
        self.servants[child_name] = (pid, req_w, os.fdopen(rep_r, "rb"))
        return Outcome(value=pid)

    def _remote(self, proc: str, req: dict[str, Any]) -> Outcome:
        if proc not in self.servants:
            return Outcome(value=-1, errno="ESRCH")
        pid, w, f = self.servants[proc]
        os.write(w, (json.dumps(req) + "\n").encode())
        line = f.readline()
        if not line:
            _, status = os.waitpid(pid, 0)
            raise RuntimeError(f"process {proc} died: {_describe_status(status)}")
        msg = json.loads(line)
        if "refused" in msg:
            raise Refused(msg["refused"])
        if req.get("name") == "exit":
            os.waitpid(pid, 0)
            os.close(w)
            f.close()
            del self.servants[proc]
        return Outcome.from_json(msg)

    def observe(self) -> Observation:
        maps = [("main", _read_maps())]
        for name, (pid, w, f) in self.servants.items():
            os.write(w, b'{"observe": 1}\n')
            msg = json.loads(f.readline())
            maps.append((name, tuple(Mapping(*m) for m in msg["maps"])))
        return Observation(tuple(maps))


def _serve_requests(runner: _Runner, rf: Any, wfd: int) -> None:
    """A forked servant's loop: run requests in this process, answer each."""
    for line in rf:
        req = json.loads(line)
        if "observe" in req:
            reply: dict[str, Any] = {"maps": [[m.start, m.end, m.perms] for m in _read_maps()]}
        else:
            if req["name"] == "exit":
                os.write(wfd, b"{}\n")
                os._exit(0)
            try:
                reply = runner.call("main", req["name"], tuple(req["args"]), None).to_json()
            except Refused as e:
                reply = {"refused": str(e)}
        os.write(wfd, (json.dumps(reply) + "\n").encode())


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit status {os.WEXITSTATUS(status)}"


def _child_batch(program: Program, observe: str, wfd: int) -> None:
    """The program's process: run it all, one JSON line per outcome, then the observations."""
    runner = _Runner()
    env: dict[str, int] = {}
    out = os.fdopen(wfd, "w", buffering=1)
    for i, c in enumerate(program.calls):
        args = eval_args(c, env)
        try:
            o = runner.call(c.proc or "main", c.name, args, c.result)
        except Refused as e:
            out.write(json.dumps({"refused": str(e), "index": i}) + "\n")
            return
        if c.result and o.value is not None and c.name != "fork":
            env[c.result] = o.value
        out.write(json.dumps({"o": o.to_json()}) + "\n")
        if observe == "each" or (observe == "end" and i == len(program.calls) - 1):
            obs = runner.observe()
            out.write(json.dumps({"obs": [[p, [[m.start, m.end, m.perms] for m in ms]] for p, ms in obs.maps],
                                  "index": i}) + "\n")
    out.write('{"done": 1}\n')
    out.flush()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LinuxTarget(Target):
    name = "linux"

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout

    def facts(self) -> dict[str, Any]:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            min_addr = int(f.read())
        return {"mmap_min_addr": min_addr, "quiet_ranges": [list(WINDOW)], "cap_sys_rawio": _has_cap(17)}

    def run(self, program: Program, observe: str = "end") -> RunResult:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                os.setpgid(0, 0)
                _child_batch(program, observe, w)
            except BaseException:   # noqa: BLE001 -- report any harness failure as exit 3
                import traceback
                traceback.print_exc()
                code = 3
            finally:
                os._exit(code)
        os.close(w)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        lines, timed_out = _read_lines(r, self.timeout)
        os.close(r)
        if timed_out:
            _kill_group(pid)
        _, status = os.waitpid(pid, 0)
        _kill_group(pid)    # servants left behind by a crash
        outcomes: list[Outcome] = []
        observations: list[tuple[int, Observation]] = []
        for line in lines:
            msg = json.loads(line)
            if "o" in msg:
                outcomes.append(Outcome.from_json(msg["o"]))
            elif "obs" in msg:
                observations.append((msg["index"], Observation(tuple(
                    (p, tuple(Mapping(*m) for m in ms)) for p, ms in msg["obs"]))))
            elif "refused" in msg:
                return RunResult(tuple(outcomes), tuple(observations), RunStatus.REFUSED,
                                 f"call {msg['index'] + 1} refused: {msg['refused']}")
            elif "done" in msg:
                return RunResult(tuple(outcomes), tuple(observations))
        n = len(outcomes) + 1
        if timed_out:
            return RunResult(tuple(outcomes), tuple(observations), RunStatus.HANG,
                             f"target hung at call {n} (no answer in {self.timeout:g} s)")
        return RunResult(tuple(outcomes), tuple(observations), RunStatus.CRASH,
                         f"target crashed at call {n}: {_describe_status(status)}")

    def session(self, layer: str = "os") -> "LinuxSession":
        return LinuxSession(self.timeout)


def _read_lines(fd: int, timeout: float) -> tuple[list[bytes], bool]:
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf.splitlines(), True
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return buf.splitlines(), True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return buf.splitlines(), False
        buf += chunk


def _has_cap(bit: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return False


class LinuxSession(Session):
    """A live child for step-by-step driving (state machines): one request, one reply."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                os.setpgid(0, 0)
                os.close(self.req_w)
                os.close(self.rep_r)
                runner = _Runner()
                for line in os.fdopen(req_r, "rb"):
                    req = json.loads(line)
                    if "observe" in req:
                        obs = runner.observe()
                        reply: dict[str, Any] = {"obs": [[p, [[m.start, m.end, m.perms] for m in ms]]
                                                          for p, ms in obs.maps]}
                    else:
                        try:
                            reply = {"o": runner.call(req["proc"], req["name"], tuple(req["args"]),
                                                      req["result"]).to_json()}
                        except Refused as e:
                            reply = {"refused": str(e)}
                    os.write(rep_w, (json.dumps(reply) + "\n").encode())
            except BaseException:  # noqa: BLE001
                code = 3
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(rep_w)
        try:
            os.setpgid(self.pid, self.pid)
        except OSError:
            pass
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
                _kill_group(self.pid)
                raise SessionFailed(RunStatus.HANG, f"target hung at call {self.n} (no answer in {self.timeout:g} s)")
            chunk = os.read(self.rep_r, 1 << 16)
            if not chunk:
                _, status = os.waitpid(self.pid, 0)
                self.pid = 0
                raise SessionFailed(RunStatus.CRASH, f"target crashed at call {self.n}: {_describe_status(status)}")
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
        return Observation(tuple((p, tuple(Mapping(*m) for m in ms)) for p, ms in msg["obs"]))

    def close(self) -> None:
        for fd in (self.req_w, self.rep_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.pid:
            _kill_group(self.pid)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0
