"""Helpers of ``tests/test_book.py``: the book's pages, what their sources promise, a headless
Chromium driven over the DevTools protocol, and the pure checks of what a page shows.

The checks (:func:`page_problems`, :func:`text_problems`, :func:`pending_hits`,
:func:`visible_text`) take plain strings and dicts, so ``tests/test_book.py`` proves each one
fails on a crafted bad page without a browser.

Chromium is driven with ``--remote-debugging-pipe`` (the DevTools protocol over two file
descriptors, messages ended by a NUL byte): no ``websockets`` package and no open port, and it
tells a ``console.error``, an uncaught exception and a failed load apart, which the plain
``--enable-logging=stderr`` output (every console message logged as ``INFO:CONSOLE``) does not.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The pages, from the table of contents
# ---------------------------------------------------------------------------------------------


def toc_pages(root: Path) -> list[str]:
    """Every page of the book in reading order: ``root`` and every ``file:`` of ``_toc.yml``,
    at any depth (parts, chapters, sections), as docnames without suffix."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return [str(Path(page).with_suffix("")) if Path(page).suffix in (".md", ".ipynb") else page
            for page in dict.fromkeys(pages)]


def source_of(root: Path, docname: str) -> Path:
    """The page's source file (``.ipynb`` or ``.md``)."""
    for suffix in (".ipynb", ".md", ".rst"):
        path = root / f"{docname}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no source for {docname!r} under {root}")


@dataclass
class Source:
    """What a page's source promises: its title, whether it has math, whether it has figures."""

    title: str
    math: bool
    figures: bool


_FENCE_LINE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,}|:{3,})[ \t]*(.*?)[ \t]*$")
#: directives whose body is code, not Markdown
_CODE_DIRECTIVES = re.compile(r"^\{(?:code-cell|code-block|code|sourcecode|literalinclude|raw)\}")
_CODE_SPAN = re.compile(r"``.+?``|`[^`\n]+`")
_MATH = re.compile(r"\$\$|\{math\}|\\begin\{(?:equation|align|gather|multline|eqnarray)\*?\}|"
                   r"(?<![\\$\w])\$(?=\S)[^$\n]+(?<=\S)\$(?![\w$])")
_LOCAL_IMAGE = re.compile(r"!\[[^\]]*\]\((?!https?:|data:)[^)\s]+[^)]*\)|^(?:`{3,}|:{3,})\{(?:figure|image)\}\s+"
                          r"(?!https?:)\S+|<img\s[^>]*src=[\"'](?!https?:|data:)", re.M)
_IMAGE_MIME = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def _without_code(markdown: str) -> str:
    """Markdown without its fenced code blocks; the body of other directives (a glossary, a note,
    a figure's caption) is Markdown and stays. Fences nest as in MyST: a longer fence holds shorter ones."""
    kept, stack = [], []  # stack: (fence, holds code)
    for line in markdown.splitlines():
        fence = _FENCE_LINE.match(line)
        if fence and stack and not fence.group(2) and fence.group(1)[0] == stack[-1][0][0] \
                and len(fence.group(1)) >= len(stack[-1][0]):
            stack.pop()
            continue
        if stack and stack[-1][1]:
            continue  # inside code
        if fence:
            info = fence.group(2)
            holds_code = fence.group(1)[0] != ":" and (not info.startswith("{") or bool(_CODE_DIRECTIVES.match(info)))
            stack.append((fence.group(1), holds_code))
        kept.append(line)
    return "\n".join(kept)


def _prose(markdown: str) -> str:
    """Markdown without front matter, fenced code and code spans."""
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)
    return _CODE_SPAN.sub("", _without_code(text))


def _markdown_title(markdown: str) -> str | None:
    found = re.search(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$", _without_code(markdown), re.M)
    return found.group(1) if found else None


def read_source(path: Path) -> Source:
    """Title (the first ``# `` heading), math (``$...$``, ``$$``, ``{math}``, ``\\begin{equation}``
    in Markdown, not in code; in a notebook also its Markdown and LaTeX outputs) and figures (image
    outputs of a notebook, local Markdown images and ``figure``/``image`` directives; remote
    badges do not count) of a page's source."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return Source(_markdown_title(text) or "", bool(_MATH.search(_prose(text))),
                      bool(_LOCAL_IMAGE.search(_prose(text))))
    cells = json.loads(text)["cells"]
    def joined(value) -> str:
        return "".join(value) if isinstance(value, list) else str(value)

    markdown = [joined(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]
    outputs = [output for cell in cells if cell["cell_type"] == "code" for output in cell.get("outputs", [])]
    rich = [joined(value) for output in outputs for mime, value in output.get("data", {}).items()
            if mime in ("text/markdown", "text/latex")]
    title = next((found for found in map(_markdown_title, markdown) if found), "")
    math = any(_MATH.search(_prose(part)) for part in markdown + rich)
    figures = (any(mime in output.get("data", {}) for output in outputs for mime in _IMAGE_MIME)
               or any(_LOCAL_IMAGE.search(_prose(part)) for part in markdown))
    return Source(title, math, figures)


def normalized(title: str) -> str:
    """A title without markup, punctuation, Sphinx's header link and case, to compare a source's
    heading with the page's h1."""
    title = re.sub(r"\{[\w:-]+\}`([^`<]*?)\s*(<[^>]*>)?`", r"\1", title)  # {term}`word`, {ref}`text <target>`
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # [text](link)
    title = title.replace("#", "").replace("¶", "")
    return " ".join(re.sub(r"[^\w]+", " ", title.lower()).split())


# ---------------------------------------------------------------------------------------------
# Pure checks of what a page shows
# ---------------------------------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
         "track", "wbr"}
_INLINE = {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd", "mark", "q", "s",
           "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "wbr"}
_INVISIBLE = {"script", "style", "noscript", "template", "head", "title"}


class _Text(HTMLParser):
    def __init__(self, skip_classes: tuple[str, ...], only_classes: tuple[str, ...] | None):
        super().__init__(convert_charrefs=True)
        self.skip_classes, self.only_classes = set(skip_classes), set(only_classes or ())
        self.stack: list[str] = []
        self.skip_depth: int | None = None  # depth of the element whose text is left out
        self.keep_depth: int | None = None if only_classes is not None else 0  # depth of the element kept
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in _INLINE:
            self.parts.append(" ")
        if tag in _VOID:
            return
        self.stack.append(tag)
        classes = set((dict(attrs).get("class") or "").split())
        if self.skip_depth is None and (tag in _INVISIBLE or classes & self.skip_classes):
            self.skip_depth = len(self.stack)
        if self.keep_depth is None and classes & self.only_classes:
            self.keep_depth = len(self.stack)

    def handle_endtag(self, tag):
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:
            depth = len(self.stack)
            if self.skip_depth is not None and depth <= self.skip_depth:
                self.skip_depth = None
            if self.keep_depth and depth <= self.keep_depth:
                self.keep_depth = None
            if self.stack.pop() == tag:
                break
        if tag not in _INLINE:
            self.parts.append(" ")

    def handle_data(self, data):
        if self.skip_depth is None and self.keep_depth is not None:
            self.parts.append(data)


def visible_text(html: str, skip_classes: tuple[str, ...] = (), only_classes: tuple[str, ...] | None = None) -> str:
    """The text of ``html`` a reader can see: without scripts, styles, templates and the
    document head, without the elements of ``skip_classes``, and with ``only_classes`` only
    the text inside elements of those classes (e.g. ``cell_output``: what notebook cells printed)."""
    parser = _Text(skip_classes, only_classes)
    parser.feed(html)
    parser.close()
    return re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.parts))


#: an absolute path of a machine, not the path of a URL (no word character, dot, colon, slash,
#: tilde or dash just before it): POSIX roots where checkouts, temporary files and environments
#: live, Windows drives, and any site-packages or dist-packages path
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/~-])/(?:work|tmp|var/tmp|home|root|Users|private|var/folders|opt|mnt|scratch|srv|usr/(?:local/)?lib)"
    r"/[\w.~-]+(?:/[\w.~-]*)*"
    r"|(?<![\w])[A-Za-z]:\\[\w.~-]+(?:\\[\w.~-]*)*"
    r"|[\w./\\~-]*(?:site|dist)-packages[/\\][\w./\\~-]*"
)
TRACEBACK = re.compile(r"\bTraceback\b")
#: a result not computed yet, as :mod:`prunelib.report` prints it; "0 pending" is a count, not one
PENDING = re.compile(r"(?<!\b0 )\bpending\b", re.I)


def _snippet(text: str, match: re.Match, width: int = 60) -> str:
    start, end = max(0, match.start() - width), min(len(text), match.end() + width)
    return " ".join(text[start:end].split())


def text_problems(text: str) -> list[str]:
    """A traceback or an absolute machine path in a page's visible text, each with its context."""
    problems = [f"traceback: ...{_snippet(text, m)}..." for m in TRACEBACK.finditer(text)]
    problems += [f"absolute path {m.group(0)!r}: ...{_snippet(text, m)}..." for m in ABSOLUTE_PATH.finditer(text)]
    return problems


def pending_hits(html: str) -> list[str]:
    """Every 'pending' in what the page's notebook cells output (``cell_output``), with its
    context. The Markdown prose is left out: it may explain the marker ("a run not computed yet
    shows as pending"), and results reach a page through outputs."""
    text = visible_text(html, only_classes=("cell_output",))
    return [f"...{_snippet(text, m)}..." for m in PENDING.finditer(text)]


def pending_verdict(page: str, hits: list[str], lacking: list[str]) -> tuple[str, str]:
    """``("pass", "")`` without 'pending'; with some, ``("xfail", why)`` while runs lack results
    (``lacking``: :func:`lacking_runs`) and ``("fail", why)`` once every run has one."""
    if not hits:
        return "pass", ""
    message = f"{page} shows {len(hits)} 'pending': " + " | ".join(hits[:5])
    if lacking:
        return "xfail", (f"{message} -- allowed while the results lack {len(lacking)} runs (lacking_runs lists them: "
                         f"prunelib experiments --list of every suite, and of chapter 9's on the transfer model): "
                         f"{', '.join(lacking[:8])}"
                         + (" ..." if len(lacking) > 8 else ""))
    return "fail", f"{message} -- but every run has a stored result: re-execute the notebook"


#: console errors of the toolchain, not of the book, allowed with the reason and the fix; every
#: other console error fails the page
KNOWN_CONSOLE_ERRORS: dict[str, str] = {}
# Two such errors were fixed in the book's configuration rather than allowed here: Sphinx 7.4 wrote
# sphinx-thebe's inline `const THEBE_JS_URL` twice (fixed by _ext/dedupe_scripts.py), and the theme
# logged "invalid theme mode" while html_context.default_mode was unset (set in _config.yml).


def known_console_error(message: str) -> str | None:
    """The reason a console message is allowed (:data:`KNOWN_CONSOLE_ERRORS`), else None."""
    return next((why for known, why in KNOWN_CONSOLE_ERRORS.items() if known in message), None)


def page_problems(report: dict, source: Source) -> list[str]:
    """Everything wrong with one opened page, 'pending' aside (see :func:`pending_hits`).

    ``report`` is what :data:`PAGE_REPORT` returns in the page plus ``console``, the errors
    Chromium reported while loading it: ``h1`` (texts of the page's h1), ``math`` (equations in the
    content), ``unrendered`` (equations MathJax left as TeX), ``merror`` (TeX errors), ``mjx``
    (``<mjx-container>`` elements), ``images`` (``{src, local, complete, width, height}`` of the
    content's ``<img>``), ``errors`` (error outputs of notebook cells) and ``html`` (the rendered
    DOM). Console errors listed in :data:`KNOWN_CONSOLE_ERRORS` are not problems."""
    problems = []
    if not any(h.strip() for h in report["h1"]):
        problems.append("no <h1> title")
    elif source.title and normalized(source.title) not in map(normalized, report["h1"]):
        problems.append(f"the source's title {source.title!r} is not among the page's h1 {report['h1']!r}")
    if source.math and not report["mjx"]:
        problems.append("the source has math but the page has no <mjx-container> (MathJax rendered nothing)")
    if report["unrendered"]:
        problems.append(f"{len(report['unrendered'])} of {report['math']} equations not rendered by MathJax: "
                        f"{report['unrendered'][:3]}")
    if report["merror"]:
        problems.append(f"TeX errors: {report['merror'][:3]}")
    local = [image for image in report["images"] if image["local"]]
    if source.figures and not local:
        problems.append("the source has figures but the page shows no <img> of its own")
    problems += [f"figure not loaded: {image['src']} (complete={image['complete']}, "
                 f"{image['width']}x{image['height']})"
                 for image in local if not (image["complete"] and image["width"] > 0 and image["height"] > 0)]
    problems += [f"error output of a cell: {text!r}" for text in report.get("errors", [])]
    problems += [f"console: {message}" for message in report["console"] if not known_console_error(message)]
    problems += text_problems(visible_text(report["html"]))
    return problems


# ---------------------------------------------------------------------------------------------
# What the results hold: the runs a page may still show as pending
# ---------------------------------------------------------------------------------------------

_LISTED = re.compile(r"^(cached|stale|running|missing)\s+(\S.*?)\s*$", re.M)


def parse_run_listing(listing: str) -> list[str]:
    """The runs without a stored result in the output of ``prunelib experiments --list``: those
    listed ``missing`` or ``running`` (claimed by a worker, not written yet), and the allocation
    suite when the listing says it waits for its sensitivities. A ``stale`` result is stored, so a
    page shows it, not 'pending'. An output that lists nothing is an error (its format changed)."""
    listed = _LISTED.findall(listing)
    waiting = "(the allocation suite is listed once" in listing
    if not listed and not waiting:
        raise ValueError(f"no run in the listing (did its format change?):\n{listing[-2000:]}")
    lacking = [name for state, name in listed if state in ("missing", "running")]
    if waiting:
        lacking.append("allocation suite (its sensitivities and outlier ratios are not all stored)")
    return lacking


def lacking_runs(root: Path, python: str, profile: str = "cpu") -> list[str]:
    """:func:`parse_run_listing` of ``prunelib experiments --profile <profile> --suite all --list``
    on the results of the checkout ``root``, and of the sensitivity and allocation suites of the
    profile's transfer model, which chapter 9 renders too. Listing reads the stored JSON records
    and computes nothing (a few seconds each)."""
    from prunelib.experiments.profiles import get_profile
    from prunelib.experiments.suites import TRANSFER

    listings = [("all", {})]
    second = TRANSFER.get(get_profile(profile).model)
    if second:
        listings += [(suite, {"PRUNEBOOK_MODEL": second}) for suite in ("sensitivity", "allocation")]
    lacking = []
    for suite, env in listings:
        result = subprocess.run(
            [python, "-m", "prunelib", "experiments", "--profile", profile, "--suite", suite, "--list",
             "--results", str(root / "results" / "experiments")],
            capture_output=True, text=True, cwd=root, timeout=300, env={**os.environ, **env},
        )
        if result.returncode != 0:
            raise RuntimeError(f"listing the runs failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        lacking += [f"{second}: {name}" if env else name for name in parse_run_listing(result.stdout)]
    return lacking


# ---------------------------------------------------------------------------------------------
# Headless Chromium over the DevTools protocol
# ---------------------------------------------------------------------------------------------

#: run in the opened page once it has loaded: waits for MathJax's first typesetting and for the
#: content's images (lazy ones made eager), then reports what :func:`page_problems` checks
PAGE_REPORT = r"""
(async () => {
  const wait = ms => new Promise(done => setTimeout(done, ms));
  const within = (promise, ms) => Promise.race([promise, wait(ms)]);
  const content = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  // Sphinx defines window.MathJax (its configuration) on pages with math; the script replaces it
  for (let i = 0; i < 100 && window.MathJax && !(MathJax.startup && MathJax.startup.promise); i++) await wait(100);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await within(MathJax.startup.promise, 30000);
  const images = [...content.querySelectorAll("img")];
  images.forEach(img => { if (img.loading === "lazy") img.loading = "eager"; });
  await within(Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done); }))), 30000);
  if (document.fonts) await within(document.fonts.ready, 10000);
  const math = [...content.querySelectorAll(".math")];
  return {
    url: location.href,
    h1: [...document.querySelectorAll("h1")].map(h => h.textContent.trim()),
    math: math.length,
    unrendered: math.filter(e => !e.querySelector("mjx-container")).map(e => e.textContent.trim().slice(0, 80)),
    merror: [...document.querySelectorAll("mjx-merror")].map(e => (e.getAttribute("data-mjx-error")
             || e.textContent).slice(0, 120)),
    mjx: document.querySelectorAll("mjx-container").length,
    errors: [...content.querySelectorAll(".cell_output .traceback, .cell_output .output.error")]
            .map(e => e.textContent.trim().slice(0, 200)),
    images: images.map(img => ({src: img.getAttribute("src"), local: new URL(img.src).origin === location.origin,
                                complete: img.complete, width: img.naturalWidth, height: img.naturalHeight})),
    html: document.documentElement.outerHTML,
  };
})()
"""

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars", "--disable-extensions",
    "--window-size=1280,1800",
    # offline and deterministic: only the local server answers (the badges' remote images fail
    # at once, and the checks ignore them), whether or not the machine has a network
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


class BrowserError(RuntimeError):
    pass


@dataclass
class Browser:
    """One headless Chromium; :meth:`open` loads a page in a fresh tab and reports on it."""

    executable: str
    profile_dir: Path
    timeout: float = 90.0
    proc: subprocess.Popen | None = None
    _next_id: int = 0
    _buffer: bytes = b""
    _events: list[dict] = field(default_factory=list)

    def __enter__(self) -> Browser:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands from descriptor 3 and answers on 4: bash moves the pipe's ends
        # there, from numbers above 9 so that neither is 3 or 4 already
        for name in ("to_chrome_r", "from_chrome_w"):
            low = locals()[name]
            high = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(low)
            if name == "to_chrome_r":
                to_chrome_r = high
            else:
                from_chrome_w = high
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-',
             self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}", "--remote-debugging-pipe",
             "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.send("Browser.getVersion")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit status {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_chrome, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == method and e.get("sessionId") == session for e in self._events):
            message = self._read_message(deadline)
            if "method" in message:
                self._events.append(message)

    def open(self, url: str) -> dict:
        """Load ``url`` in a new tab and return :data:`PAGE_REPORT`'s result with ``console``:
        every ``console.error``/``console.assert``, uncaught exception and error logged by
        Chromium (a failed load of a local file included) while the page loaded and settled.
        Errors about other origins' resources (blocked on purpose) are left out."""
        # a fresh browser context per page (its own storage): every page is opened as by a first visitor
        context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", {"url": "about:blank", "browserContextId": context})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                self.send(domain, session=session)
            navigated = self.send("Page.navigate", {"url": url}, session=session)
            if navigated.get("errorText"):
                raise BrowserError(f"{url}: {navigated['errorText']}")
            self.wait_for("Page.loadEventFired", session)
            result = self.send("Runtime.evaluate", {"expression": PAGE_REPORT, "awaitPromise": True,
                                                    "returnByValue": True}, session=session)
            if "exceptionDetails" in result:
                raise BrowserError(f"the page report failed: {result['exceptionDetails']}")
            report = result["result"]["value"]
            events = [e for e in self._events if e.get("sessionId") == session]
            report["console"] = console_errors(events, origin=re.match(r"https?://[^/]+", url).group(0))
            return report
        finally:
            self._events = [e for e in self._events if e.get("sessionId") != session]
            self.send("Target.closeTarget", {"targetId": target})
            self.send("Target.disposeBrowserContext", {"browserContextId": context})


def console_errors(events: list[dict], origin: str) -> list[str]:
    """The error messages among DevTools events: ``console.error``/``assert``, uncaught
    exceptions, and Chromium's error log entries (failed loads), except those about resources
    of another origin than ``origin``, which the browser test blocks on purpose."""
    found = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            found.append(f"console.{params['type']}: {text}")
        elif event["method"] == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
        elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            url = entry.get("url") or ""
            if url and not url.startswith(origin):
                continue
            found.append(f"{entry.get('source', 'log')}: {entry.get('text')} {url}".strip())
    return found
