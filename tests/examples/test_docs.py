"""What a new user copies from README.md and docs/ works: every program block parses and
passes on the model, every `memspec ...` command in a shell block is one the CLI accepts,
the quick start puts `memspec` on the PATH before the commands that use it, and every
`pip install` line (in the docs and in memspec's own messages) installs something that
exists without a package index serving memspec."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from memspec.calls import CALLS
from memspec.commands.cli import build_parser
from memspec.fuzz.differential import execute
from memspec.targets.registry import make_target
from memspec.program import parse

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
FENCE = re.compile(r"^```(\S*)[ \t]*$")
CALL_LINE = re.compile(r"(?:[a-z_][a-z0-9_]*\s*:\s*)?(?:[a-z_][a-z0-9_]*\s*=\s*)?([a-z_][a-z0-9_]*)\(")
SHELL = {"sh", "bash", "shell", "console", "yaml", "yml"}


def blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """Fenced blocks of a Markdown file: (info string, line of the first content line, lines)."""
    out, info, start, body = [], None, 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if info is None and m:
            info, start, body = m.group(1), n + 1, []
        elif info is not None and line.strip() == "```":
            out.append((info, start, body))
            info = None
        elif info is not None:
            body.append(line)
    assert info is None, f"{path}: a fenced block is not closed"
    return out


def is_program(info: str, lines: list[str]) -> bool:
    """Program text: an untagged (or `mst`) block that starts with the format header or
    whose first line that is not a comment is a call memspec knows."""
    if info not in ("", "mst"):
        return False
    body = [ln.strip() for ln in lines if ln.strip()]
    if body and body[0].startswith("# memspec-program"):
        return True
    first = next((ln for ln in body if not ln.startswith("#")), "")
    m = CALL_LINE.match(first)
    return bool(m and m.group(1) in CALLS)


PROGRAMS = [(p, start, "\n".join(lines) + "\n") for p in DOCS for info, start, lines in blocks(p) if is_program(info, lines)]


def test_the_docs_have_program_blocks() -> None:
    where = {p.name for p, _, _ in PROGRAMS}
    assert {"README.md", "protocol.md", "kvm.md", "bochs.md"} <= where, where


@pytest.mark.parametrize("path, line, text", PROGRAMS,
                         ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in PROGRAMS])
def test_program_block_parses_and_passes_on_the_model(path: Path, line: int, text: str) -> None:
    program = parse(text, source=f"{path.relative_to(ROOT)} (block at line {line})")
    target = make_target("model")
    try:
        j = execute(target, program, target.facts(), observe="end")
    finally:
        target.close()
    assert j.failure is None, f"{path.name}:{line}: {j.failure}"
    assert len(j.checks) >= len(program.calls)


def shell_commands(lines: list[str]) -> list[list[str]]:
    """The simple commands of a shell (or CI YAML) block, each as its words."""
    out = []
    for raw in lines:
        line = re.sub(r"^\s*(?:-\s+)?(?:run:\s*\|?)?\s*(?:\$\s+)?", "", raw)
        if not line or line.startswith("#"):
            continue
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lex.whitespace_split = True
            lex.commenters = "#"
            words = list(lex)
        except ValueError:            # YAML that is not shell (an unclosed quote in a key)
            continue
        cmd: list[str] = []
        for w in words + [";"]:
            if w in (";", "&&", "||", "|", "&"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


SHELL_BLOCKS = [(p, start, lines) for p in DOCS for info, start, lines in blocks(p) if info in SHELL]


def memspec_argv(cmd: list[str]) -> list[str] | None:
    if cmd and cmd[0].rsplit("/", 1)[-1] == "memspec":
        return ["0" if w.startswith("$") else w for w in cmd[1:]]   # "$seed" and the like
    return None


def test_every_memspec_command_in_a_shell_block_parses() -> None:
    parser = build_parser()
    seen = 0
    for path, start, lines in SHELL_BLOCKS:
        for cmd in shell_commands(lines):
            argv = memspec_argv(cmd)
            if argv is None:
                continue
            seen += 1
            try:
                ns = parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{path.relative_to(ROOT)} (block at line {start}): memspec {' '.join(argv)} "
                            "is not a command memspec accepts")
            assert ns.command == argv[0]
    assert seen >= 10, seen


def test_quick_start_puts_memspec_on_the_path_before_using_it() -> None:
    """Pasted in order into one shell, the README's commands find `memspec`: a bare
    `memspec` comes after the venv is activated (or is called by its path)."""
    active = False
    bare = 0
    for info, start, lines in blocks(ROOT / "README.md"):
        if info not in SHELL:
            continue
        for cmd in shell_commands(lines):
            if cmd[:1] in (["."], ["source"]) and cmd[1:2] == [".venv/bin/activate"]:
                active = True
            if cmd and cmd[0] == "memspec":
                bare += 1
                assert active, f"README.md line {start}: `{' '.join(cmd)}` runs before the venv is activated"
    assert bare > 0


# --- pip install lines ------------------------------------------------------------------

INSTALL_SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").rglob("*.md")),
                   *[p for d in ("memspec", "model", "specs", "fuzz", "targets", "reports") for p in sorted((ROOT / d).rglob("*.py"))],
                   *sorted((ROOT / "tools").glob("*.sh")), ROOT / ".ci" / "run"]
PIP = re.compile(r"pip install\b([^\n`\"]*(?:\"[^\"\n]*\"[^\n`\"]*)*)")


def install_targets(args: str) -> list[str]:
    """What one `pip install ...` (in a shell line or in a sentence) installs."""
    args = re.split(r" # |&&|\|\||[|;)]| \d?>", args)[0].rstrip(" .,")
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    out, skip, editable = [], False, False
    for w in words:
        if skip:
            skip = False
        elif w in ("-r", "-c", "--constraint", "--requirement", "--index-url", "-i", "--find-links", "-f"):
            skip = True
        elif w in ("-e", "--editable"):
            editable = True
        elif not w.startswith("-"):
            out.append(w)
            if editable:           # `pip install -e TARGET` in a sentence: what follows is prose
                break
    return out


def problems_of(target: str) -> str | None:
    if re.match(r"memspec($|\[|[<>=!~ ])", target):
        return "no package index serves memspec: install from a clone (pip install -e .) or a built wheel"
    m = re.match(r"(.*?)\[([^\]]*)\]$", target)
    if m and (m.group(1).startswith((".", "/", "$")) or m.group(1).endswith(".whl")):
        unknown = {e.strip() for e in m.group(2).split(",")} - EXTRAS
        if unknown:
            return f"pyproject.toml has no extra {sorted(unknown)} (extras: {sorted(EXTRAS)})"
    return None


def install_lines() -> list[tuple[str, int, str]]:
    out = []
    for path in INSTALL_SOURCES:
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in PIP.finditer(line):
                for target in install_targets(m.group(1)):
                    out.append((f"{path.relative_to(ROOT)}:{n}", target, line.strip()))
    return out


def test_every_pip_install_line_installs_something_that_exists() -> None:
    lines = install_lines()
    assert len(lines) >= 8, lines
    bad = [f"{where}: {target!r}: {why}  ({line})" for where, target, line in lines
           if (why := problems_of(target))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("target, ok", [
    ("memspec", False), ("memspec[qemu]", False), ("memspec==0.1.0", False),
    ("-e", True), (".", True), (".[qemu]", True), ("./memspec-src[redis]", True), (".[nosuch]", False),
    ("dist/memspec-0.1.0-py3-none-any.whl", True), ("unicorn==2.1.4", True), ("memspec-src", True),
])
def test_install_line_rules(target: str, ok: bool) -> None:
    assert (problems_of(target) is None) == ok
