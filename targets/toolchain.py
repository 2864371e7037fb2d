"""Where code memspec builds with the system's gcc and binutils at first use is cached: the
qemu-system and Bochs test kernel, the Bochs boot sector and floppy, the kvm guest code."""

from __future__ import annotations

import os


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "memspec")
