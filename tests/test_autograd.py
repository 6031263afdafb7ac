"""The scalar Value engine: every operation's gradient against a central finite difference."""
import math

import pytest

from microgpt_lib.measure.gradcheck import central_difference, relative_error
from microgpt_lib.rungs.rung1_scalar.value import Value, topological_order

OPS = {
    "add": lambda a, b: a + b, "radd": lambda a, b: 2.5 + a, "mul": lambda a, b: a * b,
    "rmul": lambda a, b: 2.5 * a, "sub": lambda a, b: a - b, "rsub": lambda a, b: 2.5 - a,
    "div": lambda a, b: a / b, "rdiv": lambda a, b: 2.5 / a, "neg": lambda a, b: -a,
    "pow3": lambda a, b: a**3, "pow_neg_half": lambda a, b: a**-0.5, "log": lambda a, b: a.log(),
    "exp": lambda a, b: a.exp(), "relu": lambda a, b: a.relu(),
    "composite": lambda a, b: ((a * b).exp() + (a + b) ** 2).log() / (b + a).relu(),
}
POINTS = [(1.3, 0.7), (0.4, 2.1), (2.5, 3.9)]


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("x, y", POINTS)
def test_value_op_gradient_matches_finite_difference(name, x, y):
    f = OPS[name]
    a, b = Value(x), Value(y)
    f(a, b).backward()
    da = central_difference(lambda t: f(Value(t), Value(y)).data, x)
    db = central_difference(lambda t: f(Value(x), Value(t)).data, y)
    assert relative_error(a.grad, da) < 1e-6
    assert relative_error(b.grad, db) < 1e-6


def test_relu_gradient_is_zero_below_zero():
    a = Value(-0.5)
    a.relu().backward()
    assert a.grad == 0.0


def test_shared_node_accumulates_gradient_from_every_use():
    a = Value(3.0)
    (a * a + a).backward()  # d/da = 2a + 1
    assert a.grad == 7.0


def test_topological_order_puts_children_before_parents():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    order = topological_order(d)
    assert order[-1] is d and set(order) == {a, b, c, d}
    assert order.index(c) > max(order.index(a), order.index(b))


def test_exp_and_log_are_inverse():
    assert math.isclose(Value(0.7).exp().log().data, 0.7)
