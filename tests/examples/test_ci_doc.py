"""The commands docs/ci.md tells users to run are commands memspec accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from memspec.commands.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def commands(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        m = re.search(r"(?:^|\s|/)memspec (check|replay|clauses|serve|fuzz) ([^|#]*?)(?:\s+\|\||\s+#|$)", line)
        if m:
            args = m.group(2).replace('"$seed"', "0").replace('"${MEMSPEC_SEED:-0}"', "0")
            out.append([m.group(1)] + shlex.split(args))
    return out


def test_ci_commands_parse() -> None:
    cmds = commands(DOC.read_text(encoding="utf-8"))
    assert len(cmds) >= 4
    parser = build_parser()
    for argv in cmds:
        ns = parser.parse_args(argv)
        assert ns.command == argv[0]


def test_ci_doc_names_the_exit_codes_and_artifacts() -> None:
    text = DOC.read_text(encoding="utf-8")
    for want in ("**0** pass", "**1** conformance failure", "**2** usage or", "upload-artifact", "memspec-out/",
                 "--memspec-target=cmd:./my_impl", "memspec_target = cmd:./my_impl"):
        assert want in text, want
