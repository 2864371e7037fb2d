"""os-layer codec: bytes -> a well-typed program of mmap/munmap/mprotect/accesses/fork.

Addresses come mostly from earlier results (``a+0x1000``) and from the sandbox
window (where hints are honoured and MAP_FIXED is safe on every target); sizes
sit near page boundaries; flags come from the combinations the clauses name.
``encode`` is the inverse for text: ``decode(encode(p)) == p``, so a text
reproducer seeds a corpus as it is.
"""

from __future__ import annotations

from memspec.consts import SANDBOX_WINDOW
from memspec.program import Call, Flags, Int, Program, ProgramError, Ref, format_program, parse

from .bytes import ByteReader

TEXT_MAGIC = b"MST1\n"
PAGE = 4096
MAX_CALLS = 24

_PROTS = [("PROT_READ", "PROT_WRITE"), ("PROT_READ",), ("PROT_NONE",), ("PROT_WRITE",), ("PROT_EXEC",),
          ("PROT_READ", "PROT_EXEC"), ("PROT_READ", "PROT_WRITE", "PROT_EXEC")]
_TYPES = [(60, ("MAP_PRIVATE",)), (30, ("MAP_SHARED",)), (4, ()), (3, ("MAP_SHARED_VALIDATE",)), (3, ("MAP_32BIT", "MAP_PRIVATE"))]
_EXTRA = [(70, ()), (12, ("MAP_FIXED",)), (8, ("MAP_FIXED_NOREPLACE",)), (4, ("MAP_POPULATE",)),
          (3, ("MAP_NORESERVE",)), (3, ("MAP_LOCKED",))]


def _hex(v: int) -> Int:
    return Int(v, hex=abs(v) >= 4096)


class _Builder:
    def __init__(self, r: ByteReader, calls: frozenset[str] | None):
        self.r = r
        self.allowed = calls
        self.calls: list[Call] = []
        # (name, pages, placed in the window) of mmaps; around a mapping the kernel placed
        # outside the window lives the runtime's own memory, so stay inside those
        self.bases: list[tuple[str, int, bool]] = []
        self.procs: list[str] = []
        self.n_names = 0
        self.n_procs = 1

    def ok(self, name: str) -> bool:
        return self.allowed is None or name in self.allowed

    def window_addr(self) -> int:
        return SANDBOX_WINDOW[0] + PAGE * self.r.int(0, 63)

    def name(self) -> str:
        self.n_names += 1
        return "abcdefghijklmnopqrstuvwxyz"[(self.n_names - 1) % 26] + ("" if self.n_names <= 26 else str(self.n_names))

    def addr_arg(self) -> Int | Ref:
        return self.addr_and_room()[0]

    def addr_and_room(self) -> tuple[Int | Ref, int | None]:
        """An address, and how many pages from it stay inside memory the program may touch."""
        r = self.r
        if self.bases and r.chance(80):
            base, pages, in_window = r.choice(self.bases)
            page = r.int(-1, pages) if in_window else r.int(0, pages - 1)
            off = page * PAGE
            if r.chance(15):
                off += r.choice([1, 7, 2048, PAGE - 1])
            return (Ref(base, off) if off else Ref(base)), (None if in_window else pages - page)
        return _hex(self.window_addr() + (r.choice([0, 1, 100]) if r.chance(10) else 0)), None

    def length(self, room: int | None = None) -> Int:
        r = self.r
        if room is not None:
            return _hex(PAGE * r.int(1, max(room, 1)) - (r.choice([0, 0, 0, 1, 100])))
        kind = r.weighted([(80, "pages"), (6, "zero"), (8, "odd"), (3, "huge"), (3, "big")])
        if kind == "pages":
            return _hex(PAGE * r.int(1, 8))
        if kind == "zero":
            return Int(0)
        if kind == "odd":
            return _hex(PAGE * r.int(0, 4) + r.choice([1, 100, PAGE - 1]))
        if kind == "huge":
            return _hex(r.choice([1 << 47, (1 << 64) - PAGE, 1 << 63]))
        return _hex(r.choice([1 << 21, 1 << 22]))

    def proc_prefix(self) -> str | None:
        if self.procs and self.r.chance(25):
            return self.r.choice(self.procs)
        return None

    def step(self) -> None:
        r = self.r
        table = [(28, "mmap"), (10, "munmap"), (14, "mprotect"), (18, "load"), (18, "store"), (3, "fetch"),
                 (4, "fork"), (2, "exit")]
        what = r.weighted([(w, n) for w, n in table if self.ok(n)])
        proc = self.proc_prefix()
        if what == "mmap":
            hint = r.weighted([(20, "null"), (55, "window"), (15, "near"), (10, "odd")])
            if hint == "null":
                addr: Int | Ref | Flags = Flags(("NULL",))
            elif hint == "window":
                addr = _hex(self.window_addr())
            elif hint == "near":
                addr, room = self.addr_and_room()
                if room is not None:
                    addr = _hex(self.window_addr())
            else:
                addr = _hex(self.window_addr() + r.choice([1, 100, 2048]))
            length = self.length()
            prot = Flags(r.choice(_PROTS))
            mtype = r.weighted(_TYPES)
            extra = r.weighted(_EXTRA)
            if extra and hint == "null":
                addr = _hex(self.window_addr())
            flags = Flags(mtype + extra + ("MAP_ANONYMOUS",)) if not r.chance(3) else Flags(mtype or ("MAP_PRIVATE",))
            offset = Int(0) if r.chance(92) else _hex(r.choice([1, PAGE, 100]))
            fd = Int(-1)
            res = self.name()
            self.calls.append(Call("mmap", (addr, length, prot, flags, fd, offset), res, proc))
            pages = max(1, min(16, (length.value + PAGE - 1) // PAGE)) if length.value < (1 << 30) else 1
            self.bases.append((res, pages, not (hint == "null" and not extra and "MAP_32BIT" not in mtype)
                               and "MAP_32BIT" not in mtype))
        elif what == "munmap":
            addr, room = self.addr_and_room()
            self.calls.append(Call("munmap", (addr, self.length(room)), None, proc))
        elif what == "mprotect":
            prot = Flags(r.choice(_PROTS)) if r.chance(93) else r.choice(
                [Flags(("PROT_GROWSDOWN", "PROT_READ")), Flags(("PROT_GROWSDOWN", "PROT_GROWSUP")), _hex(0x10), Flags(("PROT_SEM", "PROT_READ"))])
            addr, room = self.addr_and_room()
            self.calls.append(Call("mprotect", (addr, self.length(room), prot), None, proc))
        elif what == "load":
            self.calls.append(Call("load", (self.addr_arg(),), None, proc))
        elif what == "store":
            self.calls.append(Call("store", (self.addr_arg(), _hex(r.int(0, 255))), None, proc))
        elif what == "fetch":
            self.calls.append(Call("fetch", (self.addr_arg(),), None, proc))
        elif what == "fork":
            if len(self.procs) < 2:
                self.n_procs += 1
                name = f"p{self.n_procs}"
                self.calls.append(Call("fork", (), name, None))
                self.procs.append(name)
        elif what == "exit":
            if self.procs:
                p = r.choice(self.procs)
                self.procs.remove(p)
                self.calls.append(Call("exit", (), None, p))


def decode(data: bytes, calls: frozenset[str] | None = None) -> Program:
    """Bytes -> program (total: every input gives a valid program, possibly empty)."""
    if data.startswith(TEXT_MAGIC):
        try:
            return parse(data[len(TEXT_MAGIC):].decode("utf-8", "replace"))
        except ProgramError:
            data = data[len(TEXT_MAGIC):]
    r = ByteReader(data)
    b = _Builder(r, calls)
    n = r.int(1, MAX_CALLS)
    while len(b.calls) < n and not r.exhausted:
        b.step()
    return Program(tuple(b.calls))


def encode(program: Program) -> bytes:
    """Program -> bytes that ``decode`` maps back to the same program."""
    return TEXT_MAGIC + format_program(program).encode()
