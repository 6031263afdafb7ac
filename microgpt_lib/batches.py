"""Batches: documents and texts as token-id arrays, padded (B, T) batches, and their packed form.

Core of the ladder's data side, one home for every batch shape the course uses:
- `EncodedDocs`: documents (names) encoded once as [BOS] + ids + [BOS], padded to block_size + 1,
  from which `PaddedBatch`es of any rows are cut (chapter 4's mini-batches);
- `CharText`: one long text as character ids with a train/validation split, and `random_windows` of it
  (nanoGPT's way of feeding a text, chapter 5's capstone);
- a `PaddedBatch` is three (B, T) arrays: tokens, targets and a mask that is 1 for each row's real
  positions, then 0; `pack` drops the padding for C: the real tokens of all rows in one (N,)
  array, the targets likewise, and `cu_seqlens` (B+1,), where each row starts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.data import load_text
from microgpt_lib.tokenizers import CharTokenizer

Packed = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class PaddedBatch:
    """B right-padded sequences: tokens, targets (B, T) int; mask (B, T) float, 1.0 = real."""

    tokens: np.ndarray
    targets: np.ndarray
    mask: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Number of real (predicted) positions."""
        return int(np.count_nonzero(self.mask))

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[int]], block_size: int
                       ) -> "PaddedBatch":
        """Every token sequence predicts its next tokens, cut to block_size positions,
        right-padded with zeros (mask 0) to the longest row."""
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
        return cls(tokens, targets, mask)

    @classmethod
    def from_windows(cls, x: np.ndarray, y: np.ndarray) -> "PaddedBatch":
        """(B, T) windows of a text, every position real (no padding)."""
        return cls(x, y, np.ones(x.shape))


def check_batch(batch: PaddedBatch, config: GPTConfig) -> PaddedBatch:
    """The batch with NumPy arrays, checked before any backend touches it (both batched backends
    call this, so they accept and reject the same batches).

    TypeError: tokens or targets that are not integers (float ids are never truncated), a mask
    that is not numbers. ValueError: shapes other than one (B, T) with 1 <= T <= block_size, ids
    outside the vocabulary (padding included), mask values other than exactly 0 and 1, a row whose
    real positions do not come first or that has none.
    """
    tokens, targets, mask = (np.asarray(a) for a in (batch.tokens, batch.targets, batch.mask))
    for name, ids in (("tokens", tokens), ("targets", targets)):
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integer token ids, got dtype {ids.dtype}")
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"mask must hold numbers (1 real, 0 padding), got dtype {mask.dtype}")
    if tokens.ndim != 2 or not tokens.shape == targets.shape == mask.shape:
        raise ValueError(f"tokens {tokens.shape}, targets {targets.shape} and mask {mask.shape} "
                         "must be one (B, T) shape")
    n_rows, n_cols = tokens.shape
    if n_rows < 1 or not 1 <= n_cols <= config.block_size:
        raise ValueError(f"a batch needs at least one row and 1..block_size "
                         f"({config.block_size}) positions, got shape {tokens.shape}")
    for name, ids in (("tokens", tokens), ("targets", targets)):
        if ids.min() < 0 or ids.max() >= config.vocab_size:
            raise ValueError(f"{name} hold ids outside the vocabulary 0..{config.vocab_size - 1}")
    lengths = np.count_nonzero(mask == 1, axis=1)
    if not np.array_equal(mask, np.arange(n_cols) < lengths[:, None]):  # one pass checks both:
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError("mask values must be exactly 0 (padding) or 1 (real)")
        raise ValueError("each row of the mask must mark its real tokens first, then padding")
    if lengths.min() == 0:
        raise ValueError(f"row {int(np.argmin(lengths))} of the batch has no real position")
    return PaddedBatch(tokens, targets, mask)


def pack(batch: PaddedBatch) -> Packed:
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
    if cu[-1] == tokens.size:  # no padding: the rows are already packed
        return (tokens.astype(np.int64, copy=False).ravel(),
                targets.astype(np.int64, copy=False).ravel(), cu)
    return (tokens[real].astype(np.int64, copy=False),
            targets[real].astype(np.int64, copy=False), cu)


def pack_sequences(sequences: Sequence[Sequence[int]], block_size: int) -> Packed:
    """Packed form of token sequences, each predicting its next tokens (cut to block_size):
    what `pack` gives for their padded batch, without building one (the single-document rungs
    call this every step)."""
    cut = [np.asarray(s[: block_size + 1], dtype=np.int64) for s in sequences]
    if not cut or min(len(c) for c in cut) < 2:
        raise ValueError("a batch needs sequences of at least 2 tokens")
    if len(cut) == 1:  # one document: two views of one array, nothing concatenated
        return cut[0][:-1], cut[0][1:], np.array([0, len(cut[0]) - 1], dtype=np.int64)
    cu = np.zeros(len(cut) + 1, dtype=np.int64)
    np.cumsum([len(c) - 1 for c in cut], out=cu[1:])
    return np.concatenate([c[:-1] for c in cut]), np.concatenate([c[1:] for c in cut]), cu


class EncodedDocs:
    """Documents encoded once as [BOS] + ids + [BOS], padded to block_size + 1, for fast batching.

    ids (N, block_size + 1) token ids, zero after each document; lengths (N,) the number of
    positions each document predicts, min(block_size, len - 1), as every rung cuts a long name.
    """

    def __init__(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.ids, self.lengths = ids, lengths
        self.block_size = ids.shape[1] - 1
        self._positions = np.arange(self.block_size)

    @classmethod
    def encode(cls, docs: Sequence[str], tokenizer: CharTokenizer, block_size: int
               ) -> "EncodedDocs":
        """Encode and pad every document (raises TokenError for an unknown character)."""
        if not docs:
            raise ValueError("no documents to encode")
        ids = np.zeros((len(docs), block_size + 1), dtype=np.intp)
        lengths = np.zeros(len(docs), dtype=np.intp)
        for i, doc in enumerate(docs):
            tokens = tokenizer.encode_doc(doc)[: block_size + 1]
            ids[i, : len(tokens)] = tokens
            lengths[i] = len(tokens) - 1
        return cls(ids, lengths)

    def head(self, n: int) -> "EncodedDocs":
        """The first n documents (a view), e.g. for cheaper periodic validation."""
        return EncodedDocs(self.ids[:n], self.lengths[:n])

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: np.ndarray) -> PaddedBatch:
        """The documents at `index` as one PaddedBatch, padded to the longest of them."""
        T = int(self.lengths[index].max())
        ids = self.ids[index]
        mask = (self._positions[:T] < self.lengths[index, None]).astype(np.float64)
        return PaddedBatch(ids[:, :T].copy(), ids[:, 1 : T + 1] * (mask > 0), mask)

    def batches(self, batch_size: int):
        """Every document once, in order, batch_size at a time (for validation)."""
        for start in range(0, len(self), batch_size):
            yield self.batch(np.arange(start, min(start + batch_size, len(self))))


@dataclass
class CharText:
    """A text as ids: the training and validation parts and the character table."""

    train: np.ndarray
    val: np.ndarray
    chars: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def char_text(name: str = "tinyshakespeare", train_fraction: float = 0.9) -> CharText:
    """The dataset `name` as character ids, split like nanoGPT's prepare.py (first 90% train)."""
    text = load_text(name)
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.fromiter((stoi[ch] for ch in text), dtype=np.int64, count=len(text))
    cut = int(len(ids) * train_fraction)
    return CharText(ids[:cut], ids[cut:], chars)


def random_windows(data: np.ndarray, batch_size: int, block_size: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (batch_size, block_size): x = data[i:i+block], y = data[i+1:i+1+block]."""
    if len(data) <= block_size:
        raise ValueError(f"{len(data)} ids cannot hold a window of {block_size + 1}")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    idx = starts[:, None] + np.arange(block_size + 1)
    windows = data[idx]
    return windows[:, :-1], windows[:, 1:]
