"""Rung `cython` against the scalar reference, the batched backend against single documents."""
import numpy as np
import pytest

from microgpt_lib import GPTConfig, get_rung, init_params
from microgpt_lib.data import names_corpus

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")
from microgpt_lib.batches import PaddedBatch  # noqa: E402
from microgpt_lib.rungs.rung5_cython.batched_backend import (  # noqa: E402
    CythonBackend,
    FastopsAdam,
)
from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend  # noqa: E402
from microgpt_lib.rungs.rung5_cython.gpt import CythonGPT  # noqa: E402


@pytest.fixture(scope="module")
def names():
    docs, tok = names_corpus()
    return [tok.encode_doc(d) for d in docs[:40]], tok


@pytest.fixture
def threads_on_any_size():
    """Let every kernel use its threads however small the work (restored afterwards)."""
    saved = fastops.get_parallel_threshold()
    fastops.set_parallel_threshold(0)
    yield
    fastops.set_parallel_threshold(saved)


def max_grad_diff(g1, g2) -> float:
    return max(float(np.max(np.abs(np.asarray(g1[k]) - np.asarray(g2[k])))) for k in g1)


def test_cython_matches_scalar_losses_and_gradients_over_20_steps(names):
    docs, tok = names
    config = GPTConfig(n_embd=12, n_head=3, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = init_params(config, seed=3)
    scalar, fast = get_rung("scalar")(config, params), get_rung("cython")(config, params)
    for step, tokens in enumerate(docs[:20]):
        loss_s, grads_s = scalar.loss_and_grads(tokens)
        loss_c, grads_c = fast.loss_and_grads(tokens)
        assert abs(loss_s - loss_c) < 1e-10, step
        assert max_grad_diff(grads_s, grads_c) < 1e-10, step
        lr = 0.01 * (1 - step / 20)
        scalar.step(lr)
        fast.step(lr)
    assert max_grad_diff(scalar.parameters(), fast.parameters()) < 1e-10


def test_cython_train_step_matches_loss_and_grads_then_step(names):
    docs, tok = names
    config = GPTConfig.preset("e16_L1_b8", vocab_size=tok.vocab_size)
    params = init_params(config)
    one_call, two_calls = CythonGPT(config, params), CythonGPT(config, params)
    for tokens in docs[:10]:
        loss_a = one_call.train_step(tokens, 0.01)
        loss_b, _ = two_calls.loss_and_grads(tokens)
        two_calls.step(0.01)
        assert loss_a == pytest.approx(loss_b, abs=1e-12)
    assert max_grad_diff(one_call.parameters(), two_calls.parameters()) < 1e-12


def test_cython_float32_matches_float64_within_1e_4(names):
    docs, tok = names
    config = GPTConfig.preset("e16_L1_b16", vocab_size=tok.vocab_size)
    params = init_params(config)
    f64, f32 = CythonGPT(config, params), CythonGPT(config, params, dtype=np.float32)
    for tokens in docs[:5]:
        loss64, g64 = f64.loss_and_grads(tokens)
        loss32, g32 = f32.loss_and_grads(tokens)
        assert abs(loss64 - loss32) < 1e-4
        assert max_grad_diff(g64, g32) < 1e-4


def test_cython_samples_stay_in_the_vocabulary(names):
    _, tok = names
    config = GPTConfig.preset("e16_L1_b8", vocab_size=tok.vocab_size)
    samples = CythonGPT(config, init_params(config)).generate(5, seed=1)
    assert len(samples) == 5
    assert all(0 <= t < tok.bos and len(s) <= config.block_size for s in samples for t in s)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_batched_backend_equals_the_token_weighted_mean_of_single_documents(
        names, num_threads, threads_on_any_size):
    docs, tok = names
    config = GPTConfig(n_embd=20, n_head=4, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = init_params(config, seed=5)
    batch = docs[:7]
    backend = CythonBackend(config, params, dtype=np.float64, num_threads=num_threads)
    loss = backend.forward_backward(PaddedBatch.from_sequences(batch, config.block_size))
    single = CythonGPT(config, params)
    counts = [min(config.block_size, len(t) - 1) for t in batch]
    want_loss, want_grads = 0.0, {k: 0.0 for k in backend.grads.views}
    for tokens, n in zip(batch, counts):
        l, g = single.loss_and_grads(tokens)
        want_loss += l * n / sum(counts)
        want_grads = {k: want_grads[k] + g[k] * n / sum(counts) for k in g}
    assert loss == pytest.approx(want_loss, abs=1e-12)
    assert max_grad_diff(backend.grads.views, want_grads) < 1e-12


def test_batched_backend_matches_chapter4_numpy_backend(names):
    docs, tok = names
    config = GPTConfig(n_embd=20, n_head=4, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = init_params(config, seed=7)
    batch = PaddedBatch.from_sequences(docs[:9], config.block_size)
    ours = CythonBackend(config, params, dtype=np.float64)
    theirs = NumpyBackend(config, params, dtype=np.float64)
    assert ours.forward_backward(batch) == pytest.approx(theirs.forward_backward(batch), abs=1e-12)
    assert np.max(np.abs(ours.grads.data - theirs.grads.data)) < 1e-12
    assert ours.loss(batch) == pytest.approx(theirs.loss(batch), abs=1e-12)


def test_fused_train_step_equals_forward_backward_then_fastops_adam(names):
    docs, tok = names
    config = GPTConfig.preset("e16_L1_b8", vocab_size=tok.vocab_size)
    params = init_params(config)
    fused, split = (CythonBackend(config, params, np.float64) for _ in range(2))
    adam = FastopsAdam(split.params)
    for i in range(5):
        batch = PaddedBatch.from_sequences(docs[4 * i : 4 * i + 4], config.block_size)
        loss_a = fused.train_step(batch, 0.01)
        loss_b = split.forward_backward(batch)
        adam.step(split.grads, 0.01)
        assert loss_a == pytest.approx(loss_b, abs=1e-12)
    assert np.max(np.abs(fused.params.data - split.params.data)) < 1e-12


@pytest.mark.parametrize("num_threads", [1, 2])
def test_blas_products_match_the_hand_written_loops(names, num_threads, threads_on_any_size):
    from fastops.blas import disable_blas, enable_numpy_blas

    docs, tok = names
    config = GPTConfig(n_embd=24, n_head=4, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = init_params(config, seed=11)
    batch = PaddedBatch.from_sequences(docs[:30], config.block_size)
    hand = CythonBackend(config, params, np.float64, num_threads)
    loss_hand = hand.forward_backward(batch)
    if enable_numpy_blas(threshold=0, min_tokens=0) is None:
        pytest.skip("this NumPy does not bundle OpenBLAS")
    try:
        blas = CythonBackend(config, params, np.float64, num_threads)
        loss_blas = blas.forward_backward(batch)
    finally:
        disable_blas()
    assert loss_blas == pytest.approx(loss_hand, abs=1e-12)
    assert np.max(np.abs(blas.grads.data - hand.grads.data)) < 1e-12


@pytest.mark.parametrize("all_blas", [False, True])
@pytest.mark.parametrize("clip_norm, num_threads", [(0.0, 1), (0.0, 2), (1e9, 1)])
def test_train_step_overwrites_stale_grads_and_equals_loss_then_adamw(names, all_blas, clip_norm,
                                                                      num_threads):
    """The one-call step (no clipping: each weight updated inside the backward, on one thread
    or by the threads that own its gradient's rows) equals gpt_loss on zeroed gradients followed
    by adamw_update, whatever grads held before."""
    from fastops.blas import disable_blas, enable_numpy_blas

    docs, tok = names
    config = GPTConfig(n_embd=12, n_head=3, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    sizes = (config.n_embd, config.n_head, config.n_layer, config.vocab_size, config.block_size)
    flat = CythonBackend(config, init_params(config, seed=3), np.float64).model.params.data
    fused = [flat.copy(), np.full_like(flat, 7.0), np.zeros_like(flat), np.zeros_like(flat)]
    split = [flat.copy(), np.zeros_like(flat), np.zeros_like(flat), np.zeros_like(flat)]
    settings = (0.01, 0.85, 0.99, 1e-8, 0.1)
    saved, was_on = fastops.get_blas_threshold(), fastops.blas_library() is not None
    if all_blas and enable_numpy_blas(threshold=0, min_tokens=0) is None:
        pytest.skip("this NumPy does not bundle OpenBLAS")
    try:
        for t, doc in enumerate(docs[:4], start=1):
            n = min(config.block_size, len(doc) - 1)
            tokens, targets = np.array(doc[:n]), np.array(doc[1 : n + 1])
            cu = np.array([0, n])
            acts = np.zeros(fastops.workspace_size(n, 1, *sizes))
            loss_a = fastops.train_step(*fused, acts, tokens, targets, cu, *sizes, t, *settings,
                                        clip_norm, num_threads)
            split[1][:] = 0
            loss_b = fastops.gpt_loss(split[0], split[1], acts.copy(), tokens, targets, cu, *sizes)
            fastops.adamw_update(*split, t, *settings)
            assert loss_a == pytest.approx(loss_b, abs=1e-13)
            for a, b in zip(fused, split):  # params, grads, m, v
                assert np.max(np.abs(a - b)) < 1e-13
    finally:
        if all_blas:
            disable_blas()
            if was_on:
                enable_numpy_blas(threshold=saved)


@pytest.mark.parametrize("clip_norm", [0.5, 0.0])  # 0: updates inside the backward
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", [[2], [2, 2, 2], [9, 3, 2, 6, 4]])  # T=1 to block; N=1..19
def test_train_step_gives_one_threads_numbers_on_any_thread_count(names, dtype, lengths,
                                                                  clip_norm, threads_on_any_size):
    """Every layer split among 2, 3 or 7 threads (more threads than tokens included) gives the
    numbers of one thread: each thread runs the same kernel on its own rows. With 24 tokens, 2
    and 3 threads take slabs of rows for the whole step; 7 threads share each kernel instead."""
    docs, tok = names
    config = GPTConfig(n_embd=20, n_head=4, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = init_params(config, seed=13)
    seqs = [(docs[i] * 9)[:n] for i, n in enumerate(lengths)]
    batch = PaddedBatch.from_sequences(seqs, config.block_size)
    one = CythonBackend(config, params, dtype, num_threads=1)
    losses_one = [one.train_step(batch, 0.01, weight_decay=0.1, clip_norm=clip_norm)
                  for _ in range(3)]
    for threads in (2, 3, 7):
        many = CythonBackend(config, params, dtype, num_threads=threads)
        losses = [many.train_step(batch, 0.01, weight_decay=0.1, clip_norm=clip_norm)
                  for _ in range(3)]
        tol = 1e-5 if dtype == np.float32 else 1e-12  # the loss and norm sums' order only
        assert losses == pytest.approx(losses_one, abs=tol), threads
        for mine, ones in ((many.params, one.params), (many.grads, one.grads),
                           (many.model.m, one.model.m), (many.model.v, one.model.v)):
            assert np.max(np.abs(mine.data - ones.data)) < tol, threads


def test_equal_slabs_repeat_two_thread_runs_exactly(names, threads_on_any_size):
    """By default (equal slabs) two runs on two threads give the same bits; balanced by the
    threads' speeds (set_thread_balance(True)) they give one thread's numbers within rounding."""
    docs, tok = names
    config = GPTConfig(n_embd=20, n_head=4, n_layer=2, block_size=8, vocab_size=tok.vocab_size)
    params = init_params(config, seed=5)
    batch = PaddedBatch.from_sequences([(docs[i] * 9)[:n] for i, n in enumerate([8, 5, 7, 6])],
                                       config.block_size)

    def run(threads):
        backend = CythonBackend(config, params, np.float32, num_threads=threads)
        losses = [backend.train_step(batch, 0.01) for _ in range(4)]
        return losses, backend.params.data.copy()

    assert not fastops.get_thread_balance()
    first, second = run(2), run(2)
    assert first[0] == second[0] and np.array_equal(first[1], second[1])
    one_losses, one_params = run(1)
    fastops.set_thread_balance(True)
    try:
        losses, weights = run(2)
        assert losses == pytest.approx(one_losses, abs=1e-5)
        assert np.max(np.abs(weights - one_params)) < 1e-5
    finally:
        fastops.set_thread_balance(False)
