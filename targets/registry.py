"""Target names -> adapters.  ``make_target("cmd:./impl --flag")`` etc.

Names: ``model``, ``linux`` (the native agent; a Python child without gcc), ``linux-py``, ``linux-agent``, ``qemu-user``, ``uml``, ``linux-guest``, ``qemu``, ``qemu-system``, ``kvm``, ``bochs`` (and
``bochs:CPU_MODEL``), ``libc`` (= ``malloc:glibc``), ``malloc:NAME``, ``cmd:PROGRAM`` (the rest of the argument is one command line).
Adapters are imported on first use, so an optional target's missing package
only matters when that target is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from memspec.errors import UsageError

from .base import Target

TARGETS: dict[str, str] = {
    "model": "memspec.targets.model:ModelTarget",
    "linux": "memspec.targets.agent:linux_target",
    "linux-py": "memspec.targets.linux:python_child_target",
    "linux-agent": "memspec.targets.agent:LinuxAgentTarget",
    "qemu-user": "memspec.targets.qemu_user:QemuUserTarget",
    "uml": "memspec.targets.uml:UmlTarget",
    "linux-guest": "memspec.targets.linux_guest:LinuxGuestTarget",
    "qemu": "memspec.targets.qemu:QemuTarget",
    "qemu-system": "memspec.targets.qemu_system:QemuSystemTarget",
    "kvm": "memspec.targets.kvm:KvmTarget",
    "bochs": "memspec.targets.bochs:BochsTarget",
    "libc": "memspec.targets.libc:LibcTarget",
}

# Prefixed families: "prefix:" -> factory taking the rest of the argument.
FAMILIES: dict[str, str] = {
    "cmd": "memspec.targets.protocol:ProtocolTarget",
    "malloc": "memspec.targets.libc:malloc_target",
    "py": "memspec.targets.pyload:load_target",
    "bochs": "memspec.targets.bochs:bochs_target",
}


def _check_registered() -> None:
    """Every registered adapter's module exists (found without importing it, so that an optional
    target's missing package still only matters when that target is asked for): a misspelt
    registration is an error at import, not at the first run of that target."""
    for name, where in [*TARGETS.items(), *((f"{p}:", w) for p, w in FAMILIES.items())]:
        mod, sep, attr = where.partition(":")
        if not sep or not attr.isidentifier():
            raise ImportError(f"target {name!r} is registered as {where!r}, not 'module:attribute'")
        if importlib.util.find_spec(mod) is None:
            raise ImportError(f"target {name!r} is registered in module {mod!r}, which does not exist")


_check_registered()


def _load(where: str) -> Any:
    mod, attr = where.split(":")
    try:
        return getattr(importlib.import_module(mod), attr)
    except AttributeError:
        raise ImportError(f"{mod} has no {attr!r}: the target registry names something that is not there") from None


def make_target(spec: str, **options: Any) -> Target:
    if ":" in spec:
        prefix, rest = spec.split(":", 1)
        if prefix in FAMILIES:
            if not rest.strip():
                raise UsageError(f"target {spec!r} needs something after '{prefix}:' (e.g. cmd:./my_impl)")
            return _load(FAMILIES[prefix])(rest, **options)
    if spec not in TARGETS:
        known = ", ".join(sorted(TARGETS) + [f"{p}:…" for p in FAMILIES])
        raise UsageError(f"unknown target {spec!r}; known targets: {known}")
    try:
        cls = _load(TARGETS[spec])
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] == "memspec":
            raise                  # memspec's own module missing: a bug, never "install an extra"
        raise UsageError(f"target {spec!r} is not available: {e}. Install the package {e.name!r} into this "
                         "Python (from a memspec clone, pip install -e '.[dev]' installs every optional one)") from None
    return cls(**options)
