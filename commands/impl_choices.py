"""What a malloc library chose where C and POSIX leave the choice: measured, never assumed.

C23 §7.24.3 and POSIX.1-2024 let an allocator decide what ``malloc(0)`` and
``realloc(p, 0)`` return, how much slack a block has, how far beyond the
standard's minimum a small block is aligned, and (within "NULL with ENOMEM")
how it meets absurd sizes.  The model accepts every permitted answer; this
module asks each target the same small probe programs and reports its answers
side by side, so a new library gets its own column without any code here
knowing about it.

A probe is a program in the ordinary text form, run with ``target.run``; its
answer is a short phrase read from the outcomes (addresses are never printed:
they differ from run to run).  Worked example: on glibc 2.36 the probe
``p = malloc(0)`` / ``u = malloc_usable_size(p)`` answers ``unique pointer,
usable size 24``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from memspec.program import parse
from memspec.records import Outcome, RunResult, RunStatus

PTRDIFF_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1
SLACK_SIZES = (1, 24, 100, 4097, 1 << 20)
SMALL_SIZES = (1, 2, 4, 8, 12)
SAMPLES = 16            # blocks per small size: the alignment reported is the least seen


def _null(o: Outcome) -> str:
    return f"NULL, errno {o.errno}" if o.errno else "NULL, errno not set"


def _align(p: int, cap: int = 4096) -> int:
    """The largest power of two (up to ``cap``) that divides ``p``."""
    return min(p & -p, cap) if p else cap


def _failed(o: Outcome) -> bool:
    return not o.value


@dataclass(frozen=True)
class Probe:
    id: str
    choice: str                                   # the row's label
    program: str
    answer: Callable[[Sequence[Outcome]], str]


def _malloc0(o: Sequence[Outcome]) -> str:
    if _failed(o[0]):
        return _null(o[0])
    same = " (the same pointer twice!)" if o[2].value == o[0].value else ""
    return f"unique pointer, usable size {o[1].value}{same}"


def _realloc0(o: Sequence[Outcome]) -> str:
    if _failed(o[1]):
        return "frees p, returns NULL" + (f" (errno {o[1].errno})" if o[1].errno else "")
    where = "p itself" if o[1].value == o[0].value else "a new block"
    return f"returns {where}, usable size {o[2].value}"


def _slack(n: int) -> Callable[[Sequence[Outcome]], str]:
    def answer(o: Sequence[Outcome]) -> str:
        if _failed(o[0]):
            return _null(o[0])
        return f"{o[1].value} (+{o[1].value - n})" if o[1].value is not None else o[1].describe()
    return answer


def _small_align(o: Sequence[Outcome]) -> str:
    ptrs = [x.value for x in o if x.value]
    if not ptrs:
        return _null(o[0])
    least = min(_align(p, 16) for p in ptrs)
    return f"{least}" if least < 16 else "16"


def _huge(o: Sequence[Outcome]) -> str:
    last = o[-1]
    return _null(last) if _failed(last) else f"a block ({_align(last.value or 0)}-aligned)"


def _aligned(alignment: int) -> Callable[[Sequence[Outcome]], str]:
    want = 1 << (alignment - 1).bit_length()       # the power of two at or above the request

    def answer(o: Sequence[Outcome]) -> str:
        if _failed(o[0]):
            return _null(o[0])
        a = _align(o[0].value or 0, want)
        return f"a {a}-aligned block" if a >= want else f"a block only {a}-aligned"
    return answer


def _free_all(n: int, prefix: str = "p") -> str:
    return "".join(f"free({prefix}{i})\n" for i in range(n))


PROBES: tuple[Probe, ...] = (
    Probe("malloc0", "malloc(0)", "p = malloc(0)\nu = malloc_usable_size(p)\nq = malloc(0)\nfree(p)\nfree(q)\n",
          _malloc0),
    Probe("realloc0", "realloc(p, 0)", "p = malloc(16)\nq = realloc(p, 0)\nu = malloc_usable_size(q)\nfree(q)\n",
          _realloc0),
    *(Probe(f"slack-{n}", f"malloc_usable_size(malloc({n if n < 1 << 20 else '1 MiB'}))",
            f"p = malloc({n})\nu = malloc_usable_size(p)\nfree(p)\n", _slack(n)) for n in SLACK_SIZES),
    *(Probe(f"align-{n}", f"least alignment of malloc({n}) ({SAMPLES} blocks; C23 asks "
                          f"{1 << (n.bit_length() - 1)})",
            "".join(f"p{i} = malloc({n})\n" for i in range(SAMPLES)) + _free_all(SAMPLES), _small_align)
      for n in SMALL_SIZES),
    Probe("huge-ptrdiff", "malloc(PTRDIFF_MAX + 1)", f"p = malloc({PTRDIFF_MAX + 1:#x})\n", _huge),
    Probe("huge-size-max", "malloc(SIZE_MAX)", f"p = malloc({SIZE_MAX:#x})\n", _huge),
    Probe("huge-1tib", "malloc(1 TiB) (under the target's memory limit)", f"p = malloc({1 << 40:#x})\nfree(p)\n",
          lambda o: _huge(o[:1])),
    Probe("calloc-overflow", "calloc(2^32, 2^32) (nmemb * size overflows)", "p = calloc(0x100000000, 0x100000000)\n",
          _huge),
    Probe("realloc-huge", "realloc(p, PTRDIFF_MAX + 1)", f"p = malloc(16)\nq = realloc(p, {PTRDIFF_MAX + 1:#x})\n",
          _huge),
    Probe("aligned-alloc-size", "aligned_alloc(64, 100) (size not a multiple of the alignment)",
          "p = aligned_alloc(64, 100)\n", _aligned(64)),
    Probe("aligned-alloc-24", "aligned_alloc(24, 100) (not a power of two)", "p = aligned_alloc(24, 100)\n",
          _aligned(24)),
    Probe("posix-memalign0", "posix_memalign(&p, 64, 0)", "p = posix_memalign(64, 0)\n", _aligned(64)),
)


def probe(target: Any, probes: Sequence[Probe] = PROBES) -> dict[str, str]:
    """Each probe's answer on ``target`` (probe id -> phrase)."""
    out: dict[str, str] = {}
    for p in probes:
        program = parse(p.program, source=f"probe {p.id}")
        calls = getattr(target, "calls", None)
        if calls is not None and any(c.name not in calls for c in program.calls):
            out[p.id] = "not implemented"
            continue
        run: RunResult = target.run(program)
        if run.status is not RunStatus.OK or len(run.outcomes) < len(program.calls):
            out[p.id] = f"{run.status.value}: {run.message}" if run.message else run.status.value
            continue
        out[p.id] = p.answer(run.outcomes)
    return out


def table(answers: dict[str, dict[str, str]], probes: Sequence[Probe] = PROBES) -> dict[str, Any]:
    """The report's table: one column per target, one row per probe (JSON-ready)."""
    columns = list(answers)
    return {"columns": columns,
            "rows": [{"id": p.id, "choice": p.choice, "program": p.program,
                      "values": {c: answers[c].get(p.id, "") for c in columns}} for p in probes]}


def text_table(t: dict[str, Any]) -> list[str]:
    """The table as aligned text lines (for the summary on the terminal)."""
    cols = t.get("columns") or []
    if not cols:
        return []
    head = ["choice"] + cols
    rows = [[r["choice"]] + [r["values"].get(c, "") for c in cols] for r in t["rows"]]
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return [fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r).rstrip() for r in rows]


__all__ = ["PROBES", "Probe", "probe", "table", "text_table"]
