"""Rungs `numpy` and `numpy_all_positions` against the scalar reference rung, and against each other."""
from __future__ import annotations

import random

import numpy as np
import pytest

from microgpt_lib import GPTConfig, available_rungs, get_rung, init_params
from microgpt_lib.data import names_corpus
from microgpt_lib.rungs.rung3_numpy.tensor import topological_order
from microgpt_lib.train.schedules import linear_decay_lr

NUMPY_RUNGS = ["numpy", "numpy_all_positions"]
STEPS = 20
GRAD_STEPS = (0, 9, 19)  # steps at which whole gradients are compared
FLOAT32_LOSS_TOL = 1e-5  # |float32 loss - float64 scalar loss| over 20 steps (measured ~3e-7)
FLOAT32_GRAD_TOL = 5e-6  # absolute, on gradients of size ~0.1 (measured ~5e-7; float32 eps 1.2e-7)

CONFIGS = {
    "karpathy_e16_L1_b16": GPTConfig(16, 4, 1, 16, 27),
    "two_layers_e8_b8": GPTConfig(8, 2, 2, 8, 27),
}


def max_grad_diff(reference: dict, grads: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(reference[k]) - grads[k]))) for k in reference)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def side_by_side(request):
    """Train scalar, numpy, numpy_all_positions (float64) and both float32 variants from one init."""
    config = CONFIGS[request.param]
    docs, tok = names_corpus()
    params = init_params(config, seed=3)
    models = {name: get_rung(name)(config, params) for name in ["scalar", *NUMPY_RUNGS]}
    models.update({f"{n}_f32": get_rung(n)(config, params, dtype=np.float32) for n in NUMPY_RUNGS})
    losses = {name: [] for name in models}
    grads = {name: {} for name in models}
    for step in range(STEPS):
        tokens = tok.encode_doc(docs[step])
        for name, model in models.items():
            loss, g = model.loss_and_grads(tokens)
            losses[name].append(loss)
            if step in GRAD_STEPS:
                grads[name][step] = g
            model.step(linear_decay_lr(step, STEPS))
    return losses, grads


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_numpy_rungs_match_scalar_losses_over_20_steps(side_by_side, rung: str) -> None:
    losses, _ = side_by_side
    diffs = np.abs(np.array(losses[rung]) - np.array(losses["scalar"]))
    assert len(diffs) == STEPS and diffs.max() < 1e-10


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_numpy_rungs_match_scalar_gradients_at_several_steps(side_by_side, rung: str) -> None:
    _, grads = side_by_side
    for step in GRAD_STEPS:
        assert max_grad_diff(grads["scalar"][step], grads[rung][step]) < 1e-10


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_float32_rungs_stay_within_stated_tolerance_of_scalar(side_by_side, rung: str) -> None:
    losses, grads = side_by_side
    diffs = np.abs(np.array(losses[f"{rung}_f32"]) - np.array(losses["scalar"]))
    assert diffs.max() < FLOAT32_LOSS_TOL
    assert max_grad_diff(grads["scalar"][0], grads[f"{rung}_f32"][0]) < FLOAT32_GRAD_TOL
    assert diffs.max() > 0  # float32 really ran in float32


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_float32_rung_computes_every_node_in_float32(rung: str) -> None:
    config = CONFIGS["two_layers_e8_b8"]
    model = get_rung(rung)(config, init_params(config), dtype=np.float32)
    tokens = [26, 1, 2, 3, 26]
    nodes = topological_order(model.document_loss(tokens))
    assert {t.data.dtype for t in nodes} == {np.dtype(np.float32)}
    _, grads = model.loss_and_grads(tokens)
    assert model.weights.data.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_batched_rung_equals_per_position_rung_on_many_documents() -> None:
    """Includes documents longer than block_size, where only the first block_size positions count."""
    config = CONFIGS["two_layers_e8_b8"]
    docs, tok = names_corpus()
    params = init_params(config, seed=5)
    per_position, batched = (get_rung(n)(config, params) for n in NUMPY_RUNGS)
    documents = [tok.encode_doc(d) for d in docs[:60]]
    assert any(len(t) - 1 > config.block_size for t in documents)
    for tokens in documents:
        loss_a, grads_a = per_position.loss_and_grads(tokens)
        loss_b, grads_b = batched.loss_and_grads(tokens)
        assert abs(loss_a - loss_b) < 1e-12
        assert max_grad_diff(grads_a, grads_b) < 1e-12


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_numpy_rung_samples_like_scalar_rung(rung: str) -> None:
    config = CONFIGS["karpathy_e16_L1_b16"]
    params = init_params(config, seed=7)
    expected = get_rung("scalar")(config, params).generate(5, seed=11)
    assert get_rung(rung)(config, params).generate(5, seed=11) == expected
    assert all(len(s) <= config.block_size for s in expected)


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_parameters_round_trip_and_adam_moves_them(rung: str) -> None:
    config = CONFIGS["two_layers_e8_b8"]
    params = init_params(config, seed=1)
    model = get_rung(rung)(config, params)
    assert model.parameters() == params
    model.train_step([26, 4, 5, 26], 0.01)
    assert model.parameters() != params


@pytest.mark.parametrize("rung", NUMPY_RUNGS)
def test_bad_input_is_rejected(rung: str) -> None:
    config = CONFIGS["two_layers_e8_b8"]
    params = init_params(config)
    model = get_rung(rung)(config, params)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        model.loss_and_grads([26])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.loss_and_grads([26, 27, 26])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.train_step([26, -1, 26], 0.01)
    with pytest.raises(ValueError, match="dtype"):
        get_rung(rung)(config, params, dtype=np.int64)
    params.pop("wte")
    with pytest.raises(ValueError, match="missing"):
        get_rung(rung)(config, params)


def test_numpy_rungs_are_registered() -> None:
    assert {"numpy", "numpy_all_positions"} <= set(available_rungs())
    assert get_rung("numpy").name == "numpy" and get_rung("numpy_all_positions").name == "numpy_all_positions"


def test_sampling_consumes_the_given_generator() -> None:
    config = CONFIGS["two_layers_e8_b8"]
    model = get_rung("numpy")(config, init_params(config))
    rng = random.Random(0)
    model.generate(2, rng=rng)
    assert rng.getstate() != random.Random(0).getstate()


def test_preallocated_adam_matches_adam_update_numpy() -> None:
    from microgpt_lib.optim import adam_update_numpy, adam_update_numpy_preallocated

    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(500), rng.standard_normal(500)
    p2, g2 = p.copy(), g.copy()
    m, v, m2, v2 = (np.zeros(500) for _ in range(4))
    work = (np.empty(500), np.empty(500))
    for t in range(1, 6):
        adam_update_numpy(p, g, m, v, t, 0.01)
        adam_update_numpy_preallocated(p2, g2, m2, v2, t, 0.01, work)
        assert not g2.any()  # gradients reset, as Adam's contract says
        g[:] = g2[:] = rng.standard_normal(500)
    np.testing.assert_allclose(p2, p, rtol=0, atol=1e-15)
    np.testing.assert_allclose(v2, v, rtol=1e-15, atol=0)


def test_harness_builds_rungs_with_options_and_times_cpu_time() -> None:
    import time

    from microgpt_lib.measure.bench import build_model, time_training

    model, _, _ = build_model("numpy_all_positions", "e16_L1_b8", options={"dtype": np.float32})
    assert model.weights.data.dtype == np.float32
    m = time_training("numpy", "e16_L1_b8", steps=3, warmup=0, clock=time.process_time,
                      options={"dtype": np.float32})
    assert len(m.times_ms) == 3 and all(t > 0 for t in m.times_ms)
