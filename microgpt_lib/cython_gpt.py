"""Rung `cython` (chapter 5): the GPT's whole training step in one call into fastops' C kernels.

`FastopsModel` owns the four flat buffers (weights, gradients, Adam moments; FlatParams layout)
and one activation workspace, packs sequences into fastops' input (tokens, targets, cu_seqlens)
and calls `fastops.train_step` (forward, backward and the optimiser with no Python in between).
`CythonGPT` is the single-document rung of the ladder on top of it; the batched trainer's backend
lives in `cython_backend.py`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import GPTConfig
from .flat import FlatParams
from .optim import BETA1, BETA2, EPS
from .params import Params
from .fused_gpt import softmax_weights
from .rungs import Rung

try:
    import fastops
except ImportError as err:  # fastops/__init__.py says how to build it
    raise ImportError(f"the cython rung needs the compiled fastops extension. {err}") from err


class FastopsModel:
    """Weights, gradients and AdamW state in flat buffers, driven by fastops (float32/float64)."""

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
        self.num_threads = num_threads
        self.workspace = np.zeros(0, dtype=self.dtype)
        # the float or double specialisation, picked once: skips the fused-type dispatch per call
        kind = "float" if self.dtype == np.float32 else "double"
        self._train_step = fastops.train_step[kind]
        self._gpt_loss = fastops.gpt_loss[kind]

    def _sizes(self) -> tuple[int, int, int, int, int]:
        c = self.config
        return c.n_embd, c.n_head, c.n_layer, c.vocab_size, c.block_size

    def pack(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Packed (tokens, targets, cu_seqlens) of token sequences, each predicting its next."""
        inputs = [np.asarray(s[:-1], dtype=np.int64) for s in sequences]
        targets = [np.asarray(s[1:], dtype=np.int64) for s in sequences]
        cu = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in inputs], out=cu[1:])
        return np.concatenate(inputs), np.concatenate(targets), cu

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
        acts = self._workspace(tokens.shape[0], cu_seqlens.shape[0] - 1)
        self.t += 1
        return self._train_step(
            self.params.data, self.grads.data, self.m.data, self.v.data, acts, tokens, targets,
            cu_seqlens, *self._sizes(), self.t, lr, betas[0], betas[1], eps, weight_decay,
            clip_norm, self.num_threads)

    def step(self, lr: float, betas: tuple[float, float] = (BETA1, BETA2), eps: float = EPS,
             weight_decay: float = 0.0, clip_norm: float = 0.0) -> None:
        """AdamW with the gradients of the last `loss`, which are then reset to zero."""
        self.t += 1
        fastops.adamw_update(self.params.data, self.grads.data, self.m.data, self.v.data, self.t,
                             lr, betas[0], betas[1], eps, weight_decay, clip_norm)
        self.grads.data[...] = 0

    def next_token_logits(self, context: Sequence[int]) -> np.ndarray:
        """Logits (vocab,) for the token after `context` (at most block_size tokens)."""
        tokens = np.asarray(context, dtype=np.int64)
        cu = np.array([0, len(tokens)], dtype=np.int64)
        self.loss(tokens, np.zeros_like(tokens), cu, backward=False)
        n, v = len(tokens), self.config.vocab_size
        start = fastops.activation_offsets(n, 1, *self._sizes())["logits"] + (n - 1) * v
        return self.workspace[start : start + v].copy()


class CythonGPT(Rung):
    """The single-document rung: MODEL.md's GPT trained one name per call to fastops.train_step."""

    name = "cython"

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float64) -> None:
        super().__init__(config, params)
        self.model = FastopsModel(config, params, dtype)

    def _packed(self, tokens: Sequence[int]):
        self.check_tokens(tokens)
        n = min(self.config.block_size, len(tokens) - 1)
        seq = np.asarray(tokens[: n + 1], dtype=np.int64)
        return seq[:-1], seq[1:], np.array([0, n], dtype=np.int64)

    def loss_and_grads(self, tokens: Sequence[int]) -> tuple[float, dict[str, np.ndarray]]:
        self.model.grads.data[...] = 0
        loss = self.model.loss(*self._packed(tokens))
        return loss, {name: view.copy() for name, view in self.model.grads.views.items()}

    def step(self, lr: float) -> None:
        self.model.step(lr)

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        return self.model.train_step(*self._packed(tokens), lr)

    def start_sample(self) -> list[int]:
        return []  # the tokens so far: each step runs the forward over the whole prefix

    def next_token_probs(self, state: list[int], token_id: int, pos_id: int,
                         temperature: float) -> list[float]:
        state.append(token_id)
        return softmax_weights(self.model.next_token_logits(state), temperature)

    def parameters(self) -> Params:
        return self.model.params.to_params()
