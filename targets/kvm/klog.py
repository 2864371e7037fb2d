"""The kernel log while the kvm target runs: KVM's warnings are findings too."""

from __future__ import annotations

import errno as _errno
import os
import re


# --- kernel log (KVM's warnings are findings too) ------------------------------------

class KernelLog:
    """New lines of the kernel log (/dev/kmsg) that mention KVM, when the log is readable."""

    WORDS = ("kvm", "mmu", "WARNING", "BUG")
    # lines kvm-pvm prints for events the run already reports as an exit or an outcome
    # (an emulation failure, a triple fault): kept, but no finding by themselves
    ROUTINE = ("INTERNAL_ERROR in batch emul", "INTERNAL_ERROR after native exit", "triple fault delivering",
               "kvm-pvm:  D nent=", "kvm-pvm: loaded", "supports paging only in long mode",
               "trace dump vcpu", "kvm-pvm: deliver[")

    def __init__(self) -> None:
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = -1

    @property
    def readable(self) -> bool:
        return self.fd >= 0

    def new_lines(self) -> list[str]:
        out: list[str] = []
        while self.fd >= 0:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == _errno.EPIPE:      # overwritten records: go on with the next
                    continue
                break
            if not rec:
                break
            text = rec.decode("utf-8", "replace").split(";", 1)[-1].strip()
            other = re.search(r"\bpid (\d+)", text)
            if other and int(other.group(1)) != os.getpid():
                continue          # kvm-pvm names the process sometimes: another VMM's line
            if any(w in text for w in self.WORDS) and "__vm_enough_memory" not in text:
                out.append(text)
        return out
