"""Finite-difference gradient checks, shared by the tests and the chapters.

A gradient is right when it matches (f(x + eps) - f(x - eps)) / (2 eps), the central difference,
whose error shrinks like eps^2. Checking every parameter of a model is slow in pure Python, so the
rung-level check samples entries at random (with a seed, so a failure can be replayed). For the
array autograd of chapter 3, every entry of an operation's inputs is checked.
"""
from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from microgpt_lib.params import Params, copy_params
from microgpt_lib.rungs.rung3_numpy.tensor import Tensor

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


def array_finite_difference(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of f() with respect to every entry of x (perturbed in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        up = f()
        x[i] = saved - eps
        down = f()
        x[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad


def tensor_op_gradient_error(
    op: Callable[..., Tensor], inputs: list[np.ndarray], seed: int = 0, eps: float = 1e-6
) -> float:
    """Largest |backprop - finite difference| / max(1, |finite difference|) over all inputs of `op`.

    The scalar checked is sum(op(*inputs) * w) with fixed random weights w, so every output entry
    sends a different gradient back and a transposed or misrouted gradient cannot cancel out.
    """
    tensors = [Tensor(x) for x in inputs]
    out = op(*tensors)
    w = np.random.default_rng(seed).standard_normal(out.shape)
    (out * w).sum().backward()
    worst = 0.0
    for t in tensors:
        numeric = array_finite_difference(lambda: float((op(*tensors).data * w).sum()), t.data, eps)
        analytic = np.zeros_like(t.data) if t.grad is None else t.grad
        error = np.abs(analytic - numeric) / np.maximum(1, np.abs(numeric))
        worst = max(worst, float(error.max()))
    return worst


def backward_error(
    forward: Callable[..., np.ndarray], backward: Callable[..., tuple[np.ndarray, ...]],
    inputs: list[np.ndarray], seed: int = 0, eps: float = 1e-6,
) -> float:
    """Largest relative error of a hand-written backward against finite differences.

    `forward(*inputs)` returns an array y; `backward(dy, *inputs)` returns the gradient of every
    input, in order, for an upstream gradient dy. The scalar checked is sum(y * dy) with a fixed
    random dy, as in `tensor_op_gradient_error`: the chapters' exercise checkers use it.
    """
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    dy = np.random.default_rng(seed).standard_normal(np.shape(forward(*inputs)))
    grads = backward(dy, *inputs)
    if len(grads) != len(inputs):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(inputs)} inputs")
    worst = 0.0
    for x, grad in zip(inputs, grads):
        numeric = array_finite_difference(lambda: float((forward(*inputs) * dy).sum()), x, eps)
        error = np.abs(np.asarray(grad) - numeric) / np.maximum(1, np.abs(numeric))
        worst = max(worst, float(error.max()))
    return worst
