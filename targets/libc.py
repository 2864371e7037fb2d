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

``malloc:glibc`` forks the harness (glibc is already loaded).  Other
allocators act only if loaded before the C library's own malloc is bound, so
``malloc:jemalloc``, ``malloc:mimalloc``, ``malloc:tcmalloc`` (or
``malloc:/path/to/lib.so``) exec a fresh interpreter with LD_PRELOAD set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import select
import signal
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


def _serve(rf: BinaryIO, wfd: int) -> None:
    """The child's loop: ``{"program": text}`` runs a whole program, streaming one line per
    call; ``{"name", "args"}`` runs one call.  Every reply is one JSON line."""
    heap = _Heap()

    def say(msg: dict[str, Any]) -> None:
        os.write(wfd, (json.dumps(msg) + "\n").encode())

    for line in rf:
        req = json.loads(line)
        if "program" in req:
            prog = parse(req["program"])
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


class _Child:
    """One child process speaking the line protocol above: forked, or exec'd with LD_PRELOAD."""

    def __init__(self, preload: str | None, timeout: float):
        self.timeout = timeout
        self.buf = b""
        self.proc: subprocess.Popen[bytes] | None = None
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
                    _serve(os.fdopen(req_r, "rb"), rep_w)
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
            env = dict(os.environ, LD_PRELOAD=preload)
            self.proc = subprocess.Popen([sys.executable, "-m", "memspec.targets.libc", "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                         start_new_session=True)
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.pid = self.proc.pid
            self.req_w = self.proc.stdin.fileno()
            self.rep_r = self.proc.stdout.fileno()

    def send(self, msg: dict[str, Any]) -> None:
        try:
            os.write(self.req_w, (json.dumps(msg) + "\n").encode())
        except BrokenPipeError:
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
            chunk = os.read(self.rep_r, 1 << 16)
            if not chunk:
                status = self.wait()
                return None, f"target crashed at call {n_done + 1}: {status}"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line), ""

    def wait(self) -> str:
        if self.proc is not None:
            self.proc.wait()
            rc = self.proc.returncode
            self.pid = 0
            return signal.Signals(-rc).name if rc < 0 else f"exit status {rc}"
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return _describe_status(status)

    def close(self) -> None:
        if self.pid:
            _kill_group(self.pid)
            try:
                self.wait()
            except ChildProcessError:
                pass
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()  # type: ignore[union-attr]
                except OSError:
                    pass
        else:
            for fd in (self.req_w, self.rep_r):
                try:
                    os.close(fd)
                except OSError:
                    pass


class LibcSession(Session):
    def __init__(self, preload: str | None, timeout: float):
        self.child = _Child(preload, timeout)
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

    def __init__(self, timeout: float = 10.0, preload: str | None = None, name: str | None = None):
        self.timeout = timeout
        self.preload = preload
        if name:
            self.name = name

    def facts(self) -> dict[str, Any]:
        return {"allocator": self.name, "preload": self.preload or ""}

    def session(self, layer: str = "phys") -> LibcSession:
        if layer != "phys":
            raise UsageError(f"target {self.name} implements the phys layer only, not {layer!r}")
        return LibcSession(self.preload, self.timeout)

    def run(self, program: Program, observe: str = "end") -> RunResult:
        outside = sorted({c.name for c in program.calls} - self.calls)
        if outside:
            return RunResult((), (), RunStatus.REFUSED,
                             f"{self.name} does not implement {', '.join(outside)} (not applicable)")
        child = _Child(self.preload, self.timeout)
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


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve(sys.stdin.buffer, sys.stdout.fileno())
