"""Target ``bochs`` (and ``bochs:CPU_MODEL``): Bochs' x86 paging, running memspec's test kernel.

The same freestanding kernel as the ``qemu-system`` target (``targets/testkernel/``), booted
the way a PC boots: Bochs' BIOS loads a floppy image whose first sector is memspec's own
boot sector (``testkernel/boot.S``), which reads the kernel to its multiboot load address,
enables A20, enters protected mode and jumps to the kernel's multiboot entry with a
multiboot information structure, as GRUB would.  The kernel then switches to long mode
itself.  Commands and answers travel over Bochs' emulated COM1, which Bochs connects to a
TCP socket that this process listens on (``com1: mode=socket-client``); the protocol is the
kernel's (testkernel/README.md), one command line per call.

Bochs runs headless with its ``term`` display (Debian ships no ``nogui`` plugin), which
needs ``TERM`` set; its debugger is told to continue and quit by an rc file.  A triple fault
ends Bochs (``reset_on_triple_fault=0``): the run is a ``crash``.  The CPU is one of Bochs'
named models (``bochs:corei7_icelake_u``; default ``tigerlake``: 1-GByte pages, PCID,
INVPCID, SMEP, SMAP, PKU, NX, VMX with EPT; no model has LA57).  What a model lacks is
reported as not applicable, from the kernel's CPUID probe, never as passed.

The virt layer runs too: on Intel models the kernel is a VMX hypervisor with EPT (the
features from the VMX capability MSRs, ``facts()["vmx"]``), on AMD models (``bochs:ryzen``,
``bochs:phenom_8650_toliman``) an SVM hypervisor with nested paging, so AMD nested paging has
a second real implementation beside QEMU's.  Bochs' MAXPHYADDR is 40, so the harness's own
guest code lives in EPT/NPT root slot 1 rather than 511 (``calls_virt.nested_harness_slot``).
"""

from __future__ import annotations

import hashlib
import os
import selectors
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from importlib import resources
from typing import Any

from memspec.errors import TargetError, UsageError

from .children import LIVE_GROUPS
from .versions import bochs_version
from .qemu_system import Guest, TestKernelTarget, _die_with_parent, build_kernel
from .testkernel_wire import VM_EPT, VM_NPT
from .toolchain import cache_dir

BOCHS = "bochs"
APT_HINT = "apt-get install -y --no-install-recommends bochs bochsbios vgabios bochs-term"
DEFAULT_MODEL = "tigerlake"
# Bochs 2.7's named CPU models with long mode (`bochs -help cpu` lists them)
MODELS = ("bx_generic", "p4_prescott_celeron_336", "athlon64_clawhammer", "athlon64_venice", "turion64_tyler",
          "phenom_8650_toliman", "core2_penryn_t9600", "corei5_lynnfield_750", "corei5_arrandale_m520",
          "corei7_sandy_bridge_2600k", "zambezi", "trinity_apu", "ryzen", "corei7_ivy_bridge_3770k",
          "corei7_haswell_4770", "broadwell_ult", "corei7_skylake_x", "corei3_cnl", "corei7_icelake_u",
          "tigerlake")
BIOS = ("/usr/share/bochs/BIOS-bochs-latest", "/usr/share/vgabios/vgabios.bin")
FLOPPY_SIZE = 1474560
SECTOR = 512
MULTIBOOT_MAGIC = 0x1BADB002


def find_bochs(binary: str = BOCHS) -> str:
    path = shutil.which(binary)
    if path is None:
        raise TargetError(f"the bochs target needs Bochs ({binary!r} is not on PATH): {APT_HINT}")
    for f in BIOS:
        if not os.path.exists(f):
            raise TargetError(f"the bochs target needs Bochs' BIOS images ({f} is missing): {APT_HINT}")
    return path


def build_boot_sector() -> bytes:
    """Assemble testkernel/boot.S into the 512-byte boot sector (cached like the kernel)."""
    text = resources.files("memspec.targets").joinpath("testkernel", "boot.S").read_bytes()
    key = hashlib.sha256(text).hexdigest()[:16]
    out = os.path.join(cache_dir(), f"bootsector-{key}.bin")
    if os.path.exists(out):
        with open(out, "rb") as f:
            return f.read()
    os.makedirs(cache_dir(), exist_ok=True)
    work = tempfile.mkdtemp(prefix="bootsector-", dir=cache_dir())
    try:
        with open(os.path.join(work, "boot.S"), "wb") as f:
            f.write(text)
        for cmd in (["gcc", "-m32", "-c", "boot.S", "-o", "boot.o"],
                    ["ld", "-m", "elf_i386", "-Ttext", "0x7C00", "-e", "start", "--oformat", "binary",
                     "-o", "boot.bin", "boot.o"]):
            r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            if r.returncode != 0:
                raise TargetError(f"building the boot sector failed: {' '.join(cmd)}\n{r.stderr.strip()}")
        with open(os.path.join(work, "boot.bin"), "rb") as f:
            data = f.read()
        if len(data) != SECTOR or data[-2:] != b"\x55\xaa":
            raise TargetError(f"the boot sector came out {len(data)} bytes long, not {SECTOR} with a signature")
        tmp = out + f".{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
        return data
    finally:
        shutil.rmtree(work, ignore_errors=True)


def floppy_image(kernel: str, memory_mib: int) -> str:
    """A 1.44 MB floppy image: the boot sector with its parameter block filled in, then the
    kernel's flat image from sector 1.  Cached by content."""
    boot = bytearray(build_boot_sector())
    with open(kernel, "rb") as f:
        k = f.read()
    at = k.find(struct.pack("<I", MULTIBOOT_MAGIC), 0, 8192)
    if at < 0 or at % 4:
        raise TargetError(f"{kernel} has no multiboot header in its first 8 KiB")
    load_addr, entry = struct.unpack_from("<I", k, at + 16)[0], struct.unpack_from("<I", k, at + 28)[0]
    if load_addr != 0x10000:
        raise TargetError(f"the boot sector loads kernels at 0x10000, this one wants {load_addr:#x}")
    sectors = -(-len(k) // SECTOR)
    if 1 + sectors > FLOPPY_SIZE // SECTOR or 0x10000 + sectors * SECTOR > 0x9F000:
        raise TargetError(f"the kernel image is too large for the floppy loader ({len(k)} bytes)")
    struct.pack_into("<H", boot, 0x1F0, sectors)
    struct.pack_into("<I", boot, 0x1F4, entry)
    struct.pack_into("<I", boot, 0x1F8, (memory_mib - 1) * 1024)
    img = bytes(boot) + k
    img += b"\0" * (FLOPPY_SIZE - len(img))
    key = hashlib.sha256(img).hexdigest()[:16]
    out = os.path.join(cache_dir(), f"floppy-{key}.img")
    if not os.path.exists(out):
        tmp = out + f".{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(img)
        os.replace(tmp, out)
    return out


# ips: Bochs' emulated clock runs at ips instructions per emulated second, and its serial line sends
# one byte per 10 bit times of that clock (115,200 baud: 86.8 emulated microseconds), which the kernel
# waits for by polling the line status.  At the default 4,000,000 that is ~350 instructions per byte;
# at 1,000,000 (the least Bochs accepts) ~90: a sweep's binary records (16 bytes per combination) cost
# 8,500 instead of 5,200 combinations per CPU second of Bochs (measured on 8,000).  Nothing in the
# kernel depends on the clock's rate.
BOCHSRC = """\
megs: {megs}
romimage: file={bios}
vgaromimage: file={vgabios}
floppya: 1_44={image}, status=inserted, write_protected=1
boot: floppy
floppy_bootsig_check: disabled=0
display_library: term
log: {log}
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
mouse: enabled=0
speaker: enabled=0
port_e9_hack: enabled=1
com1: enabled=1, mode=socket-client, dev=127.0.0.1:{port}
cpu: model={model}, count=1, ips=1000000, reset_on_triple_fault=0, ignore_bad_msrs=0
"""


class BochsGuest(Guest):
    """One Bochs process running the test kernel; its COM1 is a TCP connection to us."""

    def __init__(self, image: str, model: str, memory_mib: int = 32, binary: str = BOCHS,
                 boot_timeout: float = 60.0):
        self.shm = None
        self.shm_path = ""
        self.conn: socket.socket | None = None
        self.dir = tempfile.mkdtemp(prefix="memspec-bochs-")
        self.log = os.path.join(self.dir, "bochs.log")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            rc = os.path.join(self.dir, "bochsrc")
            with open(rc, "w") as f:
                f.write(BOCHSRC.format(megs=memory_mib, bios=BIOS[0], vgabios=BIOS[1], image=image,
                                       log=self.log, port=listener.getsockname()[1], model=model))
            with open(os.path.join(self.dir, "cont.rc"), "w") as f:
                f.write("c\nquit\n")     # Debian's Bochs has the debugger: continue, then quit
            self.cmd = [binary, "-q", "-f", rc, "-rc", os.path.join(self.dir, "cont.rc")]
            self.screen = open(os.path.join(self.dir, "screen.txt"), "wb")
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.screen,
                                         stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True,
                                         preexec_fn=_die_with_parent, env=dict(os.environ, TERM="dumb"))
            LIVE_GROUPS.add(self.proc.pid)
            listener.settimeout(0.25)
            deadline = time.monotonic() + boot_timeout
            while self.conn is None:
                try:
                    self.conn, _ = listener.accept()
                except socket.timeout:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        msg = self._exit_message()
                        self.close()
                        raise TargetError(f"Bochs did not start: {msg}; command: {' '.join(self.cmd)}") from None
        finally:
            listener.close()
        self.conn.setblocking(False)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.conn, selectors.EVENT_READ)
        self.commands = 0
        self._greeting(boot_timeout, "Bochs")

    def _recv(self) -> bytes | None:
        assert self.conn is not None
        try:
            return self.conn.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.setblocking(True)
        try:
            self.conn.sendall(data)
        finally:
            self.conn.setblocking(False)

    def _exit_message(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        rc = self.proc.poll()
        why = ""
        try:
            with open(self.log, errors="replace") as f:
                lines = [ln.strip() for ln in f if "PANIC" in ln or "ERROR" in ln or "triple fault" in ln.lower()
                         or "shutdown" in ln.lower()]
            why = "; ".join(lines[-3:])
        except OSError:
            pass
        return f"Bochs exited (status {rc})" + (f": {why}" if why else "")

    def close(self) -> None:
        if getattr(self, "proc", None) is not None:
            self._stop_process()
        if self.conn is not None:
            self.conn.close()
        sel = getattr(self, "sel", None)
        if sel is not None:
            sel.close()
        screen = getattr(self, "screen", None)
        if screen is not None:
            screen.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# IA32_VMX_EPT_VPID_CAP (MSR 0x48C) bits, Intel SDM Vol. 3C Appendix A.10
EPT_CAP_BITS = {"ept_xonly": 0, "ept_wl4": 6, "ept_wl5": 7, "ept_uc": 8, "ept_wb": 14, "ept_2m": 16, "ept_1g": 17,
                "invept": 20, "ept_ad": 21, "ept_advanced_exit_info": 22, "invept_single": 25, "invept_all": 26,
                "invvpid": 32}
EPT_FEATURE_NAMES = {
    "ept_xonly": "EPT execute-only entries (IA32_VMX_EPT_VPID_CAP[0])",
    "ept_wl4": "4-level EPT walks (IA32_VMX_EPT_VPID_CAP[6])",
    "ept_wl5": "5-level EPT walks (IA32_VMX_EPT_VPID_CAP[7])",
    "ept_uc": "EPT paging structures of memory type UC (IA32_VMX_EPT_VPID_CAP[8])",
    "ept_wb": "EPT paging structures of memory type WB (IA32_VMX_EPT_VPID_CAP[14])",
    "ept_2m": "EPT 2-MByte pages (IA32_VMX_EPT_VPID_CAP[16])",
    "ept_1g": "EPT 1-GByte pages (IA32_VMX_EPT_VPID_CAP[17])",
    "ept_ad": "EPT accessed and dirty flags (IA32_VMX_EPT_VPID_CAP[21])",
    "invept_single": "INVEPT single-context (IA32_VMX_EPT_VPID_CAP[25])",
    "invept_all": "INVEPT all-context (IA32_VMX_EPT_VPID_CAP[26])",
}


def parse_vmx(line: str) -> dict[str, Any]:
    """The kernel's ``M`` answer: the VMX capability MSRs (IA32_VMX_BASIC 0x480, PINBASED 0x481,
    PROCBASED 0x482, EXIT 0x483, ENTRY 0x484, PROCBASED2 0x48B, EPT_VPID_CAP 0x48C, MISC 0x485,
    CR0/CR4 FIXED0/1 0x486-0x489, FEATURE_CONTROL 0x3A) -> what this CPU's VMX offers.
    A control is available when its allowed-1 bit (bits 63:32 of the MSR) is set (SDM A.3-A.5)."""
    parts = line.split()
    if not parts or parts[0] != "M" or len(parts) != 14:
        raise TargetError(f"bad VMX capability line from the test kernel: {line!r}")
    basic, pin, proc, exit_, entry, proc2, ept, misc, cr0f0, cr0f1, cr4f0, cr4f1, fctl = (int(x, 16) for x in parts[1:])
    ok1 = lambda msr, bit: bool(msr >> 32 >> bit & 1)       # noqa: E731
    f: dict[str, Any] = {
        "vmcs_revision": basic & 0x7FFFFFFF,
        "secondary_controls": ok1(proc, 31),
        "ept": ok1(proc, 31) and ok1(proc2, 1),
        "vpid": ok1(proc, 31) and ok1(proc2, 5),
        "unrestricted_guest": ok1(proc, 31) and ok1(proc2, 7),
        "entry_load_efer": ok1(entry, 15),
        "exit_load_efer": ok1(exit_, 21),
    }
    for key, bit in EPT_CAP_BITS.items():
        f[key] = f["ept"] and bool(ept >> bit & 1)
    f["msr"] = {"IA32_VMX_BASIC": hex(basic), "IA32_VMX_PINBASED_CTLS": hex(pin), "IA32_VMX_PROCBASED_CTLS": hex(proc),
                "IA32_VMX_EXIT_CTLS": hex(exit_), "IA32_VMX_ENTRY_CTLS": hex(entry),
                "IA32_VMX_PROCBASED_CTLS2": hex(proc2), "IA32_VMX_EPT_VPID_CAP": hex(ept), "IA32_VMX_MISC": hex(misc),
                "IA32_VMX_CR0_FIXED0": hex(cr0f0), "IA32_VMX_CR0_FIXED1": hex(cr0f1),
                "IA32_VMX_CR4_FIXED0": hex(cr4f0), "IA32_VMX_CR4_FIXED1": hex(cr4f1),
                "IA32_FEATURE_CONTROL": hex(fctl)}
    return f


class BochsTarget(TestKernelTarget):
    """Bochs with memspec's test kernel (see the module docstring).

    The virt layer runs on the nested paging of the CPU model's vendor: Intel models with VMX
    and EPT run EPT programs (the kernel as a VMX hypervisor), AMD models with SVM and nested
    paging run NPT programs (its SVM path); programs of the other vendor's kind are not
    applicable.  The VMX features come from the capability MSRs (``facts()["vmx"]``); an EPT
    feature the model lacks is listed by ``unsupported()`` and judged as absent, never passed."""

    name = "bochs"
    layers = ("hw", "virt")

    def __init__(self, timeout: float = 20.0, model: str = DEFAULT_MODEL, memory_mib: int = 32,
                 binary: str = BOCHS, image: str | None = None, **_options: Any) -> None:
        if model not in MODELS:
            raise UsageError(f"unknown Bochs CPU model {model!r}; known: {', '.join(MODELS)}")
        super().__init__(timeout, model, memory_mib, find_bochs(binary),
                         floppy_image(image or build_kernel(), memory_mib))
        self.vmx: dict[str, Any] | None = None
        if model != DEFAULT_MODEL:
            self.name = f"bochs:{model}"
        self._start()
        feats = self.features
        if feats["vendor"] == "GenuineIntel" and feats["cpuid"]["1.ecx"] >> 5 & 1:
            (line,) = self.guest_exchange(["M"])
            self.vmx = parse_vmx(line)
        kinds = set()
        if self.vmx is not None and self.vmx["ept"]:
            kinds.add(VM_EPT)
        if feats["svm"] and feats["npt"]:
            kinds.add(VM_NPT)
        self.vm_kinds = frozenset(kinds)
        # the nested-entry writer of this vendor's kind only (the other vendor's is not applicable)
        calls = set(type(self).calls or ())
        calls.discard("set_npte")
        if VM_EPT in kinds:
            calls.add("set_epte")
        if VM_NPT in kinds:
            calls.add("set_npte")
        if not kinds:
            calls -= {"vm_boot", "vm_enter", "read_epte", "set_gpte", "read_gpte", "vm_cr3", "vm_access", "invept"}
        self.calls = frozenset(calls)

    def _new_guest(self) -> Guest:
        return BochsGuest(self.image, self.cpu, self.memory_mib, self.binary)

    def facts(self) -> dict[str, Any]:
        f = super().facts()
        f["bochs_cpu"] = self.cpu
        f["impl_version"] = bochs_version(self.binary)
        v = self.vmx
        if v is not None:
            f["vmx"] = v
            # what the virt model reads (model/virt.py DEFAULT_FACTS)
            f.update(ept_xonly=v["ept_xonly"], ept_ad=v["ept_ad"], ept_1g=v["ept_1g"])
        return f

    def not_observable(self) -> dict[str, str]:
        """Virt clauses no program can exercise on this CPU model, with the reason."""
        out: dict[str, str] = {}
        f = self.features
        if VM_EPT in self.vm_kinds and self.vmx is not None:
            if f["maxphyaddr"] < 48:
                why = (f"MAXPHYADDR is {f['maxphyaddr']}: guest-physical addresses reach EPT PML4 slots 0 and "
                       f"{(1 << (f['maxphyaddr'] - 39)) - 1} only, and the second is the harness's")
                out["sdm.ept.violation.pml4e-not-present"] = why + " (slot 0 maps the guest's own tables)"
                out["sdm.ept.misconfig.rsvd-ps"] = why + (" and the CPU has 1-GByte EPT pages" if self.vmx["ept_1g"] else "")
            if not self.vmx["ept_wl5"]:
                out["sdm.ept.violation.pml5e-not-present"] = "no 5-level EPT walks (IA32_VMX_EPT_VPID_CAP[7] = 0)"
            if self.vmx["ept_xonly"]:
                out["sdm.ept.misconfig.execute-only-unsupported"] = "the CPU supports execute-only EPT entries"
        out["sdm.ept.worst-case-24-refs"] = "a CPU's count of paging-structure references is not observable"
        return out

    def unsupported(self) -> list[str]:
        out = super().unsupported()
        v = self.vmx
        if VM_EPT in self.vm_kinds and v is not None:
            out += [text for key, text in EPT_FEATURE_NAMES.items() if not v[key]]
        elif VM_NPT in self.vm_kinds:
            out.append("Intel VMX with EPT (an AMD CPU model: the virt layer runs AMD nested paging)")
        else:
            out.append("nested paging: neither VMX with EPT nor SVM with nested paging (the virt layer has no peer)")
        if VM_EPT in self.vm_kinds:
            out.append("AMD SVM nested paging (an Intel CPU model: the virt layer runs EPT)")
        return out


def bochs_target(model: str, **options: Any) -> BochsTarget:
    """``bochs:MODEL``: Bochs with one of its named CPU models."""
    return BochsTarget(model=model.strip(), **options)


__all__ = ["BochsTarget", "BochsGuest", "bochs_target", "floppy_image", "build_boot_sector", "find_bochs", "parse_vmx"]
