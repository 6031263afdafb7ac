"""`pytest --nbmake` at the repository root runs every test and every chapter, in short mode.

Short mode (MICROGPT_SMOKE=1) makes every long run of the chapters short, so the whole suite
takes minutes; MICROGPT_FULL=1 asks for the full runs the book makes. The chapter kernels are
separate processes: they inherit this environment, including the repository on PYTHONPATH, so
they import this checkout's `microgpt_lib` and `fastops`. A chapter cell may take minutes in full
mode, so nbmake's default limit of 300 s per cell is raised unless one is given.
"""
from __future__ import annotations

import os
from pathlib import Path

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


def pytest_configure(config: pytest.Config) -> None:
    """Give a chapter cell up to CELL_TIMEOUT_S unless --nbmake-timeout says otherwise."""
    if getattr(config.option, "nbmake_timeout", None) == NBMAKE_DEFAULT_TIMEOUT_S:
        config.option.nbmake_timeout = CELL_TIMEOUT_S
