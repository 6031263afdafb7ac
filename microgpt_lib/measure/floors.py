"""A lower bound on one single-sequence float64 training step, from two measurements (chapter 5).

Whatever the kernels, one step on one core must do (a) the matrix products: 2 flops per weight
per token forward, 4 backward (dx and dW), at best at the core's float64 matrix-multiply peak,
measured here with NumPy's BLAS on one thread; and (b) AdamW's exact square root and division for
every parameter, at best at the speed of NumPy's own vectorised sqrt and divide. Attention,
norms, softmax and memory traffic only add to the sum, so the floor is optimistic on purpose.
"""
from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from microgpt_lib.config import GPTConfig


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def float64_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """One core's float64 matrix-multiply speed: GFLOP/s of an n x n x n NumPy matmul."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    out = np.empty((n, n))
    with threadpool_limits(1, user_api="blas"):
        seconds = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    return 2 * n**3 / seconds / 1e9


def adamw_sqrt_div_ms(num_params: int, repeats: int = 20) -> float:
    """ms for one square root and one division over num_params float64 values (NumPy's kernels)."""
    rng = np.random.default_rng(0)
    m, v = rng.standard_normal(num_params), rng.random(num_params)
    s = np.empty(num_params)

    def sqrt_div() -> None:
        np.sqrt(v, out=s)
        np.divide(m, s, out=s)

    return _best_seconds(sqrt_div, repeats) * 1e3


def matmul_weights(config: GPTConfig) -> int:
    """Weights that enter a matrix product (all but the wte and wpe tables, which are lookups)."""
    shapes = config.param_shapes()
    return sum(r * c for name, (r, c) in shapes.items() if name not in ("wte", "wpe"))


def step_floor_ms(config: GPTConfig, tokens: float, peak_gflops: float) -> dict[str, float]:
    """The floor of one step on `tokens` positions: matrix arithmetic at peak + AdamW's sqrt/div."""
    matmul_ms = 6 * matmul_weights(config) * tokens / (peak_gflops * 1e9) * 1e3
    adam_ms = adamw_sqrt_div_ms(config.num_params)
    return {"matmul_ms": matmul_ms, "adamw_ms": adam_ms, "floor_ms": matmul_ms + adam_ms}
