"""Run-length settings: one switch, `MICROGPT_SMOKE=1`, makes every long run in the course short.

The book runs each experiment in full. Tests (`make test`, and so `pytest --nbmake`) set
MICROGPT_SMOKE=1, which the notebook kernels inherit, so the same notebooks run in seconds.
"""
from __future__ import annotations

import os

SMOKE_ENV = "MICROGPT_SMOKE"


def smoke() -> bool:
    """True when MICROGPT_SMOKE is set to a non-empty value other than 0."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def run_length(full: int, smoke_length: int) -> int:
    """`full` for the book, `smoke_length` when MICROGPT_SMOKE is on (tests)."""
    return smoke_length if smoke() else full
