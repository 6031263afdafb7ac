"""The ladder contract: the small interface every implementation (rung) of the GPT follows.

A rung is a class built as `Rung(config, params)` from the shared `init_params` output, and it
offers exactly this:

- `loss_and_grads(tokens) -> (loss, grads)`: mean next-token cross-entropy over one document
  (`[BOS] + ids + [BOS]`, predicting `min(block_size, len(tokens) - 1)` positions) and the gradient
  of that loss for every weight matrix, keyed like `params` and of the same (rows, cols) shape
  (nested lists for pure-Python rungs, NumPy arrays for the others).
- `step(lr)`: one Adam update (MODEL.md's betas and eps) with the gradients of the last
  `loss_and_grads`; the bias correction counts the calls to `step`.
- `train_step(tokens, lr) -> loss`: both of the above; rungs override it when they can skip
  handing the gradients back (this is what the benchmark harness times).
- `generate(n, temperature, seed=None, rng=None) -> list of token lists`: n samples, each started
  from BOS at position 0 and stopped at BOS or after block_size tokens; draws use `rng.choices`
  (a `random.Random`), made from `seed` when no `rng` is given. The loop is written once, here;
  a rung supplies `start_sample()` (fresh per-sample state, e.g. an empty KV cache) and
  `next_token_probs(state, token_id, pos_id, temperature)`.
- `parameters() -> params`: the current weights as nested lists of floats.

Two rungs started from the same parameters compute the same losses and gradients (to float
rounding), and that is what the tests check. Rungs are registered by name below and imported
lazily, so asking for one never imports another's dependencies.
"""
from __future__ import annotations

import importlib
import operator
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .config import GPTConfig
from .params import Params, check_params

# name -> "module:Class", imported on first use by get_rung.
_REGISTRY: dict[str, str] = {
    "scalar": "microgpt_lib.scalar_gpt:ScalarGPT",
    "scalar_fast": "microgpt_lib.scalar_fast_gpt:ScalarFastGPT",
    "numpy": "microgpt_lib.numpy_gpt:NumpyGPT",
    "numpy_batched": "microgpt_lib.numpy_batched_gpt:NumpyBatchedGPT",
    "fused": "microgpt_lib.fused_gpt:FusedGPT",
    "cython": "microgpt_lib.cython_gpt:CythonGPT",
}


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


def available_rungs() -> list[str]:
    """Names of all registered rungs, bottom of the ladder first."""
    return list(_REGISTRY)


def get_rung(name: str) -> type[Rung]:
    """The rung class registered as `name` (ValueError listing the known names otherwise)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown rung {name!r}; known rungs: {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
