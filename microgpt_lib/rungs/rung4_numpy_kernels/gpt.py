"""Rung `numpy_kernels`: the GPT as a chain of hand-derived forward/backward kernels on flat buffers.

`gpt_forward` runs the layers of `layers.py` on views of one FlatParams and keeps every activation
the backward needs in an `ActivationCache`; `gpt_backward` walks the chain in reverse and adds the
gradients into a second FlatParams. Both take one sequence (T,) or a padded batch (B, T) with a
mask (see `layers.py`), so the single-sequence rung and the batched trainer share them. The Adam
update is one pass over the flat buffers (`FlatAdam`), with no temporaries allocated per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.optim import FlatAdam
from microgpt_lib.params import Params
from microgpt_lib.rungs.base import Rung, softmax_weights
from microgpt_lib.rungs.rung4_numpy_kernels.layers import (
    attention_backward,
    attention_forward,
    encoder_backward,
    encoder_forward,
    masked_mean_loss,
    matmul_backward,
    matmul_forward,
    relu_backward,
    relu_forward,
    rmsnorm_backward,
    rmsnorm_forward,
    softmax_crossentropy_backward,
    softmax_crossentropy_forward,
)


def qkv_weight(flat: FlatParams, layer: int) -> np.ndarray:
    """The (3C, C) view of wq, wk, wv stacked: they sit next to each other in the flat buffer."""
    start = flat.offsets[f"layer{layer}.attn_wq"]
    C = flat.config.n_embd
    if flat.offsets[f"layer{layer}.attn_wv"] != start + 2 * C * C:
        raise ValueError("wq, wk, wv are not contiguous in this FlatParams layout")
    return flat.data[start : start + 3 * C * C].reshape(3 * C, C)


@dataclass
class LayerCache:
    """What one transformer block keeps for its backward (each (..., T, width) unless noted)."""

    x_in: np.ndarray      # block input (residual stream), C
    ln1: np.ndarray       # rmsnorm(x_in), C
    ln1_rstd: np.ndarray  # (..., T)
    qkv: np.ndarray       # ln1 @ [wq; wk; wv].T, 3C
    att: np.ndarray       # (..., H, T, T) causal softmax probabilities
    atty: np.ndarray      # attention output before wo, C
    res1: np.ndarray      # x_in + atty @ wo.T, C
    ln2: np.ndarray       # rmsnorm(res1), C
    ln2_rstd: np.ndarray  # (..., T)
    h: np.ndarray         # relu(ln2 @ fc1.T), 4C


@dataclass
class ActivationCache:
    """Every activation of one forward pass, named as in llm.c's ActivationTensors."""

    tokens: np.ndarray    # (..., T) inputs
    targets: np.ndarray   # (..., T) next tokens
    dlosses: np.ndarray   # (..., T) d loss / d losses[t]: mask / number of real positions
    encoded: np.ndarray   # wte[tokens] + wpe[:T], C
    rstd0: np.ndarray     # (..., T) of the rmsnorm right after the embedding
    layers: list[LayerCache] = field(default_factory=list)
    x_final: np.ndarray | None = None  # residual stream after the last block, C
    probs: np.ndarray | None = None    # (..., T, V) softmax of the logits
    losses: np.ndarray | None = None   # (..., T) per-position cross-entropy


def gpt_forward(
    params: FlatParams, tokens: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, ActivationCache]:
    """Mean cross-entropy over real positions, and the activation cache for gpt_backward.

    tokens, targets: (T,) or (B, T) int arrays (checked by the caller: `Rung.check_tokens`,
    `batches.check_batch`);
    mask: None or (B, T) of 1.0 (real) / 0.0 (padding), see layers.py.
    """
    cfg, w = params.config, params.views
    encoded = encoder_forward(tokens, w["wte"], w["wpe"])
    x, rstd0 = rmsnorm_forward(encoded)
    cache = ActivationCache(tokens, targets, None, encoded, rstd0)
    C = cfg.n_embd
    for i in range(cfg.n_layer):
        ln1, ln1_rstd = rmsnorm_forward(x)
        qkv = matmul_forward(ln1, qkv_weight(params, i))
        atty, att = attention_forward(qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :],
                                      cfg.n_head)
        res1 = x + matmul_forward(atty, w[f"layer{i}.attn_wo"])
        ln2, ln2_rstd = rmsnorm_forward(res1)
        h = relu_forward(matmul_forward(ln2, w[f"layer{i}.mlp_fc1"]))
        cache.layers.append(LayerCache(x, ln1, ln1_rstd, qkv, att, atty, res1, ln2, ln2_rstd, h))
        x = res1 + matmul_forward(h, w[f"layer{i}.mlp_fc2"])
    cache.x_final = x
    cache.losses, cache.probs = softmax_crossentropy_forward(
        matmul_forward(x, w["lm_head"]), targets)
    loss, cache.dlosses = masked_mean_loss(cache.losses, mask)
    return loss, cache


def gpt_backward(params: FlatParams, grads: FlatParams, cache: ActivationCache) -> None:
    """Add d loss / d weights for the forward that filled `cache` into `grads` (+=)."""
    cfg, w, g = params.config, params.views, grads.views
    C = cfg.n_embd
    dlogits = softmax_crossentropy_backward(cache.probs, cache.targets, cache.dlosses)
    dx = matmul_backward(dlogits, cache.x_final, w["lm_head"], g["lm_head"])
    for i in reversed(range(cfg.n_layer)):
        lc = cache.layers[i]
        # x_out = res1 + fc2(relu(fc1(rmsnorm(res1))))
        dh = matmul_backward(dx, lc.h, w[f"layer{i}.mlp_fc2"], g[f"layer{i}.mlp_fc2"])
        dpre = relu_backward(dh, lc.h)
        dln2 = matmul_backward(dpre, lc.ln2, w[f"layer{i}.mlp_fc1"], g[f"layer{i}.mlp_fc1"])
        dres1 = dx + rmsnorm_backward(dln2, lc.res1, lc.ln2_rstd)
        # res1 = x_in + wo(attention(q, k, v)), [q k v] = rmsnorm(x_in) @ [wq; wk; wv].T
        datty = matmul_backward(dres1, lc.atty, w[f"layer{i}.attn_wo"], g[f"layer{i}.attn_wo"])
        q, k, v = lc.qkv[..., :C], lc.qkv[..., C : 2 * C], lc.qkv[..., 2 * C :]
        dqkv = np.concatenate(attention_backward(datty, q, k, v, lc.att, cfg.n_head), axis=-1)
        dln1 = matmul_backward(dqkv, lc.ln1, qkv_weight(params, i), qkv_weight(grads, i))
        dx = dres1 + rmsnorm_backward(dln1, lc.x_in, lc.ln1_rstd)
    dencoded = rmsnorm_backward(dx, cache.encoded, cache.rstd0)
    encoder_backward(g["wte"], g["wpe"], dencoded, cache.tokens)


def gpt_logits(params: FlatParams, tokens: np.ndarray) -> np.ndarray:
    """Logits (T, V) at every position of `tokens` (T,): the forward without a loss, for sampling."""
    cfg, w = params.config, params.views
    C = cfg.n_embd
    x, _ = rmsnorm_forward(encoder_forward(tokens, w["wte"], w["wpe"]))
    for i in range(cfg.n_layer):
        qkv = matmul_forward(rmsnorm_forward(x)[0], qkv_weight(params, i))
        atty, _ = attention_forward(qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :],
                                    cfg.n_head)
        x = x + matmul_forward(atty, w[f"layer{i}.attn_wo"])
        h = relu_forward(matmul_forward(rmsnorm_forward(x)[0], w[f"layer{i}.mlp_fc1"]))
        x = x + matmul_forward(h, w[f"layer{i}.mlp_fc2"])
    return matmul_forward(x, w["lm_head"])


class NumpyKernelsGPT(Rung):
    """One document per step through gpt_forward / gpt_backward, with FlatAdam."""

    name = "numpy_kernels"

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float64) -> None:
        super().__init__(config, params)
        self.flat = FlatParams.from_params(config, params, dtype)
        self.grads = self.flat.zeros_like()
        self.adam = FlatAdam(self.flat)

    def zero_grads(self) -> None:
        self.grads.data.fill(0.0)

    def forward_backward(self, ids: list[int]) -> float:
        tokens = np.asarray(ids, dtype=np.intp)
        n = min(self.config.block_size, len(tokens) - 1)
        loss, cache = gpt_forward(self.flat, tokens[:n], tokens[1 : n + 1])
        gpt_backward(self.flat, self.grads, cache)
        return loss

    def gradients(self) -> dict[str, np.ndarray]:
        return {name: view.copy() for name, view in self.grads.views.items()}

    def adam_step(self, lr: float) -> None:
        self.adam.step(self.grads, lr)  # zeroes the gradients

    def start_sample(self) -> list[int]:
        return []  # the tokens so far: no KV cache, the whole prefix is recomputed

    def next_token_probs(self, state: list[int], token_id: int, pos_id: int,
                         temperature: float) -> list[float]:
        state.append(token_id)
        return softmax_weights(gpt_logits(self.flat, np.asarray(state, dtype=np.intp))[-1],
                               temperature)

    def parameters(self) -> Params:
        return self.flat.to_params()
