"""What the OS says about this CPU: vector features, caches, the BLAS kernels in use (chapter 6).

Linux describes every CPU in /proc/cpuinfo (model, flags such as avx2 or avx512f) and every cache
in /sys/devices/system/cpu/cpu0/cache/index*/ (level, type, size, which CPUs share it).
threadpoolctl asks the BLAS NumPy loaded which kernels it chose for this CPU ("Haswell",
"SkylakeX", "Zen"...). On another OS these files are missing and the functions return what they
can (empty lists, "unknown"), never an error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_info

# Flags that decide how many numbers one instruction handles, widest last.
VECTOR_FLAGS = ("sse2", "avx", "fma", "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")
CACHE_ROOT = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class Cache:
    """One level of cache as cpu0 sees it."""

    level: int
    kind: str  # "Data", "Instruction" or "Unified"
    size_bytes: int
    shared_by: int  # how many logical CPUs share it (1: private to a core)

    @property
    def name(self) -> str:
        return f"L{self.level}" + ("d" if self.kind == "Data" else "")


def parse_size(text: str) -> int:
    """'32K' -> 32768, '1024K' -> 1048576, '32M' -> 33554432 (sysfs' notation)."""
    text = text.strip()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def _count_cpus(cpu_list: str) -> int:
    """'0-1' -> 2, '0,2,4' -> 3, '5' -> 1."""
    total = 0
    for part in cpu_list.strip().split(","):
        first, _, last = part.partition("-")
        total += int(last) - int(first) + 1 if last else 1
    return total


def caches(root: Path = CACHE_ROOT) -> list[Cache]:
    """The data and unified caches of cpu0, smallest level first (instruction caches left out)."""
    found = []
    for index in sorted(root.glob("index*")):
        try:
            read = lambda name: (index / name).read_text().strip()  # noqa: E731
            cache = Cache(int(read("level")), read("type"), parse_size(read("size")),
                          _count_cpus(read("shared_cpu_list")))
        except (OSError, ValueError):
            continue
        if cache.kind != "Instruction":
            found.append(cache)
    return sorted(found, key=lambda c: c.level)


def cpu_model_and_flags(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """The first CPU's model name and flags from /proc/cpuinfo (("unknown", set()) without it)."""
    model, flags = "unknown", set()
    try:
        with open(path) as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def blas_libraries() -> list[dict]:
    """The BLAS (and OpenMP) libraries loaded in this process, with the kernels they picked."""
    return [{k: pool.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for pool in threadpool_info()]


def threads_per_core(path: str = "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list"
                     ) -> int | None:
    """Logical CPUs sharing cpu0's core (2 with SMT / hyper-threading); None if not reported."""
    try:
        return _count_cpus(Path(path).read_text())
    except (OSError, ValueError):
        return None


def describe_cpu() -> dict:
    """Model, logical CPUs, vector features present, caches and BLAS kernels: one dict to save."""
    model, flags = cpu_model_and_flags()
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "threads_per_core": threads_per_core(),
        "vector_features": [f for f in VECTOR_FLAGS if f in flags],
        "caches": [{"name": c.name, "size_bytes": c.size_bytes, "shared_by": c.shared_by}
                   for c in caches()],
        "blas": blas_libraries(),
    }
