"""A small progress bar: a widget in a notebook, a line of text that updates elsewhere."""
from __future__ import annotations

import sys
import time


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class Progress:
    """Counts `total` units of work; `update(postfix=...)` advances it and shows a short status."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.count, self.start = 0, time.perf_counter()
        self._widget = self._label = None
        self._last_print = 0.0
        if enabled and _in_notebook():
            import ipywidgets as widgets
            from IPython.display import display

            self._widget = widgets.IntProgress(min=0, max=total, description=desc)
            self._label = widgets.Label()
            display(widgets.HBox([self._widget, self._label]))

    def update(self, n: int = 1, postfix: str = "") -> None:
        """Advance by n and show `postfix` (e.g. the current loss)."""
        self.count += n
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        status = f"{self.count}/{self.total} [{elapsed:.1f}s] {postfix}"
        if self._widget is not None:
            self._widget.value = self.count
            self._label.value = status
        elif self.count == self.total or elapsed - self._last_print >= 2.0:
            self._last_print = elapsed
            print(f"\r{self.desc} {status}", end="\n" if self.count == self.total else "", file=sys.stderr)

    def close(self) -> None:
        """Mark the bar finished (a notebook bar turns green, or red if the work stopped early)."""
        if self._widget is not None:
            self._widget.bar_style = "success" if self.count >= self.total else "danger"
        elif self.enabled and self.count < self.total:
            print(file=sys.stderr)
