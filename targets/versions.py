"""The version of the implementation a target runs, as the implementation itself reports it.

Every target's ``facts()`` carries it as ``impl_version`` (a string whose leading numbers are the
upstream release: ``"7.2.22"``, ``"2.7"``, ``"6.1.0-18-amd64"``, ``"5.3.0-0-g54eaed1d"``), so that a
cited difference (specs/differences*.toml, ``versions`` and ``fixed_in``) applies only to the
releases it was seen on.  Each probe asks the implementation, never a package database:

- the running kernel (``linux``; ``kvm``, whose MMU is the kernel's): ``uname -r``;
- glibc: ``confstr(_CS_GNU_LIBC_VERSION)``;
- a preloaded malloc library: its own version call in a preloaded interpreter (jemalloc's
  ``mallctl("version")``, mimalloc's ``mi_version()``, gperftools' ``tc_version()``);
- QEMU: ``qemu-system-x86_64 --version``; Bochs: the banner it prints at start-up.

A probe that cannot tell gives ``""`` (unknown): a versioned difference then excuses nothing.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

_PRELOAD_PROBE = r"""
import ctypes
lib = ctypes.CDLL(None)
def gperftools():
    f = lib.tc_version
    f.restype = ctypes.c_char_p
    a, b, s = ctypes.c_int(), ctypes.c_int(), ctypes.c_char_p()
    return f(ctypes.byref(a), ctypes.byref(b), ctypes.byref(s)).decode().split()[-1]
def mimalloc():
    f = lib.mi_version
    f.restype = ctypes.c_int
    v = f()
    return f"{v // 100}.{v // 10 % 10}.{v % 10}"
def jemalloc():
    p, n = ctypes.c_char_p(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_char_p))
    if lib.mallctl(b"version", ctypes.byref(p), ctypes.byref(n), None, ctypes.c_size_t(0)) == 0:
        return p.value.decode()
    return ""
for probe in (gperftools, mimalloc, jemalloc):
    try:
        print(probe())
        break
    except AttributeError:
        pass
"""


def kernel_release() -> str:
    return os.uname().release


def glibc_version() -> str:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").split()[-1]
    except (ValueError, OSError, IndexError):
        return ""


@functools.lru_cache(maxsize=None)
def preload_version(preload: str) -> str:
    """The version a preloaded malloc library reports about itself ("" if it has no version call)."""
    try:
        r = subprocess.run([sys.executable, "-c", _PRELOAD_PROBE], env=dict(os.environ, LD_PRELOAD=preload),
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    out = r.stdout.strip().splitlines()
    return out[-1] if r.returncode == 0 and out else ""


@functools.lru_cache(maxsize=None)
def program_version(argv: tuple[str, ...], pattern: str) -> str:
    """The first group of ``pattern`` in what ``argv`` prints (stdout and stderr), "" if absent."""
    try:
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(pattern, (r.stdout + r.stderr).decode("latin-1"))
    return m.group(1) if m else ""


def qemu_version(binary: str) -> str:
    return program_version((binary, "--version"), r"QEMU emulator version (\S+)")


def bochs_version(binary: str) -> str:
    # Bochs has no --version: with no configuration file and no display it prints its banner
    # ("Bochs x86 Emulator 2.7") and stops at the missing configuration
    return program_version((binary, "-n", "-q", "display_library: nogui"), r"Bochs x86 Emulator (\S+)")


__all__ = ["kernel_release", "glibc_version", "preload_version", "program_version", "qemu_version", "bochs_version"]
