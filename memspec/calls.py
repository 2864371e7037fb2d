"""The calls a program may make, with their parameters: one table for all layers.

The parser and validator read this table; so do the protocol, the generators and
the printer.  A call's parameters are positional (as in C); the parser also
accepts ``name=value`` and fills trailing defaults, so that the printed form of
a parsed program is canonical.

Parameter kinds:
  ``int``    an integer expression: a literal, a named result (``a``, ``a+4096``)
             or constants of any group joined by ``|``
  ``prot``/``map``/… an integer whose constants should come from that group
  ``str``    a double-quoted string (shm names, paths)
"""

from __future__ import annotations

from dataclasses import dataclass, field

_NO_DEFAULT = object()


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str = "int"
    default: object = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass(frozen=True, slots=True)
class CallSpec:
    name: str
    layer: str
    params: tuple[Param, ...]
    # what the call's result is: "value" (a number), "addr" (an address usable
    # as a base for later arithmetic), "proc" (a process handle), "none".
    returns: str = "value"
    doc: str = ""
    # calls that may only run in the main process (or only in others)
    main_only: bool = False
    not_main: bool = False
    aliases: tuple[str, ...] = field(default=())


CALLS: dict[str, CallSpec] = {}

LAYERS = ("phys", "hw", "os", "virt")


def register(spec: CallSpec) -> CallSpec:
    if spec.layer not in LAYERS:
        raise ValueError(f"unknown layer {spec.layer!r}")
    if spec.name in CALLS:
        raise ValueError(f"call {spec.name!r} registered twice")
    CALLS[spec.name] = spec
    return spec


P = Param

# --- os layer: the POSIX memory calls and memory accesses -------------------
register(CallSpec("mmap", "os", (P("addr", "int", 0), P("length"), P("prot", "prot"),
                                 P("flags", "map"), P("fd", "int", -1), P("offset", "int", 0)),
                  returns="addr", doc="mmap(2): map pages; returns the address"))
register(CallSpec("munmap", "os", (P("addr"), P("length")), doc="munmap(2)"))
register(CallSpec("mprotect", "os", (P("addr"), P("length"), P("prot", "prot")), doc="mprotect(2)"))
register(CallSpec("load", "os", (P("addr"),), doc="read one byte at addr; value or a signal"))
register(CallSpec("store", "os", (P("addr"), P("value", "int", 0x41)), returns="none",
                  doc="write one byte at addr; ok or a signal"))
register(CallSpec("fetch", "os", (P("addr"),), returns="none",
                  doc="execute at addr: ok if the instruction fetch is allowed, else a signal"))
register(CallSpec("fork", "os", (), returns="proc", doc="fork(2): returns a process handle"))
register(CallSpec("exit", "os", (), returns="none", not_main=True, doc="_exit(2) of a forked process"))


def layer_calls(layer: str) -> list[CallSpec]:
    return [c for c in CALLS.values() if c.layer == layer]


# Other layers declare their calls in their own modules (memspec/calls_<layer>.py),
# imported here so that every program parser knows every call.
from . import calls_phys, calls_hw, calls_virt  # noqa: E402,F401
