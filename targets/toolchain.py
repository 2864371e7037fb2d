"""Code memspec builds with the system's gcc and binutils at first use, and where it is cached:
the qemu-system and Bochs test kernel, the Bochs boot sector and floppy, the kvm guest code, the
native agent and the uml target's init.

Every build runs in a fresh folder inside the cache, and only a finished build is published,
by renaming that folder to its content-addressed name (``building``): an interrupted build or
a failed step leaves nothing behind, and two processes building the same thing at once both
end with a whole copy."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from typing import Iterator

from memspec.errors import TargetError


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "memspec")


@contextmanager
def building(out_dir: str, files: dict[str, bytes], prefix: str, inside_cache: bool = True) -> Iterator[str]:
    """A fresh folder holding ``files`` to build in; when the block ends normally it becomes
    ``out_dir`` (atomically: a rename), when it raises it is removed.  With ``inside_cache``
    false the folder is a plain temporary one and the caller copies what it needs out of it
    (``out_dir`` is then not touched)."""
    if inside_cache:
        os.makedirs(cache_dir(), exist_ok=True)
    work = tempfile.mkdtemp(prefix=prefix, dir=cache_dir() if inside_cache else None)
    try:
        for name, data in files.items():
            with open(os.path.join(work, name), "wb") as f:
                f.write(data)
        yield work
        if inside_cache:
            try:
                os.replace(work, out_dir)
            except OSError:         # built concurrently by another process: theirs is as good
                pass
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_steps(steps: list[list[str]], cwd: str, what: str, hint: str = "") -> None:
    """Run each command in ``cwd``; the first that fails raises a ``TargetError`` naming
    ``what`` was being built, the command and its standard error (and ``hint``, how to get
    what is missing)."""
    for cmd in steps:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            raise TargetError(f"building {what} failed{hint}:\n{shlex.join(cmd)}\n{r.stderr.strip()}")


def need_tools(tools: tuple[str, ...], what: str, hint: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise TargetError(f"building {what} needs {tool}: {hint}")


def testkernel_steps(flags: list[str]) -> list[list[str]]:
    """Compile, link and flatten the test kernel (entry.S, kernel.c, kernel.ld) into kernel.bin."""
    return [
        ["gcc", *flags, "-c", "entry.S", "-o", "entry.o"],
        ["gcc", *flags, "-c", "kernel.c", "-o", "kernel.o"],
        ["ld", "-m", "elf_x86_64", "-nostdlib", "-T", "kernel.ld", "-z", "max-page-size=0x1000",
         "--no-warn-rwx-segments", "-o", "kernel.elf", "entry.o", "kernel.o"],
        ["objcopy", "-O", "binary", "kernel.elf", "kernel.bin"],
    ]
