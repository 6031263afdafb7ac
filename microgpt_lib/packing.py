"""Padded batches and their packed form: how chapter 5 feeds a batch of documents to C.

A padded batch (chapter 4's layout) is three (B, T) arrays: tokens, targets and a mask that is 1
for each row's real positions, then 0. The packed form drops the padding: the real tokens of
all rows in one (N,) array, the targets likewise, and `cu_seqlens` (B+1,), where each row starts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Packed = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class PaddedBatch:
    """B right-padded sequences, as chapter 4's Batch: tokens, targets, mask, each (B, T)."""

    tokens: np.ndarray
    targets: np.ndarray
    mask: np.ndarray

    @property
    def num_tokens(self) -> int:
        return int(np.count_nonzero(self.mask))


def padded_batch(sequences: Sequence[Sequence[int]], block_size: int) -> PaddedBatch:
    """Every token sequence predicts its next tokens, cut to block_size positions, right-padded
    with zeros (mask 0) to the longest row."""
    n = [min(block_size, len(s) - 1) for s in sequences]
    if not n or min(n) < 1:
        raise ValueError("a batch needs sequences of at least 2 tokens")
    tokens = np.zeros((len(sequences), max(n)), dtype=np.int64)
    targets = np.zeros_like(tokens)
    mask = np.zeros(tokens.shape)
    for row, (seq, length) in enumerate(zip(sequences, n)):
        tokens[row, :length] = seq[:length]
        targets[row, :length] = seq[1 : length + 1]
        mask[row, :length] = 1.0
    return PaddedBatch(tokens, targets, mask)


def pack_padded(batch) -> Packed:
    """Packed (tokens, targets, cu_seqlens) of a right-padded batch; rejects a malformed mask."""
    tokens, targets, mask = (np.asarray(a) for a in (batch.tokens, batch.targets, batch.mask))
    if not tokens.shape == targets.shape == mask.shape or tokens.ndim != 2:
        raise ValueError(f"tokens {tokens.shape}, targets {targets.shape} and mask {mask.shape} "
                         "must be one (B, T) shape")
    real = mask > 0
    lengths = real.sum(axis=1)
    if not np.array_equal(real, np.arange(real.shape[1]) < lengths[:, None]):
        raise ValueError("each row of the mask must mark its real tokens first, then padding")
    cu = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=cu[1:])
    return (tokens[real].astype(np.int64, copy=False),
            targets[real].astype(np.int64, copy=False), cu)
