"""Scalar autograd, the bottom rung: Karpathy's `Value`, one Python object per number in the graph.

Each operation builds its output node together with the local derivative of that output with
respect to each input ("local grads"); `backward` visits the graph in reverse topological order and
applies the chain rule edge by edge. The arithmetic is written exactly as in Karpathy's microgpt so
that a training run reproduces his figures to the last digit.
"""
from __future__ import annotations

import math


class DerivedOps:
    """Operations defined from +, * and **, shared by `Value` and chapter 3's `Tensor`."""

    __slots__ = ()

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1


class Value(DerivedOps):
    """One scalar in the computation graph: its value, its gradient, and how it was made."""

    __slots__ = ("data", "grad", "_children", "_local_grads", "_op")

    def __init__(self, data, children=(), local_grads=(), op=""):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads
        self._op = op

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1), "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, other):
        return Value(self.data**other, (self,), (other * self.data ** (other - 1),), f"**{other:g}")

    def log(self):
        return Value(math.log(self.data), (self,), (1 / self.data,), "log")

    def exp(self):
        return Value(math.exp(self.data), (self,), (math.exp(self.data),), "exp")

    def relu(self):
        return Value(max(0, self.data), (self,), (float(self.data > 0),), "relu")

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    def backward(self) -> None:
        """Fill `.grad` of every node this one depends on with d(self)/d(node)."""
        topo = []
        visited = set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)

        build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


def topological_order(root: Value) -> list[Value]:
    """Every node `root` depends on, each after its children (backward walks it in reverse)."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
        elif node not in visited:
            visited.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node._children))
    return order


def backward_iterative(root: Value) -> None:
    """`Value.backward` with the sort above: the same gradients, for a graph of any depth."""
    root.grad = 1
    for v in reversed(topological_order(root)):
        for child, local_grad in zip(v._children, v._local_grads):
            child.grad += local_grad * v.grad
