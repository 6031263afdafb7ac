"""Finite-difference gradient checks, shared by the tests and the chapters.

A gradient is right when it matches (f(x + eps) - f(x - eps)) / (2 eps), the central difference,
whose error shrinks like eps^2. Checking every parameter of a model is slow in pure Python, so the
rung-level check samples entries at random (with a seed, so a failure can be replayed).
"""
from __future__ import annotations

import random
from collections.abc import Callable

from .params import Params, copy_params

Entry = tuple[str, int, int]


def central_difference(f: Callable[[float], float], x: float, eps: float = 1e-6) -> float:
    """d f / d x at x by the central difference."""
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def sample_entries(params: Params, k: int, seed: int = 0) -> list[Entry]:
    """k (matrix name, row, col) positions drawn uniformly from all parameters."""
    everything = [(name, i, j) for name, mat in params.items()
                  for i in range(len(mat)) for j in range(len(mat[0]))]
    return random.Random(seed).sample(everything, min(k, len(everything)))


def finite_difference_grads(
    loss_of: Callable[[Params], float], params: Params, entries: list[Entry], eps: float = 1e-6
) -> dict[Entry, float]:
    """Central-difference gradient of loss_of(params) at each of the given entries."""
    grads = {}
    for name, i, j in entries:
        def f(value: float, name=name, i=i, j=j) -> float:
            shifted = copy_params(params)
            shifted[name][i][j] = value
            return loss_of(shifted)
        grads[(name, i, j)] = central_difference(f, params[name][i][j], eps)
    return grads


def relative_error(a: float, b: float, floor: float = 1e-3) -> float:
    """|a - b| / max(|a|, |b|, floor): relative for gradients above `floor`, absolute below it.

    A central difference of a loss near 3 carries about 1e-10 of rounding noise, so for a gradient
    of 1e-6 a purely relative error says nothing; below the floor we compare absolute errors.
    """
    return abs(a - b) / max(abs(a), abs(b), floor)
