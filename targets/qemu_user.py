"""Target ``qemu-user``: QEMU's Linux user-mode emulation, judged through the native agent.

The agent (``agent/agent.c``, static) runs under ``qemu-x86_64``, which reimplements mmap,
munmap, mprotect, mremap, madvise and friends in user space (QEMU's linux-user/mmap.c and
syscall.c) on top of the host kernel.  Everything the model needs about that system is
probed inside it, by the agent in its hello: the calls whose system call QEMU lacks (ENOSYS:
not applicable, never failed), the top of the guest address space, the page size, whether
an execute-only page is readable, the mappings of the agent's own process.  The machine's
own facts (RAM, swap, THP, NUMA nodes, sysctls) come from the host as for ``linux``.

Known differences from the kernel, with their cause in QEMU's source, are cited in
``specs/differences-qemu-user.toml`` and written up in docs/findings/qemu-user.md.
"""

from __future__ import annotations

import shutil
from typing import Any

from memspec.errors import TargetError

from .agent import AgentTarget
from .versions import program_version

QEMU_USER = "qemu-x86_64"
APT_HINT = "apt-get install -y qemu-user"


def find_qemu_user(binary: str = QEMU_USER) -> str:
    path = shutil.which(binary)
    if path is None:
        raise TargetError(f"the qemu-user target needs {binary} (Debian: {APT_HINT})")
    return path


class QemuUserTarget(AgentTarget):
    label = "qemu-user"

    def __init__(self, timeout: float = 10.0, defines: tuple[str, ...] = (), **options: Any):
        self.binary = find_qemu_user()
        super().__init__(timeout=timeout, defines=defines, prefix=(self.binary,), **options)

    def facts(self) -> dict[str, Any]:
        # the version the differences name is QEMU's ("qemu-x86_64 version 7.2.22 (Debian ...)");
        # "kernel" stays the release QEMU's uname passes through, which the model's rules read
        version = program_version((self.binary, "--version"), r"qemu-x86_64 version (\S+)")
        return dict(super().facts(), impl_version=version)
