"""Sphinx extension: write each script of a page once.

Sphinx 7.4, which Jupyter Book 1.x pins, keeps an inline script that an extension adds after the
builder has started twice (once with filename ``''``, once with ``None``), so sphinx-thebe's
``const THEBE_JS_URL = ...`` is declared twice and the browser reports a SyntaxError on every page.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "", str(getattr(script, "attributes", {})))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"][:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
