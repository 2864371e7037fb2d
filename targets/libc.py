"""Target ``libc`` (= ``malloc:glibc``), and ``malloc:NAME``: a C library's malloc family.

Each program runs in a child process (its own process group) that calls
malloc, calloc, realloc, free, posix_memalign, aligned_alloc, memalign and
malloc_usable_size through ctypes, and probes the blocks' contents with
memset/memcpy-style reads and writes.  The child answers one JSON line per
call, so a crash (glibc's "free(): double free detected" abort, a SIGSEGV in a
broken allocator) or a hang is a verdict about that call, never the harness's.

The child runs only what the C standard defines: it keeps its own table of
live blocks (with the sizes asked for) and *refuses* a free or realloc of a
pointer that is not live, and any access outside a live block (the model
judges those calls undefined, i.e. unknown).  Addresses are the allocator's
choice; the model judges them with allowed sets.

The child also runs under a memory limit: RLIMIT_AS is set to what it has
mapped when it starts plus ``mem_limit`` (default 2 GiB), so a huge request
fails with ENOMEM instead of committing the machine's memory.  Without it,
gperftools' tcmalloc (2.10) answers ``calloc(3, 0x100000000)`` by writing
zeros over all 12 GiB (about a second and a GiB of resident memory per GiB),
which the per-call time limit then reports as a hang.

``malloc:glibc`` forks the harness (glibc is already loaded).  Other
allocators act only if loaded before the C library's own malloc is bound, so
``malloc:jemalloc``, ``malloc:mimalloc``, ``malloc:tcmalloc`` (or
``malloc:/path/to/lib.so``) exec a fresh interpreter with LD_PRELOAD set once
(the zygote), which forks a child per program.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any, BinaryIO

from memspec.calls_phys import HEAP_CALLS
from memspec.consts import errno_name
from memspec.errors import UsageError
from memspec.program import Call, Program, eval_args, format_program, parse
from memspec.records import Observation, Outcome, RunResult, RunStatus

from .base import Session, SessionFailed, Target

U64 = (1 << 64) - 1
MEM_LIMIT = 2 << 30      # address space a program may add to the child's own (bytes)

# malloc:NAME -> shared objects to try (Debian packages libjemalloc2, libmimalloc2.0, libtcmalloc-minimal4)
PRELOAD = {
    "jemalloc": ("libjemalloc.so.2", "jemalloc"),
    "mimalloc": ("libmimalloc.so.2", "mimalloc"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "tcmalloc_minimal"),
}


class Refused(Exception):
    """The call would be undefined behaviour (not run)."""


class _Heap:
    """The malloc family, inside the child, with its own table of live blocks."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        for name, res, args in (("malloc", vp, (sz,)), ("calloc", vp, (sz, sz)), ("realloc", vp, (vp, sz)),
                                ("free", None, (vp,)), ("aligned_alloc", vp, (sz, sz)),
                                ("memalign", vp, (sz, sz)), ("malloc_usable_size", sz, (vp,)),
                                ("posix_memalign", ctypes.c_int, (ctypes.POINTER(vp), sz, sz))):
            f = getattr(libc, name)
            f.restype, f.argtypes = res, args
        self.c = libc
        self.live: dict[int, int] = {}     # pointer -> size asked for

    def _ptr(self, p: int | None, size: int, zero_sizes_ok: bool = True) -> Outcome:
        if not p:
            e = ctypes.get_errno()
            return Outcome(value=0, errno=errno_name(e) if e else None)
        self.live[p] = size
        return Outcome(value=p)

    def _inside(self, addr: int, n: int) -> None:
        for p, size in self.live.items():
            if p <= addr and addr + n <= p + size:
                return
        raise Refused(f"[{addr:#x}, +{n}) is not inside a live block")

    def do(self, name: str, args: list[Any]) -> Outcome:
        ctypes.set_errno(0)
        return getattr(self, "do_" + name)(*args)

    def do_malloc(self, size: int) -> Outcome:
        return self._ptr(self.c.malloc(size & U64), size)

    def do_calloc(self, nmemb: int, size: int) -> Outcome:
        return self._ptr(self.c.calloc(nmemb & U64, size & U64), nmemb * size)

    def do_realloc(self, ptr: int, size: int) -> Outcome:
        if ptr and ptr not in self.live:
            raise Refused(f"realloc of {ptr:#x}, which is not live")
        q = self.c.realloc(ptr or None, size & U64)
        if not q:
            e = ctypes.get_errno()
            if ptr and size == 0:
                self.live.pop(ptr, None)   # glibc: realloc(p, 0) is free(p)
            return Outcome(value=0, errno=errno_name(e) if e else None)
        if ptr:
            self.live.pop(ptr, None)
        self.live[q] = size
        return Outcome(value=q)

    def do_free(self, ptr: int) -> Outcome:
        if ptr and ptr not in self.live:
            raise Refused(f"free of {ptr:#x}, which is not live")
        self.c.free(ptr or None)
        self.live.pop(ptr, None)
        return Outcome()

    def do_posix_memalign(self, alignment: int, size: int) -> Outcome:
        p = ctypes.c_void_p()
        r = self.c.posix_memalign(ctypes.byref(p), alignment & U64, size & U64)
        if r:
            return Outcome(value=0, errno=errno_name(r))
        return self._ptr(p.value, size)

    def do_aligned_alloc(self, alignment: int, size: int) -> Outcome:
        return self._ptr(self.c.aligned_alloc(alignment & U64, size & U64), size)

    def do_memalign(self, alignment: int, size: int) -> Outcome:
        return self._ptr(self.c.memalign(alignment & U64, size & U64), size)

    def do_malloc_usable_size(self, ptr: int) -> Outcome:
        if ptr and ptr not in self.live:
            raise Refused(f"malloc_usable_size of {ptr:#x}, which is not live")
        return Outcome(value=self.c.malloc_usable_size(ptr or None))

    def do_heap_store(self, addr: int, value: int = 0x41) -> Outcome:
        self._inside(addr, 1)
        ctypes.c_uint8.from_address(addr).value = value & 0xFF
        return Outcome()

    def do_heap_load(self, addr: int) -> Outcome:
        self._inside(addr, 1)
        return Outcome(value=ctypes.c_uint8.from_address(addr).value)

    def do_heap_fill(self, addr: int, length: int, value: int = 0x41) -> Outcome:
        if length < 0:
            raise Refused("negative length")
        self._inside(addr, length)
        ctypes.memset(addr, value & 0xFF, length)
        return Outcome()

    def do_heap_count(self, addr: int, length: int, value: int = 0x41) -> Outcome:
        if length < 0:
            raise Refused("negative length")
        self._inside(addr, length)
        return Outcome(value=ctypes.string_at(addr, length).count(bytes([value & 0xFF])))


def _limit_memory(budget: int) -> None:
    """Cap the child's address space at what it maps now plus ``budget`` bytes."""
    if budget <= 0:
        return
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + budget
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _serve(rf: BinaryIO, wfd: int, mem_limit: int = MEM_LIMIT) -> None:
    """The child's loop: ``{"program": text}`` runs a whole program, streaming one line per
    call; ``{"name", "args"}`` runs one call.  Every reply is one JSON line."""
    heap = _Heap()
    _limit_memory(mem_limit)

    def say(msg: dict[str, Any]) -> None:
        os.write(wfd, (json.dumps(msg) + "\n").encode())

    for line in rf:
        req = json.loads(line)
        if "program" in req:
            prog = parse(req["program"], allow_empty=True)
            env: dict[str, int] = {}
            for i, c in enumerate(prog.calls):
                try:
                    o = heap.do(c.name, list(eval_args(c, env)))
                except Refused as e:
                    say({"refused": str(e), "index": i})
                    break
                if c.result and o.value is not None:
                    env[c.result] = o.value
                say({"o": o.to_json()})
            else:
                say({"done": 1})
            continue
        try:
            say({"o": heap.do(req["name"], req["args"]).to_json()})
        except Refused as e:
            say({"refused": str(e)})


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit status {os.WEXITSTATUS(status)}"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Zygote:
    """An interpreter exec'd once with LD_PRELOAD that forks one child per program.

    LD_PRELOAD acts only at exec, but a fork keeps the preloaded allocator: so the
    interpreter start-up (a fifth of a second) is paid once per allocator instead of once
    per program.  It receives one end of a fresh socket pair per child (SCM_RIGHTS over a
    SOCK_SEQPACKET socket), forks, and answers the child's pid; it also reaps its children
    on request and answers how each ended.  One per (shared object, memory limit)."""

    _live: dict[tuple[str, int], "_Zygote"] = {}

    def __init__(self, preload: str, mem_limit: int, timeout: float):
        self.timeout = timeout
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, LD_PRELOAD=preload)
        self.proc = subprocess.Popen([sys.executable, "-m", "memspec.targets.libc", "--zygote", str(theirs.fileno()),
                                      str(mem_limit)], stdin=subprocess.DEVNULL, env=env, pass_fds=[theirs.fileno()],
                                     start_new_session=True)
        theirs.close()

    @classmethod
    def get(cls, preload: str, mem_limit: int, timeout: float) -> "_Zygote":
        z = cls._live.get((preload, mem_limit))
        if z is None or z.proc.poll() is not None:
            z = cls._live[(preload, mem_limit)] = cls(preload, mem_limit, timeout)
        return z

    def _ask(self, msg: bytes, fds: tuple[int, ...] = ()) -> str:
        socket.send_fds(self.sock, [msg], list(fds))
        if not select.select([self.sock], [], [], max(self.timeout, 30.0))[0]:
            raise OSError("the preloaded interpreter does not answer")
        answer = self.sock.recv(256)
        if not answer:
            raise OSError(f"the preloaded interpreter ended ({self.proc.poll()})")
        return answer.decode()

    def spawn(self) -> tuple[int, socket.socket]:
        """A fresh child: its pid, and the harness's end of its socket."""
        ours, theirs = socket.socketpair()
        try:
            pid = int(self._ask(b"fork", (theirs.fileno(),)))
        finally:
            theirs.close()
        return pid, ours

    def reap(self, pid: int) -> str:
        return self._ask(f"wait {pid}".encode())

    def close(self) -> None:
        self.sock.close()
        _kill_group(self.proc.pid)
        self.proc.wait()

    @classmethod
    def close_all(cls) -> None:
        for z in cls._live.values():
            z.close()
        cls._live.clear()


atexit.register(_Zygote.close_all)


def _zygote(fd: int, mem_limit: int) -> None:
    """The zygote's loop (in the exec'd interpreter): ``fork`` with a socket -> a child serving on it."""
    sock = socket.socket(fileno=fd)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 256, 1)
        except ConnectionError:
            return
        if not msg:
            return
        if msg == b"fork":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    sock.close()
                    os.setpgid(0, 0)
                    _serve(os.fdopen(fds[0], "rb"), fds[0], mem_limit)
                except BaseException:  # noqa: BLE001 -- any harness failure is exit 3
                    code = 3
                finally:
                    os._exit(code)
            for f in fds:
                os.close(f)
            sock.send(str(pid).encode())
        elif msg.startswith(b"wait "):
            try:
                _, status = os.waitpid(int(msg.split()[1]), 0)
                sock.send(_describe_status(status).encode())
            except ChildProcessError:
                sock.send(b"already reaped")


class _Child:
    """One child process speaking the line protocol above: forked from the harness (glibc),
    or from the allocator's zygote (LD_PRELOAD)."""

    def __init__(self, preload: str | None, timeout: float, mem_limit: int = MEM_LIMIT):
        self.timeout = timeout
        self.buf = b""
        self.zygote: _Zygote | None = None
        self.conn: socket.socket | None = None
        if preload is None:
            req_r, self.req_w = os.pipe()
            self.rep_r, rep_w = os.pipe()
            self.pid = os.fork()
            if self.pid == 0:
                code = 0
                try:
                    os.setpgid(0, 0)
                    os.close(self.req_w)
                    os.close(self.rep_r)
                    _serve(os.fdopen(req_r, "rb"), rep_w, mem_limit)
                except BaseException:  # noqa: BLE001 -- any harness failure is exit 3
                    code = 3
                finally:
                    os._exit(code)
            os.close(req_r)
            os.close(rep_w)
            try:
                os.setpgid(self.pid, self.pid)
            except OSError:
                pass
        else:
            try:
                self.zygote = _Zygote.get(preload, mem_limit, timeout)
                self.pid, self.conn = self.zygote.spawn()
            except OSError:   # a zygote that died (or hangs) is replaced once
                _Zygote._live.pop((preload, mem_limit), None)
                self.zygote = _Zygote.get(preload, mem_limit, timeout)
                self.pid, self.conn = self.zygote.spawn()
            self.req_w = self.rep_r = self.conn.fileno()

    def send(self, msg: dict[str, Any]) -> None:
        try:
            os.write(self.req_w, (json.dumps(msg) + "\n").encode())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read(self, n_done: int) -> tuple[dict[str, Any] | None, str]:
        """The next reply; or None and why (crash, hang)."""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready = select.select([self.rep_r], [], [], left)[0] if left > 0 else []
            if not ready:
                self.close()
                return None, f"target hung at call {n_done + 1} (no answer in {self.timeout:g} s)"
            try:
                chunk = os.read(self.rep_r, 1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                status = self.wait()
                return None, f"target crashed at call {n_done + 1}: {status}"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line), ""

    def wait(self) -> str:
        pid, self.pid = self.pid, 0
        if self.zygote is not None:
            try:
                return self.zygote.reap(pid)
            except OSError as e:
                return f"unknown ({e})"
        _, status = os.waitpid(pid, 0)
        return _describe_status(status)

    def close(self) -> None:
        if self.pid:
            _kill_group(self.pid)
            try:
                self.wait()
            except ChildProcessError:
                pass
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        elif self.zygote is None:
            for fd in (self.req_w, self.rep_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.req_w = self.rep_r = -1


class LibcSession(Session):
    def __init__(self, preload: str | None, timeout: float, mem_limit: int = MEM_LIMIT):
        self.child = _Child(preload, timeout, mem_limit)
        self.n = 0

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        self.child.send({"name": call.name, "args": list(args)})
        msg, why = self.child.read(self.n)
        if msg is None:
            raise SessionFailed(RunStatus.HANG if "hung" in why else RunStatus.CRASH, why)
        if "refused" in msg:
            raise SessionFailed(RunStatus.REFUSED, f"call {self.n + 1} refused: {msg['refused']}")
        self.n += 1
        return Outcome.from_json(msg["o"])

    def observe(self) -> Observation:
        return Observation()

    def close(self) -> None:
        self.child.close()


class LibcTarget(Target):
    """The C library's malloc family (glibc unless ``preload`` names another allocator)."""

    name = "libc"
    layers = ("phys",)
    calls = HEAP_CALLS

    def __init__(self, timeout: float = 10.0, preload: str | None = None, name: str | None = None,
                 mem_limit: int = MEM_LIMIT):
        self.timeout = timeout
        self.preload = preload
        self.mem_limit = mem_limit
        if name:
            self.name = name

    def facts(self) -> dict[str, Any]:
        # glibc's own documented rules (PTRDIFF_MAX, memalign's errno) bind glibc only
        return {"allocator": self.name, "preload": self.preload or "", "mem_limit": self.mem_limit,
                "malloc_rules": "posix" if self.preload else "glibc"}

    def session(self, layer: str = "phys") -> LibcSession:
        if layer != "phys":
            raise UsageError(f"target {self.name} implements the phys layer only, not {layer!r}")
        return LibcSession(self.preload, self.timeout, self.mem_limit)

    def close(self) -> None:
        if self.preload:
            z = _Zygote._live.pop((self.preload, self.mem_limit), None)
            if z is not None:
                z.close()

    def run(self, program: Program, observe: str = "end") -> RunResult:
        outside = sorted({c.name for c in program.calls} - self.calls)
        if outside:
            return RunResult((), (), RunStatus.REFUSED,
                             f"{self.name} does not implement {', '.join(outside)} (not applicable)")
        child = _Child(self.preload, self.timeout, self.mem_limit)
        outcomes: list[Outcome] = []
        try:
            child.send({"program": format_program(program.with_calls(program.calls))})
            while True:
                msg, why = child.read(len(outcomes))
                if msg is None:
                    status = RunStatus.HANG if "hung" in why else RunStatus.CRASH
                    return RunResult(tuple(outcomes), (), status, why)
                if "o" in msg:
                    outcomes.append(Outcome.from_json(msg["o"]))
                elif "refused" in msg:
                    return RunResult(tuple(outcomes), (), RunStatus.REFUSED,
                                     f"call {msg['index'] + 1} refused: {msg['refused']}")
                elif "done" in msg:
                    return RunResult(tuple(outcomes))
        finally:
            child.close()


def malloc_target(name: str, **opts: Any) -> Target:
    """``malloc:glibc`` (the C library in this process), ``malloc:jemalloc`` & co. (LD_PRELOAD)."""
    name = name.strip()
    if name in ("glibc", "libc"):
        return LibcTarget(name="malloc:glibc", **opts)
    if "/" in name:
        if not os.path.exists(name):
            raise UsageError(f"malloc:{name}: no such shared object")
        return LibcTarget(preload=os.path.abspath(name), name=f"malloc:{name}", **opts)
    if name not in PRELOAD:
        raise UsageError(f"unknown allocator {name!r}; known: glibc, {', '.join(sorted(PRELOAD))}, or a path to a .so")
    soname, short = PRELOAD[name]
    found = ctypes.util.find_library(short)
    if not found:
        try:
            ctypes.CDLL(soname)
            found = soname
        except OSError:
            raise UsageError(f"malloc:{name} needs {soname}: install it (Debian: apt-get install "
                             f"{ {'jemalloc': 'libjemalloc2', 'mimalloc': 'libmimalloc2.0', 'tcmalloc': 'libtcmalloc-minimal4'}[name]})") from None
    return LibcTarget(preload=found, name=f"malloc:{name}", **opts)


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(sys.stdin.buffer, sys.stdout.fileno(), int(sys.argv[2]) if len(sys.argv) > 2 else MEM_LIMIT)
elif __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote(int(sys.argv[2]), int(sys.argv[3]))
