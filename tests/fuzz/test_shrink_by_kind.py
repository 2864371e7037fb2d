"""The findings pipeline's minimiser shrinks every argument by its kind (specs/kinds.py)."""

from __future__ import annotations

from memspec.calls import CALLS
from memspec.consts import CONSTANTS
from memspec.fuzz.differential import _simpler_arg, failing_signature, minimise, shrink_failure
from memspec.program import Flags, Int, Program, Ref, Str, format_program, parse
from memspec.records import Outcome
from memspec.specs.kinds import kind_of
from memspec.targets.model import ModelSession, ModelTarget

PROT_EXEC = CONSTANTS["PROT_EXEC"]


class _ExecRefusedSession(ModelSession):
    """A seeded bug: mprotect with PROT_EXEC in its protection fails with EACCES, whatever else."""

    def call(self, call, args):
        if call.name == "mprotect" and args[2] & PROT_EXEC:
            return Outcome(value=-1, errno="EACCES")
        return super().call(call, args)


class ExecRefused(ModelTarget):
    name = "exec-refused"

    def session(self, layer: str = "os") -> ModelSession:
        return _ExecRefusedSession(layer)


PROGRAM = parse("""\
a = mmap(0x200000000, 0x9000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)
store(a+0x1005, 0x41)
b = mmap(NULL, 0x3000, PROT_READ, MAP_SHARED|MAP_ANONYMOUS, -1, 0)
x = load(b+0x10)
mprotect(a+0x2000, 0x5001, PROT_READ|PROT_WRITE|PROT_EXEC)
store(a+0x3000, 0x7f)
munmap(b, 0x3000)
""")


def test_the_kinds_come_from_the_call_table() -> None:
    assert kind_of(CALLS["mmap"], 0) == "addr" and kind_of(CALLS["mmap"], 1) == "size"
    assert kind_of(CALLS["mmap"], 2) == "flags" and kind_of(CALLS["shm_open"], 0) == "str"
    assert kind_of(CALLS["buddy_alloc"], 0) == "int" and kind_of(CALLS["set_pte"], 2) == "addr"


def test_each_kind_has_its_simpler_values() -> None:
    assert _simpler_arg("flags", Flags(("PROT_READ", "PROT_EXEC"))) == [Flags(("PROT_READ",)), Flags(("PROT_EXEC",))]
    assert _simpler_arg("flags", Int(0x5)) == [Int(0x1), Int(0x4)]          # a raw flag word loses bits
    assert _simpler_arg("addr", Int(0x200001234, hex=True))[0] == Int(0x200001000, hex=True)
    assert _simpler_arg("addr", Int(0x3000, hex=True)) == []              # an aligned address means where it is
    assert _simpler_arg("size", Int(0x5001, hex=True)) == [Int(0x1000, hex=True), Int(0x5000, hex=True)]
    assert _simpler_arg("size", Int(0x8000, hex=True)) == [Int(0x1000, hex=True), Int(0x4000, hex=True)]
    assert _simpler_arg("int", Int(10)) == [Int(0), Int(5)] and _simpler_arg("int", Int(0)) == []
    assert _simpler_arg("str", Str("/c0")) == [Str("/")]
    assert _simpler_arg("str", Str("/abcd")) == [Str("/"), Str("/a")]
    assert _simpler_arg("addr", Ref("a", 0x2003)) == [Ref("a"), Ref("a", 0x2000)]
    assert _simpler_arg("addr", Ref("a", 0x6000)) == [Ref("a"), Ref("a", 0x3000)]   # earlier: half as far
    assert _simpler_arg("addr", Ref("a")) == []


def test_a_seeded_flag_bug_shrinks_to_the_one_bit_and_the_calls_it_needs() -> None:
    target = ExecRefused()
    sig = failing_signature(target, PROGRAM, {})
    assert sig is not None and sig.call == "mprotect", sig
    assert failing_signature(ModelTarget(), PROGRAM, {}) is None
    small = shrink_failure(target, PROGRAM, {}, sig, budget=300)
    text = format_program(small)
    assert failing_signature(target, small, {}) == sig
    assert [c.name for c in small.calls] == ["mmap", "mprotect"], text
    mprotect = small.calls[-1]
    assert mprotect.args[2] == Flags(("PROT_EXEC",)), text              # the extra bits are gone
    assert mprotect.args[0] == Ref("a") and mprotect.args[1] == Int(0x1000, hex=True), text
    mmap = small.calls[0]
    assert mmap.args[1] == Int(0x1000, hex=True), text                  # the size: one page
    assert "MAP_POPULATE" not in mmap.args[3].names, text               # flags: what the failure needs


def test_minimise_keeps_what_the_failure_needs() -> None:
    # the failure needs PROT_WRITE and a length above two pages: neither may go
    def fails(p: Program) -> bool:
        return any(isinstance(c.args[2], Flags) and "PROT_WRITE" in c.args[2].names
                   and isinstance(c.args[1], Int) and c.args[1].value > 0x2000
                   for c in p.calls if c.name == "mprotect")
    small = minimise(PROGRAM, fails)
    assert len(small.calls) == 2 and fails(small), format_program(small)
    assert small.calls[-1].args[2] == Flags(("PROT_WRITE",))
    assert small.calls[-1].args[1] == Int(0x5000, hex=True)
