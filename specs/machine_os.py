"""The os layer's Hypothesis state machine, parameterised by target.

One machine over several processes: rules fork and exit processes, map anonymous
memory and files (memfd, shm_open, open_file) privately and shared, read and write
files through their descriptors (read, write, pread, pwrite, lseek), change, seal and
remove mappings (mseal, then the calls it forbids: the other rules draw from the same
mappings), make accesses and read a mapping back page by page in every process, advise,
lock, remap, observe frames and residency, and -- on targets that model it -- apply
memory pressure (machine size, reclaim, the OOM killer).
The rules draw their arguments as rule arguments (strategies in ``@rule``, none drawn inside
a rule), from the os generator's vocabularies (``specs/gen_os.py``: protections, advice,
offsets, whence); the process a call runs in is one more argument (``WHO``: a live forked
process for a quarter of the calls).  Small arguments are drawn together (``grid``: one draw
for all their combinations), each step's rule is chosen with one draw among the rules the
example switched on (``machine_rules.SwarmRules``), and a first mapping and a first file are
made before the first step (``first_mapping``, ``first_file``), so that the rules on mappings and
descriptors can run from the start.  A rule
whose calls the target does not implement is removed, and a rule that draws among calls draws
among the ones the target implements.

What is checked, and when:

* every call, at once: the model judges the target's outcome (clause named), then adopts it;
* after every step: every law of the model's own state (``model/invariants.CHECKS``: VMAs well
  formed, objects live while used, private pages mapped, no frame owned twice, mapcounts equal
  mappers, COW pages read-only, isolation, page tables agree with VMAs, no stale TLB entry,
  locked pages resident) over what the step's calls touched (their footprint; a state small
  enough, or one whose processes changed, is recounted whole), in one check,
  ``model_state_consistent``, whose failure names the law;
* at each checkpoint -- after the step that brings the calls since the last one to
  ``observe_every`` (``OBSERVE_EVERY`` by default), and at the end of a run that did not fail --
  the target's memory maps against the model's (``memory_maps_agree``) and every law recounted
  over the whole state.  With ``observe_every=1`` both run after every step that made a call.
  Both run in one Hypothesis invariant, ``checked_after_step`` (each invariant costs Hypothesis
  as much again every step).

A failure prints the clause, the program so far in program text (Hypothesis shrinks it),
expected vs observed, and a replay command.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from hypothesis import note
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from memspec.consts import SANDBOX_WINDOW
from memspec.errors import SessionFailed
from memspec.model.invariants import CHECKS
from memspec.model.registry import new_model
from memspec.program import Call, Flags, Int, Program, Ref, Str

from . import gen_os
from .failures import ConformanceFailure
from .judge import compare_maps
from .machine_rules import (Choose, Ints, QuietStepper, grid, law_of, needs, remove_unrunnable, runnable, use_swarm_rules,
                            weight)
from .step import invariant_failure

PAGE = 4096
OBSERVE_EVERY = 4   # calls between checkpoints: the memory maps compared, the invariants recounted whole


# a process, drawn with a rule's arguments: the main process (0-5, and where no other lives),
# or one of the live forked ones (6, 7) -- a quarter of the calls, once a fork has happened
WHOS = range(8)
WHO = Ints(0, 7)
PROT_FLAGS = [Flags(p) for p in gen_os.PROTS]       # gen_os.prot's vocabulary, drawn as an argument
PROTS = Choose(PROT_FLAGS)
PROT_WHO = grid(PROT_FLAGS, WHOS)                   # a protection and the process (WHO) of the call
SPANS = grid(range(-1, 7), range(0, 5))             # (first page, pages) of a range from a mapping's start
# how often some rules are chosen, in rules (machine_rules.weight): a pressure event about as often
# as Hypothesis' own choice took it (it tries rules without bundles and with fewer arguments first),
# and fork more (a fork is valid only while fewer than two children live): a broken OOM killer
# needs a child that outgrows its parent, then an OOM kill (the catching sweep of
# tests/specs/catching_sweep.py lost oom-kills-not-worst with fork at 2); the descriptor path
# (fd_io, and read_written after a pwrite) more often than its share, since it waits for a file
FORK_WEIGHT = 4
PRESSURE_WEIGHT = 4
FILE_IO_WEIGHT = 3


def _same_maps(model: Any, seen: Any) -> bool:
    """Does every process of ``model`` show exactly the model's own maps in ``seen``?  Then
    ``compare_maps``, which compares the two clipped to the same windows, finds nothing (a target
    with mappings of its own -- a stack, libraries -- goes on to it)."""
    for proc in model.procs:
        got = seen.maps_of(proc)
        if got is not None and [(m.start, m.end, m.perms) for m in got] != model.maps(proc):
            return False
    return True


def machine(target: Any, facts: dict[str, Any] | None = None, observe_every: int = OBSERVE_EVERY,
            model: Callable[[], Any] | None = None) -> type[RuleBasedStateMachine]:
    """A state machine class checking ``target`` against the os-layer model after every step.

    ``observe_every``: the calls between checkpoints (the memory maps compared, the invariants
    recounted over the whole state); the end of a run is one too.  ``model`` makes the model that
    judges (default: the reference model for ``facts``; tests use it to show the invariants catch a
    broken one)."""
    facts = dict(target.facts()) if facts is None else facts
    allowed = target.calls
    accesses = runnable(allowed, "load", "store", "fetch")
    locks = runnable(allowed, "mlock", "munlock", "mlock2")
    fd_calls = runnable(allowed, "pwrite", "pread", "write", "read", "lseek")
    observations = runnable(allowed, "mincore", "pfn_of", "minflt")
    events = runnable(allowed, "memory_limit", "reclaim", "oom", "tick")
    unsupported_steps: dict[str, int] = {}      # clause -> steps the target refused to run
    FILE_KINDS = grid(runnable(allowed, "memfd_create", "shm_open", "open_file") or ["memfd_create"], range(0, 6),
                      [False, False, False, True])     # (kind, size in half pages, O_APPEND)

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
            self.model = new_model("os", facts) if model is None else model()
            self.stepper = QuietStepper(self.model, self.session, note, unsupported_steps)
            self.calls = self.stepper.calls
            self.env = self.stepper.env
            self.live_procs: list[str] = []
            self.fd_owner: dict[str, set] = {}
            self.map_owner: dict[str, set] = {}     # mapping -> processes that map it (None: main)
            self.fd_maps: dict[str, list[str]] = {}  # descriptor -> its mappings (map_fd)
            self.n = 0
            self.unchecked = 0      # calls since the model's invariants were last checked (over the footprint)
            self.unrecounted = 0    # ... since they were last recounted over the whole state
            self.unobserved = 0     # ... since the target's memory maps were last compared with the model's
            self.dead = False
            self.swarm = use_swarm_rules(self)   # each step's rule in one draw (machine_rules.SwarmRules)

        def _name(self, prefix: str = "m") -> str:
            self.n += 1
            return f"{prefix}{self.n}"

        def _do(self, call: Call) -> int | None:
            if self.dead or (call.proc or "main") not in self.model.procs:
                return None     # killed by the OOM killer
            observed = self.stepper.step(call)
            if observed is None:
                return None
            self.unchecked += 1
            self.unrecounted += 1
            self.unobserved += 1
            return observed.value

        def _proc(self, who: int) -> str | None:
            """The process ``who`` (``WHO``) names: a live forked one for 6 and 7, else the main one."""
            if who < 6 or not self.live_procs:
                return None
            return self.live_procs[(who - 6) % len(self.live_procs)]

        def _owner(self, owners: set, who: int) -> str | None:
            """One of ``owners`` (processes that hold a descriptor or map a mapping; None: the main
            one) that is still alive, picked by ``who`` (0: the first, the main one if it is there)."""
            live = sorted(owners & ({None} | set(self.live_procs)), key=str)
            return live[who % len(live)] if live else None

        @needs("mmap")
        @rule(target=mappings, page=Ints(0, 63),
              kind=grid(range(1, 7), (False, True), ["hint", "hint", "fixed", "noreplace", "null"]),
              prot_who=PROT_WHO)
        def mmap(self, page: int, kind: tuple, prot_who: tuple) -> str:
            """An anonymous mapping of ``kind`` (pages, shared, how: a hint, MAP_FIXED,
            MAP_FIXED_NOREPLACE or no address) at ``page`` of the sandbox, in the process
            ``prot_who`` names."""
            (pages, shared, how), (prot, who) = kind, prot_who
            return self._mmap(page, pages, shared, how, prot, who)

        def _mmap(self, page: int, pages: int, shared: bool, how: str, prot: Flags, who: int) -> str:
            name = self._name()
            extra = {"fixed": ("MAP_FIXED",), "noreplace": ("MAP_FIXED_NOREPLACE",)}.get(how, ())
            addr = Flags(("NULL",)) if how == "null" else Int(SANDBOX_WINDOW[0] + page * PAGE, hex=True)
            flags = Flags(("MAP_SHARED" if shared else "MAP_PRIVATE",) + extra + ("MAP_ANONYMOUS",))
            call = Call("mmap", (addr, Int(pages * PAGE, hex=True), prot, flags, Int(-1), Int(0)), name, self._proc(who))
            v = self._do(call)
            self.map_owner[name] = {call.proc}
            return name if v is not None and v >= 0 else multiple()      # a failed mmap names nothing

        @needs("mmap")
        @initialize(target=mappings, page=Ints(0, 63), kind=grid(range(1, 7), (False, True)), prot=PROTS)
        def first_mapping(self, page: int, kind: tuple, prot: Flags) -> str:
            """An anonymous mapping in the main process before the first step, so that the rules on
            mappings can run from the start (without it the ``mappings`` bundle was empty in most
            steps, and those rules could not be chosen)."""
            pages, shared = kind
            return self._mmap(page, pages, shared, "hint", prot, 0)

        @needs("mprotect")
        @rule(base=mappings, span=SPANS, prot_who=PROT_WHO)
        def mprotect(self, base: str, span: tuple, prot_who: tuple) -> None:
            (page, pages), (prot, who) = span, prot_who
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("mprotect", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                       prot), None, self._proc(who)))

        @needs("munmap")
        @rule(base=mappings, span=SPANS, who=WHO)
        def munmap(self, base: str, span: tuple, who: int) -> None:
            page, pages = span
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("munmap", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True)),
                          None, self._proc(who)))

        @needs("load", "store", "fetch", any_of=True)
        @rule(base=mappings, offset=Ints(-PAGE, 6 * PAGE), op_who=grid(accesses or ["load"], WHOS))
        def access(self, base: str, offset: int, op_who: tuple) -> None:
            """A load, store or fetch; a store writes the address-derived pattern of the byte (and of
            the process), so a byte later read from the wrong page, offset or process shows."""
            op, who = op_who
            if base not in self.env:
                return
            if not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1] and not 0 <= offset < PAGE:
                offset = 0
            addr = Ref(base, offset) if offset else Ref(base)
            proc = self._proc(who)
            salt = 0 if proc is None else 1 + self.live_procs.index(proc)
            args = (addr, Int(gen_os.pattern(addr, salt), hex=True)) if op == "store" else (addr,)
            self._do(Call(op, args, None, proc))

        @needs("fork")
        @weight(FORK_WEIGHT)
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
        @rule(target=mappings, page=Ints(0, 63), kind=grid(range(1, 5), range(0, 6), (False, True)),
              prot=PROTS)
        def map_file(self, page: int, kind: tuple, prot: Flags) -> str:
            """A memfd of ``kind`` (pages mapped, size in half pages, shared), mapped at ``page``."""
            pages, size, shared = kind
            fd = self._name("fd")
            name = self._name()
            if self._do(Call("memfd_create", (Str("m"), Int(0)), fd, None)) is None:
                return multiple()
            self.fd_owner[fd] = {None}
            self._do(Call("ftruncate", (Ref(fd), Int(size * 2048, hex=size * 2048 >= 4096)), None, None))
            v = self._do(Call("mmap", (Int(SANDBOX_WINDOW[0] + page * PAGE, hex=True), Int(pages * PAGE, hex=True),
                                       prot, Flags(("MAP_SHARED" if shared else "MAP_PRIVATE",)), Ref(fd), Int(0)),
                              name, None))
            self.map_owner[name] = {None}
            return name if v is not None and v >= 0 else multiple()

        @needs("ftruncate", "memfd_create", "shm_open", "open_file", any_of=True)
        @rule(target=files, how=FILE_KINDS)
        def make_file(self, how: tuple) -> str:
            """A file that can be mapped (memfd, shm_open, open_file; the last two sometimes O_APPEND,
            so that write and pwrite go to its end), sized with ftruncate: ``how`` is (kind, size in
            half pages, append)."""
            return self._make_file(*how)

        @needs("ftruncate", "memfd_create", "shm_open", "open_file", any_of=True)
        @initialize(target=files, how=FILE_KINDS)
        def first_file(self, how: tuple) -> str:
            """A file before the first step (``make_file``), so that the rules on descriptors can run
            from the start, as ``first_mapping`` does for the rules on mappings."""
            return self._make_file(*how)

        def _make_file(self, kind: str, size: int, append: bool) -> str:
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
        @rule(target=mappings, fd=files, page=Ints(0, 63), kind=grid(range(1, 5), (False, True)))
        def map_fd(self, fd: str, page: int, kind: tuple) -> str:
            pages, shared = kind
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
        @weight(FILE_IO_WEIGHT)
        @rule(target=written, fd=files, what=grid(fd_calls or ["pread"], [1, 1, 1, 3, 0, PAGE + 1]),
              at=grid(range(0, 5), gen_os.BYTE_OFFSETS[::-1]), whence_who=grid(gen_os.WHENCE, WHOS))
        def fd_io(self, fd: str, what: tuple, at: tuple, whence_who: tuple) -> Any:
            """The descriptor path of a file: one of read, write, pread, pwrite, lseek (``what``: the
            call and a count), at ``at`` (a page and a byte of it), in a process that has the
            descriptor; the bytes written are the address-derived pattern of (fd, offset).
            A byte pwrite wrote joins ``written`` (read back by ``read_written``)."""
            (what, count), (page, byte), (whence, who) = what, at, whence_who
            proc = self._owner(self.fd_owner.get(fd, {None}), who)
            off = page * PAGE + byte
            value = Int(gen_os.pattern(Ref(fd, off) if off else Ref(fd)), hex=True)
            args: tuple = {"read": (Ref(fd),), "write": (Ref(fd), value, Int(count)),
                           "pread": (Ref(fd), Int(off, hex=off >= 4096)),
                           "pwrite": (Ref(fd), Int(off, hex=off >= 4096), value, Int(count)),
                           "lseek": (Ref(fd), Int(off, hex=off >= 4096), whence)}[what]
            v = self._do(Call(what, args, self._name("v"), proc))
            return (fd, off, proc) if what == "pwrite" and v and v > 0 else multiple()

        @needs("set_fsize_limit", "pwrite")
        @rule(fd=files, at=grid(range(0, 4), [0, 1, 2048, PAGE - 1], WHOS))
        def fsize_limit(self, fd: str, at: tuple) -> None:
            """RLIMIT_FSIZE set near the file's pages (``at``: a page, a byte of it, the process) in a
            process that has the descriptor, then a pwrite across the limit (cut short at it) and one
            at it (EFBIG), read back through the descriptor."""
            page, byte, who = at
            proc = self._owner(self.fd_owner.get(fd, {None}), who)
            lim = page * PAGE + byte
            self._do(Call("set_fsize_limit", (Int(lim, hex=lim >= 4096),), None, proc))
            for at, n in ((max(lim - 1, 0), 3), (lim, 1)):
                value = Int(gen_os.pattern(Ref(fd, at) if at else Ref(fd), 5), hex=True)
                self._do(Call("pwrite", (Ref(fd), Int(at, hex=at >= 4096), value, Int(n)), self._name("v"), proc))
            if runnable(allowed, "pread"):
                for at in (max(lim - 1, 0), lim):
                    self._do(Call("pread", (Ref(fd), Int(at, hex=at >= 4096)), self._name("v"), proc))

        @needs("map_pages")
        @rule(page=Ints(0, 127), n=Choose([1, 2, 3, 5, 0]), prot_who=PROT_WHO)
        def map_pages(self, page: int, n: int, prot_who: tuple) -> None:
            """A few one-page mappings with a hole after each (map_pages; EEXIST where a page is already
            mapped), then every page of them and of the holes read back."""
            prot, who = prot_who
            proc = self._proc(who)
            at = SANDBOX_WINDOW[0] + page * PAGE
            self._do(Call("map_pages", (Int(at, hex=True), Int(n), prot), self._name("v"), proc))
            if runnable(allowed, "load"):
                for k in range(2 * n):
                    self._do(Call("load", (Int(at + k * PAGE, hex=True),), None, proc))

        @needs("pread", "load", any_of=True)
        @weight(FILE_IO_WEIGHT)
        @rule(w=written, how=grid(runnable(allowed, "pread", "load") or ["pread"], ["at", "page", "next"], range(4)),
              who=WHO)
        def read_written(self, w: tuple, how: tuple, who: int) -> None:
            """A byte pwrite wrote, its page's first byte or the byte after it (``how``: the call, where,
            which mapping), read back through the descriptor (pread) or through a mapping of the file
            (load), in a process that has it."""
            how, where, pick = how
            fd, off, proc = w
            at = {"at": off, "page": off - off % PAGE, "next": off + 1}[where]
            maps = [m for m in self.fd_maps.get(fd, []) if m in self.env]
            if how == "load" and maps:
                base = maps[pick % len(maps)]
                self._do(Call("load", (Ref(base, at) if at else Ref(base),), None,
                              self._owner(self.map_owner.get(base, {None}), who)))
            elif runnable(allowed, "pread"):
                self._do(Call("pread", (Ref(fd), Int(at, hex=at >= 4096)), self._name("v"), proc))

        @needs("mseal")
        @rule(target=sealed, base=mappings,
              span=grid(range(0, 4), range(1, 4), ["range", "range", "range", "hole-before", "zero", "flags"]),
              who=WHO)
        def mseal(self, base: str, span: tuple, who: int) -> Any:
            """Seal part of a mapping (or a range with a hole, or with a flag); a sealed range joins
            ``sealed``, which ``meet_seal`` (and the munmap, mprotect, mremap, madvise and MAP_FIXED
            rules, on the same mappings) then meet.  ``span``: (first page, pages, how)."""
            page, pages, how = span
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return multiple()
            proc = self._proc(who)
            page -= how == "hole-before"
            pages *= how != "zero"
            v = self._do(Call("mseal", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                        Int(1 if how == "flags" else 0)), None, proc))
            return (base, page, pages, proc) if v == 0 and pages else multiple()

        @needs("munmap", "mprotect", "mremap", "madvise", "mmap", any_of=True)
        @rule(s=sealed, what=grid(runnable(allowed, "munmap", "mprotect", "mremap", "madvise", "mmap") or ["munmap"],
                                  [1, 0, 2, -1], range(1, 5)), arg=Ints(0, 63))
        def meet_seal(self, s: tuple, what: tuple, arg: int) -> None:
            """A call mseal forbids over a range that touches a sealed range (from one page before it):
            munmap, mprotect, mremap (resize or move), madvise with discarding advice, mmap MAP_FIXED.
            ``arg`` picks what the call needs besides the range: the protection (``gen_os.PROTS``),
            mremap's new size (1-5 pages) or the advice (``gen_os.DISCARD_ADVICE``).  ``what``: (the
            call, its first page from the sealed range's, pages)."""
            (what, first, pages), (base, page, n, proc) = what, s
            if base not in self.env:
                return
            start = page + min(first, n - 1)
            at = Ref(base, start * PAGE) if start else Ref(base)
            length = Int(pages * PAGE, hex=True)
            if what == "munmap":
                call = Call("munmap", (at, length), None, proc)
            elif what == "mprotect":
                call = Call("mprotect", (at, length, Flags(gen_os.PROTS[arg % len(gen_os.PROTS)])), None, proc)
            elif what == "mremap":
                call = Call("mremap", (at, length, Int((1 + arg % 5) * PAGE, hex=True),
                                       Flags(("MREMAP_MAYMOVE",)), Int(0)), self._name(), proc)
            elif what == "madvise":
                call = Call("madvise", (at, length, Flags((gen_os.DISCARD_ADVICE[arg % len(gen_os.DISCARD_ADVICE)],))),
                            None, proc)
            else:
                call = Call("mmap", (at, length, Flags(("PROT_READ",)), Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")),
                                     Int(-1), Int(0)), self._name(), proc)
            self._do(call)

        @needs("mmap")
        @rule(base=mappings, span=grid(range(-1, 4), range(1, 4)), prot_who=PROT_WHO)
        def map_fixed_over(self, base: str, span: tuple, prot_who: tuple) -> None:
            """mmap MAP_FIXED over (part of) a mapping: the old pages go, unless sealed."""
            (page, pages), (prot, who) = span, prot_who
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("mmap", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                   prot, Flags(("MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED")),
                                   Int(-1), Int(0)), self._name(), self._proc(who)))

        @needs("load")
        @rule(base=mappings, at=grid(range(1, 6), gen_os.BYTE_OFFSETS))
        def read_back(self, base: str, at: tuple) -> None:
            """Every page of a mapping and the page before and after it, in every process that maps
            it: what an earlier change (of the range, of the file, of the other process) did.
            ``at``: (pages, the byte of each page)."""
            pages, byte = at
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            procs = [p for p in [None] + self.live_procs if p in self.map_owner.get(base, {None})]
            for proc in procs:
                for page in range(-1, pages + 1):
                    off = page * PAGE + byte
                    self._do(Call("load", (Ref(base, off) if off else Ref(base),), None, proc))

        @needs("madvise")
        @rule(base=mappings, span=grid(range(0, 5), range(0, 4)), advice_who=grid(gen_os.ADVICE, WHOS))
        def madvise(self, base: str, span: tuple, advice_who: tuple) -> None:
            (page, pages), (advice, who) = span, advice_who
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            self._do(Call("madvise", (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True),
                                      Flags((advice,))), None, self._proc(who)))

        @needs("mlock", "munlock", "mlock2", any_of=True)
        @rule(base=mappings, span=grid(range(0, 5), range(0, 4), locks or ["mlock"]), who=WHO)
        def mlock(self, base: str, span: tuple, who: int) -> None:
            page, pages, lock = span
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            args = (Ref(base, page * PAGE) if page else Ref(base), Int(pages * PAGE, hex=True))
            if lock == "mlock2":
                args += (Flags(("MLOCK_ONFAULT",)),)
            self._do(Call(lock, args, None, self._proc(who)))

        @needs("mremap")
        @rule(target=mappings, base=mappings,
              how=grid(range(1, 4), range(1, 6), ["none", "maymove", "fixed", "dontunmap"]), page=Ints(64, 127))
        def mremap(self, base: str, how: tuple, page: int) -> str:
            """mremap of a mapping's first pages (``how``: old pages, new pages, how it may move) --
            to ``page`` of the sandbox when MREMAP_FIXED."""
            old, new, move = how
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
        @rule(base=mappings, what=grid(range(1, 5), observations or ["minflt"], WHOS))
        def observe_call(self, base: str, what: tuple) -> None:
            pages, what, who = what
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return
            if what == "mincore":
                c = Call("mincore", (Ref(base), Int(pages * PAGE, hex=True)), self._name("v"), self._proc(who))
            elif what == "pfn_of":
                c = Call("pfn_of", (Ref(base, (pages - 1) * PAGE) if pages > 1 else Ref(base),), self._name("v"),
                         self._proc(who))
            else:
                c = Call("minflt", (), self._name("v"), self._proc(who))
            self._do(c)

        @needs("memory_limit", "reclaim", "oom", "tick", any_of=True)
        @weight(PRESSURE_WEIGHT)
        @rule(event=grid(events or ["tick"], range(1, 25)))
        def pressure(self, event: tuple) -> None:
            event, n = event
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
        @rule(who=WHO)
        def exit(self, who: int) -> None:
            p = self.live_procs[who % len(self.live_procs)]
            self._do(Call("exit", (), None, p))
            if p in self.live_procs:
                self.live_procs.remove(p)

        @invariant()
        def checked_after_step(self) -> None:
            """What is checked after every step, in one invariant (each costs Hypothesis as much
            again): ``model_state_consistent`` after a step that made a call, then
            ``memory_maps_agree`` at each checkpoint (every ``observe_every`` calls)."""
            if self.unchecked:
                self.model_state_consistent()
            if self.unobserved >= observe_every:
                self.memory_maps_agree()

        def model_state_consistent(self) -> None:
            """Every law of the model's own state (``model/invariants.CHECKS``) after the step: over
            what the calls since the last check touched (their footprint), and recounted over the whole
            state at each checkpoint (every ``observe_every`` calls)."""
            self._laws(full=self.unrecounted >= observe_every)

        def memory_maps_agree(self) -> None:
            """The target's memory maps equal the model's (at each checkpoint)."""
            self._compare_maps()

        def _laws(self, full: bool) -> None:
            self.unchecked = 0
            if full:
                self.unrecounted = 0
            index = max(len(self.calls) - 1, 0)
            bad = invariant_failure(self.model, index, full)
            if bad is not None:
                raise ConformanceFailure(bad.clause, Program(tuple(self.calls)), index, bad.expected, bad.observed,
                                         f"{bad.note}: {law_of(self.model, bad.clause, CHECKS)}")

        def _compare_maps(self) -> None:
            self.unobserved = 0
            seen = self.stepper.observe()
            bad = None if seen is None or _same_maps(self.model, seen) else \
                compare_maps(self.model, seen, len(self.calls) - 1)
            if bad is not None:
                raise ConformanceFailure(bad.clause, Program(tuple(self.calls)), bad.index, bad.expected,
                                         bad.observed, bad.note)

        def teardown(self) -> None:
            try:
                # the end of a run that did not fail is a checkpoint (a failing one has already been
                # reported: its exception is on its way out through here)
                if sys.exc_info()[0] is None:
                    if self.unobserved:
                        self._compare_maps()
                    if self.unrecounted:
                        self._laws(full=True)
            finally:
                self.session.close()

    remove_unrunnable(OsMachine, allowed)
    OsMachine.__name__ = OsMachine.__qualname__ = f"OsMachine[{target.name}]"
    OsMachine.unsupported_steps = unsupported_steps     # type: ignore[attr-defined]
    return OsMachine
