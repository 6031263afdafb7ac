"""What one OpenMP parallel region costs: waking the other threads and waiting for all (ch. 6).

Every `prange` in fastops is a parallel region: the threads that wait between regions (spinning
briefly, then asleep) join in, share the loop, and meet at its end. With an almost empty
loop (a STREAM copy of one element per thread) the time of a region is that overhead alone; a
step that enters R regions pays about R times it, however little work each region holds.
"""
from __future__ import annotations

import os
import statistics

from fastops import _stream


def region_seconds(threads: int = 2, repeats: int = 200) -> float:
    """Median seconds to enter and leave one parallel region of `threads` threads doing nothing."""
    if not 1 <= threads <= (os.cpu_count() or 1):
        raise ValueError(f"threads must be 1..{os.cpu_count()}, got {threads}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return statistics.median(_stream.stream_times("copy", threads, threads, 1, repeats))
