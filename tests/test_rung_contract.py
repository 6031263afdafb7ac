"""Every rung keeps one contract under bad input: the same exception type, and nothing changed.

Property tests (hypothesis) throw malformed documents and learning rates at all six rungs and
check that each rejects them with the same exception type and leaves its weights and optimiser
state bit-identical; then the contract's other promises: a step uses its own document's gradient
only, a diverging step raises TrainingDiverged, and the reference rung runs a deep model on its own.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microgpt_lib.config import GPTConfig
from microgpt_lib.numerics import TrainingDiverged
from microgpt_lib.params import init_params
from microgpt_lib.rungs import available_rungs, get_rung
from microgpt_lib.rungs.rung2_python_fast.variants import recursive_topological_order

CONFIG = GPTConfig.preset("e8_L1_b8", vocab_size=7)
VOCAB = CONFIG.vocab_size
DOC_A, DOC_B = [6, 1, 2, 3, 6], [6, 4, 0, 5, 2, 6]


def build(rung: str):
    return get_rung(rung)(CONFIG, init_params(CONFIG, seed=3))


@pytest.fixture(scope="module")
def models():
    """One model per rung, each after one real step (so the Adam moments are not all zero)."""
    built = {rung: build(rung) for rung in available_rungs()}
    for model in built.values():
        model.train_step(DOC_A, 0.01)
    return built


def optimiser_state(model) -> list:
    """Adam's moments and step counts of any rung, as plain data to compare exactly."""
    inner = getattr(model, "model", model)  # the cython rung keeps them in its FastopsModel
    adam = getattr(inner, "adam", inner)    # numpy_kernels keeps them in its FlatAdam
    state = [model.steps_done, adam.t]
    for moment in (adam.m, adam.v):
        data = getattr(moment, "data", moment)
        state.append(data.tolist() if isinstance(data, np.ndarray) else
                     {k: [list(r) for r in rows] for k, rows in data.items()}
                     if isinstance(data, dict) else list(data))
    return state


def snapshot(model) -> tuple:
    weights = {k: np.asarray(v).tobytes() for k, v in model.parameters().items()}
    return weights, optimiser_state(model)


ids = st.integers(0, VOCAB - 1)
out_of_vocab = st.one_of(st.integers(max_value=-1), st.integers(min_value=VOCAB))
not_an_id = st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=2), st.none(),
                      st.just(np.float64(1.0)), st.just(np.True_))


@st.composite
def bad_documents(draw):
    """(document, the exception every rung must raise for it)."""
    kind = draw(st.sampled_from(["short", "vocab", "type", "container", "array"]))
    if kind == "short":
        return draw(st.lists(ids, max_size=1)), ValueError
    doc = draw(st.lists(ids, min_size=2, max_size=CONFIG.block_size + 3))
    at = draw(st.integers(0, len(doc) - 1))
    if kind == "vocab":
        doc[at] = draw(out_of_vocab)
        return doc, ValueError
    if kind == "type":
        doc[at] = draw(not_an_id)
        return doc, TypeError
    if kind == "container":
        return draw(st.one_of(st.integers(), st.floats(), st.none(), st.text())), TypeError
    dtype = draw(st.sampled_from([np.float64, np.float32, np.bool_]))
    return np.asarray(doc, dtype=dtype), TypeError


bad_lrs = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1e-3, -1.0]).map(lambda lr: (lr, ValueError)),
    st.floats(max_value=-1e-300).map(lambda lr: (lr, ValueError)),
    st.sampled_from(["0.01", None, True, [0.01]]).map(lambda lr: (lr, TypeError)),
)

CALLS = {
    "loss_and_grads": lambda model, doc, lr: model.loss_and_grads(doc),
    "train_step": lambda model, doc, lr: model.train_step(doc, lr),
    "step": lambda model, doc, lr: model.step(lr),
}
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_all_reject(models, call, doc, lr, expected):
    for rung, model in models.items():
        before = snapshot(model)
        with pytest.raises(Exception) as caught:
            CALLS[call](model, doc, lr)
        assert type(caught.value) is expected, f"{rung}: {caught.value!r}"
        assert snapshot(model) == before, f"{rung} changed state on a rejected {call}"


@FAST
@given(case=bad_documents(), call=st.sampled_from(["loss_and_grads", "train_step"]))
@example(case=("", TypeError), call="loss_and_grads")  # text, though nothing in it to reject
def test_every_rung_rejects_a_bad_document_alike_and_unchanged(models, case, call):
    doc, expected = case
    assert_all_reject(models, call, doc, 0.01, expected)


@FAST
@given(case=bad_lrs, call=st.sampled_from(["train_step", "step"]))
def test_every_rung_rejects_a_bad_learning_rate_alike_and_unchanged(models, case, call):
    lr, expected = case
    assert_all_reject(models, call, DOC_B, lr, expected)


@pytest.mark.parametrize("doc", [DOC_B, np.array(DOC_B, dtype=np.uint8), tuple(DOC_B),
                                 [np.int64(t) for t in DOC_B]])
def test_every_rung_accepts_any_integer_sequence(doc):
    losses = [build(rung).train_step(doc, 0.01) for rung in available_rungs()]
    assert max(losses) - min(losses) < 1e-9


@pytest.mark.parametrize("rung", available_rungs())
def test_train_step_uses_its_own_documents_gradient_only(rung):
    """loss_and_grads(A) then train_step(B) updates as train_step(B) alone (no grad(A) + grad(B))."""
    after_a, fresh = build(rung), build(rung)
    after_a.loss_and_grads(DOC_A)
    assert after_a.train_step(DOC_B, 0.01) == fresh.train_step(DOC_B, 0.01)
    assert snapshot(after_a) == snapshot(fresh)


@pytest.mark.parametrize("rung", available_rungs())
def test_step_after_loss_and_grads_equals_train_step(rung):
    split, fused = build(rung), build(rung)
    split.loss_and_grads(DOC_A)
    split.step(0.01)
    fused.train_step(DOC_A, 0.01)
    for name, w in split.parameters().items():
        np.testing.assert_allclose(w, fused.parameters()[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rung", available_rungs())
def test_zero_learning_rate_moves_no_weight(rung):
    model = build(rung)
    before = snapshot(model)[0]
    model.train_step(DOC_A, 0.0)
    assert snapshot(model)[0] == before


@pytest.mark.parametrize("rung", available_rungs())
def test_a_diverging_run_raises_training_diverged_naming_the_step(rung):
    """At lr 1e300 the weights blow up after two steps, and the third step's loss cannot be
    finite (or its math fails): every rung says so at the same step, never training on NaN."""
    model = build(rung)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="at step 3") as caught:
        for doc in (DOC_A, DOC_B, DOC_A):
            model.train_step(doc, 1e300)
    assert isinstance(caught.value, FloatingPointError)
    assert "smaller learning rate" in str(caught.value)


def test_scalar_rung_backpropagates_a_deep_graph_at_the_default_recursion_limit():
    """A narrow but deep model (like e64_L2_b16, but cheaper to build) makes a scalar graph deeper
    than the recursion limit allows Karpathy's recursive sort; the rung still computes
    python_fast's loss and gradients."""
    config = GPTConfig(n_embd=8, n_head=2, n_layer=24, block_size=2, vocab_size=VOCAB)
    params = init_params(config, seed=0)
    scalar, fast = get_rung("scalar")(config, params), get_rung("python_fast")(config, params)
    with pytest.raises(RecursionError):
        recursive_topological_order(scalar.loss_graph([6, 1]))
    loss, grads = scalar.loss_and_grads([6, 1])
    fast_loss, fast_grads = fast.loss_and_grads([6, 1])
    assert abs(loss - fast_loss) < 1e-12
    for name, g in grads.items():
        np.testing.assert_allclose(g, fast_grads[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("spoil", [
    lambda p: p["wte"][0].__setitem__(0, math.nan), lambda p: p["lm_head"][1].__setitem__(2, math.inf),
    lambda p: p["wpe"][0].__setitem__(0, "0.1"), lambda p: p["wte"][2].pop(),
    lambda p: p["wte"].pop(), lambda p: p.pop("lm_head"),
])
@pytest.mark.parametrize("rung", available_rungs())
def test_every_rung_rejects_unusable_weights(rung, spoil):
    params = init_params(CONFIG, seed=3)
    spoil(params)
    with pytest.raises(ValueError):
        get_rung(rung)(CONFIG, params)
