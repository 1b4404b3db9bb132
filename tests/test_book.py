"""Build the book and read every page in headless Chromium, as a reader would.

Needs the book extras and Debian's chromium (``make test`` installs it when missing). The
build runs with ``-W -n``: any Sphinx warning fails the test. The pages are those of ``_toc.yml``
(its ``root`` and every ``file:``), read when the tests are collected, so a page added or renamed
there is tested without touching this file.

Each page (``test_page_reads_well``), opened in a fresh browser profile over the DevTools protocol
(:mod:`book_checks`), only the local server reachable:

* its HTML was built, and the page loads;
* it shows its title: an ``<h1>`` that reads like the source's first ``# `` heading;
* if its source has math (``$...$``, ``$$``, ``{math}``, ``\\begin{...}`` outside code), MathJax
  rendered it: ``<mjx-container>`` elements, every equation of the content rendered, no TeX error;
* if its source has figures (image outputs of a notebook, local Markdown images or figure
  directives), the content shows images of its own, and every one of them loaded (``complete``,
  ``naturalWidth`` and ``naturalHeight`` > 0); remote badges (Colab, GitHub) are not figures;
* no error in the console: ``console.error``/``assert``, uncaught exceptions and resources of the
  site that failed to load (a 404 included); the toolchain's own errors listed in
  :data:`book_checks.KNOWN_CONSOLE_ERRORS`, each with its cause and fix, are reported as warnings;
* no error output of a cell, and in the visible text (scripts and styles left out) no
  ``Traceback`` and no absolute path of a machine (``/work/``, ``/tmp/``, ``/home/``, ``/root/``,
  ``/Users/``, ``C:\\``, ``site-packages/`` ...; a URL's path is not one);
* **'pending'**: no notebook output says ``pending`` (a result not computed yet, as
  :mod:`prunelib.report` prints it; prose explaining the marker and "0 pending" do not count).
  While the committed results still lack runs (``prunelib experiments --profile cpu --suite all
  --list`` lists them ``missing`` or ``running``, or cannot list the allocation suite yet), a page
  that shows 'pending' is an expected failure (xfail) naming how many runs lack results and
  which; once every run has a stored result, 'pending' anywhere fails: the notebook must be
  re-executed. Listing only reads the JSON records of ``results/experiments``; nothing is computed.

The pure checks are tested on crafted strings here too (not marked ``book``: they run in the fast
suite), and ``test_browser_catches_a_broken_page`` shows the browser side catches a broken page.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_checks import (
    Browser, Source, console_errors, known_console_error, lacking_runs, page_problems, parse_run_listing,
    pending_hits, pending_verdict, read_source, source_of, text_problems, toc_pages, visible_text,
)

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "notebooks/01_why_pruning_works.html"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
]
try:
    PAGES = toc_pages(ROOT)
except Exception as error:  # a broken _toc.yml fails one test, not the collection of the fast ones
    PAGES, TOC_ERROR = [], error
else:
    TOC_ERROR = None
WARNED: set[str] = set()  # the allowed console errors already reported


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("PRUNEBOOK_SKIP_BROWSER"):
            pytest.skip("no Chromium and PRUNEBOOK_SKIP_BROWSER is set")
        pytest.fail("Chromium not found: install Debian's chromium (make test does) or set PRUNEBOOK_SKIP_BROWSER=1")
    return found


def serve(directory: Path):
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the browser reports failed loads; keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", "--path-output", str(out), str(ROOT)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    server, base = serve(html)
    yield base, html
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Browser(chromium(), tmp_path_factory.mktemp("chromium-profile")) as opened:
        yield opened


@pytest.fixture(scope="module")
def lacking():
    """The runs the committed results lack (see the module's docstring)."""
    return lacking_runs(ROOT, sys.executable)


def run_chromium(url: str, profile_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--virtual-time-budget=15000", *extra, url],
        capture_output=True, text=True, timeout=180,
    )


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_page_reads_well(page, site, browser, lacking):
    base, html = site
    assert (html / f"{page}.html").is_file(), f"{page}.html was not built"
    source = read_source(source_of(ROOT, page))
    report = browser.open(f"{base}/{page}.html")
    for message in report["console"]:
        if known_console_error(message) and message not in WARNED:  # once per run, not once per page
            WARNED.add(message)
            warnings.warn(f"the toolchain's console error {message!r} (first on {page}) is allowed: "
                          f"{known_console_error(message)}", stacklevel=1)
    problems = page_problems(report, source)
    pending = pending_hits(report["html"])
    assert not problems, f"{page}:\n  " + "\n  ".join(problems) + (
        f"\n  (and {len(pending)} 'pending': {pending[:3]})" if pending else "")
    verdict, why = pending_verdict(page, pending, lacking)
    if verdict == "xfail":
        pytest.xfail(why)
    assert verdict == "pass", why


@pytest.mark.book
def test_chapter_screenshot(site, tmp_path):
    base, html = site
    assert (html / CHAPTER).is_file()
    screenshot = ROOT / "_build" / "screenshots" / "chapter1.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    run_chromium(f"{base}/{CHAPTER}", tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,1800")
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000


# ---------------------------------------------------------------------------------------------
# The checks fail when they should: a broken page in the browser, and crafted strings
# ---------------------------------------------------------------------------------------------

BROKEN_PAGE = """<!DOCTYPE html><html><head><title>broken</title></head><body><main>
<article class="bd-article"><h1>Another title</h1>
<p>An equation <span class="math notranslate nohighlight">\\(x^2\\)</span> left as TeX.</p>
<img src="_images/missing.png" alt="gone"><img src="https://example.invalid/badge.svg" alt="badge">
<div class="cell_output"><pre>Traceback (most recent call last): File "/work/main/x.py"</pre>
<pre>Wanda 50% pending</pre></div></article></main>
<script>console.error("broken on purpose"); undefinedFunction();</script></body></html>"""


@pytest.mark.book
def test_browser_catches_a_broken_page(tmp_path, browser):
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    server, base = serve(tmp_path)
    try:
        report = browser.open(f"{base}/broken.html")
    finally:
        server.shutdown()
    problems = page_problems(report, Source("A title", math=True, figures=True))
    expected = ["is not among the page's h1", "no <mjx-container>", "not rendered by MathJax",
                "figure not loaded: _images/missing.png", "console: console.error: broken on purpose",
                "console: uncaught: ReferenceError: undefinedFunction", "404", "traceback:", "'/work/main/x.py'"]
    for part in expected:
        assert any(part in problem for problem in problems), (part, problems)
    assert not any("example.invalid" in problem for problem in problems), "a remote badge is no figure"
    found = pending_hits(report["html"])
    assert len(found) == 1 and "Wanda 50% pending" in found[0], found


GOOD_REPORT = {
    "h1": ["3. Wanda: pruning by weights and activations#"], "math": 2, "unrendered": [], "merror": [], "mjx": 2,
    "images": [{"src": "../_images/a.png", "local": True, "complete": True, "width": 640, "height": 480},
               {"src": "https://colab.research.google.com/assets/colab-badge.svg", "local": False,
                "complete": True, "width": 0, "height": 0}],
    "errors": [], "console": [],
    "html": "<html><head><title>x</title></head><body><article><h1>3. Wanda</h1><p>Scores |W| times "
            "<a href='https://example.org/home/x'>https://example.org/home/x</a>, see results/speed/a.json."
            "</p><script>var p = '/work/main';</script><style>.x{}</style></article></body></html>",
}
SOURCE = Source("3. Wanda: pruning by weights and activations", math=True, figures=True)


def test_page_problems_pass_a_good_page():
    assert page_problems(GOOD_REPORT, SOURCE) == []


@pytest.mark.parametrize("change, expected", [
    ({"h1": []}, "no <h1>"),
    ({"h1": ["3. Something else#"]}, "is not among the page's h1"),
    ({"mjx": 0}, "no <mjx-container>"),
    ({"unrendered": ["\\(x^2\\)"]}, "not rendered by MathJax"),
    ({"merror": ["Undefined control sequence \\foo"]}, "TeX errors"),
    ({"images": []}, "no <img> of its own"),
    ({"images": [{"src": "../_images/a.png", "local": True, "complete": True, "width": 0, "height": 0}]},
     "figure not loaded"),
    ({"images": [{"src": "../_images/a.png", "local": True, "complete": False, "width": 0, "height": 0}]},
     "figure not loaded"),
    ({"errors": ["ValueError: no"]}, "error output of a cell"),
    ({"console": ["console.error: x"]}, "console: console.error: x"),
    ({"html": "<body><div class='cell_output'><pre>Traceback (most recent call last):</pre></div></body>"},
     "traceback"),
    ({"html": "<body><p>saved to /work/main/results/x.json</p></body>"}, "absolute path '/work/main/results/x.json'"),
])
def test_page_problems_catch_each_fault(change, expected):
    problems = page_problems({**GOOD_REPORT, **change}, SOURCE)
    assert any(expected in problem for problem in problems), problems


def test_page_problems_need_math_and_figures_only_where_the_source_has_them():
    bare = {**GOOD_REPORT, "mjx": 0, "math": 0, "images": []}
    assert page_problems(bare, Source(SOURCE.title, math=False, figures=False)) == []


def test_page_problems_allow_only_the_known_toolchain_errors(monkeypatch):
    import book_checks

    message = "uncaught: SyntaxError: Identifier 'THEBE_JS_URL' has already been declared"
    assert page_problems({**GOOD_REPORT, "console": [message]}, SOURCE), "the toolchain errors are fixed, not allowed"
    monkeypatch.setitem(book_checks.KNOWN_CONSOLE_ERRORS, "Identifier 'THEBE_JS_URL'", "a made-up allowance")
    assert page_problems({**GOOD_REPORT, "console": [message]}, SOURCE) == []
    assert known_console_error(message) == "a made-up allowance"
    assert known_console_error("uncaught: SyntaxError: Identifier 'x' has already been declared") is None


@pytest.mark.parametrize("text", [
    "Traceback (most recent call last):", "written to /work/main/results/a.json", "cache in /tmp/pytest-of-x/y",
    "see /home/alice/prunebook", "/root/.cache/huggingface/hub", "/Users/bob/data.txt", r"C:\Users\bob\a.json",
    "File .venv/lib/python3.11/site-packages/torch/nn.py", "'/var/folders/xy/T/tmp1'", "--out=/tmp/csr.json",
])
def test_text_problems_catch(text):
    assert text_problems(f"Some text. {text} More text."), text


@pytest.mark.parametrize("text", [
    "https://github.com/prunebook/prunebook/tree/main/work/x", "https://example.org/home/user",
    "results/experiments/cpu/wanda-50.json", "a ratio 3/4 and 1/tmp", "~/work/prunebook",
    "pip installs into site-packages",
    "a traceback-free run",
])
def test_text_problems_pass(text):
    assert text_problems(text) == [], text


def test_visible_text_leaves_out_scripts_styles_and_chosen_classes():
    html = ("<html><head><title>T</title><script>a='/work/x'</script></head><body><p>one <b>two</b></p>"
            "<style>p{}</style><div class='cell_input'><pre>print('pending')</pre></div>"
            "<div class='cell_output docutils'><pre>three<br>four</pre><img src='a.png'></div>"
            "<p>five</p></body></html>")
    assert visible_text(html).split() == ["one", "two", "print('pending')", "three", "four", "five"]
    assert visible_text(html, skip_classes=("cell_input",)).split() == ["one", "two", "three", "four", "five"]
    assert visible_text(html, only_classes=("cell_output",)).split() == ["three", "four"]


def test_pending_hits_read_outputs_only():
    html = ("<body><p>A run not computed yet shows as pending.</p><div class='cell_input'><pre>PENDING = 'pending'"
            "</pre></div><div class='cell_output'><pre>18 stored, 0 pending</pre></div></body>")
    assert pending_hits(html) == []
    assert pending_hits(html.replace("0 pending", "3 pending")) == ["...18 stored, 3 pending..."]
    assert len(pending_hits("<div class='cell_output'><table><td>Wanda 2:4</td><td>Pending</td></table></div>")) == 1


def test_pending_verdict():
    hits = ["...Wanda 2:4 pending..."]
    assert pending_verdict("p", [], ["a.json"]) == ("pass", "")
    assert pending_verdict("p", [], []) == ("pass", "")
    verdict, why = pending_verdict("p", hits, ["a.json", "b.json"])
    assert verdict == "xfail" and "lack 2 runs" in why and "a.json, b.json" in why
    verdict, why = pending_verdict("p", hits, [])
    assert verdict == "fail" and "every run has a stored result" in why and "Wanda 2:4 pending" in why


def test_console_errors_keep_errors_of_the_site_only():
    origin = "http://127.0.0.1:8000"
    events = [
        {"method": "Runtime.consoleAPICalled", "params": {"type": "log", "args": [{"value": "fine"}]}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "warning", "args": [{"value": "meh"}]}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "error", "args": [{"value": "bad"}, {"value": 2}]}},
        {"method": "Runtime.exceptionThrown",
         "params": {"exceptionDetails": {"text": "Uncaught", "exception": {"description": "TypeError: t"}}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "source": "network", "text": "404",
                                                          "url": f"{origin}/_images/a.png"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "source": "network", "text": "DNS",
                                                          "url": "https://img.shields.io/badge"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "warning", "text": "slow", "url": origin}}},
    ]
    assert console_errors(events, origin) == ["console.error: bad 2", "uncaught: TypeError: t",
                                              f"network: 404 {origin}/_images/a.png"]


def test_parse_run_listing():
    listing = ("stale    sensitivity-wanda-block\nmissing  sensitivity-wanda-linear\n"
               "cached   results/experiments/cpu/dense-1.json\nrunning  results/experiments/cpu/wanda-50-2.json\n"
               "missing  results/experiments/cpu/sparsegpt-50-3.json\n"
               "(the allocation suite is listed once its sensitivities and outlier ratios exist)\n")
    lacking = parse_run_listing(listing)
    assert lacking[:3] == ["sensitivity-wanda-linear", "results/experiments/cpu/wanda-50-2.json",
                           "results/experiments/cpu/sparsegpt-50-3.json"]
    assert lacking[3].startswith("allocation suite")
    assert parse_run_listing("cached   a.json\nstale    b.json\n") == []
    only_waiting = parse_run_listing("(the allocation suite is listed once its sensitivities and outlier ratios exist)\n")
    assert len(only_waiting) == 1 and only_waiting[0].startswith("allocation suite")  # a model with nothing stored
    with pytest.raises(ValueError):
        parse_run_listing("Traceback (most recent call last):\n")


def test_toc_pages_read_every_file(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n      - file: a/one\n"
        "        sections:\n          - file: a/one_more.md\n      - url: https://example.org\n"
        "  - caption: B\n    chapters:\n      - file: b/two.ipynb\n      - file: a/one\n")
    assert toc_pages(tmp_path) == ["intro", "a/one", "a/one_more", "b/two"]


def test_every_page_of_the_book_has_a_source():
    assert TOC_ERROR is None, f"_toc.yml: {TOC_ERROR!r}"
    assert PAGES
    for page in PAGES:
        assert source_of(ROOT, page).is_file()


def test_read_source(tmp_path):
    md = tmp_path / "page.md"
    md.write_text("---\nx: 1\n---\n# The `page` title\n\nCosts $5 and $6.\n\n```python\nx = '$a$'\n```\n"
                  "![badge](https://example.org/b.svg)\n")
    assert read_source(md) == Source("The `page` title", math=False, figures=False)
    md.write_text("# T\n\n```{glossary}\nterm\n  its error $\\lVert W \\rVert$\n```\n\n```{figure} img/a.png\n```\n")
    assert read_source(md) == Source("T", math=True, figures=True)
    notebook = tmp_path / "page.ipynb"
    notebook.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["[![Colab](https://colab.research.google.com/b.svg)](x)\n"]},
        {"cell_type": "markdown", "source": ["# 1. Why pruning works\n", "Prices in `$x$` code only.\n"]},
        {"cell_type": "code", "source": "plot()", "outputs": [
            {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}]},
    ]}))
    assert read_source(notebook) == Source("1. Why pruning works", math=False, figures=True)


def test_the_book_promises_math_and_figures():
    """Some pages of the book have equations and figures, and the detection sees them."""
    found = {page: read_source(source_of(ROOT, page)) for page in PAGES}
    assert any(source.math for source in found.values()) and any(source.figures for source in found.values())
    assert all(source.title for source in found.values()), found
