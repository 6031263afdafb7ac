"""Checks for chapter 4's kernels: finite differences on arrays, and chapter 3's Tensor autograd.

Each layer is checked through L = sum(forward(inputs) * R) for a random R: handed dout = R, the
backward must return dL/dinput, which the central difference measures entry by entry.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from microgpt_lib.measure.gradcheck import array_finite_difference as numerical_grad
from microgpt_lib.rungs.rung4_numpy_kernels import layers as L


def max_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest |analytic - numeric|, relative to the largest numeric entry (or 1 if that is small)."""
    return float(np.abs(analytic - numeric).max() / max(1.0, np.abs(numeric).max()))


def finite_difference_report(seed: int = 0, T: int = 5, C: int = 8, H: int = 2, V: int = 7,
                             batch: tuple[int, ...] = ()) -> dict[str, float]:
    """Max relative error of every layer's backward against finite differences (float64)."""
    rng = np.random.default_rng(seed)
    shape = batch + (T, C)
    errors = {}

    tokens = rng.integers(0, V, batch + (T,))
    wte, wpe, R = rng.normal(size=(V, C)), rng.normal(size=(T + 2, C)), rng.normal(size=shape)
    dwte, dwpe = np.zeros_like(wte), np.zeros_like(wpe)
    L.encoder_backward(dwte, dwpe, R, tokens)
    f = lambda: np.sum(L.encoder_forward(tokens, wte, wpe) * R)  # noqa: E731
    errors["encoder"] = max(max_error(dwte, numerical_grad(f, wte)),
                            max_error(dwpe, numerical_grad(f, wpe)))

    x, w, R2 = rng.normal(size=shape), rng.normal(size=(2 * C, C)), rng.normal(size=batch + (T, 2 * C))
    dw = np.zeros_like(w)
    dx = L.matmul_backward(R2, x, w, dw)
    f = lambda: np.sum(L.matmul_forward(x, w) * R2)  # noqa: E731
    errors["matmul"] = max(max_error(dx, numerical_grad(f, x)), max_error(dw, numerical_grad(f, w)))

    x = rng.normal(size=shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    dx = L.relu_backward(R, L.relu_forward(x))
    errors["relu"] = max_error(dx, numerical_grad(lambda: np.sum(L.relu_forward(x) * R), x))

    _, rstd = L.rmsnorm_forward(x)
    dx = L.rmsnorm_backward(R, x, rstd)
    errors["rmsnorm"] = max_error(dx, numerical_grad(lambda: np.sum(L.rmsnorm_forward(x)[0] * R), x))

    q, k, v = (rng.normal(size=shape) for _ in range(3))
    _, att = L.attention_forward(q, k, v, H)
    grads = L.attention_backward(R, q, k, v, att, H)
    f = lambda: np.sum(L.attention_forward(q, k, v, H)[0] * R)  # noqa: E731
    errors["attention"] = max(max_error(g, numerical_grad(f, a)) for g, a in zip(grads, (q, k, v)))

    logits, targets = rng.normal(size=batch + (T, V)) * 3, rng.integers(0, V, batch + (T,))
    Rt = rng.normal(size=batch + (T,))
    _, probs = L.softmax_crossentropy_forward(logits, targets)
    dlogits = L.softmax_crossentropy_backward(probs, targets, Rt)
    f = lambda: np.sum(L.softmax_crossentropy_forward(logits, targets)[0] * Rt)  # noqa: E731
    errors["softmax_crossentropy"] = max_error(dlogits, numerical_grad(f, logits))
    return errors


def tensor_available() -> bool:
    """True when chapter 3's array autograd (microgpt_lib.rungs.rung3_numpy.tensor) is installed."""
    return importlib.util.find_spec("microgpt_lib.rungs.rung3_numpy.tensor") is not None


def _tensor_grads(build, *arrays):
    from microgpt_lib.rungs.rung3_numpy.tensor import Tensor

    tensors = [Tensor(a.copy()) for a in arrays]
    build(*tensors).backward()
    return [t.grad for t in tensors]


def tensor_autograd_report(seed: int = 0, T: int = 5, C: int = 8, H: int = 2, V: int = 7
                           ) -> dict[str, float]:
    """Max |ours - Tensor's| gradient for rmsnorm, matmul, attention, softmax cross-entropy.

    The Tensor side composes only elementary operations (and chapter 3's softmax node), so it is
    an independent derivation by the chain rule.
    """
    rng = np.random.default_rng(seed)
    x, w, R = rng.normal(size=(T, C)), rng.normal(size=(2 * C, C)), rng.normal(size=(T, C))
    diffs = {}
    rstd = L.rmsnorm_forward(x)[1]
    (gx,) = _tensor_grads(lambda t: ((t * ((t * t).sum(axis=-1, keepdims=True) * (1 / C) + 1e-5)
                                        ** -0.5) * R).sum(), x)
    diffs["rmsnorm"] = float(np.abs(L.rmsnorm_backward(R, x, rstd) - gx).max())

    R2 = rng.normal(size=(T, 2 * C))
    dw = np.zeros_like(w)
    dx = L.matmul_backward(R2, x, w, dw)
    gx, gw = _tensor_grads(lambda a, b: ((a @ b.T) * R2).sum(), x, w)
    diffs["matmul"] = float(max(np.abs(dx - gx).max(), np.abs(dw - gw).max()))

    q, k, v = (rng.normal(size=(T, C)) for _ in range(3))
    _, att = L.attention_forward(q, k, v, H)
    bias = np.triu(np.full((T, T), -np.inf), 1)

    def attention(tq, tk, tv):
        heads = [t.reshape(T, H, C // H).transpose(1, 0, 2) for t in (tq, tk, tv)]
        scores = heads[0] @ heads[1].transpose(0, 2, 1) * (1 / np.sqrt(C // H)) + bias
        out = (scores.softmax(axis=-1) @ heads[2]).transpose(1, 0, 2).reshape(T, C)
        return (out * R).sum()

    ours = L.attention_backward(R, q, k, v, att, H)
    diffs["attention"] = float(max(np.abs(a - b).max()
                                   for a, b in zip(ours, _tensor_grads(attention, q, k, v))))

    logits, targets, Rt = rng.normal(size=(T, V)), rng.integers(0, V, T), rng.normal(size=T)
    probs = L.softmax_crossentropy_forward(logits, targets)[1]
    onehot = np.eye(V)[targets]
    (gl,) = _tensor_grads(
        lambda t: ((t.softmax(axis=-1).log() * onehot).sum(axis=-1) * -Rt).sum(), logits)
    diffs["softmax_crossentropy"] = float(
        np.abs(L.softmax_crossentropy_backward(probs, targets, Rt) - gl).max())
    return diffs
