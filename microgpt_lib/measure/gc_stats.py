"""Watching and steering CPython's cyclic garbage collector (chapter 2).

`GCRecorder` times every collection through `gc.callbacks` (how many, of which generation, how
long, how many objects freed); `gc_paused` switches automatic collection off around a block of code
that makes no reference cycles, so that nothing is left for the collector to find.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field


@dataclass
class GCRecorder:
    """Records every collection between `start()` and `stop()` (or inside `with recorder:`).

    Per collection: its generation, wall time (ms) and the objects it freed, kept in three lists
    of plain numbers, which the GC does not track, so that recording does not grow the heap it
    measures.
    """

    generations: list[int] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    freed: list[int] = field(default_factory=list)
    _t0: float = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.ms.append((time.perf_counter() - self._t0) * 1e3)
            self.generations.append(info["generation"])
            self.freed.append(info["collected"])

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
        if generation is None:
            return sum(self.ms)
        return sum(ms for g, ms in zip(self.generations, self.ms) if g == generation)

    def count(self, generation: int | None = None) -> int:
        """Number of collections (of one generation, or all of them)."""
        if generation is None:
            return len(self.generations)
        return self.generations.count(generation)

    def collected(self) -> int:
        """Objects the collector freed: garbage that reference counting could not free."""
        return sum(self.freed)

