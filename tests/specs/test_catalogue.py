"""The clause catalogue: every clause cited, every clause ID the code names is catalogued."""

from __future__ import annotations

import os
import re

from memspec.specs.catalogue import all_clauses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ID = re.compile(r"""["']((?:posix|linux|sdm|apm|seed|memspec|c11|bonwick|glibc|amd|intel)\.[a-z0-9][a-z0-9_.\-]*[a-z0-9])["']""")


def test_every_clause_has_statement_citation_and_layer() -> None:
    cat = all_clauses()
    assert len(cat) >= 30
    for cid, c in cat.items():
        assert re.fullmatch(r"[a-z0-9]+(\.[a-z0-9][a-z0-9_\-]*)+", cid), cid
        assert c.layer in ("phys", "hw", "os", "virt"), cid
        assert c.statement and c.citation, cid


def test_os_slice_has_at_least_thirty_cited_clauses() -> None:
    assert len([c for c in all_clauses().values() if c.layer == "os"]) >= 30


def test_every_clause_id_named_in_model_and_specs_is_catalogued() -> None:
    cat = all_clauses()
    missing = []
    for folder in ("model", "specs", "targets"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if not name.endswith(".py") or name.startswith("clauses_"):
                    continue
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    for m in ID.finditer(f.read()):
                        cid = m.group(1)
                        if (cid not in cat and not cid.endswith((".py", ".c", ".h", ".rst", ".txt", ".uml"))
                                and not re.match(r"memspec\.(specs|targets|model|fuzz|reports)\b", cid)):
                            missing.append(f"{folder}/{name}: {cid}")
    assert not missing, "clause IDs used but not declared:\n" + "\n".join(sorted(set(missing)))


def test_cli_lists_one_clause_per_line_starting_with_its_id(memspec_cli) -> None:
    r = memspec_cli("clauses", "--layer", "os")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    cat = all_clauses()
    ids = [ln.split()[0] for ln in lines]
    assert set(ids) == {cid for cid, c in cat.items() if c.layer == "os"}
    assert ids == sorted(ids)
