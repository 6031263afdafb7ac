"""Rung `numpy_kernels` against the scalar reference: same losses, gradients and weights, bad input rejected."""
import numpy as np
import pytest

from microgpt_lib.config import GPTConfig
from microgpt_lib.data import names_corpus
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.measure.gradcheck import central_difference
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.rung4_numpy_kernels.gpt import gpt_backward, gpt_forward


@pytest.fixture(scope="module")
def corpus():
    return names_corpus()


def test_fused_matches_scalar_losses_and_gradients(corpus):
    docs, tok = corpus
    config = GPTConfig.preset("e16_L1_b16", tok.vocab_size)
    params = init_params(config, seed=3)
    scalar, fused = get_rung("scalar")(config, params), get_rung("numpy_kernels")(config, params)
    for step in range(20):
        tokens = tok.encode_doc(docs[step])
        loss_s, grads_s = scalar.loss_and_grads(tokens)
        loss_f, grads_f = fused.loss_and_grads(tokens)
        assert abs(loss_s - loss_f) < 1e-10
        for name, grad in grads_s.items():
            assert np.abs(np.array(grad) - grads_f[name]).max() < 1e-10, (step, name)
        lr = 0.01 * (1 - step / 20)
        scalar.step(lr)
        fused.step(lr)
    for name, weights in scalar.parameters().items():
        assert np.abs(np.array(weights) - np.array(fused.parameters()[name])).max() < 1e-10


def test_fused_matches_scalar_on_two_layers_and_long_names(corpus):
    docs, tok = corpus
    config = GPTConfig(n_embd=8, n_head=2, n_layer=2, block_size=6, vocab_size=tok.vocab_size)
    params = init_params(config, seed=1)
    scalar, fused = get_rung("scalar")(config, params), get_rung("numpy_kernels")(config, params)
    long_name = tok.encode_doc("christopher")  # longer than block_size: cut the same way
    for tokens in (long_name, tok.encode_doc(docs[0])):
        assert abs(scalar.train_step(tokens, 0.01) - fused.train_step(tokens, 0.01)) < 1e-10


def test_gpt_backward_matches_finite_differences(corpus):
    docs, tok = corpus
    config = GPTConfig(n_embd=8, n_head=2, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = FlatParams.from_params(config, init_params(config, seed=2))
    grads = params.zeros_like()
    ids = np.array(tok.encode_doc(docs[5])[:9])
    tokens, targets = ids[:-1], ids[1:]
    _, cache = gpt_forward(params, tokens, targets)
    gpt_backward(params, grads, cache)
    rng = np.random.default_rng(0)
    for i in rng.choice(params.data.size, 40, replace=False):
        def loss_at(value, i=i):
            old, params.data[i] = params.data[i], value
            loss = gpt_forward(params, tokens, targets)[0]
            params.data[i] = old
            return loss
        numeric = central_difference(loss_at, params.data[i])
        assert abs(numeric - grads.data[i]) < 1e-7 * max(1, abs(numeric))


def test_fused_generates_like_its_logits(corpus):
    _, tok = corpus
    config = GPTConfig.preset("e16_L1_b8", tok.vocab_size)
    fused = get_rung("numpy_kernels")(config, init_params(config, seed=0))
    samples = fused.generate(5, seed=1)
    assert samples == fused.generate(5, seed=1)
    assert all(len(s) <= config.block_size and tok.bos not in s for s in samples)


@pytest.mark.parametrize("tokens, message", [
    ([26], "at least 2 tokens"),
    ([26, 3, 27, 26], "outside the vocabulary"),
    ([26, -1, 26], "outside the vocabulary"),
])
def test_fused_rejects_bad_documents(tokens, message):
    config = GPTConfig.preset("e16_L1_b8")
    fused = get_rung("numpy_kernels")(config, init_params(config))
    with pytest.raises(ValueError, match=message):
        fused.loss_and_grads(tokens)
