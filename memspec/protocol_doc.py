"""The call reference of docs/protocol.md, generated from the call table.

The protocol carries every call of every layer (``memspec.calls.CALLS``), so the
reference is generated rather than written: ``python -m memspec.protocol_doc``
prints it, ``python -m memspec.protocol_doc --write docs/protocol.md`` replaces the
part of the file between the markers, and a test checks that the committed text
equals the generated one.
"""

from __future__ import annotations

import argparse
import sys

from .calls import CALLS, LAYERS, CallSpec, Param
from .consts import GROUPS

BEGIN = "<!-- generated: call reference (python -m memspec.protocol_doc --write docs/protocol.md) -->"
END = "<!-- end of generated call reference -->"

_RETURNS = {
    "value": "number",
    "addr": "address",
    "proc": "process id",
    "none": "`null`",
}

LEGEND = (
    "Reply column: the `value` of a successful reply. *number*: an integer (a failure is `-1` with "
    "`errno` unless the meaning says otherwise); *address*: an integer that later calls may use as a "
    "base (`a+4096` in program text); *process id*: an integer > 0, and the call's `result` names the new "
    "process; `null`: nothing to return. Any call may instead reply with an `errno` or a `signal`, "
    "as its meaning says.\n"
)


def _param(p: Param) -> str:
    kind = "" if p.kind == "int" else f": {p.kind}"
    text = f"`{p.name}`{kind}"
    if p.has_default:
        d = p.default
        shown = f'"{d}"' if isinstance(d, str) else (hex(d) if isinstance(d, int) and abs(d) >= 4096 else str(d))
        text += f" = {shown}"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _where(c: CallSpec) -> str:
    sep = "" if not c.doc or c.doc.endswith(".") else "."
    if c.not_main:
        return sep + " Only in a forked process (`p2: exit()`)."
    if c.main_only:
        return sep + " Only in the main process."
    return ""


def call_reference() -> str:
    """Markdown: one table per layer, one row per call, then the constant groups."""
    out: list[str] = [LEGEND]
    for layer in LAYERS:
        calls = [c for c in CALLS.values() if c.layer == layer]
        out.append(f"### Layer `{layer}` ({len(calls)} calls)\n")
        if not calls:
            out.append("No calls are defined for this layer yet.\n")
            continue
        out.append("| call | arguments (in order) | reply | meaning |")
        out.append("|---|---|---|---|")
        for c in calls:
            params = ", ".join(_param(p) for p in c.params) or "(none)"
            out.append(f"| `{c.name}` | {_cell(params)} | {_cell(_RETURNS.get(c.returns, c.returns))} "
                       f"| {_cell(c.doc + _where(c))} |")
        out.append("")
    out.append("### Constant groups\n")
    out.append("An argument whose kind names a group takes that group's constants in program text "
               "(`PROT_READ|PROT_WRITE`); on the wire it is the number they make.\n")
    out.append("| group | constants (value) |")
    out.append("|---|---|")
    for group, table in GROUPS.items():
        items = ", ".join(f"`{n}` ({v:#x})" for n, v in table.items())
        out.append(f"| `{group}` | {_cell(items)} |")
    out.append("")
    return "\n".join(out)


def generated_block() -> str:
    return f"{BEGIN}\n\n{call_reference()}\n{END}"


def splice(document: str) -> str:
    """``document`` with the text between the markers replaced by the generated reference."""
    try:
        head, rest = document.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError("the document has no generated-reference markers") from None
    return head + generated_block() + tail


def committed_block(document: str) -> str:
    head, rest = document.split(BEGIN, 1)
    body, _ = rest.split(END, 1)
    return BEGIN + body + END


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memspec.protocol_doc",
                                 description="Print the protocol's call reference, or rewrite it inside FILE.")
    ap.add_argument("--write", metavar="FILE", help="replace the generated part of FILE (docs/protocol.md)")
    a = ap.parse_args(argv)
    if not a.write:
        sys.stdout.write(call_reference())
        return 0
    with open(a.write, encoding="utf-8") as f:
        text = f.read()
    new = splice(text)
    if new != text:
        with open(a.write, "w", encoding="utf-8") as f:
            f.write(new)
        print(f"updated {a.write}")
    else:
        print(f"{a.write} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
