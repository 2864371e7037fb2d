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
    # an optional part of a layer (e.g. "segmentation"): only targets that declare the
    # capability run these calls; for the others programs using them are not applicable
    capability: str = ""


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
register(CallSpec("mremap", "os", (P("old_addr"), P("old_size"), P("new_size"), P("flags", "mremap", 0),
                                   P("new_addr", "int", 0)), returns="addr", doc="mremap(2): move or resize a mapping"))
register(CallSpec("madvise", "os", (P("addr"), P("length"), P("advice", "madv")), doc="madvise(2)"))
register(CallSpec("msync", "os", (P("addr"), P("length"), P("flags", "ms")), doc="msync(2)"))
register(CallSpec("mincore", "os", (P("addr"), P("length")),
                  doc="mincore(2): returns the residency vector as one number (bit i: page i resident)"))
register(CallSpec("mlock", "os", (P("addr"), P("length")), doc="mlock(2)"))
register(CallSpec("mlock2", "os", (P("addr"), P("length"), P("flags", "mlock", 0)), doc="mlock2(2)"))
register(CallSpec("munlock", "os", (P("addr"), P("length")), doc="munlock(2)"))
register(CallSpec("mseal", "os", (P("addr"), P("length"), P("flags", "int", 0)),
                  doc="mseal(2): seal the mappings of the range (Linux 6.10+)"))
register(CallSpec("mlockall", "os", (P("flags", "mcl"),), doc="mlockall(2)"))
register(CallSpec("munlockall", "os", (), doc="munlockall(2)"))
register(CallSpec("set_memlock_limit", "os", (P("soft"),),
                  doc="setrlimit(RLIMIT_MEMLOCK) with this soft limit in bytes (the hard limit stays)"))
register(CallSpec("set_fsize_limit", "os", (P("soft"),),
                  doc="setrlimit(RLIMIT_FSIZE) with this soft limit in bytes (the hard limit stays; a negative "
                      "value is RLIM_INFINITY); the harness ignores SIGXFSZ, so a write past it fails with EFBIG"))
register(CallSpec("drop_privileges", "os", (), not_main=True,
                  doc="setresuid/setresgid to an unprivileged id (65534): this process loses CAP_IPC_LOCK "
                      "and file-mode bypass; forked processes only, since it cannot be undone"))
register(CallSpec("shm_open", "os", (P("name", "str"), P("oflag", "oflags"), P("mode", "int", 0x180)),
                  doc="shm_open(3): returns a file descriptor"))
register(CallSpec("shm_unlink", "os", (P("name", "str"),), doc="shm_unlink(3)"))
register(CallSpec("memfd_create", "os", (P("name", "str"), P("flags", "int", 0)),
                  doc="memfd_create(2): an anonymous file; returns a file descriptor"))
register(CallSpec("open_file", "os", (P("size"), P("oflag", "oflags", 2)),
                  doc="a fresh regular file of size bytes (zero), in the target's private directory, "
                      "opened with oflag's access mode and O_APPEND (its other bits are ignored); "
                      "returns a file descriptor"))
register(CallSpec("pipe", "os", (), doc="pipe(2): returns the read end (a file that cannot be mapped)"))
register(CallSpec("ftruncate", "os", (P("fd"), P("length")), doc="ftruncate(2)"))
register(CallSpec("read", "os", (P("fd"),),
                  doc="read(2) of one byte at the descriptor's file offset (which advances): the byte's value, "
                      "or 256 when read returns 0 (end of file)"))
register(CallSpec("write", "os", (P("fd"), P("value", "int", 0x41), P("count", "int", 1)),
                  doc="write(2) of count bytes of value at the descriptor's file offset (which advances); "
                      "returns the number of bytes written"))
register(CallSpec("pread", "os", (P("fd"), P("offset")),
                  doc="pread(2) of one byte at offset: its value, or 256 when pread returns 0 (end of file)"))
register(CallSpec("pwrite", "os", (P("fd"), P("offset"), P("value", "int", 0x41), P("count", "int", 1)),
                  doc="pwrite(2) of count bytes of value at offset; returns the number of bytes written"))
register(CallSpec("lseek", "os", (P("fd"), P("offset"), P("whence", "seek", 0)),
                  doc="lseek(2): returns the new file offset"))
register(CallSpec("close", "os", (P("fd"),), doc="close(2)"))
register(CallSpec("pfn_of", "os", (P("addr"),),
                  doc="the frame number mapping addr now (/proc/self/pagemap), 0 if none; needs root"))
register(CallSpec("thp_mapped", "os", (P("addr"),), doc="1 if addr is mapped by a transparent huge page, else 0"))
register(CallSpec("minflt", "os", (), doc="minor faults of this process so far, getrusage(RUSAGE_SELF).ru_minflt"))
register(CallSpec("majflt", "os", (), doc="major faults of this process so far, getrusage(RUSAGE_SELF).ru_majflt"))
register(CallSpec("get_node", "os", (P("addr"),), doc="the NUMA node of the page at addr (move_pages query)"))
register(CallSpec("mbind", "os", (P("addr"), P("length"), P("mode", "mpol"), P("nodemask", "int", 1)),
                  doc="mbind(2) with a one-word node mask"))
register(CallSpec("map_pages", "os", (P("addr"), P("n"), P("prot", "prot")),
                  doc="n one-page private anonymous mappings, at addr, addr + 2 pages, addr + 4 pages, ... (every "
                      "other page, so that no two merge: each is a VMA of its own), made one by one with "
                      "mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE) and stopping at the first that fails; "
                      "returns the number mapped, with the failing mmap's errno beside it when one failed "
                      "(the way to reach vm.max_map_count); n above MAP_PAGES_MAX is EINVAL, nothing mapped"))
# Memory-pressure events: only targets that model pressure (the model) implement them.
register(CallSpec("memory_limit", "os", (P("ram_pages"), P("swap_pages")), main_only=True,
                  doc="pressure event: the machine has this many frames of RAM and slots of swap"))
register(CallSpec("set_swappiness", "os", (P("value"),), main_only=True, doc="pressure event: vm.swappiness"))
register(CallSpec("reclaim", "os", (P("pages"),), main_only=True,
                  doc="pressure event: reclaim up to this many frames (kswapd); returns the number freed"))
register(CallSpec("tick", "os", (), doc="pressure event: one unit of this process's virtual time passes"))
register(CallSpec("wss", "os", (P("tau"),), doc="|W(t, tau)|: pages this process referenced in its last tau time units"))
register(CallSpec("oom", "os", (), main_only=True,
                  doc="pressure event: invoke the OOM killer once; returns the victim's process id"))
register(CallSpec("khugepaged", "os", (), doc="pressure event: one khugepaged pass over this process; returns collapses"))


def layer_calls(layer: str) -> list[CallSpec]:
    return [c for c in CALLS.values() if c.layer == layer]


def capability_calls(capability: str) -> frozenset[str]:
    """The calls that make up one capability (e.g. "segmentation")."""
    return frozenset(c.name for c in CALLS.values() if c.capability == capability)


def gated_calls(capabilities: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    """The calls that need a capability not in ``capabilities`` (not applicable to such a target)."""
    return frozenset(c.name for c in CALLS.values() if c.capability and c.capability not in capabilities)


# Other layers declare their calls in their own modules (memspec/calls_<layer>.py),
# imported here so that every program parser knows every call.
from . import calls_phys, calls_hw, calls_virt  # noqa: E402,F401
