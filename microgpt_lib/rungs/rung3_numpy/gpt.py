"""Rung `numpy`: the reference GPT on `Tensor` (NumPy arrays), one position at a time, KV cache.

`gpt` below is chapter 1's `gpt` with every list of `Value`s replaced by one `Tensor`: a linear
layer is one matrix-vector product, the loop over heads is a reshape to (n_head, head_dim), and
softmax and RMSNorm are single nodes. `TensorRung` holds what both NumPy rungs share: the weights,
gradients and Adam moments in flat buffers (`FlatParams`), Adam, and sampling.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.gc_pause import gc_paused
from microgpt_lib.optim import adam_update_numpy_preallocated
from microgpt_lib.params import Params
from microgpt_lib.rungs.base import Rung
from microgpt_lib.rungs.rung3_numpy.tensor import Tensor, stack

StateDict = dict[str, Tensor]
DTYPES = (np.float64, np.float32)


def gpt(
    token_id: int, pos_id: int, keys, values, state_dict: StateDict, config: GPTConfig
) -> Tensor:
    """Logits (vocab,) of the token after `token_id` at `pos_id`; appends this position's k, v."""
    n_head, head_dim = config.n_head, config.head_dim
    tok_emb = state_dict["wte"][token_id]
    pos_emb = state_dict["wpe"][pos_id]
    x = tok_emb + pos_emb
    x = x.rmsnorm()

    for li in range(config.n_layer):
        # 1) multi-head attention block, all heads at once
        x_residual = x
        x = x.rmsnorm()
        q = state_dict[f"layer{li}.attn_wq"] @ x
        k = state_dict[f"layer{li}.attn_wk"] @ x
        v = state_dict[f"layer{li}.attn_wv"] @ x
        keys[li].append(k)
        values[li].append(v)
        q_h = q.reshape(n_head, head_dim)
        k_h = stack(keys[li]).reshape(-1, n_head, head_dim)  # (t, n_head, head_dim)
        v_h = stack(values[li]).reshape(-1, n_head, head_dim)
        attn_logits = (k_h * q_h).sum(axis=-1) / head_dim**0.5  # (t, n_head)
        attn_weights = attn_logits.softmax(axis=0)  # over the cached positions t
        head_out = (attn_weights.reshape(-1, n_head, 1) * v_h).sum(axis=0)  # (n_head, head_dim)
        x = state_dict[f"layer{li}.attn_wo"] @ head_out.reshape(-1)
        x = x + x_residual
        # 2) MLP block
        x_residual = x
        x = x.rmsnorm()
        x = state_dict[f"layer{li}.mlp_fc1"] @ x
        x = x.relu()
        x = state_dict[f"layer{li}.mlp_fc2"] @ x
        x = x + x_residual

    return state_dict["lm_head"] @ x


def document_loss(tokens: Sequence[int], state_dict: StateDict, config: GPTConfig) -> Tensor:
    """Mean of -log p(next token) over the first min(block_size, len - 1) positions."""
    n = min(config.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(config.n_layer)], [[] for _ in range(config.n_layer)]
    losses = []
    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        logits = gpt(token_id, pos_id, keys, values, state_dict, config)
        probs = logits.softmax()
        losses.append(-probs[target_id].log())
    return (1 / n) * sum(losses)


class TensorRung(Rung):
    """What both NumPy rungs share: flat weights, gradients and Adam moments, Adam, sampling."""

    def __init__(self, config: GPTConfig, params: Params, dtype: type = np.float64) -> None:
        super().__init__(config, params)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}")
        self.dtype = dtype
        self.weights = FlatParams.from_params(config, params, dtype)
        self.grads = self.weights.zeros_like()
        self.m = self.weights.zeros_like()
        self.v = self.weights.zeros_like()
        self.adam_work = (np.empty_like(self.weights.data), np.empty_like(self.weights.data))
        self.t = 0
        # each parameter Tensor wraps a view into the flat buffer, so Adam updates it in place
        self.state_dict: StateDict = {name: Tensor(w) for name, w in self.weights.views.items()}

    @abstractmethod
    def document_loss(self, tokens: Sequence[int]) -> Tensor:
        """The step's loss as the root of a fresh computation graph."""

    def zero_grads(self) -> None:
        self.grads.data.fill(0.0)

    def forward_backward(self, ids: list[int]) -> float:
        """Build one document's loss graph, backpropagate, gather the grads in the flat buffer."""
        for p in self.state_dict.values():
            p.grad = None
        with gc_paused():  # the graph is acyclic: reference counting frees it
            loss = self.document_loss(ids)
            loss.backward()
            loss_value = float(loss.data)
            del loss  # frees the whole graph (reference counting) before collection resumes
        for name, p in self.state_dict.items():
            self.grads.views[name][...] = 0 if p.grad is None else p.grad
        return loss_value

    def gradients(self) -> dict[str, np.ndarray]:
        return {name: view.copy() for name, view in self.grads.views.items()}

    def adam_step(self, lr: float) -> None:
        self.t += 1
        adam_update_numpy_preallocated(
            self.weights.data, self.grads.data, self.m.data, self.v.data, self.t, lr, self.adam_work
        )

    def start_sample(self):
        return [[] for _ in range(self.config.n_layer)], [[] for _ in range(self.config.n_layer)]

    def next_token_probs(self, state, token_id: int, pos_id: int, temperature: float) -> list[float]:
        keys, values = state
        logits = gpt(token_id, pos_id, keys, values, self.state_dict, self.config)
        return (logits / temperature).softmax().data.tolist()

    def parameters(self) -> Params:
        return self.weights.to_params()


class NumpyGPT(TensorRung):
    """Rung `numpy`: chapter 1's per-position loop with a KV cache, on arrays."""

    name = "numpy"

    def document_loss(self, tokens: Sequence[int]) -> Tensor:
        return document_loss(tokens, self.state_dict, self.config)
