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
import socket
import subprocess
import sys
import time
from typing import Any, BinaryIO, NoReturn

from memspec.calls_phys import HEAP_CALLS
from memspec.consts import errno_name
from memspec.errors import UsageError
from memspec.program import Call, Program, eval_args, format_program, parse
from memspec.records import Observation, Outcome, RunResult, RunStatus

from .base import Session, SessionFailed, Target
from .children import LIVE_GROUPS, describe_status, fork_in_group, kill_group
from .versions import glibc_version, preload_version

U64 = (1 << 64) - 1
MEM_LIMIT = 2 << 30      # address space a program may add to the child's own (bytes)
MAX_LINE = 1 << 20       # longest reply line a child may send (bytes); a real one is under 200

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
    """The child's loop: ``{"id": n, "program": text}`` runs a whole program, streaming one line
    per call; ``{"id": n, "name", "args"}`` runs one call.  Every reply is one JSON line carrying
    the id of the request it answers; a request the child cannot run (a harness bug, or the
    allocator breaking the interpreter) is answered ``{"id": n, "error": why}``."""
    heap = _Heap()
    _limit_memory(mem_limit)
    ident: Any = None

    def say(msg: dict[str, Any]) -> None:
        os.write(wfd, (json.dumps({"id": ident, **msg}) + "\n").encode())

    for line in rf:
        ident = None
        try:
            req = json.loads(line)
            ident = req["id"]
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
        except Exception as e:  # noqa: BLE001 -- reported to the harness, which makes it a verdict
            say({"error": f"{type(e).__name__}: {e}"})


def _outcome(d: Any) -> Outcome:
    """A child's ``{"value", "errno", "signal", "detail"}``, checked: ValueError if it is not one."""
    if not isinstance(d, dict):
        raise ValueError(f"an outcome must be an object, not {type(d).__name__}")
    v, e, s, detail = d.get("value"), d.get("errno"), d.get("signal"), d.get("detail") or {}
    if v is not None and (type(v) is not int or not -(1 << 64) < v < 1 << 64):
        raise ValueError(f"value {v!r} is not a 64-bit integer")
    if not all(x is None or isinstance(x, str) for x in (e, s)) or not isinstance(detail, dict):
        raise ValueError(f"malformed outcome {d!r:.80}")
    return Outcome.from_json(d)


class _Zygote:
    """An interpreter exec'd once with LD_PRELOAD that forks one child per program.

    LD_PRELOAD acts only at exec, but a fork keeps the preloaded allocator: so the
    interpreter start-up (a fifth of a second) is paid once per allocator instead of once
    per program.  It receives one end of a fresh socket pair per child (SCM_RIGHTS over a
    SOCK_SEQPACKET socket), forks, and answers the child's pid; it also reaps its children
    on request and answers how each ended.  One per (shared object, memory limit).

    Every request carries an id and every answer the id of its request: an answer that comes
    after its request's time limit (a child slow to die) is recognised and dropped, never
    taken for the answer to a later request.  A zygote that ends, stops answering a fork or
    answers garbage is stopped and replaced; the program at hand gets a verdict."""

    ANSWER_TIMEOUT = 30.0     # seconds for an answer (the first fork includes the interpreter's start-up)
    _live: dict[tuple[str, int], "_Zygote"] = {}

    def __init__(self, preload: str, mem_limit: int, timeout: float):
        self.timeout = timeout
        self.ident = 0
        self.broken = ""
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, LD_PRELOAD=preload)
        try:
            self.proc = subprocess.Popen(self.command(theirs.fileno(), mem_limit), stdin=subprocess.DEVNULL,
                                         env=env, pass_fds=[theirs.fileno()], start_new_session=True)
            LIVE_GROUPS.add(self.proc.pid)      # ended with memspec, whatever ends it
        except OSError as e:
            self.sock.close()
            raise SessionFailed(RunStatus.CRASH, f"cannot start the preloaded interpreter: {e}") from None
        finally:
            theirs.close()

    @staticmethod
    def command(fd: int, mem_limit: int) -> list[str]:
        return [sys.executable, "-m", "memspec.targets.libc", "--zygote", str(fd), str(mem_limit)]

    @classmethod
    def get(cls, preload: str, mem_limit: int, timeout: float) -> "_Zygote":
        z = cls._live.get((preload, mem_limit))
        if z is None or z.broken or z.proc.poll() is not None:
            if z is not None:
                z.close()
            z = cls._live[(preload, mem_limit)] = cls(preload, mem_limit, timeout)
        return z

    def _how(self, wait: float = 0.0) -> str:
        try:
            code = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"killed by {describe_status(-code)}" if code < 0 else f"exit status {code}"

    def _fail(self, status: RunStatus, why: str) -> NoReturn:
        """This zygote cannot be trusted any more: stop it (``get`` starts a fresh one)."""
        self.broken = why
        self.close()
        raise SessionFailed(status, why)

    def _ask(self, verb: str, fds: tuple[int, ...] = (), timeout: float | None = None) -> tuple[str, str] | None:
        """Send ``ID verb``; its answer as (kind, text), or None if none came in time."""
        if self.broken:
            raise SessionFailed(RunStatus.CRASH, self.broken)
        self.ident += 1
        ident = self.ident
        try:
            socket.send_fds(self.sock, [f"{ident} {verb}".encode()], list(fds))
        except OSError as e:
            self._fail(RunStatus.CRASH, f"the preloaded interpreter takes no requests ({e.strerror}; {self._how()})")
        deadline = time.monotonic() + (self.ANSWER_TIMEOUT if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            try:
                answer = self.sock.recv(4096)
            except OSError:
                answer = b""
            if not answer:
                self._fail(RunStatus.CRASH, f"the preloaded interpreter ended ({self._how(wait=2.0)})")
            head, _, rest = answer.partition(b" ")
            kind, _, text = rest.decode("utf-8", "replace").partition(" ")
            if not head.isdigit() or int(head) > ident or kind not in ("pid", "ended", "error"):
                self._fail(RunStatus.ERROR, f"the preloaded interpreter answered {verb!r} with garbage: {answer[:80]!r}")
            if int(head) == ident:
                return kind, text
            # else: the late answer to an earlier request (whose caller stopped waiting)

    def spawn(self) -> tuple[int, socket.socket]:
        """A fresh child: its pid, and the harness's end of its socket."""
        ours, theirs = socket.socketpair()
        try:
            try:
                got = self._ask("fork", (theirs.fileno(),))
            finally:
                theirs.close()
            if got is None:
                self._fail(RunStatus.HANG, f"the preloaded interpreter forked no child in {self.ANSWER_TIMEOUT:g} s")
            kind, text = got
            if kind == "error":
                self._fail(RunStatus.CRASH, f"the preloaded interpreter could not fork: {text}")
            if kind != "pid" or not text.isdigit() or int(text) <= 1:
                self._fail(RunStatus.ERROR, f"the preloaded interpreter answered a fork with {kind} {text!r:.80}")
        except BaseException:
            ours.close()
            raise
        LIVE_GROUPS.add(int(text))      # the child leads its own group (set before its pid was answered)
        return int(text), ours

    def reap(self, pid: int, timeout: float | None = None) -> str | None:
        """How child ``pid`` ended, once it has; None if it did not end within ``timeout``."""
        got = self._ask(f"wait {pid}", timeout=timeout)
        if got is None:
            return None
        kind, text = got
        if kind == "pid":
            self._fail(RunStatus.ERROR, f"the preloaded interpreter answered a wait with pid {text!r:.80}")
        return text if kind == "ended" else f"unknown ({text})"

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:     # once reaped, its pid may be another process's
            kill_group(self.proc.pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    @classmethod
    def close_all(cls) -> None:
        for z in cls._live.values():
            z.close()
        cls._live.clear()


atexit.register(_Zygote.close_all)


def _zygote(fd: int, mem_limit: int) -> None:
    """The zygote's loop (in the exec'd interpreter).  One SOCK_SEQPACKET message per request and
    per answer, each answer starting with its request's id:

        ID fork          (with a socket)  ->  ID pid PID       a child serving on that socket
        ID wait PID                       ->  ID ended HOW     once PID has ended (SIGKILL, exit status 0)
        anything else, or a failure       ->  ID error WHY

    A wait never blocks the loop: the child is reaped when it ends, and forks are answered
    meanwhile (a child the harness killed may take its time to die, freeing a GiB)."""
    sock = socket.socket(fileno=fd)
    mine: set[int] = set()                 # forked, not reaped
    waits: dict[int, list[bytes]] = {}     # pid -> ids of the waits for it

    def answer(ident: bytes, text: str) -> None:
        try:
            sock.send(ident + b" " + text.encode())
        except OSError:
            pass

    while True:
        for pid in list(waits):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, -1
            if done:
                mine.discard(pid)
                how = describe_status(status) if status >= 0 else "unknown (reaped already)"
                for ident in waits.pop(pid):
                    answer(ident, "ended " + how)
        if not select.select([sock], [], [], 0.01 if waits else None)[0]:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 256, 1)
        except ConnectionError:
            return
        if not msg:
            return
        head, _, rest = msg.partition(b" ")
        ident = head if head.isdigit() else b"0"
        try:
            words = rest.split()
            if words == [b"fork"] and len(fds) == 1:
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
                try:
                    os.setpgid(pid, pid)   # before the pid is answered: the harness may kill the group at once
                except OSError:
                    pass                   # the child made it already, or is gone
                mine.add(pid)
                answer(ident, f"pid {pid}")
            elif len(words) == 2 and words[0] == b"wait" and words[1].isdigit() and int(words[1]) in mine:
                waits.setdefault(int(words[1]), []).append(ident)
            else:
                answer(ident, f"error cannot do {rest[:60]!r}")
        except Exception as e:  # noqa: BLE001 -- the harness makes it a verdict
            answer(ident, f"error {type(e).__name__}: {e}")
        finally:
            for f in fds:
                os.close(f)


class _Child:
    """One child process speaking the line protocol above: forked from the harness (glibc),
    or from the allocator's zygote (LD_PRELOAD).  Each request has an id and each reply is
    matched to it; a reply that is not one (not JSON, the wrong shape, an id never asked,
    a line without end) stops the child and is an ``error`` verdict."""

    def __init__(self, preload: str | None, timeout: float, mem_limit: int = MEM_LIMIT):
        self.timeout = timeout
        self.buf = b""
        self.ident = 0
        self.dead = False
        self.zygote: _Zygote | None = None
        self.conn: socket.socket | None = None
        if preload is None:
            req_r, self.req_w = os.pipe()
            self.rep_r, rep_w = os.pipe()

            def serve() -> None:
                os.close(self.req_w)
                os.close(self.rep_r)
                _serve(os.fdopen(req_r, "rb"), rep_w, mem_limit)

            self.pid = fork_in_group(serve)
            os.close(req_r)
            os.close(rep_w)
        else:
            try:
                self.zygote = _Zygote.get(preload, mem_limit, timeout)
                self.pid, self.conn = self.zygote.spawn()
            except SessionFailed:   # a zygote that died, hangs or answered garbage is replaced once
                self.zygote = _Zygote.get(preload, mem_limit, timeout)
                self.pid, self.conn = self.zygote.spawn()
            self.req_w = self.rep_r = self.conn.fileno()

    def send(self, msg: dict[str, Any]) -> int:
        """Send a request; its id."""
        self.ident += 1
        if not self.dead:
            try:
                os.write(self.req_w, (json.dumps({"id": self.ident, **msg}) + "\n").encode())
            except OSError:
                pass    # the read that follows reports how the child ended
        return self.ident

    def _stop(self, status: RunStatus, why: str) -> NoReturn:
        self.close()
        raise SessionFailed(status, why)

    def read(self, ident: int, what: str) -> dict[str, Any]:
        """The next reply to request ``ident`` (``what``: "call 3", for messages); SessionFailed
        if the child crashed, hung or answered garbage (the child is then stopped)."""
        if self.dead:
            raise SessionFailed(RunStatus.CRASH, f"target was already stopped at {what}")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\n" not in self.buf:
                if len(self.buf) > MAX_LINE:
                    self._stop(RunStatus.ERROR, f"target answered garbage at {what}: no line end in {MAX_LINE} bytes")
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.rep_r], [], [], left)[0]:
                    self._stop(RunStatus.HANG, f"target hung at {what} (no answer in {self.timeout:g} s)")
                try:
                    chunk = os.read(self.rep_r, 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    how = self.wait(grace=2.0)
                    self._stop(RunStatus.CRASH, f"target crashed at {what}: {how}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
            rid = msg.get("id") if isinstance(msg, dict) else None
            if type(rid) is not int or rid > ident:
                self._stop(RunStatus.ERROR, f"target answered garbage at {what}: {line[:80]!r}")
            if rid < ident:
                continue      # the rest of an earlier request's answer
            if "error" in msg:
                self._stop(RunStatus.ERROR, f"the target's child could not run {what}: {str(msg['error'])[:200]}")
            return msg

    def outcome(self, msg: dict[str, Any], what: str) -> Outcome:
        try:
            return _outcome(msg.get("o"))
        except ValueError as e:
            self._stop(RunStatus.ERROR, f"target answered garbage at {what}: {e}")

    def wait(self, grace: float | None = None) -> str:
        """Reap the child: how it ended.  With ``grace``, a child still running after that many
        seconds (it closed its end but lives on) is killed first."""
        pid, self.pid = self.pid, 0
        if not pid:
            return "unknown (reaped already)"
        if self.zygote is not None:
            try:
                how = self.zygote.reap(pid, grace)
                if how is None and grace is not None:
                    kill_group(pid)
                    how = self.zygote.reap(pid)
            except SessionFailed as e:
                return f"unknown ({e.message})"
            return how if how is not None else f"unknown (not reaped in {_Zygote.ANSWER_TIMEOUT:g} s)"
        try:
            if grace is not None:
                end = time.monotonic() + grace
                while time.monotonic() < end:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        return describe_status(status)
                    time.sleep(0.01)
                kill_group(pid)
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return "unknown (reaped already)"
        return describe_status(status)

    def close(self) -> None:
        if self.pid:
            kill_group(self.pid)
            self.wait()
        self.dead = True
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
        self.n = 0
        self.child: _Child | None = None
        self.failed: SessionFailed | None = None
        try:
            self.child = _Child(preload, timeout, mem_limit)
        except SessionFailed as e:   # reported at the first call, which then has a verdict
            self.failed = e

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        what = f"call {self.n + 1}"
        if self.child is None:
            assert self.failed is not None
            raise SessionFailed(self.failed.status, f"no target child for {what}: {self.failed.message}")
        msg = self.child.read(self.child.send({"name": call.name, "args": list(args)}), what)
        if "refused" in msg:
            raise SessionFailed(RunStatus.REFUSED, f"{what} refused: {str(msg['refused'])[:200]}")
        o = self.child.outcome(msg, what)
        self.n += 1
        return o

    def observe(self) -> Observation:
        return Observation()

    def close(self) -> None:
        if self.child is not None:
            self.child.close()


class LibcTarget(Target):
    """The C library's malloc family (glibc unless ``preload`` names another allocator)."""

    name = "libc"
    layers = ("phys",)
    calls = HEAP_CALLS
    runs_elsewhere = True       # each program runs in a forked child

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
                "malloc_rules": "posix" if self.preload else "glibc",
                "impl_version": preload_version(self.preload) if self.preload else glibc_version()}

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
        outcomes: list[Outcome] = []
        try:
            child = _Child(self.preload, self.timeout, self.mem_limit)
        except SessionFailed as e:
            return RunResult((), (), e.status, e.message)
        try:
            ident = child.send({"program": format_program(program.with_calls(program.calls))})
            while True:
                what = f"call {len(outcomes) + 1}"
                msg = child.read(ident, what)
                if "o" in msg and len(outcomes) < len(program.calls):
                    outcomes.append(child.outcome(msg, what))
                elif "refused" in msg:
                    return RunResult(tuple(outcomes), (), RunStatus.REFUSED,
                                     f"{what} refused: {str(msg['refused'])[:200]}")
                elif "done" in msg and len(outcomes) == len(program.calls):
                    return RunResult(tuple(outcomes))
                else:
                    child.close()
                    return RunResult(tuple(outcomes), (), RunStatus.ERROR,
                                     f"target answered garbage at {what}: {json.dumps(msg)[:80]}")
        except SessionFailed as e:
            return RunResult(tuple(outcomes), (), e.status, e.message)
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
    try:
        _zygote(int(sys.argv[2]), int(sys.argv[3]))
    except Exception:  # noqa: BLE001 -- the harness reports how the zygote ended, not a traceback
        sys.exit(3)
