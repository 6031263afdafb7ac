"""The ladder contract's base class: what every rung offers, and the checks all share.

See `microgpt_lib.rungs` for the contract in words. `softmax_weights` turns a rung's logits into
the sampling weights `Rung.generate` draws from; `BatchedBackend` is the smaller interface the
mini-batch trainer drives (chapter 4's NumPy kernels, chapter 5's fastops).
"""
from __future__ import annotations

import operator
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from microgpt_lib.batches import PaddedBatch
from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.params import Params, check_params


class Rung(ABC):
    """Base class of every rung: holds the config and checks inputs the same way for all."""

    name: str = ""

    def __init__(self, config: GPTConfig, params: Params) -> None:
        check_params(config, params)
        self.config = config

    def check_tokens(self, tokens: Sequence[int]) -> None:
        """Raise ValueError for a document that is too short or holds ids outside the vocabulary."""
        if len(tokens) < 2:
            raise ValueError(f"a document needs at least 2 tokens to predict one, got {len(tokens)}")
        vocab = self.config.vocab_size
        bad = [t for t in map(operator.index, tokens) if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary 0..{vocab - 1}")

    @abstractmethod
    def loss_and_grads(self, tokens: Sequence[int]) -> tuple[float, dict[str, Any]]:
        """Mean cross-entropy over the document's positions and the gradient of every matrix."""

    @abstractmethod
    def step(self, lr: float) -> None:
        """One Adam update with the gradients of the last loss_and_grads."""

    @abstractmethod
    def start_sample(self) -> Any:
        """Fresh state for one sample (a KV cache, or the tokens so far)."""

    @abstractmethod
    def next_token_probs(
        self, state: Any, token_id: int, pos_id: int, temperature: float
    ) -> Sequence[float]:
        """softmax(logits / temperature) for the token after `token_id` at position `pos_id`."""

    def generate(
        self, n: int, temperature: float = 0.5, seed: int | None = None,
        rng: random.Random | None = None,
    ) -> list[list[int]]:
        """n samples of token ids (BOS excluded), drawn with `rng` (or a fresh one from `seed`)."""
        rng = rng if rng is not None else random.Random(seed)
        bos, token_ids = self.config.vocab_size - 1, range(self.config.vocab_size)
        samples = []
        for _ in range(n):
            state, token_id, sample = self.start_sample(), bos, []
            for pos_id in range(self.config.block_size):
                probs = self.next_token_probs(state, token_id, pos_id, temperature)
                token_id = rng.choices(token_ids, weights=probs)[0]
                if token_id == bos:
                    break
                sample.append(token_id)
            samples.append(sample)
        return samples

    @abstractmethod
    def parameters(self) -> Params:
        """The current weights as nested lists of floats."""

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        """loss_and_grads then step; returns the loss."""
        loss, _ = self.loss_and_grads(tokens)
        self.step(lr)
        return loss


def softmax_weights(logits: np.ndarray, temperature: float) -> list[float]:
    """softmax(logits / temperature) as Python floats, the weights `random.choices` takes."""
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max())
    return (probs / probs.sum()).tolist()


class BatchedBackend(Protocol):
    """What the trainer needs from a model implementation (see microgpt_lib.train.batched)."""

    config: GPTConfig
    params: FlatParams
    grads: FlatParams

    def forward_backward(self, batch: PaddedBatch) -> float: ...

    def loss(self, batch: PaddedBatch) -> float: ...
