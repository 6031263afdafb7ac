"""Array autograd, rung 3: `Tensor`, the scalar `Value` of chapter 1 with a numpy.ndarray inside.

The structure is Value's, line for line: each operation builds its output node together with, for
each input, how to turn the output's gradient into that input's gradient; `backward` visits the
graph in reverse topological order and applies the chain rule edge by edge. The one change: a
scalar local derivative `local_grad * v.grad` becomes a function `grad_fn(v.grad)` (a
vector-Jacobian product), because the Jacobian of an array operation is a matrix we never build.

Plain numbers and arrays mixed into an operation are constants: they get no node of their own.
Softmax and RMSNorm are single nodes with their backward derived by hand (see chapter 3), which is
what keeps the graph small enough for NumPy's per-call overhead to pay off.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microgpt_lib.rungs.rung1_scalar.value import DerivedOps, topological_order


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, back to `shape`."""
    if grad.shape == shape:
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


class Tensor(DerivedOps):
    """One array in the computation graph: its value, its gradient, and how it was made."""

    __slots__ = ("data", "grad", "_children", "_grad_fns", "_op")

    def __init__(self, data, children=(), grad_fns=(), op=""):
        if not isinstance(data, np.ndarray):  # a NumPy scalar keeps its dtype, a Python number: float64
            dtype = data.dtype if isinstance(data, np.generic) else np.float64
            data = np.asarray(data, dtype=dtype)
        self.data = data
        self.grad = None  # no array until a gradient arrives (Value starts from 0)
        self._children = children
        self._grad_fns = grad_fns
        self._op = op

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __add__(self, other):
        a = self.data.shape
        if not isinstance(other, Tensor):  # a constant: gradient flows to self only
            return Tensor(self.data + other, (self,), (lambda g: _unbroadcast(g, a),), "+")
        b = other.data.shape
        return Tensor(self.data + other.data, (self, other),
                      (lambda g: _unbroadcast(g, a), lambda g: _unbroadcast(g, b)), "+")

    def __mul__(self, other):
        x = self.data
        if not isinstance(other, Tensor):
            return Tensor(x * other, (self,), (lambda g: _unbroadcast(g * other, x.shape),), "*")
        y = other.data
        return Tensor(x * y, (self, other),
                      (lambda g: _unbroadcast(g * y, x.shape),
                       lambda g: _unbroadcast(g * x, y.shape)), "*")

    def __pow__(self, other):
        x = self.data
        return Tensor(x**other, (self,), (lambda g: g * (other * x ** (other - 1)),),
                      f"**{other:g}")

    def log(self):
        x = self.data
        return Tensor(np.log(x), (self,), (lambda g: g / x,), "log")

    def exp(self):
        out = np.exp(self.data)
        return Tensor(out, (self,), (lambda g: g * out,), "exp")

    def relu(self):
        positive = self.data > 0
        return Tensor(np.where(positive, self.data, 0.0), (self,), (lambda g: g * positive,),
                      "relu")

    def __matmul__(self, other):
        """Matrix product (NumPy's @): vector or matrix operands, or two stacks of matrices."""
        a, b = self.data, other.data
        if a.ndim == 2 and b.ndim == 1:  # W @ x: the gradient of W is the outer product g x^T
            grad_fns = (lambda g: np.outer(g, b), lambda g: g @ a)
        elif a.ndim == 1 and b.ndim == 2:  # x @ W
            grad_fns = (lambda g: b @ g, lambda g: np.outer(a, g))
        elif a.ndim == 1 and b.ndim == 1:  # dot product
            grad_fns = (lambda g: g * b, lambda g: g * a)
        elif a.ndim == b.ndim and a.shape[:-2] == b.shape[:-2]:  # (..., m, k) @ (..., k, n)
            a_t, b_t = a.swapaxes(-1, -2), b.swapaxes(-1, -2)
            grad_fns = (lambda g: g @ b_t, lambda g: a_t @ g)
        else:
            raise ValueError(f"matmul of shapes {a.shape} and {b.shape} is not supported")
        return Tensor(a @ b, (self, other), grad_fns, "@")

    def sum(self, axis=None, keepdims=False):
        """Sum of all entries, or along one axis; backward copies g back over the summed axis."""
        shape = kept = self.data.shape  # kept: the shape g needs to broadcast back over `axis`
        if axis is not None:
            a = axis % len(shape)
            kept = shape[:a] + (1,) + shape[a + 1:]

        def grad_fn(g):
            full = np.empty(shape, g.dtype)
            full[...] = g if axis is None or keepdims else g.reshape(kept)
            return full

        return Tensor(self.data.sum(axis=axis, keepdims=keepdims), (self,), (grad_fn,), "sum")

    def __getitem__(self, index):
        """Indexing and slicing; an integer array index is an embedding lookup (rows may repeat)."""
        shape, dtype = self.data.shape, self.data.dtype

        fancy = isinstance(index, (np.ndarray, list, tuple))

        def grad_fn(g):
            full = np.zeros(shape, dtype)
            if fancy:
                np.add.at(full, index, g)  # a row picked twice receives both gradients
            else:
                full[index] = g
            return full

        return Tensor(self.data[index], (self,), (grad_fn,), "[]")

    def reshape(self, *shape):
        old = self.data.shape
        return Tensor(self.data.reshape(*shape), (self,), (lambda g: g.reshape(old),), "reshape")

    def transpose(self, *axes):
        inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__)) if axes else None
        return Tensor(self.data.transpose(*axes), (self,), (lambda g: g.transpose(inverse),), "T")

    @property
    def T(self):
        return self.transpose()

    def softmax(self, axis=-1):
        """exp(x - max) / sum(exp(x - max)) along `axis`; backward: p * (g - sum(g * p))."""
        e = np.exp(self.data - self.data.max(axis=axis, keepdims=True))
        p = e / e.sum(axis=axis, keepdims=True)
        return Tensor(p, (self,), (lambda g: p * (g - (g * p).sum(axis=axis, keepdims=True)),),
                      "softmax")

    def rmsnorm(self, eps=1e-5):
        """x / sqrt(mean(x^2) + eps) over the last axis; backward: s * (g - y * mean(g * y))."""
        x = self.data
        inv_n = 1 / x.shape[-1]
        scale = ((x * x).sum(axis=-1, keepdims=True) * inv_n + eps) ** -0.5
        y = x * scale
        return Tensor(y, (self,),
                      (lambda g: scale * (g - y * ((g * y).sum(axis=-1, keepdims=True) * inv_n)),),
                      "rmsnorm")

    def __repr__(self) -> str:
        return f"Tensor(shape={self.data.shape}, dtype={self.data.dtype}, op={self._op!r})"

    def backward(self) -> None:
        """Fill `.grad` of every node this one depends on with d(self)/d(node) (self: a scalar)."""
        topo = topological_order(self)
        self.grad = np.ones_like(self.data)
        for v in reversed(topo):
            for child, grad_fn in zip(v._children, v._grad_fns):
                g = grad_fn(v.grad)
                child.grad = g if child.grad is None else child.grad + g


def stack(tensors: Sequence[Tensor]) -> Tensor:
    """The tensors (all of one shape) stacked along a new first axis: a KV cache as one array."""
    out = np.stack([t.data for t in tensors])
    grad_fns = tuple((lambda g, i=i: g[i]) for i in range(len(tensors)))
    return Tensor(out, tuple(tensors), grad_fns, "stack")
