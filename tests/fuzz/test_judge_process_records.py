"""What crosses to the judge process and back: programs, runs and judgements pickle to equal records
of the same types on every layer (and judged after the crossing, give the judgement the originals
give); every argument and outcome shape, the plain reductions' codes and the shapes that fall back to
field-by-field pickling; the unpickling tables when they start again; the verdicts and statuses by
name; and the judge process's inbox, however a pipe splits or joins its messages."""

from __future__ import annotations

import os
import pickle
import threading

import pytest

import memspec.program as program_mod
import memspec.records as records_mod
from memspec.fuzz.judge_process import _LEN, _READ, JudgeProcess, _frame, _Inbox
from memspec.fuzz.layers import random_programs
from memspec.program import Call, Flags, Int, Program, Ref, Str
from memspec.records import (OK, Check, Judgement, Mapping, Observation, Outcome, RunResult, RunStatus,
                             Verdict)
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget


def _crossed(obj, protocol=pickle.HIGHEST_PROTOCOL):
    return pickle.loads(pickle.dumps(obj, protocol))


def _same_shape(a, b) -> None:
    """Equal, and of the same types all the way down (a code read back as another record would be
    equal to nothing, but an Int read back as a Ref could be mistaken for it by a careless eye)."""
    assert type(a) is type(b)
    assert a == b
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_shape(x, y)
    elif type(a) is Program:
        _same_shape(a.calls, b.calls)
        _same_shape(a.header, b.header)
    elif type(a) is Call:
        _same_shape((a.name, a.result, a.proc), (b.name, b.result, b.proc))
        _same_shape(a.args, b.args)
    elif type(a) in (Int, Ref, Flags, Str, Mapping):
        for f in a.__dataclass_fields__:
            assert type(getattr(a, f)) is type(getattr(b, f))
    elif type(a) is RunResult:
        _same_shape(a.outcomes, b.outcomes)
        _same_shape(a.observations, b.observations)
        assert a.status is b.status and a.message == b.message
    elif type(a) is Observation:
        _same_shape(a.maps, b.maps)
    elif type(a) is Outcome:
        assert b is OK if a is OK else True          # an outcome equal to OK crosses as OK itself
        for f in ("value", "errno", "signal", "detail"):
            assert type(getattr(a, f)) is type(getattr(b, f))


@pytest.mark.parametrize("layer", ["os", "hw", "phys", "virt"])
def test_records_of_every_layer_cross_equal_and_judge_the_same(layer):
    t = ModelTarget()
    facts = t.facts()
    for k, (_, p) in enumerate(random_programs(layer, 30, 11, t.calls, facts)):
        run = t.run(p, observe="each" if k % 2 else "end")
        j = judge(p, run, "model", facts)
        for protocol in (2, 4, pickle.HIGHEST_PROTOCOL):
            p2, run2 = _crossed(p, protocol), _crossed(run, protocol)
            _same_shape(p, p2)
            _same_shape(run, run2)
            assert _crossed(j, protocol) == j
        # the records read back here are the judge process's: judged, they give the same judgement
        assert judge(p2, run2, "model", facts) == j
        assert _crossed(_crossed(p)) == p and _crossed(_crossed(run)) == run       # the tables warm
        back = _crossed(j.detached(run.outcomes)).attach(run.outcomes)
        assert back == j and back.checks == j.checks


def test_every_argument_shape_crosses_as_itself():
    calls = (
        Call("mmap", (Int(0), Int(8192), Flags(("PROT_READ", "PROT_WRITE")), Flags(("MAP_PRIVATE",)),
                      Int(-1), Int(0x1000, True)), result="a"),
        Call("mprotect", (Ref("a"), Int(4096), Flags(())), proc="p2"),
        Call("munmap", (Ref("a", 4096), Ref("a", -0x1000), Int((1 << 64) - 1, True), Int(-(1 << 63)))),
        Call("open", (Str("a \"name\"\n\u00e9"), Str(""), Int(1), Int(1, True))),
        Call("fork", result="p2"),
        Call("getpid"),
    )
    p = Program(calls, (("target", "linux"), ("seed", "3")))
    assert p.__reduce__()[0] is program_mod._program          # the rows, not field by field
    _same_shape(p, _crossed(p))
    _same_shape(p, _crossed(_crossed(p)))


@pytest.mark.parametrize("odd", [
    Int(True),                          # a bool where an int belongs: 1 would come back
    Int(5, 1),                          # a hex flag that is not a bool
    Ref("a", True),
    Flags(("A", 5)),                    # a name that is not a str
    Flags((None, "x")),                 # would read back as a Str
    Flags(["A"]),                       # not a tuple
    Str(b"x"),
    Int(1.5),
])
def test_an_argument_the_codes_do_not_stand_for_crosses_field_by_field(odd):
    p = Program((Call("mmap", (Int(0), odd)),))
    assert p.__reduce__()[0] is Program
    back = _crossed(p)
    assert back == p
    assert type(back.calls[0].args[1]) is type(odd)
    for f in odd.__dataclass_fields__:
        assert type(getattr(back.calls[0].args[1], f)) is type(getattr(odd, f))


def test_calls_the_codes_do_not_stand_for_cross_field_by_field():
    class Mine(Int):
        pass
    for p in (Program([Call("getpid")]), Program((Call("munmap", [Int(0)]),)), Program((Call("x", (Mine(3),)),))):
        assert p.__reduce__()[0] is Program
    assert _crossed(Program((Call("munmap", [Int(0)]),))).calls[0].args == [Int(0)]


def test_every_outcome_shape_crosses_as_itself():
    outcomes = (OK, Outcome(), Outcome(0), Outcome(-1, "EINVAL"), Outcome(None, "ENOMEM"), Outcome(1 << 63),
                Outcome(signal="SIGSEGV", detail=(("cr2", 0x1000), ("errcode", 6))),
                Outcome(None, None, "SIGBUS"), Outcome(7, detail=(("x", 1),)),
                Outcome("v"), Outcome(None, 5), Outcome(True), Outcome(3, "EBADF", "SIGSEGV"))
    run = RunResult(outcomes, ((0, Observation()), (3, Observation((("main", ()),), (("faults", {"main": [1, 0]}),)))),
                    RunStatus.CRASH, "died")
    assert run.__reduce__()[0] is records_mod._run
    back = _crossed(run)
    _same_shape(run, back)
    assert back.outcomes[0] is OK and back.outcomes[1] is OK       # the OK the judge finds by identity
    assert back.outcomes[2] is not OK
    # a detail that does not hash (a target's dict) crosses too, beside the others
    loose = RunResult((Outcome(0), Outcome(signal="SIGSEGV", detail=(("regs", {"rip": 1}),)), Outcome(0)))
    _same_shape(loose, _crossed(loose))


def test_runs_the_codes_do_not_stand_for_cross_field_by_field():
    class MyMapping(Mapping):
        pass
    class MyOutcome(Outcome):
        __slots__ = ()
    odd = [
        RunResult([Outcome(0)]),
        RunResult((Outcome(0),), [(0, Observation())]),
        RunResult((Outcome(0),), ((0, Observation((("main", [Mapping(0, 4096, "r--p")]),))),)),
        RunResult((Outcome(0),), ((0, Observation([("main", (Mapping(0, 4096, "r--p"),))])),)),
        RunResult((Outcome(0),), ((0, 1, Observation()),)),
    ]
    for run in odd:
        assert run.__reduce__()[0] is RunResult
        back = _crossed(run)
        assert back == run
        _same_shape(run.outcomes, back.outcomes)
        _same_shape(run.observations, back.observations)
    # (a subclass of Outcome or Mapping crosses as its own reduction says: the run's codes leave it to it)
    assert RunResult((MyOutcome(0),)).__reduce__()[0] is RunResult
    mine = Observation((("main", (MyMapping(0, 4096, "r--p"),)),))
    assert RunResult((Outcome(0),), ((0, mine),)).__reduce__()[0] is RunResult


def test_the_tables_start_again_when_full(monkeypatch):
    monkeypatch.setattr(program_mod, "_TABLE_MAX", 5)
    monkeypatch.setattr(records_mod, "_TABLE_MAX", 5)
    t = ModelTarget()
    facts = t.facts()
    for _, p in random_programs("os", 20, 4, t.calls, facts):
        run = t.run(p, observe="each")
        _same_shape(p, _crossed(p))
        _same_shape(run, _crossed(run))
        for table in (program_mod._ARGS, program_mod._CALLS, records_mod._OUTCOMES, records_mod._MAPPINGS):
            assert len(table) <= 5
    monkeypatch.undo()
    for table in (program_mod._ARGS, program_mod._CALLS, records_mod._OUTCOMES, records_mod._MAPPINGS):
        table.clear()
    assert _crossed(RunResult((OK, Outcome(2)))).outcomes[0] is OK


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_verdicts_and_statuses_cross_as_themselves(protocol):
    for v in list(Verdict) + list(RunStatus):
        assert _crossed(v, protocol) is v
    c = Check("posix.mmap.einval-len0", Verdict.FAIL, 3, "EINVAL", "0", "a note", "checkpoint")
    j = Judgement("linux", [c], RunStatus.HANG, "slow", {"fault_path": {"faults_minor": 1}})
    j.add_pass("linux.mmap.hint-used-when-free", Verdict.PASS, 0, "0x1000", Outcome(4096))
    j.add_pass("posix.fork.copies-address-space", Verdict.IMPL_DEFINED, 1, "a process id", OK)
    back = _crossed(j, protocol)
    assert back == j and back.checks[1].verdict is Verdict.PASS and back.status is RunStatus.HANG


def _write_slowly(fd: int, data: bytes, step: int) -> None:
    for k in range(0, len(data), step):
        os.write(fd, data[k:k + step])


@pytest.mark.parametrize("step", [1, 3, 4096, 1 << 20])
def test_the_inbox_takes_each_message_however_the_pipe_splits_or_joins_them(step):
    msgs = [("run", k, "x" * (k * 37)) for k in range(20)] + [("big", b"y" * (3 * _READ + 5)), ("end",)]
    data = b"".join(bytes(_frame(m)) for m in msgs)
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (_write_slowly(w, data, step), os.close(w)))
    writer.start()
    try:
        inbox = _Inbox(r)
        got = [inbox.take() for _ in msgs]
        assert got == msgs
        assert not inbox.ready() and not inbox.pending()
        with pytest.raises(EOFError):
            inbox.take()
    finally:
        writer.join()
        os.close(r)


def test_the_inbox_knows_a_whole_message_is_read_and_an_end_midway_is_an_end():
    r, w = os.pipe()
    try:
        inbox = _Inbox(r)
        one, two = bytes(_frame(("a", 1))), bytes(_frame(("b", 2)))
        os.write(w, one + two[:5])
        assert inbox.take() == ("a", 1)          # both read at once: the second is partly there
        assert not inbox.ready() and inbox.pending()
        os.write(w, two[5:])
        assert inbox.take() == ("b", 2)
        os.write(w, one + two)
        assert inbox.take() == ("a", 1) and inbox.ready()      # the second taken without a read
        os.close(w)
        w = -1
        assert inbox.take() == ("b", 2)
        r2, w2 = os.pipe()
        os.write(w2, _LEN.pack(100) + b"partial")
        os.close(w2)
        with pytest.raises(EOFError):
            _Inbox(r2).take()
        os.close(r2)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_answers_read_together_are_each_the_judgement_here():
    t = ModelTarget()
    facts = t.facts()
    cases = []
    for k, (_, p) in enumerate(random_programs("os", 24, 6, t.calls, facts)):
        run = t.run(p, observe="each" if k % 3 else "end")
        cases.append((p, run, judge(p, run, "model", facts)))
    with JudgeProcess(lambda p, r: judge(p, r, "model", facts)) as jp:
        for k in range(0, len(cases), 8):           # eight asked, then taken: answers queue in the pipe
            batch = cases[k:k + 8]
            for p, run, _ in batch:
                jp.submit(p, run)
            for _, _, here in batch:
                assert jp.result() == here


def test_a_judgement_with_outcomes_not_the_runs_own_crosses_entry_by_entry():
    from memspec.records import Judgement, Outcome, Verdict
    outcomes = (Outcome(5), Outcome(errno="EINVAL"), Outcome(7))
    j = Judgement("t")
    j.add_pass("c.a", Verdict.PASS, 0, "x", outcomes[0])
    j.add_pass("c.b", Verdict.PASS, 1, "y", Outcome(errno="EINVAL"))     # equal, not the run's own object
    j.add_pass("c.c", Verdict.PASS, 2, "z", outcomes[2])
    light = j.detached(outcomes)
    back = _crossed(light).attach(outcomes)
    assert back._checks[1][4] is not outcomes[1] and back._checks[2][4] is outcomes[2]
    assert back == j


def test_outcomes_cross_by_value_as_one_object_and_with_detail_as_themselves():
    from memspec.records import OK, Outcome
    a, b = Outcome(0x7000), Outcome(0x7000)
    a2, b2 = _crossed((a, b))
    assert a2 == a and a2 is b2                  # one object for equal values
    assert _crossed(OK) is OK
    d = Outcome(signal="SIGSEGV", detail=(("errcode", 6),))
    d2 = _crossed(d)
    assert d2 == d and d2.detail == d.detail and d2 is not _crossed(d)
