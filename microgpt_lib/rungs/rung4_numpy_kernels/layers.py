"""Chapter 4's layers: a `<layer>_forward` / `<layer>_backward` pair per layer, gradients by hand.

No autograd and no graph: each forward returns its output and the cache its backward needs (named
in the docstring), each backward takes the upstream gradient `d<out>` and returns the gradient of
its input, and accumulates weight gradients with `+=` into buffers it is given (llm.c style).

Shapes. T positions, C channels (n_embd), V vocabulary, H heads, D = C / H. Every kernel takes
either one sequence, (T, ...), or a batch of sequences with a leading axis, (B, T, ...): the
single-sequence signature below is the B-less case of the same function. Weights are (out, in),
as in `params.py`, so a linear layer is `x @ w.T`.

Padding mask (batched training). A batch holds B documents of different lengths, right-padded to
a common T. `mask` is a float array (B, T): mask[b, t] = 1.0 when position t of row b predicts a
real target, 0.0 for padding; each row is a run of ones followed by zeros (padding only at the
end). Padded positions hold any valid token id (0) and target (0). Two facts make padding inert:
  1. attention is causal, so a real position t only attends to positions <= t, all real: padding
     never reaches a real position's forward value;
  2. the loss is `sum(mask * losses) / sum(mask)`, so the backward starts from
     dlosses = mask / sum(mask), which is exactly 0 at padding; every backward is linear in its
     upstream gradient, so the padded positions contribute exactly 0.0 to every weight gradient.
So no kernel needs the mask except the loss (`masked_mean_loss`); tests check both facts.

Note for the Cython rung (chapter 5): mirror these signatures and caches one to one. Row-wise
kernels (rmsnorm, matmul, relu, softmax_crossentropy) see (B, T, C) as (B*T, C) rows; encoder and
attention need B and T separately. A C kernel written for (B, T, C) serves one sequence with B = 1.
`gpt_forward` / `gpt_backward` show how the layers chain; `ActivationCache` names what is kept.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

RMS_EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# encoder: x = wte[tokens] + wpe[positions]

def encoder_forward(tokens: np.ndarray, wte: np.ndarray, wpe: np.ndarray) -> np.ndarray:
    """tokens (T,) or (B, T) ints; wte (V, C); wpe (block, C) -> x (T, C) or (B, T, C). No cache."""
    return wte[tokens] + wpe[: tokens.shape[-1]]


def encoder_backward(dwte: np.ndarray, dwpe: np.ndarray, dx: np.ndarray, tokens: np.ndarray) -> None:
    """dwte (V, C) += rows of dx scattered by token; dwpe (block, C) += dx summed over the batch."""
    T, C = dx.shape[-2], dx.shape[-1]
    np.add.at(dwte, tokens.reshape(-1), dx.reshape(-1, C))
    dwpe[:T] += dx if dx.ndim == 2 else dx.sum(axis=0)


# ----------------------------------------------------------------------------------------------
# rmsnorm: out = x * rstd, rstd = (mean(x^2) + eps)^(-1/2), per row, no gain

def rmsnorm_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., C) -> out (..., C), rstd (...,). Cache: rstd (the reciprocal RMS of each row)."""
    rstd = (np.vecdot(x, x) * (1.0 / x.shape[-1]) + RMS_EPS) ** -0.5
    return x * rstd[..., None], rstd


def rmsnorm_backward(dout: np.ndarray, x: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """dout, x (..., C), rstd (...,) -> dx = rstd * dout - x * rstd^3 * mean(dout * x)."""
    coef = np.vecdot(dout, x) * (rstd * rstd * rstd) * (1.0 / x.shape[-1])
    return dout * rstd[..., None] - x * coef[..., None]


# ----------------------------------------------------------------------------------------------
# matmul (linear layer without bias): out = x @ w.T

def matmul_forward(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (..., Cin), w (Cout, Cin) -> out (..., Cout). Cache: none beyond the input x."""
    return x @ w.T


def matmul_backward(dout: np.ndarray, x: np.ndarray, w: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """dout (..., Cout), x (..., Cin), w (Cout, Cin); dw += dout^T x -> dx = dout @ w (..., Cin)."""
    if dout.ndim == 2:  # one sequence: no reshape needed (each call costs ~0.3 us)
        dw += dout.T @ x
    else:
        dw += dout.reshape(-1, w.shape[0]).T @ x.reshape(-1, w.shape[1])
    return dout @ w


# ----------------------------------------------------------------------------------------------
# causal multi-head attention: scores, mask, softmax and weighted sum in one kernel

def _split_heads(a: np.ndarray, n_head: int) -> np.ndarray:
    """(..., T, C) -> (..., H, T, D), a view."""
    return a.reshape(a.shape[:-1] + (n_head, -1)).swapaxes(-2, -3)


def _merge_heads(a: np.ndarray) -> np.ndarray:
    """(..., H, T, D) -> (..., T, C), a copy in row-major order."""
    return a.swapaxes(-2, -3).reshape(a.shape[:-3] + (a.shape[-2], -1))


@lru_cache(maxsize=None)
def _causal_bias(T: int) -> np.ndarray:
    """(T, T): 0 on and below the diagonal, -inf above (the future a query may not see)."""
    bias = np.triu(np.full((T, T), -np.inf), 1)
    bias.setflags(write=False)  # shared by every call: read-only
    return bias


def attention_forward(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, n_head: int
) -> tuple[np.ndarray, np.ndarray]:
    """q, k, v (T, C) or (B, T, C) -> out (same shape), att (H, T, T) or (B, H, T, T).

    Cache: att, the causal softmax probabilities (row t is zero beyond column t).
    """
    T, C = q.shape[-2], q.shape[-1]
    qh, kh, vh = _split_heads(q, n_head), _split_heads(k, n_head), _split_heads(v, n_head)
    scores = qh @ kh.swapaxes(-1, -2)
    scores *= 1.0 / math.sqrt(C // n_head)
    scores += _causal_bias(T)
    scores -= scores.max(axis=-1, keepdims=True)
    att = np.exp(scores, out=scores)
    att /= att.sum(axis=-1, keepdims=True)
    return _merge_heads(att @ vh), att


def attention_backward(
    dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, att: np.ndarray, n_head: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout, q, k, v (..., T, C), att (..., H, T, T) -> dq, dk, dv (..., T, C).

    Softmax backward: dscores = att * (datt - sum_j(datt * att)); masked entries have att = 0, so
    they get no gradient without a mask being applied again.
    """
    C = q.shape[-1]
    scale = 1.0 / math.sqrt(C // n_head)
    qh, kh, vh = _split_heads(q, n_head), _split_heads(k, n_head), _split_heads(v, n_head)
    doh = _split_heads(dout, n_head)
    dvh = att.swapaxes(-1, -2) @ doh
    datt = doh @ vh.swapaxes(-1, -2)
    datt -= np.vecdot(datt, att)[..., None]
    datt *= att
    datt *= scale
    dqh = datt @ kh
    dkh = datt.swapaxes(-1, -2) @ qh
    return _merge_heads(dqh), _merge_heads(dkh), _merge_heads(dvh)


# ----------------------------------------------------------------------------------------------
# relu

def relu_forward(x: np.ndarray) -> np.ndarray:
    """x (...) -> out = max(x, 0). Cache: out (its sign pattern is all backward needs)."""
    return np.maximum(x, 0.0)


def relu_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dout, out (...) -> dx = dout where out > 0, else 0."""
    return dout * (out > 0)


# ----------------------------------------------------------------------------------------------
# softmax + cross-entropy, fused: the backward is probs - onehot

def softmax_crossentropy_forward(
    logits: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """logits (..., V), targets (...) ints -> losses (...), probs (..., V). Cache: probs.

    losses = log(sum(exp(shifted))) - shifted[target], with shifted = logits - max (no overflow).
    """
    V = logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    picked = shifted.reshape(-1, V)[_rows(targets.size), targets.reshape(-1)]
    probs = np.exp(shifted, out=shifted)
    sums = probs.sum(axis=-1)
    probs /= sums[..., None]
    return np.log(sums) - picked.reshape(targets.shape), probs


def softmax_crossentropy_backward(
    probs: np.ndarray, targets: np.ndarray, dlosses: np.ndarray
) -> np.ndarray:
    """probs (..., V), targets (...), dlosses (...) -> dlogits = dlosses * (probs - onehot)."""
    dlogits = probs * dlosses[..., None]
    dlogits.reshape(-1, probs.shape[-1])[_rows(targets.size), targets.reshape(-1)] -= (
        dlosses.reshape(-1))
    return dlogits


@lru_cache(maxsize=None)
def _uniform(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array of `shape` filled with 1 / its size: dlosses when every position is real."""
    out = np.full(shape, 1.0 / math.prod(shape), dtype=dtype)
    out.setflags(write=False)  # shared by every call: read-only
    return out


@lru_cache(maxsize=None)
def _rows(n: int) -> np.ndarray:
    """0..n-1, the row index that pairs with each target when picking one entry per row."""
    rows = np.arange(n)
    rows.setflags(write=False)  # shared by every call: read-only
    return rows


def masked_mean_loss(losses: np.ndarray, mask: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Mean loss over real positions and its gradient per position: dlosses = mask / sum(mask).

    losses (T,) or (B, T); mask None (every position real) or the same shape, 1.0 real, 0.0 pad.
    """
    if mask is None:
        return float(losses.sum()) / losses.size, _uniform(losses.shape, losses.dtype)
    n = float(mask.sum())
    return float((losses * mask).sum()) / n, (mask / n).astype(losses.dtype)
