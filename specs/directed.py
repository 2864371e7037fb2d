"""The directed suite and the cited differences: what every command judges with (the programs
themselves live in specs/suite/<layer>/).

``suite_programs(layer)`` yields the layer's directed programs (``specs/suite/<layer>/*.mst``);
``load_differences()`` the known, cited differences (``specs/differences*.toml``, format in
docs/differences.md) and ``excused_by`` which of them, if any, excuses a target's failure of a
clause: same clause, a version it applies to and the outcome it describes; ``lacks`` whether a
target's facts rule a program out (its ``# requires:`` header).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterator

from memspec.program import Program, parse


def suite_programs(layer: str, capabilities: bool = False) -> Iterator[tuple[str, Program]]:
    """The directed programs for ``layer``, in name order.  A malformed file is a ``ProgramError``
    (a usage error).  ``capabilities`` adds the programs of the layer's optional parts, one folder
    each (``suite/hw/segmentation/``): they use calls only some targets implement."""
    base = resources.files("memspec.specs").joinpath("suite", layer)
    if not base.is_dir():
        return
    folders = [(f"suite/{layer}", base)]
    if capabilities:
        folders += [(f"suite/{layer}/{e.name}", e) for e in sorted(base.iterdir(), key=lambda e: e.name) if e.is_dir()]
    for where, folder in folders:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".mst"):
                yield f"{where}/{entry.name}", parse(entry.read_text(encoding="utf-8"), source=f"{where}/{entry.name}")


# --- cited differences ---------------------------------------------------------------------------
# The format is documented in docs/differences.md.  An entry excuses a failure only when all of
# these hold: the target's name matches ``target`` (a glob), the failed clause is ``clause``, the
# implementation's version (the target's ``impl_version`` fact) is in ``versions`` and below
# ``fixed_in``, and the observed outcome matches ``match``.  Anything else is reported.

_FIELDS = {"id", "target", "clause", "versions", "fixed_in", "fix", "match", "observed", "why"}
_REQUIRED = ("id", "target", "clause", "versions", "match", "observed", "why")
_MATCH_KEYS = {"errno", "signal", "value", "value_mod", "errcode", "errcode_bits", "text"}
_OPS = ("==", ">=", "<=", "!=", ">", "<")


class DifferenceError(ValueError):
    """A malformed differences file: the message names the file and the entry."""


def version_key(version: str) -> tuple[int, ...] | None:
    """The leading release numbers of a version as an implementation reports it:
    ``"7.2.22"`` -> (7, 2, 22), ``"6.1.0-18-amd64"`` -> (6, 1, 0), ``"5.3.0-0-g54eaed1"`` -> (5, 3, 0);
    None when it starts with no number (unknown)."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version or "")
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def _parse_range(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``">=7.2,<8.1"`` -> ((">=", (7, 2)), ("<", (8, 1))); a ValueError says what is wrong."""
    out = []
    for part in text.split(","):
        part = part.strip()
        op = next((o for o in _OPS if part.startswith(o)), None)
        if op is None:
            raise ValueError(f"{part!r} is not a comparison (write >=7.2, <8.1, ==2.0.9)")
        key = version_key(part[len(op):])
        if key is None or part[len(op):].strip() != ".".join(map(str, key)):
            raise ValueError(f"{part!r}: the version must be release numbers such as 7.2 or 2.0.9")
        out.append((op, key))
    return tuple(out)


def _in_range(key: tuple[int, ...], rng: tuple[tuple[str, tuple[int, ...]], ...]) -> bool:
    ok = {"==": lambda c: c == 0, "!=": lambda c: c != 0, ">=": lambda c: c >= 0, "<=": lambda c: c <= 0,
          ">": lambda c: c > 0, "<": lambda c: c < 0}
    return all(ok[op](_cmp(key, v)) for op, v in rng)


_OUTCOME = re.compile(r"^(?P<signal>#?[A-Z][A-Z0-9_]*)(?: errcode=(?P<errcode>0x[0-9a-f]+))?(?: cr2=0x[0-9a-f]+)?$"
                      r"|^-1 (?P<errno>E[A-Z0-9]+)$|^(?P<value>-?(?:0x[0-9a-f]+|\d+))$|^(?P<ok>ok)$")


def observed_outcome(observed: str) -> dict[str, Any]:
    """The outcome a check's ``observed`` text shows (``Outcome.describe``'s forms: ``0x7f00``,
    ``-1 EINVAL``, ``#PF errcode=0x5 cr2=0x1000``, ``SIGSEGV``, ``ok``), as the fields a ``match``
    table names; {} for other text (a checkpoint's), which only ``text`` can match."""
    m = _OUTCOME.match(observed.strip())
    if not m:
        return {}
    if m["signal"]:
        d: dict[str, Any] = {"signal": m["signal"], "errno": None, "value": None}
        if m["errcode"]:
            d["errcode"] = int(m["errcode"], 16)
        return d
    if m["errno"]:
        return {"errno": m["errno"], "signal": None, "value": None}
    if m["value"]:
        return {"value": int(m["value"], 0), "errno": None, "signal": None}
    return {"value": None, "errno": None, "signal": None}


def _one_of(want: Any, got: Any) -> bool:
    wants = want if isinstance(want, list) else [want]
    return any((got is None) if w == "none" else (got == w) for w in wants)


@dataclass(frozen=True)
class Difference:
    """One ``[[difference]]`` entry of a differences file, checked when it is read."""

    file: str
    index: int                   # 1-based position in its file
    id: str
    target: str                  # a glob over target names ("bochs*", "malloc:tcmalloc")
    clause: str
    versions: tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]   # any of these ranges
    versions_text: str
    fixed_in: tuple[int, ...] | None
    fix: str
    match: dict[str, Any]
    observed: str                # what was seen, in words
    why: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def label(self) -> str:
        """How a report names the entry: its file and id."""
        return f"specs/{self.file} [{self.id}]"

    def describe(self) -> str:
        """The entry as a report shows it: ``specs/differences-malloc.toml [tcmalloc-calloc-overflow]
        (versions >=2.10; fixed in 2.11 by <commit>)``."""
        fixed = (f"; fixed in {self.raw['fixed_in']}" if "fixed_in" in self.raw else "") + (
            f"{' by' if 'fixed_in' in self.raw else '; fix:'} {self.fix}" if self.fix else "")
        return f"{self.label} (versions {self.versions_text}{fixed})"

    def __getitem__(self, key: str) -> Any:       # the entry as written (older readers use the TOML keys)
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def version_applies(self, version: str) -> bool:
        """Whether ``version`` (a target's impl_version) is one the entry was seen on and not fixed in;
        an unknown version is not."""
        key = version_key(version)
        if key is None:
            return False
        if self.fixed_in is not None and _cmp(key, self.fixed_in) >= 0:
            return False
        return any(_in_range(key, r) for r in self.versions)

    def matches(self, observed: str) -> bool:
        """Whether the observed outcome (a check's ``observed`` text) is the one the entry describes."""
        got = observed_outcome(observed)
        for k, want in self.match.items():
            if k == "text":
                if not re.search(want, observed):
                    return False
                continue
            if not got:
                return False
            if k in ("errno", "signal"):
                if not _one_of(want, got.get(k)):
                    return False
            elif k == "value":
                v = got.get("value")
                if want == "nonzero":
                    if not v:
                        return False
                elif not _one_of(want, v):
                    return False
            elif k == "value_mod":
                v = got.get("value")
                if v is None or v % want[0] != want[1]:
                    return False
            elif k == "errcode":
                if "errcode" not in got or not _one_of(want, got["errcode"]):
                    return False
            elif k == "errcode_bits":
                if "errcode" not in got or got["errcode"] & want[0] != want[1]:
                    return False
        return True

    def excuses(self, target: str, clause: str, observed: str, version: str) -> bool:
        return (fnmatch.fnmatch(target, self.target) and clause == self.clause
                and self.version_applies(version) and self.matches(observed))


def _entry(file: str, index: int, d: Any) -> Difference:
    where = f"specs/{file}, [[difference]] #{index}" + (f" (id {d['id']!r})" if isinstance(d, dict) and "id" in d else "")

    def bad(msg: str) -> DifferenceError:
        return DifferenceError(f"{where}: {msg} (the format: docs/differences.md)")

    if not isinstance(d, dict):
        raise bad("an entry must be a table")
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(_FIELDS))}")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    for k in ("id", "target", "clause", "observed", "why", "fixed_in", "fix"):
        if k in d and (not isinstance(d[k], str) or not d[k].strip()):
            raise bad(f"{k} must be a non-empty string")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", d["id"]):
        raise bad(f"id {d['id']!r} must be lower-case letters, digits, dots and dashes")
    texts = d["versions"] if isinstance(d["versions"], list) else [d["versions"]]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise bad('versions must be a range such as ">=7.2,<8.1" or a list of them')
    try:
        versions = tuple(_parse_range(t) for t in texts)
    except ValueError as e:
        raise bad(f"versions: {e}") from None
    fixed = None
    if "fixed_in" in d:
        fixed = version_key(d["fixed_in"])
        if fixed is None:
            raise bad(f"fixed_in {d['fixed_in']!r} is not a version")
    m = d["match"]
    if not isinstance(m, dict) or not m:
        raise bad("match must be a non-empty table of what was observed, e.g. {errno = \"none\", value = 0}")
    unknown = sorted(set(m) - _MATCH_KEYS)
    if unknown:
        raise bad(f"match: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(_MATCH_KEYS))}")
    for k in ("errno", "signal"):
        if k in m and not (isinstance(m[k], str) or (isinstance(m[k], list) and m[k]
                                                      and all(isinstance(x, str) for x in m[k]))):
            raise bad(f"match.{k} must be a name, \"none\" or a list of them")
    for k in ("value", "errcode"):
        if k in m and not (isinstance(m[k], int) or (k == "value" and m[k] == "nonzero")
                           or (isinstance(m[k], list) and m[k] and all(isinstance(x, int) for x in m[k]))):
            raise bad(f"match.{k} must be an integer or a list of integers" + (' (or "nonzero")' if k == "value" else ""))
    if "value_mod" in m and not (isinstance(m["value_mod"], list) and len(m["value_mod"]) == 2
                                 and all(isinstance(x, int) for x in m["value_mod"]) and m["value_mod"][0] > 0):
        raise bad("match.value_mod must be [modulus, remainder]")
    if "errcode_bits" in m and not (isinstance(m["errcode_bits"], list) and len(m["errcode_bits"]) == 2
                                    and all(isinstance(x, int) for x in m["errcode_bits"])):
        raise bad("match.errcode_bits must be [mask, bits]: the error code's bits under mask equal bits")
    if "text" in m:
        try:
            re.compile(m["text"])
        except (re.error, TypeError) as e:
            raise bad(f"match.text is not a regular expression: {e}") from None
    return Difference(file=file, index=index, id=d["id"], target=d["target"], clause=d["clause"], versions=versions,
                      versions_text=" or ".join(texts), fixed_in=fixed, fix=d.get("fix", ""), match=dict(m),
                      observed=d["observed"], why=d["why"], raw=dict(d))


def parse_differences(text: str, file: str) -> list[Difference]:
    """The entries of one differences file; a ``DifferenceError`` names the file and entry at fault."""
    import tomllib
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DifferenceError(f"specs/{file}: not TOML: {e}") from None
    unknown = sorted(set(doc) - {"difference"})
    if unknown:
        raise DifferenceError(f"specs/{file}: unknown top-level key(s) {', '.join(unknown)}; entries are [[difference]]")
    return [_entry(file, i, d) for i, d in enumerate(doc.get("difference", []), 1)]


def load_differences() -> list[Difference]:
    """Known, cited differences (specs/differences.toml, and specs/differences-*.toml per family of
    targets): a failure they excuse is reported apart, with the entry that excused it."""
    base = resources.files("memspec.specs")
    files = sorted((e for e in base.iterdir()
                    if e.name == "differences.toml" or (e.name.startswith("differences-") and e.name.endswith(".toml"))),
                   key=lambda e: e.name)
    out: list[Difference] = []
    seen: dict[str, str] = {}
    for e in files:
        for d in parse_differences(e.read_text(encoding="utf-8"), e.name):
            if d.id in seen:
                raise DifferenceError(f"specs/{d.file}, [[difference]] #{d.index}: id {d.id!r} is already used in "
                                      f"specs/{seen[d.id]}")
            seen[d.id] = d.file
            out.append(d)
    return out


def excused_by(diffs: list[Difference], target: str, clause: str, observed: str,
               facts: dict[str, Any] | None) -> Difference | None:
    """The cited difference that excuses ``target``'s failure of ``clause`` with ``observed`` (the
    check's observed text) on the version its facts report, or None: then it is a failure."""
    version = str((facts or {}).get("impl_version", ""))
    return next((d for d in diffs if d.excuses(target, clause, observed, version)), None)


def explained(diffs: list[Difference], target: str, clause: str) -> str:
    """Why ``target`` may fail ``clause``, by clause alone: the reason of the first entry that cites
    the clause for the target, whatever the version and outcome ("" if none does).  For callers
    that check the outcome themselves (the qemu-system tests restore P before they accept the
    RSVD-without-P entries); reports and the exit status use ``excused_by``."""
    return next((d.why for d in diffs if fnmatch.fnmatch(target, d.target) and d.clause == clause), "")


def lacks(facts: dict[str, Any], requires: str | None) -> bool:
    """A program's ``# requires: pcid invpcid`` header names features; a target whose facts
    say it lacks one cannot run the program (not applicable, never passed)."""
    if not requires:
        return False
    feats = facts.get("features", facts)
    return any(feats.get(name) is False for name in requires.replace(",", " ").split())


__all__ = ["suite_programs", "load_differences", "parse_differences", "explained", "excused_by", "Difference",
           "DifferenceError", "observed_outcome", "version_key", "lacks"]
