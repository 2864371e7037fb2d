"""Sampling the layouts of freshly exec'd processes (fork alone keeps the layout).

Each sample execs a small interpreter that prints its own /proc/self/maps; the
region bases are read from it: the mmap base (the top of the highest mapping
below the stack that is not the vDSO), the stack top, the brk start, the vDSO.
``no_randomize`` sets personality(ADDR_NO_RANDOMIZE) in the child before exec.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

ADDR_NO_RANDOMIZE = 0x0040000

_PRINT_MAPS = "import sys; sys.stdout.write(open('/proc/self/maps').read())"


def config() -> dict[str, int]:
    def read(path: str, default: int) -> int:
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return default
    return {"randomize_va_space": read("/proc/sys/kernel/randomize_va_space", 2),
            "mmap_rnd_bits": read("/proc/sys/vm/mmap_rnd_bits", 28)}


def parse_layout(maps: str) -> dict[str, int]:
    rows = []
    for line in maps.splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        rows.append((lo, hi, parts[5] if len(parts) > 5 else ""))
    out: dict[str, int] = {}
    stack = [r for r in rows if r[2] == "[stack]"]
    if stack:
        out["stack"] = stack[0][1]
    heap = [r for r in rows if r[2] == "[heap]"]
    if heap:
        out["brk"] = heap[0][0]
    vdso = [r for r in rows if r[2] == "[vdso]"]
    if vdso:
        out["vdso"] = vdso[0][0]
    below = [r for r in rows if r[2] not in ("[stack]", "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]")
             and (not stack or r[1] <= stack[0][0]) and r[0] < (1 << 47)]
    if below:
        out["mmap"] = max(r[1] for r in below)
    return out


def _no_randomize() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality(ADDR_NO_RANDOMIZE)


def sample_layouts(n: int, no_randomize: bool = False) -> list[dict[str, int]]:
    out = []
    for _ in range(n):
        r = subprocess.run([sys.executable, "-S", "-c", _PRINT_MAPS], capture_output=True, text=True,
                           preexec_fn=_no_randomize if no_randomize else None, timeout=30,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"})
        if r.returncode == 0:
            out.append(parse_layout(r.stdout))
    return out
