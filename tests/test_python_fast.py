"""The `python_fast` rung computes what the scalar reference computes: losses, gradients, samples."""
from __future__ import annotations

import gc

import pytest

from microgpt_lib import GPTConfig, get_rung, init_params
from microgpt_lib.data import names_corpus

TOL = 1e-12


def max_abs_difference(a: dict, b: dict) -> float:
    return max(abs(x - y) for name in a for ra, rb in zip(a[name], b[name]) for x, y in zip(ra, rb))


@pytest.fixture(scope="module")
def corpus():
    docs, tok = names_corpus()
    return [tok.encode_doc(d) for d in docs[:40]], tok


@pytest.mark.parametrize("config", [
    GPTConfig.preset("e16_L1_b16"),
    GPTConfig(n_embd=8, n_head=2, n_layer=2, block_size=6),
], ids=["e16_L1_b16", "e8_L2_b6"])
def test_python_fast_matches_scalar_losses_and_gradients_over_20_steps(corpus, config):
    encoded, _ = corpus
    params = init_params(config, seed=3)
    ref, fast = get_rung("scalar")(config, params), get_rung("python_fast")(config, params)
    for step, tokens in enumerate(encoded[:20]):
        loss_ref, grads_ref = ref.loss_and_grads(tokens)
        loss_fast, grads_fast = fast.loss_and_grads(tokens)
        assert abs(loss_ref - loss_fast) < TOL, step
        assert max_abs_difference(grads_ref, grads_fast) < TOL, step
        lr = 0.01 * (1 - step / 20)
        ref.step(lr)
        fast.step(lr)
    assert max_abs_difference(ref.parameters(), fast.parameters()) < TOL


def test_python_fast_train_step_matches_scalar_train_step(corpus):
    encoded, _ = corpus
    config = GPTConfig.preset("e16_L1_b8")
    params = init_params(config, seed=5)
    ref, fast = get_rung("scalar")(config, params), get_rung("python_fast")(config, params)
    for tokens in encoded[:5]:
        assert abs(ref.train_step(tokens, 0.01) - fast.train_step(tokens, 0.01)) < TOL
    assert max_abs_difference(ref.parameters(), fast.parameters()) < TOL


def test_python_fast_samples_the_same_names_as_scalar(corpus):
    encoded, tok = corpus
    config = GPTConfig.preset("e16_L1_b16")
    params = init_params(config, seed=0)
    ref, fast = get_rung("scalar")(config, params), get_rung("python_fast")(config, params)
    for tokens in encoded[:5]:  # trained a little, so the samples look like names
        ref.train_step(tokens, 0.01)
        fast.train_step(tokens, 0.01)
    samples_ref = ref.generate(8, temperature=0.5, seed=42)
    samples_fast = fast.generate(8, temperature=0.5, seed=42)
    assert samples_fast == samples_ref
    assert [tok.decode(s) for s in samples_fast] == [tok.decode(s) for s in samples_ref]


def test_python_fast_step_leaves_no_cyclic_garbage(corpus):
    encoded, _ = corpus
    config = GPTConfig.preset("e16_L1_b16")
    fast = get_rung("python_fast")(config, init_params(config))
    gc.collect()
    gc.disable()
    try:
        fast.train_step(encoded[0], 0.01)
        with_no_grad = fast.generate(2, seed=1)
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert len(with_no_grad) == 2


@pytest.mark.parametrize("tokens", [[26], [26, 27, 26], [26, -1, 26]])
def test_python_fast_rejects_bad_documents(tokens):
    config = GPTConfig.preset("e16_L1_b8")
    fast = get_rung("python_fast")(config, init_params(config))
    with pytest.raises(ValueError):
        fast.loss_and_grads(tokens)
    with pytest.raises(ValueError):
        fast.train_step(tokens, 0.01)


def test_python_fast_rejects_parameters_of_another_config():
    params = init_params(GPTConfig.preset("e16_L1_b8"))
    with pytest.raises(ValueError):
        get_rung("python_fast")(GPTConfig.preset("e16_L1_b16"), params)
