"""Rung `cython` (chapter 5): the GPT's whole training step in one call into fastops' C kernels.

`CythonGPT` is the single-document rung of the ladder on top of `FastopsModel` (`model.py`); the
batched trainer's backend is in `batched_backend.py`.
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

    def start_sample(self) -> list[int]:
        return []  # the tokens so far: each step runs the forward over the whole prefix

    def next_token_probs(self, state: list[int], token_id: int, pos_id: int,
                         temperature: float) -> list[float]:
        state.append(token_id)
        return softmax_weights(self.model.next_token_logits(state), temperature)

    def parameters(self) -> Params:
        return self.model.params.to_params()
