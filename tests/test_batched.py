"""The batched trainer: B = 1 reproduces the fused rung, padding is inert, schedule and split hold."""
import numpy as np
import pytest

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.config import GPTConfig
from microgpt_lib.data import names_corpus, split_docs
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend
from microgpt_lib.tokenizers import TokenError
from microgpt_lib.train.batched import TrainSettings, train_batched
from microgpt_lib.train.schedules import linear_decay_lr, lr_at


@pytest.fixture(scope="module")
def corpus():
    return names_corpus()


@pytest.fixture(scope="module")
def config(corpus):
    return GPTConfig(n_embd=16, n_head=4, n_layer=2, block_size=8, vocab_size=corpus[1].vocab_size)


def test_batched_trainer_with_batch_of_one_matches_fused_rung(corpus, config):
    docs, tok = corpus
    params = init_params(config, seed=0)
    fused = get_rung("numpy_kernels")(config, params)
    steps = 25
    rung_losses = [fused.train_step(tok.encode_doc(docs[s]), linear_decay_lr(s, steps))
                   for s in range(steps)]
    backend = NumpyBackend(config, params)
    settings = TrainSettings(num_steps=steps, batch_size=1, base_lr=0.01, decay="linear",
                             order="sequential")
    history = train_batched(backend, EncodedDocs.encode(docs[:steps], tok, config.block_size),
                            None, settings, progress=False)
    assert np.abs(np.array(history.losses) - rung_losses).max() < 1e-10
    assert np.abs(backend.params.data - fused.flat.data).max() < 1e-10


def test_masked_padding_changes_nothing(corpus, config):
    docs, tok = corpus
    backend = NumpyBackend(config, init_params(config, seed=1))
    encoded = EncodedDocs.encode(docs[:6], tok, config.block_size)
    batch = encoded.batch(np.arange(6))
    assert batch.mask.min() == 0  # the names differ in length: there is padding
    loss = backend.forward_backward(batch)
    grads = backend.grads.data.copy()
    # 1. the padded batch equals the token-weighted sum of the documents run one at a time
    expected_loss, expected_grads = 0.0, np.zeros_like(grads)
    for i in range(6):
        one = encoded.batch(np.array([i]))
        assert one.mask.min() == 1  # a batch of one is never padded
        backend.grads.data.fill(0)
        weight = one.num_tokens / batch.num_tokens
        expected_loss += weight * backend.forward_backward(one)
        expected_grads += weight * backend.grads.data
    assert abs(loss - expected_loss) < 1e-12
    assert np.abs(grads - expected_grads).max() < 1e-12
    # 2. whatever the padding holds, the loss and every gradient are bit-for-bit the same
    pad = batch.mask == 0
    batch.tokens[pad] = 7
    batch.targets[pad] = 11
    backend.grads.data.fill(0)
    assert backend.forward_backward(batch) == loss
    assert np.array_equal(backend.grads.data, grads)


def test_padding_positions_get_zero_loss_gradient(corpus, config):
    docs, tok = corpus
    from microgpt_lib.rungs.rung4_numpy_kernels.gpt import gpt_forward
    backend = NumpyBackend(config, init_params(config, seed=1))
    batch = EncodedDocs.encode(docs[:6], tok, config.block_size).batch(np.arange(6))
    _, cache = gpt_forward(backend.params, batch.tokens, batch.targets, batch.mask)
    assert np.all(cache.dlosses[batch.mask == 0] == 0)
    assert cache.dlosses.sum() == pytest.approx(1.0)


def test_split_is_fixed_disjoint_and_ninety_ten(corpus):
    docs, _ = corpus
    train, val = split_docs(docs)
    assert (train, val) == split_docs(docs)
    assert len(val) == round(0.1 * len(docs)) and len(train) + len(val) == len(docs)
    assert sorted(train + val) == sorted(docs)
    with pytest.raises(ValueError, match="val_fraction"):
        split_docs(docs, 1.5)


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 1.0, warmup=10, min_lr=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert lr_at(50, 100, 1.0, decay="linear") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay"):
        lr_at(0, 10, 1.0, decay="step")


def test_clipping_bounds_the_update_and_history_records_raw_norm(corpus, config):
    docs, tok = corpus
    encoded = EncodedDocs.encode(docs[:64], tok, config.block_size)
    runs = {}
    for clip in (None, 1e-3):
        backend = NumpyBackend(config, init_params(config, seed=0))
        settings = TrainSettings(num_steps=1, batch_size=8, grad_clip=clip, base_lr=0.01)
        history = train_batched(backend, encoded, None, settings, progress=False)
        runs[clip] = (history.grad_norms[0], backend.params.data.copy())
    assert runs[None][0] == runs[1e-3][0] > 1e-3  # the recorded norm is the norm before clipping
    # Adam's first step is lr * sign(g) up to eps: the clipped run moves the same way, and its
    # tiny gradients make eps matter, so it moves (slightly) less.
    start = NumpyBackend(config, init_params(config, seed=0)).params.data
    moved_raw, moved_clipped = runs[None][1] - start, runs[1e-3][1] - start
    assert np.all(np.sign(moved_raw) == np.sign(moved_clipped))
    assert np.abs(moved_clipped).sum() < np.abs(moved_raw).sum()


def test_validation_and_interrupt_keep_history(corpus, config):
    docs, tok = corpus
    train, val = split_docs(docs[:400])
    backend = NumpyBackend(config, init_params(config, seed=0))
    calls = {"n": 0}
    real = backend.forward_backward

    def interrupting(batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(batch)

    backend.forward_backward = interrupting
    settings = TrainSettings(num_steps=50, batch_size=4, eval_every=3)
    history = train_batched(backend, EncodedDocs.encode(train, tok, config.block_size),
                            EncodedDocs.encode(val, tok, config.block_size), settings,
                            progress=False)
    assert history.interrupted and len(history.losses) == 7
    assert history.val_steps == [0, 3, 6] and len(history.val_losses) == 3
    assert history.seconds == sorted(history.seconds) and history.tokens_per_second > 0


def test_bad_input_is_rejected(corpus, config):
    docs, tok = corpus
    with pytest.raises(TokenError):
        EncodedDocs.encode(["ab3"], tok, config.block_size)
    with pytest.raises(ValueError, match="no documents"):
        EncodedDocs.encode([], tok, config.block_size)
    backend = NumpyBackend(config, init_params(config))
    encoded = EncodedDocs.encode(docs[:4], tok, config.block_size)
    with pytest.raises(ValueError, match="order"):
        train_batched(backend, encoded, None, TrainSettings(order="shuffled"), progress=False)
    too_long = EncodedDocs.encode(["christopherson"], tok, config.block_size + 4).batch(np.arange(1))
    assert too_long.tokens.shape[1] > config.block_size
    with pytest.raises(ValueError, match="block_size"):
        backend.forward_backward(too_long)


def test_time_budget_stops_training_and_validates_at_the_stop(corpus, config):
    docs, tok = corpus
    train, val = split_docs(docs[:400])
    backend = NumpyBackend(config, init_params(config, seed=0))
    settings = TrainSettings(num_steps=1000, batch_size=4, eval_every=500, max_seconds=0.0)
    history = train_batched(backend, EncodedDocs.encode(train, tok, config.block_size),
                            EncodedDocs.encode(val, tok, config.block_size), settings,
                            progress=False)
    assert len(history.losses) == 1 and history.val_steps == [0]


def test_rung_curve_measures_validation_off_the_clock(corpus, config):
    from microgpt_lib.measure.curves import rung_curve
    docs, tok = corpus
    train, val = split_docs(docs[:400])
    val_enc = EncodedDocs.encode(val, tok, config.block_size)
    curve = rung_curve("numpy_kernels", config, init_params(config, seed=0), train, val_enc, tok,
                       num_steps=30, num_evals=4)
    assert curve.steps == [0, 10, 19, 29] and len(curve.val_losses) == 4
    assert curve.seconds == sorted(curve.seconds) and curve.val_losses[-1] < curve.val_losses[0]
    short = rung_curve("numpy_kernels", config, init_params(config, seed=0), train, val_enc, tok,
                       num_steps=30, num_evals=4, max_seconds=0.0)
    assert short.steps == [0]


def test_weight_decay_is_decoupled_from_the_gradient(config):
    from microgpt_lib.flat_params import FlatParams
    from microgpt_lib.optim import FlatAdam
    params = FlatParams.from_params(config, init_params(config, seed=0))
    start = params.data.copy()
    grads = params.zeros_like()  # zero gradient: plain Adam would not move at all
    FlatAdam(params, weight_decay=0.5).step(grads, lr=0.1)
    assert np.allclose(params.data, start * (1 - 0.1 * 0.5))
    FlatAdam(params).step(grads, lr=0.1)
    assert np.allclose(params.data, start * (1 - 0.1 * 0.5))


def test_fresh_process_throughput_reports_real_tokens():
    from microgpt_lib.measure.throughput import fresh_process_throughput
    for keep in (False, True):
        t = fresh_process_throughput("e16_L1_b8", 4, steps=2, keep_freed=keep)
        assert t.batch_size == 4 and t.median_ms > 0 and t.tokens_per_second > 0


@pytest.mark.parametrize("doc", [[26, 3, 26], [26, 1, 2, 3, 4, 5, 26], list(range(20))])
def test_one_document_packs_as_a_padded_batch_of_one(doc):
    from microgpt_lib.batches import PaddedBatch, pack, pack_sequences

    fast = pack_sequences([doc], 8)
    slow = pack(PaddedBatch.from_sequences([doc], 8))
    for a, b in zip(fast, slow):
        assert a.dtype == np.int64 and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        pack_sequences([[26]], 8)


def test_thread_scaling_times_both_thread_counts_on_the_same_blocks():
    from microgpt_lib.measure.throughput import time_thread_scaling
    from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend

    make = lambda config, params, threads: NumpyBackend(config, params)
    r = time_thread_scaling(make, "e16_L1_b8", batch_size=4, blocks=3, steps_per_block=2)
    assert len(r.one_ms) == len(r.many_ms) == len(r.tokens) == len(r.block_ratios) == 3
    assert all(t > 0 for t in r.one_ms + r.many_ms) and all(n >= 4 for n in r.tokens)  # 4 names
    assert r.ratio == sorted(r.block_ratios)[1]
    assert r.tokens_per_second(1) == sum(r.tokens) / (sum(r.one_ms) / 1e3)
    for bad in ({"num_threads": 1}, {"blocks": 0}, {"steps_per_block": 0}):
        with pytest.raises(ValueError):
            time_thread_scaling(make, "e16_L1_b8", **bad)
