"""Every hand-derived backward of chapter 2 agrees with finite differences of its forward."""
from __future__ import annotations

import random

import pytest

from microgpt_lib.measure.gradcheck import central_difference, relative_error
from microgpt_lib.rungs.rung1_scalar.value import Value
from microgpt_lib.rungs.rung2_python_fast import nodes as va
from microgpt_lib.rungs.rung2_python_fast import variants as pv
from microgpt_lib.rungs.rung2_python_fast.nodes import Node, Param

RTOL = 1e-6


def _project_backward(node: Node) -> None:
    (out,) = node._children
    va.accumulate(out, [node.grad * r for r in node._cache[0]])


def scalar_of(out: Node, weights: list[float]) -> Node:
    """sum_i w_i out_i as a scalar node, so that a vector output can be checked like a loss."""
    if isinstance(out.data, float):
        return out
    return Node(sum(w * y for w, y in zip(weights, out.data)), (out,), _project_backward, (weights,))


def assert_gradients_match(build, vectors: list[list[float]], matrices=(), seed: int = 0) -> None:
    """build(vector nodes, Param nodes) -> output node; analytic grads == central differences."""
    rng = random.Random(seed)

    def run(vs, ms):
        nodes, params = [Node(list(v)) for v in vs], [Param([list(r) for r in m]) for m in ms]
        return build(nodes, params), nodes, params

    out, _, _ = run(vectors, matrices)
    size = 1 if isinstance(out.data, float) else len(out.data)
    weights = [rng.uniform(-1, 1) for _ in range(size)]
    out, nodes, params = run(vectors, matrices)
    va.backward(scalar_of(out, weights))

    def value_at(vs, ms) -> float:
        return scalar_of(run(vs, ms)[0], weights).data

    for k, vec in enumerate(vectors):
        analytic = nodes[k].grad or [0.0] * len(vec)
        for j in range(len(vec)):
            def f(x, k=k, j=j):
                vs = [list(v) for v in vectors]
                vs[k][j] = x
                return value_at(vs, matrices)
            numeric = central_difference(f, vec[j])
            assert relative_error(analytic[j], numeric, floor=1e-6) < RTOL, (k, j, numeric)
    for k, mat in enumerate(matrices):
        analytic = params[k].grad_matrix()
        for i, row in enumerate(mat):
            for j in range(len(row)):
                def f(x, k=k, i=i, j=j):
                    ms = [[list(r) for r in m] for m in matrices]
                    ms[k][i][j] = x
                    return value_at(vectors, ms)
                numeric = central_difference(f, row[j])
                assert relative_error(analytic[i][j], numeric, floor=1e-6) < RTOL, (k, i, j)


def vec(n: int, seed: int, low: float = -1.0, high: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def mat(rows: int, cols: int, seed: int) -> list[list[float]]:
    return [vec(cols, seed * 100 + i) for i in range(rows)]


def test_embed_backward_matches_finite_differences():
    assert_gradients_match(lambda v, p: va.embed(p[0], p[1], 2, 1), [], [mat(4, 3, 1), mat(3, 3, 2)])


def test_linear_backward_matches_finite_differences():
    assert_gradients_match(lambda v, p: va.linear(p[0], v[0]), [vec(5, 1)], [mat(4, 5, 2)])


def test_linear_weight_used_twice_accumulates_both_uses():
    build = lambda v, p: va.add_vectors(va.linear(p[0], v[0]), va.linear(p[0], va.relu(v[1])))
    assert_gradients_match(build, [vec(3, 1), vec(3, 2)], [mat(3, 3, 3)])


def test_rmsnorm_backward_matches_finite_differences():
    assert_gradients_match(lambda v, p: va.rmsnorm(v[0]), [vec(6, 4)])


def test_add_and_relu_backward_match_finite_differences():
    # inputs kept away from 0, where relu has no derivative
    x = [0.5, -0.7, 0.3, -0.2, 0.9]
    assert_gradients_match(lambda v, p: va.relu(va.add_vectors(v[0], v[1])), [x, [0.1] * 5])


@pytest.mark.parametrize("t", [1, 3])
def test_attention_backward_matches_finite_differences(t):
    vectors = [vec(8, 10)] + [vec(8, 20 + i) for i in range(2 * t)]
    build = lambda v, p: va.attention(v[0], v[1 : 1 + t], v[1 + t :], n_head=2)
    assert_gradients_match(build, vectors)


def test_cross_entropy_backward_is_p_minus_onehot():
    assert_gradients_match(lambda v, p: va.cross_entropy(v[0], 2), [vec(5, 7, -3, 3)])
    loss, probs = va.cross_entropy_forward([1.0, 2.0, 3.0], 0)
    assert va.cross_entropy_backward(1.0, probs, 0) == [probs[0] - 1, probs[1], probs[2]]


def test_mean_backward_matches_finite_differences():
    build = lambda v, p: va.mean([va.cross_entropy(v[0], 1), va.cross_entropy(v[1], 0)])
    assert_gradients_match(build, [vec(4, 8), vec(4, 9)])


def test_softmax_and_negative_log_prob_backward_match_finite_differences():
    assert_gradients_match(lambda v, p: pv.softmax(v[0]), [vec(5, 11)])
    assert_gradients_match(lambda v, p: pv.softmax_then_nll(v[0], 3), [vec(5, 12)])


def test_softmax_then_nll_equals_log_sum_exp_cross_entropy():
    z = vec(7, 13, -4, 4)
    assert abs(pv.softmax_then_nll(Node(z), 5).data - va.cross_entropy(Node(z), 5).data) < 1e-12


def test_fused_dot_and_sum_backward_match_finite_differences():
    a, b = vec(4, 14), vec(4, 15)

    def f(xs):
        values = [Value(x) for x in xs]
        return values, pv.vsum([pv.dot(values[:4], values[4:]), values[0] * 2.0])

    values, out = f(a + b)
    out.backward()
    for j, x in enumerate(a + b):
        def g(y, j=j):
            xs = a + b
            xs = xs[:j] + [y] + xs[j + 1 :]
            return f(xs)[1].data
        assert relative_error(values[j].grad, central_difference(g, x), floor=1e-6) < RTOL


def test_no_grad_records_no_graph():
    x, w = Node([1.0, 2.0]), Param([[1.0, 0.0], [0.5, 0.5]])
    with va.no_grad():
        y = va.linear(w, x)
    assert y._children == () and y._backward is None and y.data == [1.0, 1.5]
    assert va.linear(w, x)._children == (w, x)
