"""The os layer's Hypothesis state machine, parameterised by target.

One machine over several processes: rules fork and exit processes, map anonymous
memory and files (memfd, shm_open, open_file) privately and shared, read and write
files through their descriptors (read, write, pread, pwrite, lseek), change, seal and
remove mappings (mseal, then the calls it forbids: the other rules draw from the same
mappings), make accesses and read a mapping back page by page in every process, advise,
lock, remap, observe frames and residency, and -- on targets that model it -- apply
memory pressure (machine size, reclaim, the OOM killer).
The rules draw their arguments through the os generator's vocabularies
(``specs/gen_os.py``, with the Hypothesis chooser); a rule whose calls the target
does not implement is removed, and a rule that draws among calls draws among the
ones the target implements.  Every rule makes one call on the target and on the
model; the model judges the target's outcome at once (clause named), then adopts
it.  After every step one invariant per law of the model's state runs (named after
``model/invariants.CHECKS``: VMAs well formed, no frame owned twice, mapcounts equal
mappers, COW pages read-only, isolation, page tables agree with VMAs, no stale TLB
entry, locked pages resident, ...), and the target's memory map agrees with the model's.
A failure prints the clause, the program so far in
program text (Hypothesis shrinks it), expected vs observed, and a replay command.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import note
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule

from memspec.consts import SANDBOX_WINDOW
from memspec.errors import SessionFailed
from memspec.model.invariants import CHECKS
from memspec.model.registry import new_model
from memspec.program import Call, Flags, Int, Program, Ref, Str

from . import gen_os
from .choose import DrawChooser
from .failures import ConformanceFailure
from .judge import compare_maps
from .machine_rules import law_checks, needs, remove_unrunnable, runnable
from .step import Stepper

PAGE = 4096


def machine(target: Any, facts: dict[str, Any] | None = None, observe_every: int = 1) -> type[RuleBasedStateMachine]:
    """A state machine class checking ``target`` against the os-layer model after every step."""
    facts = dict(target.facts()) if facts is None else facts
    allowed = target.calls
    accesses = runnable(allowed, "load", "store", "fetch")
    locks = runnable(allowed, "mlock", "munlock", "mlock2")
    fd_calls = runnable(allowed, "pwrite", "pread", "write", "read", "lseek")
    observations = runnable(allowed, "mincore", "pfn_of", "minflt")
    events = runnable(allowed, "memory_limit", "reclaim", "oom", "tick")
    unsupported_steps: dict[str, int] = {}      # clause -> steps the target refused to run

    class OsMachine(RuleBasedStateMachine):
        mappings = Bundle("mappings")
        procs = Bundle("procs")
        files = Bundle("files")         # descriptors of files that can be mapped
        written = Bundle("written")     # (descriptor, offset, process) of a byte pwrite wrote
        sealed = Bundle("sealed")       # (mapping, first page, pages) of a range mseal sealed

        def __init__(self) -> None:
            super().__init__()
            try:
                self.session = target.session("os")
            except SessionFailed as e:   # the reset before the first call did not answer
                raise ConformanceFailure("memspec.target.alive", Program(()), 0, "an answer to the reset",
                                         e.message, e.status.value) from None
            self.model = new_model("os", facts)
            self.stepper = Stepper(self.model, self.session, note, unsupported_steps)
            self.calls = self.stepper.calls
            self.env = self.stepper.env
            self.live_procs: list[str] = []
            self.fd_owner: dict[str, set] = {}
            self.map_owner: dict[str, set] = {}     # mapping -> processes that map it (None: main)
            self.fd_maps: dict[str, list[str]] = {}  # descriptor -> its mappings (map_fd)
            self.n = 0
            self.steps = 0
            self.dead = False

        def _name(self, prefix: str = "m") -> str:
            self.n += 1
            return f"{prefix}{self.n}"

        def _do(self, call: Call) -> int | None:
            if self.dead or (call.proc or "main") not in self.model.procs:
                return None     # killed by the OOM killer
            observed = self.stepper.step(call)
            if observed is None:
                return None
            self.steps += 1
            return observed.value

        def _proc(self, data: Any) -> str | None:
            if self.live_procs and data.draw(st.integers(0, 3)) == 0:
                return data.draw(st.sampled_from(self.live_procs))
            return None

        @needs("mmap")
        @rule(target=mappings, page=st.integers(0, 63), pages=st.integers(1, 6),
              shared=st.booleans(), how=st.sampled_from(["hint", "hint", "fixed", "noreplace", "null"]),
              data=st.data())
        def mmap(self, page: int, pages: int, shared: bool, how: str, data: Any) -> str:
            name = self._name()
            extra = {"fixed": ("MAP_FIXED",), "noreplace": ("MAP_FIXED_NOREPLACE",)}.get(how, ())
            addr = Flags(("NULL",)) if how == "null" else Int(SANDBOX_WINDOW[0] + page * PAGE, hex=True)
            flags = Flags(("MAP_SHARED" if shared else "MAP_PRIVATE",) + extra + ("MAP_ANONYMOUS",))
            call = Call("mmap", (addr, Int(pages * PAGE, hex=True), gen_os.prot(DrawChooser(data)), flags, Int(-1),
                                 Int(0)), name, self._proc(data))
            v = self._do(call)
            self.map_owner[name] = {call.proc}
            return name if v is not None and v >= 0 else multiple()      # a failed mmap names nothing

        @needs("mprotect")
        @rule(base=mappings, page=st.integers(-1, 6), pages=st.integers(0, 4), data=st.data())
        def mprotect(self, base: str, page: int, pages: int, data: Any) -> None:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("mprotect", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                       gen_os.prot(DrawChooser(data))), None, self._proc(data)))

        @needs("munmap")
        @rule(base=mappings, page=st.integers(-1, 6), pages=st.integers(0, 4), data=st.data())
        def munmap(self, base: str, page: int, pages: int, data: Any) -> None:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("munmap", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True)),
                          None, self._proc(data)))

        @needs("load", "store", "fetch", any_of=True)
        @rule(base=mappings, offset=st.integers(-PAGE, 6 * PAGE), op=st.sampled_from(accesses or ["load"]),
              data=st.data())
        def access(self, base: str, offset: int, op: str, data: Any) -> None:
            """A load, store or fetch; a store writes the address-derived pattern of the byte (and of
            the process), so a byte later read from the wrong page, offset or process shows."""
            if base not in self.env:
                return
            if not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1] and not 0 <= offset < PAGE:
                offset = 0
            addr = Ref(base, offset) if offset else Ref(base)
            proc = self._proc(data)
            salt = 0 if proc is None else 1 + self.live_procs.index(proc)
            args = (addr, Int(gen_os.pattern(addr, salt), hex=True)) if op == "store" else (addr,)
            self._do(Call(op, args, None, proc))

        @needs("fork")
        @precondition(lambda self: len(self.live_procs) < 2)
        @rule()
        def fork(self) -> None:
            name = f"p{len(self.live_procs) + self.n + 2}"
            self.n += 1
            if self._do(Call("fork", (), name, None)) is not None:
                self.live_procs.append(name)
                for owners in list(self.fd_owner.values()) + list(self.map_owner.values()):
                    if None in owners:
                        owners.add(name)

        @needs("memfd_create", "ftruncate", "mmap")
        @rule(target=mappings, page=st.integers(0, 63), pages=st.integers(1, 4), size=st.integers(0, 5),
              shared=st.booleans(), data=st.data())
        def map_file(self, page: int, pages: int, size: int, shared: bool, data: Any) -> str:
            fd = self._name("fd")
            name = self._name()
            if self._do(Call("memfd_create", (Str("m"), Int(0)), fd, None)) is None:
                return multiple()
            self.fd_owner[fd] = {None}
            self._do(Call("ftruncate", (Ref(fd), Int(size * 2048, hex=size * 2048 >= 4096)), None, None))
            v = self._do(Call("mmap", (Int(SANDBOX_WINDOW[0] + page * PAGE, hex=True), Int(pages * PAGE, hex=True),
                                       gen_os.prot(DrawChooser(data)),
                                       Flags(("MAP_SHARED" if shared else "MAP_PRIVATE",)), Ref(fd), Int(0)),
                              name, None))
            self.map_owner[name] = {None}
            return name if v is not None and v >= 0 else multiple()

        @needs("ftruncate", "memfd_create", "shm_open", "open_file", any_of=True)
        @rule(target=files, kind=st.sampled_from([k for k in ("memfd_create", "shm_open", "open_file")
                                                  if allowed is None or k in allowed] or ["memfd_create"]),
              size=st.integers(0, 5), append=st.sampled_from([False, False, False, True]))
        def make_file(self, kind: str, size: int, append: bool) -> str:
            """A file that can be mapped (memfd, shm_open, open_file; the last two sometimes O_APPEND,
            so that write and pwrite go to its end), sized with ftruncate."""
            fd = self._name("fd")
            length = Int(size * 2048, hex=size * 2048 >= 4096)
            oflag = ("O_RDWR",) + (("O_APPEND",) if append else ())
            if kind == "memfd_create":
                call = Call("memfd_create", (Str("m"), Int(0)), fd, None)
            elif kind == "shm_open":
                call = Call("shm_open", (Str(f"/m{size % 2}"), Flags(("O_CREAT",) + oflag), Int(0x180, hex=True)), fd, None)
            else:
                call = Call("open_file", (length, Flags(oflag)), fd, None)
            v = self._do(call)
            if v is None or v < 0:
                return multiple()
            self.fd_owner[fd] = {None}
            if runnable(allowed, "ftruncate"):
                self._do(Call("ftruncate", (Ref(fd), length), None, None))
            return fd

        @needs("mmap")
        @rule(target=mappings, fd=files, page=st.integers(0, 63), pages=st.integers(1, 4), shared=st.booleans(),
              data=st.data())
        def map_fd(self, fd: str, page: int, pages: int, shared: bool, data: Any) -> str:
            name = self._name()
            v = self._do(Call("mmap", (Int(SANDBOX_WINDOW[0] + page * PAGE, hex=True), Int(pages * PAGE, hex=True),
                                       Flags(("PROT_READ", "PROT_WRITE")),
                                       Flags(("MAP_SHARED" if shared else "MAP_PRIVATE",)), Ref(fd), Int(0)),
                              name, None))
            self.map_owner[name] = {None}
            if v is None or v < 0:
                return multiple()
            self.fd_maps.setdefault(fd, []).append(name)
            return name

        @needs(*fd_calls, any_of=True)
        @rule(target=written, fd=files, what=st.sampled_from(fd_calls or ["pread"]), page=st.integers(0, 4),
              byte=st.sampled_from(gen_os.BYTE_OFFSETS[::-1]), count=st.sampled_from([1, 1, 1, 3, 0, PAGE + 1]),
              whence=st.sampled_from(gen_os.WHENCE), data=st.data())
        def fd_io(self, fd: str, what: str, page: int, byte: int, count: int, whence: Any, data: Any) -> Any:
            """The descriptor path of a file: one of read, write, pread, pwrite, lseek, in a process
            that has the descriptor; the bytes written are the address-derived pattern of (fd, offset).
            A byte pwrite wrote joins ``written`` (read back by ``read_written``)."""
            owners = sorted(self.fd_owner.get(fd, {None}) & ({None} | set(self.live_procs)), key=str)
            proc = data.draw(st.sampled_from(owners)) if owners else None
            off = page * PAGE + byte
            value = Int(gen_os.pattern(Ref(fd, off) if off else Ref(fd)), hex=True)
            args: tuple = {"read": (Ref(fd),), "write": (Ref(fd), value, Int(count)),
                           "pread": (Ref(fd), Int(off, hex=off >= 4096)),
                           "pwrite": (Ref(fd), Int(off, hex=off >= 4096), value, Int(count)),
                           "lseek": (Ref(fd), Int(off, hex=off >= 4096), whence)}[what]
            v = self._do(Call(what, args, self._name("v"), proc))
            return (fd, off, proc) if what == "pwrite" and v and v > 0 else multiple()

        @needs("set_fsize_limit", "pwrite")
        @rule(fd=files, page=st.integers(0, 3), byte=st.sampled_from([0, 1, 2048, PAGE - 1]), data=st.data())
        def fsize_limit(self, fd: str, page: int, byte: int, data: Any) -> None:
            """RLIMIT_FSIZE set near the file's pages in a process that has the descriptor, then a pwrite
            across the limit (cut short at it) and one at it (EFBIG), read back through the descriptor."""
            owners = sorted(self.fd_owner.get(fd, {None}) & ({None} | set(self.live_procs)), key=str)
            proc = data.draw(st.sampled_from(owners)) if owners else None
            lim = page * PAGE + byte
            self._do(Call("set_fsize_limit", (Int(lim, hex=lim >= 4096),), None, proc))
            for at, n in ((max(lim - 1, 0), 3), (lim, 1)):
                value = Int(gen_os.pattern(Ref(fd, at) if at else Ref(fd), 5), hex=True)
                self._do(Call("pwrite", (Ref(fd), Int(at, hex=at >= 4096), value, Int(n)), self._name("v"), proc))
            if runnable(allowed, "pread"):
                for at in (max(lim - 1, 0), lim):
                    self._do(Call("pread", (Ref(fd), Int(at, hex=at >= 4096)), self._name("v"), proc))

        @needs("map_pages")
        @rule(page=st.integers(0, 127), n=st.sampled_from([1, 2, 3, 5, 0]), data=st.data())
        def map_pages(self, page: int, n: int, data: Any) -> None:
            """A few one-page mappings with a hole after each (map_pages; EEXIST where a page is already
            mapped), then every page of them and of the holes read back."""
            proc = self._proc(data)
            at = SANDBOX_WINDOW[0] + page * PAGE
            self._do(Call("map_pages", (Int(at, hex=True), Int(n), gen_os.prot(DrawChooser(data))), self._name("v"), proc))
            if runnable(allowed, "load"):
                for k in range(2 * n):
                    self._do(Call("load", (Int(at + k * PAGE, hex=True),), None, proc))

        @needs("pread", "load", any_of=True)
        @rule(w=written, how=st.sampled_from(runnable(allowed, "pread", "load") or ["pread"]),
              where=st.sampled_from(["at", "page", "next"]), data=st.data())
        def read_written(self, w: tuple, how: str, where: str, data: Any) -> None:
            """A byte pwrite wrote, its page's first byte or the byte after it, read back through the
            descriptor (pread) or through a mapping of the file (load), in a process that has it."""
            fd, off, proc = w
            at = {"at": off, "page": off - off % PAGE, "next": off + 1}[where]
            maps = [m for m in self.fd_maps.get(fd, []) if m in self.env]
            if how == "load" and maps:
                base = data.draw(st.sampled_from(maps))
                owners = sorted(self.map_owner.get(base, {None}) & ({None} | set(self.live_procs)), key=str)
                self._do(Call("load", (Ref(base, at) if at else Ref(base),), None,
                              data.draw(st.sampled_from(owners)) if owners else None))
            elif runnable(allowed, "pread"):
                self._do(Call("pread", (Ref(fd), Int(at, hex=at >= 4096)), self._name("v"), proc))

        @needs("mseal")
        @rule(target=sealed, base=mappings, page=st.integers(0, 3), pages=st.integers(1, 3),
              how=st.sampled_from(["range", "range", "range", "hole-before", "zero", "flags"]), data=st.data())
        def mseal(self, base: str, page: int, pages: int, how: str, data: Any) -> Any:
            """Seal part of a mapping (or a range with a hole, or with a flag); a sealed range joins
            ``sealed``, which ``meet_seal`` (and the munmap, mprotect, mremap, madvise and MAP_FIXED
            rules, on the same mappings) then meet."""
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return multiple()
            proc = self._proc(data)
            page -= how == "hole-before"
            pages *= how != "zero"
            v = self._do(Call("mseal", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                        Int(1 if how == "flags" else 0)), None, proc))
            return (base, page, pages, proc) if v == 0 and pages else multiple()

        @needs("munmap", "mprotect", "mremap", "madvise", "mmap", any_of=True)
        @rule(s=sealed, what=st.sampled_from(runnable(allowed, "munmap", "mprotect", "mremap", "madvise", "mmap")
                                             or ["munmap"]),
              first=st.sampled_from([1, 0, 2, -1]), pages=st.integers(1, 4), data=st.data())
        def meet_seal(self, s: tuple, what: str, first: int, pages: int, data: Any) -> None:
            """A call mseal forbids over a range that touches a sealed range (from one page before it):
            munmap, mprotect, mremap (resize or move), madvise with discarding advice, mmap MAP_FIXED."""
            base, page, n, proc = s
            if base not in self.env:
                return
            start = page + min(first, n - 1)
            at = Ref(base, start * PAGE) if start else Ref(base)
            length = Int(pages * PAGE, hex=True)
            if what == "munmap":
                call = Call("munmap", (at, length), None, proc)
            elif what == "mprotect":
                call = Call("mprotect", (at, length, gen_os.prot(DrawChooser(data))), None, proc)
            elif what == "mremap":
                call = Call("mremap", (at, length, Int(data.draw(st.integers(1, 5)) * PAGE, hex=True),
                                       Flags(("MREMAP_MAYMOVE",)), Int(0)), self._name(), proc)
            elif what == "madvise":
                call = Call("madvise", (at, length, Flags((data.draw(st.sampled_from(gen_os.DISCARD_ADVICE)),))),
                            None, proc)
            else:
                call = Call("mmap", (at, length, Flags(("PROT_READ",)), Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")),
                                     Int(-1), Int(0)), self._name(), proc)
            self._do(call)

        @needs("mmap")
        @rule(base=mappings, page=st.integers(-1, 3), pages=st.integers(1, 3), data=st.data())
        def map_fixed_over(self, base: str, page: int, pages: int, data: Any) -> None:
            """mmap MAP_FIXED over (part of) a mapping: the old pages go, unless sealed."""
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("mmap", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                   gen_os.prot(DrawChooser(data)), Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")),
                                   Int(-1), Int(0)), self._name(), self._proc(data)))

        @needs("load")
        @rule(base=mappings, pages=st.integers(1, 5), byte=st.sampled_from(gen_os.BYTE_OFFSETS))
        def read_back(self, base: str, pages: int, byte: int) -> None:
            """Every page of a mapping and the page before and after it, in every process that maps
            it: what an earlier change (of the range, of the file, of the other process) did."""
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            procs = [p for p in [None] + self.live_procs if p in self.map_owner.get(base, {None})]
            for proc in procs:
                for page in range(-1, pages + 1):
                    off = page * PAGE + byte
                    self._do(Call("load", (Ref(base, off) if off else Ref(base),), None, proc))

        @needs("madvise")
        @rule(base=mappings, page=st.integers(0, 4), pages=st.integers(0, 3), data=st.data())
        def madvise(self, base: str, page: int, pages: int, data: Any) -> None:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("madvise", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                      Flags((gen_os.advice(DrawChooser(data)),))), None, self._proc(data)))

        @needs("mlock", "munlock", "mlock2", any_of=True)
        @rule(base=mappings, page=st.integers(0, 4), pages=st.integers(0, 3),
              lock=st.sampled_from(locks or ["mlock"]), data=st.data())
        def mlock(self, base: str, page: int, pages: int, lock: str, data: Any) -> None:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            args = (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True))
            if lock == "mlock2":
                args += (Flags(("MLOCK_ONFAULT",)),)
            self._do(Call(lock, args, None, self._proc(data)))

        @needs("mremap")
        @rule(target=mappings, base=mappings, old=st.integers(1, 3), new=st.integers(1, 5),
              move=st.sampled_from(["none", "maymove", "fixed", "dontunmap"]), page=st.integers(64, 127))
        def mremap(self, base: str, old: int, new: int, move: str, page: int) -> str:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return multiple()
            name = self._name()
            flags = {"none": Int(0), "maymove": Flags(("MREMAP_MAYMOVE",)),
                     "fixed": Flags(("MREMAP_MAYMOVE", "MREMAP_FIXED")),
                     "dontunmap": Flags(("MREMAP_MAYMOVE", "MREMAP_DONTUNMAP"))}[move]
            if move == "dontunmap":
                new = old       # MREMAP_DONTUNMAP moves without resizing
            new_addr = Int(SANDBOX_WINDOW[0] + page * PAGE, hex=True) if move == "fixed" else Int(0)
            v = self._do(Call("mremap", (Ref(base), Int(old * PAGE, hex=True), Int(new * PAGE, hex=True), flags,
                                         new_addr), name, None))
            return name if v is not None and v >= SANDBOX_WINDOW[0] else multiple()

        @needs("mincore", "pfn_of", "minflt", any_of=True)
        @rule(base=mappings, pages=st.integers(1, 4), what=st.sampled_from(observations or ["minflt"]),
              data=st.data())
        def observe_call(self, base: str, pages: int, what: str, data: Any) -> None:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            if what == "mincore":
                c = Call("mincore", (Ref(base), Int(pages * PAGE, hex=True)), self._name("v"), self._proc(data))
            elif what == "pfn_of":
                c = Call("pfn_of", (Ref(base, (pages - 1) * PAGE) if pages > 1 else Ref(base),), self._name("v"),
                         self._proc(data))
            else:
                c = Call("minflt", (), self._name("v"), self._proc(data))
            self._do(c)

        @needs("memory_limit", "reclaim", "oom", "tick", any_of=True)
        @rule(event=st.sampled_from(events or ["tick"]), n=st.integers(1, 24))
        def pressure(self, event: str, n: int) -> None:
            if event == "memory_limit":
                self._do(Call("memory_limit", (Int(8 + n), Int(n // 2)), None, None))
            elif event == "reclaim":
                self._do(Call("reclaim", (Int(n),), self._name("v"), None))
            elif event == "oom":
                if self._do(Call("oom", (), self._name("v"), None)) is not None:
                    self.live_procs = [p for p in self.live_procs if p in self.model.procs]
                    if "main" not in self.model.procs:
                        self.dead = True
            else:
                self._do(Call("tick", (), None, None))

        @needs("fork", "exit")
        @precondition(lambda self: bool(self.live_procs))
        @rule(data=st.data())
        def exit(self, data: Any) -> None:
            p = data.draw(st.sampled_from(self.live_procs))
            self._do(Call("exit", (), None, p))
            if p in self.live_procs:
                self.live_procs.remove(p)

        @invariant()
        def memory_maps_agree(self) -> None:
            if not self.calls or self.steps % observe_every:
                return
            bad = compare_maps(self.model, self.session.observe(), len(self.calls) - 1)
            if bad is not None:
                raise ConformanceFailure(bad.clause, Program(tuple(self.calls)), bad.index, bad.expected,
                                         bad.observed, bad.note)

        def teardown(self) -> None:
            self.session.close()

    remove_unrunnable(OsMachine, allowed)
    law_checks(OsMachine, CHECKS)
    OsMachine.__name__ = OsMachine.__qualname__ = f"OsMachine[{target.name}]"
    OsMachine.unsupported_steps = unsupported_steps     # type: ignore[attr-defined]
    return OsMachine
