"""Rung `cython` (chapter 5): the GPT's whole training step in one call into fastops' C kernels.

`CythonGPT` is the single-document rung of the ladder on top of `FastopsModel` (`model.py`); the
batched trainer's backend is in `batched_backend.py`. It samples one token at a time through
fastops' KV cache (`fastops.decode_step`).
"""
from __future__ import annotations

import numpy as np

from microgpt_lib.batches import Packed, pack_sequences
from microgpt_lib.config import GPTConfig
from microgpt_lib.params import Params
from microgpt_lib.rungs.base import Rung, softmax_weights
from microgpt_lib.rungs.rung5_cython.model import FastopsModel


class CythonGPT(Rung):
    """The single-document rung: the course's GPT trained one name per call to fastops.train_step."""

    name = "cython"

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float64) -> None:
        super().__init__(config, params)
        self.model = FastopsModel(config, params, dtype)

    def _packed(self, ids: list[int]) -> Packed:
        return pack_sequences([ids], self.config.block_size)

    def zero_grads(self) -> None:
        self.model.grads.data[...] = 0

    def forward_backward(self, ids: list[int]) -> float:
        return self.model.loss(*self._packed(ids))

    def gradients(self) -> dict[str, np.ndarray]:
        return {name: view.copy() for name, view in self.model.grads.views.items()}

    def adam_step(self, lr: float) -> None:
        self.model.step(lr)

    def forward_backward_step(self, ids: list[int], lr: float) -> float:
        """Forward, backward and Adam in one fastops call (fastops zeroes the gradients first)."""
        return self.model.train_step(*self._packed(ids), lr)

    def start_sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.model.decode_buffers()  # one sample's KV cache, in fastops' layout

    def next_token_probs(self, state: tuple[np.ndarray, np.ndarray, np.ndarray], token_id: int,
                         pos_id: int, temperature: float) -> list[float]:
        return softmax_weights(self.model.decode_logits(state, token_id, pos_id), temperature)

    def parameters(self) -> Params:
        return self.model.params.to_params()
