"""Every hand-derived backward in layers.py against finite differences (and chapter 3's Tensor)."""
import numpy as np
import pytest

from microgpt_lib.measure.kernel_check import (
    finite_difference_report,
    tensor_autograd_report,
    tensor_available,
)
from microgpt_lib.rungs.rung4_numpy_kernels import layers as L

LAYERS = ["encoder", "matmul", "relu", "rmsnorm", "attention", "softmax_crossentropy"]


@pytest.fixture(scope="module")
def reports():
    return {batch: finite_difference_report(seed=0, batch=batch) for batch in [(), (3,)]}


@pytest.mark.parametrize("batch", [(), (3,)], ids=["one_sequence", "batch_of_3"])
@pytest.mark.parametrize("layer", LAYERS)
def test_layer_backward_matches_finite_differences(reports, layer, batch):
    assert reports[batch][layer] < 1e-7


def test_encoder_backward_accumulates_repeated_tokens():
    wte, wpe = np.zeros((4, 2)), np.zeros((3, 2))
    dwte, dwpe = np.ones_like(wte), np.zeros_like(wpe)
    L.encoder_backward(dwte, dwpe, np.ones((3, 2)), np.array([1, 1, 2]))
    assert dwte[:, 0].tolist() == [1, 3, 2, 1] and dwpe[:, 0].tolist() == [1, 1, 1]


def test_rmsnorm_caches_reciprocal_rms():
    x = np.random.default_rng(0).normal(size=(4, 8))
    out, rstd = L.rmsnorm_forward(x)
    assert np.allclose(rstd, 1 / np.sqrt(np.mean(x * x, axis=-1) + 1e-5))
    assert np.allclose(out, x * rstd[:, None])


def test_attention_is_causal():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(5, 8)) for _ in range(3))
    out, att = L.attention_forward(q, k, v, 2)
    assert np.allclose(att.sum(-1), 1) and np.all(np.triu(att, 1) == 0)
    k[-1] += 5.0
    v[-1] += 5.0
    changed, _ = L.attention_forward(q, k, v, 2)
    assert np.array_equal(out[:-1], changed[:-1])  # only the last position sees the last key


def test_softmax_crossentropy_survives_huge_logits():
    losses, probs = L.softmax_crossentropy_forward(np.array([[1000.0, 0.0, -1000.0]]),
                                                   np.array([1]))
    assert np.isfinite(probs).all() and np.isclose(losses[0], 1000.0)


def test_masked_mean_loss_ignores_padding():
    losses = np.array([[1.0, 2.0, 99.0], [3.0, 99.0, 99.0]])
    mask = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, dlosses = L.masked_mean_loss(losses, mask)
    assert loss == pytest.approx(2.0)
    assert np.array_equal(dlosses, mask / 3)


@pytest.mark.skipif(not tensor_available(), reason="chapter 3's microgpt_lib.rungs.rung3_numpy.tensor is absent")
def test_layers_match_tensor_autograd():
    for layer, diff in tensor_autograd_report().items():
        assert diff < 1e-12, layer
