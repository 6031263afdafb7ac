"""Rung `scalar`: the reference GPT of the specification on scalar autograd, written as Karpathy wrote it.

One `Value` per number, one position at a time with a KV cache. It is the slowest rung and the one
every other rung is tested against: run with Karpathy's RNG order it reproduces his run exactly.
"""
from __future__ import annotations

from collections.abc import Sequence

from microgpt_lib.config import GPTConfig
from microgpt_lib.optim import BETA1, BETA2, EPS
from microgpt_lib.params import Params
from microgpt_lib.rungs.base import Rung
from microgpt_lib.rungs.rung1_scalar.value import Value, backward_iterative

StateDict = dict[str, list[list[Value]]]


def linear(x, w):
    """w @ x for a matrix of (out, in) rows."""
    return [sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]


def softmax(logits):
    """Max-subtracted softmax (the max is a plain float: it does not change the gradient)."""
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    return [e / total for e in exps]


def rmsnorm(x):
    """x / sqrt(mean(x^2) + 1e-5), with no learned gain."""
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def gpt(token_id: int, pos_id: int, keys, values, state_dict: StateDict, config: GPTConfig):
    """Logits for the next token after `token_id` at `pos_id`; appends this position's k, v."""
    n_head, head_dim = config.n_head, config.head_dim
    tok_emb = state_dict["wte"][token_id]
    pos_emb = state_dict["wpe"][pos_id]
    x = [t + p for t, p in zip(tok_emb, pos_emb)]
    x = rmsnorm(x)

    for li in range(config.n_layer):
        # 1) multi-head attention block
        x_residual = x
        x = rmsnorm(x)
        q = linear(x, state_dict[f"layer{li}.attn_wq"])
        k = linear(x, state_dict[f"layer{li}.attn_wk"])
        v = linear(x, state_dict[f"layer{li}.attn_wv"])
        keys[li].append(k)
        values[li].append(v)
        x_attn = []
        for h in range(n_head):
            hs = h * head_dim
            q_h = q[hs : hs + head_dim]
            k_h = [ki[hs : hs + head_dim] for ki in keys[li]]
            v_h = [vi[hs : hs + head_dim] for vi in values[li]]
            attn_logits = [
                sum(q_h[j] * k_h[t][j] for j in range(head_dim)) / head_dim**0.5
                for t in range(len(k_h))
            ]
            attn_weights = softmax(attn_logits)
            head_out = [
                sum(attn_weights[t] * v_h[t][j] for t in range(len(v_h))) for j in range(head_dim)
            ]
            x_attn.extend(head_out)
        x = linear(x_attn, state_dict[f"layer{li}.attn_wo"])
        x = [a + b for a, b in zip(x, x_residual)]
        # 2) MLP block
        x_residual = x
        x = rmsnorm(x)
        x = linear(x, state_dict[f"layer{li}.mlp_fc1"])
        x = [xi.relu() for xi in x]
        x = linear(x, state_dict[f"layer{li}.mlp_fc2"])
        x = [a + b for a, b in zip(x, x_residual)]

    return linear(x, state_dict["lm_head"])


def document_loss(tokens: Sequence[int], state_dict: StateDict, config: GPTConfig) -> Value:
    """Mean of -log p(next token) over the first min(block_size, len - 1) positions."""
    n = min(config.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(config.n_layer)], [[] for _ in range(config.n_layer)]
    losses = []
    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        logits = gpt(token_id, pos_id, keys, values, state_dict, config)
        probs = softmax(logits)
        losses.append(-probs[target_id].log())
    return (1 / n) * sum(losses)


class ScalarGPT(Rung):
    """The reference rung: every weight a `Value`, gradients by scalar backpropagation."""

    name = "scalar"

    def __init__(self, config: GPTConfig, params: Params) -> None:
        super().__init__(config, params)
        self.state_dict: StateDict = {
            name: [[Value(w) for w in row] for row in matrix] for name, matrix in params.items()
        }
        self.params: list[Value] = [p for mat in self.state_dict.values() for row in mat for p in row]
        self.m = [0.0] * len(self.params)
        self.v = [0.0] * len(self.params)
        self.t = 0

    def loss_graph(self, tokens: Sequence[int]) -> Value:
        """The document's mean loss as the root of its graph (forward only)."""
        return document_loss(tokens, self.state_dict, self.config)

    def zero_grads(self) -> None:
        for p in self.params:
            p.grad = 0

    def forward_backward(self, ids: list[int]) -> float:
        loss = self.loss_graph(ids)
        try:
            loss.backward()
        except RecursionError:  # a graph deeper than Python's recursion limit (larger presets):
            backward_iterative(loss)  # the same order and gradients, sorted with a list as stack
        return loss.data

    def gradients(self) -> dict[str, list[list[float]]]:
        return {name: [[w.grad for w in row] for row in mat] for name, mat in self.state_dict.items()}

    def adam_step(self, lr: float) -> None:
        self.t += 1
        m, v = self.m, self.v
        for i, p in enumerate(self.params):
            m[i] = BETA1 * m[i] + (1 - BETA1) * p.grad
            v[i] = BETA2 * v[i] + (1 - BETA2) * p.grad**2
            m_hat = m[i] / (1 - BETA1**self.t)
            v_hat = v[i] / (1 - BETA2**self.t)
            p.data -= lr * m_hat / (v_hat**0.5 + EPS)
            p.grad = 0

    def start_sample(self):
        return [[] for _ in range(self.config.n_layer)], [[] for _ in range(self.config.n_layer)]

    def next_token_probs(self, state, token_id: int, pos_id: int, temperature: float) -> list[float]:
        keys, values = state
        logits = gpt(token_id, pos_id, keys, values, self.state_dict, self.config)
        return [p.data for p in softmax([logit / temperature for logit in logits])]

    def parameters(self) -> Params:
        return {name: [[w.data for w in row] for row in mat] for name, mat in self.state_dict.items()}
