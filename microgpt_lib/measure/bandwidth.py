"""Memory bandwidth at every level of the hierarchy, with fastops' STREAM kernels (chapter 6).

`sweep` runs copy, scale, add and triad on arrays from a few KiB (they live in L1) to several
times the last cache (they must come from DRAM), on one thread and on more. `level_bandwidth`
reads one figure per level off a sweep: the triad at a working set of half that cache (per thread
for a private cache, in all for a shared one), and for DRAM at eight times the last cache.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from fastops import _stream
from microgpt_lib.measure.cpu_info import Cache, caches

STREAM_KERNELS = ("copy", "scale", "add", "triad")
ARRAYS = 3  # every kernel's three arrays make up the working set


@dataclass(frozen=True)
class BandwidthPoint:
    """One kernel on one working-set size and thread count."""

    kernel: str
    working_set_bytes: int  # all three arrays
    threads: int
    gb_per_s: float


def measure_point(kernel: str, working_set_bytes: int, threads: int = 1,
                  min_seconds: float = 2e-3, repeats: int = 5) -> BandwidthPoint:
    """GB/s of one kernel on arrays totalling working_set_bytes, best of `repeats` timings.

    Each timing runs enough passes to last about min_seconds, so that even an L1-sized pass (well
    under a microsecond) is timed over many repetitions.
    """
    if working_set_bytes < ARRAYS * 8 * threads:
        raise ValueError(f"working set of {working_set_bytes} bytes is too small for "
                         f"{threads} thread(s)")
    n = working_set_bytes // (ARRAYS * 8)
    one_pass = _stream.stream_seconds(kernel, n, threads, 1, 1)
    passes = max(1, math.ceil(min_seconds / max(one_pass, 1e-9)))
    seconds = _stream.stream_seconds(kernel, n, threads, passes, repeats)
    return BandwidthPoint(kernel, ARRAYS * 8 * n, threads,
                          _stream.stream_bytes(kernel, n) / seconds / 1e9)


def sweep_sizes(smallest: int = 8 << 10, largest: int | None = None,
                per_octave: int = 2) -> list[int]:
    """Working-set sizes in bytes, geometric from `smallest` to `largest` (default: 8x the last
    cache, at most a quarter of the free memory)."""
    if largest is None:
        last = max((c.size_bytes for c in caches()), default=32 << 20)
        largest = min(8 * last, _stream.available_memory_bytes() // 4)
    if not 0 < smallest <= largest:
        raise ValueError(f"need 0 < smallest ({smallest}) <= largest ({largest})")
    steps = round(per_octave * math.log2(largest / smallest))
    return sorted({int(smallest * 2 ** (i / per_octave)) for i in range(steps + 1)})


def sweep(sizes: list[int], threads: tuple[int, ...] = (1, 2),
          kernels: tuple[str, ...] = STREAM_KERNELS, min_seconds: float = 2e-3,
          repeats: int = 5) -> list[BandwidthPoint]:
    """Every kernel at every size and thread count (thread counts above the CPUs are skipped)."""
    usable = [t for t in threads if t <= (os.cpu_count() or 1)]
    return [measure_point(k, size, t, min_seconds, repeats)
            for t in usable for size in sizes for k in kernels]


def level_sizes(threads: int, cache_list: list[Cache] | None = None) -> dict[str, int]:
    """The working set that exercises each level: half of each cache (times `threads` for a
    private cache, whose copies add up), and eight times the last cache for DRAM."""
    cache_list = caches() if cache_list is None else cache_list
    sizes = {}
    for cache in cache_list:
        copies = threads if cache.shared_by == 1 else max(1, threads // cache.shared_by)
        sizes[cache.name] = cache.size_bytes // 2 * copies
    last = max((c.size_bytes for c in cache_list), default=32 << 20)
    sizes["DRAM"] = 8 * last
    return sizes


def level_bandwidth(threads: int = 1, kernel: str = "triad", min_seconds: float = 2e-3,
                    repeats: int = 5) -> dict[str, float]:
    """GB/s of `kernel` at each level of the hierarchy (see level_sizes), on `threads` threads."""
    return {level: measure_point(kernel, size, threads, min_seconds, repeats).gb_per_s
            for level, size in level_sizes(threads).items()}
