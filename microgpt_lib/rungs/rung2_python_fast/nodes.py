"""Vector-level autograd for the `python_fast` rung: one graph node per vector, pure Python.

Where the scalar rung makes one `Value` per number (tens of thousands of nodes per step), a `Node`
here holds a whole vector (a list of floats) and its op's backward is derived by hand for the
vector at once: a linear layer is one node, not 2·in·out. Each op is a `<op>_forward` /
`<op>_backward` pair on plain floats, as in llm.c; the node builder saves what the backward needs
in `_cache` and points `_backward` at a module-level function (never a closure), so a node only
refers to its inputs: the graph has no reference cycles and refcounting frees it, without the
cyclic garbage collector. `backward` orders the graph with the iterative topological sort, which
no model depth can push past the recursion limit. Under `no_grad()` the same ops record nothing.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import add, mul

from microgpt_lib.rungs.rung1_scalar.value import topological_order

Vector = list[float]
Matrix = list[list[float]]
RMS_EPS = 1e-5

_grad_enabled = True


@contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block ops compute values only: no children, no cache, no graph."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Node:
    """A value in the graph (a vector, or a float for the loss), its gradient and how it was made."""

    __slots__ = ("data", "grad", "_children", "_backward", "_cache")

    def __init__(
        self, data, children: tuple = (), backward: Callable[["Node"], None] | None = None,
        cache: tuple = (),
    ) -> None:
        self.data = data
        self.grad = None  # allocated by the first gradient that reaches this node
        if _grad_enabled:
            self._children, self._backward, self._cache = children, backward, cache
        else:
            self._children, self._backward, self._cache = (), None, ()


class Param(Node):
    """A weight matrix of (out, in) rows: a leaf whose `grad` is None or a matrix of that shape.

    `linear` nodes do not touch the weight gradient while the graph is walked: they leave their
    (dy, x) pair in `pending`, and `backward` turns all of them into dW in one pass at the end
    (`linear_weight_backward`). `transposed()` keeps W's columns for dx = W^T dy; it is computed
    once per step and dropped by `invalidate()` whenever the optimiser changes the weights.
    """

    __slots__ = ("pending", "_transposed")

    def __init__(self, data: Matrix) -> None:
        super().__init__(data)
        self._transposed: Matrix | None = None
        self.pending: list[tuple[Vector, Vector]] = []

    def zero_grad(self) -> None:
        self.grad = None
        self.pending = []

    def grad_matrix(self) -> Matrix:
        """The gradient, allocated as zeros if nothing has reached this weight yet."""
        if self.grad is None:
            self.grad = [[0.0] * len(row) for row in self.data]
        return self.grad

    def flush_pending(self) -> None:
        """Add the weight gradient of every pending linear use to `grad`."""
        if self.pending:
            dys, xs = zip(*self.pending)
            self.pending = []
            dw = linear_weight_backward(dys, xs)
            if self.grad is None:
                self.grad = dw
            else:
                self.grad = [list(map(add, g, d)) for g, d in zip(self.grad, dw)]

    def transposed(self) -> Matrix:
        if self._transposed is None:
            self._transposed = [list(col) for col in zip(*self.data)]
        return self._transposed

    def invalidate(self) -> None:
        self._transposed = None


def accumulate(node: Node, grad: Vector) -> None:
    """node.grad += grad, never in place (a gradient list may be shared by two inputs)."""
    node.grad = grad if node.grad is None else list(map(add, node.grad, grad))


def backward(root: Node) -> None:
    """Fill `.grad` of every node `root` depends on, visiting them in reverse topological order."""
    root.grad = 1.0
    order = topological_order(root)
    for node in reversed(order):
        if node._backward is not None and node.grad is not None:
            node._backward(node)
    for node in order:
        if isinstance(node, Param):
            node.flush_pending()


# --- embedding: x = wte[token] + wpe[pos] ---------------------------------------------------

def embed_forward(wte: Matrix, wpe: Matrix, token_id: int, pos_id: int) -> Vector:
    """(n_embd,) row token_id of wte plus row pos_id of wpe."""
    return list(map(add, wte[token_id], wpe[pos_id]))


def embed_backward(dx: Vector, dwte: Matrix, dwpe: Matrix, token_id: int, pos_id: int) -> None:
    """Both rows receive dx."""
    dwte[token_id] = list(map(add, dwte[token_id], dx))
    dwpe[pos_id] = list(map(add, dwpe[pos_id], dx))


def _embed_node_backward(node: Node) -> None:
    wte, wpe = node._children
    embed_backward(node.grad, wte.grad_matrix(), wpe.grad_matrix(), *node._cache)


def embed(wte: Param, wpe: Param, token_id: int, pos_id: int) -> Node:
    return Node(embed_forward(wte.data, wpe.data, token_id, pos_id), (wte, wpe),
                _embed_node_backward, (token_id, pos_id))


# --- linear: y = W x, W of (out, in) rows -------------------------------------------------

def linear_forward(x: Vector, w: Matrix) -> Vector:
    """(out,) = W (out, in) @ x (in,): one dot product per row."""
    return [sum(map(mul, row, x)) for row in w]


def linear_backward(dy: Vector, w_t: Matrix) -> Vector:
    """dx (in,) = W^T dy, from W's columns w_t (in, out) and dy (out,)."""
    return [sum(map(mul, dy, col)) for col in w_t]


def linear_weight_backward(dys: Sequence[Vector], xs: Sequence[Vector]) -> Matrix:
    """dW (out, in) = sum_t dy_t x_t^T over T uses: dW_ij = dot(dy_.,i, x_.,j), length T."""
    x_cols = list(zip(*xs))
    return [[sum(map(mul, dy_col, x_col)) for x_col in x_cols] for dy_col in zip(*dys)]


def _linear_node_backward(node: Node) -> None:
    w, x = node._children
    w.pending.append((node.grad, x.data))
    accumulate(x, linear_backward(node.grad, w.transposed()))


def linear(w: Param, x: Node) -> Node:
    return Node(linear_forward(x.data, w.data), (w, x), _linear_node_backward)


# --- RMSNorm: y = x * s, s = (mean(x^2) + eps)^(-1/2) ----------------------------------------

def rmsnorm_forward(x: Vector) -> tuple[Vector, float]:
    """(n,) -> (n,) normalised, and the scale s the backward needs."""
    scale = (sum(map(mul, x, x)) / len(x) + RMS_EPS) ** -0.5
    return [xi * scale for xi in x], scale


def rmsnorm_backward(dy: Vector, x: Vector, scale: float) -> Vector:
    """dx_j = s dy_j - (s^3 / n) x_j sum_i dy_i x_i."""
    c = scale**3 * sum(map(mul, dy, x)) / len(x)
    return [scale * dyj - c * xj for dyj, xj in zip(dy, x)]


def _rmsnorm_node_backward(node: Node) -> None:
    (x,) = node._children
    accumulate(x, rmsnorm_backward(node.grad, x.data, node._cache[0]))


def rmsnorm(x: Node) -> Node:
    y, scale = rmsnorm_forward(x.data)
    return Node(y, (x,), _rmsnorm_node_backward, (scale,))


# --- elementwise: residual add and ReLU ---------------------------------------------------

def _add_node_backward(node: Node) -> None:
    a, b = node._children
    accumulate(a, node.grad)
    accumulate(b, node.grad)


def add_vectors(a: Node, b: Node) -> Node:
    """a + b (the residual connections); both inputs receive the gradient unchanged."""
    return Node(list(map(add, a.data, b.data)), (a, b), _add_node_backward)


def relu_backward(dy: Vector, y: Vector) -> Vector:
    """dx = dy where the output is positive, 0 elsewhere."""
    return [d if yi > 0 else 0.0 for d, yi in zip(dy, y)]


def _relu_node_backward(node: Node) -> None:
    (x,) = node._children
    accumulate(x, relu_backward(node.grad, node.data))


def relu(x: Node) -> Node:
    return Node([xi if xi > 0 else 0.0 for xi in x.data], (x,), _relu_node_backward)


# --- causal self-attention of one position over the cached keys and values ------------------

def attention_forward(
    q: Vector, keys: Sequence[Vector], values: Sequence[Vector], n_head: int
) -> tuple[Vector, list[Vector]]:
    """q (C,), keys/values T x (C,) -> out (C,) and the softmax weights, n_head x (T,).

    Per head h (columns hs:hs+d): a_t = softmax_t(q_h . k_t,h / sqrt(d)), out_h = sum_t a_t v_t,h.
    out_h is computed channel by channel, out_j = dot(a, column j of the values) (T terms), so a
    position costs C dot products rather than n_head * T small list comprehensions.
    """
    head_dim = len(q) // n_head
    inv_sqrt_d = 1 / head_dim**0.5
    value_columns = list(zip(*values))
    out, weights = [], []
    for hs in range(0, len(q), head_dim):
        q_h = q[hs : hs + head_dim]
        logits = [sum(map(mul, q_h, k[hs : hs + head_dim])) * inv_sqrt_d for k in keys]
        peak = max(logits)
        exps = [math.exp(z - peak) for z in logits]
        total = sum(exps)
        a = [e / total for e in exps]
        out.extend([sum(map(mul, a, col)) for col in value_columns[hs : hs + head_dim]])
        weights.append(a)
    return out, weights


def attention_backward(
    dout: Vector, q: Vector, keys: Sequence[Vector], values: Sequence[Vector],
    weights: list[Vector], n_head: int,
) -> tuple[Vector, list[Vector], list[Vector]]:
    """dq (C,), dkeys and dvalues T x (C,) of attention_forward.

    Per head: da_t = dout_h . v_t,h; dv_t,h = a_t dout_h; through the softmax
    dz_t = a_t (da_t - sum_s a_s da_s); then dq_h = sum_t dz_t k_t,h / sqrt(d) and
    dk_t,h = dz_t q_h / sqrt(d).
    """
    head_dim = len(q) // n_head
    inv_sqrt_d = 1 / head_dim**0.5
    key_columns = list(zip(*keys))
    dq = []
    dkeys = [[] for _ in keys]
    dvalues = [[] for _ in values]
    for h, hs in enumerate(range(0, len(q), head_dim)):
        he = hs + head_dim
        a, do_h, q_h = weights[h], dout[hs:he], q[hs:he]
        da = [sum(map(mul, do_h, v[hs:he])) for v in values]
        dot = sum(map(mul, a, da))
        dz = [a_t * (da_t - dot) * inv_sqrt_d for a_t, da_t in zip(a, da)]
        dq.extend([sum(map(mul, dz, col)) for col in key_columns[hs:he]])  # as out_j forward
        for dk, dv, dz_t, a_t in zip(dkeys, dvalues, dz, a):
            dk.extend([dz_t * qj for qj in q_h])
            dv.extend([a_t * dj for dj in do_h])
    return dq, dkeys, dvalues


def _attention_node_backward(node: Node) -> None:
    n_head, t = node._cache[0], node._cache[2]
    q, keys, values = node._children[0], node._children[1 : 1 + t], node._children[1 + t :]
    dq, dkeys, dvalues = attention_backward(
        node.grad, q.data, [k.data for k in keys], [v.data for v in values], node._cache[1], n_head
    )
    accumulate(q, dq)
    for k, dk in zip(keys, dkeys):
        accumulate(k, dk)
    for v, dv in zip(values, dvalues):
        accumulate(v, dv)


def attention(q: Node, keys: Sequence[Node], values: Sequence[Node], n_head: int) -> Node:
    """One node for all heads of one position: children q, the T keys, then the T values."""
    out, weights = attention_forward(
        q.data, [k.data for k in keys], [v.data for v in values], n_head)
    return Node(out, (q, *keys, *values), _attention_node_backward, (n_head, weights, len(keys)))


# --- loss: cross-entropy by log-sum-exp, and the mean over positions -----------------------

def cross_entropy_forward(logits: Vector, target: int) -> tuple[float, Vector]:
    """-log softmax(z)[y] = LSE(z) - z_y, with LSE(z) = m + log sum_j exp(z_j - m); also p."""
    peak = max(logits)
    exps = [math.exp(z - peak) for z in logits]
    total = sum(exps)
    loss = peak + math.log(total) - logits[target]
    return loss, [e / total for e in exps]


def cross_entropy_backward(dloss: float, probs: Vector, target: int) -> Vector:
    """dz = dloss (p - onehot(y))."""
    dz = [dloss * p for p in probs]
    dz[target] -= dloss
    return dz


def _cross_entropy_node_backward(node: Node) -> None:
    (logits,) = node._children
    probs, target = node._cache
    accumulate(logits, cross_entropy_backward(node.grad, probs, target))


def cross_entropy(logits: Node, target: int) -> Node:
    """A scalar node: the loss of predicting `target` from `logits`."""
    loss, probs = cross_entropy_forward(logits.data, target)
    return Node(loss, (logits,), _cross_entropy_node_backward, (probs, target))


def _mean_node_backward(node: Node) -> None:
    share = node.grad / len(node._children)
    for child in node._children:
        child.grad = share if child.grad is None else child.grad + share


def mean(scalars: Sequence[Node]) -> Node:
    """The mean of scalar nodes (the document's loss); each receives 1/n of the gradient."""
    return Node(sum(s.data for s in scalars) / len(scalars), tuple(scalars), _mean_node_backward)
