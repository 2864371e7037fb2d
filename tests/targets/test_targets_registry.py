"""Target names: families, errors, and the py: loader."""

from __future__ import annotations

import pytest

from memspec.specs.directed import lacks as _lacks
from memspec.errors import UsageError
from memspec.targets.registry import make_target


def test_py_target_loads_an_expression_from_a_file(tmp_path) -> None:
    f = tmp_path / "mine.py"
    f.write_text("from memspec.targets.model import ModelTarget\n"
                 "class Mine(ModelTarget):\n    name = 'mine'\n")
    t = make_target(f"py:{f}:Mine()")
    assert t.name == "mine" and t.layers[0] == "os"


@pytest.mark.parametrize("spec, words", [
    ("py:nofile.py:X", "does not exist"),
    ("py:justtext", "FILE.py:EXPR"),
    ("nonsense", "unknown target 'nonsense'"),
    ("cmd:   ", "needs something after 'cmd:'"),
])
def test_bad_target_specs_are_usage_errors(spec, words, tmp_path) -> None:
    with pytest.raises(UsageError, match=words):
        make_target(spec)


def test_py_target_that_is_not_a_target(tmp_path) -> None:
    f = tmp_path / "x.py"
    f.write_text("X = 3\n")
    with pytest.raises(UsageError, match="not a memspec Target"):
        make_target(f"py:{f}:X")


def test_requires_header_marks_programs_not_applicable() -> None:
    assert _lacks({"pcid": False, "la57": True}, "pcid invpcid")
    assert not _lacks({"pcid": True}, "pcid")
    assert not _lacks({}, "pcid")           # a target that says nothing is asked to run it
    assert not _lacks({"pcid": False}, None)
