"""Watching and steering CPython's cyclic garbage collector (chapter 2).

`GCRecorder` times every collection through `gc.callbacks` (how many, of which generation, how
long, how many objects freed); `gc_paused` switches automatic collection off around a block of code
that makes no reference cycles, so that nothing is left for the collector to find.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Collection:
    """One run of the cyclic GC: generation, wall time and the objects it freed."""

    generation: int
    ms: float
    collected: int


@dataclass
class GCRecorder:
    """Records every collection between `start()` and `stop()` (or inside `with recorder:`)."""

    collections: list[Collection] = field(default_factory=list)
    _t0: float = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._t0) * 1e3
            self.collections.append(Collection(info["generation"], ms, info["collected"]))

    def start(self) -> "GCRecorder":
        gc.callbacks.append(self._callback)
        return self

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def __enter__(self) -> "GCRecorder":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def total_ms(self, generation: int | None = None) -> float:
        """Time spent collecting (in one generation, or all of them)."""
        return sum(c.ms for c in self.collections if generation in (None, c.generation))

    def count(self, generation: int | None = None) -> int:
        return sum(1 for c in self.collections if generation in (None, c.generation))

    def collected(self) -> int:
        """Objects the collector freed: garbage that reference counting could not free."""
        return sum(c.collected for c in self.collections)


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
