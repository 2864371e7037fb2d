"""Mutation that keeps structure: programs in, programs out.

A byte flip in a fuzz input changes every decision after it, so the program it decodes to shares
little with its parent.  ``Mutator`` changes a program the way a person would, one step at a time
(syzkaller's prog/mutation.go does the same for system calls):

* **insert** a call the layer's generator made (``specs/gen_<layer>.py``, driven by the byte
  chooser over random bytes) at any point;
* **delete** a call (and the calls that used its result);
* **splice** a run of calls from another program of the corpus;
* **change one argument** by its kind (``specs/kinds.py``): a flag set gains or loses one constant
  of its group, an address moves by a page or a few bytes, a size doubles, halves or steps over a
  page boundary, a number steps or becomes an edge value, a named result's offset moves or the
  argument names another earlier result, a string grows or shrinks.

Grafted calls get fresh result names; a reference to a result the graft does not bring is bound to
an earlier result of the host program of the same kind, a process prefix to a live process.  Every
mutant is validated: it parses, and every named result it uses is defined before it is used.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from memspec.program import Arg, Call, Flags, Int, Program, ProgramError, Ref, Str, validate
from memspec.specs.kinds import group_of, kind_of

from .bytes import encode_text
from .differential import without_calls

PAGE = 4096
MAX_CALLS = 64
_EDGES = (0, 1, -1, PAGE - 1, PAGE, PAGE + 1, 1 << 21, 1 << 31, 1 << 32, (1 << 47) - PAGE, (1 << 63) - 1)

Generate = Callable[[bytes], Program]        # random bytes -> a program of the layer (the codec)


def _num(v: int) -> Int:
    v = max(min(v, (1 << 64) - 1), -(1 << 63))
    return Int(v, hex=abs(v) >= PAGE)


class Mutator:
    """Structure-keeping mutations of programs of one layer; ``generate`` makes donor programs.  Each
    operation returns a valid program different from its input, or None when it cannot apply."""

    OPS = ("insert", "delete", "splice", "argument")

    def __init__(self, generate: Generate, rng: random.Random | None = None, max_calls: int = MAX_CALLS):
        self.generate = generate
        self.rng = rng or random.Random()
        self.max_calls = max_calls

    # -- the operations ---------------------------------------------------------------

    def mutate(self, program: Program, others: Sequence[Program] = (), rounds: int = 0) -> Program:
        """``program`` changed by 1..3 operations (``rounds``: exactly that many); always valid."""
        r = self.rng
        for _ in range(rounds or r.randint(1, 3)):
            for _attempt in range(8):
                op = r.choice(self.OPS) if program.calls else "insert"
                cand = getattr(self, op)(program, others)
                if cand is not None:
                    program = cand
                    break
        return program

    def insert(self, program: Program, others: Sequence[Program] = ()) -> Program | None:
        if len(program.calls) >= self.max_calls:
            return None
        donor = self._donor()
        if not donor.calls:
            return None
        k = self.rng.randrange(len(donor.calls))
        return self._graft(program, self.rng.randint(0, len(program.calls)), donor, k, k + 1)

    def delete(self, program: Program, others: Sequence[Program] = ()) -> Program | None:
        if not program.calls:
            return None
        p = without_calls(program, {self.rng.randrange(len(program.calls))})
        return p if p is not None and p.calls else None      # never the empty program: nothing to run

    def splice(self, program: Program, others: Sequence[Program] = ()) -> Program | None:
        pool = [o for o in others if o.calls and o.layer == program.layer] or [self._donor()]
        other = self.rng.choice(pool)
        if not other.calls:
            return None
        room = self.max_calls - len(program.calls)
        if room <= 0:
            return None
        start = self.rng.randrange(len(other.calls))
        return self._graft(program, self.rng.randint(0, len(program.calls)), other, start,
                           start + self.rng.randint(1, min(room, 8)))

    def argument(self, program: Program, others: Sequence[Program] = ()) -> Program | None:
        calls = [i for i, c in enumerate(program.calls) if c.args]
        if not calls:
            return None
        i = self.rng.choice(calls)
        c = program.calls[i]
        j = self.rng.randrange(len(c.args))
        new = self.change(c, j, _defined_before(program, i))
        if new is None or new == c.args[j]:
            return None
        return _checked(program.with_calls(program.calls[:i] + (Call(c.name, c.args[:j] + (new,) + c.args[j + 1:],
                                                                     c.result, c.proc),) + program.calls[i + 1:]))

    # -- one argument by its kind -------------------------------------------------------

    def change(self, c: Call, j: int, defined: dict[str, str]) -> Arg | None:
        r = self.rng
        a = c.args[j]
        kind = kind_of(c.spec, j)
        if isinstance(a, Str):
            return Str(a.value[:-1]) if a.value and r.random() < 0.5 else Str(a.value + r.choice("/abcxyz0"))
        if isinstance(a, Ref):
            same = [n for n, what in defined.items() if what == defined.get(a.name) and n != a.name]
            if same and r.random() < 0.3:
                return Ref(r.choice(same), a.offset)
            return Ref(a.name, a.offset + r.choice((PAGE, -PAGE, 1, -1, 2 * PAGE, -a.offset)))
        if kind == "flags":
            return self._flags(a, group_of(c.spec, j))
        if isinstance(a, Flags):            # NULL and the like in a numeric parameter
            return _num(r.choice(_EDGES))
        v = a.value
        if kind == "addr":
            return _num(r.choice((v + PAGE, v - PAGE, v + 1, v + 8, v & ~(PAGE - 1), v ^ (1 << r.randrange(48)))))
        if kind == "size":
            return _num(r.choice((v * 2, v // 2, v + PAGE, max(v - PAGE, 0), v + 1, v - 1, PAGE, 0)))
        return _num(r.choice((v + 1, v - 1, 0, -1, v ^ (1 << r.randrange(8)), r.choice(_EDGES))))

    def _flags(self, a: Arg, group: dict[str, int]) -> Arg | None:
        r = self.rng
        names = list(a.names) if isinstance(a, Flags) else []
        if isinstance(a, Int) and a.value:          # a raw word: flip one bit of it
            return _num(a.value ^ (1 << r.randrange(max(a.value.bit_length() + 1, 8))))
        if names and (r.random() < 0.4 or not group):
            names.pop(r.randrange(len(names)))
        elif group:
            pick = r.choice(sorted(group))
            if pick in names:
                names.remove(pick)
            else:
                names.append(pick)
        return Flags(tuple(names)) if names else Int(0)

    # -- plumbing --------------------------------------------------------------------------

    def _donor(self) -> Program:
        # a short input: a few calls with their context (the mappings, blocks or tables they use)
        return self.generate(bytes(self.rng.randrange(256) for _ in range(self.rng.randint(24, 96))))

    def _graft(self, program: Program, at: int, donor: Program, start: int, end: int) -> Program | None:
        """``donor``'s calls ``start:end`` inserted before call ``at``, with fresh result names; a
        reference to a result made outside the run names an earlier result of ``program`` that holds
        the same kind of thing (else any earlier number), a process prefix a live process."""
        r = self.rng
        run = donor.calls[start:end]
        kinds = {c.result: c.spec.returns for c in donor.calls if c.result}
        defined = _defined_before(program, at)
        live = _live_procs(program, at)
        taken = {c.result for c in program.calls if c.result} | {c.proc for c in program.calls if c.proc}
        renamed: dict[str, str] = {}
        out: list[Call] = []
        for c in run:
            proc = c.proc
            if proc is not None:
                proc = renamed.get(proc) or (r.choice(sorted(live)) if live else None)
                if proc is None and c.spec.not_main:
                    continue
                if c.name == "exit":
                    live.discard(proc)
            args: list[Arg] = []
            for a in c.args:
                if isinstance(a, Ref):
                    want = kinds.get(a.name, "addr")
                    name = renamed.get(a.name) or _pick(r, [n for n, w in defined.items() if w == want]) \
                        or _pick(r, [n for n, w in defined.items() if w != "proc"])
                    if name is None:
                        break
                    a = Ref(name, a.offset)
                args.append(a)
            else:
                result = c.result
                if result is not None:
                    result = _fresh(taken, "p" if c.spec.returns == "proc" else "m")
                    renamed[c.result] = result
                    defined[result] = c.spec.returns
                    if c.spec.returns == "proc":
                        live.add(result)
                out.append(Call(c.name, tuple(args), result, proc))
        if not out:
            return None
        return _checked(program.with_calls(program.calls[:at] + tuple(out) + program.calls[at:]))


def _checked(p: Program) -> Program | None:
    """``p`` if it is a valid program (it parses back; every named result is defined before use)."""
    try:
        validate(p)
    except ProgramError:
        return None
    return p


def _defined_before(program: Program, at: int) -> dict[str, str]:
    """The named results defined before call ``at``: name -> what they hold (addr, value, proc)."""
    return {c.result: c.spec.returns for c in program.calls[:at] if c.result}


def _live_procs(program: Program, at: int) -> set[str]:
    live: set[str] = set()
    for c in program.calls[:at]:
        if c.spec.returns == "proc" and c.result:
            live.add(c.result)
        if c.name == "exit" and c.proc:
            live.discard(c.proc)
    return live


def _pick(r: random.Random, names: list[str]) -> str | None:
    return r.choice(sorted(names)) if names else None


def _fresh(taken: set[str], stem: str) -> str:
    n = len(taken)
    while f"{stem}{n}" in taken:
        n += 1
    taken.add(f"{stem}{n}")
    return f"{stem}{n}"


def mutator_for(layer: Any, calls: frozenset[str] | None, facts: dict[str, Any] | None,
                rng: random.Random | None = None) -> Mutator:
    """A mutator whose inserted calls come from ``layer``'s generator (a ``fuzz.layers.Layer``), limited
    to ``calls`` and shaped by ``facts`` as the codec's programs are."""
    return Mutator(lambda data: layer.decode(data, calls, facts), rng)


def mutate_program_input(mutator: Mutator, decode: Callable[[bytes], Program], data: bytes,
                         others: Sequence[bytes] = (), max_size: int | None = None) -> tuple[bytes, Program] | None:
    """A fuzz input mutated as a program: ``data`` decoded, mutated, written as a text input (which
    every codec decodes back to the same program), with that program.  None when ``data`` decodes to
    no call or the mutant does not fit in ``max_size`` bytes."""
    p = decode(data)
    if not p.calls:
        return None
    donors = [q for q in (decode(o) for o in others) if q.calls]
    q = mutator.mutate(p, donors)
    out = encode_text(q)
    return (out, q) if q.calls and q != p and (max_size is None or len(out) <= max_size) else None


def mutate_input(mutator: Mutator, decode: Callable[[bytes], Program], data: bytes,
                 others: Sequence[bytes] = (), max_size: int | None = None) -> bytes | None:
    """``mutate_program_input`` without the program."""
    got = mutate_program_input(mutator, decode, data, others, max_size)
    return got[0] if got else None


def libfuzzer_mutator(mutator: Mutator, decode: Callable[[bytes], Program], byte_mutate: Callable[[bytes, int], bytes],
                      share: float = 0.5) -> Callable[[bytes, int, int], bytes]:
    """A libFuzzer custom mutator (``atheris.Setup(..., custom_mutator=...)``): a ``share`` of the
    mutations keep structure, the rest are libFuzzer's own byte mutations (``byte_mutate``:
    ``atheris.Mutate``), so text and byte inputs both stay in play."""
    def custom(data: bytes, max_size: int, seed: int) -> bytes:
        mutator.rng.seed(seed)
        if mutator.rng.random() < share:
            out = mutate_input(mutator, decode, data, max_size=max_size)
            if out is not None:
                return out
        return byte_mutate(data, max_size)
    return custom


__all__ = ["Mutator", "mutator_for", "mutate_input", "mutate_program_input", "libfuzzer_mutator"]
