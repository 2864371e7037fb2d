"""The guest's machine code, from GNU as: ``guest.S`` assembled at first use and cached.

Why templates with patched immediates, not a generated ``.S`` per program: a program's calls
need immediates (addresses, values, slot addresses) and the kvm target runs thousands of calls
per second, while one ``gcc -c`` of guest.S takes 50-80 ms (measured on a loaded 2-core machine),
longer than a whole typical program's run: assembling per program would make the assembler,
not KVM, the bottleneck.  Emitting a template is a copy and a few ``struct.pack_into``.  So ``guest.S`` is assembled once, with each immediate
an undefined symbol (``VALUE``, ``ADDR``, ...): the assembler emits a relocation at every such
operand, and the relocation table gives the exact offset and width at which compile.py writes
the value.  No offset is counted by hand, and every instruction stays readable in guest.S.

``build()`` runs ``gcc -c`` (the C preprocessor supplies the layout constants as ``-D``
values from guest.py), ``objcopy -O binary`` per section and ``objdump`` for the symbols and
relocations, then caches the result under the user's cache directory, keyed by a hash of
the source and the constants (as the qemu-system test kernel is).  Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources

from memspec.errors import TargetError

from ..toolchain import cache_dir

SOURCE = "guest.S"
SECTIONS = (".harness", ".text", ".probe32")
# relocation type -> bytes the CPU reads at that offset (R_X86_64_32S is sign-extended to 64 bits)
WIDTHS = {"R_X86_64_64": 8, "R_X86_64_32": 4, "R_X86_64_32S": 4}
_PACK = {8: struct.Struct("<Q"), 4: struct.Struct("<I")}


@dataclass(frozen=True)
class Template:
    """One ``t_*`` snippet of guest.S's ``.text``: its bytes and where its named immediates go."""

    name: str
    code: bytes
    slots: dict[str, tuple[int, int]]       # operand name -> (offset in code, width in bytes)

    def __post_init__(self) -> None:
        # (name, offset, packer, mask) per immediate, ready for emit (which runs per call)
        object.__setattr__(self, "_patches", tuple(
            (name, off, _PACK[width].pack_into, (1 << 8 * width) - 1) for name, (off, width) in self.slots.items()))

    def emit(self, out: bytearray, **values: int) -> int:
        """Append the snippet to ``out`` with ``values`` in its immediates; the offset it starts at.
        Every immediate must be given (a missing or unknown one is a KeyError)."""
        if len(values) != len(self._patches):
            raise KeyError(f"{self.name} takes {sorted(self.slots)}, given {sorted(values)}")
        at = len(out)
        out += self.code
        for name, off, pack_into, mask in self._patches:
            pack_into(out, at + off, values[name] & mask)
        return at

    def offset(self, name: str) -> int:
        """Where immediate ``name`` is, from the snippet's start (to write it later)."""
        return self.slots[name][0]


@dataclass(frozen=True)
class GuestCode:
    harness: bytes                          # .harness, to be placed at guest-physical STUBS
    probe32: bytes
    symbols: dict[str, tuple[str, int]]     # label -> (section, offset)
    templates: dict[str, Template]

    def at(self, label: str, base: int) -> int:
        """The address of a label of a section placed at ``base``."""
        return base + self.symbols[label][1]


def _source() -> bytes:
    return resources.files("memspec.targets").joinpath("kvm", SOURCE).read_bytes()


def build(defines: dict[str, int], force: bool = False) -> GuestCode:
    """Assemble guest.S with ``defines`` (or read it from the cache)."""
    text = _source()
    flags = [f"-D{k}={v:#x}" for k, v in sorted(defines.items())]
    key = hashlib.sha256(text + b"\0" + " ".join(flags).encode() + b"\0" + repr(SECTIONS).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"kvm-guest-{key}.json")
    if not force and os.path.exists(path):
        try:
            with open(path) as f:
                return _load(json.load(f))
        except (OSError, ValueError, KeyError):
            pass                 # a damaged cache entry: build it again
    data = _assemble(text, flags)
    os.makedirs(cache_dir(), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="kvm-guest-", suffix=".tmp", dir=cache_dir())
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return _load(data)


def _assemble(text: bytes, flags: list[str]) -> dict:
    for tool in ("gcc", "objcopy", "objdump"):
        if shutil.which(tool) is None:
            raise TargetError(f"assembling the kvm target's guest code needs {tool}: apt-get install -y gcc binutils")
    with tempfile.TemporaryDirectory(prefix="kvm-guest-") as work:
        with open(os.path.join(work, SOURCE), "wb") as f:
            f.write(text)
        _run(["gcc", "-c", *flags, SOURCE, "-o", "guest.o"], work)
        sections = {}
        for sec in SECTIONS:
            out = sec.strip(".") + ".bin"
            _run(["objcopy", "-O", "binary", "-j", sec, "guest.o", out], work)
            with open(os.path.join(work, out), "rb") as f:
                sections[sec] = f.read().hex()
        symbols = _symbols(_run(["objdump", "-t", "guest.o"], work))
        relocs = _relocations(_run(["objdump", "-r", "-j", ".text", "guest.o"], work))
    return {"sections": sections, "symbols": symbols, "relocs": relocs}


def _run(cmd: list[str], cwd: str) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TargetError(f"assembling the kvm guest code failed: {' '.join(cmd)}\n{r.stderr.strip()}")
    return r.stdout


def _symbols(table: str) -> dict[str, list]:
    """``objdump -t``: VALUE FLAGS SECTION SIZE NAME; the labels of our sections."""
    out = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-3] in SECTIONS and parts[-1] not in SECTIONS:
            out[parts[-1]] = [parts[-3], int(parts[0], 16)]
    return out


def _relocations(table: str) -> list[list]:
    """``objdump -r``: OFFSET TYPE SYMBOL, one per immediate left to compile.py."""
    out = []
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith("R_X86_64"):
            if parts[1] not in WIDTHS:
                raise TargetError(f"guest.S: an operand with relocation {parts[1]} ({parts[2]}): "
                                  "only absolute 64- and 32-bit immediates can be written")
            out.append([int(parts[0], 16), WIDTHS[parts[1]], parts[2]])
    return out


def _load(data: dict) -> GuestCode:
    sections = {k: bytes.fromhex(v) for k, v in data["sections"].items()}
    symbols = {k: (s, off) for k, (s, off) in data["symbols"].items()}
    text = sections[".text"]
    # a template runs from its label to the next label of .text (the last to the section's end)
    starts = sorted((off, name) for name, (s, off) in symbols.items() if s == ".text" and name.startswith("t_"))
    templates = {}
    for (start, name), end in zip(starts, [o for o, _ in starts[1:]] + [len(text)]):
        slots: dict[str, tuple[int, int]] = {}
        for off, width, sym in data["relocs"]:
            if start <= off < end:
                if sym in slots:
                    raise TargetError(f"guest.S: {name} uses {sym} twice; give each immediate its own name")
                slots[sym] = (off - start, width)
        templates[name[2:]] = Template(name[2:], text[start:end], slots)
    return GuestCode(sections[".harness"], sections[".probe32"], symbols, templates)
