"""The machine's arithmetic peaks: matrix-multiply GFLOP/s per dtype and thread count (chapter 6).

A roofline needs a ceiling for arithmetic. We measure it rather than multiply clock x vector
width x units: a large matrix product is the most arithmetic-dense work there is, and the BLAS
NumPy ships is tuned for this CPU, so its GFLOP/s is the practical peak. Our own best kernel
(fastops' hand-written loops, BLAS switched off) gets its own ceiling: the gap between the two is
what vector width, register blocking and cache tiling buy.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

import fastops

DTYPES = {"float64": np.float64, "float32": np.float32}


def best_seconds(fn: Callable[[], object], min_seconds: float = 0.05, repeats: int = 5) -> float:
    """Best time of one call of fn: `repeats` timings of enough calls to last min_seconds each."""
    if min_seconds <= 0 or repeats < 1:
        raise ValueError(f"min_seconds ({min_seconds}) must be > 0 and repeats ({repeats}) >= 1")
    fn()  # warm-up: caches, lazy allocations, BLAS thread start
    start = time.perf_counter()
    fn()
    calls = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def _matrices(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if n < 1:
        raise ValueError(f"matrix size must be >= 1, got {n}")
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, n)).astype(DTYPES[dtype]),
            rng.standard_normal((n, n)).astype(DTYPES[dtype]))


def blas_peak_gflops(dtype: str = "float64", threads: int = 1, n: int = 1024,
                     min_seconds: float = 0.1) -> float:
    """GFLOP/s of NumPy's BLAS on an n x n x n product (2 n^3 flops) with `threads` threads."""
    a, b = _matrices(n, dtype)
    out = np.empty_like(a)
    with threadpool_limits(threads, user_api="blas"):
        seconds = best_seconds(lambda: np.matmul(a, b, out=out), min_seconds)
    return 2 * n**3 / seconds / 1e9


def own_kernel_gflops(dtype: str = "float64", n: int = 256, min_seconds: float = 0.1) -> float:
    """GFLOP/s of fastops' hand-written matmul_forward (BLAS off) on an n x n x n product.

    One thread: this is the ceiling of our own loops. The default n keeps the operands in L2.
    """
    x, w = _matrices(n, dtype)
    threshold = fastops.get_blas_threshold()
    fastops.set_blas_threshold(1 << 62)  # every product in our own loops
    try:
        seconds = best_seconds(lambda: fastops.matmul_forward(x, w), min_seconds)
    finally:
        fastops.set_blas_threshold(threshold)
    return 2 * n**3 / seconds / 1e9


def peaks(threads: tuple[int, ...] = (1, 2), n: int = 1024,
          min_seconds: float = 0.1) -> dict[str, dict[str, float]]:
    """{dtype: {"blas_1t": ..., "blas_2t": ..., "own_1t": ...}} in GFLOP/s."""
    table: dict[str, dict[str, float]] = {}
    for dtype in DTYPES:
        row = {f"blas_{t}t": blas_peak_gflops(dtype, t, n, min_seconds) for t in threads}
        row["own_1t"] = own_kernel_gflops(dtype, min_seconds=min_seconds)
        table[dtype] = row
    return table
