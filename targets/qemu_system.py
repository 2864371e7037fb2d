"""Target ``qemu-system``: full-system QEMU (TCG) running memspec's own test kernel.

memspec builds a small freestanding x86-64 kernel (``targets/testkernel/``: C and
GNU assembler, built with the system's gcc and binutils at first use and cached
under the user's cache directory, keyed by a hash of the sources), boots it with
``qemu-system-x86_64 -accel tcg -cpu max,phys-bits=48 -kernel`` (a multiboot v1
image with a 32-bit entry that switches to long mode itself), and talks to it:
one command line per call, one answer line per command, many programs per boot.
Batches travel through an ivshmem shared-memory device with COM1 as the doorbell;
single commands (and kernels without the device) use COM1 alone.

What this peer shows that the unicorn ``qemu`` target cannot: exceptions are
delivered by the CPU through the kernel's IDT, so a page fault's error code and
CR2 are what the processor pushed and loaded; ring-3 accesses are made for real
(IRETQ to a user page, back through a DPL-3 gate), so U/S, SMEP and SMAP are
applied as the CPU applies them; CR4.LA57 is chosen by leaving and re-entering
IA-32e mode, as firmware does.

Outcomes have the shapes of the ``qemu`` target's: a load or store returns the
qword read, a fetch returns ok, a page fault is ``signal="#PF"`` with
``detail`` ``cr2`` and ``errcode``, other exceptions ``#GP``, ``#UD``, …; the
program's mistakes the harness refuses (arguments outside the program's memory, the
harness's slot) are ``EINVAL``, as the model predicts; an operation the harness cannot stage
safely (an allowed access that would reach the harness's own memory) is answered ``r`` and
the program is ``refused`` (unsupported) from that call on, never judged.  A guest that stops answering within the time limit is killed
(``hang``); one that resets (a triple fault: QEMU runs with ``-no-reboot``) or
reports an exception outside any probe is a ``crash``.

This module builds the kernel, runs one boot of it (``Guest``) and holds the target;
the command and answer lines are ``testkernel_wire``'s.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from importlib import resources
from typing import Any

from memspec.calls import layer_calls
from memspec.calls_hw import HARNESS_LOW, INITIAL_CR3
from memspec.errors import SessionFailed, TargetError
from memspec.program import Call, Program, Ref, eval_args
from memspec.records import Observation, Outcome, RunResult, RunStatus

from .base import Session, Target
from .children import LIVE_GROUPS, kill_group
from .testkernel_wire import (
    FATAL_IF_ACCEPTED, VIRT_CALLS, VM_NPT, HarnessRefused, Refused, _h, accepted_then_died, decode, encode,
    parse_features, seg_facts, set_ram_end)
from .toolchain import building, cache_dir, need_tools, run_steps, testkernel_steps
from .versions import qemu_version

# what the kernel installs as root[511] (testkernel/kernel.c HARNESS_ENTRY4/5)
HARNESS_ENTRY4 = 0x5000 | 0x27
HARNESS_ENTRY5 = 0x1000 | 0x27

QEMU = "qemu-system-x86_64"
# TCG's default MAXPHYADDR is 40; the SVM guest's own harness slot lives at guest-physical
# 511 << 39, which needs 48 bits (and 48 is what most real CPUs have)
DEFAULT_CPU = "max,phys-bits=48"
APT_HINT = "apt-get install -y --no-install-recommends qemu-system-x86"
SOURCES = ("entry.S", "kernel.c", "kernel.ld")
CFLAGS = ("-m64", "-ffreestanding", "-fno-pic", "-fno-pie", "-mcmodel=kernel", "-mno-red-zone",
          "-mgeneral-regs-only", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
          "-fcf-protection=none", "-fno-builtin", "-nostdlib", "-O2", "-Wall")
# initial paging mode of every program (the hw model's): CR0.PG|WP|PE, CR4.PAE, EFER.LME|LMA|NXE
BOOT_CR0, BOOT_CR4, BOOT_EFER_NX, BOOT_EFER = 0x80010001, 0x20, 0xD00, 0x500


# ---------------------------------------------------------------------------------------------
# building the test kernel

def _sources(defines: tuple[str, ...] = ()) -> tuple[dict[str, bytes], str]:
    root = resources.files("memspec.targets").joinpath("testkernel")
    texts = {name: root.joinpath(name).read_bytes() for name in SOURCES}
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + texts[name] + b"\0")
    h.update(" ".join(CFLAGS + defines).encode())
    return texts, h.hexdigest()[:16]


def build_kernel(defines: tuple[str, ...] = (), force: bool = False) -> str:
    """Build (or find in the cache) the test kernel; returns the path of its flat multiboot image.

    ``defines`` are extra ``-D`` options (a deliberately broken variant for tests).  Needs gcc
    and binutils (ld, objcopy); nothing is downloaded."""
    texts, key = _sources(defines)
    out_dir = os.path.join(cache_dir(), f"testkernel-{key}")
    image = os.path.join(out_dir, "kernel.bin")
    if os.path.exists(image) and not force:
        return image
    need_tools(("gcc", "ld", "objcopy"), "the qemu-system test kernel", "apt-get install -y gcc binutils")
    with building(out_dir, texts, prefix="testkernel-") as work:
        run_steps(testkernel_steps(list(CFLAGS) + list(defines)), work, "the test kernel")
    return image


def find_qemu(binary: str = QEMU) -> str:
    path = shutil.which(binary)
    if path is None:
        raise TargetError(f"the qemu-system target needs {binary} (Debian: {APT_HINT})")
    return path


# ---------------------------------------------------------------------------------------------
# one boot of the kernel

def _die_with_parent() -> None:
    """In the QEMU child before exec: SIGKILL when the process that started it goes away
    (Linux PR_SET_PDEATHSIG), so that a harness killed mid-run leaves no guest behind.
    The signal follows the starting *thread*: start targets from a thread that outlives them."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except Exception:
        pass


class GuestDied(Exception):
    def __init__(self, status: RunStatus, message: str, replies: list[str]):
        super().__init__(message)
        self.status, self.message, self.replies = status, message, replies


SHM_SIZE, SHM_IN, SHM_OUT = 1 << 20, 64, 512 << 10


class Guest:
    """One QEMU process running the test kernel; commands and answers are lines on COM1, or,
    when the kernel found the ivshmem device, whole batches in shared memory with COM1 as the
    doorbell (testkernel/README.md)."""

    def __init__(self, image: str, cpu: str = DEFAULT_CPU, memory_mib: int = 32, binary: str = QEMU,
                 boot_timeout: float = 30.0, extra: tuple[str, ...] = (), shared_memory: bool = True):
        self.shm: mmap.mmap | None = None
        self.shm_path = ""
        shm_args: list[str] = []
        if shared_memory:
            where = "/dev/shm" if os.path.isdir("/dev/shm") else None
            fd, self.shm_path = tempfile.mkstemp(prefix="memspec-qemu-", dir=where)
            os.ftruncate(fd, SHM_SIZE)
            self.shm = mmap.mmap(fd, SHM_SIZE)
            os.close(fd)
            shm_args = ["-object", f"memory-backend-file,id=shm0,share=on,mem-path={self.shm_path},size=1M",
                        "-device", "ivshmem-plain,memdev=shm0"]
        self.cmd = [find_qemu(binary), "-accel", "tcg", "-cpu", cpu, "-m", str(memory_mib),
                    "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
                    "-no-reboot", "-serial", "stdio", "-kernel", image, *shm_args, *extra]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        LIVE_GROUPS.add(self.proc.pid)
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.commands = 0
        line = self._greeting(boot_timeout, "QEMU")
        if not line.endswith(" shm") and self.shm is not None:
            self._drop_shm()
        elif self.shm_path:
            # both sides have it mapped now: no name left behind if this process is killed
            os.unlink(self.shm_path)
            self.shm_path = ""

    def _greeting(self, boot_timeout: float, host: str) -> str:
        """Wait for the kernel's ``memspec-testkernel 1 ready`` line (closing the guest if it
        never comes) and return it."""
        try:
            line = self._line(time.monotonic() + boot_timeout)
            while not line.startswith("memspec-testkernel"):
                line = self._line(time.monotonic() + boot_timeout)
        except GuestDied as e:
            self.close()
            raise TargetError(f"the test kernel did not start under {host} ({e.message}); command: "
                              f"{' '.join(self.cmd)}") from None
        if not (line.endswith(" ready") or line.endswith(" ready shm")):
            self.close()
            raise TargetError(f"unexpected greeting from the test kernel: {line!r}")
        return line

    def _line(self, deadline: float) -> str:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestDied(RunStatus.HANG, "the guest stopped answering (time limit)", [])
            if not self.sel.select(min(left, 1.0)):
                continue
            chunk = self._recv()
            if chunk is None:       # woken with nothing to read after all
                continue
            if not chunk:
                raise GuestDied(RunStatus.CRASH, self._exit_message(), [])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        text = line.decode("ascii", "replace").rstrip("\r")
        if text.startswith("!"):
            raise GuestDied(RunStatus.CRASH, "the test kernel took an exception outside a probe: " + text[1:].strip(), [])
        return text

    # -- the transport: QEMU's COM1 is its stdin and stdout (a subclass may use a socket) --

    def _recv(self) -> bytes | None:
        """What arrived (b"" at end of file, None if nothing after all)."""
        return self.proc.stdout.read(65536)

    def _send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _exit_message(self) -> str:
        err = self._stderr()
        return ("QEMU exited: the guest reset (a triple fault; QEMU runs with -no-reboot)"
                + (f": {err}" if err else ""))

    def _stderr(self) -> str:
        try:
            self.proc.wait(timeout=2)
            return (self.proc.stderr.read() or b"").decode(errors="replace").strip()[-500:]
        except Exception:
            return ""

    def _drop_shm(self) -> None:
        if self.shm is not None:
            self.shm.close()
            self.shm = None
        if self.shm_path:
            try:
                os.unlink(self.shm_path)
            except OSError:
                pass
            self.shm_path = ""

    def exchange(self, lines: list[str], timeout: float) -> list[str]:
        """Send ``lines`` (one command each) and read one answer per command."""
        if not lines:
            return []
        if self.shm is not None and len(lines) > 1:
            return self._exchange_shm(lines, timeout)
        return self._exchange_serial(lines, timeout)

    def _exchange_shm(self, lines: list[str], timeout: float) -> list[str]:
        assert self.shm is not None
        out: list[str] = []
        deadline = time.monotonic() + timeout
        i = 0
        while i < len(lines):
            chunk: list[str] = []
            size = 0
            while i < len(lines) and size + len(lines[i]) + 1 < SHM_OUT - SHM_IN and len(chunk) < 8000:
                chunk.append(lines[i])
                size += len(lines[i]) + 1
                i += 1
            data = ("\n".join(chunk) + "\n").encode("ascii")
            self.shm[SHM_IN:SHM_IN + len(data)] = data
            self.shm[16:24] = len(data).to_bytes(8, "little")
            try:
                self._send(b"@\n")
            except (BrokenPipeError, OSError):
                raise GuestDied(RunStatus.CRASH, self._exit_message(), out) from None
            self.commands += len(chunk)
            try:
                done = self._line(deadline)
            except GuestDied as e:
                n = int.from_bytes(self.shm[24:32], "little")
                e.replies = out + self.shm[SHM_OUT:SHM_OUT + n].decode("ascii", "replace").splitlines()
                raise
            if not done.startswith("@ "):
                raise TargetError(f"unexpected answer from the test kernel to a batch: {done!r}")
            n = int(done[2:], 16)
            got = self.shm[SHM_OUT:SHM_OUT + n].decode("ascii", "replace").splitlines()
            if len(got) != len(chunk):
                raise TargetError(f"the test kernel answered {len(got)} of {len(chunk)} commands")
            out += got
        return out

    def exchange_records(self, setup: list[str], request: list[tuple[str, int]], size: int,
                         timeout: float) -> bytes:
        """A sweep batch (testkernel/README.md, Sweeps): the ``setup`` commands (each must answer
        ``k``), then the ``z`` lines of ``request`` (line, combinations), each answered by ``z`` and that
        many records of ``size`` bytes; returns the records, concatenated.  In shared memory under QEMU
        (one round trip), else on the serial line (8-bit clean)."""
        lines = setup + [line for line, _ in request]
        deadline = time.monotonic() + timeout
        if self.shm is not None:
            data = ("\n".join(lines) + "\n").encode("ascii")
            if len(data) >= SHM_OUT - SHM_IN or sum(n for _, n in request) * size + 64 >= SHM_SIZE - SHM_OUT:
                raise TargetError("a sweep batch larger than the shared memory")
            self.shm[SHM_IN:SHM_IN + len(data)] = data
            self.shm[16:24] = len(data).to_bytes(8, "little")
            try:
                self._send(b"@\n")
            except (BrokenPipeError, OSError):
                raise GuestDied(RunStatus.CRASH, self._exit_message(), []) from None
            self.commands += len(lines)
            done = self._line(deadline)
            if not done.startswith("@ "):
                raise TargetError(f"unexpected answer from the test kernel to a sweep batch: {done!r}")
            raw = bytes(self.shm[SHM_OUT:SHM_OUT + int(done[2:], 16)])
            pos = 0
            for line in setup:
                end = raw.find(b"\n", pos)
                reply = raw[pos:end if end >= 0 else len(raw)].decode("ascii", "replace")
                if reply != "k":
                    raise TargetError(f"the test kernel refused the sweep's set-up ({line!r}): {reply!r}")
                pos = end + 1
            out = []
            for line, n in request:
                if raw[pos:pos + 1] != b"z" or pos + 1 + n * size > len(raw):
                    tail = raw[pos:pos + 200].split(b"\n")[0].decode("ascii", "replace")
                    raise TargetError(f"the test kernel did not run the sweep batch ({line!r}): {tail!r}")
                out.append(raw[pos + 1:pos + 1 + n * size])
                pos += 1 + n * size
            if pos != len(raw):
                raise TargetError(f"the test kernel answered {len(raw) - pos} bytes more than a sweep batch")
            return b"".join(out)
        try:
            self._send(("\n".join(lines) + "\n").encode("ascii"))
        except (BrokenPipeError, OSError):
            raise GuestDied(RunStatus.CRASH, self._exit_message(), []) from None
        self.commands += len(lines)
        for line in setup:
            reply = self._line(deadline)
            if reply != "k":
                raise TargetError(f"the test kernel refused the sweep's set-up ({line!r}): {reply!r}")
        out = []
        for line, n in request:
            if self._bytes(1, deadline) != b"z":
                raise TargetError(f"the test kernel did not run the sweep batch ({line!r}): "
                                  f"{self._line(deadline)!r}")
            out.append(self._bytes(n * size, deadline))
        return b"".join(out)

    def _bytes(self, n: int, deadline: float) -> bytes:
        """Exactly ``n`` bytes of the answer stream (binary records).  A serial line delivers a batch's
        64 KiB in pieces of a few bytes each: they are read in bursts and joined once at the end."""
        parts, have = [self.buf], len(self.buf)
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.buf = b"".join(parts)
                raise GuestDied(RunStatus.HANG, "the guest stopped answering (time limit)", [])
            if not self.sel.select(min(left, 1.0)):
                continue
            chunk = self._recv()
            if chunk is None:
                continue
            if not chunk:
                self.buf = b"".join(parts)
                raise GuestDied(RunStatus.CRASH, self._exit_message(), [])
            parts.append(chunk)
            have += len(chunk)
            if have < n and len(chunk) < 4096:
                # Bochs sends a serial byte per send(): waking for each costs more CPU than the guest
                # spends on it, and the records are read as a whole anyway
                time.sleep(0.002)
        data = b"".join(parts)
        self.buf = data[n:]
        return data[:n]

    def _exchange_serial(self, lines: list[str], timeout: float) -> list[str]:
        try:
            self._send(("\n".join(lines) + "\n").encode("ascii"))
        except (BrokenPipeError, OSError):
            raise GuestDied(RunStatus.CRASH, self._exit_message(), []) from None
        self.commands += len(lines)
        deadline = time.monotonic() + timeout
        out: list[str] = []
        try:
            while len(out) < len(lines):
                out.append(self._line(deadline))
        except GuestDied as e:
            e.replies = out
            raise
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _stop_process(self) -> None:
        """Kill the emulator's process group (if it still runs) and reap it."""
        if self.proc.poll() is None:
            kill_group(self.proc.pid)
        LIVE_GROUPS.discard(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self._stop_process()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        self.sel.close()
        self._drop_shm()




# ---------------------------------------------------------------------------------------------
# the target

class QemuSystemSession(Session):
    def __init__(self, target: "TestKernelTarget"):
        self.t = target
        self.dead: GuestDied | None = None
        target.reset()

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        if self.dead is not None:     # the guest this session's state lived in is gone
            raise SessionFailed(self.dead.status, self.dead.message)
        a = tuple(int(x) for x in args)
        try:
            line = encode(call.name, a, self.t.vm_kinds)
        except Refused as e:
            raise SessionFailed(RunStatus.REFUSED, str(e)) from None
        if isinstance(line, Outcome):
            return line
        try:
            (reply,) = self.t.guest_exchange([line])
        except GuestDied as e:
            if call.name in FATAL_IF_ACCEPTED:
                self.dead = e
                return accepted_then_died(e.message)
            raise SessionFailed(e.status, e.message) from None
        try:
            return decode(call.name, a, reply)
        except HarnessRefused as e:
            raise SessionFailed(RunStatus.REFUSED, str(e)) from None

    def observe(self) -> Observation:
        return Observation()


class TestKernelTarget(Target):
    """What every emulator running memspec's test kernel shares: booting a guest (and booting it
    again after it died), the serial/shared-memory exchange, the reset line, the program run in
    as few exchanges as its named results allow, and a session over the same.  An emulator adds
    its guest (``_new_guest``), its name and what its CPU model can and cannot do."""

    layers = ("hw", "virt")
    # the hw layer's calls and the virt layer's two-dimensional ones (not KPTI's); the segmentation
    # calls run on the kernel's segmentation unit, in 64-bit mode (testkernel/README.md)
    calls = frozenset(c.name for c in layer_calls("hw")) | VIRT_CALLS
    capabilities = frozenset({"segmentation"})
    timeout = 10.0
    vm_kinds: frozenset[int] = frozenset({VM_NPT})

    def __init__(self, timeout: float, cpu: str, memory_mib: int, binary: str, image: str) -> None:
        self.timeout = timeout
        self.cpu = cpu
        self.memory_mib = memory_mib
        self.binary = binary
        self.image = image
        self.guest: Guest | None = None
        self.boots = 0
        self._features: dict[str, Any] | None = None

    # -- the guest ------------------------------------------------------------------

    def _new_guest(self) -> Guest:
        raise NotImplementedError

    def _start(self) -> None:
        self.guest = self._new_guest()
        self.boots += 1
        if self._features is None:
            (line,) = self.guest.exchange(["F"], self.timeout)
            self._features = parse_features(line)
            set_ram_end(self._features["ram"])

    def guest_exchange(self, lines: list[str]) -> list[str]:
        if self.guest is None or not self.guest.alive():
            if self.guest is not None:
                self.guest.close()
            self._start()
        assert self.guest is not None
        try:
            # the kernel answers a command in well under a millisecond: a short deadline turns a
            # wedged guest into a verdict quickly
            return self.guest.exchange(lines, min(self.timeout, 2.5 + 0.02 * len(lines)))
        except GuestDied:
            self.guest.close()
            self.guest = None
            raise

    def guest_records(self, setup: list[str], request: list[tuple[str, int]], size: int) -> bytes:
        """A sweep batch (``Guest.exchange_records``), booting the guest again first if it died."""
        if self.guest is None or not self.guest.alive():
            if self.guest is not None:
                self.guest.close()
            self._start()
        assert self.guest is not None
        count = sum(n for _, n in request)
        try:
            # a generous 10 ms per combination: the kernel runs thousands per second on either emulator
            return self.guest.exchange_records(setup, request, size, self.timeout + 0.01 * count)
        except GuestDied:
            self.guest.close()
            self.guest = None
            raise

    def reset_line(self) -> str:
        efer = BOOT_EFER_NX if self.features["nx"] else BOOT_EFER
        return f"R {_h(BOOT_CR0)} {_h(BOOT_CR4)} {_h(efer)} {_h(INITIAL_CR3)}"

    def reset(self) -> None:
        try:
            (reply,) = self.guest_exchange([self.reset_line()])
        except GuestDied as e:
            raise SessionFailed(e.status, "reset: " + e.message) from None
        if reply != "k":
            raise TargetError(f"the test kernel refused its reset: {reply}")

    # -- Target ---------------------------------------------------------------------------

    @property
    def features(self) -> dict[str, Any]:
        assert self._features is not None
        return self._features

    def facts(self) -> dict[str, Any]:
        f = {k: v for k, v in self.features.items() if k != "cpuid"}
        f.update(harness_low=HARNESS_LOW, harness_entry4=HARNESS_ENTRY4, harness_entry5=HARNESS_ENTRY5,
                 cpuid={k: hex(v) for k, v in self.features["cpuid"].items()})
        f.update(seg_facts(self.features["ram"]))
        return f

    def unsupported(self) -> list[str]:
        names = {"la57": "5-level paging (CR4.LA57)", "page1g": "1-GByte pages", "pcid": "PCID (CPUID.01H:ECX[17])",
                 "invpcid": "INVPCID (CPUID.07H:EBX[10])", "smep": "SMEP", "smap": "SMAP",
                 "pku": "protection keys (PKU)", "nx": "execute-disable (NX)"}
        f = self.features
        out = [text for key, text in names.items() if not f[key]]
        out += ["the A20 gate (SEG_REAL: real-address mode with A20 masked)",
                "segmentation outside 64-bit mode (SEG_REAL_A20, SEG_PROTECTED: refused by the test kernel)"]
        if f["maxphyaddr"] < 52:
            out.append(f"MAXPHYADDR = 52 (this CPU has {f['maxphyaddr']}: bits 51:{f['maxphyaddr']} are reserved instead)")
        return out

    def session(self, layer: str = "hw") -> "QemuSystemSession":
        if layer not in self.layers:
            raise TargetError(f"the {self.name} target runs the {' and '.join(self.layers)} layer(s), not {layer!r}")
        return QemuSystemSession(self)

    def run(self, program: Program, observe: str = "end") -> RunResult:
        """The whole program in as few exchanges as its named results allow (usually one)."""
        outcomes: list[Outcome] = []
        env: dict[str, int] = {}
        pending: list[tuple[Call, tuple[int, ...], str | Outcome]] = [(Call("reset"), (), self.reset_line())]
        names_pending: set[str] = set()

        def flush() -> RunResult | None:
            lines = [x for _, _, x in pending if isinstance(x, str)]
            try:
                replies = self.guest_exchange(lines)
            except GuestDied as e:
                replies, died = e.replies, e
            else:
                died = None
            it = iter(replies)
            for call, a, x in pending:
                if isinstance(x, Outcome):
                    o = x
                else:
                    r = next(it, None)
                    if r is None:
                        assert died is not None
                        if call.name in FATAL_IF_ACCEPTED:
                            outcomes.append(accepted_then_died(died.message))
                        return RunResult(tuple(outcomes), (), died.status, f"at {call.name}(): {died.message}")
                    if call.name == "reset":
                        if r != "k":
                            raise TargetError(f"the test kernel refused its reset: {r}")
                        continue
                    try:
                        o = decode(call.name, a, r)
                    except HarnessRefused as e:
                        # the rest of the batch ran, but the judge cannot skip a call: refused from here
                        return RunResult(tuple(outcomes), (), RunStatus.REFUSED,
                                         f"call {len(outcomes) + 1} refused: {e}")
                outcomes.append(o)
                if call.result and o.value is not None:
                    env[call.result] = o.value
            pending.clear()
            names_pending.clear()
            return None

        for c in program.calls:
            if any(isinstance(arg, Ref) and arg.name in names_pending for arg in c.args):
                bad = flush()
                if bad is not None:
                    return bad
            a = tuple(int(x) for x in eval_args(c, env))
            try:
                pending.append((c, a, encode(c.name, a, self.vm_kinds)))
            except Refused as e:
                return RunResult((), (), RunStatus.REFUSED, str(e))
            if c.result:
                names_pending.add(c.result)
        bad = flush()
        if bad is not None:
            return bad
        return RunResult(tuple(outcomes), ((len(outcomes) - 1, Observation()),) if outcomes and observe != "none" else ())

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
            self.guest = None


class QemuSystemTarget(TestKernelTarget):
    """Full-system QEMU under TCG with memspec's test kernel (see the module docstring)."""

    name = "qemu-system"

    def __init__(self, timeout: float = 10.0, cpu: str = DEFAULT_CPU, memory_mib: int = 32, binary: str = QEMU,
                 image: str | None = None, **_options: Any) -> None:
        find_qemu(binary)                       # a missing binary is a clear error at once
        super().__init__(timeout, cpu, memory_mib, binary, image or build_kernel())
        self._start()

    def _new_guest(self) -> Guest:
        return Guest(self.image, self.cpu, self.memory_mib, self.binary)

    def facts(self) -> dict[str, Any]:
        return dict(super().facts(), qemu_cpu=self.cpu, impl_version=qemu_version(find_qemu(self.binary)))


# the command language is testkernel_wire's; bochs.py and the tests still take these names from here
__all__ = ["TestKernelTarget", "QemuSystemTarget", "Guest", "build_kernel", "find_qemu"]
