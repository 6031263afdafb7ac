"""Pausing CPython's cyclic garbage collector around work that makes no reference cycles.

A rung whose step builds no cycles (chapters 2 and 3) gains nothing from automatic collection,
which would only walk its many short-lived objects; `gc_paused` switches it off around such a
block and restores it after. Chapter 2 measures what the collector costs (`measure.gc_stats`).
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Automatic collection off inside the block (restored after): only safe for acyclic work."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
