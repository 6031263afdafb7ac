"""Sphinx extension: repository and launch buttons only when the repository address is set.

`_config.yml` holds the address once, as `repository.url`. Left empty, the book has no
repository button and no Binder or Colab launch buttons (a button must not point at a repository
that does not exist); set, this turns the repository button on, and the launch buttons that
`launch_buttons` configures stay on.
"""
from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config


def buttons_follow_repository_url(app: Sphinx, config: Config) -> None:
    """Show the repository and launch buttons if and only if `repository_url` is set."""
    options = config.html_theme_options
    if (options.get("repository_url") or "").strip():
        options["use_repository_button"] = True
    else:
        options.pop("repository_url", None)
        options.pop("launch_buttons", None)
        for button in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
            options[button] = False


def setup(app: Sphinx) -> dict[str, Any]:
    """Decide once the configuration is read, before the theme reads its options."""
    app.connect("config-inited", buttons_follow_repository_url)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
