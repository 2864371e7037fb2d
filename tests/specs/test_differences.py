"""Versioned, outcome-matched differences (specs/directed.py, docs/differences.md): an entry excuses
a failure only on the versions it names, below its fix, and for the outcome it describes."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

from memspec.commands.check import CheckOptions, Checker, summary_lines
from memspec.reports.html import render
from memspec.reports.json_report import to_dict
from memspec.reports.junit import to_xml
from memspec.specs.directed import (DifferenceError, excused_by, explained, load_differences, observed_outcome,
                                    parse_differences, version_key)

HERE = pathlib.Path(__file__).parent

ENTRY = '''
[[difference]]
id = "broken-len0-enomem"
target = "broken-*"
clause = "posix.mmap.einval-len0"
versions = ">=1.0,<2.0"
fixed_in = "1.5"
fix = "commit 0123abcd"
match = {errno = "ENOMEM"}
observed = "mmap(NULL, 0, ...) fails with ENOMEM"
why = "POSIX mmap(): EINVAL if len is zero."
'''


def one(text: str = ENTRY):
    return parse_differences(text, "differences-test.toml")


# --- versions --------------------------------------------------------------------------------

def test_version_keys_take_the_release_numbers():
    assert version_key("7.2.22") == (7, 2, 22)
    assert version_key("6.18.44-fc-v1272") == (6, 18, 44)
    assert version_key("5.3.0-0-g54eaed1d8b56b1aa") == (5, 3, 0)
    assert version_key("") is None and version_key("unknown") is None


@pytest.mark.parametrize("version, excused", [
    ("1.0", True), ("1.4.9", True),
    ("1.5", False), ("1.5.0-rc1", False), ("1.9", False),    # the fixed release and later: reported
    ("0.9", False), ("2.0", False),                          # outside the range it was seen on
    ("", False), ("unknown", False),                         # a target that cannot tell: reported
])
def test_fixed_or_unlisted_versions_are_not_excused(version, excused):
    (d,) = one()
    got = excused_by([d], "broken-x", "posix.mmap.einval-len0", "-1 ENOMEM", {"impl_version": version})
    assert (got is d) is excused


def test_a_list_of_ranges_is_any_of_them():
    (d,) = one(ENTRY.replace('versions = ">=1.0,<2.0"', 'versions = ["==0.8", ">=1.2,<1.3"]').replace('fixed_in = "1.5"\n', ""))
    assert d.version_applies("0.8.0") and d.version_applies("1.2.7")
    assert not d.version_applies("0.9") and not d.version_applies("1.3")


# --- the observed outcome --------------------------------------------------------------------

def test_a_different_wrong_outcome_under_the_same_clause_is_not_excused():
    (d,) = one()
    facts = {"impl_version": "1.2"}
    assert excused_by([d], "broken-x", "posix.mmap.einval-len0", "-1 ENOMEM", facts) is d
    for other in ("-1 EPERM", "0x7f0000000000", "SIGSEGV", "ok"):
        assert excused_by([d], "broken-x", "posix.mmap.einval-len0", other, facts) is None, other
    # and the same outcome under another clause, or on another target, is not excused either
    assert excused_by([d], "broken-x", "posix.mmap.einval-flags", "-1 ENOMEM", facts) is None
    assert excused_by([d], "linux", "posix.mmap.einval-len0", "-1 ENOMEM", facts) is None


def test_observed_texts_parse_as_outcome_describe_writes_them():
    assert observed_outcome("-1 EINVAL") == {"errno": "EINVAL", "signal": None, "value": None}
    assert observed_outcome("0") == {"value": 0, "errno": None, "signal": None}
    assert observed_outcome("0x368322f0380")["value"] == 0x368322f0380
    assert observed_outcome("#PF errcode=0xc cr2=0x405000") == {"signal": "#PF", "errcode": 0xc, "errno": None,
                                                                 "value": None}
    assert observed_outcome("KVM_EXIT_INTERNAL_ERROR")["signal"] == "KVM_EXIT_INTERNAL_ERROR"
    assert observed_outcome("ok") == {"value": None, "errno": None, "signal": None}
    assert observed_outcome("mappings differ at 0x1000") == {}


def _real(id_: str):
    return next(d for d in load_differences() if d.id == id_)


def test_shipped_matchers_tell_the_cited_outcome_from_others():
    # QEMU's RSVD-without-P: RSVD set, P clear; a correct P|RSVD or a fault without RSVD is not this bug
    d = _real("qemu-rsvd-without-p-pte")
    assert d.excuses("qemu-system", d.clause, "#PF errcode=0xc cr2=0x405000", "7.2.22")
    assert not d.excuses("qemu-system", d.clause, "#PF errcode=0xd cr2=0x405000", "7.2.22")
    assert not d.excuses("qemu-system", d.clause, "#PF errcode=0x4 cr2=0x405000", "7.2.22")
    assert not d.excuses("qemu-system", d.clause, "0x300000cc", "7.2.22")
    # mimalloc 2.0.9's 256-alignment bug gives 128-aligned blocks; any other misalignment is news
    d = _real("mimalloc-aligned-alloc-256")
    assert d.excuses("malloc:mimalloc", d.clause, "0x368322f0380", "2.0.9")
    assert not d.excuses("malloc:mimalloc", d.clause, "0x368322f0340", "2.0.9")
    # tcmalloc's calloc overflow: NULL without errno; NULL with the wrong errno is not it
    d = _real("tcmalloc-calloc-overflow-no-errno")
    assert d.excuses("malloc:tcmalloc", d.clause, "0", "2.10")
    assert not d.excuses("malloc:tcmalloc", d.clause, "-1 EINVAL", "2.10")


def test_a_shipped_entry_is_not_excused_on_a_release_with_the_fix():
    # Bochs fixed its PKRU checks after 3.0 (commit 72d55ca099eb): 3.0 still has the bug, a later release not
    d = _real("bochs-pkru-ad-user-accesses-only")
    assert d.excuses("bochs", d.clause, "0x300000cc", "2.7")
    assert d.excuses("bochs:corei7_icelake", d.clause, "0x300000cc", "3.0")
    assert not d.excuses("bochs", d.clause, "0x300000cc", "3.1")
    d = _real("mimalloc-aligned-alloc-256")
    if d.fixed_in is not None:
        fixed = ".".join(map(str, d.fixed_in))
        assert not d.excuses("malloc:mimalloc", d.clause, "0x368322f0380", fixed)


def test_every_shipped_entry_names_versions_and_a_matcher():
    diffs = load_differences()
    assert len(diffs) >= 60
    assert len({d.id for d in diffs}) == len(diffs)
    for d in diffs:
        assert d.versions and d.match and d.why and d.observed, d.id
        # the version it was seen on is in its range (the range's start)
        start = next(v for op, v in d.versions[0] if op in (">=", "=="))
        assert d.version_applies(".".join(map(str, start))), d.id
    # the clause-level view the qemu-system tests use still sees every entry
    assert explained(diffs, "qemu-system", "sdm.tlb.stale-before-invalidation")


# --- malformed files -------------------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (('versions = ">=1.0,<2.0"\n', ""), "missing versions"),
    (('match = {errno = "ENOMEM"}\n', ""), "missing match"),
    (('match = {errno = "ENOMEM"}', "match = {}"), "match must be a non-empty table"),
    (('match = {errno = "ENOMEM"}', "match = {errnum = 12}"), "unknown key(s) errnum"),
    (('match = {errno = "ENOMEM"}', "match = {value_mod = [256]}"), "value_mod must be [modulus, remainder]"),
    (('match = {errno = "ENOMEM"}', 'match = {text = "("}'), "match.text is not a regular expression"),
    (('versions = ">=1.0,<2.0"', 'versions = "1.0 to 2.0"'), "is not a comparison"),
    (('versions = ">=1.0,<2.0"', 'versions = ">=1.x"'), "release numbers"),
    (('fixed_in = "1.5"', 'fixed_in = "soon"'), "fixed_in 'soon' is not a version"),
    (('id = "second"', 'id = "Second entry"'), "must be lower-case"),
    (('why = ', 'reason = '), "unknown field(s) reason"),
])
def test_malformed_entries_name_the_file_and_entry(edit, message):
    text = ENTRY + ENTRY.replace("broken-len0-enomem", "second").replace(*edit)
    with pytest.raises(DifferenceError) as e:
        one(text)
    assert "specs/differences-test.toml, [[difference]] #2" in str(e.value)
    assert message in str(e.value)
    assert "docs/differences.md" in str(e.value)


def test_an_id_used_twice_is_an_error(monkeypatch):
    import memspec.specs.directed as directed
    monkeypatch.setattr(directed, "parse_differences", lambda text, file: one())
    with pytest.raises(DifferenceError, match=r"id 'broken-len0-enomem' is already used in specs/differences-test.toml"):
        load_differences()


def test_not_toml_names_the_file():
    with pytest.raises(DifferenceError, match=r"specs/differences-test.toml: not TOML"):
        one("[[difference]\n")


# --- end to end: the report says which entry excused a failure ---------------------------------

def _check(tmp_path, version: str, entry: str = ENTRY):
    spec = f"py:{HERE / 'versioned_target.py'}:VersionedBroken({version!r})"
    checker = Checker(CheckOptions(targets=[spec], layer="os", out=str(tmp_path), programs=0, machine_examples=0,
                                   quiet=True, confirm=1))
    checker.diffs = one(entry)
    results = checker.run()
    (f,) = [f for f in results.targets[0].failures if f.clause == "posix.mmap.einval-len0"]
    return results, f


def test_check_reports_the_excusing_entry(tmp_path):
    results, f = _check(tmp_path, "1.2.0")
    assert f.observed == "-1 ENOMEM"
    assert f.expected_difference == "POSIX mmap(): EINVAL if len is zero."
    assert f.excused_by == ("specs/differences-test.toml [broken-len0-enomem] "
                            "(versions >=1.0,<2.0; fixed in 1.5 by commit 0123abcd)")
    assert results.unexplained_failures == 0
    text = "\n".join(summary_lines(results))
    assert "EXPECTED DIFFERENCE posix.mmap.einval-len0" in text and f"excused by: {f.excused_by}" in text
    report = json.loads(json.dumps(to_dict(results), default=str))
    (jf,) = [x for x in report["targets"][0]["failures"] if x["clause"] == "posix.mmap.einval-len0"]
    assert jf["excused_by"] == f.excused_by
    assert "[broken-len0-enomem]" in render(report)
    junit = ET.fromstring(to_xml(results))
    assert any("excused by: specs/differences-test.toml [broken-len0-enomem]" in (el.text or "")
               for el in junit.iter("skipped"))


def test_check_reports_the_failure_on_the_fixed_version(tmp_path):
    results, f = _check(tmp_path, "1.5.0")
    assert f.expected_difference == "" and f.excused_by == ""
    assert results.unexplained_failures >= 1
    assert "FAIL posix.mmap.einval-len0" in "\n".join(summary_lines(results))


def test_check_reports_a_different_outcome_under_the_cited_clause(tmp_path):
    results, f = _check(tmp_path, "1.2.0", ENTRY.replace('match = {errno = "ENOMEM"}', 'match = {errno = "EPERM"}'))
    assert f.excused_by == "" and results.unexplained_failures >= 1
