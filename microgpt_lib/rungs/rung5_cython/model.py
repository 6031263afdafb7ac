"""The GPT on fastops' C kernels: flat buffers for weights, gradients, AdamW state and activations.

`FastopsModel` owns the four flat buffers (weights, gradients, Adam moments; FlatParams layout)
and one activation workspace, and calls `fastops.train_step` (forward, backward and the optimiser
with no Python in between) on packed sequences (`microgpt_lib.batches.pack`). The `cython` rung,
the batched backend and the capstone trainer all drive it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.numerics import check_betas, check_count, check_eps, check_lr, check_nonnegative
from microgpt_lib.optim import BETA1, BETA2, EPS
from microgpt_lib.params import Params

try:
    import fastops
except ImportError as err:  # fastops/__init__.py says how to build it
    raise ImportError(f"the cython rung needs the compiled fastops extension. {err}") from err


def check_adamw(betas: tuple[float, float], eps: float, weight_decay: float, clip_norm: float
                ) -> tuple[tuple[float, float], float, float, float]:
    """AdamW's settings checked (ValueError or TypeError); clip_norm 0 means no clipping."""
    return (check_betas(betas), check_eps(eps), check_nonnegative("weight_decay", weight_decay),
            check_nonnegative("clip_norm", clip_norm))


class FastopsModel:
    """Weights, gradients and AdamW state in flat buffers, driven by fastops (float32/float64).

    Hyper-parameters are checked on every call (the learning rate always, the other AdamW
    settings whenever they change), and the step counter moves only when a step succeeds, so a
    rejected call changes nothing. Not safe to share between threads: a call writes the gradients,
    moments and activation workspace in place (and fastops releases the GIL while it computes).
    Give each thread its own model; `num_threads` parallelises inside one call.
    """

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float64,
                 num_threads: int = 1) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"fastops computes in float32 or float64, not {self.dtype}")
        self.params = FlatParams.from_params(config, params, self.dtype)
        self.grads = self.params.zeros_like()
        self.m = self.params.zeros_like()
        self.v = self.params.zeros_like()
        self.t = 0
        self.num_threads = check_count("num_threads", num_threads)
        self._checked_adamw = ((BETA1, BETA2), EPS, 0.0, 0.0)  # the last settings that passed
        self.workspace = np.zeros(0, dtype=self.dtype)
        # the float or double specialisation, picked once: skips the fused-type dispatch per call
        kind = "float" if self.dtype == np.float32 else "double"
        self._train_step = fastops.train_step[kind]
        self._gpt_loss = fastops.gpt_loss[kind]

    def _sizes(self) -> tuple[int, int, int, int, int]:
        c = self.config
        return c.n_embd, c.n_head, c.n_layer, c.vocab_size, c.block_size

    def _workspace(self, n_tokens: int, n_seqs: int) -> np.ndarray:
        need = fastops.workspace_size(n_tokens, n_seqs, *self._sizes())
        if self.workspace.shape[0] < need:
            self.workspace = np.zeros(need, dtype=self.dtype)
        return self.workspace

    def loss(self, tokens: np.ndarray, targets: np.ndarray, cu_seqlens: np.ndarray,
             backward: bool = True) -> float:
        """Mean loss over the packed tokens; with backward, its gradient is added to self.grads."""
        acts = self._workspace(tokens.shape[0], cu_seqlens.shape[0] - 1)
        return self._gpt_loss(self.params.data, self.grads.data, acts, tokens, targets,
                                cu_seqlens, *self._sizes(), backward, self.num_threads)

    def train_step(self, tokens: np.ndarray, targets: np.ndarray, cu_seqlens: np.ndarray,
                   lr: float, betas: tuple[float, float] = (BETA1, BETA2), eps: float = EPS,
                   weight_decay: float = 0.0, clip_norm: float = 0.0) -> float:
        """Forward, backward and AdamW in one fastops call; returns the mean loss."""
        lr = check_lr(lr)
        self._check_adamw(betas, eps, weight_decay, clip_norm)
        acts = self._workspace(tokens.shape[0], cu_seqlens.shape[0] - 1)
        loss = self._train_step(
            self.params.data, self.grads.data, self.m.data, self.v.data, acts, tokens, targets,
            cu_seqlens, *self._sizes(), self.t + 1, lr, betas[0], betas[1], eps, weight_decay,
            clip_norm, self.num_threads)
        self.t += 1
        return loss

    def _check_adamw(self, betas: tuple[float, float], eps: float, weight_decay: float,
                     clip_norm: float) -> None:
        settings = (tuple(betas), eps, weight_decay, clip_norm)
        if settings != self._checked_adamw:  # a cheap comparison on the fast path
            check_adamw(*settings)
            self._checked_adamw = settings

    def step(self, lr: float, betas: tuple[float, float] = (BETA1, BETA2), eps: float = EPS,
             weight_decay: float = 0.0, clip_norm: float = 0.0) -> None:
        """AdamW with the gradients of the last `loss`, which are then reset to zero."""
        lr = check_lr(lr)
        self._check_adamw(betas, eps, weight_decay, clip_norm)
        fastops.adamw_update(self.params.data, self.grads.data, self.m.data, self.v.data,
                             self.t + 1, lr, betas[0], betas[1], eps, weight_decay, clip_norm)
        self.t += 1
        self.grads.data[...] = 0

    def next_token_logits(self, context: Sequence[int]) -> np.ndarray:
        """Logits (vocab,) for the token after `context` (at most block_size tokens)."""
        tokens = np.asarray(context, dtype=np.int64)
        cu = np.array([0, len(tokens)], dtype=np.int64)
        self.loss(tokens, np.zeros_like(tokens), cu, backward=False)
        n, v = len(tokens), self.config.vocab_size
        start = fastops.activation_offsets(n, 1, *self._sizes())["logits"] + (n - 1) * v
        return self.workspace[start : start + v].copy()
