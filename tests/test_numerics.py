"""Hyper-parameters are checked where they enter, and a diverging run stops with TrainingDiverged.

Optimisers (FlatAdam, FastopsAdam, FastopsModel), the trainers' settings, and the two batched
backends, which share one batch check: the same bad batch gets the same exception from both, and a
rejected call changes no state.
"""
import math

import fastops
import numpy as np
import pytest

from microgpt_lib.batches import EncodedDocs, PaddedBatch
from microgpt_lib.config import GPTConfig
from microgpt_lib.numerics import TrainingDiverged, check_betas, check_eps, check_lr
from microgpt_lib.optim import FlatAdam
from microgpt_lib.params import init_params
from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend
from microgpt_lib.rungs.rung5_cython.batched_backend import CythonBackend, FastopsAdam
from microgpt_lib.rungs.rung5_cython.model import FastopsModel
from microgpt_lib.train.batched import TrainSettings, train_batched
from microgpt_lib.train.loop import train
from microgpt_lib.train.shakespeare import Recipe, train_char_gpt

CONFIG = GPTConfig.preset("e8_L1_b8", vocab_size=7)
PARAMS = init_params(CONFIG, seed=1)
GOOD = PaddedBatch(np.array([[6, 1, 2], [6, 4, 0]]), np.array([[1, 2, 6], [4, 0, 0]]),
                   np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))


@pytest.mark.parametrize("check, value, error", [
    (check_lr, math.nan, ValueError), (check_lr, -1e-9, ValueError), (check_lr, math.inf, ValueError),
    (check_lr, "0.1", TypeError), (check_lr, True, TypeError), (check_lr, None, TypeError),
    (check_betas, (0.9, 1.0), ValueError), (check_betas, (-0.1, 0.9), ValueError),
    (check_betas, (0.9, math.nan), ValueError), (check_betas, (0.9,), ValueError),
    (check_eps, 0.0, ValueError), (check_eps, -1e-8, ValueError), (check_eps, math.nan, ValueError),
])
def test_hyperparameter_checks_reject_bad_values(check, value, error):
    with pytest.raises(error):
        check(value)


def test_hyperparameter_checks_pass_good_values_through():
    assert check_lr(np.float32(0.5)) == 0.5 and check_lr(0) == 0.0
    assert check_betas((0, 0.999)) == (0.0, 0.999) and check_eps(1e-12) == 1e-12


def flat_state(*arrays) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in arrays]


def optimisers():
    """(optimiser, its params, its grads, a function returning its whole state)."""
    made = []
    for cls in (FlatAdam, FastopsAdam):
        backend = NumpyBackend(CONFIG, PARAMS)
        backend.grads.data[:] = 0.1
        opt = cls(backend.params)
        opt.step(backend.grads, 0.01)
        backend.grads.data[:] = 0.1
        made.append((opt, backend, lambda o=opt, b=backend: flat_state(
            b.params.data, b.grads.data, o.m, o.v) + [o.t]))
    return made


@pytest.mark.parametrize("index", [0, 1], ids=["FlatAdam", "FastopsAdam"])
@pytest.mark.parametrize("lr, error", [(math.nan, ValueError), (-0.1, ValueError),
                                       (math.inf, ValueError), ("0.1", TypeError)])
def test_optimisers_reject_a_bad_learning_rate_unchanged(index, lr, error):
    opt, backend, state = optimisers()[index]
    before = state()
    with pytest.raises(error):
        opt.step(backend.grads, lr)
    assert state() == before


@pytest.mark.parametrize("make", [
    lambda p: FlatAdam(p, weight_decay=-0.1), lambda p: FlatAdam(p, weight_decay=math.nan),
    lambda p: FastopsAdam(p, betas=(0.9, 1.0)), lambda p: FastopsAdam(p, eps=0.0),
    lambda p: FastopsAdam(p, weight_decay=-1.0),
])
def test_optimisers_reject_bad_settings(make):
    with pytest.raises(ValueError):
        make(NumpyBackend(CONFIG, PARAMS).params)


@pytest.mark.parametrize("kwargs", [
    {"lr": math.nan}, {"lr": -1.0}, {"betas": (0.9, 1.0)}, {"betas": (math.nan, 0.9)},
    {"eps": 0.0}, {"eps": -1.0}, {"weight_decay": -0.1}, {"clip_norm": -1.0},
    {"clip_norm": math.nan},
])
@pytest.mark.parametrize("method", ["train_step", "step"])
def test_fastops_model_rejects_bad_hyperparameters_unchanged(kwargs, method):
    model = FastopsModel(CONFIG, PARAMS)
    packed = (np.array([6, 1, 2]), np.array([1, 2, 6]), np.array([0, 3]))
    model.train_step(*packed, 0.01)
    state = lambda: flat_state(model.params.data, model.grads.data, model.m.data,  # noqa: E731
                               model.v.data) + [model.t]
    before = state()
    args = {"lr": 0.01, **kwargs}
    with pytest.raises(ValueError):
        if method == "train_step":
            model.train_step(*packed, **args)
        else:
            model.step(**args)
    assert state() == before


@pytest.mark.parametrize("threads", [0, -1, 2.5, True])
def test_fastops_model_rejects_a_bad_thread_count(threads):
    with pytest.raises((ValueError, TypeError)):
        FastopsModel(CONFIG, PARAMS, num_threads=threads)


@pytest.mark.parametrize("change", [
    {"num_steps": 0}, {"batch_size": 0}, {"base_lr": math.nan}, {"base_lr": -1e-3},
    {"min_lr": -1.0}, {"warmup": -1}, {"decay": "step"}, {"grad_clip": 0.0},
    {"grad_clip": math.nan}, {"weight_decay": -0.1}, {"eval_every": 0}, {"eval_docs": 0},
    {"order": "shuffled"}, {"blas_threads": 0}, {"max_seconds": -1.0}, {"num_steps": 2.5},
])
def test_batched_trainer_rejects_bad_settings_before_training(change):
    backend = NumpyBackend(CONFIG, PARAMS)
    before = backend.params.data.copy()
    docs = EncodedDocs(np.array([[6, 1, 2, 6, 0, 0, 0, 0, 0]]), np.array([3]))
    with pytest.raises((ValueError, TypeError)):
        train_batched(backend, docs, None, TrainSettings(**change), progress=False)
    assert np.array_equal(backend.params.data, before)


@pytest.mark.parametrize("backend_class", [NumpyBackend, CythonBackend])
def test_batched_trainer_stops_a_diverging_run_before_its_update(backend_class):
    """At lr 1e300 the first update blows the (float64) weights up; the next step's loss or
    gradient is not finite, and the trainer raises before applying it: no NaN in the weights."""
    backend = backend_class(CONFIG, PARAMS, np.float64)
    docs = EncodedDocs(np.array([[6, 1, 2, 6, 0, 0, 0, 0, 0], [6, 4, 0, 5, 6, 0, 0, 0, 0]]),
                       np.array([3, 4]))
    settings = TrainSettings(num_steps=10, batch_size=2, base_lr=1e300, decay="linear")
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="at step") as caught:
        train_batched(backend, docs, None, settings, progress=False)
    assert caught.value.step >= 2
    assert np.all(np.isfinite(backend.params.data))


@pytest.mark.parametrize("kwargs", [{"num_steps": 0}, {"base_lr": math.nan},
                                    {"base_lr": -0.01}, {"max_seconds": -1.0}])
def test_single_document_trainer_rejects_bad_settings(kwargs):
    from microgpt_lib.rungs import get_rung
    from microgpt_lib.tokenizers import CharTokenizer
    tok = CharTokenizer.from_docs(["abc"])
    model = get_rung("numpy_kernels")(GPTConfig.preset("e8_L1_b8", tok.vocab_size),
                                      init_params(GPTConfig.preset("e8_L1_b8", tok.vocab_size)))
    with pytest.raises(ValueError):
        train(model, ["abc"], tok, **{"num_steps": 3, **kwargs}, progress=False)


@pytest.mark.parametrize("change", [{"learning_rate": math.nan}, {"beta2": 1.0},
                                    {"weight_decay": -0.1}, {"grad_clip": -1.0},
                                    {"lr_decay_iters": 50}, {"batch_size": 0}])
def test_capstone_recipe_is_checked_before_loading_the_text(change, monkeypatch):
    monkeypatch.setenv("MICROGPT_DATA", "/nonexistent")  # a check that passed would fail later
    with pytest.raises(ValueError):
        train_char_gpt(Recipe(**change), iters=1, progress=False)


# --- one batch contract for both batched backends ----------------------------------------------

def bad(tokens=None, targets=None, mask=None) -> PaddedBatch:
    return PaddedBatch(GOOD.tokens if tokens is None else tokens,
                       GOOD.targets if targets is None else targets,
                       GOOD.mask if mask is None else mask)


BAD_BATCHES = {
    "float tokens": (bad(tokens=GOOD.tokens + 0.9), TypeError),
    "float targets": (bad(targets=GOOD.targets.astype(float)), TypeError),
    "bool tokens": (bad(tokens=GOOD.tokens > 2), TypeError),
    "string mask": (bad(mask=GOOD.mask.astype(str)), TypeError),
    "mask 0.5": (bad(mask=GOOD.mask * 0.5), ValueError),
    "mask 2": (bad(mask=GOOD.mask * 2), ValueError),
    "mask NaN": (bad(mask=np.where(GOOD.mask > 0, np.nan, 0.0)), ValueError),
    "padding first": (bad(mask=GOOD.mask[:, ::-1].copy()), ValueError),
    "empty row": (bad(mask=np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])), ValueError),
    "shape mismatch": (bad(targets=GOOD.targets[:, :2]), ValueError),
    "1-d": (PaddedBatch(GOOD.tokens[0], GOOD.targets[0], GOOD.mask[0]), ValueError),
    "too long": (PaddedBatch(np.zeros((1, 9), int), np.zeros((1, 9), int), np.ones((1, 9))),
                 ValueError),
    "token id = vocab": (bad(tokens=np.array([[6, 7, 2], [6, 4, 0]])), ValueError),
    "negative target": (bad(targets=np.array([[1, 2, 6], [4, 0, -1]])), ValueError),
}


@pytest.mark.parametrize("name", BAD_BATCHES)
def test_both_batched_backends_reject_a_bad_batch_alike_and_unchanged(name):
    batch, error = BAD_BATCHES[name]
    for backend in (NumpyBackend(CONFIG, PARAMS), CythonBackend(CONFIG, PARAMS, np.float64)):
        backend.train_step(GOOD, 0.01)
        before = flat_state(backend.params.data, backend.grads.data)
        for call in (backend.forward_backward, backend.loss,
                     lambda b, be=backend: be.train_step(b, 0.01)):
            with pytest.raises(error):
                call(batch)
            assert flat_state(backend.params.data, backend.grads.data) == before, call


def test_both_batched_backends_agree_on_a_good_batch():
    numpy_backend = NumpyBackend(CONFIG, PARAMS)
    cython_backend = CythonBackend(CONFIG, PARAMS, np.float64)
    assert abs(numpy_backend.forward_backward(GOOD) - cython_backend.forward_backward(GOOD)) < 1e-12
    np.testing.assert_allclose(numpy_backend.grads.data, cython_backend.grads.data, atol=1e-12)


def test_fastops_model_rejecting_bad_tokens_leaves_its_step_count():
    model = FastopsModel(CONFIG, PARAMS)
    model.train_step(np.array([6, 1, 2]), np.array([1, 2, 6]), np.array([0, 3]), 0.01)
    before = flat_state(model.params.data, model.m.data, model.v.data) + [model.t]
    with pytest.raises(ValueError):
        model.train_step(np.array([6, 9, 2]), np.array([1, 2, 6]), np.array([0, 3]), 0.01)
    assert flat_state(model.params.data, model.m.data, model.v.data) + [model.t] == before


def test_capstone_stops_a_diverging_run():
    tiny = Recipe(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=2, eval_iters=1,
                  learning_rate=1e300, warmup_iters=0)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="at step [2-5]:"):
        train_char_gpt(tiny, iters=5, num_threads=1, progress=False)


def _error_of(call, *args) -> tuple[type, str] | None:
    try:
        call(*args)
    except (TypeError, ValueError) as err:
        return type(err), str(err)
    return None


def _takes_the_c_pass(batch: PaddedBatch) -> bool:
    """int64 ids and a float64 mask, all 2-D: the arrays the fastops backend packs in C."""
    a, b, m = (np.asarray(x) for x in (batch.tokens, batch.targets, batch.mask))
    return (a.dtype == b.dtype == np.int64 and m.dtype == np.float64
            and a.ndim == b.ndim == m.ndim == 2)


@pytest.mark.parametrize("name", [n for n, (b, _) in BAD_BATCHES.items() if _takes_the_c_pass(b)])
def test_fastops_pack_rejects_a_bad_batch_with_check_batchs_error(name):
    """The C pass the fastops backend takes for int64 ids and a float64 mask (contiguous copies
    of each bad batch reach it) raises check_batch's exception and message; batches of other
    array types take the NumPy path, whose errors the tests above check."""
    from microgpt_lib.batches import check_batch
    batch, _ = BAD_BATCHES[name]
    arrays = [np.ascontiguousarray(a) for a in (batch.tokens, batch.targets, batch.mask)]
    numpy_error = _error_of(check_batch, PaddedBatch(*arrays), CONFIG)
    assert numpy_error is not None
    assert _error_of(fastops.pack_padded_batch, *arrays, CONFIG.vocab_size,
                     CONFIG.block_size) == numpy_error


def test_fastops_pack_checks_every_row_and_reports_the_first_problem_as_numpy_does():
    from microgpt_lib.batches import check_batch
    rng = np.random.default_rng(0)
    tried = 0
    for _ in range(400):
        B, T = rng.integers(1, 4), rng.integers(1, CONFIG.block_size + 2)
        tokens = rng.integers(-1, CONFIG.vocab_size + 1, (B, T))
        targets = rng.integers(0, CONFIG.vocab_size, (B, T))
        mask = rng.choice([0.0, 1.0, 1.0, 1.0, 0.5], (B, T))
        numpy_error = _error_of(check_batch, PaddedBatch(tokens, targets, mask), CONFIG)
        c_error = _error_of(fastops.pack_padded_batch, tokens, targets, mask,
                            CONFIG.vocab_size, CONFIG.block_size)
        assert c_error == numpy_error
        tried += numpy_error is not None
    assert tried > 100


def test_fastops_pack_equals_numpy_pack_on_names():
    from microgpt_lib.batches import check_batch, pack
    from microgpt_lib.data import names_corpus, split_docs
    docs, tok = names_corpus()
    config = GPTConfig.preset("e16_L1_b16", vocab_size=tok.vocab_size)
    encoded = EncodedDocs.encode(split_docs(docs)[0][:500], tok, config.block_size)
    backend = CythonBackend(config, init_params(config))
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 32):
        batch = encoded.batch(rng.integers(0, len(encoded), size))
        fast, slow = backend.packed(batch), pack(check_batch(batch, config))
        for a, b in zip(fast, slow):
            assert a.dtype == np.int64 and a.flags.c_contiguous
            np.testing.assert_array_equal(a, b)
    ints32 = PaddedBatch(batch.tokens.astype(np.int32), batch.targets, batch.mask)
    for a, b in zip(backend.packed(ints32), slow):  # other types take the NumPy path
        np.testing.assert_array_equal(a, b)
