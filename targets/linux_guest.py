"""Target ``linux-guest``: Debian's Linux 6.1 booted under qemu-system-x86_64, judged through
the native agent.

The kernel is Debian's ``linux-image-amd64`` (``/boot/vmlinuz-*``); memspec builds the initramfs
itself (a ``newc`` cpio: the static init of ``agent/init.c``, the agent, ``/dev/console`` and the
kernel modules for an ext4 ``/tmp`` on a virtio disk, taken from ``/lib/modules`` of the same
release) and boots it once under KVM when ``/dev/kvm`` works, else under TCG:

    qemu-system-x86_64 -kernel VMLINUZ -initrd CPIO -append "console=ttyS0 -- -m MOD... /dev/ttyS1 /agent"
        -serial chardev:klog (the kernel log: qemu's standard error) -serial stdio (the protocol)

The first serial line is the kernel's console (standard error: the kernel log, kept per run as
for ``uml``), the second the protocol's line, in raw mode.  Everything else -- the init's facts,
the agent's hello, the kernel log in the report -- is the ``uml`` target's (``targets/uml.py``).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from typing import Any

from memspec.errors import TargetError

from .uml import UmlTarget

QEMU_SYSTEM = "qemu-system-x86_64"
APT_HINT = "apt-get install -y qemu-system-x86 linux-image-amd64"
CONSOLE = "/dev/ttyS1"
# what the guest's /tmp needs that Debian builds as modules: the virtio disk and ext4 (with the
# crc32c its metadata checksums ask the crypto API for; no modprobe runs in memspec's initramfs)
# 4-level paging as on the hosts the model was measured on (TCG's "max" has LA57: a 56-bit
# address space, where an mmap without a hint still stays below 47 bits -- which the model does
# not know yet -- and the agent's own refusals assume 47 bits)
CPU = {"tcg": "max,-la57", "kvm": "host"}
MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")


def find_kernel(pattern: str = "/boot/vmlinuz-*") -> tuple[str, str]:
    """The newest Debian kernel image and its release (``6.1.0-57-amd64``)."""
    found = sorted(glob.glob(pattern), key=lambda p: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p)])
    for path in reversed(found):
        release = os.path.basename(path)[len("vmlinuz-"):]
        if os.access(path, os.R_OK):
            return path, release
    raise TargetError(f"the linux-guest target needs a readable kernel image {pattern} (Debian: {APT_HINT})")


def module_files(release: str, names: tuple[str, ...] = MODULES, root: str = "/lib/modules") -> list[str]:
    """The .ko files of ``names`` and what they need, dependencies first (modules.dep)."""
    base = os.path.join(root, release)
    deps: dict[str, list[str]] = {}
    try:
        with open(os.path.join(base, "modules.dep")) as f:
            for line in f:
                mod, _, rest = line.partition(":")
                deps[mod.strip()] = rest.split()
    except OSError:
        return []
    by_name = {os.path.basename(m).split(".ko")[0].replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(m: str) -> None:
        if m in order:
            return
        for d in deps.get(m, []):
            visit(d)
        order.append(m)
    for n in names:
        if n in by_name:
            visit(by_name[n])
    return [os.path.join(base, m) for m in order if m.endswith(".ko")]


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(path: str, init: str, agent: str, modules: list[str]) -> list[str]:
    """Write the newc cpio; returns the guest paths of the modules, in load order."""
    entries = [("dev", 0o040755, b"", (0, 0)), ("dev/console", 0o020600, b"", (5, 1)), ("m", 0o040755, b"", (0, 0))]
    for name, src in (("init", init), ("agent", agent)):
        with open(src, "rb") as f:
            entries.append((name, 0o100755, f.read(), (0, 0)))
    guest = []
    for i, src in enumerate(modules):
        with open(src, "rb") as f:
            entries.append((f"m/{i}.ko", 0o100644, f.read(), (0, 0)))
        guest.append(f"/m/{i}.ko")
    with open(path, "wb") as out:
        for ino, (name, mode, data, rdev) in enumerate(entries, 1):
            out.write(_cpio_entry(name, mode, data, rdev, ino))
        out.write(_cpio_entry("TRAILER!!!", 0))
    return guest


def kvm_works() -> bool:
    """/dev/kvm opens and the CPU has hardware virtualization (vmx or svm).  Without it /dev/kvm
    may be a paravirtual KVM (kvm-pvm, as on the machines memspec is developed on), which does not
    run an unmodified kernel: QEMU dies setting an MSR with ``-cpu host`` and a guest with another
    CPU model never prints a line.  Then TCG."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return "vmx" in flags or "svm" in flags


class LinuxGuestTarget(UmlTarget):
    """The agent as a process of Debian's 6.1 kernel booted under qemu-system-x86_64."""

    label = "linux-guest"

    def __init__(self, timeout: float = 10.0, defines: tuple[str, ...] = (), mem_mb: int = 512,
                 accel: str = "", **options: Any):
        self.qemu = shutil.which(QEMU_SYSTEM)
        if self.qemu is None:
            raise TargetError(f"the linux-guest target needs {QEMU_SYSTEM} (Debian: {APT_HINT})")
        self.kernel_image, self.release = find_kernel()
        self.accel = accel or ("kvm" if kvm_works() else "tcg")
        self.modules = module_files(self.release)
        super().__init__(timeout=timeout, defines=defines, mem_mb=mem_mb, **options)

    def _binary(self) -> str:
        return self.qemu or QEMU_SYSTEM

    def _argv(self) -> list[str]:
        initrd = os.path.join(self._uml_dir, "initramfs.cpio")
        if not os.path.exists(initrd):
            self._guest_modules = build_initramfs(initrd, self.init, self.agent, self.modules)
        mods = [a for m in getattr(self, "_guest_modules", []) for a in ("-m", m)]
        disk = ["-drive", f"file={self._image},if=virtio,format=raw,cache=unsafe"] if self._image else []
        append = " ".join(["console=ttyS0", "panic=-1", "--", *mods, CONSOLE, "/agent"])
        return [self._binary(), "-accel", self.accel, "-m", str(self.mem_mb), "-smp", "1", "-nodefaults",
                "-no-reboot", "-display", "none", "-cpu", CPU[self.accel],
                "-kernel", self.kernel_image, "-initrd", initrd, "-append", append,
                "-chardev", "file,id=klog,path=/dev/stderr", "-serial", "chardev:klog", "-serial", "stdio", *disk]

    def facts(self) -> dict[str, Any]:
        f = super().facts()
        f["accel"] = self.accel
        return f
