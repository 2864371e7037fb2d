"""The HTML report in a real headless browser (Debian's chromium): it renders, its
internal links resolve and navigate, it loads nothing from outside, and the console
stays quiet (checked over the DevTools protocol, with a test showing the check bites).

CI installs chromium (apt-get install -y chromium); without it these tests fail and
say so -- they are never skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ..conftest import missing_peer

from .cdp import Browser

pytestmark = pytest.mark.slow   # starts a headless browser

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "broken" / "broken_server.py"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    missing_peer("chromium", "the HTML report's browser test needs it. "
                 "Install it with: apt-get install -y chromium (CI does this)")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.sources: list[str] = []
        self.tags: dict[str, int] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for k in ("src", "href"):
            if tag != "a" and a.get(k):
                self.sources.append(a[k])
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


def browse(path: Path, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``path`` headless; return the DOM after rendering and the page's console lines."""
    proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
                           *extra, path.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run with a passing and a failing target, with model coverage measured."""
    out = tmp_path_factory.mktemp("html") / "out"
    cmd = [sys.executable, "-m", "memspec.commands.cli", "check", "-q", "--out", str(out), "--programs", "10",
           "--machine-examples", "0", "--coverage",
           "--target", f"cmd:{sys.executable} -m memspec.commands.cli serve model",
           "--target", f"cmd:{sys.executable} {BROKEN} mprotect-misses-last-page"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (out / "report.html").exists()
    return out


@pytest.fixture(scope="module")
def rendered(report: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """The report's DOM as the browser built it, and its console output."""
    return browse(report / "report.html", tmp_path_factory.mktemp("browser"), "--dump-dom")


def test_report_renders_with_links_that_resolve(rendered: tuple[str, list[str]]) -> None:
    dom, console = rendered
    assert console == [], "the report logged to the browser console:\n" + "\n".join(console)
    page = Page()
    page.feed(dom)
    assert page.title.startswith("memspec report: FAIL")
    for section in ("summary", "clauses", "counterexamples", "coverage", "plots"):
        assert section in page.ids, section
    internal = [h for h in page.links if h.startswith("#")]
    # navigation, targets, clause -> counterexample, counterexample -> clause, summary -> first failure
    assert {"#summary", "#clauses", "#counterexamples", "#coverage", "#plots"} <= set(internal)
    assert any(h.startswith("#cx-") for h in internal) and any(h.startswith("#clause-") for h in internal)
    assert any(h.startswith("#target-") for h in internal) and len(internal) >= 10
    broken = [h for h in internal if h[1:] not in page.ids]
    assert broken == [], f"links to nowhere: {broken}"
    # self-contained: nothing fetched from anywhere
    assert [h for h in page.links + page.sources if not h.startswith("#")] == []
    assert page.tags.get("svg", 0) >= 4 and page.tags.get("polyline", 0) >= 1
    assert page.tags.get("script", 0) == 0


def test_failing_clause_links_to_its_counterexample(report: Path, rendered: tuple[str, list[str]]) -> None:
    data = json.loads((report / "report.json").read_text())
    failed = {f["clause"] for t in data["targets"] for f in t["failures"]}
    assert "posix.mprotect.sets-prot" in failed
    dom = rendered[0]
    row = dom.split('id="clause-posix.mprotect.sets-prot"', 1)[1].split("</tr>", 1)[0]
    assert "passed" in row and '<a href="#cx-' in row and "failed" in row
    cx = row.split('<a href="#', 1)[1].split('"', 1)[0]
    block = dom.split(f'id="{cx}"', 1)[1].split('class="cx"', 1)[0]
    for want in ("posix.mprotect.sets-prot", "expected", "observed", "memspec replay", "fails here"):
        assert want in block, want
    assert "model code" in dom.lower() and "branches" in dom


def test_report_paints(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _, console = browse(report / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, "the page painted (almost) nothing"


JS_BROKEN_LINKS = """[...document.querySelectorAll('a[href^="#"]')]
    .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id))"""


def test_report_over_devtools_no_errors_and_links_navigate(report: Path, tmp_path: Path) -> None:
    """Loaded through the DevTools protocol: no console error or warning, no failed load,
    every internal link has a target, and following one scrolls to it."""
    with Browser(chromium(), tmp_path / "profile") as b:
        b.load((report / "report.html").as_uri())
        assert b.evaluate("document.readyState") == "complete"
        assert b.evaluate(JS_BROKEN_LINKS) == []
        # laid out: the clause table and every plot take up space on the page
        assert b.evaluate("document.querySelector('#clauses table').getBoundingClientRect().height") > 500
        sizes = b.evaluate("[...document.querySelectorAll('svg')].map(e => e.getBoundingClientRect().width)")
        assert len(sizes) >= 4 and min(sizes) > 100
        # follow the first clause -> counterexample link, as a reader would
        hash_, y, top, at_end = b.evaluate("""(() => { const a = document.querySelector('#clauses a[href^="#cx-"]');
            a.click(); const t = document.getElementById(a.getAttribute('href').slice(1));
            const end = window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 2;
            return [location.hash, window.scrollY, t.getBoundingClientRect().top, end]; })()""")
        # the target is at the top of the window (or the page cannot scroll further)
        assert hash_.startswith("#cx-") and y > 0 and (abs(top) < 120 or at_end)
        assert b.problems() == []


def test_devtools_check_catches_errors_and_failed_loads(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><title>x</title><img src="missing.png"><a href="#nowhere">x</a>'
                   "<script>console.error('boom'); missing();</script>")
    with Browser(chromium(), tmp_path / "profile") as b:
        b.load(bad.as_uri())
        assert b.evaluate(JS_BROKEN_LINKS) == ["nowhere"]
        found = "\n".join(b.problems())
    assert "boom" in found and "missing is not defined" in found and "missing.png" in found, found


def test_report_from_json_is_the_same_page(report: Path, tmp_path: Path) -> None:
    """python -m memspec.reports.html rebuilds the page from report.json alone."""
    out = tmp_path / "again.html"
    subprocess.run([sys.executable, "-m", "memspec.reports.html", str(report / "report.json"), str(out)],
                   check=True, capture_output=True)
    assert out.read_text() == (report / "report.html").read_text()
