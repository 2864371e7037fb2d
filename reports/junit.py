"""JUnit XML: one test suite per target, one test case per clause of its layers.

A clause that failed carries the minimal program and the replay command; a clause
never exercised is reported as skipped (never as passed).
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from memspec.atomic import write_text
from memspec.results import RunResults


def to_xml(r: RunResults) -> str:
    suites = ET.Element("testsuites", name="memspec", time=f"{r.duration_s:.3f}")
    for t in r.targets:
        failed = {}
        for f in t.failures:
            failed.setdefault(f.clause, f)
        cases = sorted(set(t.clauses) | set(t.never_exercised) | set(failed) | set(t.not_applicable_clauses))
        suite = ET.SubElement(suites, "testsuite", name=f"memspec.{t.name}", tests=str(len(cases)),
                              failures=str(len([c for c in cases if c in failed and not failed[c].expected_difference])),
                              skipped=str(len([c for c in cases if c not in t.clauses and c not in failed])))
        for cid in cases:
            layer = r.catalogue.get(cid, {}).get("layer", "?")
            case = ET.SubElement(suite, "testcase", classname=f"memspec.{t.name}.{layer}", name=cid)
            f = failed.get(cid)
            if f is not None:
                tag = "skipped" if f.expected_difference else "failure"
                el = ET.SubElement(case, tag, message=f"{f.verdict}: expected {f.expected}, observed {f.observed}"[:500])
                el.text = (f"{f.note}\n\nat call {f.call_index + 1}: {f.call_text}\n\n{f.program}\n"
                           f"replay: {f.replay}\n" + (f"expected difference: {f.expected_difference}\n"
                                                       if f.expected_difference else "")
                           + (f"excused by: {f.excused_by}\n" if f.excused_by else ""))
            elif cid not in t.clauses and cid in t.not_applicable_clauses:
                ET.SubElement(case, "skipped", message=f"not applicable: {t.not_applicable_clauses[cid]} programs "
                                                       "use calls the target does not implement")
            elif cid not in t.clauses:
                ET.SubElement(case, "skipped", message="not exercised by this run")
            else:
                s = t.clauses[cid]
                ET.SubElement(case, "system-out").text = f"exercised {s.exercised} times: {s.counts}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write(r: RunResults, path: str) -> None:
    write_text(path, to_xml(r))
