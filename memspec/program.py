"""Programs as plain data, and their text form.

A program is a tuple of calls; its text has one call per line::

    # memspec-program: 1
    # target: linux
    a = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
    store(a+4096, 0x41)
    mprotect(a, 4096, PROT_READ)
    p2 = fork()
    p2: store(a, 1)

Grammar (strict: anything else is a ``ProgramError`` with line and column)::

    line   := header | comment | blank | stmt [comment]
    header := "#" key ":" value        (only before the first call)
    comment:= "#" any text to the end of the line (outside a string)
    stmt   := [proc ":"] [result "="] name "(" [arg ("," arg)*] ")"
    arg    := [param "="] expr
    expr   := int | string | ref [("+"|"-") int] | CONST ("|" CONST)*
    int    := ["-"] (decimal | "0x" hex)
    result, proc, ref := [a-z_][a-z0-9_]*        CONST := [A-Z][A-Z0-9_]*

A program makes at least one call.  A number (and a ``ref``'s offset) is a 64-bit
value: at most ``0xffffffffffffffff``, at least ``-0x8000000000000000`` (``-1`` for
an fd is a signed 64-bit value); a wider one is an error, never wrapped, so
``mmap(NULL, 0x10000000000000000, ...)`` cannot reach a target as length 0.  A
``# memspec-program: N`` header must name a format version this parser reads (1).
A comment after a call (``x = load(a)   # 0x41``) is allowed once the call is complete;
comments are not part of the program and are not printed back.

``parse(print(p)) == p`` for every valid program ``p`` (tests/core/test_program.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

from .calls import CALLS, CallSpec
from .consts import CONSTANTS
from .errors import ProgramError

FORMAT_VERSION = "1"

# The widest values program text may write: 64-bit unsigned above, 64-bit signed below.
INT_MAX = (1 << 64) - 1
INT_MIN = -(1 << 63)


@dataclass(frozen=True, slots=True)
class Int:
    value: int
    hex: bool = False   # how the text wrote it; printed back the same way

    def __reduce__(self) -> tuple:
        return Int, (self.value, self.hex)


@dataclass(frozen=True, slots=True)
class Ref:
    """A named earlier result plus a constant offset: ``a``, ``a+4096``, ``a-0x1000``."""

    name: str
    offset: int = 0

    def __reduce__(self) -> tuple:
        return Ref, (self.name, self.offset)


@dataclass(frozen=True, slots=True)
class Flags:
    """Named constants or-ed together: ``PROT_READ|PROT_WRITE``."""

    names: tuple[str, ...]

    def __reduce__(self) -> tuple:
        return Flags, (self.names,)


@dataclass(frozen=True, slots=True)
class Str:
    value: str

    def __reduce__(self) -> tuple:
        return Str, (self.value,)


Arg = Union[Int, Ref, Flags, Str]


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Arg, ...] = ()
    result: str | None = None
    proc: str | None = None

    # pickled as its fields (a program goes to the linux target's child that way): the frozen
    # dataclass's own state functions cost about ten times as much
    def __reduce__(self) -> tuple:
        return Call, (self.name, self.args, self.result, self.proc)

    @property
    def spec(self) -> CallSpec:
        return CALLS[self.name]


@dataclass(frozen=True, slots=True)
class Program:
    calls: tuple[Call, ...]
    header: tuple[tuple[str, str], ...] = ()

    def __reduce__(self) -> tuple:
        # a program goes to the judge process (and the linux target's child) as rows of plain
        # values (``_call_rows``): each argument one int, str or tuple; field by field otherwise
        rows = _call_rows(self.calls) if type(self.calls) is tuple else None
        if rows is None:
            return Program, (self.calls, self.header)
        return _program, (rows, self.header)

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def layer(self) -> str:
        """The layer whose calls this program makes (``os`` for an empty program)."""
        return self.calls[0].spec.layer if self.calls else "os"

    def meta(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.header:
            if k == key:
                return v
        return default

    def with_header(self, **items: object) -> "Program":
        keep = [(k, v) for k, v in self.header if k not in items]
        add = [(k, str(v)) for k, v in items.items() if v is not None]
        return Program(self.calls, tuple(keep + add))

    def with_calls(self, calls: Iterable[Call]) -> "Program":
        return Program(tuple(calls), self.header)


# ---------------------------------------------------------------------------
# pickling: a program as rows of plain values, its arguments rebuilt from a table

# the most arguments (and calls) a process keeps by code; past it the table starts again
_TABLE_MAX = 1 << 15

# An argument's code: an int is ``Int(v)``; a str is ``Ref(name)``; ``(v,)`` (an int) is ``Int(v,
# hex=True)``; ``(name, offset)`` (an int offset) is ``Ref(name, offset)``; ``(None, s)`` is ``Str(s)``;
# any other tuple (of str) is ``Flags(names)``.


def _call_rows(calls: tuple) -> tuple | None:
    """``(name, result, proc, *argument codes)`` per call; None where a call or an argument is not the
    plain record the codes stand for (a subclass, a value of another type)."""
    rows = []
    for c in calls:
        if type(c) is not Call or type(c.args) is not tuple:
            return None
        row: list = [c.name, c.result, c.proc]
        put = row.append
        for a in c.args:
            kind = type(a)
            if kind is Int:
                v = a.value
                if type(v) is not int or type(a.hex) is not bool:
                    return None
                put((v,) if a.hex else v)
            elif kind is Ref:
                name, off = a.name, a.offset
                if type(name) is not str or type(off) is not int:
                    return None
                put(name if off == 0 else (name, off))
            elif kind is Flags:
                names = a.names
                if type(names) is not tuple or (names and (type(names[0]) is not str or type(names[-1]) is not str)):
                    return None
                put(names)
            elif kind is Str and type(a.value) is str:
                put((None, a.value))
            else:
                return None
        rows.append(tuple(row))
    return tuple(rows)


class _Args(dict):
    """The arguments a process has unpickled, by code: the same frozen ``Int(4096)`` or
    ``Flags(("PROT_READ",))`` for every program that has one, found without a Python call."""

    def __missing__(self, code: object) -> Arg:
        if len(self) >= _TABLE_MAX:
            self.clear()
        arg: Arg
        if type(code) is int:
            arg = Int(code)
        elif type(code) is str:
            arg = Ref(code)
        elif len(code) == 1 and type(code[0]) is int:       # type: ignore[arg-type]
            arg = Int(code[0], True)                         # type: ignore[index]
        elif len(code) == 2 and code[0] is None:             # type: ignore[arg-type,index]
            arg = Str(code[1])                               # type: ignore[index]
        elif len(code) == 2 and type(code[1]) is int:        # type: ignore[arg-type,index]
            arg = Ref(code[0], code[1])                      # type: ignore[index]
        else:
            arg = Flags(code)                                # type: ignore[arg-type]
        self[code] = arg
        return arg


_ARGS = _Args()
_call_set = tuple(Call.__dict__[f].__set__ for f in ("name", "args", "result", "proc"))


class _Calls(dict):
    """The calls a process has unpickled, by row (``_call_rows``): a call made again -- the same
    ``munmap(a, 4096)`` in many programs -- is the same frozen ``Call``, found without a Python call."""

    def __missing__(self, row: tuple) -> Call:
        if len(self) >= _TABLE_MAX:
            self.clear()
        set_name, set_args, set_result, set_proc = _call_set
        c = object.__new__(Call)
        set_name(c, row[0])
        set_args(c, tuple(map(_ARGS.__getitem__, row[3:])))
        set_result(c, row[1])
        set_proc(c, row[2])
        self[row] = c
        return c


_CALLS = _Calls()


def _program(rows: tuple, header: tuple) -> Program:
    return Program(tuple(map(_CALLS.__getitem__, rows)), header)


# ---------------------------------------------------------------------------
# printing

def format_int(v: int) -> str:
    """Offsets: small ones in decimal, page-sized ones in hex."""
    if -4096 < v < 4096:
        return str(v)
    return ("-" if v < 0 else "") + hex(abs(v))


def format_arg(a: Arg) -> str:
    if isinstance(a, Int):
        if a.hex:
            return ("-" if a.value < 0 else "") + hex(abs(a.value))
        return str(a.value)
    if isinstance(a, Ref):
        if a.offset == 0:
            return a.name
        return f"{a.name}{'+' if a.offset > 0 else '-'}{format_int(abs(a.offset))}"
    if isinstance(a, Flags):
        return "|".join(a.names)
    if isinstance(a, Str):
        return '"' + _escape(a.value) + '"'
    raise TypeError(f"not an argument: {a!r}")


def _escape(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 256 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def format_call(c: Call) -> str:
    text = f"{c.name}({', '.join(format_arg(a) for a in c.args)})"
    if c.result:
        text = f"{c.result} = {text}"
    if c.proc:
        text = f"{c.proc}: {text}"
    return text


def format_program(p: Program) -> str:
    lines = [f"# {k}: {v}" for k, v in p.header]
    lines += [format_call(c) for c in p.calls]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# parsing

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t]+)
  | (?P<comment>\#.*)
  | (?P<num>0[xX][0-9a-fA-F]+|[0-9]+)
  | (?P<const>[A-Z][A-Z0-9_]*)
  | (?P<ident>[a-z_][a-z0-9_]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<punct>[(),=|:+\-])
    """,
    re.VERBOSE,
)
_HEADER = re.compile(r"#\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*?)\s*$")
_IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")


class _Tokens:
    def __init__(self, text: str, line: int, source: str):
        self.toks: list[tuple[str, str, int]] = []
        self.line = line
        self.source = source
        pos = 0
        self.end_col = len(text) + 1
        self.end_text = "end of line"
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise ProgramError(f"unexpected character {text[pos]!r}", line, pos + 1, source)
            if m.lastgroup == "comment":
                # a comment ends the line: the call must be complete before it
                self.end_col, self.end_text = pos + 1, "#"
                break
            if m.lastgroup != "ws":
                self.toks.append((m.lastgroup, m.group(), pos + 1))
            pos = m.end()
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str, int]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eol", self.end_text, self.end_col)

    def take(self) -> tuple[str, str, int]:
        t = self.peek()
        self.i += 1
        return t

    def expect(self, value: str) -> tuple[str, str, int]:
        t = self.take()
        if t[1] != value:
            self.fail(f"expected {value!r}, found {t[1]!r}", t[2])
        return t

    def fail(self, msg: str, col: int) -> None:
        raise ProgramError(msg, self.line, col, self.source)


def _parse_int(tok: tuple[str, str, int], ts: _Tokens, neg: bool = False, sign_col: int | None = None) -> int:
    """A number token as a 64-bit value; ``sign_col`` is where its ``-`` stands, if any."""
    kind, text, col = tok
    if kind != "num":
        ts.fail(f"expected a number, found {text!r}", col)
    is_hex = text[:2].lower() == "0x"
    if not is_hex and len(text) > 1 and text[0] == "0":
        ts.fail(f"leading zeros are not allowed: {text!r} (write hex as 0x…)", col)
    # a decimal longer than 20 digits is too wide; checked before int() converts it, which
    # refuses (ValueError) strings of thousands of digits
    v = int(text, 16) if is_hex else (INT_MAX + 1 if len(text) > 20 else int(text, 10))
    v = -v if neg else v
    if not INT_MIN <= v <= INT_MAX:
        shown = ("-" if neg else "") + (text if len(text) <= 40 else text[:20] + "…" + text[-8:])
        ts.fail(f"number {shown} does not fit in 64 bits (at most {hex(INT_MAX)}, at least -{hex(-INT_MIN)})",
                sign_col if sign_col is not None else col)
    return v


def _unescape(body: str, ts: _Tokens, col: int) -> str:
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in '"\\':
            out.append(nxt)
            i += 2
        elif nxt == "n":
            out.append("\n")
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-f]{2}", body[i + 2:i + 4]):
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif nxt == "u" and re.fullmatch(r"[0-9a-f]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif nxt == "U" and re.fullmatch(r"[0-9a-f]{8}", body[i + 2:i + 10]) and int(body[i + 2:i + 10], 16) <= 0x10FFFF:
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        else:
            ts.fail(f"unknown escape \\{nxt} in string", col + i + 1)
    return "".join(out)


def _parse_expr(ts: _Tokens) -> tuple[Arg, int]:
    kind, text, col = ts.take()
    if kind == "punct" and text == "-":
        t = ts.take()
        return Int(_parse_int(t, ts, neg=True, sign_col=col), t[1][:2].lower() == "0x"), col
    if kind == "num":
        return Int(_parse_int((kind, text, col), ts), text[:2].lower() == "0x"), col
    if kind == "str":
        return Str(_unescape(text[1:-1], ts, col + 1)), col
    if kind == "ident":
        nk, nt, _ = ts.peek()
        if nk == "punct" and nt in "+-":
            _, _, sign_col = ts.take()
            off = _parse_int(ts.take(), ts, neg=(nt == "-"), sign_col=sign_col)
            if off == 0:
                ts.fail("write the name alone instead of adding 0", col)
            return Ref(text, off), col
        return Ref(text), col
    if kind == "const":
        names = [text]
        while ts.peek()[1] == "|":
            ts.take()
            k2, t2, c2 = ts.take()
            if k2 != "const":
                ts.fail(f"expected a constant name after '|', found {t2!r}", c2)
            names.append(t2)
        return Flags(tuple(names)), col
    ts.fail(f"expected an argument, found {text!r}", col)
    raise AssertionError  # unreachable


def parse_call(text: str, line: int = 1, source: str = "<program>") -> Call:
    ts = _Tokens(text, line, source)
    proc = result = None
    if ts.peek()[0] == "ident" and ts.peek(1)[1] == ":":
        proc = ts.take()[1]
        ts.take()
    if ts.peek()[0] == "ident" and ts.peek(1)[1] == "=":
        result = ts.take()[1]
        ts.take()
    kind, name, col = ts.take()
    if kind != "ident":
        ts.fail(f"expected a call name, found {name!r}", col)
    spec = CALLS.get(name)
    if spec is None:
        ts.fail(f"unknown call {name!r} (known: {', '.join(sorted(CALLS))})", col)
    ts.expect("(")
    positional: list[tuple[Arg, int]] = []
    keyword: dict[str, tuple[Arg, int]] = {}
    if ts.peek()[1] != ")":
        while True:
            if ts.peek()[0] == "ident" and ts.peek(1)[1] == "=":
                pk, pname, pcol = ts.take()
                ts.take()
                if pname in keyword:
                    ts.fail(f"parameter {pname!r} given twice", pcol)
                if pname not in [p.name for p in spec.params]:
                    ts.fail(f"{name}() has no parameter {pname!r} "
                            f"(parameters: {', '.join(p.name for p in spec.params) or 'none'})", pcol)
                keyword[pname] = _parse_expr(ts)
            else:
                if keyword:
                    ts.fail("positional argument after a keyword argument", ts.peek()[2])
                positional.append(_parse_expr(ts))
            t = ts.take()
            if t[1] == ")":
                break
            if t[1] != ",":
                ts.fail(f"expected ',' or ')', found {t[1]!r}", t[2])
    else:
        ts.take()
    tail = ts.peek()
    if tail[0] != "eol":
        ts.fail(f"unexpected {tail[1]!r} after the call", tail[2])
    if len(positional) > len(spec.params):
        ts.fail(f"{name}() takes {len(spec.params)} arguments, got {len(positional)}", positional[len(spec.params)][1])
    args: list[Arg] = []
    for i, p in enumerate(spec.params):
        if i < len(positional):
            if p.name in keyword:
                ts.fail(f"parameter {p.name!r} given twice", keyword[p.name][1])
            args.append(positional[i][0])
        elif p.name in keyword:
            args.append(keyword[p.name][0])
        elif p.has_default:
            d = p.default
            args.append(Str(d) if isinstance(d, str) else Int(int(d)))  # type: ignore[arg-type]
        else:
            ts.fail(f"{name}() is missing its argument {p.name!r}", ts.end_col)
    return Call(name, tuple(args), result, proc)


def parse(text: str, source: str = "<program>", *, allow_empty: bool = False) -> Program:
    """Parse and validate a program text.  Raises ``ProgramError`` with line and column.

    A text without a call (empty, or a header alone) is an error: judging it would judge
    nothing and pass.  ``allow_empty`` is for the harness's own transport of programs
    (a fuzzer's empty input), never for a user's file."""
    calls: list[Call] = []
    header: list[tuple[str, str]] = []
    positions: list[int] = []
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip()
        stripped = line.lstrip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = _HEADER.match(stripped)
            if m and not calls:
                if m.group(1) == "memspec-program" and m.group(2) != FORMAT_VERSION:
                    col = len(line) - len(stripped) + m.start(2) + 1
                    raise ProgramError(f"unknown program format version {m.group(2)!r}: this memspec reads "
                                       f"'# memspec-program: {FORMAT_VERSION}'", lineno, col, source)
                header.append((m.group(1), m.group(2)))
            continue
        indent = len(line) - len(stripped)
        try:
            call = parse_call(stripped, lineno, source)
        except ProgramError as e:
            raise ProgramError(e.message, e.line, e.col + indent, source) from None
        calls.append(call)
        positions.append(lineno)
    if not calls and not allow_empty:
        raise ProgramError("the program makes no call (a program needs at least one call line, "
                           "e.g. 'a = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)')",
                           len(lines) + 1 if lines else 1, 1, source)
    prog = Program(tuple(calls), tuple(header))
    validate(prog, positions, source)
    return prog


def validate(prog: Program, lines: list[int] | None = None, source: str = "<program>") -> None:
    """Semantic checks after parsing (syzkaller's validation step): names, types, processes."""
    defined: dict[str, str] = {}   # name -> what it holds ("addr", "value", "proc")
    layer = prog.calls[0].spec.layer if prog.calls and prog.calls[0].name in CALLS else None
    live_procs: set[str] = set()
    for i, c in enumerate(prog.calls):
        line = lines[i] if lines else i + 1
        spec = CALLS.get(c.name)
        if spec is None:
            raise ProgramError(f"unknown call {c.name!r}", line, 1, source)
        if spec.layer != layer:
            raise ProgramError(f"{c.name}() belongs to the {spec.layer} layer; this program makes {layer}-layer calls "
                               "(one program, one layer)", line, 1, source)
        if len(c.args) != len(spec.params):
            raise ProgramError(f"{c.name}() takes {len(spec.params)} arguments, got {len(c.args)}", line, 1, source)
        if c.proc is not None:
            if defined.get(c.proc) != "proc":
                raise ProgramError(f"{c.proc!r} is not a process made by an earlier fork()", line, 1, source)
            if c.proc not in live_procs:
                raise ProgramError(f"process {c.proc!r} has already exited", line, 1, source)
        elif spec.not_main:
            raise ProgramError(f"{c.name}() needs a forked process prefix (e.g. 'p2: {c.name}()')", line, 1, source)
        for p, a in zip(spec.params, c.args):
            if isinstance(a, Ref):
                kind = defined.get(a.name)
                if kind is None:
                    raise ProgramError(f"{a.name!r} is not defined by an earlier call", line, 1, source)
                if kind == "proc":
                    raise ProgramError(f"{a.name!r} is a process, not a number", line, 1, source)
            elif isinstance(a, Flags):
                for n in a.names:
                    if n not in CONSTANTS:
                        raise ProgramError(f"unknown constant {n!r}", line, 1, source)
            elif isinstance(a, Str) and p.kind != "str":
                raise ProgramError(f"{c.name}() argument {p.name!r} must be a number, not a string", line, 1, source)
            if p.kind == "str" and not isinstance(a, Str):
                raise ProgramError(f"{c.name}() argument {p.name!r} must be a string", line, 1, source)
        if c.result is not None:
            if not _IDENT.match(c.result):
                raise ProgramError(f"bad result name {c.result!r}", line, 1, source)
            if spec.returns == "none":
                raise ProgramError(f"{c.name}() returns nothing to name", line, 1, source)
            defined[c.result] = spec.returns
            if spec.returns == "proc":
                live_procs.add(c.result)
        elif spec.returns == "proc":
            raise ProgramError("fork() needs a result name for its process (e.g. 'p2 = fork()')", line, 1, source)
        if c.name == "exit" and c.proc:
            live_procs.discard(c.proc)


def eval_arg(a: Arg, env: dict[str, int]) -> int | str:
    if isinstance(a, Int):
        return a.value
    if isinstance(a, Ref):
        return env[a.name] + a.offset
    if isinstance(a, Flags):
        v = 0
        for n in a.names:
            v |= CONSTANTS[n]
        return v
    return a.value


def bind_result(env: dict[str, int], c: Call, value: int | None) -> None:
    """Record a named result for later calls.  A call that produced no value (it failed
    with an errno or a signal) binds -1, as the C call would have returned."""
    if c.result and c.spec.returns != "proc":
        env[c.result] = value if value is not None else -1


def eval_args(c: Call, env: dict[str, int]) -> tuple[int | str, ...]:
    """Concrete argument values, given the values of earlier named results."""
    out: list[int | str] = []
    for a in c.args:        # eval_arg, with its common cases first (this runs for every call judged)
        kind = type(a)
        if kind is Int:
            out.append(a.value)
        elif kind is Ref:         # a named result (and an offset): mprotect(a, ...) after a = mmap(...)
            out.append(env[a.name] + a.offset)
        elif kind is Flags:
            v = _FLAG_VALUES.get(a.names)
            if v is None:
                v = 0
                for n in a.names:
                    v |= CONSTANTS[n]
                if len(_FLAG_VALUES) < 4096:
                    _FLAG_VALUES[a.names] = v
            out.append(v)
        else:
            out.append(eval_arg(a, env))
    return tuple(out)


_FLAG_VALUES: dict[tuple[str, ...], int] = {}      # eval_args: each set of flag names or-ed once


# programs whose constant arguments were worked out (``const_args``), by identity: the target's run and
# the judge of one program share them; a few kept, the oldest dropped
_CONST_ARGS: dict[int, tuple[Program, tuple[tuple[int | str, ...] | None, ...]]] = {}
_CONST_ARGS_KEPT = 8


def const_args(program: Program) -> tuple[tuple[int | str, ...] | None, ...]:
    """Each call's argument values where every argument is a constant (no named result: the same
    values ``eval_args`` gives in any environment), else None; worked out once per program object.

    Example: for ``a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`` then
    ``munmap(a, 4096)``: ``((0, 4096, 1, 0x22, -1, 0), None)``."""
    hit = _CONST_ARGS.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1]
    flags: dict[tuple[str, ...], int] = {}      # each set of flags or-ed once
    out: list[tuple[int | str, ...] | None] = []
    for c in program.calls:
        vals: list[int | str] | None = []
        for a in c.args:        # eval_args, stopping at the first named result
            kind = type(a)
            if kind is Int or kind is Str:
                vals.append(a.value)
            elif kind is Flags:
                v = flags.get(a.names)
                if v is None:
                    v = 0
                    for n in a.names:
                        v |= CONSTANTS[n]
                    flags[a.names] = v
                vals.append(v)
            else:
                vals = None
                break
        out.append(None if vals is None else tuple(vals))
    if len(_CONST_ARGS) >= _CONST_ARGS_KEPT:
        del _CONST_ARGS[next(iter(_CONST_ARGS))]
    consts = tuple(out)
    _CONST_ARGS[id(program)] = (program, consts)
    return consts


def load(path: str) -> Program:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ProgramError(f"cannot read program file: {e.strerror}", source=path) from None
    except UnicodeDecodeError:
        raise ProgramError("program file is not UTF-8 text", source=path) from None
    return parse(text, source=path)
