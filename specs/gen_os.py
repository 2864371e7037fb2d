"""The os layer's generator: a well-typed multi-process program of the os layer's calls:
mmap (anonymous and of files), munmap, mprotect, mremap, madvise, msync, mincore, the
mlock family, files and shared memory, accesses, fork/exit, observations (frames,
fault counts) and -- for targets that implement them -- memory-pressure events.

Addresses come mostly from earlier results (``a+0x1000``) and from the sandbox
window (where hints are honoured and MAP_FIXED is safe on every target); sizes
sit near page boundaries; flags come from the combinations the clauses name.

Every decision is drawn from a ``Chooser`` (``specs/choose.py``): fuzzer bytes drive it in the
codec (``fuzz/codec_os.py``), Hypothesis draws in the state machine (``specs/machine_os.py``),
so both generate from the one set of vocabularies below.
"""

from __future__ import annotations

from typing import Any

from memspec.consts import SANDBOX_WINDOW
from memspec.program import Call, Flags, Int, Program, Ref, Str

from .choose import Chooser, swarm

PAGE = 4096
MAX_CALLS = 24
SWARM_PERCENT = 40          # programs that draw from a random subset of the calls (swarm testing)
READBACK_PERCENT = 30       # changes of a range followed by loads of its edges and the pages beside it
SPREAD_PERCENT = 60         # stores that go to one of BYTE_OFFSETS of a page rather than where the address fell
RECALL_PERCENT = 40         # loads of a byte some process stored earlier (in any process)
BYTE_OFFSETS = (0, 1, 7, 0x800, PAGE - 1)   # bytes of a page whose loss a one-byte copy or a zeroed tail shows
FORK_SCENARIO_WEIGHT = 5    # of STEPS: a fork scenario (``OsGen.fork_scenario``), drawn like any step
FORK_PAGES = 3              # pages of the mapping a fork scenario makes

# what one step does, by weight ("file": make a descriptor of a file that can be mapped;
# "fork-scenario": a fork with changes on both sides and read-back, several calls in one step)
STEPS = [(24, "mmap"), (8, "munmap"), (10, "mprotect"), (16, "load"), (16, "store"), (3, "fetch"),
         (4, "fork"), (2, "exit"), (4, "file"), (3, "mremap"), (5, "madvise"), (2, "msync"),
         (3, "mincore"), (3, "mlock"), (2, "munlock"), (1, "mlockall"), (1, "munlockall"),
         (2, "ftruncate"), (1, "close"), (2, "shm_unlink"), (2, "pfn_of"), (2, "minflt"), (1, "majflt"),
         (1, "thp_mapped"), (1, "get_node"), (1, "mbind"), (1, "drop_privileges"),
         (1, "set_memlock_limit"), (2, "memory_limit"), (1, "set_swappiness"), (2, "reclaim"),
         (1, "tick"), (1, "wss"), (1, "oom"), (1, "khugepaged"), (FORK_SCENARIO_WEIGHT, "fork-scenario")]
# what changes a mapping on one side of a fork scenario, by weight
FORK_CHANGES = [(40, "store"), (20, "mprotect"), (12, "madvise"), (8, "munmap"), (20, "load")]

PROTS = [("PROT_READ", "PROT_WRITE"), ("PROT_READ",), ("PROT_NONE",), ("PROT_WRITE",), ("PROT_EXEC",),
          ("PROT_READ", "PROT_EXEC"), ("PROT_READ", "PROT_WRITE", "PROT_EXEC")]
MAP_TYPES = [(60, ("MAP_PRIVATE",)), (30, ("MAP_SHARED",)), (4, ()), (3, ("MAP_SHARED_VALIDATE",)), (3, ("MAP_32BIT", "MAP_PRIVATE"))]
MAP_EXTRA = [(70, ()), (12, ("MAP_FIXED",)), (8, ("MAP_FIXED_NOREPLACE",)), (4, ("MAP_POPULATE",)),
          (3, ("MAP_NORESERVE",)), (3, ("MAP_LOCKED",))]


MREMAP_FLAGS = [(40, ()), (40, ("MREMAP_MAYMOVE",)), (8, ("MREMAP_MAYMOVE", "MREMAP_FIXED")),
                (6, ("MREMAP_MAYMOVE", "MREMAP_DONTUNMAP")), (3, ("MREMAP_FIXED",))]
ADVICE = ["MADV_DONTNEED", "MADV_DONTNEED", "MADV_FREE", "MADV_REMOVE", "MADV_WILLNEED", "MADV_DONTFORK",
          "MADV_DOFORK", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_NORMAL"]


def prot(r: Chooser) -> Flags:
    """A protection the clauses name (``PROTS``)."""
    return Flags(r.choice(PROTS))


def advice(r: Chooser) -> str:
    return r.choice(ADVICE)


def _hex(v: int) -> Int:
    return Int(v, hex=abs(v) >= 4096)


def pattern(at: Int | Ref, salt: int = 0) -> int:
    """The byte a store writes at ``at``: derived from the address as the program spells it (the
    mapping's name and offset, or the number) and from ``salt`` (which side of a fork writes it), never
    zero and different for neighbouring bytes and pages, so a copy that lost or zeroed other bytes
    of a page, or took them from the wrong page or process, reads back differently."""
    if isinstance(at, Ref):
        key = sum(ord(ch) * 31 ** i for i, ch in enumerate(at.name)) * 0x3B + at.offset
    else:
        key = at.value
    return (key * 7 + (key >> 12) * 0x1D + salt * 0x55) % 255 + 1


class OsGen:
    def __init__(self, r: Chooser, calls: frozenset[str] | None):
        self.r = r
        self.allowed = calls
        self.calls: list[Call] = []
        # (name, pages, placed in the window) of mmaps; around a mapping the kernel placed
        # outside the window lives the runtime's own memory, so stay inside those
        self.bases: list[tuple[str, int, bool]] = []
        self.procs: list[str] = []
        self.n_names = 0
        self.n_procs = 1
        self.fds: list[str] = []            # named descriptors of files that can be mapped
        self.fd_procs: dict[str, set] = {}  # descriptor -> processes that have it (None: main)
        self.dropped: set[str] = set()      # processes that gave up their privileges
        self.written: list[Int | Ref] = []  # bytes some process stored (loads come back to them)
        steps = [(w, n) for w, n in STEPS if self.ok(n) or (n == "file" and self.ok("memfd_create"))
                 or (n == "fork-scenario" and self.ok("fork"))]
        self.steps = swarm(r, steps, SWARM_PERCENT, keep=lambda step: step[1] in ("mmap", "fork"))

    def ok(self, name: str) -> bool:
        return self.allowed is None or name in self.allowed

    def window_addr(self) -> int:
        return SANDBOX_WINDOW[0] + PAGE * self.r.integer(0, 63)

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
            page = r.integer(-1, pages) if in_window else r.integer(0, pages - 1)
            off = page * PAGE
            if r.chance(15):
                off += r.choice([1, 7, 2048, PAGE - 1])
            return (Ref(base, off) if off else Ref(base)), (None if in_window else pages - page)
        return _hex(self.window_addr() + (r.choice([0, 1, 100]) if r.chance(10) else 0)), None

    def length(self, room: int | None = None) -> Int:
        r = self.r
        if room is not None:
            return _hex(PAGE * r.integer(1, max(room, 1)) - (r.choice([0, 0, 0, 1, 100])))
        kind = r.weighted([(80, "pages"), (6, "zero"), (8, "odd"), (3, "huge"), (3, "big")])
        if kind == "pages":
            return _hex(PAGE * r.integer(1, 8))
        if kind == "zero":
            return Int(0)
        if kind == "odd":
            return _hex(PAGE * r.integer(0, 4) + r.choice([1, 100, PAGE - 1]))
        if kind == "huge":
            return _hex(r.choice([1 << 47, (1 << 64) - PAGE, 1 << 63]))
        return _hex(r.choice([1 << 21, 1 << 22]))

    def proc_prefix(self) -> str | None:
        if self.procs and self.r.chance(25):
            return self.r.choice(self.procs)
        return None

    def step(self) -> None:
        r = self.r
        what = r.weighted(self.steps)
        proc = self.proc_prefix()
        if self.more(what, proc):
            return
        if what == "fork-scenario":
            self.fork_scenario()
            return
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
            prot = Flags(r.choice(PROTS))
            mtype = r.weighted(MAP_TYPES)
            extra = r.weighted(MAP_EXTRA)
            if extra and hint == "null":
                addr = _hex(self.window_addr())
            fd: Int | Ref = Int(-1)
            mine = self.fds_of(proc)
            if mine and r.chance(35):
                fd = Ref(r.choice(mine))
                flags = Flags((mtype or ("MAP_SHARED",)) + extra)
                offset = Int(0) if r.chance(80) else _hex(r.choice([PAGE, 2 * PAGE, 1, (1 << 63) - PAGE]))
            else:
                flags = Flags(mtype + extra + ("MAP_ANONYMOUS",)) if not r.chance(3) else Flags(mtype or ("MAP_PRIVATE",))
                offset = Int(0) if r.chance(92) else _hex(r.choice([1, PAGE, 100]))
            res = self.name()
            self.calls.append(Call("mmap", (addr, length, prot, flags, fd, offset), res, proc))
            pages = max(1, min(16, (length.value + PAGE - 1) // PAGE)) if length.value < (1 << 30) else 1
            self.bases.append((res, pages, not (hint == "null" and not extra and "MAP_32BIT" not in mtype)
                               and "MAP_32BIT" not in mtype))
        elif what == "munmap":
            addr, room = self.addr_and_room()
            length = self.length(room)
            self.calls.append(Call("munmap", (addr, length), None, proc))
            self.read_back(addr, length, room, proc)
        elif what == "mprotect":
            prot = Flags(r.choice(PROTS)) if r.chance(93) else r.choice(
                [Flags(("PROT_GROWSDOWN", "PROT_READ")), Flags(("PROT_GROWSDOWN", "PROT_GROWSUP")), _hex(0x10), Flags(("PROT_SEM", "PROT_READ"))])
            addr, room = self.addr_and_room()
            length = self.length(room)
            self.calls.append(Call("mprotect", (addr, length, prot), None, proc))
            self.read_back(addr, length, room, proc)
        elif what == "load":
            at = r.choice(self.written) if self.written and r.chance(RECALL_PERCENT) else self.addr_arg()
            self.calls.append(Call("load", (at,), None, proc))
        elif what == "store":
            self.store(self.spread(self.addr_arg()), proc)
        elif what == "fetch":
            self.calls.append(Call("fetch", (self.addr_arg(),), None, proc))
        elif what == "fork":
            if len(self.procs) < 2:
                self.n_procs += 1
                name = f"p{self.n_procs}"
                self.calls.append(Call("fork", (), name, None))
                self.procs.append(name)
                for owners in self.fd_procs.values():
                    if None in owners:
                        owners.add(name)
        elif what == "exit":
            if self.procs:
                p = r.choice(self.procs)
                self.procs.remove(p)
                self.calls.append(Call("exit", (), None, p))


    def spread(self, at: Int | Ref) -> Int | Ref:
        """``at``, or (SPREAD_PERCENT) one of ``BYTE_OFFSETS`` in its page: stores land on more than the
        first byte of a page."""
        if not self.r.chance(SPREAD_PERCENT):
            return at
        off = self.r.choice(BYTE_OFFSETS)
        if isinstance(at, Ref):
            o = (at.offset & ~(PAGE - 1)) + off
            return Ref(at.name, o) if o else Ref(at.name)
        return _hex((at.value & ~(PAGE - 1)) + off)

    def store(self, at: Int | Ref, proc: str | None, salt: int = 0) -> None:
        """A store of the address-derived ``pattern`` (not a byte a later load could expect by chance)."""
        self.calls.append(Call("store", (at, _hex(pattern(at, salt))), None, proc))
        if at not in self.written:
            self.written.append(at)

    def fork_scenario(self) -> None:
        """Fork-centred: a writable mapping (private or shared) with distinct bytes on its pages, a fork,
        then changes of protection and contents on both sides (stores, mprotect, madvise, munmap of one
        page), then loads of every byte stored, on the other side first.  7 to 20 calls."""
        r = self.r
        if len(self.procs) >= 2 or not all(self.ok(c) for c in ("mmap", "fork", "load", "store")):
            return
        c = self.calls.append
        base = self.name()
        shared = r.chance(30)
        flags = ("MAP_SHARED" if shared else "MAP_PRIVATE", "MAP_ANONYMOUS")
        c(Call("mmap", (Flags(("NULL",)), _hex(FORK_PAGES * PAGE), Flags(("PROT_READ", "PROT_WRITE")), Flags(flags),
                        Int(-1), Int(0)), base, None))
        self.bases.append((base, FORK_PAGES, False))
        spots = []
        for page in range(FORK_PAGES):
            for off in (r.choice(BYTE_OFFSETS), r.choice(BYTE_OFFSETS)):
                at = Ref(base, page * PAGE + off) if page * PAGE + off else Ref(base)
                if at not in spots:
                    spots.append(at)
        for at in spots:
            if r.chance(75):
                self.store(at, None)
        self.n_procs += 1
        child = f"p{self.n_procs}"
        c(Call("fork", (), child, None))
        self.procs.append(child)
        for owners in self.fd_procs.values():
            if None in owners:
                owners.add(child)
        sides: list[str | None] = [None, child]
        for _ in range(r.integer(2, 5)):
            side = r.choice(sides)
            page = r.integer(0, FORK_PAGES - 1)
            what = r.weighted([(w, n) for w, n in FORK_CHANGES if self.ok(n)])
            at = r.choice(spots)
            if what == "store":
                self.store(at, side, salt=sides.index(side) + 1)
            elif what == "load":
                c(Call("load", (at,), None, side))
            elif what == "mprotect":
                c(Call("mprotect", (Ref(base, page * PAGE) if page else Ref(base), _hex(PAGE * r.integer(1, FORK_PAGES - page)),
                                    Flags(r.choice(PROTS[:3]))), None, side))
            elif what == "madvise":
                c(Call("madvise", (Ref(base, page * PAGE) if page else Ref(base), _hex(PAGE),
                                   Flags((r.choice(["MADV_DONTNEED", "MADV_FREE", "MADV_DONTFORK"]),))), None, side))
            else:
                c(Call("munmap", (Ref(base, page * PAGE) if page else Ref(base), _hex(PAGE)), None, side))
        first = r.choice(sides)
        for side in (first, sides[1 - sides.index(first)]):
            for at in spots:
                c(Call("load", (at,), None, side))

    def read_back(self, addr: Int | Ref | Flags, length: Int, room: int | None, proc: str | None) -> None:
        """After a change of [addr, addr+length) (done or refused): loads of the page before it, its
        first and last byte and the page after it, in the process that made it -- what a change could
        have damaged beside the range.  Not around a mapping the kernel placed outside the sandbox
        window (``room``: the runtime's own memory is beside it)."""
        r = self.r
        if room is not None or not self.ok("load") or not 0 < length.value <= 64 * PAGE or isinstance(addr, Flags) \
                or not r.chance(READBACK_PERCENT):
            return
        for delta in (-PAGE, 0, length.value - 1, length.value + PAGE - 1):
            if isinstance(addr, Ref):
                at: Int | Ref = Ref(addr.name, addr.offset + delta) if addr.offset + delta else Ref(addr.name)
            elif SANDBOX_WINDOW[0] <= addr.value + delta < SANDBOX_WINDOW[1]:
                at = _hex(addr.value + delta)
            else:
                continue
            self.calls.append(Call("load", (at,), None, proc))

    def fds_of(self, proc: str | None) -> list[str]:
        """Descriptors open in ``proc``: a number means something else in another process."""
        return [f for f in self.fds if proc in self.fd_procs.get(f, ())]

    def more(self, what: str, proc: str | None) -> bool:
        """The calls beyond the original slice; True when ``what`` was handled here."""
        r = self.r
        c = self.calls.append
        if what == "file":
            kind = r.weighted([(5, "memfd"), (3, "file"), (3, "shm"), (1, "pipe")])
            fd = self.name()
            if kind == "memfd" and self.ok("memfd_create"):
                c(Call("memfd_create", (Str(r.choice(["f", "g", "x" * 250])), Int(r.choice([0, 0, 1, 0x100]))), fd, proc))
            elif kind == "file" and self.ok("open_file"):
                c(Call("open_file", (_hex(PAGE * r.integer(0, 4) + r.choice([0, 0, 1, 2048])),
                                     Flags((r.choice(["O_RDWR", "O_RDWR", "O_RDONLY", "O_WRONLY"]),))), fd, proc))
            elif kind == "shm" and self.ok("shm_open"):
                oflag = r.choice([("O_CREAT", "O_RDWR"), ("O_CREAT", "O_EXCL", "O_RDWR"), ("O_RDWR",), ("O_RDONLY",),
                                  ("O_CREAT", "O_RDONLY")])
                c(Call("shm_open", (Str(r.choice(["/c0", "/c1", "c2", "/", "/a/b"])), Flags(oflag),
                                    _hex(r.choice([0x180, 0x1A4, 0x100]))), fd, proc))
            elif self.ok("pipe"):
                c(Call("pipe", (), fd, proc))
            else:
                return True
            self.fd_procs[fd] = {proc}
            if kind != "pipe":
                self.fds.append(fd)
                if self.ok("ftruncate") and r.chance(70):
                    c(Call("ftruncate", (Ref(fd), _hex(PAGE * r.integer(0, 4) + r.choice([0, 0, 100]))), None, proc))
            return True
        if what == "ftruncate":
            mine = self.fds_of(proc)
            fd = Ref(r.choice(mine)) if mine and r.chance(85) else Int(r.choice([-1, 9999]))
            c(Call("ftruncate", (fd, _hex(PAGE * r.integer(0, 4) + r.choice([0, 0, 1, 2048])) if r.chance(95) else Int(-1)),
                   None, proc))
            return True
        if what == "close":
            mine = self.fds_of(proc)
            fd = Ref(r.choice(mine)) if mine and r.chance(85) else Int(9999)
            c(Call("close", (fd,), None, proc))
            return True
        if what == "shm_unlink":
            c(Call("shm_unlink", (Str(r.choice(["/c0", "/c1", "c2", "/nope", "/a/b"])),), None, proc))
            return True
        if what == "mremap":
            addr, room = self.addr_and_room()
            flags = r.weighted(MREMAP_FLAGS)
            new_addr = _hex(self.window_addr()) if "MREMAP_FIXED" in flags else Int(0)
            old = self.length(room)
            new = _hex(PAGE * r.integer(1, 8)) if r.chance(90) else Int(0)
            res = self.name()
            c(Call("mremap", (addr, old, new, Flags(flags) if flags else Int(0), new_addr), res, proc))
            self.read_back(addr, old, room, proc)
            self.bases.append((res, max(1, new.value // PAGE), "MREMAP_FIXED" in flags))
            return True
        if what == "madvise":
            addr, room = self.addr_and_room()
            adv = advice(r)
            length = self.length(room)
            c(Call("madvise", (addr, length, Flags((adv,)) if r.chance(95) else Int(99)), None, proc))
            self.read_back(addr, length, room, proc)
            return True
        if what == "msync":
            addr, room = self.addr_and_room()
            fl = r.choice([("MS_SYNC",), ("MS_ASYNC",), ("MS_INVALIDATE",), ("MS_SYNC", "MS_ASYNC")])
            c(Call("msync", (addr, self.length(room), Flags(fl)), None, proc))
            return True
        if what == "mincore":
            addr, room = self.addr_and_room()
            c(Call("mincore", (addr, self.length(room)), self.name(), proc))
            return True
        if what == "mlock":
            addr, room = self.addr_and_room()
            if r.chance(60):
                c(Call("mlock", (addr, self.length(room)), None, proc))
            else:
                c(Call("mlock2", (addr, self.length(room), r.choice([Int(0), Flags(("MLOCK_ONFAULT",)), Int(2)])),
                       None, proc))
            return True
        if what == "munlock":
            addr, room = self.addr_and_room()
            c(Call("munlock", (addr, self.length(room)), None, proc))
            return True
        if what == "mlockall":
            c(Call("mlockall", (r.choice([Flags(("MCL_FUTURE",)), Flags(("MCL_FUTURE", "MCL_ONFAULT")),
                                          Flags(("MCL_ONFAULT",)), Int(0), Flags(("MCL_CURRENT",))]),), None, proc))
            return True
        if what == "munlockall":
            c(Call("munlockall", (), None, proc))
            return True
        if what in ("pfn_of", "thp_mapped", "get_node"):
            c(Call(what, (self.addr_arg(),), self.name(), proc))
            return True
        if what in ("minflt", "majflt"):
            c(Call(what, (), self.name(), proc))
            return True
        if what == "mbind":
            addr, room = self.addr_and_room()
            mode = r.choice(["MPOL_DEFAULT", "MPOL_BIND", "MPOL_PREFERRED", "MPOL_INTERLEAVE", "MPOL_LOCAL"])
            c(Call("mbind", (addr, self.length(room), Flags((mode,)), Int(r.choice([0, 1, 1, 2, 3]))), None, proc))
            return True
        if what == "drop_privileges":
            if proc is not None and proc not in self.dropped:
                self.dropped.add(proc)
                c(Call("drop_privileges", (), None, proc))
            return True
        if what == "set_memlock_limit":
            c(Call("set_memlock_limit", (_hex(r.choice([0, PAGE, 4 * PAGE, 8 << 20, 1 << 40])),), None, proc))
            return True
        if what == "memory_limit":
            c(Call("memory_limit", (Int(r.integer(4, 40)), Int(r.choice([0, 0, 4, 16, 64]))), None, None))
            return True
        if what == "set_swappiness":
            c(Call("set_swappiness", (Int(r.choice([0, 60, 100, 200, 201])),), None, None))
            return True
        if what == "reclaim":
            c(Call("reclaim", (Int(r.integer(1, 8)),), self.name(), None))
            return True
        if what == "tick":
            c(Call("tick", (), None, proc))
            return True
        if what == "wss":
            c(Call("wss", (Int(r.integer(1, 10)),), self.name(), proc))
            return True
        if what == "oom":
            c(Call("oom", (), self.name(), None))
            return True
        if what == "khugepaged":
            c(Call("khugepaged", (), self.name(), proc))
            return True
        return False


def program(r: Chooser, calls: frozenset[str] | None = None, facts: dict[str, Any] | None = None) -> Program:
    """A program of the os layer's calls in ``calls`` (all when None), every decision drawn from ``r``."""
    b = OsGen(r, calls)
    n = r.integer(1, MAX_CALLS)
    while len(b.calls) < n and not r.exhausted:
        b.step()
    return Program(tuple(b.calls))
