"""Character-level text as nanoGPT feeds it: one long id array, 90/10 split, random windows.

This is the data side of chapter 5's capstone (nanoGPT's shakespeare_char recipe): the vocabulary
is the text's sorted characters (65 for tiny Shakespeare, no BOS), the first 90% of the ids train
and the last 10% validate, and a batch is `batch_size` windows of block_size + 1 characters drawn
at uniformly random offsets (inputs are the first block_size, targets the last block_size).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import load_text


@dataclass
class CharText:
    """A text as ids: the training and validation halves and the character table."""

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
