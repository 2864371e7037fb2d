"""/dev/kvm: the ioctls (include/uapi/linux/kvm.h), the VM and vCPU file descriptors, the CPUID the
guest sees."""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import struct

from memspec.errors import TargetError

# --- /dev/kvm ioctls (include/uapi/linux/kvm.h) ------------------------------

_KVMIO = 0xAE


def _io(n: int) -> int:
    return (_KVMIO << 8) | n


def _iow(n: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (_KVMIO << 8) | n


def _ior(n: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (_KVMIO << 8) | n


def _iowr(n: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (_KVMIO << 8) | n


KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, 8)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, 32)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, 144)
KVM_SET_REGS = _iow(0x82, 144)
KVM_GET_SREGS = _ior(0x83, 312)
KVM_SET_SREGS = _iow(0x84, 312)
KVM_SET_CPUID2 = _iow(0x90, 8)

EXIT_MMIO, EXIT_HLT, EXIT_SHUTDOWN, EXIT_FAIL_ENTRY, EXIT_INTR, EXIT_INTERNAL_ERROR = 6, 5, 8, 9, 10, 17
EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 4: "DEBUG", 5: "HLT", 6: "MMIO", 8: "SHUTDOWN",
              9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR", 24: "SYSTEM_EVENT"}

# --- host side of the VM -----------------------------------------------------------

_SEG = struct.Struct("<QIHBBBBBBBBBx")
_SEG_OFF = {"cs": 0, "ds": 24, "es": 48, "fs": 72, "gs": 96, "ss": 120, "tr": 144, "ldt": 168}
_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
         "r14", "r15", "rip", "rflags")


class KvmUnavailable(TargetError):
    """/dev/kvm cannot be used here; the message says why."""


class _GuestTimeout(Exception):
    pass


class _Refused(Exception):
    """A call this KVM cannot be judged on (the message says why)."""


def _ioctl(fd: int, req: int, buf: bytes | bytearray | int = 0) -> tuple[int, bytearray | None]:
    if isinstance(buf, int):
        return fcntl.ioctl(fd, req, buf), None
    b = bytearray(buf)
    r = fcntl.ioctl(fd, req, b, True)
    return r, b


def kvm_status() -> str | None:
    """None when /dev/kvm can run guests here, else the reason it cannot."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm cannot be opened: {e.strerror} ({_errno.errorcode.get(e.errno, e.errno)})"
    try:
        api = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if api != 12:
            return f"/dev/kvm speaks API version {api}, not 12"
    except OSError as e:
        return f"KVM_GET_API_VERSION failed: {e.strerror}"
    finally:
        os.close(fd)
    return None


class _Kvm:
    """The /dev/kvm system fd and what it reports (shared by every VM of a process)."""

    _shared: "_Kvm | None" = None

    def __init__(self) -> None:
        why = kvm_status()
        if why:
            raise KvmUnavailable(why)
        self.fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        self.run_size = fcntl.ioctl(self.fd, KVM_GET_VCPU_MMAP_SIZE, 0)
        n = 256
        _, b = _ioctl(self.fd, KVM_GET_SUPPORTED_CPUID, struct.pack("<II", n, 0) + bytes(40 * n))
        count = struct.unpack_from("<I", b)[0]
        self.cpuid = [list(struct.unpack_from("<7I", b, 8 + 40 * i)) for i in range(count)]

    @classmethod
    def get(cls) -> "_Kvm":
        if cls._shared is None:
            cls._shared = _Kvm()
        return cls._shared

    def leaf(self, fn: int, idx: int = 0) -> list[int] | None:
        for e in self.cpuid:
            if e[0] == fn and (e[1] == idx or not e[2] & 1):
                return e
        return None


def guest_cpuid(kvm: _Kvm) -> list[list[int]]:
    """KVM's supported CPUID, plus the bits KVM implements but does not advertise (SMEP, SMAP):
    without CPUID.7.EBX[7] / [20] a MOV to CR4 setting SMEP / SMAP raises #GP (kvm_is_valid_cr4)."""
    ents = [list(e) for e in kvm.cpuid]
    for e in ents:
        if e[0] == 7 and e[1] == 0:
            e[4] |= (1 << 7) | (1 << 20)
    return ents
