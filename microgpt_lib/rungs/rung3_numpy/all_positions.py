"""Rung `numpy_all_positions`: every position of a document at once, a causal mask instead of a KV cache.

The per-position rung computes position t's attention over the keys cached at positions 0..t.
Here all n queries meet all n keys in one (n_head, n, n) product, and the mask sets the scores of
keys after the query to -inf, so softmax gives them weight exactly 0: row t of the result is what
the per-position rung computed at step t. Still graph autograd (`Tensor`), but with a graph whose
size no longer grows with the number of positions, and no Python loop over positions.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.rungs.rung3_numpy.gpt import StateDict, TensorRung
from microgpt_lib.rungs.rung3_numpy.tensor import Tensor


def causal_mask(n: int, dtype: type = np.float64) -> np.ndarray:
    """(n, n) additive mask: 0 where key position <= query position, -inf after it."""
    return np.triu(np.full((n, n), -np.inf, dtype=dtype), k=1)


def linear(x: Tensor, w: Tensor) -> Tensor:
    """x (n, in) times the (out, in) weight w, transposed: (n, out), one row per position."""
    return x @ w.T


def gpt_batched(
    tokens: np.ndarray, state_dict: StateDict, config: GPTConfig, mask: np.ndarray
) -> Tensor:
    """Logits (n, vocab) for the next token at every position of `tokens` (n,), in one pass."""
    n, n_head, head_dim = len(tokens), config.n_head, config.head_dim
    x = state_dict["wte"][tokens] + state_dict["wpe"][:n]  # (n, n_embd)
    x = x.rmsnorm()

    for li in range(config.n_layer):
        # 1) multi-head attention block: heads as a leading batch axis
        x_residual = x
        x = x.rmsnorm()
        q = linear(x, state_dict[f"layer{li}.attn_wq"])
        k = linear(x, state_dict[f"layer{li}.attn_wk"])
        v = linear(x, state_dict[f"layer{li}.attn_wv"])
        q_h = q.reshape(n, n_head, head_dim).transpose(1, 0, 2)  # (n_head, n, head_dim)
        k_t = k.reshape(n, n_head, head_dim).transpose(1, 2, 0)  # (n_head, head_dim, n)
        v_h = v.reshape(n, n_head, head_dim).transpose(1, 0, 2)  # (n_head, n, head_dim)
        attn_logits = (q_h @ k_t) / head_dim**0.5 + mask  # (n_head, n, n), future keys at -inf
        attn_weights = attn_logits.softmax(axis=-1)
        head_out = (attn_weights @ v_h).transpose(1, 0, 2).reshape(n, -1)  # (n, n_embd)
        x = linear(head_out, state_dict[f"layer{li}.attn_wo"])
        x = x + x_residual
        # 2) MLP block
        x_residual = x
        x = x.rmsnorm()
        x = linear(x, state_dict[f"layer{li}.mlp_fc1"])
        x = x.relu()
        x = linear(x, state_dict[f"layer{li}.mlp_fc2"])
        x = x + x_residual

    return linear(x, state_dict["lm_head"])


def document_loss_batched(
    tokens: Sequence[int], state_dict: StateDict, config: GPTConfig, mask: np.ndarray
) -> Tensor:
    """Mean of -log p(next token) over the first n = min(block_size, len - 1) positions."""
    n = min(config.block_size, len(tokens) - 1)
    ids = np.asarray(tokens[: n + 1])
    logits = gpt_batched(ids[:-1], state_dict, config, mask[:n, :n])
    probs = logits.softmax(axis=-1)  # (n, vocab)
    return probs[np.arange(n), ids[1:]].log().sum() * (-1 / n)


class NumpyAllPositionsGPT(TensorRung):
    """Rung `numpy_all_positions`: one pass over all positions of the document, causal mask."""

    name = "numpy_all_positions"

    def __init__(self, config: GPTConfig, params, dtype: type = np.float64) -> None:
        super().__init__(config, params, dtype)
        self.mask = causal_mask(config.block_size, dtype)

    def document_loss(self, tokens: Sequence[int]) -> Tensor:
        return document_loss_batched(tokens, self.state_dict, self.config, self.mask)
