"""Where chapter 8's trainer gets its batches: random documents, or random windows of one text.

Both sources draw a step's rows from the run's own random generator (so the draw is part of a
checkpoint's state) and split them into `parts` micro-batches for gradient accumulation.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from microgpt_lib.batches import EncodedDocs, PaddedBatch, random_windows
from microgpt_lib.scenarios import ScenarioData



class DocumentBatches:
    """Random documents per step (with replacement); validation over every held-out document."""

    def __init__(self, train: EncodedDocs, val: EncodedDocs) -> None:
        self.train, self.val = train, val

    def draw(self, rng: np.random.Generator, rows: int, parts: int) -> list[PaddedBatch]:
        index = rng.integers(0, len(self.train), rows)
        return [self.train.batch(part) for part in np.split(index, parts)]

    def validation(self) -> Iterator[PaddedBatch]:
        return self.val.batches(128)


class WindowBatches:
    """Random windows of block_size tokens per step; validation over consecutive windows."""

    def __init__(self, train: np.ndarray, val: np.ndarray, block_size: int) -> None:
        self.train, self.val, self.block_size = train, val, block_size

    def draw(self, rng: np.random.Generator, rows: int, parts: int) -> list[PaddedBatch]:
        x, y = random_windows(self.train, rows, self.block_size, rng)
        return [PaddedBatch.from_windows(a, b) for a, b in zip(np.split(x, parts), np.split(y, parts))]

    def validation(self) -> Iterator[PaddedBatch]:
        T = self.block_size
        n = (len(self.val) - 1) // T
        x = self.val[: n * T].reshape(n, T)
        y = self.val[1 : n * T + 1].reshape(n, T)
        for start in range(0, n, 64):
            yield PaddedBatch.from_windows(x[start : start + 64], y[start : start + 64])


def batches_of(data: ScenarioData) -> DocumentBatches | WindowBatches:
    """The batch source of a prepared scenario."""
    if data.train_docs is not None:
        return DocumentBatches(data.train_docs, data.val_docs)
    return WindowBatches(data.train_ids, data.val_ids, data.config.block_size)
