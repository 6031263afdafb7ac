"""The intermediate pure-Python GPTs chapter 2 times, one optimisation at a time.

Each class is a rung (the `Rung` contract, usable by `bench` as "microgpt_lib.rungs.rung2_python_fast.variants:Name")
that differs from its neighbour on the ladder in one idea only:

- scalar nodes: `ScalarKeepsLastGraphGPT` (the last step's graph kept alive during the next, as
  the module-level variables of Karpathy's script do), `ScalarIterativeGPT` (iterative
  topological sort, so the backward leaves no
  reference cycle), `ScalarGCPausedGPT` (the cyclic GC off during a step), `ClosureGPT` and
  `SlottedClosureGPT` (micrograd's `_backward` closures, with and without `__slots__`),
  `ScalarFusedGPT` (`dot` and `sum` as single nodes);
- vector nodes: `VectorSoftmaxLossGPT` (softmax node then -log p), `PreallocatedCacheGPT` (a KV
  cache written in place), `GraphInferenceGPT` (sampling that still builds the graph).

The end of the ladder is the registered rung `python_fast`.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

from microgpt_lib.config import GPTConfig
from microgpt_lib.gc_pause import gc_paused
from microgpt_lib.params import Params
from microgpt_lib.rungs.rung1_scalar.gpt import ScalarGPT, StateDict
from microgpt_lib.rungs.rung1_scalar.value import (
    DerivedOps,
    Value,
    backward_iterative,
    topological_order,
)
from microgpt_lib.rungs.rung2_python_fast.gpt import PythonFastGPT
from microgpt_lib.rungs.rung2_python_fast.nodes import Node, Vector, accumulate


def tokenize_with_index(chars: list[str], text: str) -> list[int]:
    """Karpathy's tokenizer: a linear search of the vocabulary per character."""
    return [chars.index(ch) for ch in text]


def tokenize_with_dict(stoi: dict[str, int], text: str) -> list[int]:
    """One hash lookup per character (what `CharTokenizer.encode` does)."""
    return [stoi[ch] for ch in text]


def recursive_topological_order(root) -> list:
    """Karpathy's build_topo: recursion as deep as the graph, and a closure referring to itself."""
    topo, visited = [], set()

    def build_topo(v):
        if v not in visited:
            visited.add(v)
            for child in v._children:
                build_topo(child)
            topo.append(v)

    build_topo(root)
    return topo


class ScalarKeepsLastGraphGPT(ScalarGPT):
    """`scalar` as Karpathy's script loop runs it: the module-level `loss` of one step keeps that
    step's graph alive until the next step's forward pass has built a new one."""

    name = "scalar_keeps_last_graph"

    def __init__(self, config: GPTConfig, params: Params) -> None:
        super().__init__(config, params)
        self.last_loss: Value | None = None

    def forward_backward(self, ids: list[int]) -> float:
        loss = self.loss_graph(ids)  # the previous graph is still alive while this one grows
        self.last_loss = loss
        loss.backward()
        return loss.data


class ScalarIterativeGPT(ScalarGPT):
    """`scalar` whose backward sorts the graph iteratively (the graph is freed by refcounting)."""

    name = "scalar_iterative"

    def forward_backward(self, ids: list[int]) -> float:
        loss = self.loss_graph(ids)
        backward_iterative(loss)
        return loss.data


class ScalarGCPausedGPT(ScalarIterativeGPT):
    """`scalar_iterative` with automatic GC off during each step (safe: the step makes no cycles)."""

    name = "scalar_gc_paused"

    def forward_backward_step(self, ids: list[int], lr: float) -> float:
        with gc_paused():
            return super().forward_backward_step(ids, lr)


# --- micrograd's node: a `_backward` closure per node instead of local gradients ------------

class _ClosureOps(DerivedOps):
    """micrograd's Value operators: each output keeps a closure that applies its chain rule."""

    __slots__ = ()

    def __add__(self, other):
        other = other if isinstance(other, _ClosureOps) else type(self)(other)
        out = type(self)(self.data + other.data, (self, other))

        def _backward():
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, _ClosureOps) else type(self)(other)
        out = type(self)(self.data * other.data, (self, other))

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, other):
        out = type(self)(self.data**other, (self,))

        def _backward():
            self.grad += other * self.data ** (other - 1) * out.grad

        out._backward = _backward
        return out

    def log(self):
        out = type(self)(math.log(self.data), (self,))

        def _backward():
            self.grad += (1 / self.data) * out.grad

        out._backward = _backward
        return out

    def exp(self):
        out = type(self)(math.exp(self.data), (self,))

        def _backward():
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def relu(self):
        out = type(self)(max(0, self.data), (self,))

        def _backward():
            self.grad += float(out.data > 0) * out.grad

        out._backward = _backward
        return out

    def backward(self) -> None:
        self.grad = 1
        for v in reversed(topological_order(self)):
            v._backward()


def _no_backward() -> None:
    """The backward of a leaf: nothing to propagate."""


class ClosureValue(_ClosureOps):
    """micrograd's Value: attributes in a per-instance __dict__, a closure per node."""

    def __init__(self, data, children=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._backward = _no_backward


class SlottedClosureValue(_ClosureOps):
    """The same node with `__slots__`: no per-instance __dict__."""

    __slots__ = ("data", "grad", "_children", "_backward")

    def __init__(self, data, children=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._backward = _no_backward


class ClosureGPT(ScalarIterativeGPT):
    """The scalar GPT on micrograd's closure nodes (every node sits in a reference cycle)."""

    name = "closures"
    value_class: type = ClosureValue

    def __init__(self, config: GPTConfig, params: Params) -> None:
        super().__init__(config, params)
        self.state_dict = {name: [[self.value_class(w) for w in row] for row in mat]
                           for name, mat in params.items()}
        self.params = [p for mat in self.state_dict.values() for row in mat for p in row]

    def forward_backward(self, ids: list[int]) -> float:
        loss = self.loss_graph(ids)
        loss.backward()
        return loss.data


class SlottedClosureGPT(ClosureGPT):
    name = "closures_slots"
    value_class = SlottedClosureValue


# --- fused reductions: dot and sum as single scalar nodes -----------------------------------

def dot(a: Sequence[Value], b: Sequence[Value]) -> Value:
    """sum_i a_i b_i as one node with 2n children; d/da_i = b_i and d/db_i = a_i."""
    a_data, b_data = [x.data for x in a], [y.data for y in b]
    data = sum(x * y for x, y in zip(a_data, b_data))
    return Value(data, (*a, *b), (*b_data, *a_data), "dot")


def vsum(xs: Sequence[Value]) -> Value:
    """sum_i x_i as one node; every local gradient is 1."""
    return Value(sum(x.data for x in xs), tuple(xs), (1,) * len(xs), "sum")


def _fused_softmax(logits: list[Value]) -> list[Value]:
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = vsum(exps)
    return [e / total for e in exps]


def _fused_rmsnorm(x: list[Value]) -> list[Value]:
    scale = (dot(x, x) / len(x) + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def gpt_fused(token_id: int, pos_id: int, keys, values, state_dict: StateDict, config: GPTConfig):
    """`scalar_gpt.gpt` with every reduction (linear, rmsnorm, attention, softmax) fused."""
    n_head, head_dim = config.n_head, config.head_dim
    x = [t + p for t, p in zip(state_dict["wte"][token_id], state_dict["wpe"][pos_id])]
    x = _fused_rmsnorm(x)
    for li in range(config.n_layer):
        w = {k: state_dict[f"layer{li}.{k}"] for k in
             ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")}
        x_residual = x
        x = _fused_rmsnorm(x)
        q = [dot(row, x) for row in w["attn_wq"]]
        keys[li].append([dot(row, x) for row in w["attn_wk"]])
        values[li].append([dot(row, x) for row in w["attn_wv"]])
        x_attn = []
        for hs in range(0, config.n_embd, head_dim):
            q_h = q[hs : hs + head_dim]
            logits = [dot(q_h, k[hs : hs + head_dim]) / head_dim**0.5 for k in keys[li]]
            weights = _fused_softmax(logits)
            for j in range(hs, hs + head_dim):
                x_attn.append(dot(weights, [v[j] for v in values[li]]))
        x = [dot(row, x_attn) + r for row, r in zip(w["attn_wo"], x_residual)]
        x_residual = x
        x = _fused_rmsnorm(x)
        x = [dot(row, x).relu() for row in w["mlp_fc1"]]
        x = [dot(row, x) + r for row, r in zip(w["mlp_fc2"], x_residual)]
    return [dot(row, x) for row in state_dict["lm_head"]]


class ScalarFusedGPT(ScalarGCPausedGPT):
    """Scalar nodes with fused dot/sum reductions (GC paused, iterative backward, as before)."""

    name = "scalar_fused"

    def loss_graph(self, tokens: Sequence[int]) -> Value:
        cfg = self.config
        n = min(cfg.block_size, len(tokens) - 1)
        keys, values = [[] for _ in range(cfg.n_layer)], [[] for _ in range(cfg.n_layer)]
        losses = []
        for pos_id in range(n):
            logits = gpt_fused(tokens[pos_id], pos_id, keys, values, self.state_dict, cfg)
            losses.append(-_fused_softmax(logits)[tokens[pos_id + 1]].log())
        return vsum(losses) * (1 / n)


# --- vector nodes: the unfused loss, the preallocated KV cache, inference with a graph -------

def softmax_forward(z: Vector) -> Vector:
    """p_i = exp(z_i - m) / sum_j exp(z_j - m), m = max z."""
    peak = max(z)
    exps = [math.exp(zi - peak) for zi in z]
    total = sum(exps)
    return [e / total for e in exps]


def softmax_backward(dp: Vector, p: Vector) -> Vector:
    """dz_i = p_i (dp_i - sum_j p_j dp_j)."""
    dot_pd = sum(pi * di for pi, di in zip(p, dp))
    return [pi * (di - dot_pd) for pi, di in zip(p, dp)]


def _softmax_node_backward(node: Node) -> None:
    (z,) = node._children
    accumulate(z, softmax_backward(node.grad, node.data))


def softmax(z: Node) -> Node:
    return Node(softmax_forward(z.data), (z,), _softmax_node_backward)


def _nll_node_backward(node: Node) -> None:
    (probs,) = node._children
    target = node._cache[0]
    dp = [0.0] * len(probs.data)
    dp[target] = -node.grad / probs.data[target]
    accumulate(probs, dp)


def negative_log_prob(probs: Node, target: int) -> Node:
    """-log p_y as a scalar node; d/dp_y = -1 / p_y, zero elsewhere."""
    return Node(-math.log(probs.data[target]), (probs,), _nll_node_backward, (target,))


def softmax_then_nll(logits: Node, target: int) -> Node:
    """The loss as the scalar rung computes it: a softmax node, then -log of one probability."""
    return negative_log_prob(softmax(logits), target)


class VectorSoftmaxLossGPT(PythonFastGPT):
    """Vector nodes with the loss as softmax then -log p (two nodes instead of one)."""

    name = "vector_softmax_loss"
    position_loss = staticmethod(softmax_then_nll)


class PreallocatedKVCache:
    """block_size slots per layer, written in place; a view is a slice of the filled ones."""

    def __init__(self, n_layer: int, block_size: int) -> None:
        self.keys: list[list[Node | None]] = [[None] * block_size for _ in range(n_layer)]
        self.values: list[list[Node | None]] = [[None] * block_size for _ in range(n_layer)]

    def add(self, layer: int, pos_id: int, k: Node, v: Node) -> None:
        self.keys[layer][pos_id] = k
        self.values[layer][pos_id] = v

    def view(self, layer: int, pos_id: int) -> tuple[list[Node], list[Node]]:
        return self.keys[layer][: pos_id + 1], self.values[layer][: pos_id + 1]


class PreallocatedCacheGPT(PythonFastGPT):
    """`python_fast` with a preallocated KV cache instead of appending."""

    name = "prealloc_kv_cache"
    kv_cache = PreallocatedKVCache


class GraphInferenceGPT(PythonFastGPT):
    """`python_fast` sampling with the graph switched on (as the scalar rung does)."""

    name = "graph_inference"
    inference_mode = staticmethod(contextlib.nullcontext)
