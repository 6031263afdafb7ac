"""Sphinx extension: write each inline script once per page (works around a Sphinx 7.4 bug).

Extensions that add an inline script with `app.add_js_file(None, body=...)` (sphinx-thebe,
sphinx-togglebutton) get it twice on every page with Sphinx 7.4: the builder keeps the script
with filename None, and `prepare_writing` adds it again from the registry with filename ''. The
duplicated `const THEBE_JS_URL = ...` then throws "Identifier 'THEBE_JS_URL' has already been
declared" in every reader's console. This drops the second copy when each page is written.
"""
from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def drop_duplicate_inline_scripts(app: Sphinx, pagename: str, templatename: str,
                                  context: dict[str, Any], doctree: Any) -> None:
    """Keep the first of scripts that differ only by a None or '' filename."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        key = (getattr(js, "filename", js) or "", getattr(js, "priority", 500),
               tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the handler late, after every extension has added its scripts to the page."""
    app.connect("html-page-context", drop_duplicate_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
