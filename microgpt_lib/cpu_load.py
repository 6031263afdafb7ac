"""How many cores other programs keep busy right now, so training picks threads that can run (core).

A fastops step on two threads meets at dozens of parallel regions. When another program holds one
of the two cores, every meeting waits for the scheduler to give the second thread its turn, and two
threads run slower than one (chapter 6 measures it). A short look at the kernel's per-CPU counters
before a run tells whether the cores are free.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
SPARE = 0.3  # busy time (in cores) a run tolerates before it gives up a thread


def available_cores() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parse_cpu_times(stat_text: str) -> tuple[int, int, int]:
    """(busy, total) clock ticks summed over all CPUs, and the number of CPUs, from /proc/stat.

    The first line is `cpu  user nice system idle iowait irq softirq steal ...`; idle and iowait
    are the time no program ran (steal, time the hypervisor gave elsewhere, counts as busy).
    One `cpuN` line follows per CPU.
    """
    lines = stat_text.splitlines()
    fields = lines[0].split() if lines else []
    if len(fields) < 6 or fields[0] != "cpu":
        raise ValueError(f"not a /proc/stat summary line: {stat_text[:60]!r}")
    ticks = [int(f) for f in fields[1:9]]  # guest time is already inside user time
    idle = ticks[3] + ticks[4]
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    return sum(ticks) - idle, sum(ticks), max(cpus, 1)


def busy_cores(window: float = 0.1) -> float | None:
    """Cores' worth of work all programs did during `window` seconds while this one slept.

    None where the OS has no /proc/stat (macOS, Windows): the caller then cannot tell.
    """
    if not window > 0:
        raise ValueError(f"window must be > 0 seconds, got {window!r}")
    try:
        busy0, total0, _ = parse_cpu_times(PROC_STAT.read_text())
        time.sleep(window)
        busy1, total1, cpus = parse_cpu_times(PROC_STAT.read_text())
    except OSError:
        return None
    if total1 <= total0:
        return 0.0
    return (busy1 - busy0) / (total1 - total0) * cpus


def threads_to_use(wanted: int, busy: float | None, cores: int) -> int:
    """`wanted` threads, fewer when `busy` cores (of `cores`) are taken by other programs."""
    if busy is None:
        return max(1, min(wanted, cores))
    free = cores - math.ceil(max(busy - SPARE, 0.0))
    return max(1, min(wanted, free))
