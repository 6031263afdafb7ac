"""fastops behind chapter 4's batched trainer: padded (B, T) batches in, packed C batches out.

Chapter 4's trainer (`microgpt_lib.train.batched.train_batched`) drives a backend with `config`,
`params` and `grads` (FlatParams), `forward_backward(batch)` (adds the gradient into grads and
returns the mean loss over the real tokens) and `loss(batch)`; a batch has right-padded `tokens`,
`targets` and a `mask` (B, T). `CythonBackend` is that backend on fastops. It drops the padding
before C sees it: the real tokens of all rows are packed into one (N,) list with offsets
(`cu_seqlens`), so the matrix products run on real tokens only. Its `train_step` goes further:
forward, backward, clipping and AdamW in one fastops call (what chapter 5's timings measure).
"""
from __future__ import annotations

import numpy as np

from microgpt_lib.batches import Packed, PaddedBatch, check_batch, pack
from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.numerics import check_finite, check_lr
from microgpt_lib.optim import BETA1, BETA2, EPS
from microgpt_lib.params import Params
from microgpt_lib.rungs.rung5_cython.model import (  # explains a missing build
    FastopsModel,
    check_adamw,
    fastops,
)


class CythonBackend:
    """Chapter 4's backend interface on fastops (float32 by default, one or more threads).

    Every batch is checked as `check_batch` checks it (the NumPy backend's check) before anything
    changes. Not safe to share between threads (see `FastopsModel`).
    """

    name = "cython"

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float32,
                 num_threads: int = 1) -> None:
        self.config = config
        self.model = FastopsModel(config, params, dtype, num_threads)
        self.params: FlatParams = self.model.params
        self.grads: FlatParams = self.model.grads

    def packed(self, batch: PaddedBatch) -> Packed:
        """`pack(check_batch(batch))`: in one C pass (fastops.pack_padded_batch, the same checks
        and errors) for the arrays EncodedDocs makes (int64 ids, a float64 mask, C order), where
        NumPy's dozens of small calls cost a tenth of a small step; through NumPy for any other
        array types."""
        tokens, targets, mask = batch.tokens, batch.targets, batch.mask
        if (type(tokens) is type(targets) is type(mask) is np.ndarray
                and tokens.dtype == targets.dtype == np.int64 and mask.dtype == np.float64
                and tokens.ndim == targets.ndim == mask.ndim == 2 and tokens.flags.c_contiguous
                and targets.flags.c_contiguous and mask.flags.c_contiguous):
            return fastops.pack_padded_batch(tokens, targets, mask, self.config.vocab_size,
                                             self.config.block_size)
        return pack(check_batch(batch, self.config))

    def forward_backward(self, batch: PaddedBatch) -> float:
        """Mean loss over the real tokens; its gradient is added into self.grads."""
        return self.model.loss(*self.packed(batch))

    def loss(self, batch: PaddedBatch) -> float:
        """The same mean loss, forward only."""
        return self.model.loss(*self.packed(batch), backward=False)

    def train_step(self, batch: PaddedBatch, lr: float, betas: tuple[float, float] = (BETA1, BETA2),
                   eps: float = EPS, weight_decay: float = 0.0, clip_norm: float = 0.0) -> float:
        """Forward, backward, clipping and AdamW on a padded batch in one fastops call.

        TrainingDiverged if the loss is not finite (the update has been applied by then).
        """
        loss = self.model.train_step(*self.packed(batch), lr, betas, eps, weight_decay,
                                     clip_norm)
        return check_finite("loss", loss, self.model.t, lr)


class FastopsAdam:
    """An optimiser for chapter 4's trainer (`step(grads, lr)`): Adam as one C loop; grads <- 0.

    Not safe to share between threads (it updates its moments in place).
    """

    def __init__(self, params: FlatParams, betas: tuple[float, float] = (BETA1, BETA2),
                 eps: float = EPS, weight_decay: float = 0.0) -> None:
        self.betas, self.eps, self.weight_decay, _ = check_adamw(betas, eps, weight_decay, 0.0)
        self.params = params
        self.m = np.zeros_like(params.data)
        self.v = np.zeros_like(params.data)
        self.t = 0

    def step(self, grads: FlatParams, lr: float) -> None:
        fastops.adamw_update(self.params.data, grads.data, self.m, self.v, self.t + 1,
                             check_lr(lr), *self.betas, self.eps, self.weight_decay)
        self.t += 1
        grads.data.fill(0.0)
