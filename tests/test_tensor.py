"""The array autograd `Tensor`: every operation's backward against central finite differences."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from microgpt_lib.measure.bench import build_model
from microgpt_lib.measure.gradcheck import tensor_op_gradient_error
from microgpt_lib.rungs.rung3_numpy.tensor import Tensor, stack, topological_order

rng = np.random.default_rng(0)


def arr(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(*shape: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape: int) -> np.ndarray:
    """Entries at least 0.1 from 0, so relu's kink is never inside the finite difference."""
    x = arr(*shape)
    return np.where(np.abs(x) < 0.1, 0.5, x)


OPS = {
    "add": (lambda a, b: a + b, [arr(3, 4), arr(3, 4)]),
    "add_broadcast_row": (lambda a, b: a + b, [arr(3, 4), arr(4)]),
    "add_broadcast_column": (lambda a, b: a + b, [arr(3, 4), arr(3, 1)]),
    "add_constant": (lambda a: a + 2.5, [arr(5)]),
    "radd_constant": (lambda a: 2.5 + a, [arr(5)]),
    "add_constant_array_broadcast_up": (lambda a: a + np.ones((2, 3)), [arr(3)]),
    "mul_constant_array_broadcast_up": (lambda a: a * np.arange(6.0).reshape(2, 3), [arr(3)]),
    "mul": (lambda a, b: a * b, [arr(3, 4), arr(3, 4)]),
    "mul_broadcast": (lambda a, b: a * b, [arr(2, 3, 4), arr(3, 4)]),
    "mul_constant": (lambda a: a * -1.5, [arr(5)]),
    "pow_square": (lambda a: a**2, [arr(6)]),
    "pow_inverse_sqrt": (lambda a: a**-0.5, [positive(6)]),
    "neg": (lambda a: -a, [arr(4)]),
    "sub": (lambda a, b: a - b, [arr(4), arr(4)]),
    "rsub_constant": (lambda a: 1.0 - a, [arr(4)]),
    "truediv": (lambda a, b: a / b, [arr(4), positive(4)]),
    "rtruediv_constant": (lambda a: 3.0 / a, [positive(4)]),
    "log": (lambda a: a.log(), [positive(5)]),
    "exp": (lambda a: a.exp(), [arr(5)]),
    "relu": (lambda a: a.relu(), [away_from_zero(3, 5)]),
    "matmul_matrix_vector": (lambda w, x: w @ x, [arr(5, 3), arr(3)]),
    "matmul_vector_matrix": (lambda x, w: x @ w, [arr(5), arr(5, 3)]),
    "matmul_dot": (lambda a, b: a @ b, [arr(4), arr(4)]),
    "matmul_matrix_matrix": (lambda a, b: a @ b, [arr(2, 3), arr(3, 4)]),
    "matmul_batched": (lambda a, b: a @ b, [arr(2, 3, 4), arr(2, 4, 5)]),
    "sum_all": (lambda a: a.sum(), [arr(3, 4)]),
    "sum_axis0": (lambda a: a.sum(axis=0), [arr(3, 4)]),
    "sum_last_axis": (lambda a: a.sum(axis=-1), [arr(2, 3, 4)]),
    "sum_keepdims": (lambda a: a.sum(axis=1, keepdims=True), [arr(3, 4)]),
    "index_row": (lambda a: a[2], [arr(4, 3)]),
    "index_slice": (lambda a: a[1:3], [arr(4, 3)]),
    "index_embedding_repeated_rows": (lambda a: a[np.array([0, 2, 2, 1, 2])], [arr(4, 3)]),
    "index_pairs": (lambda a: a[np.arange(3), np.array([1, 0, 1])], [arr(3, 2)]),
    "reshape": (lambda a: a.reshape(3, 2, 2), [arr(3, 4)]),
    "transpose_2d": (lambda a: a.T, [arr(3, 4)]),
    "transpose_axes": (lambda a: a.transpose(1, 2, 0), [arr(2, 3, 4)]),
    "softmax_last_axis": (lambda a: a.softmax(), [arr(3, 5)]),
    "softmax_axis0": (lambda a: a.softmax(axis=0), [arr(4, 2)]),
    "rmsnorm": (lambda a: a.rmsnorm(), [arr(3, 8)]),
    "rmsnorm_vector": (lambda a: a.rmsnorm(), [arr(16)]),
    "stack": (lambda a, b, c: stack([a, b, c]), [arr(4), arr(4), arr(4)]),
    "stack_same_tensor_twice": (lambda a, b: stack([a, b, a]), [arr(4), arr(4)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_tensor_op_backward_matches_finite_differences(name: str) -> None:
    op, inputs = OPS[name]
    assert tensor_op_gradient_error(op, [x.copy() for x in inputs]) < 1e-7


def test_softmax_node_matches_softmax_built_from_primitives() -> None:
    x = arr(3, 6)
    fused, composed = Tensor(x.copy()), Tensor(x.copy())
    w = arr(3, 6)
    p1 = fused.softmax()
    e = (composed - x.max(axis=-1, keepdims=True)).exp()
    p2 = e / e.sum(axis=-1, keepdims=True)
    (p1 * w).sum().backward()
    (p2 * w).sum().backward()
    np.testing.assert_allclose(p1.data, p2.data, rtol=0, atol=1e-15)
    np.testing.assert_allclose(fused.grad, composed.grad, rtol=0, atol=1e-14)


def test_rmsnorm_node_matches_rmsnorm_built_from_primitives() -> None:
    x = arr(2, 8)
    fused, composed = Tensor(x.copy()), Tensor(x.copy())
    w = arr(2, 8)
    y1 = fused.rmsnorm()
    y2 = composed * ((composed * composed).sum(axis=-1, keepdims=True) / 8 + 1e-5) ** -0.5
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    np.testing.assert_allclose(y1.data, y2.data, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fused.grad, composed.grad, rtol=0, atol=1e-13)


def test_masked_softmax_gives_masked_entries_zero_weight_and_zero_gradient() -> None:
    mask = np.triu(np.full((4, 4), -np.inf), k=1)
    x = Tensor(arr(4, 4))
    p = (x + mask).softmax()
    (p * arr(4, 4)).sum().backward()
    assert np.all(p.data[mask == -np.inf] == 0)
    assert np.all(x.grad[mask == -np.inf] == 0)
    assert np.all(np.isfinite(x.grad))


def test_gradients_accumulate_over_a_node_used_twice() -> None:
    a = Tensor(np.array([1.0, 2.0, 3.0]))
    (a * a + a).sum().backward()
    np.testing.assert_array_equal(a.grad, 2 * a.data + 1)


def test_topological_order_puts_children_first_and_visits_each_node_once() -> None:
    a, b = Tensor(arr(3)), Tensor(arr(3))
    c = a * b
    d = (c + a).sum()
    order = topological_order(d)
    assert len(order) == len(set(map(id, order))) == 5  # a, b, a*b, a*b+a, sum
    position = {id(t): i for i, t in enumerate(order)}
    for node in order:
        assert all(position[id(child)] < position[id(node)] for child in node._children)


def test_matmul_rejects_mismatched_batch_shapes() -> None:
    with pytest.raises(ValueError, match="not supported"):
        Tensor(arr(2, 3, 4)) @ Tensor(arr(4, 5))


@pytest.mark.parametrize("rung", ["numpy", "numpy_all_positions"])
def test_training_step_graph_is_freed_without_the_cycle_collector(rung: str) -> None:
    model, docs, tok = build_model(rung, "e16_L1_b8")
    model.train_step(tok.encode_doc(docs[0]), 0.01)
    gc.collect()
    gc.disable()
    try:
        for doc in docs[1:4]:
            model.train_step(tok.encode_doc(doc), 0.01)
        assert gc.collect() == 0  # nothing was left for the cycle collector to find
    finally:
        gc.enable()
