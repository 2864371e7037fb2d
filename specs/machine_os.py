"""The os layer's Hypothesis state machine, parameterised by target.

One machine over several processes: rules fork and exit processes, map anonymous
memory and files (memfd) privately and shared, change and remove mappings, make
accesses, advise, lock, remap, observe frames and residency, and -- on targets
that model it -- apply memory pressure (machine size, reclaim, the OOM killer).
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
    observations = runnable(allowed, "mincore", "pfn_of", "minflt")
    events = runnable(allowed, "memory_limit", "reclaim", "oom", "tick")
    unsupported_steps: dict[str, int] = {}      # clause -> steps the target refused to run

    class OsMachine(RuleBasedStateMachine):
        mappings = Bundle("mappings")
        procs = Bundle("procs")

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
              value=st.integers(0, 255), data=st.data())
        def access(self, base: str, offset: int, op: str, value: int, data: Any) -> None:
            if base not in self.env:
                return
            if not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1] and not 0 <= offset < PAGE:
                offset = 0
            addr = Ref(base, offset) if offset else Ref(base)
            args = (addr, Int(value, hex=True)) if op == "store" else (addr,)
            self._do(Call(op, args, None, self._proc(data)))

        @needs("fork")
        @precondition(lambda self: len(self.live_procs) < 2)
        @rule()
        def fork(self) -> None:
            name = f"p{len(self.live_procs) + self.n + 2}"
            self.n += 1
            if self._do(Call("fork", (), name, None)) is not None:
                self.live_procs.append(name)
                for owners in self.fd_owner.values():
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
            return name if v is not None and v >= 0 else multiple()

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
              move=st.sampled_from(["none", "maymove", "fixed"]), page=st.integers(64, 127))
        def mremap(self, base: str, old: int, new: int, move: str, page: int) -> str:
            if base not in self.env or not SANDBOX_WINDOW[0] <= self.env[base] < SANDBOX_WINDOW[1]:
                return multiple()
            name = self._name()
            flags = {"none": Int(0), "maymove": Flags(("MREMAP_MAYMOVE",)),
                     "fixed": Flags(("MREMAP_MAYMOVE", "MREMAP_FIXED"))}[move]
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
