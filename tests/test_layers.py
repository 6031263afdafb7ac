"""Every hand-derived backward in layers.py against finite differences (and chapter 3's Tensor).

Each layer is checked through the scalar L = sum(forward(inputs) * R) for a random R: the backward
given dout = R must return dL/dinput, which the central difference measures entry by entry.
"""
import importlib.util

import numpy as np
import pytest

from microgpt_lib import layers as L

T, C, H, V = 5, 8, 2, 7
EPS = 1e-6


def numerical_grad(f, x: np.ndarray) -> np.ndarray:
    """Central difference of the scalar f() with respect to every entry of x (changed in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + EPS
        up = f()
        x[i] = old - EPS
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * EPS)
    return grad


def assert_close(analytic: np.ndarray, numeric: np.ndarray, tol: float = 1e-7) -> None:
    scale = max(1.0, np.abs(numeric).max())
    assert np.abs(analytic - numeric).max() < tol * scale


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("batch", [(), (3,)])
def test_encoder_backward_matches_finite_differences(rng, batch):
    tokens = rng.integers(0, V, batch + (T,))
    tokens.flat[:2] = 1  # a repeated token must receive both gradients
    wte, wpe = rng.normal(size=(V, C)), rng.normal(size=(9, C))
    R = rng.normal(size=batch + (T, C))
    dwte, dwpe = np.zeros_like(wte), np.zeros_like(wpe)
    L.encoder_backward(dwte, dwpe, R, tokens)
    f = lambda: np.sum(L.encoder_forward(tokens, wte, wpe) * R)  # noqa: E731
    assert_close(dwte, numerical_grad(f, wte))
    assert_close(dwpe, numerical_grad(f, wpe))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_rmsnorm_backward_matches_finite_differences(rng, batch):
    x, R = rng.normal(size=batch + (T, C)), rng.normal(size=batch + (T, C))
    out, rstd = L.rmsnorm_forward(x)
    assert np.allclose(rstd, 1 / np.sqrt(np.mean(x * x, axis=-1) + 1e-5))
    dx = L.rmsnorm_backward(R, x, rstd)
    assert_close(dx, numerical_grad(lambda: np.sum(L.rmsnorm_forward(x)[0] * R), x))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_matmul_backward_matches_finite_differences(rng, batch):
    x, w = rng.normal(size=batch + (T, C)), rng.normal(size=(2 * C, C))
    R = rng.normal(size=batch + (T, 2 * C))
    dw = np.ones_like(w)  # backward accumulates: start from ones and subtract them after
    dx = L.matmul_backward(R, x, w, dw)
    f = lambda: np.sum(L.matmul_forward(x, w) * R)  # noqa: E731
    assert_close(dx, numerical_grad(f, x))
    assert_close(dw - 1, numerical_grad(f, w))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_attention_backward_matches_finite_differences(rng, batch):
    q, k, v = (rng.normal(size=batch + (T, C)) for _ in range(3))
    R = rng.normal(size=batch + (T, C))
    out, att = L.attention_forward(q, k, v, H)
    assert att.shape == batch + (H, T, T)
    assert np.allclose(att.sum(-1), 1) and np.all(np.triu(att, 1) == 0)  # causal rows
    dq, dk, dv = L.attention_backward(R, q, k, v, att, H)
    f = lambda: np.sum(L.attention_forward(q, k, v, H)[0] * R)  # noqa: E731
    for analytic, x in ((dq, q), (dk, k), (dv, v)):
        assert_close(analytic, numerical_grad(f, x))


def test_attention_is_causal(rng):
    q, k, v = (rng.normal(size=(T, C)) for _ in range(3))
    out, _ = L.attention_forward(q, k, v, H)
    k[-1] += 5.0
    v[-1] += 5.0
    changed, _ = L.attention_forward(q, k, v, H)
    assert np.array_equal(out[:-1], changed[:-1])  # only the last position sees the last key


def test_relu_backward_matches_finite_differences(rng):
    x = rng.normal(size=(T, 4 * C))
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kink
    R = rng.normal(size=x.shape)
    dx = L.relu_backward(R, L.relu_forward(x))
    assert_close(dx, numerical_grad(lambda: np.sum(L.relu_forward(x) * R), x))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_softmax_crossentropy_backward_matches_finite_differences(rng, batch):
    logits, targets = rng.normal(size=batch + (T, V)) * 3, rng.integers(0, V, batch + (T,))
    R = rng.normal(size=batch + (T,))
    losses, probs = L.softmax_crossentropy_forward(logits, targets)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert np.allclose(losses, -np.take_along_axis(log_softmax, targets[..., None], -1)[..., 0])
    dlogits = L.softmax_crossentropy_backward(probs, targets, R)
    f = lambda: np.sum(L.softmax_crossentropy_forward(logits, targets)[0] * R)  # noqa: E731
    assert_close(dlogits, numerical_grad(f, logits))


def test_softmax_crossentropy_survives_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]])
    losses, probs = L.softmax_crossentropy_forward(logits, np.array([1]))
    assert np.isfinite(losses).all() and np.isclose(losses[0], 1000.0)


def test_masked_mean_loss_ignores_padding():
    losses = np.array([[1.0, 2.0, 99.0], [3.0, 99.0, 99.0]])
    mask = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, dlosses = L.masked_mean_loss(losses, mask)
    assert loss == pytest.approx(2.0)
    assert np.array_equal(dlosses, mask / 3)


# --- chapter 3's Tensor autograd, when that module is present --------------------------------

needs_tensor = pytest.mark.skipif(importlib.util.find_spec("microgpt_lib.tensor") is None,
                                  reason="chapter 3's microgpt_lib.tensor is not available")


def _tensor_grads(build, *arrays):
    """Gradients of sum(build(*tensors) * R) by chapter 3's Tensor autograd."""
    from microgpt_lib.tensor import Tensor

    tensors = [Tensor(a.copy()) for a in arrays]
    build(*tensors).backward()
    return [t.grad for t in tensors]


@needs_tensor
def test_layers_match_tensor_autograd(rng):
    x, w, R = rng.normal(size=(T, C)), rng.normal(size=(2 * C, C)), rng.normal(size=(T, C))
    # rmsnorm
    rstd = L.rmsnorm_forward(x)[1]
    (gx,) = _tensor_grads(lambda t: ((t * ((t * t).sum(axis=-1, keepdims=True) * (1 / C) + 1e-5)
                                        ** -0.5) * R).sum(), x)
    assert np.allclose(L.rmsnorm_backward(R, x, rstd), gx, atol=1e-12)
    # matmul
    R2 = rng.normal(size=(T, 2 * C))
    dw = np.zeros_like(w)
    dx = L.matmul_backward(R2, x, w, dw)
    gx, gw = _tensor_grads(lambda a, b: ((a @ b.T) * R2).sum(), x, w)
    assert np.allclose(dx, gx, atol=1e-12) and np.allclose(dw, gw, atol=1e-12)
    # attention
    q, k, v = (rng.normal(size=(T, C)) for _ in range(3))
    _, att = L.attention_forward(q, k, v, H)
    bias = np.triu(np.full((T, T), -np.inf), 1)

    def attention(tq, tk, tv):
        heads = [t.reshape(T, H, C // H).transpose(1, 0, 2) for t in (tq, tk, tv)]
        scores = heads[0] @ heads[1].transpose(0, 2, 1) * (1 / np.sqrt(C // H)) + bias
        out = (scores.softmax(axis=-1) @ heads[2]).transpose(1, 0, 2).reshape(T, C)
        return (out * R).sum()

    for ours, theirs in zip(L.attention_backward(R, q, k, v, att, H), _tensor_grads(attention, q, k, v)):
        assert np.allclose(ours, theirs, atol=1e-12)
    # softmax cross-entropy
    logits, targets = rng.normal(size=(T, V)), rng.integers(0, V, T)
    Rt = rng.normal(size=T)
    probs = L.softmax_crossentropy_forward(logits, targets)[1]
    onehot = np.eye(V)[targets]
    (gl,) = _tensor_grads(lambda t: ((t.softmax(axis=-1).log() * onehot).sum(axis=-1) * -Rt).sum(),
                          logits)
    assert np.allclose(L.softmax_crossentropy_backward(probs, targets, Rt), gl, atol=1e-12)
