"""The test kernel with a program built in: what ``memspec repro`` writes for the hw and virt layers.

The program's calls are the serial protocol's command lines (``testkernel_wire.encode``), compiled
into the kernel as a table (``builtin.h``, selected by ``-DMEMSPEC_BUILTIN``) with, for each call,
the answers the model allows: a kind letter and hex fields, each compared under a mask (``Pattern``).
The kernel runs the table instead of reading its serial port, prints the first answer that is none
of them (the call, the clause, expected and observed) and a final ``VERDICT:`` line, and ends
QEMU through isa-debug-exit (port 0xf4) and Bochs through its shutdown port
(testkernel/kernel.c, ``run_builtin``).  The serial-driven kernel is unchanged without the define.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from importlib import resources


from .qemu_system import CFLAGS, DEFAULT_CPU, SOURCES
from .toolchain import building, need_tools, run_steps, testkernel_steps

U64 = (1 << 64) - 1
# QEMU's isa-debug-exit turns the kernel's code c into exit status 2c+1
EXIT_STATUS = {"CONFORMS": 1, "DIVERGES": 3, "CRASH": 5}


@dataclass
class Pattern:
    """One allowed answer: its kind letter and hex fields, a field compared under its mask."""

    kind: str
    values: tuple[int, ...] = ()
    masks: tuple[int, ...] = ()


@dataclass
class BuiltinCall:
    line: str                     # the command line
    text: str                     # "call N: the call as written"
    clause: str
    citation: str
    expected: str
    patterns: list[Pattern] | None = field(default=None)    # None: any answer (the model cannot decide)
    before: str = ""              # printed before the call runs


def parse_reply(reply: str) -> tuple[str, list[int]] | None:
    """A reply's kind letter and hex fields (None for a reply with words, ``e why``)."""
    parts = reply.split()
    if not parts:
        return None
    try:
        return parts[0], [int(p, 16) for p in parts[1:]]
    except ValueError:
        return None


def matches(reply: str, p: Pattern) -> bool:
    """What the kernel's ``bi_match`` does, for the host's own check."""
    if not reply or reply.split()[0] != p.kind:
        return False
    if not p.values:
        return True
    got = parse_reply(reply)
    if got is None or len(got[1]) != len(p.values):
        return False
    return all(not ((a ^ v) & m) for a, v, m in zip(got[1], p.values, p.masks))


def _c(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\?' else f"\\{ord(c) & 0xFF:03o}" for c in s) + '"'


def header(name: str, calls: list[BuiltinCall]) -> str:
    out = ["/* written by memspec repro: the built-in program of the test kernel (kernel.c, run_builtin) */",
           f"#define BI_NAME {_c(name)}"]
    for k, c in enumerate(calls):
        if not c.patterns:
            continue
        rows = []
        for p in c.patterns:
            v = ", ".join(f"0x{x & U64:x}UL" for x in p.values) or "0"
            m = ", ".join(f"0x{x & U64:x}UL" for x in p.masks) or "0"
            rows.append(f"    {{'{p.kind}', {len(p.values)}, {{{v}}}, {{{m}}}}},")
        out.append(f"static const struct bi_pat bi_pats_{k}[] = {{\n" + "\n".join(rows) + "\n};")
    out.append("static const struct bi_call bi_calls[] = {")
    for k, c in enumerate(calls):
        n = -1 if c.patterns is None else len(c.patterns)
        pats = f"bi_pats_{k}" if c.patterns else "0"
        out.append(f"    {{{_c(c.line)}, {_c(c.text)}, {_c(c.clause)},\n     {_c(c.citation)},\n"
                   f"     {_c(c.expected)}, {_c(c.before)}, {n}, {pats}}},")
    out.append("};")
    return "\n".join(out) + "\n"


def build_builtin(name: str, calls: list[BuiltinCall], out_dir: str) -> str:
    """Build the kernel with ``calls`` built in; writes ``kernel.bin`` (and ``builtin.h``) into
    ``out_dir`` and returns the image's path.  Needs gcc and binutils, as the target's build."""
    need_tools(("gcc", "ld", "objcopy"), "the test kernel", "apt-get install -y gcc binutils")
    os.makedirs(out_dir, exist_ok=True)
    h = header(name, calls)
    with open(os.path.join(out_dir, "builtin.h"), "w", encoding="utf-8") as f:
        f.write(h)
    root = resources.files("memspec.targets").joinpath("testkernel")
    files = {src: root.joinpath(src).read_bytes() for src in SOURCES}
    files["builtin.h"] = h.encode()
    with building(out_dir, files, prefix="testkernel-repro-", inside_cache=False) as work:
        run_steps(testkernel_steps(list(CFLAGS) + ["-DMEMSPEC_BUILTIN"]), work, "the test kernel")
        image = os.path.join(out_dir, "kernel.bin")
        shutil.copyfile(os.path.join(work, "kernel.bin"), image)
    return image


def qemu_command(image: str = "kernel.bin", cpu: str = DEFAULT_CPU, memory_mib: int = 32) -> list[str]:
    """Headless, COM1 on stdout, ended by the kernel through isa-debug-exit."""
    return ["qemu-system-x86_64", "-accel", "tcg", "-cpu", cpu, "-m", str(memory_mib), "-nodefaults",
            "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", image]


BOCHSRC = """\
# written by memspec repro: Bochs with the test kernel's floppy; COM1 goes to serial.txt
megs: {megs}
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
floppya: 1_44={image}, status=inserted, write_protected=1
boot: floppy
display_library: term
log: bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
mouse: enabled=0
speaker: enabled=0
com1: enabled=1, mode=file, dev=serial.txt
cpu: model={model}, count=1, reset_on_triple_fault=0, ignore_bad_msrs=0
"""


def bochs_files(kernel_image: str, out_dir: str, model: str, memory_mib: int = 32) -> dict[str, str]:
    """The floppy image, the bochsrc and the debugger's rc (continue, quit) in ``out_dir``."""
    from .bochs import floppy_image
    img = os.path.join(out_dir, "floppy.img")
    shutil.copyfile(floppy_image(kernel_image, memory_mib), img)
    rc = os.path.join(out_dir, "bochsrc")
    with open(rc, "w", encoding="utf-8") as f:
        f.write(BOCHSRC.format(megs=memory_mib, image="floppy.img", model=model))
    cont = os.path.join(out_dir, "cont.rc")
    with open(cont, "w", encoding="utf-8") as f:
        f.write("c\nquit\n")
    return {"floppy": img, "bochsrc": rc, "rc": cont}


BOCHS_COMMAND = "rm -f serial.txt; TERM=dumb timeout 600 bochs -q -f bochsrc -rc cont.rc >screen.txt 2>&1; cat serial.txt"


__all__ = ["Pattern", "BuiltinCall", "header", "build_builtin", "qemu_command", "bochs_files", "matches",
           "parse_reply", "BOCHS_COMMAND", "EXIT_STATUS"]
