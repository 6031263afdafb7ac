"""Rung `python_fast`: the same GPT as `scalar`, as fast as pure Python goes (chapter 2).

Still no dependency and still one position at a time with a KV cache, but built on vector-level
nodes (`vector_autograd`): one node per vector op with a hand-derived backward, a log-sum-exp
cross-entropy node, a graph without reference cycles (freed by refcounting, never by the cyclic
GC), an iterative topological sort, an Adam update written row by row, and inference that builds
no graph at all and samples from a float softmax.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from math import sqrt

from microgpt_lib.config import GPTConfig
from microgpt_lib.optim import BETA1, BETA2, EPS
from microgpt_lib.params import Params
from microgpt_lib.rungs.base import Rung
from microgpt_lib.rungs.rung2_python_fast.nodes import (
    Node,
    Param,
    add_vectors,
    attention,
    backward,
    cross_entropy,
    embed,
    linear,
    mean,
    no_grad,
    relu,
    rmsnorm,
)


class KVCache:
    """The keys and values of every position so far, one growing list per layer."""

    def __init__(self, n_layer: int, block_size: int) -> None:
        self.keys: list[list[Node]] = [[] for _ in range(n_layer)]
        self.values: list[list[Node]] = [[] for _ in range(n_layer)]

    def add(self, layer: int, pos_id: int, k: Node, v: Node) -> None:
        self.keys[layer].append(k)
        self.values[layer].append(v)

    def view(self, layer: int, pos_id: int) -> tuple[list[Node], list[Node]]:
        """Keys and values of positions 0..pos_id of `layer`."""
        return self.keys[layer], self.values[layer]


def gpt_position(
    token_id: int, pos_id: int, cache: KVCache, weights: dict[str, Param], config: GPTConfig
) -> Node:
    """Logits node for the token after `token_id` at `pos_id`; adds this position's k, v to cache."""
    x = rmsnorm(embed(weights["wte"], weights["wpe"], token_id, pos_id))
    for li in range(config.n_layer):
        layer = f"layer{li}."
        residual = x
        x = rmsnorm(x)
        q = linear(weights[layer + "attn_wq"], x)
        cache.add(li, pos_id, linear(weights[layer + "attn_wk"], x),
                  linear(weights[layer + "attn_wv"], x))
        keys, values = cache.view(li, pos_id)
        x = attention(q, keys, values, config.n_head)
        x = add_vectors(linear(weights[layer + "attn_wo"], x), residual)
        residual = x
        x = relu(linear(weights[layer + "mlp_fc1"], rmsnorm(x)))
        x = add_vectors(linear(weights[layer + "mlp_fc2"], x), residual)
    return linear(weights["lm_head"], x)


def sampling_probs(logits: list[float], temperature: float) -> list[float]:
    """softmax(logits / T) on floats, in the scalar rung's order of operations."""
    inv_t = temperature**-1
    scaled = [z * inv_t for z in logits]
    peak = max(scaled)
    exps = [math.exp(z - peak) for z in scaled]
    inv_total = sum(exps) ** -1
    return [e * inv_total for e in exps]


class PythonFastGPT(Rung):
    """Pure-Python GPT on vector-level nodes; same losses, gradients and samples as `scalar`."""

    name = "python_fast"
    kv_cache = KVCache
    position_loss = staticmethod(cross_entropy)
    inference_mode = staticmethod(no_grad)

    def __init__(self, config: GPTConfig, params: Params) -> None:
        super().__init__(config, params)
        self.weights = {name: Param([list(row) for row in mat]) for name, mat in params.items()}
        self.m = {name: [[0.0] * len(row) for row in mat] for name, mat in params.items()}
        self.v = {name: [[0.0] * len(row) for row in mat] for name, mat in params.items()}
        self.t = 0

    def loss_graph(self, tokens: Sequence[int]) -> Node:
        """The document's mean loss as the root of its graph (forward only)."""
        cfg = self.config
        n = min(cfg.block_size, len(tokens) - 1)
        cache = self.kv_cache(cfg.n_layer, cfg.block_size)
        losses = [
            self.position_loss(gpt_position(tokens[p], p, cache, self.weights, cfg), tokens[p + 1])
            for p in range(n)
        ]
        return mean(losses)

    def zero_grads(self) -> None:
        for w in self.weights.values():
            w.zero_grad()

    def forward_backward(self, ids: list[int]) -> float:
        root = self.loss_graph(ids)
        backward(root)
        return root.data

    def gradients(self) -> dict[str, list[list[float]]]:
        return {name: [list(row) for row in w.grad_matrix()] for name, w in self.weights.items()}

    def adam_step(self, lr: float) -> None:
        """Adam, one list comprehension per row and moment; then the gradients are cleared.

        lr m_hat / (sqrt(v_hat) + eps) is computed as m / (a sqrt(v) + b) with
        a = (1 - beta1^t) / (lr sqrt(1 - beta2^t)) and b = (1 - beta1^t) eps / lr: the same update
        with one division and no multiplication by lr per weight, its constants computed once per
        step; math.sqrt is a direct C call where `v**0.5` goes through the general power.
        """
        self.t += 1
        c1, c2 = 1 - BETA1, 1 - BETA2
        bc1 = 1 - BETA1**self.t
        if lr == 0:  # the moments move, the weights do not (a and b below divide by lr)
            a = b = math.inf
        else:
            a, b = bc1 / (lr * (1 - BETA2**self.t) ** 0.5), bc1 * EPS / lr
        b1, b2 = BETA1, BETA2
        for name, w in self.weights.items():
            data, grad, m, v = w.data, w.grad_matrix(), self.m[name], self.v[name]
            for i, g_row in enumerate(grad):
                if any(g_row):
                    m_row = m[i] = [b1 * mi + c1 * g for mi, g in zip(m[i], g_row)]
                    v_row = v[i] = [b2 * vi + c2 * g * g for vi, g in zip(v[i], g_row)]
                else:  # an unused row (a token or position not in this name): moments only decay
                    m_row = m[i] = [b1 * mi for mi in m[i]]
                    v_row = v[i] = [b2 * vi for vi in v[i]]
                if b != math.inf:
                    data[i] = [p - mi / (a * sqrt(vi) + b)
                               for p, mi, vi in zip(data[i], m_row, v_row)]
            w.invalidate()
            w.zero_grad()

    def start_sample(self) -> KVCache:
        return self.kv_cache(self.config.n_layer, self.config.block_size)

    def next_token_probs(self, state: KVCache, token_id: int, pos_id: int,
                         temperature: float) -> list[float]:
        with self.inference_mode():
            logits = gpt_position(token_id, pos_id, state, self.weights, self.config).data
        return sampling_probs(logits, temperature)

    def parameters(self) -> Params:
        return {name: [list(row) for row in w.data] for name, w in self.weights.items()}
