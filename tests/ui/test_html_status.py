"""The HTML report's clause statuses: what is not judged is never shown as passed."""

from __future__ import annotations

from memspec.reports.html import clause_status, render


def target(**kw) -> dict:
    t = {"name": "cmd:./impl", "layers": ["os"], "clauses": {}, "failures": [], "not_applicable_clauses": {},
         "not_observable": {}}
    t.update(kw)
    return t


def test_statuses() -> None:
    t = target(clauses={"a": {"exercised": 3, "pass": 3}, "u": {"exercised": 2, "unknown": 2},
                        "f": {"exercised": 1, "fail": 1}, "d": {"exercised": 1, "fail": 1}},
               failures=[{"clause": "f", "verdict": "fail", "expected_difference": ""},
                         {"clause": "d", "verdict": "fail", "expected_difference": "documented quirk"}],
               not_applicable_clauses={"n": 4}, not_observable={"o": "no /proc here"})
    assert clause_status(t, "a")[:2] == ("passed", "ok") and "exercised 3" in clause_status(t, "a")[2]
    assert clause_status(t, "u")[0] == "unknown"
    assert clause_status(t, "f")[:2] == ("failed", "bad")
    assert clause_status(t, "d")[0] == "expected difference"
    assert clause_status(t, "n")[0] == "not applicable" and "4 programs" in clause_status(t, "n")[2]
    assert clause_status(t, "o")[0] == "not observable"
    assert clause_status(t, "x")[0] == "not exercised"


def test_render_escapes_program_text_and_marks_the_failing_call() -> None:
    f = {"clause": "c.x", "statement": "<b>", "citation": "", "verdict": "fail", "call_index": 1,
         "program": '# target: t\na = mmap(NULL, 4096)\nstore(a, "<script>")\n', "call_text": "store(a)",
         "expected": "SIGSEGV", "observed": "ok", "note": "", "replay": "memspec replay f", "count": 1,
         "expected_difference": "", "context": {}}
    page = render({"summary": {"unexplained_failures": 1}, "targets": [target(failures=[f])],
                   "catalogue": {"c.x": {"layer": "os", "statement": "<b>", "citation": ""}}})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<span class="hit">store(a, &quot;&lt;script&gt;&quot;)    ← fails here</span>' in page
    assert 'href="#cx-1"' in page and 'id="cx-1"' in page and 'id="clause-c.x"' in page
