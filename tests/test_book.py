"""Build the book and open a chapter in headless Chromium, as a reader would.

Needs the book extras and Debian's chromium (``make test`` installs it when missing). The
build runs with ``-W -n``: any Sphinx warning fails the test.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "notebooks/01_why_pruning_works.html"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
]

pytestmark = pytest.mark.book


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("PRUNEBOOK_SKIP_BROWSER"):
            pytest.skip("no Chromium and PRUNEBOOK_SKIP_BROWSER is set")
        pytest.fail("Chromium not found: install Debian's chromium (make test does) or set PRUNEBOOK_SKIP_BROWSER=1")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(os.sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", "--path-output", str(out), str(ROOT)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", html
    server.shutdown()


def run_chromium(url: str, profile_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--virtual-time-budget=15000", *extra, url],
        capture_output=True, text=True, timeout=180,
    )


def test_chapter_renders_title_equation_and_figure(site, tmp_path):
    base, html = site
    assert (html / CHAPTER).is_file()
    dom = run_chromium(f"{base}/{CHAPTER}", tmp_path / "profile", "--dump-dom").stdout
    assert re.search(r"<h1[^>]*>\s*1\. Why pruning works", dom), "chapter title missing"
    assert "<mjx-container" in dom, "no equation rendered by MathJax"
    assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', dom), "no figure"
    assert "Traceback" not in dom

    screenshot = ROOT / "_build" / "screenshots" / "chapter1.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    run_chromium(f"{base}/{CHAPTER}", tmp_path / "profile2", f"--screenshot={screenshot}", "--window-size=1280,1800")
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
