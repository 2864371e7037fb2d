"""Program text: strict parsing with line and column, and parse(print(p)) == p."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memspec.calls import CALLS
from memspec.errors import ProgramError
from memspec.program import Call, Flags, Int, Program, Ref, Str, format_program, parse, validate
from memspec.consts import GROUPS

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
CONSTS = st.sampled_from(sorted(n for g in GROUPS.values() for n in g))


@st.composite
def programs(draw: st.DrawFn) -> Program:
    layer = draw(st.sampled_from(sorted({c.layer for c in CALLS.values()})))
    specs = [c for c in CALLS.values() if c.layer == layer]
    calls: list[Call] = []
    numbers: list[str] = []
    procs: list[str] = []
    for _ in range(draw(st.integers(1, 12))):
        spec = draw(st.sampled_from(specs))
        if spec.not_main and not procs:
            continue
        args = []
        for p in spec.params:
            if p.kind == "str":
                args.append(Str(draw(st.text(max_size=12))))
                continue
            kind = draw(st.sampled_from(["int", "flags", "ref"] if numbers else ["int", "flags"]))
            if kind == "int":
                v = draw(st.integers(-(1 << 63), (1 << 64) - 1))
                args.append(Int(v, hex=draw(st.booleans())))
            elif kind == "flags":
                args.append(Flags(tuple(draw(st.lists(CONSTS, min_size=1, max_size=3)))))
            else:
                off = draw(st.integers(-(1 << 20), 1 << 20))
                args.append(Ref(draw(st.sampled_from(numbers)), off))
        proc = draw(st.sampled_from(procs)) if procs and spec.not_main else (
            draw(st.sampled_from([None] + procs)) if procs and spec.returns != "proc" else None)
        result = None
        if spec.returns == "proc":
            result = f"p{len(procs) + 2}"
            procs.append(result)
        elif spec.returns != "none" and draw(st.booleans()):
            result = draw(NAMES)
            if result in procs:
                result = None
            else:
                numbers.append(result)
        if spec.name == "exit" and proc:
            procs.remove(proc)
        calls.append(Call(spec.name, tuple(args), result, proc))
    header = tuple(draw(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
                                           st.from_regex(r"[ -~]{0,20}", fullmatch=True).map(str.strip)), max_size=3)))
    p = Program(tuple(calls), header)
    from hypothesis import assume
    assume(p.calls)
    try:
        validate(p)
    except ProgramError:
        assume(False)
    return p


@settings(max_examples=150, deadline=None)
@given(programs())
def test_parse_print_roundtrip(p: Program) -> None:
    text = format_program(p)
    assert parse(text) == p, text


def test_example_from_the_issue_parses_and_prints_canonically() -> None:
    text = ("a = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "store(a+4096, 0x41)\n"
            "mprotect(a, 4096, PROT_READ)\n")
    p = parse(text)
    assert p.calls[1].args[0] == Ref("a", 4096)
    assert format_program(p).splitlines()[1] == "store(a+0x1000, 0x41)"
    assert parse(format_program(p)) == p


def test_keywords_and_defaults_normalise_to_positional() -> None:
    p = parse("b = mmap(length=4096, prot=PROT_READ, flags=MAP_SHARED|MAP_ANONYMOUS)")
    assert format_program(p).strip() == "b = mmap(0, 4096, PROT_READ, MAP_SHARED|MAP_ANONYMOUS, -1, 0)"


@pytest.mark.parametrize("text, line, col, words", [
    ("a = mmap(", 1, 10, "expected an argument"),
    ("store(b, 1)", 1, 1, "'b' is not defined"),
    ("x = foo()", 1, 5, "unknown call 'foo'"),
    ("munmap(1, 2, 3)", 1, 14, "takes 2 arguments"),
    ("store(a+, 1)", 1, 9, "expected a number"),
    ("p2: store(0, 1)", 1, 1, "not a process"),
    ("mprotect(0, 4096, PROT_BOGUS)", 1, 1, "unknown constant 'PROT_BOGUS'"),
    ("load(0) junk", 1, 9, "unexpected 'junk'"),
    ("load(007)", 1, 6, "leading zeros"),
    ("fork()", 1, 1, "needs a result name"),
    ("\n\n  load(0x1000, 2)", 3, 16, "takes 1 arguments"),
    ("load(0)\nexit()", 2, 1, "needs a forked process"),
    ("load(addr=1, addr=2)", 1, 14, "given twice"),
    ("load(@)", 1, 6, "unexpected character"),
    ('load("x")', 1, 1, "must be a number"),
])
def test_errors_name_line_and_column(text: str, line: int, col: int, words: str) -> None:
    with pytest.raises(ProgramError) as e:
        parse(text, source="t.mst")
    assert (e.value.line, e.value.col) == (line, col), str(e.value)
    assert words in e.value.message
    assert str(e.value).startswith(f"t.mst:{line}:{col}: ")


def test_exited_process_cannot_call_again() -> None:
    with pytest.raises(ProgramError, match="already exited"):
        parse("p2 = fork()\np2: exit()\np2: load(0)")


def test_header_is_kept_and_comments_elsewhere_are_not() -> None:
    p = parse("# memspec-program: 1\n# target: linux\nload(0)\n# not a header: later\nload(1)\n")
    assert p.header == (("memspec-program", "1"), ("target", "linux"))
    assert p.meta("target") == "linux"
    assert len(p.calls) == 2


# --- numbers are 64-bit values: a wider one is an error, never wrapped -----------------

WIDE = "0x1000000000000000000000000000000000000000"


def test_a_length_wider_than_64_bits_is_an_error_not_length_0() -> None:
    text = f"a = mmap(NULL, {WIDE}, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
    with pytest.raises(ProgramError) as e:
        parse(text, source="wide.mst")
    assert (e.value.line, e.value.col) == (1, 16), str(e.value)
    assert "does not fit in 64 bits" in e.value.message


@pytest.mark.parametrize("text, col", [
    ("load(0x10000000000000000)", 6),            # 2**64
    ("load(18446744073709551616)", 6),           # 2**64 in decimal
    ("load(" + "9" * 5000 + ")", 6),             # more digits than int() converts
    ("load(-0x8000000000000001)", 6),            # below the signed 64-bit minimum: column of the sign
    ("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nload(a+0x10000000000000000)", 7),
    ("a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nload(a-0x8000000000000001)", 7),
])
def test_numbers_outside_64_bits_are_errors(text: str, col: int) -> None:
    with pytest.raises(ProgramError) as e:
        parse(text)
    assert e.value.col == col and e.value.line == text.count("\n") + 1, str(e.value)
    assert "does not fit in 64 bits" in e.value.message and len(str(e.value)) < 300


def test_the_widest_64_bit_values_are_kept() -> None:
    p = parse("a = mmap(NULL, 0xffffffffffffffff, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
              "load(18446744073709551615)\nload(-0x8000000000000000)\nload(-9223372036854775808)\n"
              "load(a+0xffffffffffffffff)\n")
    assert p.calls[0].args[1] == Int((1 << 64) - 1, hex=True)
    assert p.calls[0].args[4] == Int(-1)
    assert p.calls[1].args[0] == Int((1 << 64) - 1)
    assert p.calls[2].args[0] == Int(-(1 << 63), hex=True) and p.calls[3].args[0] == Int(-(1 << 63))
    assert p.calls[4].args[0] == Ref("a", (1 << 64) - 1)
    assert parse(format_program(p)) == p


# --- a program makes at least one call, in a format version this parser reads -----------

@pytest.mark.parametrize("text, line", [
    ("", 1),
    ("\n\n", 3),
    ("# memspec-program: 1\n# target: model\n", 3),
    ("# memspec-program: 1\n# only comments\n\n", 4),
])
def test_a_program_without_a_call_is_an_error(text: str, line: int) -> None:
    with pytest.raises(ProgramError) as e:
        parse(text, source="empty.mst")
    assert (e.value.line, e.value.col) == (line, 1) and "no call" in e.value.message, str(e.value)
    # the harness's own transport (a fuzzer's empty input) may still carry one
    assert parse(text, allow_empty=True).calls == ()


@pytest.mark.parametrize("version", ["99", "2", "", "1.0"])
def test_an_unknown_format_version_is_an_error(version: str) -> None:
    with pytest.raises(ProgramError) as e:
        parse(f"#  memspec-program: {version}\nload(0)\n", source="v.mst")
    assert (e.value.line, e.value.col) == (1, 21 if version else 20), str(e.value)   # the value, or the line's end
    assert "format version" in e.value.message


def test_cli_replay_of_an_empty_or_unknown_version_program_is_exit_2(tmp_path, capsys) -> None:
    from memspec.commands.cli import main
    for name, text, where in [("empty.mst", "", ":1:1:"), ("header.mst", "# memspec-program: 1\n# target: model\n", ":3:1:"),
                              ("v99.mst", "# memspec-program: 99\n# target: model\nload(0)\n", ":1:20:")]:
        path = tmp_path / name
        path.write_text(text)
        assert main(["replay", str(path), "--target", "model"]) == 2, name
        err = capsys.readouterr().err
        assert f"{path}{where}" in err, err


# --- comments after a call --------------------------------------------------------------

def test_a_comment_after_a_complete_call_is_allowed_and_not_kept() -> None:
    p = parse("a = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)  # two pages\n"
              "x = load(a+0x1000)          # 0x41: the child wrote its own copy\n"
              "store(a, 1)# no space is needed\n")
    assert [c.name for c in p.calls] == ["mmap", "load", "store"]
    assert "#" not in format_program(p)
    assert p == parse(format_program(p))


def test_a_hash_inside_a_string_is_not_a_comment() -> None:
    p = parse('fd = shm_open("/a#b", O_RDWR|O_CREAT, 0x180)  # "#" starts a comment only outside a string\n')
    assert p.calls[0].args[0] == Str("/a#b")


@pytest.mark.parametrize("text, col, words", [
    ("load(# 0x1000)", 6, "expected an argument, found '#'"),
    ("load(0x1000 # x)", 13, "expected ',' or ')', found '#'"),
    ("a = # mmap()", 5, "expected a call name, found '#'"),
    ("load(0) # fine\nload(0x1000, # no)", 14, "expected an argument, found '#'"),
])
def test_a_comment_inside_a_call_is_an_error(text: str, col: int, words: str) -> None:
    with pytest.raises(ProgramError) as e:
        parse(text)
    assert e.value.col == col and words in e.value.message, str(e.value)


def test_the_harness_transports_still_carry_an_empty_program() -> None:
    """A fuzzer's empty input is a program to the harness: the text codec and the libc
    target's child (which reads program text) take it; only a user's file must make a call."""
    from memspec.fuzz.bytes import decode_text, encode_text
    from memspec.records import RunStatus
    from memspec.targets.registry import make_target
    assert decode_text(encode_text(Program(())), "phys", None) == Program(())
    t = make_target("libc")
    try:
        r = t.run(Program(()))
    finally:
        t.close()
    assert r.status is RunStatus.OK and r.outcomes == (), r
