"""fastops behind a batched trainer (chapter 5): padded (B, T) batches in, packed C batches out.

The batched trainer of chapter 4 hands its backend right-padded token batches with a mask
(inputs, targets, mask, each (B, T); a row's real tokens come first). This backend drops the
padding before C sees it: the real tokens of all rows are packed into one (N,) list with offsets
(`cu_seqlens`), so every matrix product runs on the N real tokens only, and the loss is the mean
over them. Weights live in float32 (the default) or float64 flat buffers.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import GPTConfig
from .cython_gpt import FastopsModel
from .optim import BETA1, BETA2, EPS
from .params import Params

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


def padded_batch(sequences: Sequence[Sequence[int]], block_size: int) -> Batch:
    """(inputs, targets, mask), each (B, T): every token sequence predicts its next tokens,
    cut to block_size positions and right-padded with zeros (mask False) to the longest."""
    n = [min(block_size, len(s) - 1) for s in sequences]
    if min(n) < 1:
        raise ValueError("every sequence needs at least 2 tokens")
    inputs = np.zeros((len(sequences), max(n)), dtype=np.int64)
    targets = np.zeros_like(inputs)
    mask = np.zeros(inputs.shape, dtype=bool)
    for row, (seq, length) in enumerate(zip(sequences, n)):
        inputs[row, :length] = seq[:length]
        targets[row, :length] = seq[1 : length + 1]
        mask[row, :length] = True
    return inputs, targets, mask


def pack_padded(inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Batch:
    """Packed (tokens, targets, cu_seqlens) of a right-padded batch; rejects a malformed mask."""
    inputs, targets, mask = (np.asarray(a) for a in (inputs, targets, mask))
    if not inputs.shape == targets.shape == mask.shape or inputs.ndim != 2:
        raise ValueError(f"inputs {inputs.shape}, targets {targets.shape} and mask {mask.shape} "
                         "must be one (B, T) shape")
    mask = mask.astype(bool)
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(mask.shape[1]) < lengths[:, None]):
        raise ValueError("each row of the mask must be True for its real tokens, then False")
    cu = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=cu[1:])
    return (inputs[mask].astype(np.int64, copy=False), targets[mask].astype(np.int64, copy=False),
            cu)


class CythonBatchedBackend:
    """A batched trainer's backend on fastops: loss_and_grads / train_step on padded batches."""

    name = "cython"

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float32,
                 num_threads: int = 1) -> None:
        self.config = config
        self.model = FastopsModel(config, params, dtype, num_threads)

    def loss_and_grads(self, inputs: np.ndarray, targets: np.ndarray,
                       mask: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss over the real tokens and its gradient for every matrix (copies)."""
        loss = self.model.loss(*pack_padded(inputs, targets, mask))
        return loss, {name: view.copy() for name, view in self.model.grads.views.items()}

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray, lr: float,
                   betas: tuple[float, float] = (BETA1, BETA2), eps: float = EPS,
                   weight_decay: float = 0.0, clip_norm: float = 0.0) -> float:
        """One optimiser step on a padded batch (one fastops call); returns the mean loss."""
        return self.model.train_step(*pack_padded(inputs, targets, mask), lr, betas, eps,
                                     weight_decay, clip_norm)

    def parameters(self) -> Params:
        return self.model.params.to_params()
