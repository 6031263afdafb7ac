"""Sampling in the ladder contract: prompt, temperature, top-k, BOS stop, token limit, sliding window."""
import math
import random

import numpy as np
import pytest

from microgpt_lib.config import GPTConfig
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung

CONFIG = GPTConfig(n_embd=8, n_head=2, n_layer=1, block_size=6, vocab_size=7)
BOS = CONFIG.vocab_size - 1


@pytest.fixture(scope="module")
def model():
    return get_rung("numpy")(CONFIG, init_params(CONFIG, seed=3))


def old_generate(model, n, temperature, seed):
    """The contract's sampling loop before prompts existed: BOS at 0, block_size draws, stop at BOS."""
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        state, token_id, sample = model.start_sample(), BOS, []
        for pos_id in range(CONFIG.block_size):
            probs = model.next_token_probs(state, token_id, pos_id, temperature)
            token_id = rng.choices(range(CONFIG.vocab_size), weights=probs)[0]
            if token_id == BOS:
                break
            sample.append(token_id)
        samples.append(sample)
    return samples


def greedy_reference(model, context, count):
    """Each next token the argmax of the probabilities after the last block_size tokens."""
    tokens = list(context)
    for _ in range(count):
        probs = model.context_probs(tokens[-CONFIG.block_size:])
        tokens.append(int(np.argmax(probs)))
    return tokens[len(context):]


def test_default_sampling_draws_exactly_as_before(model):
    for temperature, seed in [(0.5, 42), (1.0, 7), (2.0, 1)]:
        assert model.generate(20, temperature, seed=seed) == old_generate(model, 20, temperature, seed)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "hot", None])
def test_temperature_outside_its_domain_is_rejected(model, bad):
    with pytest.raises(ValueError, match="temperature"):
        model.generate(1, bad)


def test_temperature_zero_is_greedy_and_draws_nothing(model):
    rng = random.Random(5)
    before = rng.getstate()
    sample = model.generate(1, 0, rng=rng, prompt=[1, 2], stop_at_bos=False)[0]
    assert rng.getstate() == before
    assert sample == greedy_reference(model, [BOS, 1, 2], CONFIG.block_size - 2)


def test_top_k_one_is_greedy_at_any_temperature(model):
    greedy = model.generate(3, 0, prompt=[4], stop_at_bos=False)
    assert model.generate(3, 1.5, seed=0, prompt=[4], top_k=1, stop_at_bos=False) == greedy


def test_top_k_draws_only_among_the_k_most_likely(model):
    probs = model.context_probs([BOS])
    top2 = set(np.argsort(probs)[-2:].tolist())
    firsts = {s[0] for s in model.generate(200, 5.0, seed=0, top_k=2, max_new_tokens=1,
                                           stop_at_bos=False)}
    assert firsts <= top2 and len(firsts) == 2


@pytest.mark.parametrize("top_k", [0, CONFIG.vocab_size + 1, 1.5])
def test_top_k_outside_the_vocabulary_is_rejected(model, top_k):
    with pytest.raises(ValueError, match="top_k"):
        model.generate(1, top_k=top_k)


def test_sliding_window_continues_past_the_block(model):
    count = 3 * CONFIG.block_size
    sample = model.generate(1, 0, prompt=[2, 3], max_new_tokens=count, stop_at_bos=False)[0]
    assert len(sample) == count
    assert sample == greedy_reference(model, [BOS, 2, 3], count)


def test_a_prompt_longer_than_the_block_is_read_through_its_last_window(model):
    prompt = [1, 2, 3, 4, 5, 0, 1, 2]
    sample = model.generate(1, 0, prompt=prompt, max_new_tokens=5, stop_at_bos=False)[0]
    assert sample == greedy_reference(model, [BOS, *prompt], 5)


def test_without_bos_first_the_prompt_alone_is_the_context(model):
    sample = model.generate(1, 0, prompt=[2, 3], bos_first=False, max_new_tokens=10,
                            stop_at_bos=False)[0]
    assert sample == greedy_reference(model, [2, 3], 10)


def test_stop_at_bos_ends_a_sample_and_no_stop_keeps_the_length(model):
    stopped = model.generate(50, 1.0, seed=2)
    assert all(BOS not in s for s in stopped) and any(len(s) < CONFIG.block_size for s in stopped)
    kept = model.generate(50, 1.0, seed=2, stop_at_bos=False, max_new_tokens=9)
    assert all(len(s) == 9 for s in kept) and any(BOS in s for s in kept)


def test_prompt_and_limits_are_checked(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate(1, prompt=[CONFIG.vocab_size])
    with pytest.raises(ValueError, match="empty prompt"):
        model.generate(1, bos_first=False)
    with pytest.raises(ValueError, match="fills the block"):
        model.generate(1, prompt=[1] * CONFIG.block_size)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(1, max_new_tokens=-1)
    with pytest.raises(ValueError, match="n must be"):
        model.generate(-2)
    assert model.generate(1, max_new_tokens=0) == [[]]


@pytest.mark.parametrize("rung", ["scalar", "python_fast", "numpy_kernels", "cython"])
def test_every_rung_samples_the_same_with_a_prompt_and_a_sliding_window(model, rung):
    other = get_rung(rung)(CONFIG, init_params(CONFIG, seed=3))
    kwargs = dict(prompt=[1, 5], max_new_tokens=14, stop_at_bos=False, top_k=4)
    assert other.generate(4, 0.8, seed=9, **kwargs) == model.generate(4, 0.8, seed=9, **kwargs)
    assert math.isclose(sum(other.context_probs([BOS, 1, 2])), 1.0)
