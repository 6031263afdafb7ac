"""fastops' KV-cache step: the full forward's logits, position by position; bad input refused."""
import numpy as np
import pytest

import fastops
from microgpt_lib.config import GPTConfig
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.rung5_cython.model import FastopsModel

CONFIGS = [GPTConfig(16, 4, 1, 8, 11), GPTConfig(32, 4, 3, 24, 40)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_kv_cache_step_gives_the_full_forward_logits(config, dtype, tol):
    model = FastopsModel(config, init_params(config, seed=5), dtype)
    tokens = np.random.default_rng(1).integers(0, config.vocab_size, config.block_size)
    buffers = model.decode_buffers()
    for pos, token in enumerate(tokens):
        cached = model.decode_logits(buffers, int(token), pos)
        full = model.next_token_logits(tokens[: pos + 1])
        assert np.max(np.abs(cached - full)) <= tol * max(1.0, np.max(np.abs(full)))


def test_cached_sampling_matches_the_numpy_rung_past_the_block():
    config = CONFIGS[0]
    params = init_params(config, seed=2)
    kwargs = dict(prompt=[3, 4, 5], max_new_tokens=3 * config.block_size, stop_at_bos=False)
    cython = get_rung("cython")(config, params)
    numpy = get_rung("numpy")(config, params)
    assert cython.generate(3, 0.9, seed=4, **kwargs) == numpy.generate(3, 0.9, seed=4, **kwargs)


def test_kv_cache_step_rejects_bad_input():
    config = CONFIGS[0]
    model = FastopsModel(config, init_params(config), np.float64)
    kv, work, logits = model.decode_buffers()
    sizes = (config.n_embd, config.n_head, config.n_layer, config.vocab_size, config.block_size)
    p = model.params.data
    for token, pos, message in [(config.vocab_size, 0, "outside the vocabulary"),
                                (-1, 0, "outside the vocabulary"),
                                (0, config.block_size, "position"), (0, -1, "position")]:
        with pytest.raises(ValueError, match=message):
            fastops.decode_step(p, kv, work, logits, token, pos, *sizes)
    with pytest.raises(ValueError, match="kv must hold"):
        fastops.decode_step(p, kv[:-1], work, logits, 0, 0, *sizes)
    with pytest.raises(ValueError, match="work is smaller"):
        fastops.decode_step(p, kv, work[:-1], logits, 0, 0, *sizes)
    with pytest.raises(ValueError, match="logits must hold"):
        fastops.decode_step(p, kv, work, logits[:-1], 0, 0, *sizes)
    with pytest.raises(ValueError, match="params holds"):
        fastops.decode_step(p[:-1], kv, work, logits, 0, 0, *sizes)
    shared = np.zeros(len(kv) + len(work))  # a cache and a scratch overlapping by one number
    with pytest.raises(ValueError, match="share memory"):
        fastops.decode_step(p, shared[: len(kv)], shared[len(kv) - 1 : -1], logits, 0, 0, *sizes)
