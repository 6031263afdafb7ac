"""`pytest --nbmake` at the repository root runs every test and every chapter, in short mode.

Short mode (MICROGPT_SMOKE=1) makes every long run of the chapters short, so the whole suite
takes minutes; MICROGPT_FULL=1 asks for the full runs the book makes. The chapter kernels are
separate processes: they inherit this environment, including the repository on PYTHONPATH, so
they import this checkout's `microgpt_lib` and `fastops`. A chapter cell may take minutes in full
mode, so nbmake's default limit of 300 s per cell is raised unless one is given.

Every chapter runs once per session: each notebook that nbmake runs without an error is kept
(with its outputs, in memory), and the browser test, which the session runs last, renders the
book from those executed notebooks instead of running every chapter a second time.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent
NBMAKE_DEFAULT_TIMEOUT_S = 300
CELL_TIMEOUT_S = 1800

if os.environ.get("MICROGPT_FULL") == "1":
    os.environ.pop("MICROGPT_SMOKE", None)
else:
    os.environ.setdefault("MICROGPT_SMOKE", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


BROWSER_TEST = "tests/test_book_browser.py"
EXECUTED: dict[Path, nbformat.NotebookNode] = {}  # notebook -> its executed copy, this session


def keep_executed_notebooks() -> None:
    """Make nbmake keep each notebook it runs without an error (outputs included) in EXECUTED."""
    from nbmake import pytest_items
    from nbmake.nb_result import NotebookResult
    from nbmake.nb_run import NotebookRun

    class KeepingRun(NotebookRun):
        def execute(self) -> NotebookResult:
            result = super().execute()
            if result.error is None:
                EXECUTED[Path(self.filename).resolve()] = result.nb
            return result

    pytest_items.NotebookRun = KeepingRun


def pytest_configure(config: pytest.Config) -> None:
    """Give a chapter cell up to CELL_TIMEOUT_S unless --nbmake-timeout says otherwise, and keep
    the notebooks nbmake runs for the browser test."""
    if getattr(config.option, "nbmake_timeout", None) == NBMAKE_DEFAULT_TIMEOUT_S:
        config.option.nbmake_timeout = CELL_TIMEOUT_S
    if getattr(config.option, "nbmake", False):
        keep_executed_notebooks()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser test last, so that it finds the chapters that nbmake has run."""
    items.sort(key=lambda item: item.nodeid.startswith(BROWSER_TEST))


@pytest.fixture(scope="session")
def executed_notebooks() -> dict[Path, nbformat.NotebookNode]:
    """The notebooks nbmake has run without an error in this session, with their outputs."""
    return EXECUTED
