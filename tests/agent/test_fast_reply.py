"""The pipelined run's fast paths held to the plain ones: ``fast_reply`` (a reply line read without
json) gives the Outcome that ``decode`` + ``reply_to_outcome`` give, or None, never another
Outcome, and never one where the plain path finds garbage; a program's request lines made from
its cached formats are byte for byte the json ones."""

from __future__ import annotations

import json
import random

from memspec.fuzz.layers import random_programs
from memspec.program import Call, Int, Program, parse
from memspec.protocol import ProtocolViolation, decode, fast_reply, reply_to_outcome
from memspec.targets.agent import _request_line, _requests

ERRNOS = ["EINVAL", "ENOMEM", "EACCES", "E2BIG", "EPERM", "", "einval", "E INVAL", "EÜ", "E\\u0041"]
SIGNALS = ["SIGSEGV", "SIGBUS", "", "SIG SEGV", "sigsegv"]
VALUES = ["0", "1", "-1", "4096", "140737488355328", "18446744073709551615", "-0", "007", "1e3", "1.5",
          "true", "false", "null", '"1"', "[]", "{}", "-", "9" * 39, "9" * 40, "-9223372036854775808"]


def _field(r: random.Random, name: str, values: list[str], quote: bool) -> str:
    v = r.choice(values)
    return f'"{name}":' + (json.dumps(v) if quote and r.random() < 0.5 else f'"{v}"' if quote else v)


def _reply_line(r: random.Random, ident: int) -> bytes:
    """A reply line: the agent's own shapes, then every way to bend one."""
    if r.random() < 0.4:
        value = r.choice([r.randrange(1 << 64), r.randrange(4096), 0, -1, None])
        tail = r.choice(["", "", f',"errno":"{r.choice(ERRNOS[:5])}"', f',"signal":"{r.choice(SIGNALS[:2])}"'])
        return ('{"type":"reply","id":%d,"value":%s%s}' % (ident, "null" if value is None else value, tail)).encode()
    rid = r.choice([str(ident)] * 6 + [str(ident + 1), "0", "-1", f"0{ident}", f'"{ident}"', "null"])
    parts = ['"type":' + r.choice(['"reply"'] * 8 + ['"error"', '"state"', '"Reply"', "1"]), f'"id":{rid}']
    if r.random() < 0.95:
        parts.append('"value":' + r.choice(VALUES))
    if r.random() < 0.35:
        parts.append(_field(r, "errno", ERRNOS, True))
    if r.random() < 0.25:
        parts.append(_field(r, "signal", SIGNALS, True))
    if r.random() < 0.1:
        parts.append(r.choice(['"refused":"the agent\'s own memory"', '"skipped":true', '"detail":{"after_fetch":1}',
                               '"detail":[]', '"message":"x"', '"value":5']))
    if r.random() < 0.1:
        r.shuffle(parts)
    sep = "," if r.random() < 0.9 else r.choice([", ", " ,", ",\t"])
    text = "{" + sep.join(parts) + "}"
    cut = r.random()
    if cut < 0.04:
        text = text[:r.randrange(len(text))]                  # truncated
    elif cut < 0.08:
        text = " " + text + r.choice([" ", "\r", "\t"])        # spacing the json path strips
    elif cut < 0.1:
        i = r.randrange(len(text))
        text = text[:i] + r.choice("{}[]\",:x\\\x00é") + text[i:]
    return text.encode()


def _plain(line: bytes, ident: int):
    try:
        return reply_to_outcome(decode(line), ident)
    except ProtocolViolation as e:
        return ("error", str(e))
    except ValueError as e:          # what json's int() says of a number too long for it
        return ("error", type(e).__name__)


def test_the_fast_reply_is_the_plain_reply_or_none():
    r = random.Random(20)
    fast = 0
    for n in range(40000):
        ident = r.choice([1, 7, 42, 1000, 123456789, r.randrange(1, 1 << 40)])
        line = _reply_line(r, ident)
        got, want = fast_reply(line, ident), _plain(line, ident)
        if got is not None:
            fast += 1
            assert got == want and type(got) is type(want), (line, got, want)
            assert (got.value, got.errno, got.signal, got.detail) == (want.value, want.errno, want.signal, want.detail)
    assert fast > 15000        # the common shapes do take the fast path


def test_the_agents_own_reply_lines_take_the_fast_path():
    for line, ident, want in [(b'{"type":"reply","id":3,"value":140737488355328}', 3, (140737488355328, None, None)),
                              (b'{"type":"reply","id":4,"value":-1,"errno":"ENOMEM"}', 4, (-1, "ENOMEM", None)),
                              (b'{"type":"reply","id":5,"value":null,"signal":"SIGSEGV"}', 5, (None, None, "SIGSEGV")),
                              (b'{"type":"reply","id":6,"value":null}', 6, (None, None, None)),
                              (b'{"type":"reply","id":7,"value":18446744073709551615}', 7, ((1 << 64) - 1, None, None))]:
        o = fast_reply(line, ident)
        assert o is not None and (o.value, o.errno, o.signal) == want
    for line in [b'{"type":"reply","id":3,"value":null,"refused":"x"}', b'{"type":"reply","id":3,"value":null,"skipped":true}',
                 b'{"type":"reply","id":3,"value":1,"errno":"EINVAL","signal":"SIGSEGV"}',
                 b'{"type":"reply","id":4,"value":1}', b'{"type":"reply","id":3,"value":01}']:
        assert fast_reply(line, 3) is None, line


def test_request_lines_from_the_cached_formats_are_the_json_lines():
    progs = [p for _, p in random_programs("os", 80, 3, None)]
    progs.append(parse('a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmunmap(a+0x1000, 4096)\n'
                       'd = memfd_create("100%s %d \\\\ \\"q\\" é", 0)\np2 = fork()\np2: x = load(a-1)\n'))
    progs.append(Program(()))
    for p in progs:
        for observe in ("end", "each", "none"):
            for first in (0, 5, 123456):
                got = _requests(p, observe, first)
                want, ident, last = [], first, len(p.calls) - 1
                for i, c in enumerate(p.calls):
                    ident += 1
                    want.append((i, ident, _request_line(c, ident)))
                    if observe == "each" or (observe == "end" and i == last):
                        ident += 1
                        want.append((-1 - i, ident, (json.dumps({"type": "observe", "id": ident},
                                                                separators=(",", ":")) + "\n").encode()))
                assert got == want, p
    # one program object, two runs: the cached formats, new ids
    p = progs[0]
    assert [x[2] for x in _requests(p, "end", 0)] != [x[2] for x in _requests(p, "end", 9)]
    assert _request_line(Call("mmap", (Int(0),) * 6, "a"), 1).startswith(b'{"type":"call","id":1,')
