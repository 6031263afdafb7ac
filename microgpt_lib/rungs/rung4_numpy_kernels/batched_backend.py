"""Chapter 4's kernels behind the mini-batch trainer: padded (B, T) batches with a mask.

The trainer (`microgpt_lib.train.batched`) drives any `BatchedBackend`; this one runs
`gpt_forward` / `gpt_backward` of the `numpy_kernels` rung on a whole padded batch at once.
"""
from __future__ import annotations

import numpy as np

from microgpt_lib.batches import PaddedBatch, check_batch
from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.numerics import check_finite, check_lr
from microgpt_lib.optim import FlatAdam
from microgpt_lib.params import Params
from microgpt_lib.rungs.rung4_numpy_kernels.gpt import gpt_backward, gpt_forward


class NumpyBackend:
    """Chapter 4's kernels (`gpt_forward` / `gpt_backward`) on a padded, masked batch.

    Every batch is checked by `check_batch` (the same check as the fastops backend's) before
    anything changes. Not safe to share between threads: a call writes the gradients in place.
    """

    name = "numpy_kernels"

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float64) -> None:
        self.config = config
        self.params = FlatParams.from_params(config, params, dtype)
        self.grads = self.params.zeros_like()
        self.optimizer: FlatAdam | None = None  # only train_step uses one; the trainer has its own

    def forward_backward(self, batch: PaddedBatch) -> float:
        batch = check_batch(batch, self.config)
        loss, cache = gpt_forward(self.params, batch.tokens, batch.targets, batch.mask)
        gpt_backward(self.params, self.grads, cache)
        return loss

    def loss(self, batch: PaddedBatch) -> float:
        batch = check_batch(batch, self.config)
        return gpt_forward(self.params, batch.tokens, batch.targets, batch.mask)[0]

    def train_step(self, batch: PaddedBatch, lr: float) -> float:
        """forward_backward, then one FlatAdam step (created on first use); returns the loss.

        TrainingDiverged if the loss is not finite (checked before the update).
        """
        batch, lr = check_batch(batch, self.config), check_lr(lr)
        if self.optimizer is None:
            self.optimizer = FlatAdam(self.params)
        self.grads.data.fill(0.0)
        loss = self.forward_backward(batch)
        check_finite("loss", loss, self.optimizer.t + 1, lr)
        self.optimizer.step(self.grads, lr)
        return loss
